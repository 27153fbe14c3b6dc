"""One way to wait in tests: poll a check until it holds."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    check: Callable[[], T | Awaitable[T]], timeout: float = 5.0, every: float = 0.01
) -> T:
    """Call `check` (plain or async) every `every` seconds until it returns something truthy, and
    return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := await _result(check())):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)
    return value


async def _result(value: T | Awaitable[T]) -> T:
    return await value if inspect.isawaitable(value) else value  # type: ignore[return-value]
