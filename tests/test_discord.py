"""The Discord adapter: the real discord.py client against the fake Discord on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import time
from itertools import pairwise

import pytest

from bot.config import ConfigError
from bot.core import texts
from bot.core.texts import CAPPED
from bot.discord.events import quote, strip_mention, unquote
from bot.discord.surface import NOTICE_MARK, thread_name
from inference.engine import Generation, GenerationRequest, Message, SamplingParams
from inference.local import LocalEngine
from inference.scripted import Script, ScriptedEngine, huatuo_script
from tests.fakes.discord import EPHEMERAL, FakeDiscord
from tests.harness.discord import (
    DISCLAIMER,
    HEARTBEAT_MS,
    make_adapter,
    replies,
    serving,
    thread_messages,
)
from tests.harness.polling import until


def asked_messages(engine: ScriptedEngine, index: int) -> tuple[Message, ...]:
    return engine.requests[index].request.messages


def scripts(engine: ScriptedEngine, special: dict[str, Script]) -> None:
    """Answer these questions with their own scripts, the others with the default one."""
    engine.script_for = lambda question: special.get(question) or huatuo_script(question)


async def test_mention_gets_one_answer_with_the_thinking_in_a_thread(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    async with serving(fake, scripted_engine):
        asked = await fake.dispatch_message("What causes a fever?", mentions_bot=True)
        await until(lambda: thread_messages(fake))

    [answer] = replies(fake, asked)
    assert answer["content"] == f"Answer to: What causes a fever?\n\n{DISCLAIMER}"
    assert fake.calls_to("POST", r"^/channels/\d+/messages$")[0].json["content"] == "Thinking…"
    [thread] = fake.threads
    assert thread.starter is answer and thread.channel["name"] == "What causes a fever?"
    [thinking] = thread_messages(fake)
    assert thinking["content"].startswith("**Thinking**\n\nThe question is: What causes a fever?")
    assert "message_reference" not in thinking
    assert asked_messages(scripted_engine, 0) == (Message("user", "What causes a fever?"),)
    assert [m["id"] for m in fake.channel_messages(fake.channel_id)] == [asked["id"], answer["id"]]


async def test_dm_answer_is_followed_by_the_thinking(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    async with serving(fake, scripted_engine):
        asked = await fake.dispatch_message("Is ibuprofen safe?", guild=False)
        dm = await until(lambda: fake.channel_messages(asked["channel_id"])[2:])

    [answer] = replies(fake, asked)
    assert answer["content"].startswith("Answer to: Is ibuprofen safe?")
    [thinking] = dm
    assert thinking["content"].startswith("**Thinking**") and "message_reference" not in thinking
    assert not fake.threads


async def test_follow_ups_in_the_thread_carry_questions_and_final_answers(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    async with serving(fake, scripted_engine):
        await fake.dispatch_message("What causes a fever?", mentions_bot=True)
        await until(lambda: thread_messages(fake))
        thread_id = fake.threads[0].channel["id"]
        for count, text in ((4, "And in children?"), (7, "Which dose of paracetamol?")):
            await fake.dispatch_message(text, channel_id=thread_id)
            await until(lambda count=count: len(thread_messages(fake)) == count)

    assert len(fake.threads) == 1 and len(scripted_engine.requests) == 3
    first, second = (
        (
            Message("user", "What causes a fever?"),
            Message("assistant", "Answer to: What causes a fever?"),
        ),
        (
            Message("user", "And in children?"),
            Message("assistant", "Answer to: And in children?"),
        ),
    )
    assert asked_messages(scripted_engine, 1) == (*first, Message("user", "And in children?"))
    last = Message("user", "Which dose of paracetamol?")
    assert asked_messages(scripted_engine, 2) == (*first, *second, last)
    # thinking, then per follow-up: question, answer (a reply to it), thinking
    kinds = [(m["author"]["bot"], "message_reference" in m) for m in thread_messages(fake)]
    assert kinds == [(True, False)] + [(False, False), (True, True), (True, False)] * 2


async def test_replies_to_answers_continue_the_conversation(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    questions = ["What causes a fever?", "What about at night?", "For how long?"]
    async with serving(fake, scripted_engine):
        asked = await fake.dispatch_message(questions[0], mentions_bot=True)
        for index, text in enumerate(questions[1:], start=1):
            await until(lambda i=index: len(fake.threads) == i and thread_messages(fake, i - 1))
            [answer] = replies(fake, asked)
            asked = await fake.dispatch_message(text, message_reference=answer["id"])
        await until(lambda: len(fake.threads) == 3 and thread_messages(fake, 2))

    turns = [
        Message(role, text)
        for question in questions[:2]
        for role, text in (("user", question), ("assistant", f"Answer to: {question}"))
    ]
    assert asked_messages(scripted_engine, 2) == (*turns, Message("user", questions[2]))
    assert len(scripted_engine.requests) == 3


async def test_an_emergency_notice_comes_before_the_answer_and_stays_out_of_history(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    text = "我现在胸口剧痛"
    async with serving(fake, scripted_engine):
        asked = await fake.dispatch_message(text, mentions_bot=True)
        await until(lambda: thread_messages(fake))
        notice, answer = replies(fake, asked)
        follow_up = await fake.dispatch_message("怎么办？", message_reference=answer["id"])
        await until(lambda: len(fake.threads) == 2 and thread_messages(fake, 1))

    assert notice["content"].startswith(f"{NOTICE_MARK} **这可能是紧急情况。**")
    assert "120" in notice["content"]
    assert answer["content"] == f"Answer to: {text}\n\n{DISCLAIMER}"
    ids = [m["id"] for m in fake.channel_messages(fake.channel_id)]
    assert ids.index(notice["id"]) < ids.index(answer["id"]) < ids.index(follow_up["id"])
    assert asked_messages(scripted_engine, 1) == (
        Message("user", text),
        Message("assistant", f"Answer to: {text}"),
        Message("user", "怎么办？"),
    )


async def test_ask_defers_at_once_then_answers_in_the_channel(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    async with serving(fake, scripted_engine):
        assert [c["name"] for c in fake.commands["global"]] == ["ask"]
        sent = time.monotonic()
        interaction = await fake.dispatch_interaction("ask", {"question": "What is sepsis?"})
        [callback] = await fake.wait_for_calls("POST", "/callback$", timeout=3)
        await until(lambda: thread_messages(fake))
        thread_id = fake.threads[0].channel["id"]
        await fake.dispatch_message("Is it contagious?", channel_id=thread_id)
        await until(lambda: len(thread_messages(fake)) == 4)

    assert callback.json["type"] == 5 and callback.at - sent < 3
    original = fake.originals[interaction["token"]]
    assert (original["content"], original["flags"]) == ("> What is sepsis?", 0)
    [answer] = replies(fake, original)
    assert answer["content"] == f"Answer to: What is sepsis?\n\n{DISCLAIMER}"
    assert fake.threads[0].starter is answer
    assert asked_messages(scripted_engine, 1) == (
        Message("user", "What is sepsis?"),
        Message("assistant", "Answer to: What is sepsis?"),
        Message("user", "Is it contagious?"),
    )


async def test_private_ask_is_answered_ephemerally(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    async with serving(fake, scripted_engine):
        options = {"question": "Is my rash serious?", "private": True}
        interaction = await fake.dispatch_interaction("ask", options)
        [followup] = await fake.wait_for_calls("POST", r"^/webhooks/")

    [callback] = fake.calls_to("POST", "/callback$")
    assert callback.json == {"type": 5, "data": {"flags": EPHEMERAL}}
    original = fake.originals[interaction["token"]]
    assert original["content"] == f"Answer to: Is my rash serious?\n\n{DISCLAIMER}"
    assert original["flags"] & EPHEMERAL
    assert followup.json["content"].startswith("**Thinking**")
    assert followup.json["flags"] & EPHEMERAL
    assert not fake.calls_to("POST", r"^/channels/") and not fake.threads


async def test_long_answer_is_split_and_long_thinking_attached(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    paragraphs = [f"Paragraph {i}: " + "dehydration " * 50 for i in range(10)]
    code = "\n".join(
        ["```python", *(f"dose_{i} = weight_kg * {i}  # mg" for i in range(80)), "```"]
    )
    answer = "\n\n".join([*paragraphs[:4], code, *paragraphs[4:]])
    thinking = "\n\n".join(f"Step {i}:" + " consider" * 40 for i in range(40))
    text = f"## Thinking\n\n{thinking}\n\n## Final Response\n\n{answer}"
    scripts(
        scripted_engine, {"long": Script(tuple(text[i : i + 50] for i in range(0, len(text), 50)))}
    )
    async with serving(fake, scripted_engine):
        asked = await fake.dispatch_message("long", mentions_bot=True)
        [thinking_message] = await until(lambda: thread_messages(fake))

    parts = [m["content"] for m in replies(fake, asked)]
    assert len(parts) >= 3 and all(len(p) <= 2000 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)

    def squash(s: str) -> str:
        return re.sub(r"\s+|```(python)?", "", s)

    assert squash("".join(parts)) == squash(f"{answer}\n\n{DISCLAIMER}")
    [attachment] = thinking_message["attachments"]
    assert attachment["filename"] == "thinking.txt"
    [upload] = [f for c in fake.calls for f in c.files]
    assert upload.data.decode() == f"Thinking\n\n{thinking}\n"
    assert fake.threads[0].channel["name"] == "long"


async def test_bots_and_unaddressed_messages_are_ignored(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    other_bot = fake.make_user("other-bot", bot=True)
    async with serving(fake, scripted_engine):
        await fake.dispatch_message("from another bot", author=other_bot, mentions_bot=True)
        await fake.dispatch_message("our own echo", author=fake.bot_user, mentions_bot=True)
        await fake.dispatch_message("people talking among themselves")
        asked = await fake.dispatch_message("A real question", mentions_bot=True)
        await until(lambda: thread_messages(fake))

    assert [g.request.messages[-1].content for g in scripted_engine.requests] == ["A real question"]
    [placeholder] = fake.calls_to("POST", rf"^/channels/{fake.channel_id}/messages$")
    assert str(placeholder.json["message_reference"]["message_id"]) == asked["id"]


async def test_engine_error_reaches_the_asker_and_stays_out_of_history(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    scripts(scripted_engine, {"fail": Script(("## Thinking\n\n", "a", "b", "c"), fail_at=2)})
    async with serving(fake, scripted_engine):
        asked = await fake.dispatch_message("fail", mentions_bot=True)
        [error] = await until(lambda: [m for m in replies(fake, asked) if "Sorry" in m["content"]])
        retry = await fake.dispatch_message("try again", message_reference=error["id"])
        await until(lambda: thread_messages(fake))

    request_id = scripted_engine.requests[0].request.request_id
    assert error["content"] == (
        f"Sorry, something went wrong while answering (request {request_id}). Please try again; "
        "if it happens again, an admin can find the details in the logs."
    )
    assert [m["content"] for m in replies(fake, asked)] == [error["content"]]
    assert asked_messages(scripted_engine, 1) == (Message("user", "try again"),)
    assert replies(fake, retry)[0]["content"].startswith("Answer to: try again")


async def test_stop_tells_the_asker_of_an_answer_in_flight(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    scripts(scripted_engine, {"slow": Script(("## Thinking\n\n", "a", "b"), stall_at=1)})
    async with serving(fake, scripted_engine) as adapter:
        asked = await fake.dispatch_message("slow", mentions_bot=True)
        await until(lambda: scripted_engine.requests and replies(fake, asked))
        await adapter.stop(grace=0.1)

    [answer] = replies(fake, asked)
    assert answer["content"] == texts.CUT_SHORT


async def test_answer_survives_a_gateway_reconnect(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    question = "Why does a fever come back every evening, and when should it be checked?"
    script = huatuo_script(question)
    scripts(scripted_engine, {question: Script(script.chunks, stall_at=4)})
    scripted_engine.step_delay = 0.05  # about 2 s of answering: several progress edits
    async with serving(fake, scripted_engine):
        asked = await fake.dispatch_message(question, mentions_bot=True)
        await until(lambda: scripted_engine.requests and replies(fake, asked))
        await fake.send_reconnect()
        await until(lambda: fake.resumes)
        scripted_engine.release.set()
        await until(lambda: thread_messages(fake))

    [answer] = replies(fake, asked)
    assert answer["content"] == f"Answer to: {question}\n\n{DISCLAIMER}"
    assert len(fake.threads) == 1 and len(scripted_engine.requests) == 1
    assert (len(fake.identifies), len(fake.resumes)) == (1, 1)
    edits = fake.calls_to("PATCH", rf"/messages/{answer['id']}$")
    assert len(edits) >= 3  # progress at most once a second (checked by `serving`), then the answer


class Recording:
    """An engine that keeps every generation it hands out (the local engine keeps none)."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine, self.model_name = engine, engine.model_name
        self.generations: list[Generation] = []

    def submit(self, request: GenerationRequest) -> Generation:
        self.generations.append(generation := self.engine.submit(request))
        return generation


