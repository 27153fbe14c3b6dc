"""The platform-neutral quiz: question bank, answers and reveal, timer, explanation, schedule."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.cli import check
from bot.config import Settings
from bot.quiz import texts
from bot.quiz.bank import MEDQA_SOURCE, BankError, QuestionBank
from bot.quiz.explanation import ExplanationFailed
from bot.quiz.registry import Quizzes, TooManyQuizzes
from bot.quiz.schedule import CaseOfTheDay, DailyPost, parse_schedule
from bot.quiz.session import Quiz, Reveal, RevealRefused
from inference.scripted import Script, ScriptedEngine
from tests.harness.quiz import ITEM, SAMPLING, WHERE, answer_b, bank_of


def row(question: str = "Q?", answer: str = "A", **extra: object) -> str:
    options = {"A": "yes", "B": "no"}
    return json.dumps({"question": question, "options": options, "answer_idx": answer, **extra})


# ---- the question bank ---------------------------------------------------------------------


def test_the_shipped_bank_holds_the_200_medqa_items_with_their_attribution() -> None:
    bank = QuestionBank.load()
    assert len(bank) == 200 and bank.problems == []
    first = bank.items[0]
    assert first.question.startswith("Two weeks after undergoing an emergency cardiac")
    assert list(first.options) == ["A", "B", "C", "D"]
    assert first.answer == "B" and first.options["B"] == "Cholesterol embolization"
    assert first.source == MEDQA_SOURCE and "Jin et al. 2021" in first.source
    assert first.prompt.startswith("Please answer the following multiple-choice question:\n")
    assert first.prompt.endswith(
        "\nC. Eosinophilic granulomatosis with polyangiitis\nD. Polyarteritis nodosa"
    )
    notice = Path("bot/quiz/data/NOTICE.md").read_text()
    assert "github.com/jind11/MedQA" in notice and "MIT" in notice


def test_bad_rows_are_reported_with_their_line_and_skipped(tmp_path: Path, caplog) -> None:
    path = tmp_path / "ward.jsonl"
    path.write_text(
        "\n".join(
            [
                row("First?", source="Ward round 3"),
                "{not json",
                "",
                row("No answer?", answer="E"),
                row("Second?"),
            ]
        ),
        encoding="utf-8",
    )
    bank = QuestionBank.load(str(path))
    assert [item.question for item in bank.items] == ["First?", "Second?"]
    assert [item.id for item in bank.items] == ["ward-1", "ward-5"]
    assert [item.source for item in bank.items] == ["Ward round 3", ""]
    assert bank.problems == [
        "2: invalid JSON (Expecting property name enclosed in double quotes)",
        "4: answer_idx 'E' is not one of the options A, B",
    ]
    assert "line 2: invalid JSON" in caplog.text and "line 4: answer_idx" in caplog.text


def test_a_bank_without_usable_rows_or_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{}\n", encoding="utf-8")
    with pytest.raises(BankError, match="no usable question"):
        QuestionBank.load(empty)
    with pytest.raises(BankError, match="Cannot read the question bank"):
        QuestionBank.load(tmp_path / "missing.jsonl")


def test_picks_do_not_repeat_recent_items(tmp_path: Path) -> None:
    path = tmp_path / "ten.jsonl"
    path.write_text("\n".join(row(f"Q{n}?") for n in range(10)), encoding="utf-8")
    bank = QuestionBank.load(path)
    picks = [bank.pick().id for _ in range(200)]
    for start in range(len(picks) - 5):
        assert len(set(picks[start : start + 6])) == 6, "an item came back within 5 picks"
    assert len(set(picks)) == 10, "every item comes up"


# ---- one quiz --------------------------------------------------------------------------------


def quiz(admins: object = ()) -> Quiz:
    return Quiz(ITEM, "U-starter", WHERE, deadline=0.0, admins=admins)  # type: ignore[arg-type]


def test_each_learner_counts_once_with_their_latest_answer() -> None:
    q = quiz()
    assert q.answer("U1", "A") and q.answer("U2", "B") and q.answer("U1", "B")
    assert q.answered == 2
    tally = q.tally()
    assert tally.counts == {"A": 0, "B": 2, "C": 0, "D": 0}
    assert (tally.total, tally.right, tally.correct) == (2, 2, "B")
    with pytest.raises(ValueError):
        q.answer("U3", "E")


def test_only_the_starter_or_an_admin_reveals_and_only_once() -> None:
    q = quiz(admins={"U-admin"})
    q.answer("U1", "C")
    with pytest.raises(RevealRefused):
        q.reveal("U1")
    assert not q.revealed and q.may_reveal("U-admin") and not q.may_reveal("U1")
    result = q.reveal("U-starter")
    assert isinstance(result, Reveal) and result.reason == "starter"
    assert result.tally.counts == {"A": 0, "B": 0, "C": 1, "D": 0}
    assert q.reveal("U-starter") is None
    assert q.reveal(None) is None and q.reveal("U1") is None
    assert not q.answer("U2", "B"), "answers after the reveal do not count"
    assert q.tally().total == 1


def test_an_admin_or_the_timer_reveals_a_case_of_the_day() -> None:
    case = Quiz(ITEM, None, WHERE, 0.0, admins=lambda user: user == "U-admin")
    assert not case.may_reveal("U1")
    with pytest.raises(RevealRefused):
        case.reveal("U1")
    assert case.reveal("U-admin").reason == "admin"  # type: ignore[union-attr]
    timed = Quiz(ITEM, None, WHERE, 0.0)
    assert timed.reveal(None).reason == "timer"  # type: ignore[union-attr]


def test_the_reveal_text_has_the_answer_the_tally_and_the_source() -> None:
    q = quiz()
    for learner, letter in [("U1", "B"), ("U2", "A"), ("U3", "B"), ("U2", "B"), ("U4", "D")]:
        q.answer(learner, letter)
    text = texts.reveal_text(q.reveal(None))  # type: ignore[arg-type]
    assert text == (
        "Time is up. **The correct answer is B: Vitamin C**\n\n"
        "**Answers**\nA: 0\nB: 3 ✅\nC: 0\nD: 1\n"
        "3 of 4 learners chose the correct answer.\n\n_Question from a test bank._"
    )


def test_durations_read_naturally() -> None:
    assert [texts.duration(s) for s in (1, 45, 60, 600, 3600, 5400, 21600)] == [
        "1 second",
        "45 seconds",
        "1 minute",
        "10 minutes",
        "1 hour",
        "1 hour 30 minutes",
        "6 hours",
    ]


# ---- the registry: timer, explanation, shutdown -----------------------------------------------


def recorder() -> tuple[list[Reveal], Callable[[Reveal], Awaitable[None]]]:
    """A publish function for quizzes, and the list of what it was given."""
    published: list[Reveal] = []

    async def publish(reveal: Reveal) -> None:
        published.append(reveal)

    return published, publish


async def started(engine: ScriptedEngine) -> ScriptedEngine:
    await engine.start()
    return engine


async def test_the_timer_reveals_once_and_the_explanation_is_ready() -> None:
    engine = await started(ScriptedEngine(answer_b))
    quizzes = Quizzes(bank_of(ITEM), engine, SAMPLING, seconds=0.2)
    published, publish = recorder()

    try:
        q = quizzes.open("U-starter", WHERE, publish)
        assert quizzes.get(q.id) is q and q.item is ITEM
        q.answer("U1", "B")
        await asyncio.sleep(0.5)
        assert [r.reason for r in published] == ["timer"]
        assert quizzes.get(q.id) is None and len(quizzes) == 0
        assert quizzes.reveal(q, "U-starter") is None, "a second reveal does nothing"
        answer = await q.explanation.wait(1.0)  # type: ignore[union-attr]
        assert answer is not None and answer.answer == "The answer is B."
        assert answer.thinking == "Scurvy is vitamin C deficiency."
        assert q.explanation.choice(answer) == "B"  # type: ignore[union-attr]
        [request] = engine.requests
        assert request.request.messages[0].content == ITEM.prompt
    finally:
        await engine.close(grace=0)


async def test_a_person_revealing_stops_the_timer() -> None:
    engine = await started(ScriptedEngine(answer_b))
    quizzes = Quizzes(bank_of(ITEM), engine, SAMPLING, seconds=0.2)
    published, publish = recorder()

    try:
        q = quizzes.open("U-starter", WHERE, publish)
        with pytest.raises(RevealRefused):
            quizzes.reveal(q, "U1")
        assert quizzes.reveal(q, "U-starter").reason == "starter"  # type: ignore[union-attr]
        await asyncio.sleep(0.4)
        assert published == [], "the timer no longer fires"
    finally:
        await engine.close(grace=0)


async def test_an_explanation_not_ready_in_time_comes_later_and_failures_are_said() -> None:
    engine = await started(
        ScriptedEngine(lambda q: Script(("## Final Response\n\nB",), stall_at=0))
    )
    quizzes = Quizzes(bank_of(ITEM), engine, SAMPLING, seconds=60)

    async def publish(reveal: Reveal) -> None: ...

    try:
        q = quizzes.open("U-starter", WHERE, publish)
        assert await q.explanation.wait(0.1) is None  # type: ignore[union-attr]
        engine.release.set()
        later = await q.explanation.wait(None)  # type: ignore[union-attr]
        assert later is not None and later.answer == "B"
    finally:
        await engine.close(grace=0)

    failing = await started(ScriptedEngine(lambda q: Script(("x",), fail_at=0)))
    quizzes = Quizzes(bank_of(ITEM), failing, SAMPLING, seconds=60)
    try:
        q = quizzes.open("U-starter", WHERE, publish)
        with pytest.raises(ExplanationFailed, match="could not explain this question"):
            await q.explanation.wait(2.0)  # type: ignore[union-attr]
    finally:
        await failing.close(grace=0)


async def test_too_many_open_quizzes_are_refused_and_shutdown_reveals_the_rest() -> None:
    engine = await started(ScriptedEngine(answer_b))
    quizzes = Quizzes(bank_of(ITEM), engine, SAMPLING, seconds=60, max_open=2)
    published, publish = recorder()

    try:
        first = quizzes.open("U1", WHERE, publish)
        quizzes.open("U2", WHERE, publish)
        with pytest.raises(TooManyQuizzes):
            quizzes.open("U3", WHERE, publish)
        case = quizzes.open(None, WHERE, publish, title="Case of the day")  # never skipped
        quizzes.discard(first)
        quizzes.discard(case)
        quizzes.open("U3", WHERE, publish)
        await quizzes.close(grace=1.0)
        assert sorted(r.quiz.starter for r in published) == ["U2", "U3"]  # type: ignore[type-var]
        assert {r.reason for r in published} == {"stopping"} and len(quizzes) == 0
    finally:
        await engine.close(grace=0)


# ---- case of the day -------------------------------------------------------------------------


class Stop(Exception):
    """Raised by the simulated sleep once the simulated period is over."""


class SimulatedTime:
    """A clock and a sleep for CaseOfTheDay: sleeping moves the clock (by `wake(asked)`), and
    further by any suspend of the host that began during the sleep (a suspended host's sleep
    stands still, as the monotonic clock does, while the wall clock goes on)."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.now, self.end = start, end
        self.wake: Callable[[float], float] = lambda asked: asked
        self.suspends: list[tuple[datetime, datetime]] = []  # (asleep from, awake again)
        self.posts: list[tuple[str, datetime]] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        started = self.now
        self.now += timedelta(seconds=self.wake(seconds))
        for asleep, awake in self.suspends:
            if started <= asleep < self.now:
                self.now += awake - asleep
        if self.now > self.end:
            raise Stop
        await asyncio.sleep(0)

    async def post(self, channel: str) -> None:
        self.posts.append((channel, self.now))

    async def run(self, schedule: str) -> list[str]:
        """Run the schedule to the end; the posts as "CHANNEL local-time" strings."""
        entries = parse_schedule(schedule)
        scheduler = CaseOfTheDay(entries, {"slack": self.post}, clock=self.clock, sleep=self.sleep)
        with pytest.raises(Stop):
            await scheduler.run()
        zone = entries[0].zone
        return [f"{c} {t.astimezone(zone):%Y-%m-%d %H:%M %Z}" for c, t in self.posts]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def test_the_case_of_the_day_fires_once_a_day_across_a_dst_change() -> None:
    time = SimulatedTime(utc("2025-03-27 12:00"), utc("2025-04-01 12:00"))
    assert await time.run("slack:C1 08:00 Europe/London") == [
        "C1 2025-03-28 08:00 GMT",
        "C1 2025-03-29 08:00 GMT",
        "C1 2025-03-30 08:00 BST",  # clocks went forward that night: 07:00 UTC
        "C1 2025-03-31 08:00 BST",
        "C1 2025-04-01 08:00 BST",
    ]


