"""Prometheus metrics for `GET /metrics`: questions, the engine's queue, timings and errors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.core.events import Question
from bot.core.service import Outcome
from inference.engine import GenerationStats

SECONDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
RATES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)


class EngineLoad(Protocol):
    """What the gauges read from the engine at scrape time."""

    @property
    def waiting(self) -> int: ...

    @property
    def running(self) -> int: ...


class Counted(Protocol):
    """An outbox: its name (the platform) and its counts of what its writes met."""

    name: str
    counts: Mapping[str, int]


class DeliveryCollector(Collector):
    """`huatuo_delivery_events_total`, read from the platforms' outboxes at scrape time."""

    def __init__(self, outboxes: Sequence[Counted]) -> None:
        self.outboxes = outboxes

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "huatuo_delivery_events",
            "What the platforms' writes met: rate_limited, retried, found, given_up, "
            "progress_dropped.",
            labels=["platform", "event"],
        )
        for outbox in self.outboxes:
            for event, count in sorted(outbox.counts.items()):
                family.add_metric([outbox.name, event], count)
        yield family


class FeedbackCounts(Protocol):
    """The feedback store's writes waiting for the database, and those lost."""

    @property
    def pending(self) -> int: ...

    @property
    def lost(self) -> int: ...


class FeedbackCollector(Collector):
    """`huatuo_feedback_rows_pending` and `huatuo_feedback_rows_lost_total`, read at scrape time."""

    def __init__(self, store: FeedbackCounts) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "huatuo_feedback_rows_pending",
            "Feedback writes (an answer, a rating change) kept in memory until the database "
            "takes them.",
            value=self.store.pending,
        )
        yield CounterMetricFamily(
            "huatuo_feedback_rows_lost",
            "Feedback writes given up: too many kept, refused for good, or kept at shutdown.",
            value=self.store.lost,
        )


class Metrics:
    """The metric objects in a registry of their own; the AnswerService reports into them."""

    def __init__(self, engine: EngineLoad) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.questions = Counter(
            "huatuo_questions", "Questions by platform and outcome.", ["platform", "outcome"],
            registry=reg,
        )  # fmt: skip
        self.errors = Counter("huatuo_errors", "Errors by kind.", ["kind"], registry=reg)
        self.refusals = Counter(
            "huatuo_refusals", "Refused questions by platform and reason.", ["platform", "reason"],
            registry=reg,
        )  # fmt: skip
        waiting = Gauge("huatuo_queue_waiting", "Requests waiting for a slot.", registry=reg)
        waiting.set_function(lambda: engine.waiting)
        running = Gauge("huatuo_requests_running", "Requests being generated.", registry=reg)
        running.set_function(lambda: engine.running)
        self.time_to_first_token = Histogram(
            "huatuo_time_to_first_token_seconds", "Submission to first token, answered questions.",
            buckets=SECONDS, registry=reg,
        )  # fmt: skip
        self.generation = Histogram(
            "huatuo_generation_seconds", "Start of generation to its end, answered questions.",
            buckets=SECONDS, registry=reg,
        )  # fmt: skip
        self.thinking_capped = Counter(
            "huatuo_thinking_capped", "Answered questions whose thinking reached "
            "HUATUO_THINKING_BUDGET and was ended for the model.", ["platform"], registry=reg,
        )  # fmt: skip
        self.tokens_per_second = Histogram(
            "huatuo_tokens_per_second", "Decoding speed after the first token, answered questions.",
            buckets=RATES, registry=reg,
        )  # fmt: skip

    def watch_delivery(self, outboxes: Sequence[Counted]) -> None:
        """Export the counts of these outboxes (one per platform)."""
        self.registry.register(DeliveryCollector(outboxes))

    def watch_feedback(self, store: FeedbackCounts) -> None:
        """Export the feedback store's writes pending and lost."""
        self.registry.register(FeedbackCollector(store))

    def observe(self, question: Question, outcome: Outcome, stats: GenerationStats | None) -> None:
        """Count one finished question; an answered one also adds its timings."""
        self.questions.labels(question.conversation.platform, outcome).inc()
        if outcome != "answered" or stats is None:
            return
        if stats.thinking_capped:
            self.thinking_capped.labels(question.conversation.platform).inc()
        if (ttft := stats.time_to_first_token) is not None:
            self.time_to_first_token.observe(ttft)
        if stats.started_at is not None and stats.finished_at is not None:
            self.generation.observe(stats.finished_at - stats.started_at)
        if (rate := stats.tokens_per_second) is not None:
            self.tokens_per_second.observe(rate)

    def refused(self, question: Question, reason: str) -> None:
        """Count one refusal by its reason ("rate limit", "channel", "QueueFull", ...)."""
        self.refusals.labels(question.conversation.platform, reason).inc()

    def error(self, kind: str) -> None:
        """Count one error, e.g. an engine error by its class name."""
        self.errors.labels(kind).inc()