@pytest.mark.model
async def test_builtin_model_answers_while_heartbeats_keep_time(
    fake: FakeDiscord, local_engine: LocalEngine, slowness: float
) -> None:
    questions = [
        "What are the symptoms of anemia?",
        "How is type 2 diabetes diagnosed?",
        "What causes a migraine?",
        "When should a cough be seen by a doctor?",
    ]
    engine = Recording(local_engine)
    async with serving(fake, engine):
        await until(lambda: fake.heartbeats)
        start = time.monotonic()
        asked = [  # four people: each person has one question in flight at a time
            await fake.dispatch_message(q, mentions_bot=True, author=fake.make_user(f"learner{i}"))
            for i, q in enumerate(questions)
        ]
        await until(
            lambda: all(
                (parts := replies(fake, a)) and parts[-1]["content"].endswith(DISCLAIMER)
                for a in asked
            ),
            timeout=120 * slowness,  # about 3 s on an idle 2-core machine
        )
        end = time.monotonic()

    beats = [start, *(t for t in fake.heartbeats if start < t < end), end]
    gaps = [b - a for a, b in pairwise(beats)]
    assert end - start > 2 * HEARTBEAT_MS / 1000, "generation too short to measure heartbeats"
    assert max(gaps) <= 2 * HEARTBEAT_MS / 1000, gaps
    generations = {g.request.messages[-1].content: g for g in engine.generations}
    for question, message in zip(questions, asked, strict=True):
        [answer] = replies(fake, message)
        assert generations[question].text.strip()[:20] in answer["content"]