async def test_a_skipped_time_fires_after_the_gap_and_a_repeated_time_once() -> None:
    spring = SimulatedTime(utc("2025-03-08 12:00"), utc("2025-03-10 12:00"))
    assert await spring.run("slack:C1 02:30 America/New_York") == [
        "C1 2025-03-09 03:00 EDT",  # 02:30 did not exist that night
        "C1 2025-03-10 02:30 EDT",
    ]
    autumn = SimulatedTime(utc("2025-11-01 12:00"), utc("2025-11-03 12:00"))
    assert await autumn.run("slack:C1 01:30 America/New_York") == [
        "C1 2025-11-02 01:30 EDT",  # 01:30 came twice that night: the first one only
        "C1 2025-11-03 01:30 EST",
    ]


async def test_waking_twice_early_or_late_still_posts_once_a_day() -> None:
    time = SimulatedTime(utc("2025-06-01 12:00"), utc("2025-06-04 12:00"))
    wakes = iter([1.0, 0.0, 0.0, 0.5])  # on time, twice more at once, then early (half-way)
    time.wake = lambda asked: next(wakes, 1.0) * asked
    assert await time.run("slack:C1 09:00 UTC") == [
        "C1 2025-06-02 09:00 UTC",
        "C1 2025-06-03 09:00 UTC",
        "C1 2025-06-04 09:00 UTC",
    ]

    late = SimulatedTime(utc("2025-06-01 12:00"), utc("2025-06-05 20:00"))
    late.suspends = [
        (utc("2025-06-02 08:00"), utc("2025-06-02 11:00")),  # 3 h over the time, same day
        (utc("2025-06-03 20:00"), utc("2025-06-05 14:00")),  # a whole day slept through
    ]
    assert await late.run("slack:C1 09:00 UTC") == [
        "C1 2025-06-02 11:01 UTC",  # within a minute of waking
        "C1 2025-06-03 09:00 UTC",
        # 2025-06-04 was slept through: not posted a day late, but 2025-06-05's comes late
        "C1 2025-06-05 14:01 UTC",
    ]


