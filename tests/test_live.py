"""Live answers: the final response and the thinking shown as they are written, and Stop.

Through the fake Slack and Discord servers with the real SDKs, and an engine that writes one word
at a steady pace: what the asker saw along the way is read back from the writes the fakes took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.core import texts
from bot.core.events import Progress, Question
from bot.core.service import AnswerService
from bot.slack.reply import STOP_ACTION, THINKING_MARK
from inference.engine import SamplingParams
from inference.scripted import Script
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import BOT_USER_ID, app_mention_event, block_actions, interactive_form
from tests.fakes.slack import signed_request as slack_signed
from tests.harness.crowd import discord_crowd, slack_crowd
from tests.harness.discord import replies, serving
from tests.harness.engines import scripted
from tests.harness.polling import until
from tests.harness.slack import SECRET, Bot, running
from tests.servers.proxy import CuttableProxy
from tests.servers.scripted import ScriptedServer

HEADER = re.compile(r"#{1,4}[ \t]*(thinking|final[ \t]+response)", re.IGNORECASE)
PACE = 0.05  # seconds per word
WRITING = texts.WRITING


def paced(question: str, *, stall_in_answer: bool = False) -> Script:
    """HuatuoGPT-o1's format, one word per chunk (headers cut across chunks): a thinking and a
    final response of 60 words each."""
    thinking = " ".join(f"reasoning{n}" for n in range(60))
    answer = " ".join(f"point{n}" for n in range(60))
    text = f"## Thi|nking\n\n{thinking}\n\n## Final Resp|onse\n\nAnswer to: {question}\n\n{answer}"
    chunks = tuple(re.findall(r"\S+\s*|\s+", text.replace("|", "\0")))
    chunks = tuple(c.replace("\0", "") for part in chunks for c in _cut(part))
    stall = len(chunks) - 20 if stall_in_answer else None
    return Script(chunks, stall_at=stall)


def _cut(part: str) -> list[str]:
    """A word with a cut mark becomes two chunks (a header cut as a tokenizer would)."""
    head, mark, tail = part.partition("\0")
    return [head + mark, tail] if mark and tail else [part]


def engine_for(script: Callable[[str], Script] = paced) -> Any:
    """An engine writing `script` at the steady PACE."""
    return scripted(script, PACE)


def growing(versions: list[str]) -> list[str]:
    """The distinct versions in order, each checked to be longer than the one before."""
    distinct = [v for n, v in enumerate(versions) if n == 0 or v != versions[n - 1]]
    assert all(len(a) < len(b) for a, b in itertools.pairwise(distinct)), distinct
    return distinct


def no_raw_headers(texts_sent: list[str]) -> None:
    leaked = [t for t in texts_sent if HEADER.search(t)]
    assert not leaked, leaked[:3]


# ---- Slack -------------------------------------------------------------------------------------
def fast_edits(bot: Bot, interval: float = 0.3) -> None:
    """Edits of one message every `interval` s at most (2 s on a real workspace), so that a few
    seconds of writing show in several versions; the budget still decides."""
    delivery = bot.adapter.delivery
    style = dataclasses.replace(delivery.style, edit_interval=interval)
    bot.adapter.delivery = dataclasses.replace(delivery, style=style)


async def mention(bot: Bot, text: str, user: str = "U1") -> str:
    ts = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> {text}", user=user)
    await bot.event(app_mention_event(text, ts=ts, user=user))
    return ts


async def test_slack_shows_the_answer_in_the_placeholder_and_the_thinking_as_written() -> None:
    async with engine_for() as engine, running(engine) as bot:
        fast_edits(bot)
        question = await mention(bot, "what is sepsis?")
        await bot.idle(timeout=60)
        answer, thinking = bot.bot_messages("C1", question)
    writes = bot.slack.calls_to("chat.postMessage") + bot.slack.calls_to("chat.update")
    taken = sorted((c for c in writes if c.status == 200), key=lambda c: c.time)
    no_raw_headers([c.params.get("text", "") for c in writes])

    drafts = [c.params["text"] for c in taken if c.params.get("ts") == answer.ts]
    drafts = growing([d for d in drafts if d.endswith(WRITING)])
    assert len(drafts) >= 3, drafts
    final = answer.text.split("\n\n_Check")[0]
    assert all(final.startswith(d.removesuffix(WRITING).strip()) for d in drafts)
    assert answer.text.startswith("Answer to: what is sepsis?\n\npoint0")
    assert "point59" in answer.text

    thoughts = [c.params["text"] for c in taken if c.params["text"].startswith(THINKING_MARK)]
    assert len(growing(thoughts[:-1])) >= 3, thoughts
    assert thinking.text.startswith(f"{THINKING_MARK} **Thinking**")
    assert "reasoning59" in thinking.text
    blocks = [b["type"] for m in bot.slack.messages for b in m.blocks or []]
    assert "actions" not in blocks, "the Stop button is gone"


async def click(bot: Bot, message: Any, user: str) -> None:
    """`user` clicks Stop under `message`, as Slack delivers it."""
    [value] = [
        e["value"]
        for block in message.blocks or []
        for e in block.get("elements", [])
        if e.get("action_id") == STOP_ACTION
    ]
    payload = block_actions(
        STOP_ACTION, value, message=message, response_url=bot.slack.new_response_url(), user=user
    )
    body, headers = slack_signed(interactive_form(payload), SECRET, form=True)
    assert (await bot.post(body, headers))[0] == 200


def stop_and_stall(question: str) -> Script:
    return paced(question, stall_in_answer=True)


async def test_slack_stop_is_for_the_asker_ends_the_answer_and_frees_the_slot() -> None:
    async with engine_for(stop_and_stall) as engine, running(engine) as bot:
        fast_edits(bot)
        question = await mention(bot, "what is sepsis?", user="U1")

        def draft() -> Any:
            shown = bot.bot_messages("C1", question)
            ready = shown and "point10" in shown[0].text and shown[0].text.endswith(WRITING)
            return ready and shown[0].blocks and shown[0]

        placeholder = await until(draft, timeout=30)
        await click(bot, placeholder, user="U2")  # not the asker, not an admin
        ephemeral = await until(lambda: bot.slack.calls_to("chat.postEphemeral"))
        assert ephemeral[0].params["user"] == "U2"
        assert ephemeral[0].params["text"] == texts.STOP_NOT_ALLOWED
        assert engine.running == 1

        await click(bot, bot.bot_messages("C1", question)[0], user="U1")
        stopped = time.monotonic()
        await until(lambda: engine.running == 0, timeout=10)
        assert time.monotonic() - stopped < 2.0, "the generation went on after Stop"
        await bot.idle(timeout=30)
        answer, thinking = bot.bot_messages("C1", question)
        assert answer.text.startswith("Answer to: what is sepsis?")
        assert "Stopped on request" in answer.text
        assert [b["type"] for b in answer.blocks] == ["markdown", "context_actions"], "no Stop"
        assert thinking.text.startswith(THINKING_MARK) and "reasoning59" in thinking.text

        engine.release.set()  # the next question is answered in full
        again = await mention(bot, "and septic shock?", user="U1")
        await bot.idle(timeout=60)
        assert "point59" in bot.bot_messages("C1", again)[0].text


# ---- Discord -----------------------------------------------------------------------------------
async def test_discord_opens_the_thread_at_once_and_streams_into_it(fake: FakeDiscord) -> None:
    async with engine_for() as engine, serving(fake, engine) as adapter:
        asked = await fake.dispatch_message("What is sepsis?", mentions_bot=True)
        await until(lambda: fake.threads, timeout=30)
        assert engine.running == 1, "the thread opens while the model is still writing"
        await until(lambda: adapter.in_flight == 0, timeout=60)
    [answer] = replies(fake, asked)
    [thread] = fake.threads
    assert thread.starter is answer, "the thread hangs on the placeholder, now the answer"
    writes = [c for c in fake.calls if c.method in ("POST", "PATCH") and c.status == 200]
    contents = [(c.path, (c.json or {}).get("content") or "") for c in writes]
    no_raw_headers([text for _, text in contents])

    on_answer = [text for path, text in contents if path.endswith(f"/messages/{answer['id']}")]
    drafts = growing([text for text in on_answer if text.endswith(WRITING)])
    assert len(drafts) >= 3, drafts
    assert answer["content"].startswith("Answer to: What is sepsis?\n\npoint0")
    assert not answer.get("components"), "the Stop button is gone"

    inside = f"/channels/{thread.channel['id']}/"
    in_thread = [text for path, text in contents if path.startswith(inside)]
    assert len(growing(in_thread[:-1])) >= 3, in_thread
    [thinking] = fake.channel_messages(thread.channel["id"])
    assert thinking["content"].startswith("**Thinking**") and "reasoning59" in thinking["content"]


def stop_button(message: dict[str, Any]) -> str:
    [custom_id] = [
        c["custom_id"]
        for row in message.get("components") or []
        for c in row.get("components", [])
        if c.get("custom_id", "").startswith("huatuo-stop:")
    ]
    return custom_id


async def test_discord_stop_is_for_the_asker(fake: FakeDiscord) -> None:
    async with engine_for(stop_and_stall) as engine, serving(fake, engine) as adapter:
        asked = await fake.dispatch_message("What is sepsis?", mentions_bot=True)

        def draft() -> Any:
            shown = replies(fake, asked)
            content = shown[0]["content"] if shown else ""
            return "point10" in content and content.endswith(WRITING) and shown[0]

        placeholder = await until(draft, timeout=30)
        stranger = fake.make_user("stranger")
        refused = await fake.click_button(placeholder, stop_button(placeholder), stranger)
        [callback] = await until(
            lambda: [c.json for c in fake.calls_to("POST", rf"^/interactions/{refused['id']}/")]
        )
        assert callback["data"]["content"] == texts.STOP_NOT_ALLOWED
        assert callback["data"]["flags"] == 64  # ephemeral
        assert engine.running == 1

        await fake.click_button(placeholder, stop_button(placeholder))  # the asker
        stopped = time.monotonic()
        await until(lambda: engine.running == 0, timeout=10)
        assert time.monotonic() - stopped < 2.0, "the generation went on after Stop"
        await until(lambda: adapter.in_flight == 0, timeout=30)
        [answer] = replies(fake, asked)
        assert answer["content"].startswith("Answer to: What is sepsis?\n\npoint0")
        assert "Stopped on request" in answer["content"] and not answer.get("components")


# ---- many at once, with the platforms' limits on -----------------------------------------------
def paced_crowd(question: str) -> Script:
    return paced(question)


@pytest.mark.parametrize("crowd", [slack_crowd, discord_crowd])
async def test_sixteen_live_answers_at_once_stay_within_the_limits(crowd: Any) -> None:
    """With 5 % of the writes failing once (503, or applied with the response lost)."""
    report = await crowd(16, scale=20.0, faults=0.05, seed=1, script_for=paced_crowd, pace=PACE)
    assert report.faults > 0, "the faults were not on"
    assert report.outcomes == {"answered": 16}, report
    assert report.duplicates == 0 and report.stale == 0, report
    assert report.rate_limited < 0.05 * report.writes, report


# ---- the remote engine: Stop hangs up on the model server --------------------------------------
class Collected:
    """A Reply that keeps what it was given."""

    def __init__(self) -> None:
        self.seen: list[Progress] = []
        self.answer: Any = None

    async def notice(self, text: str) -> None:
        pass

    async def progress(self, progress: Progress) -> None:
        self.seen.append(progress)

    async def deliver(self, answer: Any) -> None:
        self.answer = answer

    async def fail(self, message: str) -> None:
        raise AssertionError(message)


async def test_stop_closes_the_model_servers_stream_and_keeps_what_was_written() -> None:
    from inference.remote import RemoteEngine
    from tests.harness.service import question as make_question

    text = "## Thinking\n\n" + " ".join(f"w{n}" for n in range(400))
    async with (
        ScriptedServer(text=text, pace=0.02) as server,
        CuttableProxy(int(server.base_url.split(":")[-1].split("/")[0])) as proxy,
    ):
        engine = RemoteEngine(f"http://127.0.0.1:{proxy.port}/v1", "scripted")
        await engine.start()
        try:
            service = AnswerService(engine, SamplingParams(1000, 0.0, 1.0), progress_interval=0.05)
            asked: Question = make_question("What is sepsis?")
            reply = Collected()
            answering = asyncio.create_task(service.answer(asked, reply))
            await until(lambda: any("w20" in p.thinking for p in reply.seen), timeout=30)
            assert service.stops.stop(asked.request_id, "someone else") == "not allowed"
            assert service.stops.stop(asked.request_id, asked.author) == "stopped"
            stopped = time.monotonic()
            assert await asyncio.wait_for(answering, 10) == "stopped"
            await until(lambda: not proxy.links[-1].open, timeout=10)
            assert time.monotonic() - stopped < 2.0
        finally:
            await engine.close(grace=0)
    assert proxy.links[-1].closed_by == "client", "Stop hangs up, so the server stops writing"
    assert reply.answer.stopped and "w20" in reply.answer.thinking and not reply.answer.complete


# ---- the terminal ------------------------------------------------------------------------------


async def ask_through_a_pipe(
    server: ScriptedServer, cwd: Any, until_printed: bytes
) -> tuple[asyncio.subprocess.Process, bytes]:
    """`huatuo-bot ask` on `server`, its stdout a pipe, read until `until_printed` shows."""
    env = {
        **os.environ,
        "HUATUO_BACKEND": "openai",
        "HUATUO_OPENAI_BASE_URL": server.base_url,
        "HUATUO_OPENAI_MODEL": "scripted",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "ask", "What is a cold?",
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    out = b""
    while until_printed not in out:
        chunk = await asyncio.wait_for(process.stdout.read(64), 120)
        assert chunk, (out, await process.stderr.read())
        out += chunk
    return process, out


async def test_ask_prints_the_thinking_as_it_is_written(tmp_path) -> None:
    text = "## Thinking\n\n" + " ".join(f"w{n}" for n in range(60))
    text += "\n\n## Final Response\n\nRest and fluids."
    requested: list[float] = []

    def reply(body: dict[str, Any]) -> str:
        requested.append(time.monotonic())
        return text

    async with ScriptedServer(reply=reply, pace=0.1) as server:
        process, out = await ask_through_a_pipe(server, tmp_path, b"w0")
        first_bytes = time.monotonic()
        rest, errors = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, errors.decode()
    assert requested and first_bytes - requested[0] < 2.0, "the thinking waited for the end"
    printed = (out + rest).decode()
    assert printed.index("Thinking") < printed.index("w59") < printed.index("Final response")
    assert printed.index("Final response") < printed.index("Rest and fluids.")
    assert "##" not in printed


async def test_ctrl_c_in_ask_stops_the_answer_and_says_so(tmp_path) -> None:
    text = "## Thinking\n\n" + " ".join(f"w{n}" for n in range(400))
    async with ScriptedServer(text=text, pace=0.05) as server:
        process, out = await ask_through_a_pipe(server, tmp_path, b"w5 ")
        process.send_signal(signal.SIGINT)
        rest, errors = await asyncio.wait_for(process.communicate(), 60)
    printed = (out + rest).decode()
    assert process.returncode == 130, errors.decode()
    assert "(stopped: Ctrl-C)" in errors.decode() and "Traceback" not in errors.decode()
    assert "w5" in printed and "w399" not in printed
    assert "Stopped on request before the model reached a final answer" in printed
