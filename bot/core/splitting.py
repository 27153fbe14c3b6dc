"""Split long text into messages that fit a platform's limit (design.md §6).

Breaks fall between lines, preferring blank lines (paragraphs); a code block cut by a break is
closed at the end of one message and reopened at the start of the next; a single over-long line
is wrapped at a space where possible; multi-byte characters are never cut.
"""

from __future__ import annotations

from collections.abc import Callable

Measure = Callable[[str], int]
FENCE = "```"


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def _wrap(line: str, limit: int, size: Measure) -> list[str]:
    """Cut one line into parts of at most `limit`, at the last space that fits if there is one."""
    parts = []
    while size(line) > limit:
        low, high = 1, len(line)  # longest prefix that fits (size grows with length)
        while low < high:
            mid = (low + high + 1) // 2
            if size(line[:mid]) <= limit:
                low = mid
            else:
                high = mid - 1
        cut = line.rfind(" ", 0, low) + 1 or low
        parts.append(line[:cut].rstrip(" "))
        line = line[cut:]
    return [*parts, line]


def split_text(text: str, limit: int, size: Measure = len) -> list[str]:
    """Messages of at most `limit` (as measured by `size`) that together hold all of `text`."""
    text = text.strip("\n")
    if size(text) <= limit:
        return [text]
    if limit < 100:
        raise ValueError("limits under 100 leave no room to close and reopen code blocks")
    budget = limit - size("\n" + FENCE)  # room to close a code block at the end
    chunks: list[str] = []
    current: list[str] = []  # lines of the message being built
    lines = (part for line in text.split("\n") for part in _wrap(line, budget - 40, size))
    for line in lines:
        while current and size("\n".join([*current, line])) > budget:
            head, tail = _cut(current, budget)
            fence = _open_fence(head)
            chunks.append("\n".join(head).strip("\n") + ("\n" + FENCE if fence else ""))
            current = ([fence] if fence else []) + tail
        current.append(line)
    chunks.append("\n".join(current).strip("\n"))
    return [chunk for chunk in chunks if chunk.strip()]


def _cut(lines: list[str], budget: int) -> tuple[list[str], list[str]]:
    """Where to end a message: after the last paragraph past half the budget, else at the end."""
    fence, best, used = None, None, 0
    for index, line in enumerate(lines):
        used += len(line) + 1
        if line.lstrip().startswith(FENCE):
            fence = None if fence else line
        elif not line.strip() and fence is None and used >= budget // 2:
            best = index
    if best is None:
        return lines, []
    return lines[:best], lines[best + 1 :]


def _open_fence(lines: list[str]) -> str | None:
    """The line that opened a code block still open at the end of `lines`."""
    fence = None
    for line in lines:
        if line.lstrip().startswith(FENCE):
            fence = None if fence else line.strip()
    return fence
