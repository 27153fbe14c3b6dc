"""The composition root: the one place that turns `Settings` into the bot's objects (the engine,
the answer service and its admission, the feedback store, the case-of-the-day entries).

Everything below it (bot/core, inference, bot/quiz, bot/feedback, the platforms) takes plain
objects and options, never the settings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.config import ConfigError, Settings
from bot.core.adapter import Adapter
from bot.core.admission import AccessPolicy, Admission
from bot.core.service import AnswerService, Metrics
from bot.feedback.store import BUSY_TIMEOUT, FeedbackStore
from bot.quiz.bank import BankError, QuestionBank
from bot.quiz.registry import Quizzes
from bot.quiz.schedule import DailyPost, parse_schedule
from inference.engine import BatchEngine, SamplingParams
from inference.loading import ModelSpec, resolve_model
from inference.remote import RemoteEngine
from inference.thinking import default_budget

if TYPE_CHECKING:
    from bot.discord.adapter import DiscordOptions
    from bot.slack.adapter import SlackOptions
    from inference.local import LocalEngine

# The platforms' SDKs (slack-bolt, discord.py) are imported only for the platforms served.

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def model_spec(settings: Settings) -> ModelSpec:
    """The local model HUATUO_MODEL names."""
    return resolve_model(settings.model)


def prefills_thinking(settings: Settings, model: str, demo: bool = False) -> bool:
    """HUATUO_PREFILL_THINKING, or by default: on for HuatuoGPT-o1 models and the built-in one."""
    if settings.prefill_thinking is not None:
        return settings.prefill_thinking
    return demo or "huatuogpt-o1" in model.lower()


def make_engine(settings: Settings) -> LocalEngine | RemoteEngine:
    """The engine for the configured backend (not started: call `start`)."""
    if settings.backend == "openai":
        return remote_engine(settings)
    from inference.local import LocalEngine  # imports torch: only the local backend needs it

    spec = model_spec(settings)
    return LocalEngine(
        spec,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        cpu_threads=settings.cpu_threads or None,
        prefill_thinking=prefills_thinking(settings, spec.name, spec.is_demo),
    )


def served_model(settings: Settings) -> str:
    """The model name to ask the server for: HUATUO_OPENAI_MODEL, else HUATUO_MODEL if a hub id."""
    if settings.openai_model:
        return settings.openai_model.strip()
    name = settings.model.strip()
    if _HUB_ID.fullmatch(name) and not Path(name).exists():
        return name
    raise ConfigError(
        "HUATUO_BACKEND=openai needs the name the server serves the model under: set "
        "HUATUO_OPENAI_MODEL (GET /v1/models lists them), or HUATUO_MODEL to the model's "
        f"Hugging Face id, such as FreedomIntelligence/HuatuoGPT-o1-7B (not {name!r})."
    )


def remote_engine(settings: Settings) -> RemoteEngine:
    """A client of the OpenAI-compatible server at HUATUO_OPENAI_BASE_URL."""
    if not settings.openai_base_url:
        raise ConfigError(
            "HUATUO_BACKEND=openai needs HUATUO_OPENAI_BASE_URL, the server's API address, such "
            "as http://localhost:8000/v1."
        )
    if settings.openai_api_key and "@" in urlsplit(settings.openai_base_url).netloc:
        raise ConfigError(
            "HUATUO_OPENAI_BASE_URL carries a user and password and HUATUO_OPENAI_API_KEY is set "
            "too; a request can send only one of them: keep the one your server expects."
        )
    model = served_model(settings)
    try:
        return RemoteEngine(
            settings.openai_base_url,
            model,
            api_key=settings.openai_api_key,
            max_batch=settings.max_batch,
            max_queue=settings.max_queue,
            read_timeout=settings.openai_idle_timeout,
            prefill_thinking=prefills_thinking(settings, model),
        )
    except ValueError as exc:
        raise ConfigError(f"HUATUO_OPENAI_BASE_URL: {exc}") from exc


def sampling(settings: Settings) -> SamplingParams:
    """HUATUO_MAX_NEW_TOKENS, HUATUO_TEMPERATURE, HUATUO_TOP_P and the thinking budget."""
    budget = settings.thinking_budget
    if budget is None:
        budget = default_budget(settings.max_new_tokens)
    return SamplingParams(settings.max_new_tokens, settings.temperature, settings.top_p, budget)


def make_admission(settings: Settings) -> Admission:
    """The allow-lists of both platforms and the per-person rate limit."""
    slack = AccessPolicy(
        channels=settings.slack_allowed_channels,
        users=settings.slack_allowed_users,
        groups=settings.slack_allowed_usergroups,
        admins=settings.slack_admins,
        allow_dms=settings.allow_direct_messages,
    )
    discord = AccessPolicy(
        channels=settings.discord_allowed_channels,
        users=settings.discord_allowed_users,
        groups=settings.discord_allowed_roles,
        guilds=settings.discord_allowed_guilds,
        admins=settings.discord_admins,
        allow_dms=settings.allow_direct_messages,
    )
    policies = {"slack": slack, "discord": discord}
    return Admission(policies, settings.rate_limit, settings.rate_window)


def make_service(
    settings: Settings,
    engine: BatchEngine | RemoteEngine,
    metrics: Metrics | None = None,
    admission: Admission | None = None,
) -> AnswerService:
    """The service with the settings' sampling, limits and privacy; `admission` defaults to the
    chat platforms' allow-lists and rate limit."""
    return AnswerService(
        engine,
        sampling(settings),
        system_prompt=settings.system_prompt,
        max_question_chars=settings.max_question_chars,
        answer_timeout=settings.answer_timeout,
        redact_phi=settings.redact_before_sending,
        metrics=metrics,
        admission=admission or make_admission(settings),
    )


