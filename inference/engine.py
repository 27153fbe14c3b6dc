"""What every engine shares: requests, the caller's handle on a generation, and the batch worker.

An engine runs generation on a background thread. Callers on an asyncio loop `submit` a request and
get a `Generation`: iterate it for text chunks, read its place in the waiting line, cancel it. The
worker thread admits waiting requests into the running batch whenever a slot is free, advances the
whole batch one step at a time, and frees a slot the moment its request finishes or is cancelled.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled", "error"]


class EngineError(Exception):
    """Generation failed; the message is for the log and the operator, not for askers."""


class QueueFull(EngineError):
    """Too many questions are waiting; the asker should try again shortly."""


class EngineClosed(EngineError):
    """The engine is shutting down and takes no new questions."""


def closed() -> EngineClosed:
    return EngineClosed("The model is not taking questions right now (shutting down).")


def cut_off_by_shutdown() -> EngineClosed:
    return EngineClosed("The bot shut down before this answer could finish.")


def queue_full(waiting: int) -> QueueFull:
    return QueueFull(f"{waiting} questions are already waiting; please ask again in a minute.")


class PromptTooLong(EngineError):
    """The question (without history) does not fit in the model's context window."""


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 2048
    temperature: float = 0.5  # 0 means greedy
    top_p: float = 0.9
    # Tokens of thinking after which the engine writes the Final Response header for the model
    # (inference/thinking.py); 0: never.
    thinking_budget: int = 0


