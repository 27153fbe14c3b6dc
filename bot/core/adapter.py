"""The two small interfaces a platform implements: a reply channel per question, and the adapter."""

from __future__ import annotations

from typing import Protocol

from bot.core.events import Answer, Progress


class Reply(Protocol):
    """Where one question's answer goes; the adapter makes one per question (its output side)."""

    async def notice(self, text: str) -> None:
        """Show an urgent message (Markdown) before the answer: above it, and at once."""

    async def progress(self, progress: Progress) -> None:
        """Update the placeholder ("Thinking… (2 ahead of you)"); at most about once a second."""

    async def deliver(self, answer: Answer) -> None:
        """Replace the placeholder by the final response and put the thinking in the thread."""

    async def fail(self, message: str) -> None:
        """Tell the asker why there is no answer (refusal, error, timeout)."""


class Adapter(Protocol):
    """A platform connection (its input side): turns platform events into questions."""

    name: str

    @property
    def ready(self) -> bool:
        """Connected and taking questions (what `GET /readyz` reports)."""

    async def start(self) -> None:
        """Connect and begin serving; returns once connected."""

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking new questions, give answers in flight `grace` s, tell the askers of those
        that could not finish, and disconnect."""
