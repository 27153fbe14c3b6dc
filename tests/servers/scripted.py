"""A scripted OpenAI-style server: chosen HTTP failures first, then a short streamed answer.

For what a real server will not do on demand: answer 503 or 429, or refuse an API key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web


class ScriptedServer:
    """Answers POST /v1/chat/completions with `statuses` in turn, then streams `text` word by
    word (pausing `pause` s after the first, with `usage` at the end or not); records every
    request body."""

    def __init__(
        self,
        statuses: Sequence[int] = (),
        text: str = "Hello from the server.",
        *,
        pause: float = 0.0,
        usage: bool = True,
    ) -> None:
        self.statuses = list(statuses)
        self.text = text
        self.pause = pause
        self.usage = usage
        self.bodies: list[dict[str, Any]] = []
        self.base_url = ""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app)

    async def __aenter__(self) -> ScriptedServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer right-key":
            return web.json_response({"error": {"message": "Invalid API key"}}, status=401)
        return web.json_response({"object": "list", "data": [{"id": "scripted"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        if self.statuses:
            status = self.statuses.pop(0)
            headers = {"Retry-After": "0"} if status == 429 else None
            error = {"error": {"message": f"scripted failure {status}"}}
            return web.json_response(error, status=status, headers=headers)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        words = self.text.split(" ")
        for n, word in enumerate(words):
            delta = {"content": word if n == 0 else f" {word}"}
            await self._event(response, {"choices": [{"index": 0, "delta": delta}]})
            if n == 0 and self.pause:
                await asyncio.sleep(self.pause)
        final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if self.usage:
            final["usage"] = {"prompt_tokens": 7, "completion_tokens": len(words)}
        await self._event(response, final)
        await response.write(b"data: [DONE]\n\n")
        return response

    @staticmethod
    async def _event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(payload)}\n\n".encode())
