"""`huatuo-bot stats`: answers and their ratings by platform and model, as a table or JSON."""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.feedback.database import connect

ROWS = """
    SELECT a.platform, a.model, a.total_seconds, a.first_token_seconds, a.completion_tokens,
           count(r.rating), coalesce(sum(r.rating = 1), 0), coalesce(sum(r.rating = -1), 0),
           a.stopped
    FROM answers AS a LEFT JOIN ratings AS r USING (request_id)
    WHERE a.created_at >= ?
    GROUP BY a.request_id
"""


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q` quantile (0..1), interpolated between the closest ranks; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Group:
    """The answers of one platform and model: how many, their ratings, timings and lengths."""

    platform: str
    model: str
    answers: int
    stopped: int  # answers stopped with the Stop button (what was written so far)
    rated: int  # answers with at least one rating
    up: int  # 👍 ratings (one per person and answer)
    down: int  # 👎 ratings
    positive: float | None  # share of the ratings that are 👍
    median_seconds: float | None
    p90_seconds: float | None
    median_first_token_seconds: float | None
    median_tokens: float | None


def _group(platform: str, model: str, rows: list[tuple]) -> Group:
    seconds = [row[2] for row in rows]
    first_token = [row[3] for row in rows if row[3] is not None]
    up, down = sum(row[6] for row in rows), sum(row[7] for row in rows)
    return Group(
        platform=platform,
        model=model,
        answers=len(rows),
        stopped=sum(1 for row in rows if row[8]),
        rated=sum(1 for row in rows if row[5]),
        up=up,
        down=down,
        positive=up / (up + down) if up + down else None,
        median_seconds=percentile(seconds, 0.5),
        p90_seconds=percentile(seconds, 0.9),
        median_first_token_seconds=percentile(first_token, 0.5),
        median_tokens=percentile([row[4] for row in rows], 0.5),
    )


def summarize(db: sqlite3.Connection, since: str) -> list[Group]:
    """One Group per platform and model for the answers created at `since` (ISO, UTC) or later."""
    by_key: dict[tuple[str, str], list[tuple]] = {}
    for row in db.execute(ROWS, (since,)):
        by_key.setdefault((row[0], row[1]), []).append(row)
    groups = [_group(*key, rows) for key, rows in sorted(by_key.items())]
    if len(groups) > 1:
        groups.append(_group("all", "", [row for rows in by_key.values() for row in rows]))
    return groups


COLUMNS = (
    ("platform", "platform"), ("model", "model"), ("answers", "answers"),
    ("stopped", "stopped"), ("rated", "rated"),
    ("👍", "up"), ("👎", "down"), ("positive", "positive"), ("median s", "median_seconds"),
    ("p90 s", "p90_seconds"), ("1st token s", "median_first_token_seconds"),
    ("median tokens", "median_tokens"),
)  # fmt: skip


def _cell(name: str, value: object) -> str:
    if value is None:
        return "-"
    if name == "positive":
        return f"{value:.0%}"
    if name.endswith("seconds"):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def _width(text: str) -> int:
    """Terminal columns: the thumbs take two each."""
    return len(text) + text.count("👍") + text.count("👎")


def table(groups: Sequence[Group]) -> str:
    """The groups as an aligned text table: names on the left, numbers on the right."""
    rows = [[title for title, _ in COLUMNS]]
    rows += [[_cell(name, getattr(group, name)) for _, name in COLUMNS] for group in groups]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for row in rows:
        cells = []
        for i, text in enumerate(row):
            pad = " " * (widths[i] - _width(text))
            cells.append(text + pad if i < 2 else pad + text)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def command(path: Path, since_days: float | None, as_json: bool) -> int:
    """Print the summary of the database at `path`; 1 when there is no usable database there."""
    if not path.is_file():
        print(
            f"huatuo-bot stats: no feedback database at {path}. `huatuo-bot run` creates it "
            "(HUATUO_FEEDBACK_DB); give another file with --db.",
            file=sys.stderr,
        )
        return 1
    start = datetime.now(UTC) - timedelta(days=since_days) if since_days is not None else None
    since = start.isoformat(timespec="seconds") if start else ""
    try:
        db = connect(path)
        try:
            groups = summarize(db, since)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        print(f"huatuo-bot stats: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    when = f"since {start:%Y-%m-%d %H:%M} UTC" if start else "all time"
    if as_json:
        result = {"db": str(path), "since": since or None, "groups": [asdict(g) for g in groups]}
        print(json.dumps(result, ensure_ascii=False))
    elif not groups:
        print(f"No answers recorded in {path} ({when}).")
    else:
        print(f"Answers in {path} ({when}):\n")
        print(table(groups))
    return 0
