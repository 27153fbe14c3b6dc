"""The feedback database read back the way `huatuo-bot stats` would: from another connection."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def query(path: Path, sql: str) -> list[tuple]:
    """Rows from the database file, read the way `huatuo-bot stats` would (another connection)."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


def ratings(path: Path) -> list[tuple]:
    return query(path, "SELECT request_id, user_id, rating FROM ratings ORDER BY user_id")
