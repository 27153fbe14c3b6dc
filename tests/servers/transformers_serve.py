"""`transformers serve`, a real OpenAI-compatible server, on the built-in model, offline.

It cannot load the built-in GGUF itself (a GGUF's config names no architecture, and the server
looks the model class up by that name), so the model is first saved once as a plain transformers
folder. The server then runs in a child process on 127.0.0.1 with a free port.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from safetensors.torch import save_model

from inference.loading import BUILTIN, resolve_model


def exported_folder(parent: Path) -> Path:
    """Where the built-in model's transformers folder goes, named after its GGUF file."""
    spec = resolve_model(BUILTIN)
    gguf = Path(spec.source) / str(spec.gguf_file)
    return parent / f"{gguf.stem}-{gguf.stat().st_size}"


def export_builtin(folder: Path, model: Any, tokenizer: Any) -> Path:
    """Save the loaded built-in model (weights already dequantized) as a transformers folder."""
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    del config.quantization_config  # the GGUF quantization is gone once loaded
    save_model(model, str(partial / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(partial)
    model.generation_config.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)
    return folder


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TransformersServer:
    """`transformers serve FOLDER` in a child process; `model` is the id it serves."""

    def __init__(
        self, folder: Path, *, continuous_batching: bool = False, threads: int = 1
    ) -> None:
        self.model = str(folder.resolve())
        self.continuous_batching = continuous_batching
        self.threads = threads
        self.log = folder.with_name(folder.name + ".log")
        self.base_url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> TransformersServer:
        """Start and wait until GET /v1/models answers; a port taken meanwhile is retried."""
        for _ in range(3):
            port = _free_port()
            command = [
                sys.executable, "-m", "transformers.cli.transformers", "serve", self.model,
                "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                "--dtype", "float32", "--log-level", "warning",
            ]  # fmt: skip
            if self.continuous_batching:
                command.append("--continuous-batching")
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(self.threads)}
            with self.log.open("wb") as log:
                self._process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
            self.base_url = f"http://127.0.0.1:{port}/v1"
            if self._wait_ready(timeout):
                return self
            if "address already in use" not in self.log.read_text(errors="replace").lower():
                break
        self.stop()
        raise RuntimeError(f"transformers serve did not start:\n{self.log.read_text()[-3000:]}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as response:
                    return response.status == 200
            except OSError:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> TransformersServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
