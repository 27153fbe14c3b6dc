"""The feedback database under trouble: another process holding its lock at start-up or while the
bot runs, and a damaged file. Real SQLite files, and a real second process holding the lock."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings
from bot.core.events import Answer, ConversationRef, Question
from bot.feedback.database import problem
from bot.feedback.store import FeedbackStore, Reaction
from bot.metrics import Metrics
from bot.wiring import open_store
from inference.scripted import ScriptedEngine
from tests.harness.feedback import query, ratings
from tests.harness.polling import until

HOLD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("holding", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


@contextmanager
def held(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the database's write lock until `let_go` (or the block's end)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        yield holder
    finally:
        let_go(holder)


def let_go(holder: subprocess.Popen[str]) -> None:
    """The holder commits and exits: the lock is free once this returns."""
    if holder.poll() is None:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0


async def answer(store: FeedbackStore, message_id: str) -> str:
    """Record a Slack answer posted as `message_id`; its request id."""
    question = Question("q", "U1", ConversationRef("slack", "C1"), "mention")
    answered = Answer("a", "t", True, False, "A", question.request_id, 10, 1.0)
    await store.answered(question, answered, "C1", [message_id])
    return question.request_id


def answers(path: Path) -> list[str]:
    """The request ids in the file, oldest first."""
    rows = query(path, "SELECT request_id FROM answers ORDER BY rowid")
    return [request_id for (request_id,) in rows]


@pytest.fixture
def metrics(scripted_engine: ScriptedEngine) -> Metrics:
    return Metrics(scripted_engine)


def scraped(metrics: Metrics) -> tuple[float | None, float | None]:
    """`huatuo_feedback_rows_pending` and `huatuo_feedback_rows_lost_total` as exported."""
    value = metrics.registry.get_sample_value
    return value("huatuo_feedback_rows_pending"), value("huatuo_feedback_rows_lost_total")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A feedback database the bot created on an earlier run."""
    path = tmp_path / "feedback.sqlite3"
    asyncio.run(FeedbackStore(path).close())
    return path


# ---- start-up ---------------------------------------------------------------------------------


def test_a_database_another_process_holds_is_refused_with_that_reason(path: Path) -> None:
    settings = Settings(_env_file=None, feedback_db=str(path))
    with held(path):
        with pytest.raises(ConfigError) as refused:
            open_store(settings, busy_timeout=0.2)
        checked = problem(path, busy_timeout=0.2)  # what `huatuo-bot check` says
    message = str(refused.value)
    assert f"another process holds the feedback database {path}" in message
    assert "not free within 0.2 s" in message and "writable folder" not in message
    assert checked is not None and message.endswith(checked)
    assert problem(path) is None, "free again"


async def test_start_up_waits_for_a_lock_to_be_let_go(path: Path) -> None:
    with held(path) as holder:
        opening = asyncio.create_task(asyncio.to_thread(FeedbackStore, path, busy_timeout=60))
        await asyncio.sleep(0.3)
        assert not opening.done(), "it waits while the lock is held"
        let_go(holder)
        store = await opening
    await answer(store, "m1")
    await store.close()
    assert len(answers(path)) == 1


async def fill(path: Path, count: int) -> None:
    store = FeedbackStore(path)
    for number in range(count):
        await answer(store, f"m{number}")
    await store.close()


