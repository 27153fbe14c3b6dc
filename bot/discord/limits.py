"""Discord's rate limits and errors, as the Outbox needs them (design.md §6, "Limits and faults").

discord.py already reads Discord's `X-RateLimit-*` headers and waits on each route's bucket; our
budget sits in front of it so that answers go before progress edits (discord.py serves a bucket
first come, first served) and progress is coalesced before it ever reaches discord.py's queue.
"""

from __future__ import annotations

from collections.abc import Hashable

import aiohttp
import discord

from bot.core.budget import Budget, Rate
from bot.core.outbox import Failure, Gone, RateLimited, Refused, Transient

GLOBAL: Hashable = ("global",)  # 50 requests a second for the whole bot
# Per channel (a thread is its own channel) or interaction webhook: about 5 per 5 s per route;
# ours stay under it.
PER_ROUTE = Rate(0.8, 3.0)
UNKNOWN_MESSAGE = 10008
DEFAULT_WAIT = 2.0  # a 429 that discord.py gave up on


def channel_bucket(route: str, channel_id: int) -> Hashable:
    """One route ("create", "edit", "delete", "thread") in one channel."""
    return (route, channel_id)


def webhook_bucket(interaction_id: int) -> Hashable:
    """An interaction's webhook."""
    return ("webhook", interaction_id)


def rate(key: Hashable, scale: float = 1.0) -> Rate | None:
    """The limit of one of the buckets above; `scale` multiplies rates."""
    if key == GLOBAL:
        return Rate(45.0 * scale, 10.0)
    kind = key[0] if isinstance(key, tuple) else None
    if kind in ("create", "edit", "delete", "thread", "webhook"):
        return Rate(PER_ROUTE.per_second * scale, PER_ROUTE.burst)
    return None


def budget(scale: float = 1.0) -> Budget:
    """The bot's budget (one per Discord application); `scale` > 1 only where Discord's limits
    are emulated faster (tests)."""
    return Budget(lambda key: rate(key, scale))


def classify(exc: BaseException) -> Failure:
    """What a failed Discord call means for another try. (discord.py has already waited out
    429s and retried 5xx a few times by itself.)"""
    if isinstance(exc, discord.RateLimited):
        return RateLimited(exc.retry_after)
    if isinstance(exc, discord.DiscordServerError):
        return Transient(f"HTTP {exc.status}", ambiguous=True)
    if isinstance(exc, discord.NotFound) and exc.code == UNKNOWN_MESSAGE:
        return Gone("Unknown Message")
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429:
            return RateLimited(DEFAULT_WAIT)
        return Refused(f"HTTP {exc.status} {exc.text}".strip())
    if isinstance(exc, aiohttp.ClientError | OSError | TimeoutError):
        return Transient(repr(exc), ambiguous=True)  # sent, perhaps applied: no response
    return Refused(repr(exc))  # a bug of ours: trying again would not help
