"""The feedback store: one row per delivered answer, the messages carrying it, and the ratings.

Every write runs on the store's one worker thread, in order, so the asyncio loop never waits on the
disk; one the database refuses for now is kept in memory and made again later (`Backlog`).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

from bot.core.errors import ConfigError
from bot.core.events import Answer, Platform, Question
from bot.feedback.backlog import Backlog
from bot.feedback.database import BUSY_TIMEOUT, connect, unusable

log = logging.getLogger(__name__)
T = TypeVar("T")


def utc_now() -> str:
    """The current time as stored: UTC, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Reaction:
    """Someone's emoji on a message: which message, who, and which emoji."""

    platform: Platform
    channel: str
    message_id: str
    user_id: str
    emoji: str


class FeedbackStore:
    """Records delivered answers and the ratings on them; the text only when `store_text`.

    Opening waits up to `busy_timeout` s for another process's lock, and refuses a damaged file
    (a ConfigError saying what to do). A write refused for now is kept, with those after it, up to
    `max_pending`, and made again at the next write or every `retry_every` s; `pending` counts the
    kept writes (an answer with its messages, or a rating change) and `lost` those given up.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        store_text: bool = False,
        busy_timeout: float = BUSY_TIMEOUT,
        retry_every: float = 10.0,
        max_pending: int = 10_000,
    ) -> None:
        self.path = Path(path)
        self.store_text = store_text
        try:
            self._db = connect(self.path, busy_timeout, check=True)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"HUATUO_FEEDBACK_DB: {unusable(self.path, exc, busy_timeout)}"
            ) from exc
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")
        self._backlog = Backlog(self._db, self.path, limit=max_pending, retry_every=retry_every)
        self._retrying: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Writes kept in memory until the database takes them."""
        return len(self._backlog)

    @property
    def lost(self) -> int:
        """Writes given up: more than `max_pending` kept, refused for good, or kept at the end."""
        return self._backlog.lost

    async def answered(
        self, question: Question, answer: Answer, channel: str, message_ids: Sequence[str]
    ) -> None:
        """Record a delivered answer and the messages (in `channel`) it was posted as."""
        row = (
            answer.request_id,
            question.conversation.platform,
            answer.model,
            question.origin,
            question.conversation.channel,
            utc_now(),
            answer.queued_seconds,
            answer.first_token_seconds,
            answer.seconds,
            answer.prompt_tokens,
            answer.tokens,
            answer.complete,
            answer.truncated,
            question.text if self.store_text else None,
            answer.answer if self.store_text else None,
            answer.stopped,  # added by the second migration, so last
        )
        messages = [
            (question.conversation.platform, channel, message_id, answer.request_id)
            for message_id in message_ids
        ]
        await self._write(partial(self._insert_answer, row, messages))

    async def rate(self, reaction: Reaction, rating: int) -> str | None:
        """Record a 👍 (+1) or 👎 (-1) on an answer message; its request id, None if not one (or
        if the write is kept for later)."""
        return await self._write(partial(self._insert_reaction, reaction, rating, utc_now()))

    async def unrate(self, reaction: Reaction) -> str | None:
        """Forget a removed reaction; the answer's request id, None if not an answer message (or
        if the write is kept for later)."""
        return await self._write(partial(self._delete_reaction, reaction))

    async def react(self, reaction: Reaction, rating: int, added: bool) -> None:
        """A 👍/👎 put on (`added`) or taken off a message; logged, and never raises: feedback
        must not disturb answering."""
        try:
            if added:
                request_id = await self.rate(reaction, rating)
            else:
                request_id = await self.unrate(reaction)
        except Exception:
            log.warning("%s: reaction not recorded", reaction.platform, exc_info=True)
            return
        if request_id is not None:
            change = "rated" if added else "rating removed"
            log.info("request %s: %s %+d on %s", request_id, change, rating, reaction.platform)

    async def close(self) -> None:
        """Finish the writes asked for, try those kept once more, then close the database; what
        is still kept then is lost (counted and logged)."""
        if self._retrying is not None:
            self._retrying.cancel()
            await asyncio.gather(self._retrying, return_exceptions=True)
        await asyncio.to_thread(self._worker.shutdown)
        await asyncio.to_thread(self._backlog.give_up)
        self._db.close()

    async def _write(self, work: Callable[[], T]) -> T | None:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._worker, self._backlog.make, work)
        if self._backlog and self._retrying is None:
            self._retrying = asyncio.create_task(self._retry(), name="feedback-retry")
        return result

    async def _retry(self) -> None:
        """Every `retry_every` s, make the kept writes, until there are none."""
        while self._backlog:
            await asyncio.sleep(self._backlog.retry_every)
            await asyncio.get_running_loop().run_in_executor(self._worker, self._backlog.attempt)
        self._retrying = None

    # ---- on the worker thread, each in a transaction -----------------------------------------
    def _insert_answer(self, row: tuple[object, ...], messages: list[tuple[str, ...]]) -> None:
        self._db.execute(f"INSERT INTO answers VALUES ({', '.join('?' * len(row))})", row)
        self._db.executemany("INSERT INTO answer_messages VALUES (?, ?, ?, ?)", messages)

    def _answer_of(self, reaction: Reaction) -> str | None:
        found = self._db.execute(
            "SELECT request_id FROM answer_messages "
            "WHERE platform = ? AND channel = ? AND message_id = ?",
            (reaction.platform, reaction.channel, reaction.message_id),
        ).fetchone()
        return found[0] if found else None

    def _insert_reaction(self, reaction: Reaction, rating: int, reacted_at: str) -> str | None:
        if (request_id := self._answer_of(reaction)) is None:
            return None
        key = (request_id, reaction.user_id, reaction.emoji)
        # Deleted and inserted anew, so that it becomes the person's latest reaction.
        self._db.execute(
            "DELETE FROM reactions WHERE request_id = ? AND user_id = ? AND emoji = ?", key
        )
        self._db.execute(
            "INSERT INTO reactions (request_id, user_id, emoji, rating, reacted_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (*key, rating, reacted_at),
        )
        return request_id

    def _delete_reaction(self, reaction: Reaction) -> str | None:
        if (request_id := self._answer_of(reaction)) is None:
            return None
        self._db.execute(
            "DELETE FROM reactions WHERE request_id = ? AND user_id = ? AND emoji = ?",
            (request_id, reaction.user_id, reaction.emoji),
        )
        return request_id


async def record_answer(
    store: FeedbackStore | None,
    question: Question,
    answer: Answer | None,
    channel: str,
    message_ids: Sequence[str],
) -> None:
    """Record a delivered `answer` (None: nothing was delivered) if there is a store; a failure
    is logged, never raised: the asker has their answer."""
    if store is None or answer is None:
        return
    try:
        await store.answered(question, answer, channel, message_ids)
    except Exception:
        log.warning("request %s: feedback not recorded", question.request_id, exc_info=True)
