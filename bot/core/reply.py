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
from bot.core.live import LiveMessages
from bot.core.outbox import Outbox, Undeliverable, Withdrawn, Write

log = logging.getLogger(__name__)

H = TypeVar("H")  # how a platform names a message it posted (a Slack ts, a discord.Message)
Role = Literal["placeholder", "progress", "draft", "notice", "answer", "failure"]
LIVE: frozenset[Role] = frozenset({"placeholder", "progress", "draft"})  # these carry Stop
Send = Callable[[Write[Any]], Awaitable[Any]]
DETOUR = 2.0  # seconds: an edit held back longer than a new post is replaced by a new post


class Surface(Protocol[H]):
    """Where one question's messages go on a platform: the writes, for the Outbox to make."""

    progress_interval: float  # seconds between two progress edits of one message, at least
    detours: bool  # a held-back edit may be replaced by a new post (edits and posts differ)
    thinking_messages: int  # thinking that needs more messages is attached as a file at the end

    def show(self, text: str, role: Role, target: H | None = None) -> Write[H]:
        """Edit `target` to show `text` (Markdown, or a part as `answer_parts` / `draft_parts`
        made it), or post it as a new message in the answer's place when `target` is None. A
        LIVE role carries the Stop button; the others take it away."""

    def remove(self, target: H) -> Write[object]:
        """Delete `target` (a placeholder whose place a new message took, a part left over); one
        that the thinking's place hangs on says where the answer went instead."""

    def answer_parts(self, answer: Answer) -> list[str]:
        """The answer message's text, formatted for the platform and split to fit."""

    def draft_parts(self, answer: str) -> list[str]:
        """The final response so far (Markdown), formatted and split like the answer."""

    def thinking_parts(self, thinking: str, title: str) -> list[str]:
        """The thinking's messages under `title`, formatted and split to fit."""

    async def open_thinking(self, send: Send, anchor: H) -> None:
        """Get the thinking's place ready, next to the answer's first message `anchor` (on
        Discord, a thread on it)."""

    def think(self, text: str, target: H | None = None) -> Write[H]:
        """Post a thinking message in its place, or edit `target` to `text`."""

    async def attach_thinking(self, send: Send, thinking: str, title: str) -> bool:
        """The whole thinking as a file in its place; False when the platform refuses it."""


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
        self._draft: list[str] = []  # the final response so far, as the answer's parts
        self._thinking_text = ""  # the thinking so far
        self._closing = False
        self._edit_stuck = False  # a progress edit was cut off: that route is held back
        self._opening: asyncio.Task[None] | None = None  # getting the thinking's place ready
        interval = surface.progress_interval
        self._rest = LiveMessages(
            outbox, self._answer_write, surface.remove, interval=interval, priority=Priority.ANSWER
        )
        self._thinking = LiveMessages(
            outbox, surface.think, surface.remove, interval=interval, priority=Priority.THINKING
        )
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
        if self._status is not None:
            self._live()  # what happened while it waited for its turn
        return placeholder

    async def notice(self, text: str) -> None:
        """The urgent notice first: the placeholder becomes it, and a new one follows below."""
        target = await self._take_placeholder()
        await self._show(text, "notice", target)
        self._closing = False
        self.start(self._status or texts.PLACEHOLDER)

    async def progress(self, progress: Progress) -> None:
        """Show the latest progress, the answer and thinking so far, when the budget allows;
        never waits."""
        self._status = texts.progress_text(progress)
        self._draft = self.surface.draft_parts(progress.answer) if progress.answer else []
        self._thinking_text = progress.thinking
        self._live()

    def _live(self) -> None:
        """The latest state, best effort: the status or the answer so far in the placeholder, the
        rest of the answer below it, and the thinking in its own place."""
        if self._placeholder is None or self._closing:
            return
        if self._draft:  # the thinking is over: the answer first, its last form at the end
            self._offer(self._draft[0], "draft")
            self._rest.update(self._draft[1:])
            return
        if self._status is not None:
            self._offer(self._status, "progress")
        if not self._thinking_text:
            return
        if self._opening is None:
            self._opening = asyncio.create_task(self._open_thinking(self._placeholder))
        elif self._opening.done():
            parts = self.surface.thinking_parts(self._thinking_text, texts.THINKING_LIVE)
            self._thinking.update(parts[: self.surface.thinking_messages])

    def _offer(self, text: str, role: Role) -> None:
        assert self._placeholder is not None
        write = self.surface.show(text, role, self._placeholder)
        self.outbox.offer(self, write, self.surface.progress_interval)

    async def _open_thinking(self, anchor: H) -> None:
        await self.surface.open_thinking(self._send_thinking, anchor)
        self._live()

    def _answer_write(self, text: str, target: H | None) -> Write[H]:
        return self.surface.show(text, "answer", target)

    async def deliver(self, answer: Answer) -> None:
        """The answer in the placeholder (split to fit), then the thinking. Raises Undeliverable
        when a part cannot be posted (the asker has then been told, if they could be)."""
        first, *rest = self.surface.answer_parts(answer)
        target = await self._take_placeholder()
        self.shown.append(await self._show(first, "answer", target))
        try:
            self.shown += await self._rest.finish(rest)
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
        await self.finish_thinking(answer.thinking, texts.thinking_title(answer))

    async def fail(self, message: str) -> None:
        """Say why there is no (whole) answer: in the placeholder, or below the answer's parts."""
        target = await self._take_placeholder() if not self.shown else None
        await self._show(message, "failure", target)
        self.finished = True
        if not self.shown:  # the answer's parts written so far go
            await self._quietly(self._rest.finish([]))
        if self._opening is not None and self.delivered is None:  # the thinking so far stays
            await self.finish_thinking(self._thinking_text, texts.THINKING_INCOMPLETE)

    async def finish_thinking(self, thinking: str, title: str) -> None:
        """The thinking in its final form: its live messages finished, more posted, or (when
        long) attached as a file after those shown live."""
        if self._opening is not None:
            await self._opening
        elif thinking.strip() and self.shown:
            await self.surface.open_thinking(self._send_thinking, self.shown[0])
        parts = self.surface.thinking_parts(thinking, title) if thinking.strip() else []
        how = f"in {len(parts)} message(s)"
        try:
            if len(parts) > self.surface.thinking_messages:
                await self._thinking.finish(parts[: len(self._thinking.messages)])
                if await self.surface.attach_thinking(self._send_thinking, thinking, title):
                    parts, how = [], "as a file"
            if parts or self._thinking.messages:
                await self._thinking.finish(parts)
        except Undeliverable as exc:
            log.warning("request %s: thinking not posted (%s)", self.request_id, exc)
            return
        if thinking.strip():
            log.info("request %s: thinking %d chars %s", self.request_id, len(thinking), how)

    async def _quietly(self, work: Awaitable[object]) -> None:
        try:
            await work
        except Undeliverable as exc:
            log.warning("request %s: part of the draft not removed (%s)", self.request_id, exc)

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
