"""A scripted OpenAI-style server: chosen HTTP failures first, then a short streamed answer.

For what a real server will not do on demand: answer 503 or 429, refuse an API key, go quiet in
the middle of an answer, or end a finished stream badly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Literal

from aiohttp import BasicAuth, web

Ending = Literal["done", "close", "hold"]


class ScriptedServer:
    """Answers POST /v1/chat/completions with `statuses` in turn, then streams `text` word by
    word; records every request body. GET /v1/models lists "scripted" to the key "right-key",
    as a bearer token or as the password of a URL (HTTP basic auth), and counts its answers.

    `stall`: after the first word, send nothing more until the server stops. `usage`: send token
    counts after the finish_reason. `ending`, after those: "done" sends `data: [DONE]` and ends
    the response; "close" drops the connection without either; "hold" keeps it open and silent
    until the server stops.
    """

    def __init__(
        self,
        statuses: Sequence[int] = (),
        text: str = "Hello from the server.",
        *,
        stall: bool = False,
        usage: bool = True,
        ending: Ending = "done",
    ) -> None:
        self.statuses = list(statuses)
        self.text = text
        self.stall = stall
        self.usage = usage
        self.ending = ending
        self.bodies: list[dict[str, Any]] = []
        self.model_lists = 0  # GET /v1/models answered
        self.base_url = ""
        self._stopping = asyncio.Event()  # releases stalled and held responses
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
        await self.stop()

    async def stop(self) -> None:
        """Stop serving: connections to its port are refused from now on."""
        self._stopping.set()
        await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        self.model_lists += 1
        given = request.headers.get("Authorization", "")
        basic = given.startswith("Basic ") and BasicAuth.decode(given).password == "right-key"
        if given != "Bearer right-key" and not basic:
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
            if n == 0 and self.stall:
                await self._stopping.wait()
                return response
        finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
        await self._event(response, {"choices": [finish]})
        if self.usage:  # in a chunk of its own, as OpenAI and vLLM send it
            usage = {"prompt_tokens": 7, "completion_tokens": len(words)}
            await self._event(response, {"choices": [], "usage": usage})
        if self.ending == "close":
            assert request.transport is not None
            request.transport.close()  # mid-response: the client sees the payload cut short
        elif self.ending == "hold":
            await self._stopping.wait()
        else:
            await response.write(b"data: [DONE]\n\n")
        return response

    @staticmethod
    async def _event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(payload)}\n\n".encode())
