"""A thin client of an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp server).

`RemoteEngine` keeps the local engine's contract: `submit` returns a `Generation` at once (or raises
QueueFull / EngineClosed) and iterating it yields text chunks. Instead of a worker thread, each
running request is a task on the asyncio loop that streams `POST /v1/chat/completions` (server-sent
events). At most `max_batch` streams are open at once; more wait in a bounded line and know their
place. Connection errors and 5xx / 429 answers are retried with backoff until the first text
arrives, never after (no text is ever sent twice); past that, a failure fails that request alone.
A stream that gave its finish_reason is complete: what the connection does afterwards (close
without `data: [DONE]`, break, or stay open and silent) no longer matters.

The Thinking header written for the model (`prefill_thinking`) and the Final Response header
forced when the thinking reaches its budget (inference/thinking.py) both go to the server as a
trailing assistant message to continue (`continue_final_message`, as vLLM and SGLang take it;
llama.cpp's server continues such a message by itself). A capped answer is two requests: the
first stream is closed when its thinking has used the budget (counting one token per content
delta), and a second continues the same assistant message. A server that refuses to continue
(HTTP 400 or 422) is noted once in the log; from then on answers go as plain requests, uncapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from yarl import URL

from inference.engine import (
    EngineError,
    FinishReason,
    Generation,
    GenerationRequest,
    closed,
    cut_off_by_shutdown,
    queue_full,
)
from inference.thinking import FORCED_FINAL, PREFILL, still_thinking

log = logging.getLogger(__name__)

_MAX_RETRY_DELAY = 10.0  # seconds; also caps a server's Retry-After
_AFTER_FINISH = 2.0  # seconds a finished stream waits for its usage and [DONE]
_PROBE_TIMEOUT = 3.0  # seconds GET /v1/models may take when asked whether the server can answer
_NO_CONTINUING = (400, 422)  # how a server says it does not take continue_final_message
Ending = FinishReason | Literal["capped"]  # "capped": the thinking used its budget


@dataclass
class _Turn:
    """One request of an answer: the assistant text it continues (None: a fresh turn), the text
    emitted for the model before its first delta, its max_tokens, after how many deltas its
    thinking is capped (0: never), and whether it is the continuation of a capped thinking."""

    assistant: str | None
    lead: str
    max_tokens: int
    budget: int = 0
    caps: bool = False
    start: int = 0  # len(generation.text) when the turn began: what it emitted comes after


class ModelServerError(EngineError):
    """The model server could not be reached or did not answer well; the message names it."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(mask_urls(message))  # a server's own words may hold a URL too
        self.status = status  # the HTTP status, None when there was no HTTP answer
        self.retryable = retryable  # worth another try if no text was sent yet
        self.retry_after = retry_after


def api_base(base_url: str) -> URL:
    """The API root: `http://host:8000` and `http://host:8000/v1` both give `.../v1`."""
    url = URL(base_url.strip().rstrip("/"))
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"{mask_urls(base_url)!r} is not an http(s) URL such as http://localhost:8000/v1"
        )
    return url / "v1" if url.path in ("", "/") else url


# A URL in a text: its scheme (or the start of the text: a URL given without one), its
# authority (user:password@host:port), its path and its query. `mask_urls` is the one way a URL
# that may carry credentials (HUATUO_OPENAI_BASE_URL) reaches output, logs or error messages.
_URL = re.compile(
    r"(?:(?P<scheme>[a-z][a-z0-9+.-]*://)|^)"
    r"(?P<authority>[^\s/?#'\"<>]*)(?P<path>[^\s?#'\"<>]*)(?P<query>\?[^\s#'\"<>]*)?",
    re.IGNORECASE,
)


def _masked(url: re.Match[str]) -> str:
    _, at, host = url["authority"].rpartition("@")
    query = re.sub(r"=[^&;]*", "=***", url["query"] or "")
    return f"{url['scheme'] or ''}{'***@' if at else ''}{host}{url['path']}{query}"