@pytest.mark.model
async def test_builtin_model_given_the_thinking_header_and_a_budget_shows_both(
    fake: FakeDiscord, thinking_engine: LocalEngine, slowness: float
) -> None:
    sampling = SamplingParams(max_new_tokens=40, temperature=0.0, thinking_budget=16)
    async with serving(fake, thinking_engine, sampling=sampling):
        asked = await fake.dispatch_message("What is a fever?", mentions_bot=True)
        await until(
            lambda: (parts := replies(fake, asked)) and parts[-1]["content"].endswith(DISCLAIMER),
            timeout=120 * slowness,  # about 1 s on an idle 2-core machine
        )
        thinking = await until(lambda: thread_messages(fake), timeout=10 * slowness)

    [answer] = replies(fake, asked)
    assert CAPPED in answer["content"]
    assert "fever" in "".join(m["content"] for m in thinking).lower()
    assert "Final Response" not in answer["content"], "headers are parsed, never shown"


async def test_ask_synced_to_one_guild_is_answered_there(
    fake: FakeDiscord, scripted_engine: ScriptedEngine
) -> None:
    async with serving(fake, scripted_engine, sync_guild=int(fake.guild_id)):
        interaction = await fake.dispatch_interaction("ask", {"question": "What is sepsis?"})
        await until(lambda: thread_messages(fake))

    assert "ask" in [c["name"] for c in fake.commands[fake.guild_id]]
    assert "global" not in fake.commands
    assert interaction["data"]["guild_id"] == fake.guild_id
    [answer] = replies(fake, fake.originals[interaction["token"]])
    assert answer["content"] == f"Answer to: What is sepsis?\n\n{DISCLAIMER}"


