"""Answers being written, by request id, and who may stop them: their asker, or an admin."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from bot.core.admission import Admission
from bot.core.events import Question
from inference.engine import Generation

log = logging.getLogger(__name__)

StopResult = Literal["stopped", "not allowed", "finished"]


@dataclass
class Running:
    """One answer being written; `stopped_by` is set once someone stopped it."""

    question: Question
    generation: Generation
    stopped_by: str | None = None


class Stops:
    """The Stop button's side of the service: which answers are running, and stopping one."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self._running: dict[str, Running] = {}

    @contextmanager
    def running(self, question: Question, generation: Generation) -> Iterator[Running]:
        """Stoppable while inside."""
        running = Running(question, generation)
        self._running[question.request_id] = running
        try:
            yield running
        finally:
            self._running.pop(question.request_id, None)

    def stop(self, request_id: str, user: str) -> StopResult:
        """Stop the answer `request_id` for `user`, if they asked it or are an admin where it was
        asked: the generation is cancelled at once, and what was written is kept."""
        running = self._running.get(request_id)
        if running is None:
            return "finished"
        question = running.question
        policy = self.admission.policy(question.conversation.platform)
        if user != question.author and not policy.is_admin(user):
            log.info("request %s: stop by %s refused (not the asker)", request_id, user)
            return "not allowed"
        if running.stopped_by is None:
            log.info("request %s: stopped by %s", request_id, user)
            running.stopped_by = user
            running.generation.cancel()
        return "stopped"
