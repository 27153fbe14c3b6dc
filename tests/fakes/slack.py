"""A fake Slack (Web API, files_upload_v2, Socket Mode, response_url) for end-to-end tests.

The real slack_sdk / slack_bolt clients talk to it over HTTP and WebSocket on 127.0.0.1:

    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)

By default it never says no on its own. `FakeSlack(limits=SlackLimits())` enforces Slack's rate
limits (per-channel posts, method tiers); `fail_next`, `error_next`, `lose_next`, `stall_next` and
`fault_rate` inject the faults the real service has (errors, lost responses, slow answers).

Slack's AI app surface is there as Slack documents it: `assistant.threads.setStatus` (a loading
status, dropped after `status_ttl` s or when the bot writes in the thread),
`assistant.threads.setSuggestedPrompts` (1 to 4 prompts), and native streaming
(`chat.startStream` / `appendStream` / `stopStream`: `thread_ts` always, the recipient in
channels, at most 12,000 characters of `markdown_text` per call, valid chunks, and a stream that
Slack closes `stream_timeout` s after it started: `message_not_in_streaming_state`). Without
`ai_features` (a plan without them) these methods answer `feature_not_enabled` (a stand-in: Slack
does not document the error); a method in `unsupported` answers `unknown_method`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from typing import Any, Literal, Self
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
BOT_NAME = "huatuo"
TEAM_ID = "T1"
APP_ID = "A1"
BOT_SCOPES = "app_mentions:read,channels:history,chat:write,commands,files:write,im:history"

Params = dict[str, Any]
_JSON_PARAMS = ("blocks", "attachments", "files", "metadata")
MAX_TEXT = 40_000  # characters of `text`; longer posts and edits answer msg_too_long
WRITE_METHODS = (
    "chat.postMessage",
    "chat.update",
    "chat.delete",
    "reactions.add",
    "files.completeUploadExternal",
)
TIER_2, TIER_3, TIER_4 = 20, 50, 100  # calls per minute per method across the workspace
METHOD_TIERS: dict[str, int] = {
    "files.getUploadURLExternal": TIER_2,
    "files.completeUploadExternal": TIER_2,
    "chat.startStream": TIER_2,
    "chat.stopStream": TIER_2,
    "chat.update": TIER_3,
    "chat.delete": TIER_3,
    "conversations.replies": TIER_3,
    "conversations.history": TIER_3,
    "reactions.add": TIER_3,
    "reactions.remove": TIER_3,
    "usergroups.users.list": TIER_3,
    "assistant.threads.setStatus": TIER_3,
    "chat.postEphemeral": TIER_4,
    "chat.appendStream": TIER_4,
    "users.info": TIER_4,
}
_POSTS = ("chat.postMessage", "files.completeUploadExternal")  # count against a channel's posts
_SERVER_ERRORS = {"500": "internal_error", "503": "service_unavailable"}
AI_METHODS = frozenset(
    {
        "assistant.threads.setStatus",
        "assistant.threads.setSuggestedPrompts",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    }
)
MARKDOWN_LIMIT = 12_000  # characters of markdown_text (or of a markdown_text chunk) per call
TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})


@dataclass
class Status:
    """An assistant thread's loading status as last set."""

    status: str
    loading_messages: list[str]
    at: float  # monotonic


