"""The feedback database file: its schema, and opening it for the bot, with what to tell the
operator when it cannot be used (another process holds it, it is damaged, it cannot be written).

SQLite in WAL mode. `PRAGMA user_version` is the schema version: `MIGRATIONS[n]` takes a database
from version n to n + 1, so a later version can add to it without losing anything.
"""

from __future__ import annotations

import shlex
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

BUSY_TIMEOUT = 5.0  # seconds to wait for a lock another connection holds on the file

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
    """
    -- 1: stopped with the Stop button; what was written so far was delivered
    ALTER TABLE answers ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class Damaged(sqlite3.DatabaseError):
    """SQLite's integrity check found damaged pages in the file."""


def connect(
    path: Path, busy_timeout: float = BUSY_TIMEOUT, *, check: bool = False
) -> sqlite3.Connection:
    """Open (or create) the database at `path` and bring its schema up to date; with `check`,
    also read every page and take the write lock once, as the bot must be able to write."""
    # Used by one thread at a time, not always the one that opened it.
    db = sqlite3.connect(path, timeout=busy_timeout, check_same_thread=False)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # durable across a crash of the process
        db.execute("PRAGMA foreign_keys = ON")
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{path} has schema version {version}, newer than this bot's {SCHEMA_VERSION}"
            )
        for number in range(version, SCHEMA_VERSION):
            db.executescript(
                f"BEGIN; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1}; COMMIT;"
            )
        if check:
            verify(db)
    except BaseException:
        db.close()
        raise
    return db


def verify(db: sqlite3.Connection) -> None:
    """Read every page (`Damaged` if any is damaged), then take the write lock once (SQLITE_BUSY
    when another process keeps it past the busy timeout); nothing is written."""
    found = [row for (row,) in db.execute("PRAGMA quick_check")]
    if found != ["ok"]:
        lines = [line for row in found for line in row.splitlines() if line[:3] != "***"]
        raise Damaged(f"{len(lines)} problem(s) found, the first: {lines[0]}")
    with db:
        db.execute("BEGIN IMMEDIATE")


def problem(path: Path, busy_timeout: float = BUSY_TIMEOUT) -> str | None:
    """What would stop the bot from using the existing database at `path`, None if nothing;
    for `huatuo-bot check`, which changes nothing."""
    try:
        uri = f"{path.absolute().as_uri()}?mode=rw"  # never created
        with closing(sqlite3.connect(uri, uri=True, timeout=busy_timeout)) as db:
            verify(db)
    except (OSError, sqlite3.Error) as exc:
        return unusable(path, exc, busy_timeout)
    return None


def unusable(path: Path, error: Exception, busy_timeout: float = BUSY_TIMEOUT) -> str:
    """Why the bot cannot use the database at `path`, and what to do about it."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code, without extension
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return (
            f"another process holds the feedback database {path} (its lock was not free within "
            f"{busy_timeout:g} s): another bot using the same file, or a `sqlite3` shell with a "
            "transaction open. Stop it and start again, or name another file."
        )
    if isinstance(error, Damaged) or code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        command, aside = move_aside(path)
        return (
            f"the feedback database {path} is damaged ({error}). Move it aside, and the bot "
            f"starts a new one at the next start:\n    {command}\n"
            f"`sqlite3 {shlex.quote(str(aside))} .recover` may save some of what it held."
        )
    return (
        f"cannot use {path} ({error}). Name a file in a writable folder, or set it empty to "
        "record no feedback."
    )


def move_aside(path: Path) -> tuple[str, Path]:
    """The shell command renaming the database at `path` (and its write-ahead log, if any) to a
    name with the time in it, and that name."""
    path = path.absolute()
    aside = path.with_name(f"{path.name}.damaged-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    moves = [(path, aside)] + [
        (path.with_name(path.name + end), aside.with_name(aside.name + end))
        for end in ("-wal", "-shm")
        if path.with_name(path.name + end).exists()
    ]
    command = " && ".join(f"mv {shlex.quote(str(a))} {shlex.quote(str(b))}" for a, b in moves)
    return command, aside
