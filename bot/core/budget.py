"""A platform's rate limits as token buckets, handed out by priority (final writes before progress).

Each write names the buckets it spends (Slack: the channel's post rate, or a method tier across
the workspace; Discord: a route in one channel, and the global limit). `acquire` waits until every
one of them has a token; writes of a higher priority that wait on a bucket hold it against lower
ones, so progress never takes the token an answer is waiting for.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum


class Priority(IntEnum):
    """Lower goes first."""

    ANSWER = 0  # answer parts, failures, emergency notices: what the asker is waiting for
    THINKING = 1  # the model's reasoning, after its answer
    PLACEHOLDER = 2  # "Thinking…" and live posts: courtesies (withdrawn if the answer is first)
    PROGRESS = 3  # placeholder edits: best effort, latest only


@dataclass(frozen=True)
class Rate:
    """`per_second` tokens a second, at most `burst` saved up."""

    per_second: float
    burst: float = 1.0


@dataclass(frozen=True)
class Share:
    """The part of a bucket's rate that progress may use (so answers always find room)."""

    key: Hashable


PROGRESS_SHARE = 0.5  # of each bucket's rate


class _Bucket:
    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self.tokens = rate.burst
        self.stamp = now
        self.blocked_until = 0.0  # a Retry-After from the platform

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.stamp)
        self.tokens = min(self.rate.burst, self.tokens + elapsed * self.rate.per_second)
        self.stamp = now

    def ready_at(self, now: float) -> float:
        """When a token is there (now or later)."""
        self._refill(now)
        missing = max(0.0, 1.0 - self.tokens)
        return max(self.blocked_until, now + missing / self.rate.per_second)

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    keys: tuple[Hashable, ...] = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class Budget:
    """Token buckets by key; `rates(key)` says a key's limit (None: not limited)."""

    def __init__(
        self,
        rates: Callable[[Hashable], Rate | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rates = rates
        self._clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    def limited(self, keys: Iterable[Hashable], priority: Priority) -> tuple[Hashable, ...]:
        """The keys a write of `priority` spends: its limited keys, and for progress their share."""
        keys = tuple(key for key in keys if self._rate(key) is not None)
        if priority is Priority.PROGRESS:
            keys += tuple(Share(key) for key in keys)
        return keys

    def ready_in(self, keys: tuple[Hashable, ...], priority: Priority) -> float:
        """About how long a write of `priority` spending `keys` would wait for its tokens, behind
        the writes already waiting that go first."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            bucket = self._bucket(key, now)
            ahead = sum(1 for w in self._waiters if w.priority <= priority and key in w.keys)
            at = bucket.ready_at(now) + ahead / bucket.rate.per_second
            wait = max(wait, at - now)
        return wait

    def acquire(self, keys: tuple[Hashable, ...], priority: Priority) -> asyncio.Future[None]:
        """A future that is done once a token of every bucket in `keys` was taken for this
        write; cancel it to stop waiting."""
        future = asyncio.get_running_loop().create_future()
        if not keys:
            future.set_result(None)
            return future
        self._waiters.append(_Waiter(priority, next(self._seq), keys, future))
        self._waiters.sort()
        future.add_done_callback(lambda _: self._wake())
        self._wake()
        return future

    def block(self, key: Hashable, seconds: float) -> None:
        """The platform said "retry after `seconds`": nothing spends this bucket until then."""
        if self._rate(key) is None:
            return
        bucket = self._bucket(key, self._clock())
        bucket.blocked_until = max(bucket.blocked_until, self._clock() + seconds)
        bucket.tokens = min(bucket.tokens, 0.0)
        self._wake()

    def _rate(self, key: Hashable) -> Rate | None:
        if isinstance(key, Share):
            rate = self._rates(key.key)
            if rate is None:
                return None
            return Rate(rate.per_second * PROGRESS_SHARE, max(1.0, rate.burst * PROGRESS_SHARE))
        return self._rates(key)

    def _bucket(self, key: Hashable, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            rate = self._rate(key)
            assert rate is not None
            bucket = self._buckets[key] = _Bucket(rate, now)
        return bucket

    def _wake(self) -> None:
        """Give tokens to waiters in priority order; a waiter that cannot go holds the buckets it
        waits for against those after it. Then sleep until the next bucket refills."""
        now = self._clock()
        held: set[Hashable] = set()
        next_at = float("inf")
        for waiter in list(self._waiters):
            if waiter.future.done():
                self._waiters.remove(waiter)
                continue
            buckets = {key: self._bucket(key, now) for key in waiter.keys}
            ready = {key: bucket.ready_at(now) for key, bucket in buckets.items()}
            blocked = {key for key, at in ready.items() if at > now} | (held & set(buckets))
            if not blocked:
                for bucket in buckets.values():
                    bucket.take(now)
                self._waiters.remove(waiter)
                waiter.future.set_result(None)
                continue
            held |= blocked
            if (own := max(ready.values())) > now:  # else it waits on a holder, who wakes us
                next_at = min(next_at, own)
        self._schedule(next_at)

    def _schedule(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at != float("inf"):
            delay = max(0.0, at - self._clock()) + 0.001
            self._timer = asyncio.get_running_loop().call_later(delay, self._wake)