async def test_refused_token_is_a_clear_error(fake: FakeDiscord) -> None:
    fake.fail_next("GET", r"^/users/@me$", status=401)
    adapter = make_adapter(fake, ScriptedEngine())
    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN"):
        await adapter.start()
    assert adapter.client.is_closed()


@pytest.mark.parametrize(
    ("question", "name"),
    [
        ("  What   causes\na fever? ", "What causes a fever?"),
        ("", "Question"),
        ("word " * 30, ("word " * 19).strip() + "…"),
        ("x" * 150, "x" * 99 + "…"),
    ],
)
def test_thread_names_fit_discord(question: str, name: str) -> None:
    assert thread_name(question) == name and 1 <= len(name) <= 100


def test_question_text_helpers() -> None:
    assert strip_mention("<@42> what is <@!42>  sepsis?", 42) == "what is sepsis?"
    assert unquote(quote("first line\n\nthird")) == "first line\n\nthird"
    assert unquote("not a quote") is None


async def test_a_failure_after_the_answer_is_shown_does_not_overwrite_it(fake: FakeDiscord) -> None:
    engine = ScriptedEngine(huatuo_script, step_delay=0.02)
    await engine.start()
    try:
        async with serving(fake, engine):
            asked = await fake.dispatch_message("what is gout?", mentions_bot=True)
            await until(lambda: replies(fake, asked))  # the placeholder; the answer comes later
            posts = rf"^/channels/{fake.channel_id}/messages$"
            fake.fail_next("POST", r"/threads$", status=403)  # no thread for the thinking,
            fake.fail_next("POST", posts, status=403)  # nor posting it in the channel
            await until(lambda: len(fake.calls_to("POST", posts)) == 2, timeout=10)
            await asyncio.sleep(0.2)
    finally:
        await engine.close(grace=0)
    [answer] = replies(fake, asked)
    assert answer["content"].startswith("Answer to: what is gout?")
    assert answer["content"].endswith(DISCLAIMER)
