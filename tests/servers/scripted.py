"""A scripted OpenAI-style server: chosen HTTP failures first, then a short streamed answer.

For what a real server will not do on demand: answer 503 or 429, refuse an API key, go quiet in
the middle of an answer, end a finished stream badly, continue an assistant message with a
chosen text (or refuse to), or replay recorded model outputs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from aiohttp import BasicAuth, web

Ending = Literal["done", "close", "hold"]
Body = dict[str, Any]


def words(text: str) -> list[str]:
    """The text in pieces of one word each, spaces leading: how the server counts tokens."""
    first, *rest = text.split(" ")
    return [first, *(f" {word}" for word in rest)]


def continued(body: Body) -> str | None:
    """The assistant text a request asks to continue (continue_final_message), else None."""
    last = body["messages"][-1]
    return (
        last["content"]
        if body.get("continue_final_message") and last["role"] == "assistant"
        else None
    )


class ScriptedServer:
    """Answers POST /v1/chat/completions with `statuses` in turn, then streams `text` word by
    word; records every request body. GET /v1/models lists "scripted" to the key "right-key",
    as a bearer token or as the password of a URL (HTTP basic auth), and counts its answers.

    `reply`: the text for a request body, instead of `text`; `split` cuts it into tokens, at
    most `max_tokens` of which are sent (then the finish_reason is "length"). `continuing`
    False: a request with continue_final_message is refused with HTTP 400, as a server without
    it does (OpenAI's own, TGI's 422).

    `pace`: seconds between two tokens (a model writing at a steady pace).

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
        reply: Callable[[Body], str] | None = None,
        split: Callable[[str], list[str]] = words,
        continuing: bool = True,
        pace: float = 0.0,
    ) -> None:
        self.statuses = list(statuses)
        self.text = text
        self.reply = reply or (lambda body: self.text)
        self.split = split
        self.continuing = continuing
        self.pace = pace  # seconds between two tokens
        self.stall = stall
        self.usage = usage
        self.ending = ending
        self.bodies: list[Body] = []
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
        body = await request.json()
        self.bodies.append(body)
        if self.statuses:
            status = self.statuses.pop(0)
            headers = {"Retry-After": "0"} if status == 429 else None
            error = {"error": {"message": f"scripted failure {status}"}}
            return web.json_response(error, status=status, headers=headers)
        if not self.continuing and "continue_final_message" in body:
            error = {"error": {"message": "Unrecognized request argument: continue_final_message"}}
            return web.json_response(error, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        tokens = self.split(self.reply(body))
        sent = tokens[: body.get("max_tokens") or len(tokens)]
        for n, token in enumerate(sent):
            if n and self.pace:
                await asyncio.sleep(self.pace)
            await self._event(response, {"choices": [{"index": 0, "delta": {"content": token}}]})
            if n == 0 and self.stall:
                await self._stopping.wait()
                return response
        reason = "length" if len(sent) < len(tokens) else "stop"
        await self._event(
            response, {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
        )
        if self.usage:  # in a chunk of its own, as OpenAI and vLLM send it
            usage = {"prompt_tokens": 7, "completion_tokens": len(sent)}
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
