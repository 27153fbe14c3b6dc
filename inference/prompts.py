"""Chat messages from a question and its thread history, trimmed to fit the context window."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from inference.engine import Message, PromptTooLong


def build_messages(
    question: str, history: Sequence[Message] = (), system_prompt: str | None = None
) -> tuple[Message, ...]:
    """System message only when configured (the model was trained without one), then the thread.

    `history` holds earlier user questions and the bot's final answers, never its thinking.
    """
    system = (Message("system", system_prompt),) if system_prompt else ()
    turns = tuple(turn for turn in history if turn.role in ("user", "assistant") and turn.content)
    return (*system, *turns, Message("user", question))


def fit_to_context(
    messages: Sequence[Message], count_tokens: Callable[[Sequence[Message]], int], budget: int
) -> tuple[list[Message], int]:
    """Drop the oldest history turns until the prompt takes at most `budget` tokens.

    Returns the kept messages and their token count. The system message and the question are
    never dropped; if they alone do not fit, the question is too long for this model.
    """
    kept = list(messages)
    while True:
        tokens = count_tokens(kept)
        if tokens <= budget:
            return kept, tokens
        first_turn = 1 if kept[0].role == "system" else 0
        if len(kept) - first_turn <= 1:
            raise PromptTooLong(
                f"The question is too long for this model ({tokens} tokens; at most {budget} fit "
                "with room for the answer). Please shorten it."
            )
        drop = 2 if len(kept) - first_turn > 2 and kept[first_turn].role == "user" else 1
        del kept[first_turn : first_turn + drop]
