"""The inference engine the settings ask for."""

from __future__ import annotations

from bot.config import ConfigError, Settings
from inference.loading import ModelSpec, resolve_model
from inference.local import LocalEngine


def model_spec(settings: Settings) -> ModelSpec:
    return resolve_model(settings.model)


def make_engine(settings: Settings) -> LocalEngine:
    """A local transformers engine for the configured model (not started: call `start`)."""
    if settings.backend != "local":
        raise ConfigError(
            f"HUATUO_BACKEND={settings.backend} is not available yet; use HUATUO_BACKEND=local."
        )
    return LocalEngine(
        model_spec(settings),
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
        cpu_threads=settings.cpu_threads or None,
    )