@dataclass(frozen=True)
class GenerationRequest:
    """Chat messages, oldest first, ending with the user's question."""

    messages: tuple[Message, ...]
    sampling: SamplingParams = SamplingParams()
    request_id: str = ""

    def with_id(self, ids: Iterator[int]) -> GenerationRequest:
        """This request, numbered from `ids` if it has no id yet."""
        if self.request_id:
            return self
        return GenerationRequest(self.messages, self.sampling, f"r{next(ids)}")


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    first_token_at: float | None = None
    finished_at: float | None = None
    thinking_capped: bool = False  # the thinking reached its budget and was ended for the model

    @property
    def time_to_first_token(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.submitted_at

    @property
    def tokens_per_second(self) -> float | None:
        if self.first_token_at is None or self.finished_at is None:
            return None
        elapsed = self.finished_at - self.first_token_at
        return (self.completion_tokens - 1) / elapsed if elapsed > 0 else None


_END = object()


class Generation:
    """The caller's handle on one request. Iterating yields text chunks; errors are raised there."""

    def __init__(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.stats = GenerationStats()
        self.finish_reason: FinishReason | None = None
        self.text = ""
        self._loop = loop
        self._chunks: asyncio.Queue[object] = asyncio.Queue()
        self._cancelled = threading.Event()
        self._finish_lock = threading.Lock()
        self._position: int | None = None  # 1-based place in the waiting line; None once running
        self._leave_line: Callable[[Generation], None] | None = None  # set by a BatchEngine

    @property
    def queue_position(self) -> int | None:
        """1 when next in line, None once generating (or finished)."""
        return self._position

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def cancel(self) -> None:
        """Stop generating for this request: waiting in line, it leaves the line at once;
        running, its slot is freed at the next step."""
        self._cancelled.set()
        if self._leave_line is not None and not self.done:
            self._leave_line(self)

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        async for chunk in self.chunks_or_ticks(None):  # no tick: chunks only
            yield chunk  # type: ignore[misc]

    async def chunks_or_ticks(self, tick: float | None) -> AsyncIterator[str | None]:
        """Like iterating, but yields None whenever `tick` seconds pass without a chunk."""
        while True:
            try:
                item = await asyncio.wait_for(self._chunks.get(), tick)
            except TimeoutError:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    async def collect(self) -> str:
        """Wait for the whole text."""
        async for _ in self:
            pass
        return self.text

    # Called from the worker thread.
    def _emit(self, chunk: str, generated: bool = True) -> None:
        """Send text on; `generated` False: the engine wrote it for the model (not a token yet)."""
        if not chunk:
            return
        self.text += chunk
        if generated and self.stats.first_token_at is None:
            self.stats.first_token_at = time.monotonic()
        self._loop.call_soon_threadsafe(self._chunks.put_nowait, chunk)

    def _finish(self, reason: FinishReason, error: BaseException | None = None) -> None:
        with self._finish_lock:
            if self.finish_reason is not None:
                return
            self.finish_reason = reason
        self._position = None
        self.stats.finished_at = time.monotonic()
        item = error if error is not None else _END
        try:
            self._loop.call_soon_threadsafe(self._chunks.put_nowait, item)
        except RuntimeError:  # the asker's loop is gone: nobody is left to tell
            log.debug("request %s finished after its loop closed", self.request.request_id)


class Row:
    """One running request inside a batch worker, with whatever state the engine keeps for it."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.tokens_out = 0
        self.finished: FinishReason | None = None
        self.error: EngineError | None = None

    def fail(self, error: EngineError) -> None:
        """Fail this row alone; the rest of the batch goes on."""
        self.finished, self.error = "error", error


class BatchEngine(ABC):
    """A worker thread that batches requests; subclasses say how to start and step rows."""

    name: str = "engine"

    def __init__(self, max_batch: int = 16, max_queue: int = 64) -> None:
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._waiting: deque[Generation] = deque()
        self._rows: list[Row] = []
        self._lock = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1)

    # ---- lifecycle (event loop side) -------------------------------------------------------
    async def start(self) -> None:
        """Start the worker thread and wait until it has loaded what it needs.

        The worker loads the model itself, so one thread does all of the model's work: once
        another thread has run torch ops, generation here slows down (78 -> 62 tokens/s seen on
        2 cores; torch's OpenMP thread pools are per thread).
        """
        loop = asyncio.get_running_loop()
        loaded: asyncio.Future[None] = loop.create_future()

        def report(error: BaseException | None) -> None:
            if not loaded.done():
                loaded.set_exception(error) if error else loaded.set_result(None)

        def work() -> None:
            try:
                self._load()
            except BaseException as exc:
                loop.call_soon_threadsafe(report, exc)
                return
            loop.call_soon_threadsafe(report, None)
            self._run()

        thread = threading.Thread(target=work, name=f"{self.name}-worker", daemon=True)
        thread.start()
        await loaded
        self._thread = thread

    def _load(self) -> None:  # noqa: B027 - optional hook
        """Load models or other slow resources; runs in a worker thread."""

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def running(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, request: GenerationRequest) -> Generation:
        """Queue a request; raises QueueFull or EngineClosed instead of queueing without bound."""
        generation = Generation(request.with_id(self._ids), asyncio.get_running_loop())
        with self._lock:
            if self._closing or self._thread is None:
                raise closed()
            if len(self._waiting) >= self.max_queue:
                raise queue_full(len(self._waiting))
            self._waiting.append(generation)
            generation._position = len(self._waiting)
            generation._leave_line = self._leave_line
            self._lock.notify()
        return generation

    def _leave_line(self, generation: Generation) -> None:
        """A request cancelled while waiting: out of the line now, the others move up."""
        with self._lock:
            if generation not in self._waiting:
                return  # running (freed at the next step) or gone
            self._waiting.remove(generation)
            self._renumber()
        generation._finish("cancelled")

    async def close(self, grace: float = 30.0) -> None:
        """Stop taking requests, let pending ones finish for up to `grace` s, then fail the rest."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        if self._thread is None:
            return
        deadline = time.monotonic() + grace
        while self._thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        with self._lock:
            leftovers = list(self._waiting) + [row.generation for row in self._rows]
        for generation in leftovers:
            generation._finish("error", cut_off_by_shutdown())
            generation.cancel()
        await asyncio.to_thread(self._thread.join)

    # ---- worker thread -----------------------------------------------------------------------
    def _take_waiting(self) -> list[Generation] | None:
        """New requests for the free slots; blocks while idle. None means: closed and drained."""
        with self._lock:
            while not self._rows and not self._waiting:
                if self._closing:
                    return None
                self._lock.wait()
            taken = []
            while self._waiting and len(self._rows) + len(taken) < self.max_batch:
                generation = self._waiting.popleft()
                if not generation.cancelled:
                    taken.append(generation)
                else:
                    generation._finish("cancelled")
            self._renumber()
            for generation in taken:
                generation._position = None
                generation.stats.started_at = time.monotonic()
            return taken

    def _renumber(self) -> None:
        """Places in line from 1 (with the lock held)."""
        for place, generation in enumerate(self._waiting, start=1):
            generation._position = place

    def _run(self) -> None:
        while (new := self._take_waiting()) is not None:
            if new:
                self._guarded(new, lambda: self._admit(new))
            for row in self._rows:
                if row.generation.cancelled and row.finished is None:
                    row.finished = "cancelled"
            self._release_finished()
            if self._rows:
                rows = list(self._rows)
                self._guarded([r.generation for r in rows], self._step)
                self._release_finished()
        log.info("%s worker stopped", self.name)

    def _guarded(self, generations: Sequence[Generation], work) -> None:
        """Run batch work; if it fails, fail exactly those requests and keep serving the rest."""
        try:
            work()
        except Exception as exc:
            log.exception("%s: generation failed for %d request(s)", self.name, len(generations))
            error = (
                exc if isinstance(exc, EngineError) else EngineError(f"Generation failed: {exc}")
            )
            failed = {id(g) for g in generations}
            for generation in generations:
                generation._finish("error", error)
            self._rows = [r for r in self._rows if id(r.generation) not in failed]
            self._reset_after_error()

    def _release_finished(self) -> None:
        """Free the slots of finished rows first, then tell their askers."""
        finished = [row for row in self._rows if row.finished is not None]
        if not finished:
            return
        keep = [i for i, row in enumerate(self._rows) if row.finished is None]
        self._drop_rows(keep)
        self._rows = [self._rows[i] for i in keep]
        for row in finished:
            row.generation._finish(row.finished, row.error)  # type: ignore[arg-type]

    @abstractmethod
    def _admit(self, generations: list[Generation]) -> None:
        """Add rows for new requests to `self._rows`, emitting their first chunk if there is one."""

    @abstractmethod
    def _step(self) -> None:
        """Advance every row by one step, emitting chunks and setting `row.finished`."""

    def _drop_rows(self, keep: list[int]) -> None:  # noqa: B027 - optional hook
        """Forget per-batch state of the rows not in `keep` (indices into the current rows)."""

    def _reset_after_error(self) -> None:  # noqa: B027 - optional hook
        """Rebuild per-batch state after a failed step (the failed rows are already gone)."""
