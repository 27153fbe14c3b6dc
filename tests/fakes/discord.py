"""A fake Discord REST API and gateway on 127.0.0.1 that the real discord.py client talks to.

By default it never says no on its own. `FakeDiscord(limits=DiscordLimits())` enforces Discord's
per-route and global rate limits (with the X-RateLimit-* headers discord.py plans by);
`fail_next`, `lose_next` and `fault_rate` inject errors and lost responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import WSMsgType, web

JSON = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
LOADING, EPHEMERAL, HAS_THREAD = 128, 64, 32
_OPTION_TYPES = {str: 3, int: 4, bool: 5, float: 10}
NONCE_TTL = 300.0  # seconds an enforced nonce returns the message it first created


@dataclass(frozen=True)
class RouteLimit:
    """One Discord bucket: `limit` requests per `per` seconds for each major parameter."""

    limit: int
    per: float


_FIVE_PER_5S = RouteLimit(5, 5.0)
ROUTE_LIMITS: dict[str, RouteLimit] = {  # "METHOD /route template" -> its bucket
    "POST /channels/{cid}/messages": _FIVE_PER_5S,
    "PATCH /channels/{cid}/messages/{mid}": _FIVE_PER_5S,
    "DELETE /channels/{cid}/messages/{mid}": _FIVE_PER_5S,
    "POST /channels/{cid}/threads": _FIVE_PER_5S,
    "POST /channels/{cid}/messages/{mid}/threads": _FIVE_PER_5S,
    "POST /webhooks/{app}/{token}": _FIVE_PER_5S,
    "GET /webhooks/{app}/{token}/messages/{mid}": _FIVE_PER_5S,
    "PATCH /webhooks/{app}/{token}/messages/{mid}": _FIVE_PER_5S,
    "DELETE /webhooks/{app}/{token}/messages/{mid}": _FIVE_PER_5S,
}
CALLBACK = "POST /interactions/{iid}/{token}/callback"  # no bucket, and outside the global limit
FAULT_ROUTES = frozenset(  # the routes fault_rate may fail: message create and edit, threads
    {
        "POST /channels/{cid}/messages",
        "PATCH /channels/{cid}/messages/{mid}",
        "POST /channels/{cid}/threads",
        "POST /channels/{cid}/messages/{mid}/threads",
        "POST /webhooks/{app}/{token}",
        "PATCH /webhooks/{app}/{token}/messages/{mid}",
    }
)


@dataclass
class DiscordLimits:
    """Discord's rate limits; `FakeDiscord(limits=DiscordLimits())` enforces them.

    - `routes`: the bucket of each route ("METHOD /template" as in ROUTE_LIMITS), one per major
      parameter: the channel (a thread is a channel of its own), or an interaction webhook's
      application id and token. Routes not listed have no bucket.
    - `global_limit`: requests per second across every route but interaction callbacks.
    - `scale` multiplies every rate (windows get shorter, limits stay): the same shape, faster.

    Buckets are fixed windows, as discord.py models them: the first request opens a window of
    `per` seconds with `limit` requests. Answers on a limited route carry X-RateLimit-Limit,
    -Remaining, -Reset, -Reset-After and -Bucket; a request over a limit is answered 429 (body
    `retry_after` and `global`, headers Retry-After, X-RateLimit-Scope, and `Via`, without which
    discord.py takes a 429 for a Cloudflare ban) and not applied. discord.py waits on both by
    itself: pre-emptively once Remaining is 0, and for `retry_after` after a 429.
    """

    routes: dict[str, RouteLimit] = field(default_factory=lambda: dict(ROUTE_LIMITS))
    global_limit: int = 50
    scale: float = 1.0


@dataclass
class _Window:
    reset: float  # time.monotonic() when the window closes
    used: int = 0


def _ceil_ms(seconds: float) -> float:
    return math.ceil(seconds * 1000) / 1000


def _bucket_headers(route: str, rule: RouteLimit, window: _Window, now: float) -> dict[str, str]:
    after = _ceil_ms(window.reset - now)
    return {
        "X-RateLimit-Limit": str(rule.limit),
        "X-RateLimit-Remaining": str(max(0, rule.limit - window.used)),
        "X-RateLimit-Reset": f"{time.time() + after:.3f}",
        "X-RateLimit-Reset-After": f"{after:.3f}",
        "X-RateLimit-Bucket": hashlib.blake2b(route.encode(), digest_size=16).hexdigest(),
    }


def _too_many(retry_after: float, scope: str) -> web.Response:
    """Discord's 429 answer for a bucket (scope "user") or the global limit ("global")."""
    retry_after = _ceil_ms(retry_after)
    headers = {
        "Retry-After": str(math.ceil(retry_after)),
        "X-RateLimit-Scope": scope,
        "Via": "1.1 google",  # without it discord.py takes a 429 for a Cloudflare ban
    }
    if scope == "global":
        headers["X-RateLimit-Global"] = "true"
    body = {"message": "You are being rate limited.", "retry_after": retry_after}
    return _json({**body, "global": scope == "global", "code": 0}, 429, headers)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Bytes, not text: aiohttp would append "; charset=utf-8", and discord.py wants exactly
    # "application/json" before it parses a body.
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def _role(role_id: str, name: str, permissions: discord.Permissions, position: int) -> JSON:
    return {
        "id": role_id,
        "name": name,
        "permissions": str(permissions.value),
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


class DiscordError(Exception):
    """An API error reply (status, Discord error code, message) raised inside a route handler."""

    def __init__(self, status: int, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class Upload:
    """One file part of a multipart request (`files[n]`)."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Call:
    """One REST request: path without /api/v10, JSON body (or multipart `payload_json`), files."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[Upload]
    status: int = 0  # 0 until answered
    at: float = field(default_factory=time.monotonic)
    lost: bool = False  # applied, then its connection dropped without an answer (lose_next)


@dataclass
class Thread:
    """A thread the client created, with the message it was started from (None if standalone)."""

    channel: JSON
    starter: JSON | None


@dataclass(frozen=True)
class _Fault:
    status: int  # the HTTP error to answer; 0: apply the request, then drop the connection
    retry_after: float = 0.0

    def response(self) -> web.Response:
        if self.status != 429:
            return _json({"message": "injected failure", "code": 0}, self.status)
        headers = {
            "Retry-After": str(math.ceil(self.retry_after)),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + self.retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{self.retry_after:.3f}",
            "X-RateLimit-Scope": "user",
            "Via": "1.1 google",  # without it discord.py takes a 429 for a Cloudflare ban
        }
        body = {"message": "You are being rate limited.", "retry_after": self.retry_after}
        return _json({**body, "global": False, "code": 0}, 429, headers)


@dataclass
class _FaultRate:
    rate: float
    methods: frozenset[str]
    kinds: tuple[str, ...]
    rng: random.Random


def _kind_fault(kind: str) -> _Fault:
    """The fault of a fault_rate kind: "lost" or an HTTP 5xx status such as "503"."""
    if kind == "lost":
        return _Fault(0)
    if kind.isdigit() and 500 <= int(kind) < 600:
        return _Fault(int(kind))
    raise ValueError(f"unknown fault kind {kind!r}")


def _route(request: web.Request) -> str:
    """ "METHOD /route template" of a request (its bare path when no route matched)."""
    resource = request.match_info.route.resource
    template = resource.canonical.removeprefix(API) if resource else request.path
    return f"{request.method} {template}"


def _major(request: web.Request) -> str:
    """The major parameter of a request's bucket: its channel, webhook, or guild."""
    info = request.match_info
    if "cid" in info:
        return info["cid"]
    if "app" in info:
        return f"{info['app']}/{info['token']}"
    return info.get("gid", "")


async def _read_body(request: web.Request) -> tuple[Any, list[Upload]]:
    if request.content_type == "multipart/form-data":
        payload, files = None, []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            data = await part.read()  # type: ignore[union-attr]
            if part.name == "payload_json":
                payload = json.loads(data)
            else:
                ctype = part.headers.get("Content-Type", "")
                files.append(Upload(part.name or "", part.filename or "", ctype, bytes(data)))
        return payload, files
    if request.content_type == "application/json" and request.can_read_body:
        return await request.json(), []
    return None, []


def _check_content(body: JSON, call: Call, *, allow_empty: bool = False) -> None:
    if not (allow_empty or body.get("content") or body.get("embeds") or call.files):
        raise DiscordError(400, "Cannot send an empty message", 50006)
    if len(body.get("content") or "") > 2000:
        raise DiscordError(400, "Invalid Form Body: content must be 2000 or fewer long", 50035)


def buttons(message: JSON) -> list[JSON]:
    """The buttons on a message, row by row, as the bot last sent them."""
    rows = message.get("components") or []
    return [c for row in rows for c in row.get("components", []) if c.get("type") == 2]


def _apply_edit(msg: JSON, body: JSON) -> None:
    """Change the fields an edit names (None clears one) and stamp the edit."""
    for key, empty in (("content", ""), ("embeds", []), ("components", []), ("flags", 0)):
        if key in body:
            msg[key] = empty if body[key] is None else body[key]
    msg["edited_timestamp"] = _now()


CALL = web.RequestKey("call", Call)


class FakeDiscord:
    """Fake Discord: REST under /api/v10 plus a JSON gateway; records every call and heartbeat."""

    def __init__(
        self,
        *,
        heartbeat_interval_ms: int = 1000,
        token: str = "fake-token",
        limits: DiscordLimits | None = None,
    ) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.token = token
        self.limits = limits
        self.faults_injected: Counter[str] = Counter()  # fault_rate's faults, by kind
        self.port = 0
        self._last_id = 0
        self.users: dict[str, JSON] = {}
        self.member_roles: dict[str, list[str]] = {}  # user id -> role ids in the guild
        self.bot_user = self.make_user("huatuo-bot", bot=True)
        self.application_id: str = self.bot_user["id"]
        self.human = self.make_user("alice")
        self.guild_id, self.channel_id = self.new_id(), self.new_id()
        self.bot_role_id = self.new_id()
        self.roles: list[JSON] = []  # the guild's roles besides @everyone and the bot's own
        self.member_roles[self.bot_user["id"]] = [self.bot_role_id]
        self.channels: dict[str, JSON] = {
            self.channel_id: {
                "id": self.channel_id,
                "type": 0,
                "guild_id": self.guild_id,
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "parent_id": None,
                "topic": None,
                "nsfw": False,
                "rate_limit_per_user": 0,
                "last_message_id": None,
                "flags": 0,
            }
        }
        self.messages: dict[str, dict[str, JSON]] = {}  # channel id -> message id -> message
        self.threads: list[Thread] = []
        self.interactions: dict[str, JSON] = {}  # by token
        self.originals: dict[str, JSON] = {}  # interaction token -> original response message
        self.commands: dict[str, list[JSON]] = {}  # "global" or guild id -> synced commands
        self.calls: list[Call] = []
        self.heartbeats: list[float] = []  # time.monotonic() of each op 1
        self.identifies: list[JSON] = []
        self.resumes: list[JSON] = []
        self.gateway_urls: list[str] = []  # path and query of each gateway connection
        self.session_id = ""
        self._seq = 0
        self._ws: web.WebSocketResponse | None = None
        self._live = asyncio.Event()  # a session is READY/RESUMED on self._ws
        self._acked: set[str] = set()
        self._faults: list[tuple[str, re.Pattern[str], _Fault]] = []  # method, path, fault
        self._fault_rate: _FaultRate | None = None
        self._nonces: dict[tuple[str, str], tuple[float, JSON]] = {}  # (channel, nonce) -> sent
        self._dms: dict[str, str] = {}  # user id -> DM channel id
        self._runner: web.AppRunner | None = None
        self._exit = ExitStack()

    @property
    def limits(self) -> DiscordLimits | None:
        """The rate limits enforced (None: none); setting them starts every bucket afresh."""
        return self._limits

    @limits.setter
    def limits(self, limits: DiscordLimits | None) -> None:
        self._limits = limits
        self._windows: dict[str, _Window] = {}  # "global", or route and major parameter

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:port of the running server."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on an ephemeral 127.0.0.1 port."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway-resume", self._gateway)
        for method, path, handler in self._routes():
            app.router.add_route(method, API + path, handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the gateway socket and the server."""
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @contextmanager
    def patched(self) -> Iterator[None]:
        """Point discord.py's `Route.BASE` and `DEFAULT_GATEWAY` here; restore them on exit."""
        ws_cls = discord.gateway.DiscordWebSocket
        saved = discord.http.Route.BASE, ws_cls.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.base_url + API
        ws_cls.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{self.port}/gateway")
        try:
            yield
        finally:
            discord.http.Route.BASE, ws_cls.DEFAULT_GATEWAY = saved

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        self._exit.enter_context(self.patched())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._exit.close()
        await self.stop()

    @asynccontextmanager
    async def running(self, client: discord.Client, timeout: float = 10.0) -> AsyncIterator[None]:
        """Start `client` against this fake, wait for on_ready, and close it cleanly on exit."""
        async with client:
            task = asyncio.create_task(client.start(self.token))
            ready = asyncio.create_task(client.wait_until_ready())
            try:
                done, _ = await asyncio.wait(
                    {task, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if ready not in done:
                    if task.done():
                        task.result()  # raises the client's startup error
                    raise TimeoutError(f"client not ready after {timeout}s")
                yield
            finally:
                ready.cancel()
                await client.close()
                await task

    # -- test-side API

    def new_id(self) -> str:
        """A fresh snowflake (as a string), strictly increasing."""
        now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, now)
        return str(self._last_id)

    def make_user(self, username: str, *, bot: bool = False, roles: tuple[str, ...] = ()) -> JSON:
        """Create and register a user object (a human unless `bot`), a member with `roles`."""
        user_id = self.new_id()
        self.member_roles[user_id] = list(roles)
        self.users[user_id] = {
            "id": user_id,
            "username": username,
            "discriminator": "0",
            "global_name": username,
            "avatar": None,
            "bot": bot,
            "public_flags": 0,
        }
        return self.users[user_id]

    async def add_role(self, name: str, permissions: discord.Permissions | None = None) -> str:
        """Create a guild role (GUILD_ROLE_CREATE if connected); return its id."""
        role = _role(self.new_id(), name, permissions or discord.Permissions.none(), 0)
        role["position"] = len(self.roles) + 2
        self.roles.append(role)
        await self._echo("GUILD_ROLE_CREATE", {"guild_id": self.guild_id, "role": role})
        return role["id"]

    def add_channel(self, name: str) -> str:
        """Another text channel in the guild (before the client connects); returns its id."""
        channel_id = self.new_id()
        self.channels[channel_id] = {**self.channels[self.channel_id], "id": channel_id}
        self.channels[channel_id] |= {"name": name, "position": len(self.channels)}
        return channel_id

    def channel_messages(self, channel_id: str) -> list[JSON]:
        """Current messages of a channel, oldest first, edits applied and deletions removed."""
        return list(self.messages.get(channel_id, {}).values())

    def dm_channel_id(self, user: JSON) -> str:
        """The id of the DM channel between the bot and `user` (created on first use)."""
        if user["id"] not in self._dms:
            cid = self._dms[user["id"]] = self.new_id()
            self.channels[cid] = {
                "id": cid,
                "type": 1,
                "recipients": [user],
                "last_message_id": None,
                "flags": 0,
            }
        return self._dms[user["id"]]

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        """Recorded calls with this method whose path matches `path_regex` (re.search)."""
        pattern = re.compile(path_regex)
        return [c for c in self.calls if c.method == method and pattern.search(c.path)]

    async def wait_for_calls(
        self, method: str, path_regex: str, count: int = 1, timeout: float = 5.0
    ) -> list[Call]:
        """Wait until at least `count` matching calls were answered (or lost); return them all."""
        async with asyncio.timeout(timeout):
            while (
                len(calls := [c for c in self.calls_to(method, path_regex) if c.status or c.lost])
                < count
            ):
                await asyncio.sleep(0.01)
        return calls

    def rate_limited(self, method: str | None = None, path_regex: str | None = None) -> int:
        """How many calls (with `method` and a path matching `path_regex`) were answered 429."""
        pattern = re.compile(path_regex or "")
        return sum(
            1
            for c in self.calls
            if c.status == 429 and method in (None, c.method) and pattern.search(c.path)
        )

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        retry_after: float = 0.2,
        times: int = 1,
    ) -> None:
        """Answer the next `times` matching requests with `status` (429: Discord's rate-limit
        reply, which discord.py waits on and retries by itself)."""
        fault = (method.upper(), re.compile(path_regex), _Fault(status, retry_after))
        self._faults += [fault] * times

    def lose_next(self, method: str, path_regex: str, times: int = 1) -> None:
        """Apply the next `times` matching requests (message created or edited, the gateway
        told), then close their connections without an answer.

        discord.py retries only connection resets it recognises (errno 54 / 10054, not Linux's
        104), so the caller gets aiohttp.ServerDisconnectedError ("Server disconnected") for a
        POST or PATCH. aiohttp itself retries an idempotent request (GET, PUT, DELETE) once on a
        dropped connection: a lost DELETE shows as two calls here, the second answered 404, and
        the caller gets discord.NotFound though the message was deleted.
        """
        self._faults += [(method.upper(), re.compile(path_regex), _Fault(0))] * times

    def fault_rate(
        self,
        rate: float,
        methods: Collection[str] = ("POST", "PATCH"),
        kinds: Sequence[str] = ("503", "lost"),
        seed: int = 0,
    ) -> None:
        """Make every request with one of `methods` to a message create or edit or thread route
        (FAULT_ROUTES) fail with probability `rate` (0 turns this off).

        The kind of each failure is drawn from `kinds`: an HTTP 5xx status such as "503" (not
        applied) or "lost" (as lose_next). discord.py retries 500, 502, 504 (and 524) by itself,
        sleeping 1, 3, 5, 7 and 9 s (25 s in all) before it gives up; any other 5xx, 503
        included, reaches the caller at once as discord.DiscordServerError. Draws come from
        random.Random(seed), so the same requests meet the same faults; faults queued with
        fail_next or lose_next go first. Each injected fault is counted in `faults_injected`.
        """
        for kind in kinds:
            _kind_fault(kind)  # refuse an unknown kind now rather than mid-test
        self._fault_rate = None
        if rate:
            methods = frozenset(m.upper() for m in methods)
            self._fault_rate = _FaultRate(rate, methods, tuple(kinds), random.Random(seed))

    async def delete_message(self, channel_id: str, message_id: str) -> None:
        """Delete a message as a moderator would (KeyError if there is none) and dispatch
        MESSAGE_DELETE; editing it then answers 404 Unknown Message (10008)."""
        await self._remove(self.messages[channel_id][message_id])

    async def redispatch(self, message: JSON) -> None:
        """Dispatch the MESSAGE_CREATE of `message` again, as a gateway redelivers an event
        after a resume."""
        await self.dispatch("MESSAGE_CREATE", message)

    async def dispatch(self, event: str, data: JSON, timeout: float = 5.0) -> None:
        """Send a DISPATCH once a session is live (after READY or RESUMED)."""
        await asyncio.wait_for(self._live.wait(), timeout)
        assert self._ws is not None
        await self._send_dispatch(self._ws, event, data)

    async def dispatch_message(
        self,
        content: str,
        *,
        author: JSON | None = None,
        channel_id: str | None = None,
        mentions_bot: bool = False,
        guild: bool = True,
        message_reference: str | None = None,
    ) -> JSON:
        """Store and dispatch a user's MESSAGE_CREATE; `message_reference` is a message id."""
        author = author or self.human
        channel_id = channel_id or (self.channel_id if guild else self.dm_channel_id(author))
        mentions = []
        if mentions_bot:
            mention = f"<@{self.bot_user['id']}>"
            content = content if mention in content else f"{mention} {content}"
            mentions = [self._mention(channel_id, self.bot_user)]
        reply = self._reply_fields(channel_id, message_reference)
        msg = self._message(channel_id, author, content, mentions=mentions, **reply)
        await self.dispatch("MESSAGE_CREATE", msg)
        return msg

    async def dispatch_interaction(
        self,
        name: str = "ask",
        options: dict[str, str | int | bool | float] | None = None,
        *,
        channel_id: str | None = None,
        user: JSON | None = None,
        guild: bool = True,
    ) -> JSON:
        """Dispatch an APPLICATION_COMMAND INTERACTION_CREATE for slash command `name`.

        In a guild the guild's own synced command is used before a global one, and its
        `data.guild_id` names the guild, as Discord does: discord.py looks commands up by it.
        """
        user = user or self.human
        channel_id = channel_id or (self.channel_id if guild else self.dm_channel_id(user))
        scopes = [self.channels[channel_id].get("guild_id"), "global"]
        synced = [c for s in scopes for c in self.commands.get(s or "", []) if c["name"] == name]
        data: JSON = {
            "id": synced[0]["id"] if synced else self.new_id(),
            "name": name,
            "type": 1,
            "options": [
                {"name": k, "type": _OPTION_TYPES[type(v)], "value": v}
                for k, v in (options or {}).items()
            ],
        }
        if synced and "guild_id" in synced[0]:
            data["guild_id"] = synced[0]["guild_id"]
        return await self._dispatch_interaction(2, data, channel_id, user)

    async def click_button(self, message: JSON, custom_id: str, user: JSON | None = None) -> JSON:
        """Dispatch a MESSAGE_COMPONENT interaction: `user` clicks a button of `message`.

        Like Discord's client, refuses a button that is not on the message or is disabled.
        """
        message = self.messages[message["channel_id"]][message["id"]]  # as it is now
        button = next((b for b in buttons(message) if b.get("custom_id") == custom_id), None)
        if button is None or button.get("disabled"):
            raise ValueError(f"no enabled button {custom_id!r} on message {message['id']}")
        data = {"custom_id": custom_id, "component_type": 2}
        user = user or self.human
        return await self._dispatch_interaction(3, data, message["channel_id"], user, message)

    async def _dispatch_interaction(
        self, kind: int, data: JSON, channel_id: str, user: JSON, message: JSON | None = None
    ) -> JSON:
        """Store and dispatch an INTERACTION_CREATE of type `kind` by `user` in a channel."""
        channel = self.channels[channel_id]
        in_guild = "guild_id" in channel
        iid = self.new_id()
        owners = {"0": self.guild_id} if in_guild else {"1": user["id"]}
        interaction = {
            "id": iid,
            "application_id": self.application_id,
            "type": kind,
            "version": 1,
            "token": f"token-{iid}",
            "channel_id": channel["id"],
            "channel": channel,
            "data": data,
            "app_permissions": str(discord.Permissions.all().value),
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 8 * 1024 * 1024,
            "context": 0 if in_guild else 1,
            "authorizing_integration_owners": owners,
        }
        if message is not None:
            interaction["message"] = json.loads(json.dumps(message))  # a snapshot, as sent
        if in_guild:
            member = {**self._member(user), "permissions": str(self._permissions(user).value)}
            interaction |= {"guild_id": self.guild_id, "guild_locale": "en-US", "member": member}
        else:
            interaction["user"] = user
        self.interactions[interaction["token"]] = interaction
        await self.dispatch("INTERACTION_CREATE", interaction)
        return interaction

    async def dispatch_reaction(
        self, message: JSON, emoji: str, *, user: JSON | None = None, removed: bool = False
    ) -> None:
        """Dispatch MESSAGE_REACTION_ADD (or, `removed`, _REMOVE): `user` reacted with the
        Unicode `emoji` on `message`."""
        user = user or self.human
        data: JSON = {
            "user_id": user["id"],
            "channel_id": message["channel_id"],
            "message_id": message["id"],
            "emoji": {"id": None, "name": emoji},
            "burst": False,
            "type": 0,
        }
        if "guild_id" in message:
            data["guild_id"] = message["guild_id"]
        if not removed:
            data |= {"message_author_id": message["author"]["id"], "burst_colors": []}
            if "guild_id" in message:
                data["member"] = self._member(user)
        await self.dispatch("MESSAGE_REACTION_REMOVE" if removed else "MESSAGE_REACTION_ADD", data)

    async def send_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client drops this socket and RESUMEs on resume_gateway_url."""
        assert self._ws is not None
        self._live.clear()
        await self._ws.send_json({"op": 7, "d": None, "s": None, "t": None})

    # -- payloads

    def _member(self, user: JSON) -> JSON:
        return {
            "user": user,
            "roles": self.member_roles.get(user["id"], []),
            "joined_at": _now(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "pending": False,
        }

    def _permissions(self, user: JSON) -> discord.Permissions:
        """What `user` may do in the guild: @everyone's permissions and those of their roles."""
        roles = {r["id"]: r for r in self._guild()["roles"]}
        value = 0
        for role_id in [self.guild_id, *self._member(user)["roles"]]:
            value |= int(roles[role_id]["permissions"])
        return discord.Permissions(value)

    def _guild(self) -> JSON:
        everyone = discord.Permissions.text() | discord.Permissions(view_channel=True)
        admin = discord.Permissions(administrator=True)
        return {
            "id": self.guild_id,
            "name": "Fake Clinic",
            "icon": None,
            "owner_id": self.human["id"],
            "unavailable": False,
            "large": False,
            "member_count": 2,
            "joined_at": _now(),
            "features": [],
            "emojis": [],
            "stickers": [],
            "presences": [],
            "voice_states": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "preferred_locale": "en-US",
            "verification_level": 0,
            "mfa_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "premium_tier": 0,
            "nsfw_level": 0,
            "system_channel_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "roles": [
                _role(self.guild_id, "@everyone", everyone, 0),
                _role(self.bot_role_id, "huatuo", admin, 1),
                *self.roles,
            ],
            "channels": [c for c in self.channels.values() if c.get("type") == 0],
            "members": [self._member(self.bot_user), self._member(self.human)],
        }

    def _me(self) -> JSON:
        return {**self.bot_user, "verified": True, "mfa_enabled": False, "flags": 0}

    def _mention(self, channel_id: str, user: JSON) -> JSON:
        if "guild_id" not in self.channels[channel_id]:
            return user
        return {**user, "member": {k: v for k, v in self._member(user).items() if k != "user"}}

    def _message(self, channel_id: str, author: JSON, content: str, **extra: Any) -> JSON:
        msg = {
            "id": self.new_id(),
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
            **extra,
        }
        if "guild_id" in self.channels[channel_id]:
            msg["guild_id"] = self.guild_id
            msg["member"] = self._mention(channel_id, author)["member"]
        self.messages.setdefault(channel_id, {})[msg["id"]] = msg
        return msg

    async def _bot_message(self, channel_id: str, body: JSON, call: Call, **extra: Any) -> JSON:
        """Store a message the bot sent and tell its gateway session, as Discord does."""
        msg = self._message(
            channel_id,
            self.bot_user,
            body.get("content") or "",
            embeds=body.get("embeds") or [],
            components=body.get("components") or [],
            flags=body.get("flags") or 0,
            attachments=self._attachments(call.files),
            **extra,
        )
        if not msg["flags"] & EPHEMERAL:
            await self._echo("MESSAGE_CREATE", msg)
        return msg

    def _reply_fields(self, channel_id: str, message_id: str | None) -> JSON:
        target = self.messages.get(channel_id, {}).get(str(message_id))
        if target is None:
            return {}
        ref = {"type": 0, "message_id": target["id"], "channel_id": channel_id}
        if "guild_id" in target:
            ref["guild_id"] = self.guild_id
        referenced = {k: v for k, v in target.items() if k != "referenced_message"}
        return {"type": 19, "message_reference": ref, "referenced_message": referenced}

    def _attachments(self, files: list[Upload]) -> list[JSON]:
        return [
            {
                "id": self.new_id(),
                "filename": f.filename,
                "size": len(f.data),
                "content_type": f.content_type,
                "url": f"{self.base_url}/files/{f.filename}",
                "proxy_url": f"{self.base_url}/files/{f.filename}",
            }
            for f in files
        ]

    # -- gateway

    async def _send_dispatch(self, ws: web.WebSocketResponse, event: str, data: JSON) -> None:
        self._seq += 1
        await ws.send_json({"op": 0, "s": self._seq, "t": event, "d": data})

    async def _echo(self, event: str, data: JSON) -> None:
        if self._live.is_set() and self._ws is not None:  # dropped while reconnecting
            with contextlib.suppress(ConnectionError):
                await self._send_dispatch(self._ws, event, data)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        # discord.py asks for compress=zlib-stream but inflates only binary frames: send text.
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.gateway_urls.append(str(request.rel_url))
        self._ws = ws
        hello = {"heartbeat_interval": self.heartbeat_interval_ms}
        await ws.send_json({"op": 10, "d": hello, "s": None, "t": None})
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await self._on_op(ws, json.loads(msg.data))
        if self._ws is ws:
            self._ws = None
            self._live.clear()
        return ws

    async def _on_op(self, ws: web.WebSocketResponse, payload: JSON) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            self.heartbeats.append(time.monotonic())
            await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            self.identifies.append(data)
            self.session_id, self._seq = f"session-{self.new_id()}", 0
            await self._send_dispatch(
                ws,
                "READY",
                {
                    "v": 10,
                    "user": self._me(),
                    "session_id": self.session_id,
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway-resume",
                    "guilds": [{"id": self.guild_id, "unavailable": True}],
                    "private_channels": [],
                    "relationships": [],
                    "application": {"id": self.application_id, "flags": 0},
                },
            )
            await self._send_dispatch(ws, "GUILD_CREATE", self._guild())
            self._live.set()
        elif op == 6:
            self.resumes.append(data)
            await self._send_dispatch(ws, "RESUMED", {})
            self._live.set()

    # -- REST

    def _routes(self) -> list[tuple[str, str, Handler]]:
        ch, msg = "/channels/{cid}", "/channels/{cid}/messages/{mid}"
        hook, app = "/webhooks/{app}/{token}", "/applications/{app}"
        return [
            ("GET", "/gateway", self._get_gateway),
            ("GET", "/gateway/bot", self._get_gateway),
            ("GET", "/users/@me", self._get_me),
            ("GET", "/oauth2/applications/@me", self._get_app),
            ("GET", "/applications/@me", self._get_app),
            ("POST", "/users/@me/channels", self._open_dm),
            ("GET", ch, self._get_channel),
            ("POST", ch + "/typing", self._no_content),
            ("GET", ch + "/messages", self._history),
            ("POST", ch + "/messages", self._create_message),
            ("POST", ch + "/threads", self._create_thread),
            ("POST", msg + "/threads", self._create_thread),
            ("PUT", msg + "/reactions/{emoji}/@me", self._no_content),
            ("DELETE", msg + "/reactions/{emoji}/@me", self._no_content),
            ("POST", "/interactions/{iid}/{token}/callback", self._interaction_callback),
            ("POST", hook, self._followup),
            ("GET", msg, self._get_message),
            ("PATCH", msg, self._edit_message),
            ("DELETE", msg, self._delete_message),
            ("GET", hook + "/messages/{mid}", self._get_message),  # mid may be "@original"
            ("PATCH", hook + "/messages/{mid}", self._edit_message),
            ("DELETE", hook + "/messages/{mid}", self._delete_message),
            ("GET", app + "/commands", self._get_commands),
            ("PUT", app + "/commands", self._put_commands),
            ("GET", app + "/guilds/{gid}/commands", self._get_commands),
            ("PUT", app + "/guilds/{gid}/commands", self._put_commands),
        ]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API + "/"):
            return await handler(request)  # the gateway
        path, body_and_files = request.path.removeprefix(API), await _read_body(request)
        call = Call(request.method, path, dict(request.query), *body_and_files)
        self.calls.append(call)
        request[CALL] = call
        route = _route(request)
        refused, headers = self._throttle(request, route)
        fault = None if refused else self._next_fault(call, route)
        if refused is not None:
            response: web.StreamResponse = refused
        elif fault is not None and fault.status:
            response = fault.response()
        else:
            try:
                response = await handler(request)
            except DiscordError as exc:
                response = _json({"message": exc.message, "code": exc.code}, exc.status)
            except web.HTTPException as exc:  # no such route or method
                response = _json({"message": f"{exc.status}: {exc.reason}", "code": 0}, exc.status)
            if fault is not None:  # lost: applied, and no answer
                call.lost = True
                if request.transport is not None:
                    request.transport.close()
                return response  # never sent
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        call.status = response.status
        return response

    def _throttle(
        self, request: web.Request, route: str
    ) -> tuple[web.Response | None, dict[str, str]]:
        """Count a request against the global limit and its route's bucket. Returns a 429 (then
        nothing is counted) or None, and the headers of the route's bucket, if it has one."""
        limits = self._limits
        if limits is None or route == CALLBACK:
            return None, {}
        now = time.monotonic()
        spent = self._window("global", 1.0 / limits.scale, now)
        bucket = None
        if (rule := limits.routes.get(route)) is not None:
            bucket = rule, self._window(f"{route} {_major(request)}", rule.per / limits.scale, now)
        refused = None
        if spent.used >= limits.global_limit:
            refused = _too_many(spent.reset - now, "global")
        elif bucket is not None and bucket[1].used >= bucket[0].limit:
            refused = _too_many(bucket[1].reset - now, "user")
        else:
            spent.used += 1
            if bucket is not None:
                bucket[1].used += 1
        return refused, {} if bucket is None else _bucket_headers(route, *bucket, now)

    def _window(self, key: str, per: float, now: float) -> _Window:
        """The open window of a bucket (a new one if it has none, or it closed)."""
        window = self._windows.get(key)
        if window is None or now >= window.reset:
            window = self._windows[key] = _Window(now + per)
        return window

    def _next_fault(self, call: Call, route: str) -> _Fault | None:
        for queued in self._faults:
            method, pattern, fault = queued
            if method == call.method and pattern.search(call.path):
                self._faults.remove(queued)
                return fault
        chance = self._fault_rate
        if (
            chance is None
            or call.method not in chance.methods
            or route not in FAULT_ROUTES
            or chance.rng.random() >= chance.rate
        ):
            return None
        kind = chance.rng.choice(chance.kinds)
        self.faults_injected[kind] += 1
        return _kind_fault(kind)

    def _interaction(self, token: str) -> JSON:
        if token not in self.interactions:
            raise DiscordError(404, "Unknown Webhook", 10015)
        return self.interactions[token]

    def _find_message(self, request: web.Request) -> JSON:
        info = request.match_info
        if info["mid"] == "@original":
            found = self.originals.get(info["token"])
        else:
            cid = info.get("cid") or self._interaction(info["token"])["channel_id"]
            found = self.messages.get(cid, {}).get(info["mid"])
        if found is None:
            raise DiscordError(404, "Unknown Message", 10008)
        return found

    async def _no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _get_gateway(self, request: web.Request) -> web.Response:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        url = f"ws://127.0.0.1:{self.port}/gateway"
        return _json({"url": url, "shards": 1, "session_start_limit": limit})

    async def _get_me(self, request: web.Request) -> web.Response:
        return _json(self._me())

    async def _get_app(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": self.application_id,
                "name": "huatuo-bot",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.human,
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
            }
        )

    async def _open_dm(self, request: web.Request) -> web.Response:
        user = self.users.get(str((request[CALL].json or {}).get("recipient_id")))
        if user is None:
            raise DiscordError(400, "Unknown User", 10013)
        return _json(self.channels[self.dm_channel_id(user)])

    async def _get_channel(self, request: web.Request) -> web.Response:
        if (channel := self.channels.get(request.match_info["cid"])) is None:
            raise DiscordError(404, "Unknown Channel", 10003)
        return _json(channel)

    async def _history(self, request: web.Request) -> web.Response:
        msgs, query = self.channel_messages(request.match_info["cid"]), request.query
        if "before" in query:
            msgs = [m for m in msgs if int(m["id"]) < int(query["before"])]
        if "after" in query:
            msgs = [m for m in msgs if int(m["id"]) > int(query["after"])]
        limit = int(query.get("limit", 50))
        msgs = msgs[:limit] if "after" in query else msgs[-limit:]
        return _json(msgs[::-1])  # Discord answers newest first

    async def _create_message(self, request: web.Request) -> web.Response:
        cid, call = request.match_info["cid"], request[CALL]
        if cid not in self.channels:
            raise DiscordError(404, "Unknown Channel", 10003)
        body = call.json or {}
        _check_content(body, call)
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            sent = self._nonces.get((cid, str(nonce)))
            if sent is not None and time.monotonic() - sent[0] < NONCE_TTL:
                return _json(sent[1])  # Discord's answer to a repeated nonce: the first message
        ref = (body.get("message_reference") or {}).get("message_id")
        extra = self._reply_fields(cid, ref) | ({} if nonce is None else {"nonce": nonce})
        msg = await self._bot_message(cid, body, call, **extra)
        if nonce is not None:
            self._nonces[(cid, str(nonce))] = (time.monotonic(), msg)
        return _json(msg)

    async def _get_message(self, request: web.Request) -> web.Response:
        return _json(self._find_message(request))

    async def _edit_message(self, request: web.Request) -> web.Response:
        msg, call = self._find_message(request), request[CALL]
        body = call.json or {}
        _check_content(body, call, allow_empty=True)
        _apply_edit(msg, body)
        if "attachments" in body or call.files:
            keep = {str(a.get("id")) for a in body.get("attachments") or []}
            kept = [a for a in msg["attachments"] if a["id"] in keep]
            msg["attachments"] = kept + self._attachments(call.files)
        if "token" in request.match_info:
            msg["flags"] &= ~LOADING  # editing a deferred response ends "is thinking..."
        await self._echo("MESSAGE_UPDATE", msg)
        return _json(msg)

    async def _delete_message(self, request: web.Request) -> web.Response:
        await self._remove(self._find_message(request))
        return web.Response(status=204)

    async def _remove(self, msg: JSON) -> None:
        """Delete a stored message and dispatch MESSAGE_DELETE."""
        del self.messages[msg["channel_id"]][msg["id"]]
        deleted = {k: msg[k] for k in ("id", "channel_id", "guild_id") if k in msg}
        await self._echo("MESSAGE_DELETE", deleted)

    async def _create_thread(self, request: web.Request) -> web.Response:
        cid, body = request.match_info["cid"], request[CALL].json or {}
        if self.channels.get(cid, {}).get("type") != 0:
            raise DiscordError(400, "Cannot execute action on this channel type", 50024)
        starter = self._find_message(request) if "mid" in request.match_info else None
        if starter is not None and "thread" in starter:
            raise DiscordError(400, "A thread has already been created for this message", 160004)
        metadata = {
            "archived": False,
            "locked": False,
            "archive_timestamp": _now(),
            "auto_archive_duration": body.get("auto_archive_duration") or 1440,
        }
        thread = {
            "id": starter["id"] if starter else self.new_id(),
            "guild_id": self.guild_id,
            "parent_id": cid,
            "owner_id": self.bot_user["id"],
            "name": body.get("name", "thread"),
            "type": body.get("type", 11),
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "thread_metadata": metadata,
            "rate_limit_per_user": body.get("rate_limit_per_user") or 0,
        }
        self.channels[thread["id"]] = thread
        self.threads.append(Thread(thread, starter))
        if starter is not None:
            starter["thread"], starter["flags"] = thread, starter["flags"] | HAS_THREAD
        await self._echo("THREAD_CREATE", {**thread, "newly_created": True})
        return _json(thread, 201)

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        token, call = request.match_info["token"], request[CALL]
        interaction = self.interactions.get(token)
        if interaction is None or interaction["id"] != request.match_info["iid"]:
            raise DiscordError(404, "Unknown interaction", 10062)
        if token in self._acked:
            raise DiscordError(400, "Interaction has already been acknowledged.", 40060)
        self._acked.add(token)
        kind, data = (call.json or {}).get("type"), (call.json or {}).get("data") or {}
        result: JSON = {"id": interaction["id"], "type": interaction["type"]}
        if kind in (6, 7):  # a component's message: 6 leaves it as it is, 7 edits it now
            return _json({"interaction": result, **await self._update_clicked(token, kind, call)})
        if kind not in (4, 5):  # 4: message, 5: deferred ("is thinking...")
            return _json({"interaction": result})
        _check_content(data, call, allow_empty=kind == 5)
        metadata = {
            "id": interaction["id"],
            "type": interaction["type"],
            "user": interaction.get("user") or interaction["member"]["user"],
            "authorizing_integration_owners": interaction["authorizing_integration_owners"],
        }
        if "message" in interaction:
            metadata["interacted_message_id"] = interaction["message"]["id"]
        else:
            metadata["name"] = interaction["data"]["name"]
        flags = (data.get("flags") or 0) | (LOADING if kind == 5 else 0)
        msg = self.originals[token] = await self._bot_message(
            interaction["channel_id"],
            {**data, "flags": flags},
            call,
            type=20,
            webhook_id=self.application_id,
            application_id=self.application_id,
            interaction_metadata=metadata,
        )
        result |= {
            "response_message_id": msg["id"],
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(flags & EPHEMERAL),
        }
        return _json({"interaction": result, "resource": {"type": kind, "message": msg}})

    async def _update_clicked(self, token: str, kind: int, call: Call) -> JSON:
        """Callback 6 or 7 of a component interaction: its message becomes the original."""
        clicked = self.interactions[token].get("message")
        if clicked is None:
            raise DiscordError(400, "Interaction has no message to update", 50035)
        msg = self.originals[token] = self.messages[clicked["channel_id"]][clicked["id"]]
        if kind == 6:
            return {}
        data = (call.json or {}).get("data") or {}
        _check_content(data, call, allow_empty=True)
        _apply_edit(msg, data)
        await self._echo("MESSAGE_UPDATE", msg)
        return {"resource": {"type": 7, "message": msg}}

    async def _followup(self, request: web.Request) -> web.Response:
        token, call = request.match_info["token"], request[CALL]
        interaction, body = self._interaction(token), call.json or {}
        if token not in self._acked:
            raise DiscordError(404, "Unknown Webhook", 10015)
        _check_content(body, call)
        cid = interaction["channel_id"]
        return _json(await self._bot_message(cid, body, call, webhook_id=self.application_id))

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json(self.commands.get(request.match_info.get("gid", "global"), []))

    async def _put_commands(self, request: web.Request) -> web.Response:
        gid = request.match_info.get("gid")
        scope = {"guild_id": gid} if gid else {}
        defaults = {
            "application_id": self.application_id,
            "type": 1,
            "description": "",
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
        }
        self.commands[gid or "global"] = [
            {**defaults, **cmd, **scope, "id": self.new_id(), "version": self.new_id()}
            for cmd in request[CALL].json or []
        ]
        return _json(self.commands[gid or "global"])
