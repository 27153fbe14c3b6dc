"""The core delivery layer on its own: budgets by priority, retries, no doubles, coalesced progress.

The platform here is a list of calls and a script of failures; the Slack and Discord tests run
the same layer against fake servers that say no.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import pytest

from bot.core.budget import Budget, Priority, Rate
from bot.core.outbox import (
    Failure,
    Gone,
    Outbox,
    RateLimited,
    Refused,
    Transient,
    Undeliverable,
    Withdrawn,
    Write,
)
from bot.slack.limits import retry_after
from tests.harness.polling import until


class Said(Exception):
    """What the fake platform answered instead of doing the write."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def classify(exc: BaseException) -> Failure:
    return exc.failure if isinstance(exc, Said) else Refused(repr(exc))


class Platform:
    """Records applied writes; `script` says how the next attempts fail (and whether applied)."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.attempts: list[str] = []
        self.script: list[tuple[Failure, bool]] = []

    def write(self, label: str, bucket: Hashable = "b", findable: bool = False) -> Write[str]:
        async def attempt() -> str:
            self.attempts.append(label)
            if self.script:
                failure, applied = self.script.pop(0)
                if applied:
                    self.applied.append(label)
                raise Said(failure)
            self.applied.append(label)
            return label

        async def landed() -> str | None:
            return label if label in self.applied else None

        return Write(label, attempt, (bucket,), landed if findable else None)


def outbox(per_second: float = 1000.0, burst: float = 1000.0) -> Outbox:
    budget = Budget(lambda key: Rate(per_second, burst) if key == "b" else None)
    return Outbox("test", budget, classify, backoff=0.01, give_up_after=5.0, look_again=0.01)


async def test_a_rate_limit_is_waited_out_then_the_write_lands() -> None:
    platform, box = Platform(), outbox()
    platform.script = [(RateLimited(0.2), False)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await box.send(platform.write("answer")) == "answer"
    assert loop.time() - started >= 0.2  # not before Slack said
    assert platform.applied == ["answer"] and box.counts["rate_limited"] == 1


async def test_a_lost_response_is_looked_for_instead_of_posted_twice() -> None:
    platform, box = Platform(), outbox()
    platform.script = [(Transient("connection dropped", ambiguous=True), True)]
    assert await box.send(platform.write("answer", findable=True)) == "answer"
    assert platform.applied == ["answer"] and platform.attempts == ["answer"]
    assert box.counts["found"] == 1


async def test_a_failure_that_was_not_applied_is_retried() -> None:
    platform, box = Platform(), outbox()
    platform.script = [(Transient("503", ambiguous=True), False)] * 2
    assert await box.send(platform.write("answer", findable=True)) == "answer"
    assert platform.applied == ["answer"] and len(platform.attempts) == 3


@pytest.mark.parametrize("failure", [Gone("message_not_found"), Refused("msg_too_long")])
async def test_what_can_never_land_is_not_retried(failure: Failure) -> None:
    platform, box = Platform(), outbox()
    platform.script = [(failure, False)]
    with pytest.raises(Undeliverable) as raised:
        await box.send(platform.write("answer"))
    assert raised.value.gone == isinstance(failure, Gone)
    assert platform.attempts == ["answer"]


async def test_a_transient_failure_is_given_up_after_the_patience() -> None:
    platform, box = Platform(), outbox()
    platform.script = [(Transient("503"), False)] * 1000
    with pytest.raises(Undeliverable):
        await box.send(platform.write("answer"), patience=0.1)
    assert box.counts["given_up"] == 1


async def test_answers_take_the_budget_before_progress_and_placeholders() -> None:
    platform, box = Platform(), outbox(per_second=20.0, burst=1.0)
    await box.send(platform.write("first"))  # the bucket is empty now
    waiting = [
        asyncio.create_task(box.send(platform.write(f"placeholder {n}"), Priority.PLACEHOLDER))
        for n in range(3)
    ]
    box.offer("reply", platform.write("progress"), min_interval=0.0)
    await asyncio.sleep(0)
    answer = asyncio.create_task(box.send(platform.write("answer")))
    await asyncio.gather(answer, *waiting)
    await until(lambda: "progress" in platform.applied, 5)
    assert platform.applied[:2] == ["first", "answer"]
    assert platform.applied.index("progress") > platform.applied.index("placeholder 2")


async def test_progress_is_coalesced_and_dropped_when_the_answer_comes() -> None:
    platform, box = Platform(), outbox(per_second=10.0, burst=1.0)
    for n in range(20):
        box.offer("reply", platform.write(f"progress {n}"), min_interval=0.05)
        await asyncio.sleep(0.01)
    await box.settle("reply")
    shown = [label for label in platform.applied if label.startswith("progress")]
    assert 1 <= len(shown) < 10  # the budget and the interval, not one edit per offer
    assert shown[0] == "progress 0"
    count = len(platform.applied)
    await asyncio.sleep(0.2)
    assert len(platform.applied) == count  # nothing after settle


async def test_a_withdrawn_write_waiting_for_budget_is_never_made() -> None:
    platform, box = Platform(), outbox(per_second=0.5, burst=1.0)
    await box.send(platform.write("first"))
    write = platform.write("placeholder")
    task = asyncio.create_task(box.send(write, Priority.PLACEHOLDER))
    await asyncio.sleep(0.05)
    write.withdraw()
    with pytest.raises(Withdrawn):
        await task
    assert platform.attempts == ["first"]


async def test_a_withdrawn_write_whose_response_was_lost_is_found() -> None:
    """A placeholder withdrawn after an ambiguous failure: if it landed, the reply must get it
    (to edit it into the answer), or it would stay behind as a stale "Thinking…"."""
    platform, box = Platform(), outbox()
    platform.script = [(Transient("connection dropped", ambiguous=True), True)]
    write = platform.write("placeholder", findable=True)
    box.backoff = 0.5
    task = asyncio.create_task(box.send(write, Priority.PLACEHOLDER))
    await asyncio.sleep(0.05)  # the attempt failed; the outbox waits before looking
    write.withdraw()
    assert await task == "placeholder"
    assert platform.attempts == ["placeholder"]


async def test_settling_between_two_progress_edits_is_not_taken_for_a_stuck_edit() -> None:
    platform, box = Platform(), outbox()
    box.offer("reply", platform.write("progress 1"), min_interval=5.0)
    await until(lambda: "progress 1" in platform.applied, 5)
    box.offer("reply", platform.write("progress 2"), min_interval=5.0)  # waits out the interval
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await box.settle("reply") is False  # so the answer goes in the placeholder
    assert loop.time() - started < box.settle_timeout
    assert platform.applied == ["progress 1"]
    assert not (box._runners or box._latest or box._current or box._last_progress)


async def test_a_rate_limit_on_an_unlimited_route_waits_and_keeps_to_the_patience() -> None:
    platform, box = Platform(), outbox()
    platform.script = [(RateLimited(0.05), False)] * 1000
    with pytest.raises(Undeliverable):
        await box.send(platform.write("history", bucket="not limited"), patience=0.3)
    assert 2 <= len(platform.attempts) <= 10  # waited each time, then gave up


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [
        ("20", 20.0, 20.0),
        ("Sun, 06 Dec 2099 00:00:00 GMT", 1e9, float("inf")),  # far ahead: the outbox caps it
        ("Sun, 06 Dec 2000 00:00:00 -0000", 0.0, 0.0),  # past, read as UTC
        ("soon", 5.0, 5.0),
    ],
)
def test_slack_retry_after_in_its_forms(header: str, low: float, high: float) -> None:
    assert low <= retry_after({"Retry-After": header}) <= high


async def test_a_write_with_no_response_in_time_is_looked_for_before_it_is_made_again() -> None:
    platform, box = Platform(), outbox()
    box.attempt_timeout = 0.1
    hung = asyncio.Event()

    async def attempt() -> str:  # applied at once, then no response
        platform.attempts.append("answer")
        platform.applied.append("answer")
        await hung.wait()
        return "answer"

    async def landed() -> str | None:
        return "answer" if "answer" in platform.applied else None

    assert await box.send(Write("answer", attempt, ("b",), landed)) == "answer"
    assert platform.attempts == ["answer"] and box.counts["found"] == 1
