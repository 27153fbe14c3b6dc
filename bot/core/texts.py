"""What the bot says to people, in one place, platform-neutral (Markdown)."""

from __future__ import annotations

from bot.core.events import Answer, Progress


def progress_text(progress: Progress) -> str:
    if progress.state == "waiting":
        ahead = (progress.position or 1) - 1
        line = "next in line" if ahead == 0 else f"{ahead} ahead of you"
        return f"Thinking… (waiting: {line})"
    seconds = f"{progress.elapsed:.0f} s"
    if progress.state == "thinking":
        return f"Thinking… ({progress.tokens} tokens, {seconds})"
    return f"Writing the answer… ({progress.tokens} tokens, {seconds})"


def answer_text(answer: Answer, disclaimer: str = "") -> str:
    """The message that replaces the placeholder: the final response plus any notice and footer."""
    if answer.answer:
        body = answer.answer
        if answer.truncated:
            body += (
                "\n\n_The answer was cut short by the length limit "
                "(HUATUO_MAX_NEW_TOKENS); ask a narrower question or raise the limit._"
            )
    elif answer.thinking:
        cut = " before it was cut short by the length limit" if answer.truncated else ""
        body = (
            f"_The model did not reach a final answer{cut}. Its reasoning so far is in the thread._"
        )
    else:
        body = "_The model returned an empty answer. Please try rephrasing the question._"
    return f"{body}\n\n{disclaimer}" if disclaimer else body


def thinking_title(answer: Answer) -> str:
    return "Thinking (incomplete)" if answer.truncated and not answer.answer else "Thinking"


EMPTY_QUESTION = "Please include a question, for example: “What are the causes of chest pain?”"


def too_long(length: int, limit: int) -> str:
    return (
        f"That question is {length:,} characters long; the limit is {limit:,}. "
        "Please shorten it (a summary of the case is usually enough)."
    )


TIMEOUT = (
    "Sorry, the answer took too long and was stopped. Please try again, or ask a narrower question."
)
