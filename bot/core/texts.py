"""What the bot says to people, in one place, platform-neutral (Markdown)."""

from __future__ import annotations

from bot.core.events import Answer, Progress
from inference.engine import EngineClosed, EngineError, PromptTooLong, QueueFull
from inference.remote import ModelServerError


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
    if answer.stopped:
        body = f"{answer.answer}\n\n{STOPPED_HERE}" if answer.answer else STOPPED_THINKING
    elif answer.answer:
        body = answer.answer
        if answer.thinking_capped:
            body += f"\n\n{CAPPED}"
        if answer.truncated:
            body += (
                "\n\n_The answer was cut short by the length limit "
                "(HUATUO_MAX_NEW_TOKENS); ask a narrower question or raise the limit._"
            )
    elif answer.thinking:
        cut = " before it was cut short by the length limit" if answer.truncated else ""
        body = f"_The model did not reach a final answer{cut}. Its reasoning so far is shown._"
    else:
        body = "_The model returned an empty answer. Please try rephrasing the question._"
    return f"{body}\n\n{disclaimer}" if disclaimer else body


def draft_text(answer: str) -> str:
    """The final response while it is being written."""
    return f"{answer}\n\n{WRITING}"


CAPPED = "_Reasoning was capped to leave room for the answer._"


def thinking_title(answer: Answer) -> str:
    cut = answer.truncated or answer.stopped
    return THINKING_INCOMPLETE if cut and not answer.answer else "Thinking"


WRITING = "_… still writing_"
THINKING_LIVE = "Thinking (being written…)"
THINKING_INCOMPLETE = "Thinking (incomplete)"
STOPPED_HERE = "_Stopped on request: the answer above is unfinished._"
STOPPED_THINKING = (
    "_Stopped on request before the model reached a final answer; its reasoning so far is shown._"
)
ANSWER_BELOW = "_The answer is in the next message; the reasoning is in this message's thread._"
STOP = "Stop"
STOP_NOT_ALLOWED = "Only the person who asked (or an admin) can stop this answer."
STOP_FINISHED = "This answer is already finished."


EMPTY_QUESTION = "Please include a question, for example: “What are the causes of chest pain?”"


def too_long(length: int, limit: int) -> str:
    return (
        f"That question is {length:,} characters long; the limit is {limit:,}. "
        "Please shorten it (a summary of the case is usually enough)."
    )


PLACEHOLDER = "Thinking…"
PARTLY_POSTED = (
    "Sorry, the rest of this answer could not be posted. Please ask again, or ask for a shorter "
    "answer."
)
HISTORY_UNREADABLE = (
    "Sorry, I couldn't read the earlier messages of this conversation, so I can't answer a "
    "follow-up safely right now. Please try again in a minute, or ask again with the details of "
    "the case."
)

ADMIN_LOGS = "an admin can find the details in the logs"
_REFUSED = frozenset(range(400, 500)) - {408, 429}  # a model server's "no" to the request as sent


def broken(request_id: str) -> str:
    """Something failed that the asker can do nothing about but try again."""
    return (
        f"Sorry, something went wrong while answering (request {request_id}). Please try again; "
        f"if it happens again, {ADMIN_LOGS}."
    )


def engine_failed(error: EngineError, request_id: str) -> str:
    """What an asker is told when the model could not answer: what happened in plain words,
    whether to try again, and the request id; the error's own text is for the log only."""
    asked = f"(request {request_id})"
    if isinstance(error, QueueFull):
        return f"Sorry, too many questions are waiting {asked}. Please ask again in a minute."
    if isinstance(error, EngineClosed):
        return f"Sorry, the bot is restarting {asked}. Please ask again in a minute."
    if isinstance(error, PromptTooLong):
        return (
            f"Sorry, this question is too long for the model {asked}. Please shorten it (a "
            "summary of the case is usually enough); if a short question gets this reply too, "
            f"{ADMIN_LOGS}."
        )
    if isinstance(error, ModelServerError) and error.status in _REFUSED:
        return (
            f"Sorry, the model server turned this question down {asked}, so asking again won't "
            "help for now. Please tell an admin; they can find the details in the logs."
        )
    if isinstance(error, ModelServerError):
        return (
            f"Sorry, the model server is not answering right now {asked}. Please try again in a "
            f"few minutes; {ADMIN_LOGS}."
        )
    return broken(request_id)


CUT_SHORT = (
    "Sorry, the bot was restarted before this answer was finished. Please ask again in a minute."
)
RESTARTING = (
    "The bot is restarting and can't take new questions right now. Please ask again in a minute."
)

TIMEOUT = (
    "Sorry, the answer took too long and was stopped. Please try again, or ask a narrower question."
)


NOT_IN_THIS_CHANNEL = (
    "I'm not enabled in this channel. Please ask me in one of the channels set up for me, "
    "or ask the people who run this bot to add this one."
)
NOT_IN_THIS_SERVER = (
    "I'm not enabled on this server. Please ask the people who run this bot to add it."
)
NO_DIRECT_MESSAGES = (
    "I don't answer direct messages here. Please ask me in a channel where I'm enabled."
)
NOT_ALLOWED = (
    "Sorry, you're not on the list of people who can ask me questions. "
    "Please ask the people who run this bot to add you."
)
NO_ROLES_IN_DIRECT_MESSAGES = (
    "I can't see your server roles in a direct message, and only some roles may ask me. "
    "Please ask me in a channel of your server instead."
)
ONE_AT_A_TIME = (
    "I'm still answering your previous question. Please wait for that answer, then ask again."
)


def _duration(seconds: float, exact: bool = False) -> str:
    """A friendly duration: "45 seconds", "2 minutes", "1 hour"; rounded, or (`exact`) in the
    largest unit that divides it ("90 minutes", not "2 hours")."""
    seconds = max(1, round(seconds))
    if exact:
        unit, size = next((u, n) for u, n in (("hour", 3600), ("minute", 60), ("second", 1))
                          if seconds % n == 0)  # fmt: skip
        n = seconds // size
    elif seconds < 60:
        n, unit = seconds, "second"
    elif seconds < 3600:
        n, unit = round(seconds / 60), "minute"
    else:
        n, unit = round(seconds / 3600), "hour"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def rate_limited(limit: int, window: float, wait: float) -> str:
    questions = "question" if limit == 1 else "questions"
    per = _duration(window, exact=True).removeprefix("1 ")  # "per hour", "per 90 minutes"
    return (
        f"You've reached the limit of {limit} {questions} per {per}. "
        f"Please try again in about {_duration(wait)}."
    )
