"""One question's output side, written once for every platform, on top of its Outbox.

The placeholder is a courtesy: it is posted when the budget allows, while the question is
already with the model, and withdrawn if the answer is ready first. Progress edits are best
effort. The answer, notices and failures are final writes: retried until they land, and shown in
the placeholder when it landed (a new message when it did not, or was deleted). At the end the
placeholder always holds the answer or a failure, never a progress text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Literal, Protocol, TypeVar

from bot.core import texts
from bot.core.budget import Priority
from bot.core.events import Answer, Progress
from bot.core.outbox import Outbox, Undeliverable, Withdrawn, Write

log = logging.getLogger(__name__)

H = TypeVar("H")  # how a platform names a message it posted (a Slack ts, a discord.Message)
Role = Literal["placeholder", "progress", "notice", "answer", "failure"]
Send = Callable[[Write[Any]], Awaitable[Any]]
DETOUR = 2.0  # seconds: an edit held back longer than a new post is replaced by a new post


class Surface(Protocol[H]):
    """Where one question's messages go on a platform: the writes, for the Outbox to make."""

    progress_interval: float  # seconds between two progress edits of one message, at least
    detours: bool  # a held-back edit may be replaced by a new post (edits and posts differ)

    def show(self, text: str, role: Role, target: H | None = None) -> Write[H]:
        """Edit `target` to show `text` (Markdown, or an answer part as `answer_parts` made it),
        or post it as a new message in the answer's place when `target` is None."""

    def remove(self, target: H) -> Write[object]:
        """Delete `target` (a placeholder whose place a new message took)."""

    def answer_parts(self, answer: Answer) -> list[str]:
        """The answer message's text, formatted for the platform and split to fit."""

    async def post_thinking(self, send: Send, answer: Answer, anchor: H) -> str:
        """Post the thinking after the answer (whose first message is `anchor`) with `send`;
        returns how, for the log."""