async def test_a_host_asleep_overnight_and_at_the_time_posts_when_it_wakes_that_day() -> None:
    # Asleep from the evening until after the next day's time: the wake-up must not wait for
    # the rest of a day-long sleep, which would skip a day the bot was up for.
    time = SimulatedTime(utc("2025-06-01 12:00"), utc("2025-06-03 12:00"))
    time.suspends = [(utc("2025-06-01 20:00"), utc("2025-06-02 14:00"))]
    assert await time.run("slack:C1 09:00 UTC") == [
        "C1 2025-06-02 14:01 UTC",
        "C1 2025-06-03 09:00 UTC",
    ]


async def test_a_failed_post_does_not_stop_the_schedule() -> None:
    time = SimulatedTime(utc("2025-06-01 12:00"), utc("2025-06-03 12:00"))
    attempts: list[datetime] = []

    async def broken(channel: str) -> None:
        attempts.append(time.now)
        raise RuntimeError("Slack is down")

    entries = parse_schedule("slack:C1 09:00 UTC; discord:42 10:00 UTC")
    scheduler = CaseOfTheDay(
        entries, {"slack": broken, "discord": time.post}, clock=time.clock, sleep=time.sleep
    )
    with pytest.raises(Stop):
        await scheduler.run()
    assert len(attempts) == 2 and [c for c, _ in time.posts] == ["42", "42"]


