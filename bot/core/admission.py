"""Who may ask, where, and how often: allow-lists, admins, a per-user rate limit, one at a time.

Every refusal is a short text that says why and what to do (bot/core/texts.py).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from bot.core import texts
from bot.core.events import ConversationRef, Question


@dataclass(frozen=True)
class Refusal:
    """Why a question was not taken: a short kind for logs and metrics, and the asker's text."""

    kind: str
    message: str


@dataclass(frozen=True)
class AccessPolicy:
    """One platform's allow-lists; an empty list allows everyone (admins pass every list).

    `groups` are Slack user groups or Discord roles; a person passes the people check when they
    are in `users` or in one of `groups` (whichever are set).
    """

    channels: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    guilds: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    allow_dms: bool = True

    def is_admin(self, user: str) -> bool:
        return user in self.admins

    def refusal(self, question: Question) -> Refusal | None:
        """Why this asker may not ask here, or None."""
        return self.refusal_for(question.author, question.conversation, question.groups)

    def refusal_for(
        self, author: str, where: ConversationRef, groups: frozenset[str] = frozenset()
    ) -> Refusal | None:
        """Why `author` (in `groups`) may not use the bot in `where`, or None."""
        if self.is_admin(author):
            return None
        if where.direct:
            if not self.allow_dms:
                return Refusal("direct message", texts.NO_DIRECT_MESSAGES)
        else:
            if self.guilds and where.guild not in self.guilds:
                return Refusal("server", texts.NOT_IN_THIS_SERVER)
            if self.channels and where.channel not in self.channels:
                return Refusal("channel", texts.NOT_IN_THIS_CHANNEL)
        if (self.users or self.groups) and not (author in self.users or groups & self.groups):
            if where.direct and where.platform == "discord" and self.groups:
                return Refusal("person", texts.NO_ROLES_IN_DIRECT_MESSAGES)
            return Refusal("person", texts.NOT_ALLOWED)
        return None


class RateLimiter:
    """At most `limit` admissions per person in any `window` seconds (a sliding log)."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit  # 0: no limit
        self.window = window
        self.clock = clock
        self._log: dict[str, deque[float]] = {}

    def acquire(self, key: str, *, count: bool = True) -> float | None:
        """Count one admission for `key` (only look, without `count`); or, over the limit, the
        seconds until the next one."""
        if self.limit <= 0:
            return None
        now = self.clock()
        self._forget_before(now - self.window)
        times = self._log.get(key, deque())
        if len(times) >= self.limit:
            return times[0] + self.window - now
        if count:
            times.append(now)
            self._log[key] = times
        return None

    def _forget_before(self, cutoff: float) -> None:
        """Drop expired times, and people with none left, so memory follows recent askers only."""
        for key in list(self._log):
            times = self._log[key]
            while times and times[0] <= cutoff:
                times.popleft()
            if not times:
                del self._log[key]

    @property
    def tracked(self) -> int:
        """People with admissions inside the window (for tests and soak figures)."""
        return len(self._log)


class Admission:
    """The service's gate: access by platform, one question in flight per person, the rate limit."""

    def __init__(
        self,
        policies: Mapping[str, AccessPolicy] | None = None,
        rate_limit: int = 0,
        rate_window: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        one_at_a_time: bool = True,
    ) -> None:
        self.policies = dict(policies or {})
        self.one_at_a_time = one_at_a_time  # off for the terminal, whose operator asks at will
        self.limiter = RateLimiter(rate_limit, rate_window, clock)
        self._in_flight: set[str] = set()

    def policy(self, platform: str) -> AccessPolicy:
        return self.policies.get(platform, AccessPolicy())

    @property
    def in_flight(self) -> int:
        """People with a question being answered now."""
        return len(self._in_flight)

    def busy(self, platform: str, author: str) -> bool:
        """Whether this person has a question being answered now."""
        return self._key(platform, author) in self._in_flight

    @staticmethod
    def _key(platform: str, author: str) -> str:
        return f"{platform}:{author}"

    def _check(
        self, author: str, where: ConversationRef, groups: frozenset[str], *,
        one_at_a_time: bool, count: bool,
    ) -> Refusal | None:  # fmt: skip
        """Allow-lists, then (not for admins) one at a time and the rate limit."""
        platform = where.platform
        policy = self.policy(platform)
        if (refusal := policy.refusal_for(author, where, groups)) is not None:
            return refusal
        if one_at_a_time and self.one_at_a_time and self.busy(platform, author):
            return Refusal("one at a time", texts.ONE_AT_A_TIME)
        if policy.is_admin(author):
            return None
        wait = self.limiter.acquire(self._key(platform, author), count=count)
        if wait is None:
            return None
        return Refusal(
            "rate limit", texts.rate_limited(self.limiter.limit, self.limiter.window, wait)
        )

    def precheck(self, question: Question) -> Refusal | None:
        """Why `question` would be refused now, without counting it (to refuse privately before
        anything is posted)."""
        return self._check(
            question.author,
            question.conversation,
            question.groups,
            one_at_a_time=True,
            count=False,
        )

    def may_start(
        self, author: str, where: ConversationRef, groups: frozenset[str] = frozenset()
    ) -> Refusal | None:
        """Why `author` may not start a quiz in `where`, or None. Starts count toward the rate
        limit like questions (the model explains every quiz): call `started` once one is up."""
        return self._check(author, where, groups, one_at_a_time=False, count=False)

    def started(self, author: str, where: ConversationRef) -> None:
        """Count a quiz `author` started toward their rate limit (admins are not counted)."""
        if not self.policy(where.platform).is_admin(author):
            self.limiter.acquire(self._key(where.platform, author))

    @contextmanager
    def admit(self, question: Question) -> Iterator[Refusal | None]:
        """Yield None and hold the asker's slot while answering; or yield why they cannot ask."""
        where, author = question.conversation, question.author
        refusal = self._check(author, where, question.groups, one_at_a_time=True, count=True)
        if refusal is not None:
            yield refusal
            return
        key = self._key(where.platform, author)
        self._in_flight.add(key)
        try:
            yield None
        finally:
            self._in_flight.discard(key)
