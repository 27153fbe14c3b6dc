"""Every write of one platform goes through its Outbox: budgets, priorities, retries, no doubles.

A platform describes its limits (a `Budget`) and how to read its errors (`classify`); the Outbox
does the rest, once for every platform:
- final writes (`send`) wait for their budget, honour Retry-After, retry what is worth retrying,
  and after an ambiguous failure (the write may have been applied but its response was lost) ask
  the write whether it landed before trying again, so nothing is posted twice;
- progress writes (`offer`) are best effort: only the latest per slot is ever sent, at most one
  per `min_interval`, from a share of each budget; one that fails is tried again (after the
  interval) only while no newer one came, and `settle` drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bot.core.budget import Budget, Priority

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_RETRY_AFTER = 120.0  # seconds: a longer Retry-After is taken as this (a broken header)


@dataclass(frozen=True)
class RateLimited:
    """The platform said to wait `after` seconds (the write was not applied)."""

    after: float


@dataclass(frozen=True)
class Transient:
    """Worth another try. `ambiguous`: the write may have been applied all the same."""

    reason: str
    ambiguous: bool = False


@dataclass(frozen=True)
class Gone:
    """The message to change no longer exists (deleted)."""

    reason: str


@dataclass(frozen=True)
class Refused:
    """The platform will never take this write as it is (too long, no access, archived...)."""

    reason: str


Failure = RateLimited | Transient | Gone | Refused


class Undeliverable(Exception):
    """A final write that could not be made; `failure` says why."""

    def __init__(self, label: str, failure: Transient | Gone | Refused) -> None:
        super().__init__(f"{label}: {failure.reason}")
        self.failure = failure

    @property
    def gone(self) -> bool:
        return isinstance(self.failure, Gone)


class Withdrawn(Exception):
    """The write was withdrawn before it was made (e.g. a placeholder once the answer is ready)."""


class Write(Generic[T]):
    """One platform call: what it spends, how to make it, and how to tell whether it landed.

    `landed` (for creating writes) looks for the write's own result after an ambiguous failure:
    the created message if it is there, else None. A write the platform makes idempotent (a
    Discord post with an enforced nonce) may simply be made again.
    """

    def __init__(
        self,
        label: str,
        attempt: Callable[[], Awaitable[T]],
        buckets: tuple[Hashable, ...] = (),
        landed: Callable[[], Awaitable[T | None]] | None = None,
    ) -> None:
        self.label = label
        self.attempt = attempt
        self.buckets = buckets
        self.landed = landed
        self.withdrawn = False
        self.attempting = False  # a request of it is on its way to the platform
        self._waiting: asyncio.Future[None] | None = None

    def withdraw(self) -> None:
        """Make no further attempt; one in flight finishes (and its result still counts)."""
        self.withdrawn = True
        if self._waiting is not None and not self._waiting.done():
            self._waiting.cancel()

    async def wait(self, future: asyncio.Future[None]) -> bool:
        """Wait for `future`; False if the write was withdrawn meanwhile."""
        self._waiting = future
        try:
            await future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.withdrawn and (task is None or not task.cancelling()):
                return False
            raise
        finally:
            self._waiting = None
        return True


class Outbox:
    """The writes of one platform (see the module docstring)."""

    def __init__(
        self,
        name: str,
        budget: Budget,
        classify: Callable[[BaseException], Failure],
        *,
        attempt_timeout: float = 30.0,
        give_up_after: float = 300.0,
        backoff: float = 0.5,
        max_backoff: float = 15.0,
        settle_timeout: float = 1.0,
        look_again: float = 2.0,
    ) -> None:
        self.name = name
        self.budget = budget
        self.classify = classify
        self.attempt_timeout = attempt_timeout
        self.give_up_after = give_up_after  # a final write retried this long is given up
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.settle_timeout = settle_timeout  # the longest wait for a progress edit in flight
        self.look_again = look_again  # seconds before asking again whether a write landed
        self.counts: Counter[str] = Counter()  # rate_limited, retried, found, given_up, ...
        self._latest: dict[Hashable, Write[object]] = {}
        self._current: dict[Hashable, Write[object]] = {}
        self._runners: dict[Hashable, asyncio.Task[None]] = {}
        self._last_progress: dict[Hashable, float] = {}

    # ---- final writes ----------------------------------------------------------------------
    async def send(
        self, write: Write[T], priority: Priority = Priority.ANSWER, patience: float | None = None
    ) -> T:
        """Make `write`, retrying for up to `patience` s (default `give_up_after`) until it
        lands; raises Undeliverable (or Withdrawn)."""
        return await self._send(write, priority, retry=True, patience=patience)

    async def _send(
        self,
        write: Write[T],
        priority: Priority,
        *,
        retry: bool,
        patience: float | None = None,
        paid: bool = False,
    ) -> T:
        """`paid`: the budget for the first attempt was already granted."""
        deadline = time.monotonic() + (self.give_up_after if patience is None else patience)
        keys = self.budget.limited(write.buckets, priority)
        attempts, check_first = 0, False
        while True:
            if check_first:
                found = await self._look(write, deadline)
                if found is not None:
                    return found
                check_first = False
            if write.withdrawn:
                raise Withdrawn(write.label)
            granted = paid or await write.wait(self.budget.acquire(keys, priority))
            paid = False
            if not granted or write.withdrawn:  # withdrawn as its token came: not made
                raise Withdrawn(write.label)
            write.attempting = True
            try:
                return await asyncio.wait_for(write.attempt(), self.attempt_timeout)
            except Exception as exc:
                _reraise_cancellation()  # wait_for can turn a cancel into the attempt's error
                failure = self._classify(exc)
            finally:
                write.attempting = False
            attempts += 1
            log.info("%s: %s failed (%s)", self.name, write.label, _describe(failure))
            if isinstance(failure, RateLimited):
                self.counts["rate_limited"] += 1
                pause = min(failure.after, MAX_RETRY_AFTER)
                if keys:
                    self.budget.block(keys[0], pause)
                    pause = 0.0  # the budget waits
                if not retry or time.monotonic() + pause > deadline:
                    if retry:
                        self.counts["given_up"] += 1
                    raise Undeliverable(write.label, Transient("rate limited"))
            elif isinstance(failure, Gone | Refused) or not retry:
                raise Undeliverable(write.label, failure)
            elif time.monotonic() > deadline:
                self.counts["given_up"] += 1
                raise Undeliverable(write.label, failure)
            else:
                self.counts["retried"] += 1
                check_first = failure.ambiguous and write.landed is not None
                pause = min(self.max_backoff, self.backoff * 2 ** (attempts - 1))
            if pause:
                await write.wait(asyncio.ensure_future(asyncio.sleep(pause)))

    async def _look(self, write: Write[T], deadline: float) -> T | None:
        """After an ambiguous failure: the write's result if it landed, else None. A platform
        may apply a write a little after it failed to answer, so "not there" is asked twice;
        while the platform cannot say, it is asked again (re-posting blindly could post twice),
        unless the write was withdrawn meanwhile or the question is refused."""
        assert write.landed is not None
        attempts, misses = 0, 0
        while True:
            try:
                found = await asyncio.wait_for(write.landed(), self.attempt_timeout)
            except Exception as exc:
                _reraise_cancellation()
                attempts += 1
                failure = self._classify(exc)
                log.info("%s: cannot tell whether %s landed (%r)", self.name, write.label, exc)
                if isinstance(failure, Gone | Refused) or write.withdrawn:
                    return None
                if time.monotonic() > deadline:
                    self.counts["given_up"] += 1
                    raise Undeliverable(write.label, Transient(f"cannot tell: {exc!r}")) from exc
                await asyncio.sleep(min(self.max_backoff, self.backoff * 2**attempts))
                continue
            if found is not None:
                self.counts["found"] += 1
                log.info("%s: %s had landed; not made again", self.name, write.label)
                return found
            misses += 1
            if misses >= 2:
                return None
            await asyncio.sleep(self.look_again)

    def _classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, TimeoutError):  # our own attempt timeout: it may have gone through
            return Transient("no response in time", ambiguous=True)
        return self.classify(exc)

    def delay(self, write: Write[object], priority: Priority = Priority.ANSWER) -> float:
        """About how long `write` would wait for its budget now."""
        return self.budget.ready_in(self.budget.limited(write.buckets, priority), priority)

    # ---- progress --------------------------------------------------------------------------
    def offer(self, slot: Hashable, write: Write[object], min_interval: float) -> None:
        """Send `write` when the budget allows, unless a newer one for `slot` comes first."""
        self._latest[slot] = write
        runner = self._runners.get(slot)
        if runner is None or runner.done():
            self._runners[slot] = asyncio.create_task(
                self._run_progress(slot, min_interval), name=f"{self.name}-progress"
            )

    async def _run_progress(self, slot: Hashable, min_interval: float) -> None:
        while (write := self._latest.pop(slot, None)) is not None:
            wait = self._last_progress.get(slot, -float("inf")) + min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # settle cancels a runner waiting here at once
                write = self._latest.pop(slot, write)  # the newest by now
            self._current[slot] = write
            keys = self.budget.limited(write.buckets, Priority.PROGRESS)
            if not await write.wait(self.budget.acquire(keys, Priority.PROGRESS)):
                continue  # withdrawn (settled) while it waited for the budget
            write = self._latest.pop(slot, write)  # the token goes to the newest by now
            self._current[slot] = write
            try:
                await self._send(write, Priority.PROGRESS, retry=False, paid=True)
            except Withdrawn:
                pass
            except Undeliverable as exc:
                if isinstance(exc.failure, Transient):  # again later, unless a newer one comes
                    self._latest.setdefault(slot, write)
                else:
                    self.counts["progress_dropped"] += 1
                log.debug("%s: progress not shown yet (%s)", self.name, exc)
            finally:
                self._current.pop(slot, None)
            if self._runners.get(slot) is asyncio.current_task():  # not settled meanwhile
                self._last_progress[slot] = time.monotonic()

    async def settle(self, slot: Hashable) -> bool:
        """Drop `slot`'s pending progress and wait briefly for an edit in flight, so that what
        comes next (the answer) is the last word. True if an edit in flight was stuck (the
        platform is holding that route back) and had to be cut off."""
        self._latest.pop(slot, None)
        runner = self._runners.pop(slot, None)
        self._last_progress.pop(slot, None)
        current = self._current.get(slot)
        if runner is None or runner.done():
            return False
        if current is None or not current.attempting:  # between edits, or waiting for budget
            if current is not None:
                current.withdraw()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            return False
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(runner), self.settle_timeout)
        if runner.done():
            return False
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        return True


def _reraise_cancellation() -> None:
    """Raise CancelledError if this task is being cancelled (whatever else just happened)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _describe(failure: Failure) -> str:
    if isinstance(failure, RateLimited):
        return f"rate limited for {failure.after:.1f} s"
    return f"{type(failure).__name__.lower()}: {failure.reason}"