@dataclass
class SlackLimits:
    """Slack's rate limits as token buckets; `FakeSlack(limits=SlackLimits())` enforces them.

    - `post_rate` / `post_burst`: chat.postMessage per second in each channel, and how many may
      go at once (files.completeUploadExternal counts as a post in its channel too).
    - `methods`: calls per minute of each method across the workspace (its tier; METHOD_TIERS);
      a method not listed (auth.test, apps.connections.open, ...) has no tier limit.
    - `bursts`: a method's burst capacity; by default its rate per minute // 6, at least 1.
    - `scale` multiplies every rate (not the bursts): the same shape, faster or slower.
    - `retry_after`: how a 429 writes Retry-After: whole seconds, or an HTTP-date that far ahead.

    A call takes a token from every bucket it counts against; if one is empty it is answered
    HTTP 429 {"ok": false, "error": "ratelimited"} with Retry-After, and not applied.
    """

    post_rate: float = 1.0
    post_burst: int = 3
    methods: dict[str, int] = field(default_factory=lambda: dict(METHOD_TIERS))
    bursts: dict[str, int] = field(default_factory=dict)
    scale: float = 1.0
    retry_after: Literal["seconds", "date"] = "seconds"

    def buckets(self, method: str, params: Params) -> list[tuple[str, float, int]]:
        """(key, tokens per second, burst) of every bucket a call counts against."""
        out = []
        channel = _post_channel(method, params)
        if channel:
            out.append((f"post:{channel}", self.post_rate * self.scale, self.post_burst))
        if method in self.methods:
            per_minute = self.methods[method]
            burst = self.bursts.get(method, max(1, per_minute // 6))
            out.append((method, per_minute * self.scale / 60, burst))
        return out


@dataclass
class Call:
    """One Web API request: params merged from query string and body; time is monotonic.

    `status` and `error` are the HTTP status and Slack error the fake answered (0 and None while
    pending, or when no answer was sent); `lost` is set when the call was applied and its
    connection then dropped without an answer (lose_next, fault_rate).
    """

    method: str
    params: Params
    token: str | None
    time: float = field(default_factory=time.monotonic)
    status: int = 0
    error: str | None = None
    lost: bool = False


@dataclass
class Message:
    """A message as currently stored (edits applied)."""

    channel: str
    ts: str
    text: str
    user: str
    thread_ts: str | None = None
    blocks: list[Params] | None = None
    bot_id: str | None = None
    edited_ts: str | None = None
    files: list[str] = field(default_factory=list)
    reactions: list[str] = field(default_factory=list)
    metadata: Params | None = None  # {"event_type": str, "event_payload": {...}}
    streaming: bool = False  # a native stream still being written
    stream_started: float = 0.0  # monotonic time of chat.startStream
    tasks: dict[str, Params] = field(default_factory=dict)  # a stream's task chunks, by id

    def as_slack(self, *, metadata: bool = False) -> Params:
        """Render the message the way the Web API returns it; `metadata` (Slack's
        include_all_metadata) adds the message's metadata if it has any."""
        out: Params = {
            "type": "message",
            "user": self.user,
            "text": self.text,
            "ts": self.ts,
            "team": TEAM_ID,
        }
        if self.bot_id:
            out |= {"bot_id": self.bot_id, "app_id": APP_ID}
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.blocks is not None:
            out["blocks"] = self.blocks
        if self.edited_ts:
            out["edited"] = {"user": self.user, "ts": self.edited_ts}
        if self.files:
            out["files"] = [{"id": file_id} for file_id in self.files]
        if self.reactions:
            out["reactions"] = [
                {"name": r, "users": [BOT_USER_ID], "count": 1} for r in self.reactions
            ]
        if metadata and self.metadata is not None:
            out["metadata"] = self.metadata
        return out


@dataclass
class File:
    """A file uploaded through the files_upload_v2 flow."""

    id: str
    filename: str
    length: int
    content: bytes | None = None
    title: str | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None


@dataclass(frozen=True)
class _Fault:
    """What one call meets instead of a plain answer (the default: nothing)."""

    status: int = 0  # answer this HTTP status and `error` without applying the call
    error: str = ""
    retry_after: int | None = None
    lost: bool = False  # apply the call, then drop the connection without an answer
    before: float = 0.0  # wait this long first; if the client left meanwhile, apply nothing
    after: float = 0.0  # apply the call, then wait this long before answering


_NO_FAULT = _Fault()


def _kind_fault(kind: str) -> _Fault:
    """The fault of a fault_rate kind: "lost", "timeout" or an HTTP 5xx status such as "503"."""
    if kind == "lost":
        return _Fault(lost=True)
    if kind == "timeout":
        return _Fault(before=60.0)
    if kind.isdigit() and 500 <= int(kind) < 600:
        return _Fault(int(kind), _SERVER_ERRORS.get(kind, "internal_error"))
    raise ValueError(f"unknown fault kind {kind!r}")


@dataclass
class _FaultRate:
    rate: float
    methods: frozenset[str]
    kinds: tuple[str, ...]
    rng: random.Random


class _ApiError(Exception):
    """Raised by a method handler to answer {"ok": false, "error": ...}."""


def _require(params: Params, name: str, error: str) -> Any:
    if not params.get(name):
        raise _ApiError(error)
    return params[name]


def _flag(params: Params, name: str) -> bool:
    """A boolean argument as slack_sdk sends it: "1"/"true" in a query string, or JSON true."""
    return params.get(name) in (True, 1, "1", "true")


def _check_text(params: Params) -> None:
    if not params.get("text") and not params.get("blocks"):
        raise _ApiError("no_text")
    if len(params.get("text") or "") > MAX_TEXT:
        raise _ApiError("msg_too_long")


def _check_metadata(metadata: Any) -> Params | None:
    valid = metadata is None or (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and isinstance(metadata.get("event_payload"), dict)
    )
    if not valid:
        raise _ApiError("invalid_metadata_format")
    return metadata


def _shared_channel(params: Params) -> str | None:
    """The channel files.completeUploadExternal shares into (channel_id, or the first channels)."""
    channels = params.get("channels", "")
    return params.get("channel_id") or (channels.split(",")[0] if channels else None)


def _post_channel(method: str, params: Params) -> str | None:
    """The channel whose post rate a call counts against, if it is a post."""
    if method not in _POSTS:
        return None
    return params.get("channel") if method == "chat.postMessage" else _shared_channel(params)


def _client_left(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


async def _wait_for_client(request: web.Request, seconds: float) -> bool:
    """Sleep `seconds`; whether the client still waits for the answer afterwards."""
    await asyncio.sleep(seconds)
    return not _client_left(request)


def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer; the returned response is never sent."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()


def _answer(
    call: Call, body: Params, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    call.status, call.error = status, body.get("error")
    return web.json_response(body, status=status, headers=headers)


class FakeSlack:
    """Fake Slack server on 127.0.0.1 (ephemeral port) that records everything it is sent.

    Web API method `a.bC` is served by `_api_a_bC(params, token)`; others are unknown_method.
    """

    def __init__(self, limits: SlackLimits | None = None) -> None:
        self.limits = limits
        self.faults_injected: Counter[str] = Counter()  # fault_rate's faults, by kind
        self.calls: list[Call] = []
        self.files: dict[str, File] = {}
        self.acks: list[Params] = []
        self.usergroups: dict[str, list[str]] = {}  # user group id -> member user ids
        self.ai_features = True  # the workspace's plan has Slack's AI features
        self.unsupported: set[str] = set()  # methods answered unknown_method
        self.stream_timeout = 300.0  # seconds after which Slack closes a stream
        self.status_ttl = 120.0  # seconds a loading status shows without a message
        self.statuses: dict[tuple[str, str], Status] = {}  # (channel, thread_ts) -> status
        self.suggested: dict[tuple[str, str | None], list[Params]] = {}  # prompts set
        self.responses: dict[str, list[Params]] = defaultdict(list)
        self.base_url = ""
        self._messages: dict[tuple[str, str], Message] = {}
        self._faults: dict[str, list[_Fault]] = defaultdict(list)
        self._fault_rate: _FaultRate | None = None
        self._ack_futures: dict[str, asyncio.Future[Params]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_open = asyncio.Event()
        self._counter = itertools.count(1)
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{hook}", self._response_url)
        app.router.add_get("/link/", self._socket)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        for future in self._ack_futures.values():
            future.cancel()
        await self._runner.cleanup()

    @property
    def limits(self) -> SlackLimits | None:
        """The rate limits enforced (None: none); setting them starts every bucket full."""
        return self._limits

    @limits.setter
    def limits(self, limits: SlackLimits | None) -> None:
        self._limits = limits
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, monotonic time)

    @property
    def api_url(self) -> str:
        """Web API base URL with the trailing slash, for AsyncWebClient(base_url=...)."""
        return f"{self.base_url}/api/"

    def calls_to(self, method: str) -> list[Call]:
        """All recorded calls to one Web API method, oldest first."""
        return [call for call in self.calls if call.method == method]

    @property
    def messages(self) -> list[Message]:
        """Every stored message (after edits and deletions), in ts order."""
        return sorted(self._messages.values(), key=lambda m: m.ts)  # fixed-width ts

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The parent and the replies of one thread, in ts order."""
        return [
            m for m in self.messages if m.channel == channel and thread_ts in (m.ts, m.thread_ts)
        ]

    def add_message(
        self, channel: str, text: str, user: str = "U1", thread_ts: str | None = None
    ) -> str:
        """Seed a (human) message into the store and return its ts."""
        return self._store(Message(channel, self._next_ts(), text, user, thread_ts)).ts

    def fail_next(
        self, method: str, status: int = 429, retry_after: int = 1, times: int = 1
    ) -> None:
        """Answer the next `times` calls to `method` with an HTTP error (429 adds Retry-After)."""
        fault = (
            _Fault(429, "ratelimited", retry_after)
            if status == 429
            else _Fault(status, "internal_error")
        )
        self._faults[method] += [fault] * times

    def error_next(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next `times` calls to `method` with HTTP 200 {"ok": false, "error": error}."""
        self._faults[method] += [_Fault(200, error)] * times

    def lose_next(self, method: str, times: int = 1) -> None:
        """Apply the next `times` calls to `method` (message stored, edited, ...), then close
        their connections without any HTTP response.

        slack_sdk's AsyncWebClient then raises aiohttp.ServerDisconnectedError ("Server
        disconnected") if it has no retry handlers. Its default handlers (and the bot's) include
        AsyncConnectionErrorRetryHandler, which retries on that error: the write is applied again.
        aiohttp itself retries a GET once (conversations.replies, conversations.history), so a
        lost GET shows as two calls here.
        """
        self._faults[method] += [_Fault(lost=True)] * times

    def stall_next(self, method: str, seconds: float, times: int = 1, apply: bool = True) -> None:
        """Answer the next `times` calls to `method` only after `seconds`.

        With `apply` the call takes effect at once and only its answer is late (a client that
        gives up first has written anyway); without, it is applied after the stall, and only if
        the client is still waiting (one that gave up wrote nothing). A client whose timeout is
        shorter gets TimeoutError from slack_sdk's AsyncWebClient.
        """
        fault = _Fault(after=seconds) if apply else _Fault(before=seconds)
        self._faults[method] += [fault] * times

    def fault_rate(
        self,
        rate: float,
        methods: Collection[str] = WRITE_METHODS,
        kinds: Sequence[str] = ("503", "lost"),
        seed: int = 0,
    ) -> None:
        """Make every call to `methods` fail with probability `rate` (0 turns this off).

        The kind of each failure is drawn from `kinds`: an HTTP 5xx status such as "500" or
        "503" (answered, not applied), "lost" (as lose_next) or "timeout" (as a 60 s
        stall_next without apply). Draws come from random.Random(seed), so the same calls meet
        the same faults; faults queued with fail_next and the like go first. Each injected fault
        is counted in `faults_injected`.
        """
        for kind in kinds:
            _kind_fault(kind)  # refuse an unknown kind now rather than mid-test
        self._fault_rate = None
        if rate:
            self._fault_rate = _FaultRate(
                rate, frozenset(methods), tuple(kinds), random.Random(seed)
            )

    def delete_message(self, channel: str, ts: str) -> None:
        """Delete a stored message as a person would (KeyError if there is none); chat.update and
        chat.delete on it then answer message_not_found."""
        del self._messages[(channel, ts)]

    def rate_limited(self, method: str | None = None) -> int:
        """How many calls (to `method`, or to any) were answered HTTP 429."""
        return sum(1 for c in self.calls if c.status == 429 and method in (None, c.method))

    def new_response_url(self) -> str:
        """A fresh response_url on this server; what is posted there lands in responses[url]."""
        return f"{self.base_url}/response/{next(self._counter)}"

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until a Socket Mode client holds an open WebSocket."""
        await asyncio.wait_for(self._socket_open.wait(), timeout)

    async def send_socket_event(
        self,
        payload_type: str,
        payload: Params,
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
    ) -> str:
        """Push an "events_api" / "slash_commands" / "interactive" envelope; return its id."""
        await self.wait_connected()
        envelope_id = f"env-{next(self._counter)}"
        envelope: Params = {
            "envelope_id": envelope_id,
            "type": payload_type,
            "payload": payload,
            "accepts_response_payload": (
                payload_type != "events_api"
                if accepts_response_payload is None
                else accepts_response_payload
            ),
        }
        if payload_type == "events_api":
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": ""}
        self._ack_futures[envelope_id] = asyncio.get_running_loop().create_future()
        await self._sockets[-1].send_json(envelope)
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> Params:
        """The ack ({"envelope_id": ..., optional "payload"}) the client sent for an envelope."""
        return await asyncio.wait_for(asyncio.shield(self._ack_futures[envelope_id]), timeout)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        call = Call(method, params, token)
        self.calls.append(call)
        if token is None:
            return _answer(call, {"ok": False, "error": "not_authed"})
        if wait := self._throttle(method, params):
            headers = {"Retry-After": self._retry_after(wait)}
            return _answer(call, {"ok": False, "error": "ratelimited"}, 429, headers)
        fault = self._next_fault(method)
        if fault.status:
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return _answer(call, {"ok": False, "error": fault.error}, fault.status, headers)
        if fault.before and not await _wait_for_client(request, fault.before):
            return _drop(request)
        body, headers = self._apply(method, params, token)
        if fault.lost:
            call.lost = True
            return _drop(request)
        if fault.after and not await _wait_for_client(request, fault.after):
            return _drop(request)
        return _answer(call, body, 200, headers)

    def _apply(self, method: str, params: Params, token: str) -> tuple[Params, dict[str, str]]:
        """Run method `a.bC` as `_api_a_bC(params, token)`: the answer's body and headers."""
        handler: Callable[[Params, str], Params] | None
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None or method in self.unsupported:
            return {"ok": False, "error": "unknown_method"}, {}
        if method in AI_METHODS and not self.ai_features:
            return {"ok": False, "error": "feature_not_enabled"}, {}
        try:
            result = handler(params, token)
        except _ApiError as e:
            return {"ok": False, "error": str(e)}, {}
        headers = {"X-OAuth-Scopes": BOT_SCOPES} if token.startswith("xoxb-") else {}
        return {"ok": True, **result}, headers

    def _throttle(self, method: str, params: Params) -> float:
        """Take a token from each bucket the call counts against: 0.0, or if one is empty
        (nothing taken), the seconds until it has a token again."""
        if self._limits is None:
            return 0.0
        now, wait = time.monotonic(), 0.0
        buckets = self._limits.buckets(method, params)
        for key, rate, burst in buckets:
            tokens, at = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            self._buckets[key] = (tokens, now)
            if tokens < 1:
                wait = max(wait, (1 - tokens) / rate)
        if not wait:
            for key, _, _ in buckets:
                self._buckets[key] = (self._buckets[key][0] - 1, now)
        return wait

    def _retry_after(self, wait: float) -> str:
        """Retry-After for a wait: whole seconds, or an HTTP-date at least 1 s ahead."""
        assert self._limits is not None
        if self._limits.retry_after == "seconds":
            return str(math.ceil(wait))
        now = time.time()
        return format_datetime(
            datetime.fromtimestamp(math.ceil(now + max(wait, 1.0)), UTC), usegmt=True
        )

    def _next_fault(self, method: str) -> _Fault:
        if self._faults[method]:
            return self._faults[method].pop(0)
        chance = self._fault_rate
        if chance is None or method not in chance.methods or chance.rng.random() >= chance.rate:
            return _NO_FAULT
        kind = chance.rng.choice(chance.kinds)
        self.faults_injected[kind] += 1
        return _kind_fault(kind)

    async def _upload(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            return web.Response(status=404, text="file_not_found")
        file.content = await request.read()
        return web.Response(text=f"OK - {len(file.content)}")

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses[str(request.url)].append(await _read_params(request))
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()  # autoping=True: the client's pings get pongs
        await ws.prepare(request)
        self._sockets.append(ws)
        self._socket_open.set()
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {
                    "host": "applink-fake",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": APP_ID},
            }
        )
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_socket_message(json.loads(msg.data))
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self._socket_open.clear()
        return ws

    def _on_socket_message(self, message: Params) -> None:
        if "envelope_id" not in message:
            return
        self.acks.append(message)
        future = self._ack_futures.get(message["envelope_id"])
        if future is not None and not future.done():
            future.set_result(message)

    def _next_ts(self) -> str:
        n = next(self._counter)
        return f"{1700000000 + n // 10000}.{n % 10000 * 100:06d}"

    def _store(self, message: Message) -> Message:
        self._messages[(message.channel, message.ts)] = message
        if message.user == BOT_USER_ID and message.thread_ts:  # the app replied
            self.statuses.pop((message.channel, message.thread_ts), None)
        return message

    def status(self, channel: str, thread_ts: str) -> str | None:
        """The loading status people see in a thread now, if any."""
        status = self.statuses.get((channel, thread_ts))
        if status is None or time.monotonic() - status.at > self.status_ttl:
            return None
        return status.status or None

    def _find(self, channel: str, ts: str) -> Message:
        message = self._messages.get((channel, ts))
        if message is None:
            raise _ApiError("message_not_found")
        return message

    def _api_auth_test(self, params: Params, token: str) -> Params:
        return {
            "url": "https://huatuo-test.slack.com/",
            "team": "Huatuo Test",
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _api_chat_postMessage(self, params: Params, token: str) -> Params:
        channel = _require(params, "channel", "channel_not_found")
        _check_text(params)
        message = self._store(
            Message(
                channel,
                self._next_ts(),
                params.get("text", ""),
                BOT_USER_ID,
                params.get("thread_ts"),
                params.get("blocks"),
                BOT_ID,
                metadata=_check_metadata(params.get("metadata")),
            )
        )
        return {"channel": channel, "ts": message.ts, "message": message.as_slack()}

    def _api_chat_update(self, params: Params, token: str) -> Params:
        message = self._find(params.get("channel", ""), params.get("ts", ""))
        _check_text(params)
        if "metadata" in params:
            message.metadata = _check_metadata(params["metadata"])
        message.text = params.get("text", "")
        message.blocks = params.get("blocks", message.blocks)
        message.edited_ts = self._next_ts()
        message.streaming, message.tasks = False, {}  # the edit is the whole message now
        return {
            "channel": message.channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.as_slack(),
        }

    def _api_chat_delete(self, params: Params, token: str) -> Params:
        message = self._find(params.get("channel", ""), params.get("ts", ""))
        del self._messages[(message.channel, message.ts)]
        return {"channel": message.channel, "ts": message.ts}

    def _api_chat_postEphemeral(self, params: Params, token: str) -> Params:
        _require(params, "channel", "channel_not_found")
        _require(params, "user", "user_not_in_channel")
        return {"message_ts": self._next_ts()}

    def _api_conversations_replies(self, params: Params, token: str) -> Params:
        ts, with_metadata = params.get("ts", ""), _flag(params, "include_all_metadata")
        thread = self.thread(params.get("channel", ""), ts)
        if not thread or thread[0].ts != ts:
            raise _ApiError("thread_not_found")
        messages = [self._render(thread[0], with_metadata)]
        messages += [m.as_slack(metadata=with_metadata) for m in thread[1:]]
        return {"messages": messages, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _api_conversations_history(self, params: Params, token: str) -> Params:
        """A channel's top-level messages (thread replies left out), newest first, between
        `oldest` and `latest` (exclusive unless `inclusive`), at most `limit` (default 100)."""
        channel = _require(params, "channel", "channel_not_found")
        oldest = Decimal(params.get("oldest") or 0)
        latest = Decimal(params.get("latest") or "Infinity")
        inclusive, limit = _flag(params, "inclusive"), int(params.get("limit") or 100)

        def in_range(ts: Decimal) -> bool:
            return oldest <= ts <= latest if inclusive else oldest < ts < latest

        found = [
            m
            for m in reversed(self.messages)
            if m.channel == channel and m.thread_ts in (None, m.ts) and in_range(Decimal(m.ts))
        ]
        with_metadata = _flag(params, "include_all_metadata")
        return {
            "messages": [self._render(m, with_metadata) for m in found[:limit]],
            "has_more": len(found) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _render(self, message: Message, with_metadata: bool) -> Params:
        """A message as history and replies list it: a thread's parent with its reply count."""
        out = message.as_slack(metadata=with_metadata)
        replies = self.thread(message.channel, message.ts)[1:]
        if replies and message.thread_ts in (None, message.ts):
            out |= {
                "thread_ts": message.ts,
                "reply_count": len(replies),
                "latest_reply": replies[-1].ts,
            }
        return out

    def _api_files_getUploadURLExternal(self, params: Params, token: str) -> Params:
        filename = _require(params, "filename", "invalid_arguments")
        file = File(f"F{next(self._counter):08d}", filename, int(params.get("length", 0)))
        self.files[file.id] = file
        return {"upload_url": f"{self.base_url}/upload/{file.id}", "file_id": file.id}

    def _api_files_completeUploadExternal(self, params: Params, token: str) -> Params:
        channel = _shared_channel(params)
        shared = []
        for item in _require(params, "files", "invalid_arguments"):
            file = self.files.get(item["id"])
            if file is None or file.content is None:
                raise _ApiError("file_not_found")
            file.title = item.get("title") or file.filename
            file.channel_id, file.thread_ts = channel, params.get("thread_ts")
            file.initial_comment = params.get("initial_comment")
            shared.append(file)
        if channel:  # like Slack, sharing into a channel posts one bot message carrying the files
            self._store(
                Message(
                    channel,
                    self._next_ts(),
                    params.get("initial_comment") or "",
                    BOT_USER_ID,
                    params.get("thread_ts"),
                    bot_id=BOT_ID,
                    files=[f.id for f in shared],
                )
            )
        return {
            "files": [
                {
                    "id": f.id,
                    "name": f.filename,
                    "title": f.title,
                    "size": len(f.content or b""),
                    "user": BOT_USER_ID,
                    "channels": [channel] if channel else [],
                }
                for f in shared
            ]
        }

    def _api_apps_connections_open(self, params: Params, token: str) -> Params:
        if not token.startswith("xapp-"):
            raise _ApiError("not_allowed_token_type")
        ws_base = self.base_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_base}/link/?ticket=t{next(self._counter)}&app_id={APP_ID}"}

    def _api_reactions_add(self, params: Params, token: str) -> Params:
        message = self._find(params.get("channel", ""), params.get("timestamp", ""))
        name = _require(params, "name", "invalid_name")
        if name in message.reactions:
            raise _ApiError("already_reacted")
        message.reactions.append(name)
        return {}

    def _api_usergroups_users_list(self, params: Params, token: str) -> Params:
        group = _require(params, "usergroup", "no_such_subteam")
        if group not in self.usergroups:
            raise _ApiError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _api_users_info(self, params: Params, token: str) -> Params:
        user = _require(params, "user", "user_not_found")
        name = BOT_NAME if user == BOT_USER_ID else f"user-{user.lower()}"
        return {
            "user": {
                "id": user,
                "team_id": TEAM_ID,
                "name": name,
                "real_name": name.title(),
                "is_bot": user == BOT_USER_ID,
                "tz": "Asia/Shanghai",
                "profile": {"display_name": name, "real_name": name.title()},
            }
        }

    def _api_assistant_threads_setStatus(self, params: Params, token: str) -> Params:
        channel = _require(params, "channel_id", "channel_not_found")
        thread = _require(params, "thread_ts", "invalid_thread_ts")
        loading = params.get("loading_messages") or []
        if not isinstance(params.get("status"), str) or not isinstance(loading, list):
            raise _ApiError("invalid_arguments")
        if len(loading) > 10 or not all(isinstance(m, str) and m for m in loading):
            raise _ApiError("invalid_arguments")
        self.statuses[(channel, thread)] = Status(params["status"], loading, time.monotonic())
        return {}

    def _api_assistant_threads_setSuggestedPrompts(self, params: Params, token: str) -> Params:
        channel = _require(params, "channel_id", "channel_not_found")
        prompts = params.get("prompts")
        valid = isinstance(prompts, list) and 1 <= len(prompts) <= 4
        if not valid or not all(
            isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts
        ):
            raise _ApiError("invalid_arguments")
        self.suggested[(channel, params.get("thread_ts"))] = prompts
        return {}

    def _api_chat_startStream(self, params: Params, token: str) -> Params:
        channel = _require(params, "channel", "channel_not_found")
        thread = _require(params, "thread_ts", "invalid_arguments")
        if not channel.startswith("D"):  # in a channel the text streams to one person
            _require(params, "recipient_user_id", "invalid_arguments")
            _require(params, "recipient_team_id", "invalid_arguments")
        message = Message(channel, self._next_ts(), "", BOT_USER_ID, thread, bot_id=BOT_ID)
        message.streaming, message.stream_started = True, time.monotonic()
        _stream_into(message, params)
        self._store(message)
        return {"channel": channel, "ts": message.ts}

    def _api_chat_appendStream(self, params: Params, token: str) -> Params:
        message = self._streaming(params)
        _stream_into(message, params)
        return {"channel": message.channel, "ts": message.ts}

    def _api_chat_stopStream(self, params: Params, token: str) -> Params:
        message = self._streaming(params)
        _stream_into(message, params)
        metadata = _check_metadata(params.get("metadata"))
        if isinstance(params.get("blocks"), list):
            message.blocks = params["blocks"]
        message.metadata = metadata or message.metadata
        message.streaming = False
        return {"channel": message.channel, "ts": message.ts, "message": message.as_slack()}

    def _streaming(self, params: Params) -> Message:
        """The message a stream call names, if it is still being streamed."""
        message = self._find(params.get("channel", ""), params.get("ts", ""))
        if message.streaming and time.monotonic() - message.stream_started > self.stream_timeout:
            message.streaming = False  # Slack closed it
        if not message.streaming:
            raise _ApiError("message_not_in_streaming_state")
        return message


def _stream_into(message: Message, params: Params) -> None:
    """Apply a stream call's markdown_text and chunks to `message` (all or nothing)."""
    text = params.get("markdown_text") or ""
    chunks = params.get("chunks") or []
    if len(text) > MARKDOWN_LIMIT:
        raise _ApiError("msg_too_long")
    if not isinstance(chunks, list) or not all(_valid_chunk(c) for c in chunks):
        raise _ApiError("invalid_chunks")
    message.text += text
    for chunk in chunks:
        if chunk["type"] == "markdown_text":
            message.text += chunk["text"]
        elif chunk["type"] == "task_update":
            message.tasks[chunk["id"]] = message.tasks.get(chunk["id"], {}) | chunk


def _valid_chunk(chunk: Any) -> bool:
    if not isinstance(chunk, dict):
        return False
    kind = chunk.get("type")
    if kind == "markdown_text":
        return isinstance(chunk.get("text"), str) and len(chunk["text"]) <= MARKDOWN_LIMIT
    if kind == "task_update":
        return bool(chunk.get("id") and chunk.get("title")) and chunk.get("status") in TASK_STATUSES
    return kind in ("plan_update", "blocks")


async def _read_params(request: web.Request) -> Params:
    """Merge query-string params with a JSON or form body (slack_sdk sends all of these)."""
    params: Params = dict(request.query)
    if request.content_type == "application/json":
        params |= await request.json()
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        params |= dict(await request.post())
    for name in _JSON_PARAMS:
        if isinstance(params.get(name), str) and params[name][:1] in ("[", "{"):
            params[name] = json.loads(params[name])
    return params


def signed_request(
    payload: Mapping[str, Any],
    signing_secret: str,
    *,
    form: bool = False,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a v0-signed Slack request: JSON, or form-encoded when `form`."""
    body = urlencode(payload) if form else json.dumps(payload)
    timestamp = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{timestamp}:{body}".encode()
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return body.encode(), {
        "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
    }


def event_callback(event: Params) -> Params:
    """Wrap an event in the Events API envelope (also the payload of an events_api envelope)."""
    return {
        "token": "verification-token",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{time.monotonic_ns()}",
        "event_time": int(time.time()),
        "is_ext_shared_channel": False,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
    }


def _event(fields: Params, ts: str | None, thread_ts: str | None) -> Params:
    ts = ts or f"{time.time():.6f}"
    return {**fields, "ts": ts, "event_ts": ts} | ({"thread_ts": thread_ts} if thread_ts else {})


def app_mention_event(
    text: str,
    *,
    channel: str = "C1",
    user: str = "U1",
    ts: str | None = None,
    thread_ts: str | None = None,
) -> Params:
    """An app_mention event whose text is "<@UBOT> " + `text`."""
    return _event(
        {
            "type": "app_mention",
            "user": user,
            "text": f"<@{BOT_USER_ID}> {text}",
            "channel": channel,
            "team": TEAM_ID,
            "client_msg_id": str(uuid.uuid4()),
        },
        ts,
        thread_ts,
    )


def message_event(
    text: str,
    *,
    channel: str = "C1",
    user: str = "U1",
    ts: str | None = None,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    bot_id: str | None = None,
) -> Params:
    """A plain message event; channel_type "im" (with a "D..." channel) for DMs."""
    author = {"bot_id": bot_id} if bot_id else {"client_msg_id": str(uuid.uuid4())}
    return _event(
        {
            "type": "message",
            "user": user,
            "text": text,
            "channel": channel,
            "channel_type": channel_type,
            "team": TEAM_ID,
            **author,
        },
        ts,
        thread_ts,
    )


def message_changed_event(
    ts: str,
    new_text: str,
    *,
    previous_text: str = "",
    channel: str = "C1",
    user: str = "U1",
    thread_ts: str | None = None,
    channel_type: str = "channel",
) -> Params:
    """A message_changed event: message `ts` was edited to `new_text`."""
    old = {"type": "message", "user": user, "text": previous_text, "ts": ts}
    old |= {"thread_ts": thread_ts} if thread_ts else {}
    event = _event(
        {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": channel,
            "channel_type": channel_type,
            "previous_message": old,
        },
        None,
        None,
    )
    event["message"] = old | {"text": new_text, "edited": {"user": user, "ts": event["ts"]}}
    return event


def reaction_event(
    reaction: str,
    item_ts: str,
    *,
    channel: str = "C1",
    user: str = "U1",
    item_user: str = BOT_USER_ID,
    removed: bool = False,
) -> Params:
    """A reaction_added (or, `removed`, reaction_removed) event: `user` put `reaction` (an emoji
    name such as "+1::skin-tone-2") on the message `item_ts` in `channel`."""
    ts = f"{time.time():.6f}"
    return {
        "type": "reaction_removed" if removed else "reaction_added",
        "user": user,
        "reaction": reaction,
        "item_user": item_user,
        "item": {"type": "message", "channel": channel, "ts": item_ts},
        "event_ts": ts,
    }


def app_home_opened_event(
    tab: str = "messages", *, user: str = "U1", channel: str = "D1"
) -> Params:
    """Someone opened the bot's Home or Messages tab (its DM `channel`)."""
    ts = f"{time.time():.6f}"
    return {"type": "app_home_opened", "user": user, "channel": channel, "tab": tab, "event_ts": ts}


def bot_message_event(
    text: str,
    *,
    channel: str = "C1",
    bot_id: str = "B2",
    ts: str | None = None,
    thread_ts: str | None = None,
    channel_type: str = "channel",
) -> Params:
    """A bot_message-subtype event (another integration posting, no user)."""
    return _event(
        {
            "type": "message",
            "subtype": "bot_message",
            "text": text,
            "bot_id": bot_id,
            "username": "other-bot",
            "channel": channel,
            "channel_type": channel_type,
        },
        ts,
        thread_ts,
    )


def slash_command(
    text: str,
    *,
    response_url: str,
    command: str = "/huatuo",
    channel: str = "C1",
    user: str = "U1",
    trigger_id: str | None = None,
) -> dict[str, str]:
    """Slash command fields: a slash_commands socket payload, or signed_request(..., form=True)."""
    return {
        "token": "verification-token",
        "team_id": TEAM_ID,
        "team_domain": "huatuo-test",
        "channel_id": channel,
        "channel_name": "general",
        "user_id": user,
        "user_name": f"user-{user.lower()}",
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"trig.{time.monotonic_ns()}",
    }


def block_actions(
    action_id: str,
    value: str,
    *,
    message: Message,
    response_url: str,
    user: str = "U1",
    text: str = "",
    kind: str = "button",
) -> Params:
    """A block_actions payload: `user` clicked the button `action_id` (with `value`; `kind`
    "feedback_buttons" for one of those) on the stored `message`. Send it as an "interactive"
    socket envelope, or over HTTP as
    signed_request(interactive_form(payload), secret, form=True)."""
    now = f"{time.time():.6f}"
    block_id = next(
        (
            block.get("block_id", "")
            for block in message.blocks or []
            for element in block.get("elements", [])
            if element.get("action_id") == action_id
        ),
        "",
    )
    return {
        "type": "block_actions",
        "user": {"id": user, "username": f"user-{user.lower()}", "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "verification-token",
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"trig.{time.monotonic_ns()}",
        "team": {"id": TEAM_ID, "domain": "huatuo-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": message.channel, "name": "general"},
        "message": message.as_slack(),
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": text or value, "emoji": True},
                "value": value,
                "type": kind,
                "action_ts": now,
            }
        ],
    }


def interactive_form(payload: Params) -> dict[str, str]:
    """The form Slack POSTs for an interactive payload over HTTP: payload=<json>."""
    return {"payload": json.dumps(payload)}
