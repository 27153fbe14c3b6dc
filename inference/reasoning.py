"""Split HuatuoGPT-o1 output into its thinking and its final response (design.md §5).

The model writes ``## Thinking`` then ``## Final Response``. Real outputs bend that format:
leaked template text before the first header, ``##Thinking`` without a space, a second Final
Response header after more reasoning, output cut off by the token limit, or no headers at all
(other models). The rules:

- a header is 1-4 ``#``, optional spaces, ``Thinking`` or ``Final Response`` in any case, an
  optional colon, then the end of its line;
- the answer follows the *last* Final Response header; everything between the first Thinking header
  before it and that header is thinking, earlier Final Response headers cut out (text before the
  Thinking header is dropped as leakage);
- no Thinking header but a Final Response header: everything before it is thinking;
- a Thinking header and no Final Response header: no answer, all of it is thinking, incomplete;
- no headers: the whole text is the answer, incomplete only when cut off by length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_TAIL = r"[ \t]*:?[ \t]*(?=\r?\n|\Z)"
THINKING_HEADER = re.compile(r"#{1,4}[ \t]*thinking" + _TAIL, re.IGNORECASE)
FINAL_HEADER = re.compile(r"#{1,4}[ \t]*final[ \t]+response" + _TAIL, re.IGNORECASE)

Phase = Literal["start", "thinking", "answer"]


@dataclass(frozen=True)
class Reasoning:
    """One parsed output: ``complete`` is False when the final answer is missing or was cut off."""

    thinking: str
    answer: str
    complete: bool


def _assemble(
    text: str,
    thinking: tuple[int, int] | None,
    finals: list[tuple[int, int]],
    truncated: bool,
) -> Reasoning:
    """Build the result from the first Thinking header span and every Final Response header span."""
    if not finals:
        if thinking is None:
            answer = text.strip()
            return Reasoning(thinking="", answer=answer, complete=bool(answer) and not truncated)
        return Reasoning(thinking=text[thinking[1] :].strip(), answer="", complete=False)
    last_start, last_end = finals[-1]
    start = thinking[1] if thinking is not None and thinking[0] < last_start else 0
    pieces, pos = [], start
    for header_start, header_end in finals[
        :-1
    ]:  # earlier Final headers: reasoning went on after them
        if header_start >= start:
            pieces.append(text[pos:header_start])
            pos = header_end
    pieces.append(text[pos:last_start])
    answer = text[last_end:].strip()
    return Reasoning(
        thinking="".join(pieces).strip(), answer=answer, complete=bool(answer) and not truncated
    )


def split_reasoning(text: str, truncated: bool = False) -> Reasoning:
    """Parse a whole output; ``truncated`` means generation stopped at the token limit."""
    thinking = THINKING_HEADER.search(text)
    finals = [m.span() for m in FINAL_HEADER.finditer(text)]
    return _assemble(text, thinking.span() if thinking else None, finals, truncated)


class ReasoningStream:
    """Incremental parser: feed chunks as they are generated, read the phase and a live snapshot.

    Each line is scanned once, when its newline arrives; the unfinished last line is scanned only
    when a snapshot or the result is asked for. ``result()`` equals ``split_reasoning`` of the whole
    text for any chunking.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._text = ""
        self._scanned = 0  # everything before this offset is complete lines already scanned
        self._thinking: tuple[int, int] | None = None  # first Thinking header span
        self._finals: list[tuple[int, int]] = []  # every Final Response header span

    @property
    def text(self) -> str:
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text

    def feed(self, chunk: str) -> None:
        if not chunk:
            return
        self._parts.append(chunk)
        if "\n" not in chunk:
            return
        text = self.text
        end = text.rfind("\n") + 1
        self._thinking, self._finals = self._scan(text, self._scanned, end)
        self._scanned = end

    def _scan(
        self, text: str, start: int, end: int
    ) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
        """Header spans after scanning the lines in ``text[start:end]`` on top of what is known."""
        thinking, finals = self._thinking, self._finals
        line_start = start
        while line_start < end:
            newline = text.find("\n", line_start, end)
            line_end = end if newline < 0 else newline + 1
            line = text[line_start:line_end]
            if thinking is None and (m := THINKING_HEADER.search(line)):
                thinking = (line_start + m.start(), line_start + m.end())
            if m := FINAL_HEADER.search(line):
                finals = [*finals, (line_start + m.start(), line_start + m.end())]
            line_start = line_end
        return thinking, finals

    @property
    def phase(self) -> Phase:
        """Where generation is now: before any header, in the thinking, or in the final response."""
        thinking, finals = self._scan(self.text, self._scanned, len(self.text))
        if finals:
            return "answer"
        return "thinking" if thinking is not None else "start"

    def snapshot(self) -> Reasoning:
        """The result so far, for showing while generation goes on: an unfinished last line that
        may still become a header is held back, so no raw header shows, whatever the chunks."""
        text = self.text
        hold = text.find("#", text.rfind("\n") + 1)  # a header may be growing from here
        if hold >= 0:
            text = text[:hold]
        thinking, finals = self._scan(text, self._scanned, len(text))
        return _assemble(text, thinking, finals, truncated=False)

    def result(self, truncated: bool = False) -> Reasoning:
        text = self.text
        thinking, finals = self._scan(text, self._scanned, len(text))
        return _assemble(text, thinking, finals, truncated)
