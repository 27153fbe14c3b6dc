"""The feedback database: one row per delivered answer, the messages carrying it, and the ratings.

SQLite in WAL mode. Every write runs on the store's one worker thread, in order, so the asyncio loop
never waits on the disk. `PRAGMA user_version` is the schema version: `MIGRATIONS[n]` takes a
database from version n to n + 1, so a later version can add to it without losing anything.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from bot.config import ConfigError, Settings
from bot.core.events import Answer, Platform, Question

log = logging.getLogger(__name__)
T = TypeVar("T")

MIGRATIONS = (
    """
    CREATE TABLE answers (
        request_id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        model TEXT NOT NULL,
        origin TEXT NOT NULL,             -- mention, dm, slash, follow-up
        channel TEXT NOT NULL,            -- where it was asked (a thread's parent channel)
        created_at TEXT NOT NULL,         -- UTC, ISO 8601
        queued_seconds REAL,              -- waiting in line before generation started
        first_token_seconds REAL,         -- from submission to the first token
        total_seconds REAL NOT NULL,      -- from submission to the whole answer
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        complete INTEGER NOT NULL,        -- 1: the model gave a whole final answer
        truncated INTEGER NOT NULL,       -- 1: cut off by the token limit
        question TEXT,                    -- only with HUATUO_STORE_TEXT=true
        answer TEXT                       -- only with HUATUO_STORE_TEXT=true
    );
    CREATE INDEX answers_by_time ON answers (created_at);
    CREATE TABLE answer_messages (        -- the messages an answer was posted as
        platform TEXT NOT NULL,
        channel TEXT NOT NULL,            -- the channel (or thread, or DM) holding the message
        message_id TEXT NOT NULL,         -- Slack ts, Discord message id
        request_id TEXT NOT NULL REFERENCES answers ON DELETE CASCADE,
        PRIMARY KEY (platform, channel, message_id)
    );
    CREATE TABLE reactions (              -- thumbs up / down reactions present on an answer
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL REFERENCES answers ON DELETE CASCADE,
        user_id TEXT NOT NULL,
        emoji TEXT NOT NULL,              -- as the platform names it, skin tone included
        rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
        reacted_at TEXT NOT NULL,
        UNIQUE (request_id, user_id, emoji)
    );
    -- One rating per answer and person: their latest reaction still present.
    CREATE VIEW ratings AS
        SELECT request_id, user_id, rating, reacted_at AS rated_at FROM reactions AS r
        WHERE id = (SELECT max(id) FROM reactions
                    WHERE request_id = r.request_id AND user_id = r.user_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the database at `path` and bring its schema up to date."""
    db = sqlite3.connect(path, check_same_thread=False)  # used by one thread at a time
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # durable across a crash of the process
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 5000")  # `huatuo-bot stats` may be reading
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{path} has schema version {version}, newer than this bot's {SCHEMA_VERSION}"
            )
        for number in range(version, SCHEMA_VERSION):
            db.executescript(
                f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;"
            )
    except BaseException:
        db.close()
        raise
    return db


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
    """Records delivered answers and the ratings on them; the text only when `store_text`."""

    def __init__(self, path: str | Path, *, store_text: bool = False) -> None:
        self.path = Path(path)
        self.store_text = store_text
        self._db = connect(self.path)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")

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
        )
        messages = [
            (question.conversation.platform, channel, message_id, answer.request_id)
            for message_id in message_ids
        ]
        await self._run(self._insert_answer, row, messages)

    async def rate(self, reaction: Reaction, rating: int) -> str | None:
        """Record a 👍 (+1) or 👎 (-1) on an answer message; its request id, None if not one."""
        return await self._run(self._insert_reaction, reaction, rating)

    async def unrate(self, reaction: Reaction) -> str | None:
        """Forget a removed reaction; the answer's request id, None if not an answer message."""
        return await self._run(self._delete_reaction, reaction)

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
        """Finish the writes already asked for, then close the database."""
        await asyncio.to_thread(self._worker.shutdown)
        self._db.close()

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, work, *args)

    # ---- on the worker thread --------------------------------------------------------------
    def _insert_answer(self, row: tuple[object, ...], messages: list[tuple[str, ...]]) -> None:
        with self._db:
            self._db.execute(f"INSERT INTO answers VALUES ({', '.join('?' * len(row))})", row)
            self._db.executemany("INSERT INTO answer_messages VALUES (?, ?, ?, ?)", messages)

    def _answer_of(self, reaction: Reaction) -> str | None:
        found = self._db.execute(
            "SELECT request_id FROM answer_messages "
            "WHERE platform = ? AND channel = ? AND message_id = ?",
            (reaction.platform, reaction.channel, reaction.message_id),
        ).fetchone()
        return found[0] if found else None

    def _insert_reaction(self, reaction: Reaction, rating: int) -> str | None:
        with self._db:
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
                (*key, rating, utc_now()),
            )
        return request_id

    def _delete_reaction(self, reaction: Reaction) -> str | None:
        with self._db:
            if (request_id := self._answer_of(reaction)) is None:
                return None
            self._db.execute(
                "DELETE FROM reactions WHERE request_id = ? AND user_id = ? AND emoji = ?",
                (request_id, reaction.user_id, reaction.emoji),
            )
        return request_id


def open_store(settings: Settings) -> FeedbackStore | None:
    """The store HUATUO_FEEDBACK_DB names, or None when it is empty (feedback off)."""
    path = settings.feedback_db.strip()
    if not path:
        log.info("feedback: off (HUATUO_FEEDBACK_DB is empty)")
        return None
    try:
        store = FeedbackStore(path, store_text=settings.store_text)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"HUATUO_FEEDBACK_DB: cannot use {path} ({exc}). Name a file in a writable folder, "
            "or set it empty to record no feedback."
        ) from exc
    text = "with" if settings.store_text else "without"
    log.info("feedback: recording answers and ratings in %s, %s message text", path, text)
    return store
