"""Feedback: answers and 👍 / 👎 reactions on Slack and Discord recorded in SQLite; `stats`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError, Settings
from bot.core.events import Answer, ConversationRef, Question
from bot.feedback.store import FeedbackStore, Reaction
from bot.runner import serve
from bot.wiring import open_store
from inference.scripted import ScriptedEngine
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import (
    BOT_USER_ID,
    FakeSlack,
    app_mention_event,
    event_callback,
    reaction_event,
)
from tests.harness.discord import replies, serving, thread_messages
from tests.harness.feedback import query, ratings
from tests.harness.polling import until
from tests.harness.slack import Bot, running

ANSWER_ROW = """SELECT request_id, platform, model, origin, channel, completion_tokens, complete,
    truncated, total_seconds > 0, first_token_seconds >= 0, question, answer FROM answers"""


@pytest.fixture
async def store(tmp_path: Path):
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    yield store
    await store.close()


# ---- Slack ------------------------------------------------------------------------------------


async def react(bot: Bot, reaction: str, ts: str, *, user: str = "U2", removed: bool = False):
    """Send a reaction event; the listener has recorded it once Slack's request is acknowledged."""
    await bot.event(reaction_event(reaction, ts, user=user, removed=removed))


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_slack_reactions_on_an_answer_are_its_rating(
    scripted_engine: ScriptedEngine, store: FeedbackStore, mode
) -> None:
    async with running(scripted_engine, mode, feedback=store) as bot:
        question = await bot.mention("what causes fever?")
        await bot.idle()
        answer = bot.bot_messages("C1", question)[0].ts
        [generation] = scripted_engine.requests
        request_id = generation.request.request_id
        assert query(store.path, ANSWER_ROW) == [
            (request_id, "slack", "scripted", "mention", "C1", generation.stats.completion_tokens,
             1, 0, 1, 1, None, None),
        ]  # fmt: skip
        assert generation.stats.completion_tokens > 0

        await react(bot, "+1", answer)
        assert ratings(store.path) == [(request_id, "U2", 1)]
        await react(bot, "-1::skin-tone-3", answer)  # changes their mind: latest wins
        assert ratings(store.path) == [(request_id, "U2", -1)]
        await react(bot, "thumbsup", answer, user="U3")
        assert ratings(store.path) == [(request_id, "U2", -1), (request_id, "U3", 1)]
        await react(bot, "+1", answer, removed=True)  # the older 👍 goes: 👎 still stands
        assert ratings(store.path) == [(request_id, "U2", -1), (request_id, "U3", 1)]
        await react(bot, "-1::skin-tone-3", answer, removed=True)
        assert ratings(store.path) == [(request_id, "U3", 1)]


async def test_slack_reactions_elsewhere_are_ignored(
    scripted_engine: ScriptedEngine, store: FeedbackStore
) -> None:
    async with running(scripted_engine, "socket", feedback=store) as bot:
        question = await bot.mention("what causes fever?")
        await bot.idle()
        answer, thinking = bot.bot_messages("C1", question)
        other = bot.slack.add_message("C1", "an unrelated message", user="U4")
        await react(bot, "+1", question)  # the question
        await react(bot, "+1", thinking.ts)  # the thinking, not the answer
        await react(bot, "+1", other)
        await react(bot, "+1", answer.ts, user=BOT_USER_ID)  # the bot itself
        await react(bot, "tada", answer.ts)  # not a thumb
        await bot.event(reaction_event("-1", answer.ts, channel="C2"))  # same ts, other channel

    assert query(store.path, "SELECT count(*) FROM reactions") == [(0,)]
    assert query(store.path, "SELECT count(*) FROM answers") == [(1,)]


