"""Accuracy with a 95 % Wilson interval, and the summary of a run."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.evaluation.results import Result

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there is no data."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Summary:
    """Counts over the selected items; accuracy is over `scored` (items the engine answered)."""

    items: int
    scored: int
    correct: int
    unanswered: int
    truncated: int
    errors: int
    first_correct: int
    last_correct: int
    rules: dict[str, int]
    mean_tokens: float
    mean_seconds: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.scored if self.scored else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.scored)

    @property
    def optimistic(self) -> float:
        """The authors' score: the better of first-match and last-match accuracy, after the fact."""
        return max(self.first_correct, self.last_correct) / self.scored if self.scored else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The JSON form printed by `eval --json`."""
        low, high = self.interval
        return {
            "items": self.items,
            "scored": self.scored,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "ci95": [low, high],
            "unanswered": self.unanswered,
            "truncated": self.truncated,
            "errors": self.errors,
            "not_run": self.items - self.scored - self.errors,
            "rules": self.rules,
            "optimistic": {
                "accuracy": self.optimistic,
                "first_match_correct": self.first_correct,
                "last_match_correct": self.last_correct,
                "note": "authors' scoring: best of first/last match chosen after scoring; "
                "an upper bound, not the accuracy",
            },
            "mean_tokens": round(self.mean_tokens, 1),
            "mean_seconds": round(self.mean_seconds, 3),
        }


def summarize(results: Sequence[Result], items: int) -> Summary:
    """Summarize the results of `items` selected items (some may not have run yet)."""
    scored = [r for r in results if r.error is None]
    n = len(scored) or 1
    return Summary(
        items=items,
        scored=len(scored),
        correct=sum(r.correct for r in scored),
        unanswered=sum(r.extracted is None for r in scored),
        truncated=sum(r.truncated for r in scored),
        errors=len(results) - len(scored),
        first_correct=sum(r.first == r.gold for r in scored),
        last_correct=sum(r.last == r.gold for r in scored),
        rules=dict(Counter(r.rule or "none" for r in scored)),
        mean_tokens=sum(r.tokens for r in scored) / n,
        mean_seconds=sum(r.seconds for r in scored) / n,
    )


def render(summary: Summary, context: dict[str, Any]) -> str:
    """The human-readable table printed by `eval` (context: model, dataset, sampling, wall time)."""
    low, high = summary.interval
    rules = ", ".join(f"{rule} {count}" for rule, count in sorted(summary.rules.items()))
    lines = [
        f"model        {context['model']}",
        f"dataset      {context['dataset']} ({summary.items} items)",
        "sampling     " + ", ".join(f"{k} {v}" for k, v in context["sampling"].items()),
        f"accuracy     {summary.accuracy:6.1%}  {summary.correct}/{summary.scored} correct, "
        f"95 % CI {low:.1%} to {high:.1%} (Wilson)",
        f"unanswered   {summary.unanswered:6d}  no single option found in the final response",
        f"truncated    {summary.truncated:6d}  stopped at max_new_tokens",
        f"errors       {summary.errors:6d}  engine failed; not scored (--resume retries them)",
        f"optimistic   {summary.optimistic:6.1%}  the authors' scoring: first-match "
        f"({summary.first_correct}) or last-match ({summary.last_correct}) correct, whichever is",
        "                     higher, chosen after scoring: an upper bound, not the accuracy",
        f"decided by   {rules or '-'}",
        f"per item     {summary.mean_tokens:.0f} tokens, {summary.mean_seconds:.1f} s from "
        "submission to the last token, on average",
    ]
    if context["items_run"]:
        lines.append(
            f"wall time    {context['wall_seconds']:.0f} s for the {context['items_run']} items "
            "run now (model loading not included)"
        )
    if not_run := summary.items - summary.scored - summary.errors:
        lines.append(f"not run      {not_run:6d}  (interrupted? --resume finishes them)")
    return "\n".join(lines)
