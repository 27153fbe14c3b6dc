"""Steering HuatuoGPT-o1's format: the Thinking header written for the model, and budget forcing.

`PREFILL` starts the assistant's turn, so the model is already thinking and cannot skip the
format. When the thinking has used its budget of tokens and the model has written no Final
Response header, the engine writes `FORCED_FINAL` for it and lets it go on: the answer gets the
tokens that are left. Both are emitted as ordinary text of the Generation, so every parser sees
them as if the model had written them.
"""

from __future__ import annotations

from inference.reasoning import FINAL_HEADER, THINKING_HEADER

PREFILL = "## Thinking\n\n"
FORCED_FINAL = "\n\n## Final Response\n\n"
ANSWER_ROOM = 512  # tokens the default budget leaves for the final response


def default_budget(max_new_tokens: int) -> int:
    """`max_new_tokens` less 512 for the answer, but never less than half for the thinking."""
    return max(max_new_tokens - ANSWER_ROOM, max_new_tokens // 2)


def still_thinking(text: str) -> bool:
    """`text` has a Thinking header and no Final Response header: forcing would end a thinking."""
    return THINKING_HEADER.search(text) is not None and FINAL_HEADER.search(text) is None
