"""A model server address where nothing listens."""

from __future__ import annotations

import socket


def nothing_listening() -> str:
    """The URL of a port on 127.0.0.1 where no server listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
