"""A bounded, time-limited memory of ids: events already handled, threads already answered."""

from __future__ import annotations

import time
from collections import OrderedDict


class RecentIds:
    """A bounded, time-limited memory of ids already seen (a Slack retry reuses its event_id, a
    Discord redelivery its message id)."""

    def __init__(self, ttl: float = 900.0, capacity: int = 10_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, key: str) -> bool:
        """True the first time `key` is seen within `ttl` seconds, False for repeats."""
        if key in self:
            return False
        self._seen[key] = time.monotonic()
        return True

    def __contains__(self, key: str) -> bool:
        """Seen within `ttl` seconds."""
        now = time.monotonic()
        while self._seen and (
            len(self._seen) >= self.capacity or next(iter(self._seen.values())) < now - self.ttl
        ):
            self._seen.popitem(last=False)
        return key in self._seen