def mask_urls(text: str) -> str:
    """`text` with the user, password and query values of every URL in it shown as ***."""
    return _URL.sub(_masked, text)


def _cause(exc: BaseException) -> str:
    """The low-level error behind `exc`, for the log."""
    return f" [{mask_urls(repr(exc.__cause__))}]" if exc.__cause__ else ""


def _unreachable(server: str, exc: aiohttp.ClientConnectorError) -> ModelServerError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc.os_error or exc)
    return ModelServerError(
        f"The model server at {server} is not reachable ({reason}).", retryable=True
    )


async def _status_error(response: aiohttp.ClientResponse, server: str) -> ModelServerError:
    """What a non-200 answer means, with the server's own explanation when it gives one."""
    status = response.status
    body = (await response.content.read(4096)).decode(errors="replace")
    try:
        error = json.loads(body)
        detail = error.get("error") or error.get("detail") or error.get("message")
        detail = detail.get("message") if isinstance(detail, dict) else detail
    except (ValueError, AttributeError):  # not JSON: an HTML page from a proxy, say
        detail = response.reason
    # Only a plain message: a structured one (FastAPI's 422) may echo the question's text.
    detail = detail.strip().rstrip(".")[:300] if isinstance(detail, str) else ""
    explained = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if status == 429 or status >= 500:
        retry_after = response.headers.get("Retry-After", "")
        return ModelServerError(
            f"The model server at {server} is {'busy' if status == 429 else 'failing'} "
            f"({explained}).",
            status,
            retryable=True,
            retry_after=float(retry_after) if retry_after.isdigit() else None,
        )
    return ModelServerError(
        f"The model server at {server} refused the request ({explained}).", status
    )


async def _sse_data(stream: aiohttp.StreamReader) -> AsyncIterator[str]:
    """The data of each server-sent event (its data lines joined), in order."""
    data: list[str] = []
    async for raw in stream:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
        elif not line and data:
            yield "\n".join(data)
            data = []
    if data:
        yield "\n".join(data)


async def served_models(
    base_url: str, api_key: str | None = None, timeout: float = 5.0
) -> list[str]:
    """The model ids the server lists at GET /v1/models; raises ModelServerError if it can't."""
    url = api_base(base_url)
    server = mask_urls(str(url))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url / "models", headers=headers) as response,
        ):
            if response.status != 200:
                raise await _status_error(response, server)
            listed = (await response.json(content_type=None)).get("data") or []
    except aiohttp.ClientConnectorError as exc:
        raise _unreachable(server, exc) from exc
    except TimeoutError as exc:
        raise ModelServerError(
            f"The model server at {server} did not answer within {timeout:g} s."
        ) from exc
    except (aiohttp.ClientError, ValueError, AttributeError) as exc:
        raise ModelServerError(
            f"The model server at {server} gave no model list at {url / 'models'} ({exc})."
        ) from exc
    return [model["id"] for model in listed if isinstance(model, dict) and "id" in model]


class _RemoteGeneration(Generation):
    """A Generation whose cancel() also closes its HTTP stream at once, not at the next chunk."""

    def __init__(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        on_cancel: Callable[[Generation], None],
    ) -> None:
        super().__init__(request, loop)
        self._on_cancel = on_cancel
        self.context = contextvars.copy_context()  # the asker's, for its stream's task and logs

    def cancel(self) -> None:
        super().cancel()
        if not self.done:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs any more
                self._loop.call_soon_threadsafe(self._on_cancel, self)


