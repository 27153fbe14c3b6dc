"""Messages that show a text while it is being written: edited as the budget allows (best effort),
one more posted when the text outgrows them, and brought to their final form at the end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from bot.core.budget import Priority
from bot.core.outbox import Outbox, Undeliverable, Withdrawn, Write

log = logging.getLogger(__name__)

H = TypeVar("H")


class LiveMessages(Generic[H]):
    """A growing text's parts, one message each. `write(text, None)` posts a part, `write(text,
    message)` edits one, `remove(message)` deletes one left over at the end."""

    def __init__(
        self,
        outbox: Outbox,
        write: Callable[[str, H | None], Write[H]],
        remove: Callable[[H], Write[object]],
        *,
        interval: float,
        priority: Priority,
    ) -> None:
        self.outbox = outbox
        self._write = write
        self._remove = remove
        self.interval = interval  # seconds between two edits of one message, at least
        self.priority = priority  # of the final form's writes; live edits are progress, and
        # live posts are a courtesy like a placeholder (nobody's first sight of their answer
        # waits behind someone else's reasoning)
        self.messages: list[H] = []
        self._shown: list[str] = []  # what each message shows now (once its write landed)
        self._wanted: list[str] = []
        self._posting: tuple[Write[H], asyncio.Task[None]] | None = None
        self._finished = False
        self._stalled = False  # a live post failed: the rest waits for the final form

    def update(self, parts: list[str]) -> None:
        """Show `parts` when the budget allows; never waits."""
        if self._finished:
            return
        self._wanted = parts
        for index, text in enumerate(parts[: len(self.messages)]):
            if text != self._shown[index]:
                self.outbox.offer((self, index), self._edit(index, text), self.interval)
        if len(parts) > len(self.messages) and self._posting is None and not self._stalled:
            text = parts[len(self.messages)]
            write = self._write(text, None)
            self._posting = write, asyncio.create_task(self._post(write, text))

    async def _post(self, write: Write[H], text: str) -> None:
        try:
            message = await self.outbox.send(write, Priority.PLACEHOLDER)
        except (Withdrawn, Undeliverable) as exc:
            log.info("live text: %s not posted (%s)", write.label, exc)
            self._stalled = True
            return
        finally:
            self._posting = None
        self.messages.append(message)
        self._shown.append(text)
        self.update(self._wanted)

    def _edit(self, index: int, text: str) -> Write[H]:
        """An edit of message `index` to `text` that remembers what it shows once it landed."""
        write = self._write(text, self.messages[index])
        attempt = write.attempt

        async def recorded() -> H:
            result = await attempt()
            self._shown[index] = text
            return result

        write.attempt = recorded
        return write

    async def stop(self) -> None:
        """No more live writes: a post not made yet is withdrawn, pending edits are dropped."""
        self._finished = True
        if self._posting is not None:
            write, task = self._posting
            write.withdraw()
            await task
        for index in range(len(self.messages)):
            await self.outbox.settle((self, index))

    async def finish(self, parts: list[str]) -> list[H]:
        """The final form, as final writes: messages that differ edited, more parts posted, those
        left over deleted; returns the messages holding `parts`. Raises Undeliverable."""
        await self.stop()
        for index, text in enumerate(parts):
            if index >= len(self.messages):
                self.messages.append(await self.outbox.send(self._write(text, None), self.priority))
                self._shown.append(text)
            elif text != self._shown[index]:
                await self.outbox.send(self._edit(index, text), self.priority)
        while len(self.messages) > len(parts):
            message = self.messages.pop()
            self._shown.pop()
            try:
                await self.outbox.send(self._remove(message), self.priority)
            except Undeliverable as exc:
                if not exc.gone:
                    raise
        return list(self.messages)