def file_bytes(path: Path) -> bytes:
    """The database and its write-ahead log, as they lie on disk."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


@pytest.mark.parametrize("store_text", [False, True])
async def test_message_text_is_stored_only_when_asked_for(
    scripted_engine: ScriptedEngine, tmp_path: Path, monkeypatch, store_text: bool
) -> None:
    path = tmp_path / "feedback.sqlite3"
    monkeypatch.setenv("HUATUO_FEEDBACK_DB", str(path))
    if store_text:
        monkeypatch.setenv("HUATUO_STORE_TEXT", "true")
    store = open_store(Settings(_env_file=None))
    assert store is not None
    try:
        async with running(scripted_engine, "http", feedback=store) as bot:
            await bot.mention("is amoxicillin safe in pregnancy?")
            await bot.idle()
    finally:
        await store.close()

    [(question, answer)] = query(path, "SELECT question, answer FROM answers")
    if store_text:
        assert question == "is amoxicillin safe in pregnancy?"
        assert answer == "Answer to: is amoxicillin safe in pregnancy?"
    else:
        assert (question, answer) == (None, None)
        assert b"amoxicillin" not in file_bytes(path)


def test_an_empty_feedback_db_setting_turns_feedback_off(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUATUO_FEEDBACK_DB", "")
    assert open_store(Settings(_env_file=None)) is None
    assert list(tmp_path.iterdir()) == []


# ---- Discord ----------------------------------------------------------------------------------


async def test_discord_reactions_on_an_answer_are_its_rating(
    scripted_engine: ScriptedEngine, store: FeedbackStore
) -> None:
    async with FakeDiscord() as fake, serving(fake, scripted_engine, feedback=store):
        bob = fake.make_user("bob")
        asked = await fake.dispatch_message("What causes a fever?", mentions_bot=True)
        [thinking] = await until(lambda: thread_messages(fake))
        await until(lambda: query(store.path, "SELECT count(*) FROM answers") == [(1,)])
        [answer] = replies(fake, asked)
        [generation] = scripted_engine.requests
        request_id, alice, bob_id = generation.request.request_id, fake.human["id"], bob["id"]

        # Ignored: the question, the thinking, another emoji, a custom emoji, the bot itself.
        await fake.dispatch_reaction(asked, "👍")
        await fake.dispatch_reaction(thinking, "👍")
        await fake.dispatch_reaction(answer, "🎉")
        await fake.dispatch_reaction(answer, "👍", user=fake.bot_user)
        await fake.dispatch("MESSAGE_REACTION_ADD", {
            "user_id": alice, "channel_id": answer["channel_id"], "message_id": answer["id"],
            "guild_id": fake.guild_id, "emoji": {"id": fake.new_id(), "name": "thumbsup"},
            "burst": False, "type": 0,
        })  # fmt: skip

        await fake.dispatch_reaction(answer, "👍")
        await until(lambda: ratings(store.path) == [(request_id, alice, 1)])
        await fake.dispatch_reaction(answer, "👎🏽")  # changes her mind: latest wins
        await fake.dispatch_reaction(answer, "👍🏿", user=bob)
        await until(lambda: len(ratings(store.path)) == 2)
        assert sorted(ratings(store.path)) == sorted(
            [(request_id, alice, -1), (request_id, bob_id, 1)]
        )
        await fake.dispatch_reaction(answer, "👍", removed=True)  # the older 👍: 👎🏽 stands
        await fake.dispatch_reaction(answer, "👎🏽", removed=True)
        await until(lambda: ratings(store.path) == [(request_id, bob_id, 1)])

    assert query(store.path, "SELECT count(*) FROM reactions") == [(1,)]
    [row] = query(store.path, ANSWER_ROW)
    assert row[:8] == (
        request_id, "discord", "scripted", "mention", fake.channel_id,
        generation.stats.completion_tokens, 1, 0,
    )  # fmt: skip
    assert row[8:] == (1, 1, None, None)


async def test_discord_dm_answers_can_be_rated(
    scripted_engine: ScriptedEngine, store: FeedbackStore
) -> None:
    async with FakeDiscord() as fake, serving(fake, scripted_engine, feedback=store):
        asked = await fake.dispatch_message("Is ibuprofen safe?", guild=False)
        await until(lambda: query(store.path, "SELECT count(*) FROM answers") == [(1,)])
        [answer] = replies(fake, asked)
        await fake.dispatch_reaction(answer, "👎")
        await until(lambda: ratings(store.path))

    [(_, origin, channel)] = query(store.path, "SELECT request_id, origin, channel FROM answers")
    assert (origin, channel) == ("dm", asked["channel_id"])
    assert [rating for *_, rating in ratings(store.path)] == [-1]


# ---- huatuo-bot run ---------------------------------------------------------------------------


async def test_run_records_answers_and_reactions_and_closes_the_database(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    engine = ScriptedEngine()
    await engine.start()
    async with FakeSlack() as slack:
        settings = Settings(
            _env_file=None,
            slack_bot_token="xoxb-test",
            slack_app_token="xapp-test",
            slack_api_url=slack.api_url,
            http_port=0,
            feedback_db=str(path),
        )
        stop = asyncio.Event()
        serving_task = asyncio.create_task(serve(settings, ["slack"], engine, stop))
        question = slack.add_message("C1", f"<@{BOT_USER_ID}> what is sepsis?")
        await slack.send_socket_event(
            "events_api", event_callback(app_mention_event("what is sepsis?", ts=question))
        )
        await until(lambda: path.exists() and query(path, "SELECT count(*) FROM answers")[0][0])
        answer = next(m.ts for m in slack.thread("C1", question) if m.user == BOT_USER_ID)
        envelope = await slack.send_socket_event(
            "events_api", event_callback(reaction_event("+1", answer))
        )
        await slack.wait_ack(envelope)
        stop.set()
        await asyncio.wait_for(serving_task, 10)

    [(request_id, platform)] = query(path, "SELECT request_id, platform FROM answers")
    assert platform == "slack" and ratings(path) == [(request_id, "U1", 1)]
    assert not path.with_name(path.name + "-wal").exists(), "closed cleanly: the log is merged"


async def test_run_refuses_a_feedback_db_it_cannot_write(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        slack_bot_token="xoxb-test",
        slack_app_token="xapp-test",
        feedback_db=str(tmp_path / "no-such-folder" / "feedback.sqlite3"),
    )
    with pytest.raises(ConfigError, match="HUATUO_FEEDBACK_DB"):
        await serve(settings, ["slack"], ScriptedEngine())


# ---- huatuo-bot stats -------------------------------------------------------------------------


async def fill(path: Path) -> None:
    """Four answers: three on Slack with model A (two rated, one stopped), one on Discord with
    model B."""
    store = FeedbackStore(path)
    timings = [("slack", "A", 1.0, 10), ("slack", "A", 2.0, 20), ("slack", "A", 10.0, 30),
               ("discord", "B", 4.0, 40)]  # fmt: skip
    for number, (platform, model, seconds, tokens) in enumerate(timings):
        question = Question("q", "U1", ConversationRef(platform, "C1"), "mention")
        answer = Answer("a", "t", True, False, model, question.request_id, tokens, seconds,
                        first_token_seconds=0.5, stopped=number == 2)  # fmt: skip
        await store.answered(question, answer, "C1", [f"m{number}"])
    for message, user, emoji, rating in [("m0", "U1", "+1", 1), ("m0", "U2", "+1", 1),
                                         ("m1", "U1", "-1", -1)]:  # fmt: skip
        assert await store.rate(Reaction("slack", "C1", message, user, emoji), rating)
    await store.close()


def test_stats_prints_a_table_by_platform_and_model(tmp_path: Path, capsys) -> None:
    path = tmp_path / "feedback.sqlite3"
    asyncio.run(fill(path))

    assert main(["stats", "--db", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"Answers in {path} (all time)")
    header, *rows = [line.split() for line in lines[2:]]
    assert header[:7] == ["platform", "model", "answers", "stopped", "rated", "👍", "👎"]
    assert rows == [
        ["discord", "B", "1", "0", "0", "0", "0", "-", "4.0", "4.0", "0.5", "40"],
        ["slack", "A", "3", "1", "2", "2", "1", "67%", "2.0", "8.4", "0.5", "20"],
        ["all", "4", "1", "2", "2", "1", "67%", "3.0", "8.2", "0.5", "25"],
    ]


def test_stats_json_and_since(tmp_path: Path, capsys) -> None:
    path = tmp_path / "feedback.sqlite3"
    asyncio.run(fill(path))
    with closing(sqlite3.connect(path)) as db, db:  # the Discord answer was given long ago
        db.execute("UPDATE answers SET created_at = '2000-01-01T00:00:00+00:00' WHERE model = 'B'")

    assert main(["stats", "--db", str(path), "--since", "7", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(g["platform"], g["model"]) for g in result["groups"]] == [("slack", "A")]
    [group] = result["groups"]
    assert (group["answers"], group["rated"], group["up"], group["down"]) == (3, 2, 2, 1)
    assert group["stopped"] == 1
    assert group["positive"] == pytest.approx(2 / 3)
    assert group["median_tokens"] == 20 and group["p90_seconds"] == pytest.approx(8.4)


def test_stats_says_when_there_is_nothing_to_show(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.sqlite3"
    assert main(["stats", "--db", str(missing)]) == 1
    assert f"no feedback database at {missing}" in capsys.readouterr().err
    assert not missing.exists()

    empty = tmp_path / "empty.sqlite3"
    asyncio.run(FeedbackStore(empty).close())
    assert main(["stats", "--db", str(empty)]) == 0
    assert capsys.readouterr().out.startswith(f"No answers recorded in {empty}")


def test_stats_with_feedback_off_asks_for_a_database(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUATUO_FEEDBACK_DB", "")
    assert main(["stats"]) == 1
    assert "feedback is off" in capsys.readouterr().err
