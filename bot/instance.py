"""One `run` process per Slack app and Discord application on a host: a lock file for each.

Two processes with the same Discord token both receive every message and answer it twice; two with
the same Slack app split its events, so a retry or a quiz click can land on the one that does not
know it. Each platform `run` serves takes an exclusive `flock` on a file beside the feedback
database, named after a hash of the platform's bot token (never the token itself). The kernel lets
the lock go when the process ends, however it ends; the file itself stays and only its lock counts.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bot.config import ConfigError, Settings

log = logging.getLogger(__name__)

WHY = {
    "discord": "two sessions of one Discord bot would both answer every message",
    "slack": (
        "two processes of one Slack app would split its events, so a retried event or a quiz "
        "button could land on the one that does not know it and be answered twice"
    ),
}
TOKEN_SETTING = {"discord": "DISCORD_BOT_TOKEN", "slack": "SLACK_BOT_TOKEN"}


class AlreadyRunning(ConfigError):
    """Another live process on this host serves the same platform with the same bot token."""


def lock_dir(settings: Settings) -> Path:
    """The feedback database's folder; the system's temporary folder when feedback is off."""
    database = settings.feedback_db.strip()
    return Path(database).absolute().parent if database else Path(tempfile.gettempdir())


def lock_path(settings: Settings, platform: str) -> Path:
    """The lock file of `platform`'s bot token: its name carries a hash, never the token."""
    token = settings.discord_bot_token if platform == "discord" else settings.slack_bot_token
    digest = hashlib.sha256((token or "").encode()).hexdigest()[:16]
    return lock_dir(settings) / f"huatuo-bot-{platform}-{digest}.lock"


@contextmanager
def single_instance(settings: Settings, platforms: Sequence[str]) -> Iterator[None]:
    """Hold the lock of every platform in `platforms` until the block ends; raise AlreadyRunning
    at once if another process holds one."""
    with ExitStack() as held:
        for platform in platforms:
            held.enter_context(_hold(lock_path(settings, platform), platform))
        yield


@contextmanager
def _hold(path: Path, platform: str) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # no planted link
    except OSError as exc:
        log.warning(
            "cannot check for a second %s process of this bot on this host (%s): %s",
            platform, path, exc.strerror or exc,
        )  # fmt: skip
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            raise AlreadyRunning(_refusal(path, platform, holder)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield
    finally:
        os.close(fd)  # lets the lock go


def _refusal(path: Path, platform: str, holder: str) -> str:
    name = platform.capitalize()
    return (
        f"Another huatuo-bot process ({holder}) is already serving {name} with this "
        f"{TOKEN_SETTING[platform]}: it holds {path}. Not starting, because {WHY[platform]}. "
        f"Stop that process first (a restart must not overlap the old process), or give this "
        f"one its own {name} app. One process serves a whole Slack workspace or Discord "
        "server; the model server is what scales (README: Scaling and high availability)."
    )