def open_store(settings: Settings, busy_timeout: float = BUSY_TIMEOUT) -> FeedbackStore | None:
    """The store HUATUO_FEEDBACK_DB names, or None when it is empty (feedback off)."""
    path = settings.feedback_db.strip()
    if not path:
        log.info("feedback: off (HUATUO_FEEDBACK_DB is empty)")
        return None
    store = FeedbackStore(path, store_text=settings.store_text, busy_timeout=busy_timeout)
    text = "with" if settings.store_text else "without"
    log.info("feedback: recording answers and ratings in %s, %s message text", path, text)
    return store


def load_bank(settings: Settings) -> QuestionBank:
    """HUATUO_QUIZ_BANK (empty: the shipped MedQA items); ConfigError says what is wrong."""
    try:
        return QuestionBank.load(settings.quiz_bank)
    except BankError as exc:
        raise ConfigError(f"HUATUO_QUIZ_BANK: {exc}") from None


def make_quizzes(
    settings: Settings,
    engine: BatchEngine | RemoteEngine,
    params: SamplingParams,
    bank: QuestionBank | None = None,
) -> Quizzes:
    """The quizzes of this process: the bank HUATUO_QUIZ_BANK names (unless `bank` is given),
    their timings, and who may reveal any quiz (SLACK_ADMINS, DISCORD_ADMINS)."""
    return Quizzes(
        bank or load_bank(settings),
        engine,
        params,
        seconds=settings.quiz_seconds,
        case_seconds=settings.case_of_the_day_seconds,
        answer_timeout=settings.answer_timeout,
        admins={"slack": settings.slack_admins, "discord": settings.discord_admins},
    )


def slack_options(settings: Settings) -> SlackOptions:
    from bot.slack.adapter import SlackOptions

    return SlackOptions(
        bot_token=settings.slack_bot_token or "",
        app_token=settings.slack_app_token,
        signing_secret=settings.slack_signing_secret,
        api_url=settings.slack_api_url,
        disclaimer=settings.disclaimer,
        streaming=settings.slack_streaming,
    )


def discord_options(settings: Settings) -> DiscordOptions:
    from bot.discord.adapter import DiscordOptions

    return DiscordOptions(
        bot_token=settings.discord_bot_token or "",
        api_base=settings.discord_api_base,
        gateway_url=settings.discord_gateway_url,
        disclaimer=settings.disclaimer,
    )


def make_adapters(
    settings: Settings,
    service: AnswerService,
    platforms: Sequence[str],
    web_app,
    feedback: FeedbackStore | None = None,
    quizzes: Quizzes | None = None,
) -> list[Adapter]:
    """The adapters for `platforms`, all sharing one service (and so one engine) and `feedback`."""
    adapters: list[Adapter] = []
    if "slack" in platforms:
        from bot.slack.adapter import SlackAdapter

        adapters.append(
            SlackAdapter(
                slack_options(settings),
                service,
                web_app,
                command=settings.slack_command,
                stop_grace=settings.shutdown_grace,
                feedback=feedback,
                quizzes=quizzes,
            )
        )
    if "discord" in platforms:
        from bot.discord.adapter import DiscordAdapter

        adapters.append(
            DiscordAdapter(
                discord_options(settings),
                service,
                sync_guild=settings.discord_sync_guild,
                stop_grace=settings.shutdown_grace,
                feedback=feedback,
                quizzes=quizzes,
            )
        )
    return adapters


def daily_posts(settings: Settings) -> tuple[DailyPost, ...]:
    """HUATUO_CASE_OF_THE_DAY as parsed entries (validated when the settings were read)."""
    return parse_schedule(settings.case_of_the_day)
