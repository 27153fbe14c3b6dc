"""Slack's rate limits and errors, as the Outbox needs them (design.md §6, "Limits and faults").

Budgets: `chat.postMessage` about 1 per second per channel; every other method by its tier, per
method across the workspace. Ours are a little under Slack's, so that 429s stay rare.
"""

from __future__ import annotations

import datetime
import email.utils
import time
from collections.abc import Hashable, Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.core.budget import Budget, Rate
from bot.core.outbox import Failure, Gone, RateLimited, Refused, Transient

TIERS = {1: 1, 2: 20, 3: 50, 4: 100}  # calls per minute
METHOD_TIERS = {
    "chat.update": 3,
    "chat.delete": 3,
    "conversations.replies": 3,
    "conversations.history": 3,
    "reactions.add": 3,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
    "chat.startStream": 2,
    "chat.appendStream": 4,
    "chat.stopStream": 2,
    "assistant.threads.setStatus": 3,
    "assistant.threads.setSuggestedPrompts": 3,
}
POSTS_PER_SECOND = 1.0  # per channel
HEADROOM = 0.9  # of each documented rate
# Errors worth another try (the write may or may not have been applied); `ratelimited` is a 429.
TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
GONE = frozenset({"message_not_found", "thread_not_found"})
DEFAULT_WAIT = 5.0  # a 429 without a readable Retry-After


def post_bucket(channel: str) -> Hashable:
    """The budget of posting in one channel."""
    return ("post", channel)


def method_bucket(method: str) -> Hashable:
    """The budget of one Web API method across the workspace."""
    return ("method", method)


def rate(key: Hashable, scale: float = 1.0) -> Rate | None:
    """The limit of one of the buckets above (None: not limited); `scale` multiplies rates."""
    kind, name = key if isinstance(key, tuple) else (None, None)
    if kind == "post":
        return Rate(POSTS_PER_SECOND * HEADROOM * scale, 1.0)
    if kind == "method" and name in METHOD_TIERS:
        per_minute = TIERS[METHOD_TIERS[name]] * HEADROOM
        return Rate(per_minute / 60 * scale, max(1.0, per_minute / 20))
    return None


def budget(scale: float = 1.0) -> Budget:
    """One workspace's budget (one per Slack app: every answer shares it); `scale` > 1 only
    where Slack's limits are emulated faster (tests)."""
    return Budget(lambda key: rate(key, scale))


def classify(exc: BaseException) -> Failure:
    """What a failed Web API call means for another try."""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        if status == 429 or error == "ratelimited":
            return RateLimited(retry_after(exc.response.headers))
        if status >= 500 or error in TRANSIENT:
            return Transient(f"HTTP {status} {error or ''}".strip(), ambiguous=True)
        if error in GONE:
            return Gone(error or "")
        return Refused(error or f"HTTP {status}")
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return Transient(repr(exc), ambiguous=True)  # sent, perhaps applied: no response
    return Refused(repr(exc))  # a bug of ours: trying again would not help


def retry_after(headers: Mapping[str, Any] | None) -> float:
    """Seconds to wait from a Retry-After header: a number of seconds, or an HTTP date."""
    value = next(
        (v for k, v in (headers or {}).items() if k.lower() == "retry-after"),
        None,
    )
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None:
        return DEFAULT_WAIT
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return DEFAULT_WAIT
    if when.tzinfo is None:  # "-0000": UTC, by RFC 5322
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - time.time())
