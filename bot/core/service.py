"""One question through admission, inference, progress and delivery (design.md §3)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal, Protocol

from bot import logs
from bot.core import texts
from bot.core.adapter import Reply
from bot.core.admission import Admission, Refusal
from bot.core.events import Answer, Progress, Question
from bot.core.redaction import redact
from bot.core.safety import emergency_notice
from bot.core.stopping import Running, Stops
from inference.engine import (
    EngineError,
    Generation,
    GenerationRequest,
    GenerationStats,
    Message,
    SamplingParams,
)
from inference.prompts import build_messages
from inference.reasoning import ReasoningStream

log = logging.getLogger(__name__)

Outcome = Literal["answered", "stopped", "refused", "failed", "timeout"]
START_HOLD = 200  # characters without any header before they are shown as the answer


class Engine(Protocol):
    model_name: str

    def submit(self, request: GenerationRequest) -> Generation: ...


class Metrics(Protocol):
    """Where the service reports outcomes and errors (bot/metrics.py; None: nowhere)."""

    def observe(
        self, question: Question, outcome: Outcome, stats: GenerationStats | None
    ) -> None: ...

    def error(self, kind: str) -> None: ...

    def refused(self, question: Question, kind: str) -> None: ...


class AnswerService:
    """Takes a Question to its Reply; never leaves the asker without a message."""

    def __init__(
        self,
        engine: Engine,
        sampling: SamplingParams,
        *,
        system_prompt: str | None = None,
        max_question_chars: int = 8000,
        answer_timeout: float = 600.0,
        progress_interval: float = 0.25,
        redact_phi: bool = False,
        metrics: Metrics | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.engine = engine
        self.sampling = sampling
        self.system_prompt = system_prompt
        self.max_question_chars = max_question_chars
        self.answer_timeout = answer_timeout
        self.progress_interval = progress_interval
        self.redact_phi = redact_phi  # identifiers out of the text sent to the engine
        self.metrics = metrics
        self.admission = admission or Admission()  # by default: anyone, one question at a time
        self.admitting = True  # False once shutdown begins: new askers are told to come back
        self.stops = Stops(self.admission)  # the answers being written, for their Stop button

    def _as_asked(self, question: Question) -> Refusal | None:
        """Why this question cannot be taken as asked, or now (shutting down), or None."""
        if not self.admitting:
            return Refusal("restarting", texts.RESTARTING)
        text = question.text.strip()
        if not text:
            return Refusal("empty", texts.EMPTY_QUESTION)
        if len(text) > self.max_question_chars:
            return Refusal("too long", texts.too_long(len(text), self.max_question_chars))
        return None

    def screen(self, question: Question) -> Refusal | None:
        """Why `question` would be refused now (counted as a refusal), without taking it: for a
        platform to refuse privately before posting anything. An emergency notice heads it."""
        refusal = self._as_asked(question) or self.admission.precheck(question)
        if refusal is None:
            return None
        self._count(question, refusal)
        if (notice := emergency_notice(question.text)) is not None:  # first, even so
            log.info("request %s: emergency notice", question.request_id)
            return Refusal(refusal.kind, f"{notice}\n\n{refusal.message}")
        return refusal

    async def answer(self, question: Question, reply: Reply) -> Outcome:
        """Answer, refuse or fail the question through `reply`; returns (and counts) the outcome.

        An emergency notice comes first, even when the question is then refused.
        """
        token = logs.request_id.set(question.request_id)  # on every log record meanwhile
        try:
            return await self._answer(question, reply)
        finally:
            logs.request_id.reset(token)

    async def _answer(self, question: Question, reply: Reply) -> Outcome:
        if (notice := emergency_notice(question.text)) is not None:
            await self._safe_notice(reply, notice, question.request_id)
        if (refusal := self._as_asked(question)) is not None:
            return await self._refuse(question, reply, refusal)
        with self.admission.admit(question) as refusal:
            if refusal is not None:
                return await self._refuse(question, reply, refusal)
            return await self._generate(question, reply)

    async def _refuse(self, question: Question, reply: Reply, refusal: Refusal) -> Outcome:
        """Tell the asker why, and count it."""
        self._count(question, refusal)
        await reply.fail(refusal.message)
        return "refused"

    def _count(self, question: Question, refusal: Refusal) -> None:
        """Log and count a refusal."""
        log.info("request %s refused: %s", question.request_id, refusal.kind)
        if self.metrics is not None:
            self.metrics.refused(question, refusal.kind)
        self._observed(question, "refused", None)

    async def drain(self, timeout: float) -> bool:
        """Stop admitting; wait up to `timeout` s for answers in flight. True once none are left."""
        self.admitting = False
        deadline = time.monotonic() + timeout
        while self.admission.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self.admission.in_flight

    async def _generate(self, question: Question, reply: Reply) -> Outcome:
        request = GenerationRequest(self._messages(question), self.sampling, question.request_id)
        try:
            generation = self.engine.submit(request)
        except EngineError as exc:  # the asker is told in plain words, the log has the details
            log.warning("request %s not taken: %s", question.request_id, exc)
            self._error(exc)
            message = texts.engine_failed(exc, question.request_id)
            return await self._refuse(question, reply, Refusal(type(exc).__name__, message))
        try:
            with self.stops.running(question, generation) as running:
                outcome = await self._follow(question, generation, reply, running)
        except Exception as exc:  # the platform failed us (e.g. posting the answer): counted
            if self.metrics is not None:
                self.metrics.error(type(exc).__name__)
            self._observed(question, "failed", generation.stats)
            raise
        finally:
            generation.cancel()  # no-op once finished; frees the slot if we left early
        return self._observed(question, outcome, generation.stats)

    def _observed(
        self, question: Question, outcome: Outcome, stats: GenerationStats | None
    ) -> Outcome:
        """Report the outcome to `metrics`, if any, and return it."""
        if self.metrics is not None:
            self.metrics.observe(question, outcome, stats)
        return outcome

    def _error(self, exc: EngineError) -> None:
        """Count an engine error by its class name."""
        if self.metrics is not None:
            self.metrics.error(type(exc).__name__)

    def _messages(self, question: Question) -> tuple[Message, ...]:
        """The chat messages for the engine, with identifiers redacted when `redact_phi` is on."""
        text, history = question.text.strip(), question.history
        if self.redact_phi:
            text = redact(text)
            history = tuple(Message(m.role, redact(m.content)) for m in history)
        return build_messages(text, history, self.system_prompt)

    async def _follow(
        self, question: Question, generation: Generation, reply: Reply, running: Running
    ) -> Outcome:
        started = time.monotonic()
        stream = ReasoningStream()
        last_progress: Progress | None = None
        last_sent = 0.0
        if generation.queue_position is not None:  # tell a waiting asker their place at once
            last_progress, last_sent = self._progress(generation, stream, 0.0), started
            await self._safe_progress(reply, last_progress, question.request_id)
        try:
            async for chunk in generation.chunks_or_ticks(self.progress_interval):
                now = time.monotonic()
                if running.stopped_by is not None:  # also when still waiting in line
                    break
                if now - started > self.answer_timeout:
                    log.info("request %s timed out", question.request_id)
                    await reply.fail(texts.TIMEOUT)
                    return "timeout"
                if chunk:
                    stream.feed(chunk)
                if now - last_sent < self.progress_interval:
                    continue
                progress = self._progress(generation, stream, now - started)
                if progress != last_progress:
                    await self._safe_progress(reply, progress, question.request_id)
                    last_progress, last_sent = progress, now
        except EngineError as exc:
            log.warning("request %s failed: %s", question.request_id, exc)
            self._error(exc)
            await reply.fail(texts.engine_failed(exc, question.request_id))
            return "failed"
        stopped = running.stopped_by is not None
        truncated = generation.finish_reason == "length" and not stopped
        result = stream.result(truncated=truncated)
        stats = generation.stats
        started_at = stats.started_at
        answer = Answer(
            answer=result.answer,
            thinking=result.thinking,
            complete=result.complete and not stopped,
            truncated=truncated,
            model=self.engine.model_name,
            request_id=question.request_id,
            tokens=stats.completion_tokens,
            seconds=time.monotonic() - started,
            prompt_tokens=stats.prompt_tokens,
            queued_seconds=None if started_at is None else started_at - stats.submitted_at,
            first_token_seconds=stats.time_to_first_token,
            thinking_capped=stats.thinking_capped,
            stopped=stopped,
        )
        log.info(
            "request %s %s: %d tokens in %.1f s, complete=%s",
            question.request_id,
            "stopped" if stopped else "answered",
            answer.tokens,
            answer.seconds,
            answer.complete,
        )
        await reply.deliver(answer)
        return "stopped" if stopped else "answered"

    @staticmethod
    def _progress(generation: Generation, stream: ReasoningStream, elapsed: float) -> Progress:
        if generation.queue_position is not None:
            return Progress("waiting", position=generation.queue_position)
        phase, so_far = stream.phase, stream.snapshot()
        answer = so_far.answer if phase != "start" or len(so_far.answer) >= START_HOLD else ""
        state = "answering" if phase == "answer" or answer else "thinking"
        tokens = generation.stats.completion_tokens
        return Progress(
            state, tokens=tokens, elapsed=round(elapsed), thinking=so_far.thinking, answer=answer
        )

    @staticmethod
    async def _safe_notice(reply: Reply, notice: str, request_id: str) -> None:
        """An emergency notice first; if it cannot be shown, the answer still comes."""
        log.info("request %s: emergency notice", request_id)
        try:
            await reply.notice(notice)
        except Exception:
            log.warning("request %s: emergency notice failed", request_id, exc_info=True)

    @staticmethod
    async def _safe_progress(reply: Reply, progress: Progress, request_id: str) -> None:
        """A failed placeholder edit must not cost the asker the answer."""
        try:
            await reply.progress(progress)
        except Exception:
            log.warning("request %s: progress update failed", request_id, exc_info=True)
