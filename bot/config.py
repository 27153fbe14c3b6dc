"""Settings from the environment and `.env` (every one is listed in `.env.example`)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.core.errors import ConfigError
from bot.quiz.schedule import parse_schedule

__all__ = ["ConfigError", "Settings"]  # ConfigError lives in bot.core.errors, for every layer


def _split_ids(value: object) -> object:
    """ "C1, C2" or "C1 C2" in the environment → {"C1", "C2"} (blank: nobody listed)."""
    if isinstance(value, str):
        return frozenset(value.replace(",", " ").split())
    return value


# A list of ids from the environment: comma- or space-separated; empty allows everyone.
Ids = Annotated[frozenset[str], NoDecode, BeforeValidator(_split_ids)]

# What the ids in each allow-list look like, and where to find one: a name such as "#general"
# would never match, so everyone would be refused there.
ID_FORMS = {
    "slack_allowed_channels": (r"[CGD][A-Z0-9]+", "C0123ABCD", "the channel's details"),
    "slack_allowed_users": (r"[UW][A-Z0-9]+", "U0123ABCD", "the person's profile → ⋮"),
    "slack_admins": (r"[UW][A-Z0-9]+", "U0123ABCD", "the person's profile → ⋮"),
    "slack_allowed_usergroups": (r"S[A-Z0-9]+", "S0123ABCD", "the user group's page URL"),
    **{
        f"discord_{name}": (r"\d{15,21}", "123456789012345678", "Developer Mode → Copy ID")
        for name in ("allowed_guilds", "allowed_channels", "allowed_roles", "allowed_users")
    },
    "discord_admins": (r"\d{15,21}", "123456789012345678", "Developer Mode → Copy User ID"),
}


# A host name to listen on, such as localhost (an IP address is checked as one).
_HOST_NAME = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*"


class Settings(BaseSettings):
    """Field names are the environment variables in lower case (`model` is `HUATUO_MODEL`)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,  # a rejected value may be a token: errors never echo it
    )

    model: str = Field("auto", validation_alias="HUATUO_MODEL")
    backend: Literal["local", "openai"] = Field("local", validation_alias="HUATUO_BACKEND")
    openai_base_url: str | None = Field(None, validation_alias="HUATUO_OPENAI_BASE_URL")
    openai_api_key: str | None = Field(None, validation_alias="HUATUO_OPENAI_API_KEY")
    openai_model: str | None = Field(None, validation_alias="HUATUO_OPENAI_MODEL")
    openai_idle_timeout: float = Field(120.0, gt=0, validation_alias="HUATUO_OPENAI_IDLE_TIMEOUT")
    max_new_tokens: int = Field(2048, ge=1, le=32768, validation_alias="HUATUO_MAX_NEW_TOKENS")
    # Unset: HUATUO_MAX_NEW_TOKENS less 512, at least half of it (inference/thinking.py); 0: off.
    thinking_budget: int | None = Field(None, ge=0, validation_alias="HUATUO_THINKING_BUDGET")
    # Unset: on for HuatuoGPT-o1 models and the built-in one (bot/wiring.py).
    prefill_thinking: bool | None = Field(None, validation_alias="HUATUO_PREFILL_THINKING")
    temperature: float = Field(0.5, ge=0.0, le=2.0, validation_alias="HUATUO_TEMPERATURE")
    top_p: float = Field(0.9, gt=0.0, le=1.0, validation_alias="HUATUO_TOP_P")
    system_prompt: str | None = Field(None, validation_alias="HUATUO_SYSTEM_PROMPT")
    http_port: int = Field(8080, ge=0, le=65535, validation_alias="HUATUO_HTTP_PORT")
    http_host: str = Field("127.0.0.1", validation_alias="HUATUO_HTTP_HOST")
    metrics_token: str | None = Field(None, validation_alias="HUATUO_METRICS_TOKEN")
    feedback_db: str = Field("huatuo-feedback.sqlite3", validation_alias="HUATUO_FEEDBACK_DB")
    store_text: bool = Field(False, validation_alias="HUATUO_STORE_TEXT")
    max_batch: int = Field(16, ge=1, le=256, validation_alias="HUATUO_MAX_BATCH")
    max_queue: int = Field(64, ge=0, validation_alias="HUATUO_MAX_QUEUE")
    cpu_threads: int = Field(0, ge=0, le=1024, validation_alias="HUATUO_CPU_THREADS")
    max_question_chars: int = Field(8000, ge=1, validation_alias="HUATUO_MAX_QUESTION_CHARS")
    answer_timeout: float = Field(600.0, gt=0, validation_alias="HUATUO_ANSWER_TIMEOUT")
    redact_phi: bool = Field(False, validation_alias="HUATUO_REDACT_PHI")
    allow_direct_messages: bool = Field(True, validation_alias="HUATUO_ALLOW_DIRECT_MESSAGES")
    rate_limit: int = Field(30, ge=0, validation_alias="HUATUO_RATE_LIMIT")
    rate_window: float = Field(3600.0, gt=0, validation_alias="HUATUO_RATE_WINDOW")
    shutdown_grace: float = Field(30.0, ge=0, validation_alias="HUATUO_SHUTDOWN_GRACE")
    log_format: Literal["text", "json"] = Field("text", validation_alias="HUATUO_LOG_FORMAT")
    disclaimer: str = Field(
        "_HuatuoGPT-o1 is an AI model: check its answers before acting on them; "
        "it is not a substitute for clinical judgement._",
        validation_alias="HUATUO_DISCLAIMER",
    )

    slack_bot_token: str | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: str | None = Field(None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: str | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")
    slack_api_url: str | None = Field(None, validation_alias="SLACK_API_URL")
    slack_allowed_channels: Ids = Field(frozenset(), validation_alias="SLACK_ALLOWED_CHANNELS")
    slack_allowed_users: Ids = Field(frozenset(), validation_alias="SLACK_ALLOWED_USERS")
    slack_allowed_usergroups: Ids = Field(frozenset(), validation_alias="SLACK_ALLOWED_USERGROUPS")
    slack_admins: Ids = Field(frozenset(), validation_alias="SLACK_ADMINS")
    slack_command: str = Field(
        "/huatuo", pattern=r"^/[a-z0-9_-]{1,31}$", validation_alias="SLACK_COMMAND"
    )
    slack_streaming: Literal["auto", "native", "edits"] = Field(
        "auto", validation_alias="HUATUO_SLACK_STREAMING"
    )
    discord_bot_token: str | None = Field(None, validation_alias="DISCORD_BOT_TOKEN")
    discord_api_base: str | None = Field(None, validation_alias="DISCORD_API_BASE")
    discord_gateway_url: str | None = Field(None, validation_alias="DISCORD_GATEWAY_URL")
    discord_sync_guild: int | None = Field(None, validation_alias="DISCORD_SYNC_GUILD")
    discord_allowed_guilds: Ids = Field(frozenset(), validation_alias="DISCORD_ALLOWED_GUILDS")
    discord_allowed_channels: Ids = Field(frozenset(), validation_alias="DISCORD_ALLOWED_CHANNELS")
    discord_allowed_roles: Ids = Field(frozenset(), validation_alias="DISCORD_ALLOWED_ROLES")
    discord_allowed_users: Ids = Field(frozenset(), validation_alias="DISCORD_ALLOWED_USERS")
    discord_admins: Ids = Field(frozenset(), validation_alias="DISCORD_ADMINS")

    quiz_bank: str = Field("", validation_alias="HUATUO_QUIZ_BANK")
    quiz_seconds: float = Field(600.0, gt=0, validation_alias="HUATUO_QUIZ_SECONDS")
    case_of_the_day: str = Field("", validation_alias="HUATUO_CASE_OF_THE_DAY")
    case_of_the_day_seconds: float = Field(
        21600.0, gt=0, validation_alias="HUATUO_CASE_OF_THE_DAY_SECONDS"
    )

    @field_validator(
        "system_prompt",
        "openai_base_url",
        "openai_api_key",
        "discord_sync_guild",
        "metrics_token",
        "thinking_budget",
        "prefill_thinking",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("http_host")
    @classmethod
    def _host_is_an_address(cls, value: str) -> str:
        host = value.strip()
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.fullmatch(_HOST_NAME, host):
                raise ValueError(
                    f"{value!r} is not an address to listen on: use 127.0.0.1 (this machine "
                    "only), 0.0.0.0 (every interface) or one of this machine's addresses, "
                    "without http:// or a port (that is HUATUO_HTTP_PORT)"
                ) from None
        return host

    @field_validator("metrics_token")
    @classmethod
    def _token_is_strong(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\x21-\x7e]{16,}", value):
            raise ValueError(
                "use at least 16 printable ASCII characters without spaces, such as the output "
                "of `openssl rand -hex 32`"
            )
        return value

    @field_validator(*ID_FORMS)
    @classmethod
    def _ids_look_like_ids(cls, value: frozenset[str], info: ValidationInfo) -> frozenset[str]:
        pattern, example, where = ID_FORMS[info.field_name or ""]
        wrong = sorted(item for item in value if not re.fullmatch(pattern, item))
        if wrong:
            verb = "is not an id" if len(wrong) == 1 else "are not ids"
            raise ValueError(
                f"{', '.join(map(repr, wrong))} {verb}; ids look like {example} "
                f"(find one in {where})"
            )
        return value

    @field_validator("case_of_the_day")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        parse_schedule(value)  # raises ValueError naming the bad entry
        return value

    @property
    def redact_before_sending(self) -> bool:
        """Redact identifiers from what the engine gets: on, and the engine is a remote server."""
        return self.redact_phi and self.backend == "openai"
