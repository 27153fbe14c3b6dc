"""Writes the feedback database refused for now (another process holds its lock, the disk is
full), kept in memory in order and made again later, before any newer write; those given up are
counted and logged."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Backlog:
    """Makes writes, each in its own transaction on `db`. One refused with an OperationalError is
    kept, and so is every later one while any is, up to `limit`; they are made again, oldest
    first, by a write or `attempt()` at least `retry_every` s after the last refusal. `lost`
    counts the writes given up. Used from one thread at a time."""

    def __init__(
        self, db: sqlite3.Connection, path: Path, *, limit: int, retry_every: float
    ) -> None:
        self.db = db
        self.path = path
        self.limit = limit
        self.retry_every = retry_every
        self.lost = 0
        self._kept: deque[Callable[[], object]] = deque()
        self._retry_at = 0.0  # monotonic time from which the kept writes are tried again
        self._refusal = ""  # why the database last refused a write
        self._dropping = False  # `limit` writes are kept: newer ones are lost

    def __len__(self) -> int:
        """How many writes are kept."""
        return len(self._kept)

    def make(self, work: Callable[[], T]) -> T | None:
        """`work` in a transaction after the kept writes; its result, None when it is kept."""
        if not self._kept:
            try:
                return self._transaction(work)
            except sqlite3.OperationalError as exc:
                self._refused(exc)
            except sqlite3.Error:
                self.lost += 1
                raise
        self._keep(work)
        self.attempt()
        return None

    def attempt(self) -> None:
        """Make the kept writes, oldest first, until the database refuses one (if it is time)."""
        if time.monotonic() < self._retry_at:
            return
        written = 0
        while self._kept:
            try:
                self._transaction(self._kept[0])
                written += 1
            except sqlite3.OperationalError as exc:
                self._refused(exc)
                return
            except sqlite3.Error:
                log.exception("feedback: a kept write failed for good and is lost")
                self.lost += 1
            self._kept.popleft()
        if written:
            log.info(
                "feedback: %s takes writes again: wrote the %d kept in memory; %d lost in all",
                self.path, written, self.lost,
            )  # fmt: skip
        self._dropping = False

    def give_up(self) -> None:
        """Try the kept writes a last time (the bot is stopping); count and log those left."""
        self._retry_at = 0.0
        self.attempt()
        if self._kept:
            self.lost += len(self._kept)
            log.error(
                "feedback: stopping with %d write(s) that %s did not take (%s); they are lost, "
                "%d in all",
                len(self._kept), self.path, self._refusal, self.lost,
            )  # fmt: skip
            self._kept.clear()

    def _transaction(self, work: Callable[[], T]) -> T:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")  # waits up to the busy timeout for the lock
            return work()

    def _refused(self, error: sqlite3.Error) -> None:
        if not self._kept:
            log.warning(
                "feedback: %s refused a write (%s); keeping writes in memory (up to %d) and "
                "trying again every %g s",
                self.path, error, self.limit, self.retry_every,
            )  # fmt: skip
        self._refusal = str(error)
        self._retry_at = time.monotonic() + self.retry_every

    def _keep(self, work: Callable[[], object]) -> None:
        if len(self._kept) < self.limit:
            self._kept.append(work)
            return
        if not self._dropping:
            log.error(
                "feedback: %d writes wait for %s already; newer ones are lost until it takes them",
                len(self._kept), self.path,
            )  # fmt: skip
        self._dropping = True
        self.lost += 1
