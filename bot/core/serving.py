"""One question's whole life on any platform, and the work a platform adapter has in flight.

`serve` runs a question through the answer service and owns the last word: whatever happens (an
error, the bot stopping), the asker is told why there is no answer, unless an answer (or a
failure) is already shown, which is never overwritten. `InFlight` keeps an adapter's tasks until
they end, and at shutdown gives them a grace period, then cuts them short (`serve` tells those
askers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from bot import logs
from bot.core import texts
from bot.core.adapter import Reply
from bot.core.events import Question
from bot.core.service import AnswerService, Outcome

log = logging.getLogger(__name__)

LAST_WORD_PATIENCE = 120.0  # seconds to tell an asker why there is no answer
CUT_SHORT_PATIENCE = 10.0  # the same while the bot is stopping


class Served(Reply, Protocol):
    """A Reply that says whether the asker has a message from it, and whether it shows a final
    text (an answer or a failure) that must not be overwritten."""

    request_id: str
    started: bool
    finished: bool


Prepare = Callable[[], Awaitable[Question | None]]
Record = Callable[[Question, Any], Awaitable[None]]  # gets the reply, as the platform made it


async def serve(
    service: AnswerService,
    asked: Question,
    reply: Served,
    *,
    prepare: Prepare | None = None,
    record: Record | None = None,
) -> Outcome | None:
    """Answer `asked` through `reply`; `prepare` first makes the question to answer (with its
    conversation's history, say), or None when it is not for the bot after all (nothing is
    answered, None is returned). `record` keeps what was delivered (the feedback store)."""
    started = time.monotonic()
    logs.request_id.set(asked.request_id)  # on this task's log records from here on
    question = asked
    try:
        if prepare is not None:
            prepared = await prepare()
            if prepared is None:
                return None
            question = prepared
        outcome = await service.answer(question, reply)
    except asyncio.CancelledError:
        if reply.started:  # not in a conversation that is not ours
            await last_word(reply, texts.CUT_SHORT, CUT_SHORT_PATIENCE)
        raise
    except Exception:
        log.exception("request %s: answering failed", asked.request_id)
        await last_word(reply, texts.broken(asked.request_id))
        outcome = "failed"
    if record is not None:
        await record(question, reply)
    log.info(
        "request %s: %s after %.1f s (%d history turns)",
        asked.request_id,
        outcome,
        time.monotonic() - started,
        len(question.history) // 2,
    )
    return outcome


async def last_word(reply: Served, text: str, patience: float = LAST_WORD_PATIENCE) -> None:
    """Tell the asker why there is no answer (Markdown), unless an answer or a failure is shown
    already; logs instead of raising when the platform cannot be reached."""
    if reply.finished:
        return
    try:
        await asyncio.wait_for(reply.fail(text), patience)
    except Exception as exc:
        log.warning("request %s: the asker could not be told (%r)", reply.request_id, exc)


class InFlight:
    """The tasks of one platform adapter (answers, quiz work), kept until they end."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, None], name: str | None = None) -> None:
        """Run `work` in the background."""
        task = asyncio.create_task(work, name=f"{self.platform}-{name or 'work'}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s: %s failed unexpectedly", self.platform, task.get_name(), exc_info=error)

    async def stop(self, grace: float) -> int:
        """Wait up to `grace` s for the tasks, then cancel the rest; returns how many were cut
        short."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)
