"""The inference engine the settings ask for."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.config import ConfigError, Settings
from inference.loading import ModelSpec, resolve_model
from inference.remote import RemoteEngine

if TYPE_CHECKING:
    from inference.local import LocalEngine

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def model_spec(settings: Settings) -> ModelSpec:
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