def test_schedule_entries_are_validated_with_clear_errors(monkeypatch) -> None:
    assert parse_schedule("") == ()
    [entry] = parse_schedule(" discord:123456789 09:30 America/New_York ")
    assert isinstance(entry, DailyPost) and str(entry) == "discord:123456789 09:30 America/New_York"
    for bad, message in [
        ("slack:C1 8am Europe/London", "is not like"),
        ("teams:C1 08:00 UTC", "platform must be slack or discord"),
        ("slack:C1 24:00 UTC", "is not a time of day"),
        ("slack:C1 08:00 Europe/Londn", "unknown time zone 'Europe/Londn'"),
        ("slack:C1 08:00 UTC, slack:C1 08:00 UTC", "listed twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_schedule(bad)
    monkeypatch.setenv("HUATUO_CASE_OF_THE_DAY", "slack:C1 08:00 Mars/Olympus")
    with pytest.raises(ValidationError, match="HUATUO_CASE_OF_THE_DAY"):
        Settings(_env_file=None)


def test_check_reports_the_quiz_bank_and_the_schedule(tmp_path: Path, capsys) -> None:
    def configured(**quiz: str) -> Callable[[], Settings]:
        base = {"model": "builtin:smollm2", "discord_bot_token": "token"}
        return lambda: Settings(_env_file=None, **base, **quiz)  # type: ignore[arg-type]

    bank = tmp_path / "ward.jsonl"
    bank.write_text(row("First?") + "\n{oops\n", encoding="utf-8")
    assert check(configured(quiz_bank=str(bank), case_of_the_day="discord:42 07:45 UTC")) == 0
    out = capsys.readouterr().out
    assert f"✓ quiz bank: 1 question from {bank} (1 bad row(s) skipped; the first, line 2:" in out
    assert "✓ case of the day: discord:42 07:45 UTC" in out

    assert check(configured(quiz_bank=str(tmp_path / "missing.jsonl"))) == 1
    assert "✗ quiz bank: HUATUO_QUIZ_BANK: Cannot read the question bank" in capsys.readouterr().out
