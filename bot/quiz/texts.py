"""What a quiz says to learners, platform-neutral (Markdown; mentions are passed in ready-made).

The model's own answer is worded where it is made (bot/quiz/explanation.py)."""

from __future__ import annotations

from bot.quiz.item import QuizItem
from bot.quiz.session import Reveal, Tally

CORRECT_MARK = "✅"

QUIZ_TITLE = "Quiz"  # heads a quiz someone started
CASE_TITLE = "Case of the day"  # heads a scheduled one
TITLES = (QUIZ_TITLE, CASE_TITLE)


def duration(seconds: float) -> str:
    """A friendly length of time: "45 seconds", "10 minutes", "1 hour 30 minutes"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} second{'s' * (seconds != 1)}"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} minute{'s' * (minutes != 1)}"
    hours, minutes = divmod(minutes, 60)
    text = f"{hours} hour{'s' * (hours != 1)}"
    return f"{text} {minutes} minute{'s' * (minutes != 1)}" if minutes else text


def options_text(item: QuizItem) -> str:
    return "\n".join(f"**{letter}.** {text}" for letter, text in item.options.items())


def question_text(item: QuizItem, title: str, seconds: float, revealer: str | None) -> str:
    """The quiz message: title, the case, the options, and how it will be revealed.

    `revealer` is the starter's mention (they may reveal early), or None (a case of the day)."""
    early = f", or when {revealer} presses **Reveal**" if revealer else ""
    return (
        f"**{title}**\n\n{item.question.strip()}\n\n{options_text(item)}\n\n"
        f"_Pick an answer with the buttons; you can change it until the reveal. "
        f"The answer is revealed in {duration(seconds)}{early}._"
    )


def answered_text(count: int) -> str:
    """How many have answered so far (never who answered what)."""
    if count == 0:
        return "No answers yet."
    return f"{count} answer{'s' * (count != 1)} so far."


def confirmation(item: QuizItem, letter: str, changed: bool) -> str:
    """Private confirmation of a learner's answer."""
    verb = "changed to" if changed else "is"
    return (
        f"Your answer {verb} **{letter}**: {item.options[letter]}. "
        "You can change it until the answer is revealed."
    )


def tally_text(tally: Tally) -> str:
    """One line per option: the count, the correct one marked."""
    lines = []
    for letter, count in tally.counts.items():
        mark = f" {CORRECT_MARK}" if letter == tally.correct else ""
        lines.append(f"{letter}: {count}{mark}")
    return "\n".join(lines)


def reveal_text(reveal: Reveal) -> str:
    """The reveal in the quiz's thread: why now, the correct answer, the tally, the source."""
    item, tally = reveal.quiz.item, reveal.tally
    why = {
        "timer": "Time is up.",
        "stopping": "The bot is restarting, so here is the answer now.",
    }.get(reveal.reason, "")
    if tally.total == 0:
        right = "Nobody answered this time."
    else:
        learners = f"learner{'s' * (tally.total != 1)}"
        right = f"{tally.right} of {tally.total} {learners} chose the correct answer."
    source = f"\n\n_Question from {item.source}._" if item.source else ""
    return (
        f"{why + ' ' if why else ''}**The correct answer is {item.answer}: "
        f"{item.options[item.answer]}**\n\n"
        f"**Answers**\n{tally_text(tally)}\n{right}{source}"
    )


def closed_question_text(item: QuizItem, title: str, answered: int) -> str:
    """The quiz message once revealed: the question stays, the correct option is marked."""
    options = "\n".join(
        f"**{letter}.** {text}{f' {CORRECT_MARK}' if letter == item.answer else ''}"
        for letter, text in item.options.items()
    )
    return (
        f"**{title}** (closed)\n\n{item.question.strip()}\n\n{options}\n\n"
        f"_Revealed: the correct answer is {item.answer}. {answered_text(answered)} "
        "The tally and the model's explanation follow in its thread, or below it._"
    )


EXPLANATION_PENDING = (
    "The model's explanation is not ready yet; it will appear here in this thread when it is."
)


def reveal_refused(starter: str | None, seconds_left: float) -> str:
    """Private answer to someone who may not reveal the quiz."""
    who = f"the person who started this quiz ({starter})" if starter else "an admin"
    left = f" It will be revealed automatically in {duration(max(0.0, seconds_left))}."
    return f"Sorry, only {who} can reveal the answer.{left}"


WAIT_FOR_REVEAL = (
    "This quiz is still open, so I won't answer in its thread yet: the answer and my explanation "
    "follow here when it is revealed."
)
QUIZ_CLOSED = (
    "This quiz is closed: its answer is in the thread under it. (If there is none, the bot was "
    "restarted before the reveal and the quiz was lost; please start a new one.)"
)
TOO_MANY = "There are too many quizzes open right now. Please reveal one first, or try again later."
