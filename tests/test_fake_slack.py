"""The fake Slack server, driven by the real slack_sdk and slack_bolt clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    BOT_ID,
    BOT_USER_ID,
    FakeSlack,
    app_mention_event,
    bot_message_event,
    event_callback,
    message_changed_event,
    message_event,
    signed_request,
    slash_command,
)

SECRET = "test-signing-secret"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def _client(slack: FakeSlack, **kwargs) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack.api_url, **kwargs)


async def _eventually(condition: Callable[[], object]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met within 2 s")


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
    await _eventually(lambda: slack.responses[url])
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
    await _eventually(lambda: len(seen) == 3)
    assert len(seen) == 3  # the bot's own echo was dropped by bolt's IgnoringSelfEvents
    assert set(seen) == {("D1", None), ("D1", "message_changed"), ("C2", "bot_message")}
