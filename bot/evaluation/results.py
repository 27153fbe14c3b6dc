"""Per-item results: one JSON object per line, appended as items finish, read back to resume."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Result:
    """What happened to one item; `error` is set (and nothing was scored) when the engine failed."""

    line: int
    fingerprint: str  # of the prompt: resuming against another dataset is refused
    setup: str  # model and sampling: resuming with others is refused
    gold: str
    extracted: str | None = None
    rule: str | None = None
    correct: bool = False
    truncated: bool = False
    tokens: int = 0
    seconds: float = 0.0
    first: str | None = None  # first / last candidate of the deciding rule (optimistic score)
    last: str | None = None
    finish: str | None = None
    error: str | None = None
    text: str | None = None  # the whole model output, only with --store-text

    def to_json(self) -> str:
        """One JSONL line (without `text` unless it was stored)."""
        data = asdict(self)
        if data["text"] is None:
            del data["text"]
        return json.dumps(data, ensure_ascii=False)


def load_results(path: Path) -> tuple[dict[int, Result], int]:
    """The last result per dataset line, and how many lines could not be read (a cut-off write)."""
    names = {f.name for f in fields(Result)}
    results, unreadable = {}, 0
    with path.open(encoding="utf-8") as lines:
        for text in lines:
            if not text.strip():
                continue
            try:
                data = json.loads(text)
                result = Result(**{k: v for k, v in data.items() if k in names})
            except (json.JSONDecodeError, TypeError):
                unreadable += 1
                continue
            results[result.line] = result
    return results, unreadable
