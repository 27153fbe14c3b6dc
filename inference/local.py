"""The local transformers engine: one model, a batch of rows stepped together off the event loop.

All running requests share one `DynamicCache`, left-padded so their ends line up. A request that
arrives while others run is prefilled on its own and joins the batch at the next step (its cache
left-padded to the batch's length, or the batch's to its); a finished or cancelled row is dropped
from the cache at once, and the padding columns no row needs any more are cut off.

With `prefill_thinking`, every prompt ends with the Thinking header. A row whose thinking reaches
its budget (inference/thinking.py) is fed the forced Final Response header one token per step in
place of what it sampled, like a prompt extension going into its cache: the row stays in the
batch, and the other rows' steps are the very computations they would have been.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache, TextStreamer
from transformers.cache_utils import DynamicLayer

from inference.engine import (
    BatchEngine,
    Generation,
    GenerationRequest,
    Message,
    PromptTooLong,
    Row,
)
from inference.loading import ModelSpec, load_model
from inference.prompts import fit_to_context
from inference.thinking import FORCED_FINAL, PREFILL, still_thinking

log = logging.getLogger(__name__)


class _GrowingLayer(DynamicLayer):
    """A cache layer that appends into spare room instead of copying the whole cache every step."""

    _spare = 128  # tokens of room added whenever the buffer is full

    def __init__(self, **kwargs: Any) -> None:
        self._buffers: dict[str, torch.Tensor | None] = {"keys": None, "values": None}
        self._lengths = {"keys": 0, "values": 0}
        super().__init__(**kwargs)

    def _get(self, name: str) -> torch.Tensor | None:
        buffer = self._buffers[name]
        return None if buffer is None else buffer[..., : self._lengths[name], :]

    def _set(self, name: str, value: torch.Tensor | None) -> None:
        self._buffers[name] = value
        self._lengths[name] = value.shape[-2] if value is not None and value.dim() == 4 else 0

    keys = property(lambda self: self._get("keys"), lambda self, v: self._set("keys", v))
    values = property(lambda self: self._get("values"), lambda self, v: self._set("values", v))

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        for name, states in (("keys", key_states), ("values", value_states)):
            length, new = self._lengths[name], states.shape[-2]
            buffer = self._buffers[name]
            if buffer is None or buffer.dim() != 4 or length + new > buffer.shape[-2]:
                grown = states.new_zeros(
                    (*states.shape[:2], length + new + self._spare, states.shape[-1])
                )
                if length:
                    grown[..., :length, :] = self._get(name)
                self._buffers[name] = buffer = grown
            buffer[..., length : length + new, :] = states
            self._lengths[name] = length + new
        return self.keys, self.values  # type: ignore[return-value]


def _new_cache(config: Any) -> DynamicCache:
    """A batch cache; plain full-attention layers become growing ones (sliding windows stay)."""
    cache = DynamicCache(config=config)
    cache.layers = [
        _GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache


class _RowStreamer(TextStreamer):
    """transformers' own incremental detokenizer, sending finished text to one Generation."""

    def __init__(self, tokenizer: Any, generation: Generation) -> None:
        super().__init__(tokenizer, skip_prompt=False, skip_special_tokens=True)
        self.generation = generation

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        self.generation._emit(text)


class _LocalRow(Row):
    def __init__(self, generation: Generation, prompt_tokens: int, tokenizer: Any) -> None:
        super().__init__(generation)
        self.prompt_tokens = prompt_tokens
        self.streamer = _RowStreamer(tokenizer, generation)
        self.forcing: list[int] = []  # forced tokens still to feed, in place of sampled ones
        self.forced = 0  # forced tokens fed so far: in the cache, not counted as output
        generation.stats.prompt_tokens = prompt_tokens