class OutboxReply(Generic[H]):
    """A `bot.core.adapter.Reply` for any platform: a Surface's writes through an Outbox."""

    def __init__(
        self,
        outbox: Outbox,
        surface: Surface[H],
        request_id: str = "",
        *,
        placeholder: H | None = None,
    ) -> None:
        self.outbox = outbox
        self.surface = surface
        self.request_id = request_id
        self.delivered: Answer | None = None  # once every part of the answer landed
        self.shown: list[H] = []  # the messages showing the answer (people react on these)
        self.finished = False  # a final text (the whole answer, or a failure) is shown
        self._placeholder = placeholder  # landed, so progress edits it and the answer replaces it
        self._posting: tuple[Write[H], asyncio.Task[H | None]] | None = None
        self._status: str | None = None  # the latest progress text
        self._closing = False
        self._edit_stuck = False  # a progress edit was cut off: that route is held back
        self.started = placeholder is not None  # the asker has (or is getting) a placeholder

    def start(self, status: str = texts.PLACEHOLDER) -> None:
        """Post the placeholder when the budget allows, without waiting for it."""
        self.started = True
        if self._placeholder is None and self._posting is None:
            self._status = status
            write = self.surface.show(status, "placeholder")
            self._posting = write, asyncio.create_task(self._place(write))

    async def _place(self, write: Write[H]) -> H | None:
        try:
            placeholder = await self.outbox.send(write, Priority.PLACEHOLDER)
        except Withdrawn:
            return None
        except Undeliverable as exc:
            log.warning("request %s: no placeholder (%s)", self.request_id, exc)
            return None
        self._placeholder = placeholder
        if self._status is not None and not self._closing:
            self._offer(self._status)  # what happened while it waited for its turn
        return placeholder

    async def notice(self, text: str) -> None:
        """The urgent notice first: the placeholder becomes it, and a new one follows below."""
        target = await self._take_placeholder()
        await self._show(text, "notice", target)
        self._closing = False
        self.start(self._status or texts.PLACEHOLDER)

    async def progress(self, progress: Progress) -> None:
        """Show the latest progress when the budget allows; never waits."""
        self._status = texts.progress_text(progress)
        if self._placeholder is not None and not self._closing:
            self._offer(self._status)

    def _offer(self, status: str) -> None:
        assert self._placeholder is not None
        write = self.surface.show(status, "progress", self._placeholder)
        self.outbox.offer(self, write, self.surface.progress_interval)

    async def deliver(self, answer: Answer) -> None:
        """The answer in the placeholder (split to fit), then the thinking. Raises Undeliverable
        when a part cannot be posted (the asker has then been told, if they could be)."""
        first, *rest = self.surface.answer_parts(answer)
        target = await self._take_placeholder()
        self.shown.append(await self._show(first, "answer", target))
        for part in rest:
            try:
                self.shown.append(await self.outbox.send(self.surface.show(part, "answer")))
            except Undeliverable:
                await self.fail(texts.PARTLY_POSTED)
                raise
        self.delivered, self.finished = answer, True
        log.info(
            "request %s delivered: answer %d chars in %d message(s)",
            self.request_id,
            len(answer.answer),
            len(self.shown),
        )
        if not answer.thinking.strip():
            return
        try:
            how = await self.surface.post_thinking(self._send_thinking, answer, self.shown[0])
        except Undeliverable as exc:
            log.warning("request %s: thinking not posted (%s)", self.request_id, exc)
            return
        log.info("request %s: thinking %d chars %s", self.request_id, len(answer.thinking), how)

    async def fail(self, message: str) -> None:
        """Say why there is no (whole) answer: in the placeholder, or below the answer's parts."""
        target = await self._take_placeholder() if not self.shown else None
        await self._show(message, "failure", target)
        self.finished = True

    async def _send_thinking(self, write: Write[Any]) -> Any:
        return await self.outbox.send(write, Priority.THINKING)

    async def _take_placeholder(self) -> H | None:
        """End the courtesy: withdraw a placeholder not posted yet, drop pending progress; returns
        the placeholder if it landed, for a final text to replace."""
        self._closing = True
        if self._posting is not None:
            write, task = self._posting
            self._posting = None
            write.withdraw()
            await task
        self._edit_stuck |= await self.outbox.settle(self)
        return self._placeholder

    async def _show(self, text: str, role: Role, target: H | None) -> H:
        """A final text: in `target` if it still exists and can be edited soon, else as a new
        message (then `target` is deleted)."""
        if target is not None and self._held_back(text, role, target):
            log.info("request %s: edits held back; posting anew", self.request_id)
            shown = await self.outbox.send(self.surface.show(text, role))
            self._placeholder, self._edit_stuck = None, False
            await self._remove(target)
            return shown
        if target is not None:
            try:
                shown = await self.outbox.send(self.surface.show(text, role, target))
            except Undeliverable as exc:
                if not exc.gone:
                    raise  # the placeholder stays ours: a failure may still replace it
                log.info("request %s: placeholder deleted; posting anew", self.request_id)
            else:
                self._placeholder = None  # it holds a final text now
                return shown
            self._placeholder = None
        return await self.outbox.send(self.surface.show(text, role))

    def _held_back(self, text: str, role: Role, target: H) -> bool:
        """Editing `target` would wait much longer than posting (the platform said to wait)."""
        if not self.surface.detours:
            return False
        edit, post = self.surface.show(text, role, target), self.surface.show(text, role)
        return self._edit_stuck or self.outbox.delay(edit) > self.outbox.delay(post) + DETOUR

    async def _remove(self, placeholder: H) -> None:
        """Delete a placeholder left behind, so no stale progress stays above the answer."""
        try:
            await self.outbox.send(self.surface.remove(placeholder), Priority.THINKING)
        except Undeliverable as exc:
            if not exc.gone:
                log.warning("request %s: placeholder not removed (%s)", self.request_id, exc)