class RemoteEngine:
    """Streams answers from an OpenAI-compatible server; see the module docstring."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_batch: int = 16,
        max_queue: int = 64,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 0.5,
        probe_interval: float = 5.0,
        prefill_thinking: bool = False,
    ) -> None:
        self.url = api_base(base_url)
        self.server = mask_urls(str(self.url))
        self.model_name = model
        self.api_key = api_key
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout  # the longest wait for the next chunk
        self.retries = retries
        self.backoff = backoff
        self.probe_interval = probe_interval  # seconds `problem()` reuses what the server said
        self.prefill_thinking = prefill_thinking  # start every answer with the Thinking header
        self.continues = True  # False once the server refused to continue an assistant message
        self._probe: asyncio.Future[str | None] | None = None
        self._probed_at = 0.0
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self._waiting: deque[_RemoteGeneration] = deque()
        self._tasks: dict[Generation, asyncio.Task[None]] = {}
        self._ids = itertools.count(1)

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the HTTP client and say in the log whether the server serves the model.

        An unreachable server does not stop the start (it may still be loading its model);
        questions fail with a clear message until it answers.
        """
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.connect_timeout, sock_read=self.read_timeout
        )
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._session = aiohttp.ClientSession(
            timeout=timeout, headers=headers, connector=aiohttp.TCPConnector(limit=0)
        )
        problem = await self.problem()
        if problem is None:
            log.info("%s serves %s", self.server, self.model_name)
        else:
            log.warning("%s Questions will fail while this lasts.", problem)

    async def problem(self) -> str | None:
        """Why the server cannot answer now (None: it lists the model), for /readyz."""
        # GET /v1/models at most once per `probe_interval` s, however often this is awaited:
        # a scraper polling /readyz cannot hammer the model server.
        stale = time.monotonic() - self._probed_at >= self.probe_interval
        if self._probe is None or (self._probe.done() and stale):
            self._probed_at = time.monotonic()
            self._probe = asyncio.ensure_future(self._ask_models())
        return await asyncio.shield(self._probe)  # a caller gone does not cancel it for others

    async def _ask_models(self) -> str | None:
        try:
            models = await served_models(str(self.url), self.api_key, timeout=_PROBE_TIMEOUT)
        except EngineError as exc:
            return str(exc)
        if self.model_name in models:
            return None
        listed = ", ".join(map(repr, models)) or "no model"
        return (
            f"The model server at {self.server} does not list {self.model_name!r}; it lists "
            f"{listed}."
        )

    @property
    def started(self) -> bool:
        return self._session is not None

    @property
    def running(self) -> int:
        return len(self._tasks)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, request: GenerationRequest) -> Generation:
        """Start streaming, or queue when `max_batch` streams are open; raises QueueFull or
        EngineClosed instead of queueing without bound."""
        request = request.with_id(self._ids)
        if self._session is None or self._closing:
            raise closed()
        busy = len(self._tasks) >= self.max_batch
        if busy and len(self._waiting) >= self.max_queue:
            raise queue_full(len(self._waiting))
        generation = _RemoteGeneration(request, asyncio.get_running_loop(), self._cancelled)
        if busy:
            self._waiting.append(generation)
            generation._position = len(self._waiting)
        else:
            self._begin(generation)
        return generation

    async def close(self, grace: float = 30.0) -> None:
        """Stop taking requests, let pending ones finish for up to `grace` s, then fail the rest."""
        self._closing = True
        deadline = time.monotonic() + grace
        while self._tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(list(self._tasks.values()), timeout=left)
        leftovers = [*self._waiting, *self._tasks]
        self._waiting.clear()
        for generation in leftovers:
            generation._finish("error", cut_off_by_shutdown())
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._probe is not None:
            self._probe.cancel()
        if self._session is not None:
            await self._session.close()

    # ---- the line and the slots ------------------------------------------------------------
    def _begin(self, generation: _RemoteGeneration) -> None:
        generation._position = None
        generation.stats.started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._serve(generation), context=generation.context)
        self._tasks[generation] = task
        task.add_done_callback(lambda _: self._ended(generation))

    def _ended(self, generation: Generation) -> None:
        """Free the slot and give it to the next in line."""
        del self._tasks[generation]
        while self._waiting and len(self._tasks) < self.max_batch:
            self._begin(self._waiting.popleft())
        self._renumber()

    def _cancelled(self, generation: Generation) -> None:
        if generation in self._waiting:
            self._waiting.remove(generation)
            generation._finish("cancelled")
            self._renumber()
        elif (task := self._tasks.get(generation)) is not None:
            task.cancel()

    def _renumber(self) -> None:
        for place, generation in enumerate(self._waiting, start=1):
            generation._position = place

    # ---- one request -----------------------------------------------------------------------
    async def _serve(self, generation: Generation) -> None:
        """Stream one answer to its end, telling the asker how it ended; never raises but
        cancellation."""
        request_id = generation.request.request_id
        try:
            reason = await self._answer(generation)
        except asyncio.CancelledError:
            generation._finish("cancelled")  # a no-op when close() failed it first
            log.info("request %s cancelled", request_id)
            raise
        except EngineError as exc:
            log.warning("request %s failed: %s%s", request_id, exc, _cause(exc))
            generation._finish("error", exc)
            return
        except Exception as exc:  # a bug here must not leave the asker waiting
            log.exception("request %s failed", request_id)
            generation._finish("error", EngineError(mask_urls(f"Generation failed: {exc}")))
            return
        generation._finish(reason)
        stats = generation.stats
        log.info(
            "request %s: %s, %d tokens, first after %.2f s, %.2f s in all",
            request_id,
            reason,
            stats.completion_tokens,
            stats.time_to_first_token or 0.0,
            (stats.finished_at or 0.0) - stats.submitted_at,
        )

    async def _answer(self, generation: Generation) -> FinishReason:
        """The first request and, when its thinking used the budget, the one continuing it."""
        sampling = generation.request.sampling
        max_new = sampling.max_new_tokens
        budget = sampling.thinking_budget if sampling.thinking_budget < max_new else 0
        plain = _Turn(None, "", max_new, budget if self.continues else 0)
        prefilled = self.prefill_thinking and self.continues
        first = _Turn(PREFILL, PREFILL, max_new, budget) if prefilled else plain
        try:
            ending = await self._with_retries(generation, first)
        except ModelServerError as exc:
            if first is plain or exc.status not in _NO_CONTINUING:
                raise
            plain.budget = 0
            ending = await self._with_retries(generation, plain)
            self._refused(exc)  # the same question, not continued, was taken
        if ending != "capped":
            return ending
        left = max_new - generation.stats.completion_tokens
        rest = _Turn(generation.text + FORCED_FINAL, FORCED_FINAL, left, caps=True)
        try:
            ending = await self._with_retries(generation, rest)
        except ModelServerError as exc:
            if exc.status not in _NO_CONTINUING:
                raise
            self._refused(exc)
            return "length"  # the thinking stopped at its budget, and no answer can follow
        assert ending != "capped"
        return ending

    def _refused(self, exc: ModelServerError) -> None:
        """Note once that the server does not continue an assistant message."""
        if self.continues:
            self.continues = False
            log.warning(
                "%s From now on answers start without a written Thinking header and their "
                "thinking is not capped (HUATUO_PREFILL_THINKING, HUATUO_THINKING_BUDGET need a "
                "server that takes continue_final_message, such as vLLM or SGLang).",
                exc,
            )

    async def _with_retries(self, generation: Generation, turn: _Turn) -> Ending:
        turn.start = len(generation.text)
        attempt = 0
        while True:
            try:
                return await self._stream(generation, turn)
            except ModelServerError as exc:
                attempt += 1
                sent = len(generation.text) > turn.start
                if not exc.retryable or sent or attempt > self.retries:
                    raise
                delay = self.backoff * 2 ** (attempt - 1)
                if exc.retry_after is not None:
                    delay = exc.retry_after
                delay = min(delay, _MAX_RETRY_DELAY)
                log.warning(
                    "request %s: %s%s Retry %d of %d in %.1f s.",
                    generation.request.request_id,
                    exc,
                    _cause(exc),
                    attempt,
                    self.retries,
                    delay,
                )
                await asyncio.sleep(delay)

    def _body(self, request: GenerationRequest, turn: _Turn) -> dict[str, Any]:
        sampling = request.sampling
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        body = {
            "model": self.model_name,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": turn.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if turn.assistant is not None:
            messages.append({"role": "assistant", "content": turn.assistant})
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        return body

    async def _stream(self, generation: Generation, turn: _Turn) -> Ending:
        """One attempt: POST the request and stream the answer into the Generation."""
        assert self._session is not None
        request = generation.request
        try:
            async with self._session.post(
                self.url / "chat" / "completions",
                json=self._body(request, turn),
                headers={"X-Request-ID": request.request_id},
            ) as response:
                if response.status != 200:
                    raise await _status_error(response, self.server)
                try:
                    return await self._read(generation, response, turn)
                except BaseException:
                    response.close()  # drop the connection: the server stops generating
                    raise
        except aiohttp.ClientConnectorError as exc:
            raise _unreachable(self.server, exc) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise ModelServerError(
                f"The model server at {self.server} is not reachable (no connection within "
                f"{self.connect_timeout:g} s).",
                retryable=True,
            ) from exc
        except aiohttp.SocketTimeoutError as exc:
            raise ModelServerError(
                f"The model server at {self.server} sent nothing for {self.read_timeout:g} s."
            ) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise self._lost(generation, turn) from exc

    def _lost(self, generation: Generation, turn: _Turn) -> ModelServerError:
        """The connection broke after the request went out (the log has the details)."""
        if len(generation.text) > turn.start:
            return ModelServerError(
                f"The model server at {self.server} stopped in the middle of the answer "
                "(the connection was lost)."
            )
        return ModelServerError(
            f"The model server at {self.server} closed the connection before answering.",
            retryable=True,
        )

    def _event(self, data: str) -> dict[str, Any]:
        """One chunk of the stream; raises ModelServerError for garbage or an error event."""
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise ModelServerError(
                f"The model server at {self.server} sent something that is not JSON."
            ) from exc
        if error := event.get("error"):
            message = error.get("message", error) if isinstance(error, dict) else error
            raise ModelServerError(f"The model server at {self.server} failed: {message}")
        return event

    async def _read(
        self, generation: Generation, response: aiohttp.ClientResponse, turn: _Turn
    ) -> Ending:
        """Emit each content delta; take token counts from `usage` when the server sends it.

        After the finish_reason, wait at most `_AFTER_FINISH` s for the rest: the answer is whole.
        "capped": the turn's budget of deltas is used and the model is still thinking.
        """
        stats = generation.stats
        finish: FinishReason | None = None
        chunks, counted, before = 0, False, stats.completion_tokens
        try:
            async with asyncio.timeout(None) as tail:
                async for data in _sse_data(response.content):
                    if data.strip() == "[DONE]":
                        return finish or "stop"
                    event = self._event(data)
                    if usage := event.get("usage"):
                        if not turn.caps:  # a continuation's prompt holds the thinking
                            stats.prompt_tokens = usage.get("prompt_tokens") or stats.prompt_tokens
                        stats.completion_tokens = before + (
                            usage.get("completion_tokens") or chunks
                        )
                        counted = True
                    for choice in event.get("choices") or ():
                        if text := (choice.get("delta") or {}).get("content"):
                            if not chunks:
                                generation._emit(turn.lead, generated=False)
                                stats.thinking_capped |= turn.caps
                            chunks += 1
                            if not counted:
                                stats.completion_tokens = before + chunks
                            generation._emit(text)
                            if chunks == turn.budget and still_thinking(generation.text):
                                response.close()  # the server stops generating this turn
                                return "capped"
                        if (reason := choice.get("finish_reason")) and finish is None:
                            finish = "length" if reason == "length" else "stop"
                            tail.reschedule(asyncio.get_running_loop().time() + _AFTER_FINISH)
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            if finish is None:
                raise
            log.debug(
                "request %s: finished (%s); after that the stream ended badly: %r",
                generation.request.request_id,
                finish,
                exc,
            )
            response.close()  # the server may still hold it open
            return finish
        if finish is None:  # the stream ended without saying why: the server went away
            raise self._lost(generation, turn)
        return finish