class LocalEngine(BatchEngine):
    """Runs a transformers causal LM in a background thread; see the module docstring."""

    name = "local"

    def __init__(
        self,
        spec: ModelSpec,
        max_batch: int = 16,
        max_queue: int = 64,
        model: Any = None,
        tokenizer: Any = None,
        cpu_threads: int | None = None,
        prefill_thinking: bool = False,
    ) -> None:
        super().__init__(max_batch=max_batch, max_queue=max_queue)
        self.spec = spec
        self.cpu_threads = cpu_threads
        self.prefill_thinking = prefill_thinking  # start every answer with the Thinking header
        self.model_name = spec.name
        self.model, self.tokenizer = model, tokenizer
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, cache length]: 0 on left padding
        self._next: torch.Tensor | None = None  # [rows]: last sampled token, not yet in the cache

    def _load(self) -> None:
        if self.cpu_threads:  # fewer than the cores: others (busy) share the machine
            torch.set_num_threads(self.cpu_threads)
        if self.model is None:
            self.model, self.tokenizer = load_model(self.spec)
        config = self.model.config.get_text_config()
        self.context_length = int(getattr(config, "max_position_embeddings", 4096))
        eos = self.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {i for i in [*eos_ids, self.tokenizer.eos_token_id] if i is not None}
        self.pad_id = self.tokenizer.pad_token_id or next(iter(self.eos_ids), 0)
        self.device = self.model.device
        self.prefill_ids = self._text_ids(PREFILL) if self.prefill_thinking else []
        self.forced_ids = self._text_ids(FORCED_FINAL)

    def _text_ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    # ---- prompts -------------------------------------------------------------------------------
    def _encode(self, messages: Sequence[Message]) -> list[int]:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        encoded = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True)
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        return list(ids)

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """Template the messages, dropping the oldest turns so the answer still has room."""
        max_new = request.sampling.max_new_tokens
        budget = self.context_length - max_new - len(self.prefill_ids)
        if budget <= 0:
            raise PromptTooLong(
                f"max_new_tokens {max_new} leaves no room for a question in this model's "
                f"{self.context_length}-token context."
            )
        kept, _ = fit_to_context(request.messages, lambda m: len(self._encode(m)), budget)
        return self._encode(kept) + self.prefill_ids

    # ---- batch work (worker thread) ------------------------------------------------------------
    def _admit(self, generations: list[Generation]) -> None:
        prompts, admitted = [], []
        for generation in generations:
            try:
                prompts.append(self.prompt_ids(generation.request))
                admitted.append(generation)
            except PromptTooLong as exc:
                generation._finish("error", exc)
        if not admitted:
            return
        length = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (length - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts])
        cache = _new_cache(self.model.config)
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=_positions(mask).to(self.device),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
        rows = [
            _LocalRow(g, len(p), self.tokenizer) for g, p in zip(admitted, prompts, strict=True)
        ]
        if self.prefill_ids:
            for generation in admitted:
                generation._emit(PREFILL, generated=False)
        tokens = self._accept(rows, _sample(logits, [g.request.sampling for g in admitted]))
        self._join(cache, mask.to(self.device), tokens)
        self._rows.extend(rows)

    def _join(self, cache: DynamicCache, mask: torch.Tensor, tokens: torch.Tensor) -> None:
        """Add freshly prefilled rows to the running batch, left-padding to a common length."""
        if self._cache is None or self._mask is None or self._next is None:
            self._cache, self._mask, self._next = cache, mask, tokens
            return
        length = max(self._mask.shape[1], mask.shape[1])
        for old, new in zip(self._cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, length), _pad_left(new.keys, length)])
            old.values = torch.cat([_pad_left(old.values, length), _pad_left(new.values, length)])
        self._mask = torch.cat([_pad_left(self._mask, length), _pad_left(mask, length)])
        self._next = torch.cat([self._next, tokens])

    def _step(self) -> None:
        assert self._cache is not None and self._mask is not None and self._next is not None
        mask = torch.cat([self._mask, self._mask.new_ones(self._mask.shape[0], 1)], dim=1)
        with torch.inference_mode():
            logits = self.model(
                input_ids=self._next[:, None],
                attention_mask=mask,
                position_ids=mask.sum(dim=1, keepdim=True) - 1,
                cache=self._cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
        self._mask = mask
        sampled = _sample(logits, [row.generation.request.sampling for row in self._rows])
        self._next = self._accept(self._rows, sampled)  # type: ignore[arg-type]

    def _accept(self, rows: Sequence[_LocalRow], sampled: torch.Tensor) -> torch.Tensor:
        """Stream each row's new token and decide whether the row is done; returns the tokens
        to feed next (a row being fed the forced header gets its next forced token instead)."""
        tokens = sampled.tolist()
        for index, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            if row.finished is not None:
                continue
            sampling = row.generation.request.sampling
            if row.forcing:
                tokens[index] = row.forcing.pop(0)
                row.forced += 1
            elif token in self.eos_ids:
                row.finished = "stop"
            else:
                row.tokens_out += 1
                row.generation.stats.completion_tokens = row.tokens_out
                row.streamer.put(torch.tensor([token]))
                used = row.prompt_tokens + row.forced + row.tokens_out
                if row.tokens_out >= sampling.max_new_tokens or used >= self.context_length:
                    row.finished = "length"
                elif row.tokens_out == sampling.thinking_budget:
                    self._cap_thinking(row)
            if row.finished is not None:
                row.streamer.end()
        return torch.tensor(tokens, device=sampled.device)

    def _cap_thinking(self, row: _LocalRow) -> None:
        """The row's budget is spent: if it is still thinking, the forced header goes in next."""
        row.streamer.end()  # the text so far, to the last token, to look for headers in
        generation = row.generation
        if still_thinking(generation.text):
            row.forcing = list(self.forced_ids)
            generation.stats.thinking_capped = True
            generation._emit(FORCED_FINAL, generated=False)

    def _drop_rows(self, keep: list[int]) -> None:
        if not keep:
            self._cache = self._mask = self._next = None
            return
        assert self._cache is not None and self._mask is not None and self._next is not None
        index = torch.tensor(keep, device=self.device)
        mask = self._mask[index]
        start = int(mask.any(dim=0).nonzero()[0])  # padding columns no remaining row needs
        for layer in self._cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
        self._mask = mask[:, start:]
        self._next = self._next[index]

    def _reset_after_error(self) -> None:
        if not self._rows:
            self._cache = self._mask = self._next = None


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding (padding positions get 1, as transformers does)."""
    return (mask.cumsum(dim=1) - 1).masked_fill(mask == 0, 1)


def _pad_left(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Left-pad the sequence axis (the last axis of a mask, the second-last of keys and values)."""
    axis = -1 if tensor.dim() == 2 else -2
    missing = length - tensor.shape[axis]
    if missing == 0:
        return tensor
    pad = (missing, 0) if axis == -1 else (0, 0, missing, 0)
    return torch.nn.functional.pad(tensor, pad)


def _sample(logits: torch.Tensor, params: Sequence[Any]) -> torch.Tensor:
    """One token per row: greedy where temperature is 0, else temperature and nucleus sampling."""
    greedy = logits.argmax(dim=-1)
    temperatures = torch.tensor([p.temperature for p in params], device=logits.device)
    if bool((temperatures <= 0).all()):
        return greedy
    top_p = torch.tensor([p.top_p for p in params], device=logits.device)[:, None]
    probs = torch.softmax(logits.float() / temperatures.clamp(min=1e-5)[:, None], dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p  # always keeps the top token
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    choice = torch.multinomial(sorted_probs, 1)
    sampled = order.gather(-1, choice).squeeze(-1)
    return torch.where(temperatures <= 0, greedy, sampled)
