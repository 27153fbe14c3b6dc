"""The Discord quiz: the real discord.py client against the fake Discord; scripted engine."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.core import texts as texts_core
from bot.core.admission import AccessPolicy, Admission
from bot.discord import history as history_module
from bot.discord import quiz as discord_quiz
from bot.discord import quiz_surface
from bot.quiz import texts
from bot.quiz.item import QuizItem
from bot.quiz.registry import Quizzes
from bot.quiz.schedule import CaseOfTheDay, parse_schedule
from inference.engine import Message
from inference.scripted import Script, ScriptedEngine
from tests.fakes.discord import EPHEMERAL, DiscordLimits, FakeDiscord, buttons
from tests.harness.discord import DISCLAIMER, JSON
from tests.harness.discord_quiz import (
    answer_id,
    quiz_serving,
    quizzes_of,
    reveal_id,
    start_quiz,
    thread_of,
)
from tests.harness.polling import until
from tests.harness.quiz import ITEM

THINKING = "Scurvy comes from a lack of vitamin C, needed for collagen."
FINAL = "The answer is B, vitamin C."
EXPLANATION = f"## Thinking\n\n{THINKING}\n\n## Final Response\n\n{FINAL}"


def explain_b(prompt: str, stall_at: int | None = None) -> Script:
    chunks = tuple(EXPLANATION[i : i + 9] for i in range(0, len(EXPLANATION), 9))
    return Script(chunks, stall_at=stall_at)


@pytest.fixture
async def engine() -> AsyncIterator[ScriptedEngine]:
    engine = ScriptedEngine(explain_b)
    await engine.start()
    yield engine
    await engine.close(grace=0)


@pytest.fixture
def quizzes(engine: ScriptedEngine) -> Quizzes:
    return quizzes_of(engine, seconds=60)


@pytest.fixture(autouse=True)
def quick_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord_quiz, "COUNT_INTERVAL", 0.1)


def callbacks(fake: FakeDiscord, interaction: JSON) -> list[JSON]:
    return [c.json for c in fake.calls_to("POST", rf"^/interactions/{interaction['id']}/")]


async def whisper(fake: FakeDiscord, interaction: JSON) -> str:
    """The ephemeral answer to a click."""
    [callback] = await until(lambda: callbacks(fake, interaction))
    assert callback["type"] == 4 and callback["data"]["flags"] == EPHEMERAL
    return callback["data"]["content"]


def quiz_id(message: JSON) -> str:
    return buttons(message)[0]["custom_id"].split(":")[1]


async def test_quiz_in_a_guild_is_posted_with_a_button_per_option_and_reveal(
    fake: FakeDiscord, quizzes: Quizzes
) -> None:
    async with quiz_serving(fake, quizzes):
        sent = time.monotonic()
        interaction = await fake.dispatch_interaction("quiz")
        [callback] = await fake.wait_for_calls("POST", "/callback$", timeout=3)
        posted = fake.originals[interaction["token"]]
        quiz = copy.deepcopy(posted)
        open_quiz = quizzes.get(quiz_id(quiz))

    assert sorted(c["name"] for c in fake.commands[fake.guild_id]) == ["ask", "quiz"]
    assert interaction["data"]["guild_id"] == fake.guild_id
    assert callback.json["type"] == 4 and callback.at - sent < 3
    assert not callback.json["data"].get("flags")  # everyone in the channel sees it
    assert quiz["content"].startswith("**Quiz**\n\nWhich vitamin deficiency causes scurvy?")
    assert "**B.** Vitamin C" in quiz["content"]
    assert f"or when <@{fake.human['id']}> presses **Reveal**" in quiz["content"]
    assert quiz["content"].endswith("No answers yet.")
    assert [b["label"] for b in buttons(quiz)] == ["A", "B", "C", "D", "Reveal"]
    assert all(f"huatuo-quiz:{quiz_id(quiz)}:" in b["custom_id"] for b in buttons(quiz))
    assert open_quiz is not None and open_quiz.message == quiz["id"]
    assert open_quiz.starter == fake.human["id"]
    # Stopping the bot reveals the open quiz.
    assert posted["content"].startswith("**Quiz** (closed)") and buttons(posted) == []
    stopping = thread_of(fake, posted)[0]["content"]
    assert stopping.startswith("The bot is restarting, so here is the answer now.")


async def test_starting_a_quiz_follows_the_allow_lists(fake: FakeDiscord, quizzes: Quizzes) -> None:
    educator = await fake.add_role("Educator")
    teacher = fake.make_user("teacher", roles=(educator,))
    admission = Admission({"discord": AccessPolicy(groups=frozenset({educator}))})
    async with quiz_serving(fake, quizzes, admission=admission):
        refused = await whisper(fake, await fake.dispatch_interaction("quiz"))
        quiz = copy.deepcopy(await start_quiz(fake, teacher))

    assert refused == texts_core.NOT_ALLOWED
    assert quiz["content"].startswith("**Quiz**") and len(buttons(quiz)) == 5
    assert len(quizzes.engine.requests) == 1  # only the allowed quiz was started


async def test_answers_count_once_per_learner_and_the_reveal_shows_tally_and_explanation(
    fake: FakeDiscord, quizzes: Quizzes
) -> None:
    bob, carol, dave = (fake.make_user(name) for name in ("bob", "carol", "dave"))
    async with quiz_serving(fake, quizzes):
        quiz = await start_quiz(fake)
        said = []
        for user, letter in ((bob, "A"), (carol, "B"), (bob, "B"), (dave, "C")):
            click = await fake.click_button(quiz, answer_id(quiz, letter), user)
            said.append(await whisper(fake, click))
        await until(lambda: quiz["content"].endswith("3 answers so far."))
        clicked = time.monotonic()
        reveal = await fake.click_button(quiz, reveal_id(quiz))
        thread = await until(lambda: len(thread_of(fake, quiz)) == 3 and thread_of(fake, quiz))

    assert said == [
        texts.confirmation(ITEM, "A", changed=False),
        texts.confirmation(ITEM, "B", changed=False),
        texts.confirmation(ITEM, "B", changed=True),
        texts.confirmation(ITEM, "C", changed=False),
    ]
    assert said[2] == (
        "Your answer changed to **B**: Vitamin C. You can change it until the answer is revealed."
    )
    # The click on Reveal is answered by closing the quiz message itself.
    [closing] = callbacks(fake, reveal)
    assert closing["type"] == 7 and closing["data"]["components"] == []
    [answered] = fake.calls_to("POST", rf"^/interactions/{reveal['id']}/")
    assert answered.at - clicked < 3  # Discord fails a click not answered within 3 s
    assert buttons(quiz) == []
    assert quiz["content"].startswith("**Quiz** (closed)")
    assert "**B.** Vitamin C ✅" in quiz["content"]
    assert "Revealed: the correct answer is B. 3 answers so far." in quiz["content"]
    [started] = fake.threads
    assert started.starter is quiz
    assert started.channel["name"] == "Quiz: Which vitamin deficiency causes scurvy?"
    result, explanation, thinking = thread
    assert result["content"] == (
        "**The correct answer is B: Vitamin C**\n\n**Answers**\nA: 0\nB: 2 ✅\nC: 1\nD: 0\n"
        "2 of 3 learners chose the correct answer.\n\n_Question from a test bank._"
    )
    assert explanation["content"] == (
        f"**The model's answer** (it chose B: correct):\n\n{FINAL}\n\n{DISCLAIMER}"
    )
    assert explanation["message_reference"]["message_id"] == result["id"]
    assert thinking["content"] == f"**Thinking**\n\n{THINKING}"


async def test_only_the_starter_reveals_and_a_second_reveal_does_nothing(
    fake: FakeDiscord, quizzes: Quizzes
) -> None:
    bob = fake.make_user("bob")
    async with quiz_serving(fake, quizzes):
        quiz = await start_quiz(fake)
        refused = await whisper(fake, await fake.click_button(quiz, reveal_id(quiz), bob))
        assert buttons(quiz) and not fake.threads
        # A double click: both clicks leave before the first one closes the quiz.
        first, second = await asyncio.gather(
            fake.click_button(quiz, reveal_id(quiz)), fake.click_button(quiz, reveal_id(quiz))
        )
        await until(lambda: len(thread_of(fake, quiz)) == 3)
        await until(lambda: callbacks(fake, second))
        await asyncio.sleep(0.3)  # room for anything a second reveal might wrongly post

    assert refused == (
        f"Sorry, only the person who started this quiz (<@{fake.human['id']}>) can reveal the "
        "answer. It will be revealed automatically in 1 minute."
    )
    assert [c["type"] for c in callbacks(fake, first)] == [7]
    assert callbacks(fake, second) == [{"type": 6}]  # acknowledged, and nothing changes
    assert len(fake.threads) == 1 and len(thread_of(fake, quiz)) == 3
    assert len(quizzes.engine.requests) == 1  # one explanation


async def test_the_timer_reveals_the_quiz(fake: FakeDiscord, engine: ScriptedEngine) -> None:
    quizzes = quizzes_of(engine, seconds=0.5)
    async with quiz_serving(fake, quizzes):
        quiz = await start_quiz(fake)
        await whisper(fake, await fake.click_button(quiz, answer_id(quiz, "B")))
        thread = await until(lambda: len(thread_of(fake, quiz)) == 3 and thread_of(fake, quiz))

    assert quiz["content"].startswith("**Quiz** (closed)") and buttons(quiz) == []
    # No click to answer: closed through the channel, as the interaction's token may be expired.
    edits = fake.calls_to("PATCH", rf"^/channels/{fake.channel_id}/messages/{quiz['id']}$")
    assert edits[-1].json["components"] == []
    assert thread[0]["content"].startswith("Time is up. **The correct answer is B: Vitamin C**")
    assert "1 of 1 learner chose the correct answer." in thread[0]["content"]
    assert len(quizzes) == 0


async def test_an_explanation_not_ready_at_the_reveal_follows_when_it_is(
    fake: FakeDiscord, engine: ScriptedEngine
) -> None:
    engine.script_for = lambda prompt: explain_b(prompt, stall_at=3)
    quizzes = quizzes_of(engine, seconds=60, explain_wait=0.1)
    async with quiz_serving(fake, quizzes):
        quiz = await start_quiz(fake)
        await fake.click_button(quiz, reveal_id(quiz))
        result, note = await until(
            lambda: len(thread_of(fake, quiz)) == 2 and thread_of(fake, quiz)
        )
        assert note["content"] == texts.EXPLANATION_PENDING
        engine.release.set()
        await until(lambda: len(thread_of(fake, quiz)) == 3)

    assert result["content"].startswith("**The correct answer is B")
    assert note["content"].startswith("**The model's answer** (it chose B: correct)")
    assert thread_of(fake, quiz)[2]["content"].startswith("**Thinking**")


async def test_a_failed_explanation_is_said_in_the_thread(
    fake: FakeDiscord, engine: ScriptedEngine, caplog: pytest.LogCaptureFixture
) -> None:
    engine.script_for = lambda prompt: Script(("## Thinking\n\n", "Scurvy"), fail_at=1)
    quizzes = quizzes_of(engine, seconds=60)
    async with quiz_serving(fake, quizzes):
        quiz = await start_quiz(fake)
        await fake.click_button(quiz, reveal_id(quiz))
        result, failed = await until(
            lambda: len(thread_of(fake, quiz)) == 2 and thread_of(fake, quiz)
        )

    assert result["content"].startswith("**The correct answer is B: Vitamin C**")
    [asked] = engine.requests
    assert failed["content"] == (
        f"Sorry, the model could not explain this question (request {asked.request.request_id}); "
        "an admin can find the details in the logs."
    )
    assert "failed on purpose" in caplog.text


async def test_replies_to_an_open_quiz_are_not_answered_before_the_reveal(
    fake: FakeDiscord, quizzes: Quizzes
) -> None:
    async with quiz_serving(fake, quizzes):
        quiz = await start_quiz(fake)
        asked = await fake.dispatch_message(
            "What is the answer?", mentions_bot=True, message_reference=quiz["id"]
        )
        await fake.dispatch_message("I think it is C", message_reference=quiz["id"])
        [told] = await until(
            lambda: [
                m
                for m in fake.channel_messages(fake.channel_id)
                if (m.get("message_reference") or {}).get("message_id") == asked["id"]
            ]
        )
        await asyncio.sleep(0.3)  # room for a wrong answer to the other reply
        assert len(fake.channel_messages(fake.channel_id)) == 4  # quiz, two replies, the notice

    assert told["content"] == texts.WAIT_FOR_REVEAL
    assert len(quizzes.engine.requests) == 1  # the quiz's explanation only


LONG_CASE = " ".join(
    f"Finding {i}: the patient reports fatigue and bleeding gums." for i in range(32)
)
LONG_ITEM = QuizItem("long-1", LONG_CASE, ITEM.options, "B")


async def test_a_case_too_long_for_one_message_goes_above_the_buttons(
    fake: FakeDiscord, engine: ScriptedEngine
) -> None:
    case, long_item = LONG_CASE, LONG_ITEM
    quizzes = quizzes_of(engine, long_item, seconds=60)
    async with quiz_serving(fake, quizzes):
        interaction = await fake.dispatch_interaction("quiz")
        quiz = await until(
            lambda: [m for m in fake.channel_messages(fake.channel_id) if buttons(m)]
        )
        await fake.click_button(quiz[0], reveal_id(quiz[0]))
        await until(lambda: len(thread_of(fake, quiz[0])) == 3)

    first, with_buttons = fake.channel_messages(fake.channel_id)
    assert first is fake.originals[interaction["token"]]
    assert len(texts.question_text(long_item, "Quiz", 60, "<@1>")) > 2000
    assert first["content"] == f"**Quiz**\n\n{case}" and buttons(first) == []
    assert len(with_buttons["content"]) <= 2000
    assert with_buttons["content"].startswith(f"**Quiz** (closed)\n\n{quiz_surface.CASE_ABOVE}")
    assert "**B.** Vitamin C ✅" in with_buttons["content"]


async def test_the_case_of_the_day_lands_in_the_configured_channel_once_a_day(
    fake: FakeDiscord, engine: ScriptedEngine
) -> None:
    quizzes = quizzes_of(engine, seconds=60, admins={"discord": {fake.human["id"]}})
    now = datetime(2025, 3, 27, 12, 0, tzinfo=UTC)

    async def sleep(seconds: float) -> None:
        nonlocal now
        now += timedelta(seconds=seconds)
        if now > datetime(2025, 3, 29, 12, 0, tzinfo=UTC):
            raise asyncio.CancelledError
        await asyncio.sleep(0)

    async with quiz_serving(fake, quizzes) as adapter:
        schedule = parse_schedule(f"discord:{fake.channel_id} 08:00 Europe/London")
        scheduler = CaseOfTheDay(
            schedule, {"discord": adapter.post_quiz}, clock=lambda: now, sleep=sleep
        )
        with pytest.raises(asyncio.CancelledError):
            await scheduler.run()
        posted = copy.deepcopy(fake.channel_messages(fake.channel_id))
        # An admin may reveal a case of the day nobody started.
        await fake.click_button(posted[0], reveal_id(posted[0]))
        await until(lambda: len(thread_of(fake, posted[0])) == 3)
        assert len(quizzes) == 1

    assert len(posted) == 2
    for case in posted:
        assert case["content"].startswith("**Case of the day**")
        assert "presses **Reveal**" not in case["content"]  # nobody started it
        assert "webhook_id" not in case  # an ordinary message, not an interaction's
        assert [b["label"] for b in buttons(case)] == ["A", "B", "C", "D", "Reveal"]


async def test_a_case_of_the_day_without_admins_has_no_reveal_button(
    fake: FakeDiscord, engine: ScriptedEngine
) -> None:
    quizzes = quizzes_of(engine, seconds=60)
    async with quiz_serving(fake, quizzes) as adapter:
        await adapter.post_quiz(fake.channel_id)
        with pytest.raises(discord.NotFound):
            await adapter.post_quiz("1234")
        [case] = copy.deepcopy(fake.channel_messages(fake.channel_id))
        assert len(quizzes) == 1  # the one that could not be posted was forgotten

    assert [b["label"] for b in buttons(case)] == ["A", "B", "C", "D"]


async def test_a_quiz_in_a_direct_message_is_revealed_in_the_conversation(
    fake: FakeDiscord, quizzes: Quizzes
) -> None:
    async with quiz_serving(fake, quizzes, sync_guild=False):
        interaction = await fake.dispatch_interaction("quiz", guild=False)
        quiz = await until(lambda: fake.originals.get(interaction["token"]))
        await whisper(fake, await fake.click_button(quiz, answer_id(quiz, "D")))
        await fake.click_button(quiz, reveal_id(quiz))
        dm = await until(lambda: len(dm_of(fake)) == 4 and dm_of(fake))

    assert [c["name"] for c in fake.commands["global"]] == ["ask", "quiz"]
    assert not fake.threads
    assert dm[0] is quiz and quiz["content"].startswith("**Quiz** (closed)")
    assert dm[1]["content"].startswith("**The correct answer is B: Vitamin C**")
    assert "0 of 1 learner chose the correct answer." in dm[1]["content"]
    assert dm[2]["content"].startswith("**The model's answer**")
    assert dm[3]["content"].startswith("**Thinking**")


def dm_of(fake: FakeDiscord) -> list[JSON]:
    """The bot's visible messages in alice's DM (not the ephemeral confirmations)."""
    messages = fake.channel_messages(fake.dm_channel_id(fake.human))
    return [m for m in messages if not m["flags"] & EPHEMERAL]


async def test_a_question_in_the_thread_after_the_reveal_carries_the_quiz(
    fake: FakeDiscord, quizzes: Quizzes
) -> None:
    async with quiz_serving(fake, quizzes):
        quiz = await start_quiz(fake)
        await fake.click_button(quiz, answer_id(quiz, "D"), fake.make_user("bob"))
        await fake.click_button(quiz, reveal_id(quiz))
        await until(lambda: len(thread_of(fake, quiz)) == 3)
        [thread] = fake.threads
        asked = await fake.dispatch_message("Why not vitamin D?", channel_id=thread.channel["id"])
        await until(lambda: len(quizzes.engine.requests) == 2 and len(thread_of(fake, quiz)) >= 6)

    result, explanation = thread_of(fake, quiz)[:2]
    assert quizzes.engine.requests[1].request.messages == (
        Message("user", f"{quiz['content']}\n\n{result['content']}"),
        Message("assistant", explanation["content"].removesuffix(f"\n\n{DISCLAIMER}")),
        Message("user", asked["content"]),
    )


async def test_a_question_in_the_thread_of_a_long_case_carries_the_case_above(
    fake: FakeDiscord, engine: ScriptedEngine
) -> None:
    quizzes = quizzes_of(engine, LONG_ITEM, seconds=60)
    async with quiz_serving(fake, quizzes):
        await fake.dispatch_interaction("quiz")
        [quiz] = await until(
            lambda: [m for m in fake.channel_messages(fake.channel_id) if buttons(m)]
        )
        await fake.click_button(quiz, reveal_id(quiz))
        await until(lambda: len(thread_of(fake, quiz)) == 3)
        [thread] = fake.threads
        asked = await fake.dispatch_message("Why not vitamin D?", channel_id=thread.channel["id"])
        await until(lambda: len(engine.requests) == 2 and len(thread_of(fake, quiz)) >= 6)

    case, closed = fake.channel_messages(fake.channel_id)
    result, explanation = thread_of(fake, quiz)[:2]
    assert case["content"] == f"**Quiz**\n\n{LONG_CASE}"
    assert engine.requests[1].request.messages == (
        Message("user", f"{case['content']}\n\n{closed['content']}\n\n{result['content']}"),
        Message("assistant", explanation["content"].removesuffix(f"\n\n{DISCLAIMER}")),
        Message("user", asked["content"]),
    )


@pytest.mark.parametrize("item", [ITEM, LONG_ITEM], ids=["case", "long case"])
async def test_a_reply_to_the_explanation_of_a_quiz_in_a_direct_message_carries_the_quiz(
    fake: FakeDiscord, engine: ScriptedEngine, item: QuizItem
) -> None:
    quizzes = quizzes_of(engine, item, seconds=60)
    async with quiz_serving(fake, quizzes, sync_guild=False):
        await fake.dispatch_interaction("quiz", guild=False)
        [quiz] = await until(lambda: [m for m in dm_of(fake) if buttons(m)])
        await fake.click_button(quiz, reveal_id(quiz))
        await until(lambda: dm_of(fake)[-1]["content"].startswith("**Thinking**"))
        *posed, result, explanation, _ = dm_of(fake)
        asked = await fake.dispatch_message(
            "Why not vitamin D?", guild=False, message_reference=explanation["id"]
        )
        await until(lambda: len(engine.requests) == 2 and len(dm_of(fake)) == len(posed) + 6)

    assert posed[-1] is quiz and len(posed) == (2 if item is LONG_ITEM else 1)
    # With no thread, the model's answer replies to the quiz it explains, below the tally.
    assert result["content"].startswith("**The correct answer is B: Vitamin C**")
    assert explanation["message_reference"]["message_id"] == quiz["id"]
    assert engine.requests[1].request.messages == (
        Message("user", "\n\n".join(m["content"] for m in posed)),  # the case above, if long
        Message("assistant", explanation["content"].removesuffix(f"\n\n{DISCLAIMER}")),
        Message("user", asked["content"]),
    )


def test_thinking_posted_before_a_quiz_in_a_thread_stays_out_of_its_history() -> None:
    """A bot thread opened on an answer starts with its thinking; a /quiz there must not carry
    that thinking to the model (history: questions and final answers only)."""
    bot_id, disclaimer = 1, "_Check._"
    ids = iter(range(100, 200))

    def post(content: str, *, replying_to: int | None = None, by: int = bot_id) -> Any:
        reference = None if replying_to is None else SimpleNamespace(message_id=replying_to)
        author = SimpleNamespace(id=by, bot=by == bot_id)
        return SimpleNamespace(
            id=next(ids), content=content, author=author, reference=reference,
            interaction_metadata=None,
        )  # fmt: skip

    thinking = [post("**Thinking**\n\nsecret reasoning"), post("more secret reasoning")]
    quiz = post("**Quiz** (closed)\n\nWhich vitamin?\n\n**B.** Vitamin C ✅")
    reveal = post("**The correct answer is B: Vitamin C**")
    explanation = post(f"The model's answer: B.\n\n{disclaimer}", replying_to=reveal.id)
    turns = history_module._turns([*thinking, quiz, reveal, explanation], bot_id, disclaimer)
    assert turns == [
        Message("user", f"{quiz.content}\n\n{reveal.content}"),
        Message("assistant", "The model's answer: B."),
    ]


async def test_a_quiz_under_discords_limits_and_faults_is_counted_and_revealed_once(
    fake: FakeDiscord, engine: ScriptedEngine
) -> None:
    """The count edit failing once, the reveal's thread refused once, the reveal's response lost:
    the learners still see the count, one thread with one reveal and the explanation."""
    fake.limits = DiscordLimits(scale=20.0)
    quizzes = quizzes_of(engine, seconds=1.0)
    async with quiz_serving(fake, quizzes):
        quiz = await start_quiz(fake)
        fake.fail_next("PATCH", rf"/messages/{quiz['id']}$", status=503)  # the count edit
        await whisper(fake, await fake.click_button(quiz, answer_id(quiz, "B")))
        await until(lambda: quiz["content"].endswith("1 answer so far."), timeout=10)
        fake.fail_next("POST", r"/threads$", status=503)
        fake.lose_next("POST", r"^/channels/\d+/messages$")  # the reveal, in the thread
        await until(lambda: len(thread_of(fake, quiz)) >= 3, timeout=30)
        await asyncio.sleep(0.2)
    reveal, explanation, thinking = thread_of(fake, quiz)
    assert reveal["content"].startswith("Time is up. **The correct answer is B: Vitamin C**")
    assert FINAL in explanation["content"] and thinking["content"].startswith("**Think")
    assert len(fake.threads) == 1
    assert any(c.lost for c in fake.calls) and [c.status for c in fake.calls].count(503) == 2
