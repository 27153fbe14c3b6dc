"""The fake Slack server, driven by the real slack_sdk and slack_bolt clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable
from email.utils import parsedate_to_datetime

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    BOT_ID,
    BOT_USER_ID,
    MAX_TEXT,
    FakeSlack,
    SlackLimits,
    app_mention_event,
    bot_message_event,
    event_callback,
    message_changed_event,
    message_event,
    signed_request,
    slash_command,
)
from tests.harness.polling import until

SECRET = "test-signing-secret"
SLOW = 0.01  # a limits scale so slow that no bucket refills during a test, however slow the machine
METADATA = {"event_type": "huatuo_answer", "event_payload": {"question": "Ev1", "part": 1}}


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def _client(slack: FakeSlack, **kwargs) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack.api_url, **kwargs)


def _bare(slack: FakeSlack, **kwargs) -> AsyncWebClient:
    """A client without retry handlers: every failure reaches the caller as it happened."""
    return _client(slack, retry_handlers=[], **kwargs)


async def _refused(call: Awaitable[object]) -> SlackApiError:
    with pytest.raises(SlackApiError) as failed:
        await call
    return failed.value


async def test_thinking_then_answer_in_thread(slack: FakeSlack) -> None:
    client = _client(slack)
    question = slack.add_message("C1", f"<@{BOT_USER_ID}> fever and rash?", user="U1")
    thinking = await client.chat_postMessage(channel="C1", thread_ts=question, text="Thinking…")
    await client.chat_update(channel="C1", ts=thinking["ts"], text="Thinking: measles?")
    await client.chat_postMessage(
        channel="C1", thread_ts=question, text="Answer", blocks=[{"type": "divider"}]
    )

    replies = await client.conversations_replies(channel="C1", ts=question)
    assert [m["text"] for m in replies["messages"]] == [
        f"<@{BOT_USER_ID}> fever and rash?",
        "Thinking: measles?",
        "Answer",
    ]
    assert replies["messages"][0]["reply_count"] == 2
    bot_replies = [m for m in slack.thread("C1", question) if m.user == BOT_USER_ID]
    assert [m.thread_ts for m in bot_replies] == [question, question]
    assert bot_replies[0].edited_ts and bot_replies[1].blocks == [{"type": "divider"}]
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert slack.calls_to("chat.update")[0].params["text"] == "Thinking: measles?"


async def test_files_upload_v2_into_thread(slack: FakeSlack) -> None:
    client = _client(slack)
    parent = slack.add_message("C1", "question")
    response = await client.files_upload_v2(
        channel="C1",
        thread_ts=parent,
        content="步骤 1…",
        filename="thinking.md",
        title="Thinking",
    )

    assert response["file"]["title"] == "Thinking"
    [file] = slack.files.values()
    assert (file.channel_id, file.thread_ts, file.filename) == ("C1", parent, "thinking.md")
    assert file.content == "步骤 1…".encode()
    assert slack.thread("C1", parent)[-1].files == [file.id]


async def test_rate_limited_update_is_retried(slack: FakeSlack) -> None:
    client = _client(slack, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    ts = (await client.chat_postMessage(channel="C1", text="draft"))["ts"]
    slack.fail_next("chat.update", status=429, retry_after=0)

    await client.chat_update(channel="C1", ts=ts, text="final")

    assert len(slack.calls_to("chat.update")) == 2
    assert [m.text for m in slack.messages] == ["final"]


async def test_errors(slack: FakeSlack) -> None:
    slack.error_next("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError) as failed:
        await _client(slack).chat_postMessage(channel="C9", text="x")
    assert failed.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as failed:
        await _client(slack).chat_update(channel="C1", ts="1.000001", text="x")
    assert failed.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as failed:
        await AsyncWebClient(base_url=slack.api_url).auth_test()
    assert failed.value.response["error"] == "not_authed"
    with pytest.raises(SlackApiError) as failed:
        await _client(slack).api_call("no.such.method")
    assert failed.value.response["error"] == "unknown_method"
    assert [c.method for c in slack.calls][-1] == "no.such.method"


async def test_socket_mode_app_mention_is_acked_and_handled(slack: FakeSlack) -> None:
    app = AsyncApp(client=_client(slack))
    handled = asyncio.Event()

    @app.event("app_mention")
    async def on_mention(event, say) -> None:
        await say(text="on it", thread_ts=event["ts"])
        handled.set()

    handler = AsyncSocketModeHandler(app, "xapp-1-test")
    await handler.connect_async()
    try:
        question = slack.add_message("C1", f"<@{BOT_USER_ID}> hi")
        envelope_id = await slack.send_socket_event(
            "events_api", event_callback(app_mention_event("hi", ts=question))
        )
        assert await slack.wait_ack(envelope_id) == {"envelope_id": envelope_id}
        await asyncio.wait_for(handled.wait(), 5)
    finally:
        await handler.close_async()

    assert [m.text for m in slack.thread("C1", question)] == [f"<@{BOT_USER_ID}> hi", "on it"]
    assert slack.calls_to("apps.connections.open")[0].token == "xapp-1-test"


async def test_signed_slash_command_responds_to_response_url(slack: FakeSlack) -> None:
    app = AsyncApp(client=_client(slack), signing_secret=SECRET)

    @app.command("/huatuo")
    async def on_command(ack, respond, command) -> None:
        await ack()
        await respond(f"echo: {command['text']}")

    url = slack.new_response_url()
    body, headers = signed_request(slash_command("chest pain", response_url=url), SECRET, form=True)
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)

    response = await app.async_dispatch(AsyncBoltRequest(body=body.decode(), headers=headers))
    assert response.status == 200
    await until(lambda: slack.responses[url], 2, every=0.02)
    assert slack.responses[url] == [{"text": "echo: chest pain"}]

    _, bad = signed_request(slash_command("x", response_url=url), "wrong", form=True)
    rejected = await app.async_dispatch(AsyncBoltRequest(body=body.decode(), headers=bad))
    assert rejected.status == 401


async def test_signed_events_reach_bolt_and_own_messages_are_ignored(slack: FakeSlack) -> None:
    app = AsyncApp(client=_client(slack), signing_secret=SECRET)
    seen: list[tuple[str, str | None]] = []

    @app.event("message")
    async def on_message(event) -> None:
        seen.append((event["channel"], event.get("subtype")))

    events = [
        message_event("dm", channel="D1", channel_type="im", thread_ts="1.000100"),
        message_event("echo", user=BOT_USER_ID, bot_id=BOT_ID),
        message_changed_event("1.000100", "edited", previous_text="dm", channel="D1"),
        bot_message_event("from another bot", channel="C2"),
    ]
    for event in events:
        body, headers = signed_request(event_callback(event), SECRET)
        response = await app.async_dispatch(AsyncBoltRequest(body=body.decode(), headers=headers))
        assert response.status == 200
    await until(lambda: len(seen) == 3, 2, every=0.02)
    assert len(seen) == 3  # the bot's own echo was dropped by bolt's IgnoringSelfEvents
    assert set(seen) == {("D1", None), ("D1", "message_changed"), ("C2", "bot_message")}


async def test_posts_are_limited_per_channel(slack: FakeSlack) -> None:
    slack.limits = SlackLimits(scale=SLOW)
    client = _bare(slack)
    for n in range(3):  # the burst
        await client.chat_postMessage(channel="C1", text=f"post {n}")

    refused = await _refused(client.chat_postMessage(channel="C1", text="one too many"))
    await client.chat_postMessage(channel="C2", text="another channel has its own bucket")

    assert (refused.response.status_code, refused.response["error"]) == (429, "ratelimited")
    assert refused.response.headers["Retry-After"] == "100"  # 1 token at 0.01 per second
    assert "one too many" not in [m.text for m in slack.messages]
    assert [(c.status, c.error) for c in slack.calls_to("chat.postMessage")[2:]] == [
        (200, None),
        (429, "ratelimited"),
        (200, None),
    ]
    assert slack.rate_limited() == slack.rate_limited("chat.postMessage") == 1
    assert slack.rate_limited("chat.update") == 0


async def test_a_refused_post_goes_through_once_the_bucket_refills(slack: FakeSlack) -> None:
    slack.limits = SlackLimits(scale=SLOW)
    client = _bare(slack)
    for n in range(3):
        await client.chat_postMessage(channel="C1", text=f"post {n}")
    await _refused(client.chat_postMessage(channel="C1", text="later"))

    slack.limits.scale = 1000  # a test may change the limits' shape on the fly
    await asyncio.sleep(0.01)
    await client.chat_postMessage(channel="C1", text="later")

    assert [m.text for m in slack.messages][-1] == "later"


async def test_method_tier_is_shared_across_channels(slack: FakeSlack) -> None:
    slack.limits = SlackLimits(scale=SLOW)  # chat.update: Tier 3, 50 a minute, bursts of 8
    client = _bare(slack)
    seeded = [(channel, slack.add_message(channel, "q")) for channel in ("C1", "C2", "C3", "C4")]
    for n in range(2):
        for channel, ts in seeded:
            await client.chat_update(channel=channel, ts=ts, text=f"edit {n}")

    refused = await _refused(client.chat_update(channel="C5", ts="1.000000", text="x"))
    await client.chat_postMessage(channel="C1", text="posting is another bucket")

    assert refused.response.status_code == 429
    assert slack.rate_limited("chat.update") == 1
    assert slack.calls_to("chat.update")[-1].error == "ratelimited"  # not message_not_found


async def test_upload_counts_as_a_post_in_its_channel(slack: FakeSlack) -> None:
    slack.limits = SlackLimits(scale=SLOW, post_burst=1)
    client = _bare(slack)
    await client.files_upload_v2(channel="C1", content="steps", filename="thinking.md")

    refused = await _refused(client.chat_postMessage(channel="C1", text="right after"))

    assert refused.response["error"] == "ratelimited"
    assert [m.files != [] for m in slack.messages] == [True]


async def test_retry_after_as_a_date_breaks_the_sdk_rate_limit_handler(slack: FakeSlack) -> None:
    slack.limits = SlackLimits(scale=SLOW, post_burst=1, retry_after="date")
    await _bare(slack).chat_postMessage(channel="C1", text="first")

    refused = await _refused(_bare(slack).chat_postMessage(channel="C1", text="second"))
    retry_at = parsedate_to_datetime(refused.response.headers["Retry-After"])
    assert 90 < retry_at.timestamp() - time.time() <= 101

    # slack_sdk 3.48's handler does int(Retry-After): a date escapes as ValueError, no retry.
    handler = AsyncRateLimitErrorRetryHandler(max_retry_count=1)
    with pytest.raises(ValueError, match="invalid literal for int"):
        await _client(slack, retry_handlers=[handler]).chat_postMessage(channel="C1", text="3")
    assert slack.rate_limited() == 2


async def test_lost_write_is_applied_but_the_client_sees_a_dropped_connection(
    slack: FakeSlack,
) -> None:
    slack.lose_next("chat.postMessage")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _bare(slack).chat_postMessage(channel="C1", text="answer")

    [lost] = slack.calls_to("chat.postMessage")
    assert (lost.status, lost.lost) == (0, True)
    assert [m.text for m in slack.messages] == ["answer"]

    # slack_sdk's default retry handlers retry a dropped connection: the post lands twice.
    retry = AsyncConnectionErrorRetryHandler(
        interval_calculator=FixedValueRetryIntervalCalculator(0.01)
    )
    slack.lose_next("chat.update")
    ts = slack.messages[0].ts
    await _client(slack, retry_handlers=[retry]).chat_update(channel="C1", ts=ts, text="edited")
    slack.lose_next("chat.postMessage")
    await _client(slack, retry_handlers=[retry]).chat_postMessage(channel="C1", text="again")
    assert [m.text for m in slack.messages] == ["edited", "again", "again"]


async def test_stalled_answers(slack: FakeSlack) -> None:
    impatient = _bare(slack, timeout=0.1)
    slack.stall_next("chat.postMessage", 0.3)  # applied at once, answered late
    with pytest.raises(TimeoutError):
        await impatient.chat_postMessage(channel="C1", text="applied anyway")
    await until(lambda: slack.messages, 2, every=0.02)

    slack.stall_next("chat.postMessage", 0.3, apply=False)
    with pytest.raises(TimeoutError):
        await impatient.chat_postMessage(channel="C1", text="never applied")
    await asyncio.sleep(0.4)  # the fake's stall (started before the client gave up) is over
    assert [m.text for m in slack.messages] == ["applied anyway"]
    assert [c.status for c in slack.calls] == [0, 0]

    slack.stall_next("chat.postMessage", 0.05, apply=False)
    await _bare(slack).chat_postMessage(channel="C1", text="a patient client")
    assert [m.text for m in slack.messages][-1] == "a patient client"


async def test_fault_rate_is_seeded_and_counted(slack: FakeSlack) -> None:
    client = _bare(slack)

    async def outcomes() -> list[int]:
        statuses = []
        for n in range(20):
            try:
                await client.chat_postMessage(channel="C1", text=f"post {n}")
                statuses.append(200)
            except SlackApiError as e:
                statuses.append(e.response.status_code)
        return statuses

    slack.fault_rate(0.5, kinds=("503",), seed=7)
    first = await outcomes()
    slack.fault_rate(0.5, kinds=("503",), seed=7)
    assert await outcomes() == first
    assert 0 < first.count(503) < 20
    assert slack.faults_injected["503"] == 2 * first.count(503)
    assert len(slack.messages) == 2 * first.count(200)
    assert {c.error for c in slack.calls if c.status == 503} == {"service_unavailable"}

    slack.fault_rate(1.0, methods=["chat.update"], kinds=("lost",))
    await client.auth_test()  # not a method under faults
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.chat_update(channel="C1", ts=slack.messages[0].ts, text="edited")
    assert slack.messages[0].text == "edited"

    slack.fault_rate(0)
    await client.chat_update(channel="C1", ts=slack.messages[0].ts, text="calm again")
    with pytest.raises(ValueError, match="unknown fault kind"):
        slack.fault_rate(0.1, kinds=("404",))


async def test_deleted_message_and_too_long_text(slack: FakeSlack) -> None:
    client = _bare(slack)
    ts = (await client.chat_postMessage(channel="C1", text="thinking…"))["ts"]
    slack.delete_message("C1", ts)
    gone = await _refused(client.chat_update(channel="C1", ts=ts, text="answer"))
    assert gone.response["error"] == "message_not_found"

    await client.chat_postMessage(channel="C1", text="x" * MAX_TEXT)
    too_long = await _refused(client.chat_postMessage(channel="C1", text="x" * (MAX_TEXT + 1)))
    assert too_long.response["error"] == "msg_too_long"
    kept = slack.messages[0].ts
    too_long = await _refused(client.chat_update(channel="C1", ts=kept, text="y" * (MAX_TEXT + 1)))
    assert too_long.response["error"] == "msg_too_long"
    assert slack.messages[0].text == "x" * MAX_TEXT


async def test_message_metadata_round_trip(slack: FakeSlack) -> None:
    client = _bare(slack)
    question = slack.add_message("C1", "fever?")
    sent = await client.chat_postMessage(
        channel="C1", thread_ts=question, text="answer", metadata=METADATA
    )
    assert "metadata" not in sent["message"]

    plain = await client.conversations_replies(channel="C1", ts=question)
    assert all("metadata" not in m for m in plain["messages"])
    full = await client.conversations_replies(channel="C1", ts=question, include_all_metadata=True)
    assert full["messages"][1]["metadata"] == METADATA

    await client.chat_update(channel="C1", ts=sent["ts"], text="answer, edited")
    assert slack.messages[1].metadata == METADATA  # an edit without metadata keeps it
    done = {"event_type": "huatuo_answer", "event_payload": {"question": "Ev1", "done": True}}
    await client.chat_update(channel="C1", ts=sent["ts"], text="final", metadata=done)
    history = await client.conversations_history(channel="C1", include_all_metadata=True)
    assert history["messages"][0]["reply_count"] == 1
    assert slack.messages[1].metadata == done

    form = {"channel": "C2", "text": "form body", "metadata": json.dumps(METADATA)}
    await client.api_call("chat.postMessage", data=form)
    assert slack.messages[-1].metadata == METADATA
    bad = await _refused(
        client.chat_postMessage(channel="C1", text="x", metadata={"event_type": "no payload"})
    )
    assert bad.response["error"] == "invalid_metadata_format"


async def test_conversations_history(slack: FakeSlack) -> None:
    client = _bare(slack)
    first = slack.add_message("C1", "first")
    slack.add_message("C1", "a reply", thread_ts=first)
    middle = (await client.chat_postMessage(channel="C1", text="middle", metadata=METADATA))["ts"]
    last = slack.add_message("C1", "last")
    slack.add_message("C2", "elsewhere")
    assert [m.ts for m in slack.messages] == sorted({m.ts for m in slack.messages})

    everything = await client.conversations_history(channel="C1")
    assert [m["text"] for m in everything["messages"]] == ["last", "middle", "first"]
    assert everything["has_more"] is False and "metadata" not in everything["messages"][1]
    assert everything["messages"][2]["reply_count"] == 1
    page = await client.conversations_history(channel="C1", limit=1)
    assert ([m["text"] for m in page["messages"]], page["has_more"]) == (["last"], True)
    between = await client.conversations_history(channel="C1", oldest=first, latest=last)
    assert [m["ts"] for m in between["messages"]] == [middle]
    inclusive = await client.conversations_history(
        channel="C1", oldest=middle, latest=last, inclusive=True, include_all_metadata=True
    )
    assert [m["text"] for m in inclusive["messages"]] == ["last", "middle"]
    assert inclusive["messages"][1]["metadata"] == METADATA
