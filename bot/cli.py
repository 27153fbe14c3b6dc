"""`huatuo-bot`: ask, chat, demo, run, check and eval (design.md §4)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from bot import console, logs
from bot.config import ConfigError, Settings
from bot.core.admission import Admission
from bot.core.service import AnswerService
from bot.evaluation import command as evaluation
from bot.feedback import database, summary
from bot.runner import PLATFORMS, configured_platforms, serve
from bot.web import address
from bot.wiring import (
    daily_posts,
    load_bank,
    make_engine,
    make_service,
    model_spec,
    remote_engine,
)
from inference.loading import ModelNotFound
from inference.remote import ModelServerError, served_models

DEMO_QUESTIONS = Path(__file__).with_name("demo_questions.jsonl")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="huatuo-bot", description="HuatuoGPT-o1 medical answers, with the reasoning shown."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_model(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--model", help="overrides HUATUO_MODEL (auto, builtin:smollm2, ...)")
        sub.add_argument("--max-new-tokens", type=int, help="overrides HUATUO_MAX_NEW_TOKENS")
        return sub

    ask = with_model(commands.add_parser("ask", help="answer one question"))
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    with_model(commands.add_parser("chat", help="an interactive conversation"))
    demo = with_model(commands.add_parser("demo", help="answer the demo questions at once"))
    demo.add_argument(
        "questions",
        nargs="?",
        type=Path,
        default=DEMO_QUESTIONS,
        help='a JSONL file of {"question": ...} rows',
    )
    run = commands.add_parser("run", help="serve the chat platforms until SIGTERM / Ctrl-C")
    run.add_argument(
        "--platform", choices=[*PLATFORMS, "all"], default="all",
        help="which platform to serve (default: every configured one)",
    )  # fmt: skip
    commands.add_parser("check", help="say which settings are missing or wrong")
    stats = commands.add_parser("stats", help="answers and their 👍 / 👎 ratings, summarized")
    stats.add_argument("--db", type=Path, help="default: HUATUO_FEEDBACK_DB")
    stats.add_argument("--since", type=_days, metavar="DAYS", help="only the last DAYS days")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate = with_model(commands.add_parser("eval", help="score the model on MCQ items"))
    evaluation.add_arguments(evaluate)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings()
    overrides = {
        "model": getattr(args, "model", None),
        "max_new_tokens": getattr(args, "max_new_tokens", None),
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return (
        Settings.model_validate({**settings.model_dump(), **overrides}) if overrides else settings
    )


def _with_service(
    settings: Settings, work: Callable[[AnswerService], Coroutine[Any, Any, int]]
) -> int:
    """Load the engine, run `work` with a service on it, shut the engine down cleanly."""

    async def main() -> int:
        engine = make_engine(settings)
        await engine.start()
        try:
            # The terminal is its operator's: no allow-lists, rate limit or one-at-a-time.
            terminal = Admission(one_at_a_time=False)
            return await work(make_service(settings, engine, admission=terminal))
        finally:
            await engine.close(grace=0)

    return asyncio.run(main())


_SERVER_HINTS = {
    None: " Is the server running, and is HUATUO_OPENAI_BASE_URL right?",
    401: " Check HUATUO_OPENAI_API_KEY.",
    403: " Check HUATUO_OPENAI_API_KEY.",
    404: " HUATUO_OPENAI_BASE_URL should be the API root, usually ending in /v1.",
}


def _check_server(settings: Settings) -> list[str]:
    """Is the OpenAI-compatible server reachable, and does it serve the configured model?"""
    try:
        engine = remote_engine(settings)
    except ConfigError as exc:
        return [f"backend: {exc}"]
    try:
        models = asyncio.run(served_models(str(engine.url), settings.openai_api_key))
    except ModelServerError as exc:
        return [f"model server: {exc}{_SERVER_HINTS.get(exc.status, '')}"]
    if engine.model_name not in models:
        return [
            f"model: the server at {engine.server} does not serve {engine.model_name!r}; it "
            f"serves {', '.join(map(repr, models)) or 'nothing'}. Set HUATUO_OPENAI_MODEL to "
            "the one to use."
        ]
    print(f"✓ model: {engine.model_name}, served by {engine.server}")
    return []


def check(settings_factory: Callable[[], Settings] = Settings) -> int:
    """Print one line per check; non-zero exit when the bot cannot start."""
    problems: list[str] = []
    try:
        settings = settings_factory()
    except ValidationError as exc:
        for error in exc.errors():
            print(f"✗ {error['loc'][0]}: {error['msg']}")
        return 2
    if settings.backend == "openai":
        problems.extend(_check_server(settings))
    else:
        try:
            spec = model_spec(settings)
            note = " (demo model: not medically reliable)" if spec.is_demo else ""
            if not spec.cached:
                note = " (not on this machine yet: it will be downloaded at the first start)"
            print(f"✓ model: {spec.name}{note}")
        except ModelNotFound as exc:
            problems.append(f"model: {exc}")
    platforms = []
    if settings.slack_bot_token:
        if settings.slack_app_token or settings.slack_signing_secret:
            mode = "Socket Mode" if settings.slack_app_token else "HTTP mode"
            platforms.append(f"Slack ({mode})")
        else:
            problems.append(
                "slack: SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
                "SLACK_SIGNING_SECRET (HTTP mode)"
            )
    if settings.discord_bot_token:
        platforms.append("Discord")
    if platforms:
        print(f"✓ platforms: {', '.join(platforms)}")
    elif not any(p.startswith("slack") for p in problems):
        problems.append(
            "platforms: none configured. Set SLACK_BOT_TOKEN with SLACK_APP_TOKEN or "
            "SLACK_SIGNING_SECRET for Slack, and/or DISCORD_BOT_TOKEN for Discord "
            "(see .env.example). `huatuo-bot ask` works without any."
        )
    _show_http(settings)
    problems.extend(_check_feedback(settings))
    problems.extend(_check_quizzes(settings))
    for problem in problems:
        print(f"✗ {problem}")
    return 1 if problems else 0


def _show_http(settings: Settings) -> None:
    """Where the HTTP server listens, and who may read /metrics there."""
    host = settings.http_host
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        local = host == "localhost"
    reach = "this machine only" if local else "open to the network"
    if settings.metrics_token:
        metrics = "needs the bearer token (HUATUO_METRICS_TOKEN)"
    elif local:
        metrics = "without a token"
    else:
        metrics = "without a token: set HUATUO_METRICS_TOKEN, or keep the port on a private network"
    print(f"✓ http: {address(host, settings.http_port)}, {reach}; /metrics {metrics}")


def _check_feedback(settings: Settings) -> list[str]:
    """Where feedback is recorded, whether that folder is writable, and whether the database
    there is free and undamaged (nothing is created)."""
    path = settings.feedback_db.strip()
    if not path:
        print("✓ feedback: off (HUATUO_FEEDBACK_DB is empty)")
        return []
    folder = Path(path).resolve().parent
    if not (folder.is_dir() and os.access(folder, os.W_OK)):
        return [
            f"feedback: HUATUO_FEEDBACK_DB={path}, but {folder} is not a writable folder; "
            "name a file in one, or set it empty to record no feedback."
        ]
    if Path(path).exists() and (trouble := database.problem(Path(path))):
        return [f"feedback: {trouble}"]
    text = "with" if settings.store_text else "without"
    print(f"✓ feedback: recorded in {path}, {text} message text")
    return []


def _check_quizzes(settings: Settings) -> list[str]:
    """The question bank loads; the case-of-the-day entries (already validated) are listed."""
    try:
        bank = load_bank(settings)
    except ConfigError as exc:
        return [f"quiz bank: {exc}"]
    skipped = ""
    if bank.problems:
        first = bank.problems[0]
        skipped = f" ({len(bank.problems)} bad row(s) skipped; the first, line {first})"
    count = f"{len(bank)} question{'s' * (len(bank) != 1)}"
    print(f"✓ quiz bank: {count} from {bank.name}{skipped}")
    for entry in daily_posts(settings):
        print(f"✓ case of the day: {entry}")
    return []


def _stats(settings: Settings, args: argparse.Namespace) -> int:
    """`huatuo-bot stats`: the summary of --db, else of HUATUO_FEEDBACK_DB."""
    path = args.db or settings.feedback_db.strip()
    if not path:
        print(
            "huatuo-bot stats: feedback is off (HUATUO_FEEDBACK_DB is empty); name a database "
            "with --db.",
            file=sys.stderr,
        )
        return 1
    return summary.command(Path(path), args.since, args.json)


def _days(text: str) -> float:
    """A positive number of days (for `stats --since`)."""
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not days > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of days, not {text!r}")
    return days


def _log_style() -> Literal["text", "json"]:
    """HUATUO_LOG_FORMAT, from the environment or .env (text while the settings are broken)."""
    try:
        return Settings().log_format
    except ValidationError:
        return "text"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `huatuo-bot` command."""
    args = _parser().parse_args(argv)
    logs.configure(args.verbose, _log_style())
    if args.command == "check":
        return check()
    try:
        settings = _settings(args)
        if args.command == "ask":
            return _with_service(
                settings, lambda s: console.ask(s, args.question, args.json, settings.disclaimer)
            )
        if args.command == "run":
            everything = args.platform == "all"
            platforms = configured_platforms(settings) if everything else [args.platform]
            asyncio.run(serve(settings, platforms))
            return 0
        if args.command == "stats":
            return _stats(settings, args)
        if args.command == "eval":
            return evaluation.run(settings, args)
        if args.command == "chat":
            return _with_service(settings, lambda s: console.chat(s, settings.disclaimer))
        questions = [
            json.loads(line)["question"]
            for line in args.questions.read_text().splitlines()
            if line.strip()
        ]
        return _with_service(settings, lambda s: console.demo(s, questions, settings.disclaimer))
    except (ModelNotFound, ConfigError) as exc:
        print(f"huatuo-bot: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        for error in exc.errors():
            print(f"huatuo-bot: {error['loc'][0]}: {error['msg']}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
