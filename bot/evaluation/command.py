"""The `eval` subcommand: arguments, loading, resuming, running with a progress bar, the summary."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bot.config import Settings
from bot.evaluation.results import Result, load_results
from bot.evaluation.runner import Engine, describe, run_items
from bot.evaluation.scoring import render, summarize
from bot.quiz.item import QuizItem, read_items
from bot.wiring import make_engine, sampling


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `huatuo-bot eval` (besides --model and --max-new-tokens)."""
    parser.add_argument(
        "dataset", type=Path, help="JSONL rows with question, options {A: ...}, answer_idx"
    )
    parser.add_argument("--limit", type=_positive, metavar="N", help="only the first N valid items")
    parser.add_argument(
        "--concurrency",
        type=_positive,
        metavar="N",
        help="items generating at once (default: HUATUO_MAX_BATCH)",
    )
    parser.add_argument(
        "--temperature", type=float, metavar="T", help="overrides HUATUO_TEMPERATURE"
    )
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="write per-item results to this JSONL file"
    )
    parser.add_argument("--resume", action="store_true", help="skip items already in --output")
    parser.add_argument("--store-text", action="store_true", help="keep model output in --output")
    parser.add_argument("--json", action="store_true", help="print one JSON summary object")


def _fail(message: str) -> int:
    print(f"huatuo-bot eval: {message}", file=sys.stderr)
    return 2


def _previous(
    args: argparse.Namespace, items: list[QuizItem], setup: str
) -> dict[int, Result] | str:
    """Results to keep from an earlier run of the same items, or why the output cannot be used."""
    if args.output is None:
        return "--resume needs --output FILE" if args.resume else {}
    if not args.output.exists():
        return {}
    if not args.resume:
        return f"{args.output} exists: pass --resume to continue it, or remove it"
    done, unreadable = load_results(args.output)
    if unreadable:
        print(f"{args.output}: {unreadable} unreadable line(s) ignored", file=sys.stderr)
    for item in items:
        if item.line in done and done[item.line].fingerprint != item.fingerprint:
            return f"{args.output} was written for another dataset (line {item.line} differs)"
    if other := {r.setup for r in done.values()} - {setup}:
        return f"{args.output} was written with {other.pop()}, not {setup}"
    return {line: result for line, result in done.items() if result.error is None}


async def _run(
    engine: Engine, settings: Settings, todo: list[QuizItem], setup: str, args: argparse.Namespace
) -> tuple[list[Result], float]:
    """Results of the items (each appended to --output) and the seconds after the engine started."""
    await engine.start()
    started = time.monotonic()
    output = args.output.open("a", encoding="utf-8") if args.output else None
    progress = tqdm(total=len(todo), desc="eval", unit="item", file=sys.stderr)
    correct = 0

    def record(result: Result) -> None:
        nonlocal correct
        if output:
            output.write(result.to_json() + "\n")
            output.flush()
        correct += result.correct
        progress.set_postfix_str(f"{correct} correct", refresh=False)
        progress.update()

    try:
        concurrency = args.concurrency or settings.max_batch
        results = await run_items(
            engine, todo, sampling(settings), setup, concurrency, record, args.store_text
        )
        return results, time.monotonic() - started
    finally:
        progress.close()
        if output:
            output.close()
        await engine.close(grace=0)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """`huatuo-bot eval`: score the model, print a table (or --json); 2 on unusable input."""
    if args.temperature is not None:
        overrides = {**settings.model_dump(), "temperature": args.temperature}
        settings = Settings.model_validate(overrides)
    if not args.dataset.is_file():
        return _fail(f"{args.dataset} is not a file")
    items, problems = read_items(args.dataset)
    for problem in problems:
        print(f"{args.dataset}:{problem} (skipped)", file=sys.stderr)
    items = items[: args.limit]
    if not items:
        return _fail(f"no valid items in {args.dataset}")
    engine = make_engine(settings)  # not started (no model loaded) until there is work
    model, params = getattr(engine, "model_name", settings.model), sampling(settings)
    setup = describe(model, params)
    previous = _previous(args, items, setup)
    if isinstance(previous, str):
        return _fail(previous)
    todo = [item for item in items if item.line not in previous]
    try:
        new, seconds = asyncio.run(_run(engine, settings, todo, setup, args)) if todo else ([], 0.0)
    except KeyboardInterrupt:
        saved = f": finished items are in {args.output}; --resume continues" if args.output else ""
        print(f"huatuo-bot eval: interrupted{saved}", file=sys.stderr)
        return 130
    results = {**previous, **{r.line: r for r in new}}
    summary = summarize([results[i.line] for i in items if i.line in results], len(items))
    context: dict[str, Any] = {
        "model": model,
        "dataset": str(args.dataset),
        "sampling": {
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
        },
        "skipped_rows": len(problems),
        "items_run": len(todo),
        "wall_seconds": round(seconds, 1),
    }
    print(json.dumps({**context, **summary.as_dict()}) if args.json else render(summary, context))
    return 0