def huatuo_bot(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the `huatuo-bot` command with only these settings, as an operator would."""
    ours = ("HUATUO_", "SLACK_", "DISCORD_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)} | settings
    command = [sys.executable, "-m", "bot.cli", *args]
    env["PYTHONPATH"] = str(Path(__file__).parents[1])
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_a_damaged_database_is_refused_with_the_command_to_move_it_aside(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    asyncio.run(fill(path, 500))
    size = path.stat().st_size
    assert size > 20 * 4096, "many pages"
    with path.open("r+b") as file:  # two pages in the middle overwritten
        file.seek(size // 2)
        file.write(b"\xff" * 8192)
    damaged = path.read_bytes()
    settings = {"DISCORD_BOT_TOKEN": "token", "HUATUO_FEEDBACK_DB": str(path)}

    checked = huatuo_bot("check", cwd=tmp_path, HUATUO_MODEL="builtin:smollm2", **settings)
    assert checked.returncode == 1
    assert f"✗ feedback: the feedback database {path} is damaged (" in checked.stdout
    assert path.read_bytes() == damaged, "check changes nothing"
    done = huatuo_bot("run", cwd=tmp_path, **settings)
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"huatuo-bot: HUATUO_FEEDBACK_DB: the feedback database {path} is damaged ("
    )
    [command] = re.findall(r"^    (mv .*)$", done.stderr, re.MULTILINE)
    subprocess.run(command, shell=True, check=True)  # what the operator does
    [aside] = tmp_path.glob("feedback.sqlite3.damaged-*")
    assert aside.read_bytes() == damaged and f"`sqlite3 {aside} .recover`" in done.stderr
    asyncio.run(fill(path, 1))  # the bot starts anew
    assert len(answers(path)) == 1


# ---- while running ----------------------------------------------------------------------------


async def test_writes_refused_while_another_process_holds_the_lock_are_made_when_it_lets_go(
    path: Path, metrics: Metrics, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="bot.feedback")
    store = FeedbackStore(path, busy_timeout=0.05, retry_every=0.2)
    metrics.watch_feedback(store)
    first = await answer(store, "m1")
    with held(path) as holder:
        second = await answer(store, "m2")
        rated = await store.rate(Reaction("slack", "C1", "m2", "U2", "+1"), 1)
        third = await answer(store, "m3")
        assert rated is None, "not known yet: kept"
        assert answers(path) == [first]
        assert scraped(metrics) == (3, 0)
        assert "refused a write (database is locked); keeping writes in memory" in caplog.text
        let_go(holder)
        await until(lambda: len(answers(path)) == 3, timeout=60)  # the periodic retry
    assert answers(path) == [first, second, third]
    assert ratings(path) == [(second, "U2", 1)]
    assert scraped(metrics) == (0, 0)
    assert "takes writes again: wrote the 3 kept in memory; 0 lost in all" in caplog.text
    await store.close()


async def test_a_later_write_makes_the_kept_ones_first(path: Path) -> None:
    store = FeedbackStore(path, busy_timeout=0.05, retry_every=0.0)
    with held(path):
        first = await answer(store, "m1")
    second = await answer(store, "m2")  # no periodic retry needed: this one takes the first along
    assert answers(path) == [first, second] and store.pending == 0
    await store.close()


async def test_writes_beyond_the_memory_bound_are_lost_and_counted(
    path: Path, metrics: Metrics, caplog
) -> None:
    store = FeedbackStore(path, busy_timeout=0.05, retry_every=3600, max_pending=2)
    metrics.watch_feedback(store)
    with held(path):
        kept = [await answer(store, f"m{number}") for number in range(2)]
        for number in range(2, 5):
            await answer(store, f"m{number}")
        assert scraped(metrics) == (2, 3)
    await store.close()
    assert answers(path) == kept
    assert scraped(metrics) == (0, 3)
    assert f"2 writes wait for {path} already; newer ones are lost" in caplog.text


@pytest.mark.parametrize("let_go_first", [True, False])
async def test_stopping_tries_the_kept_writes_once_more_and_counts_those_lost(
    path: Path, metrics: Metrics, caplog, let_go_first: bool
) -> None:
    store = FeedbackStore(path, busy_timeout=0.05, retry_every=3600)
    metrics.watch_feedback(store)
    with held(path) as holder:
        kept = [await answer(store, "m1"), await answer(store, "m2")]
        if let_go_first:
            let_go(holder)
        await store.close()
    if let_go_first:
        assert answers(path) == kept and scraped(metrics) == (0, 0)
    else:
        assert answers(path) == [] and scraped(metrics) == (0, 2)
        assert f"stopping with 2 write(s) that {path} did not take (database is locked); " in (
            caplog.text
        )
