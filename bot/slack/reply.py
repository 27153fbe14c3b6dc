"""One question's output side in Slack: a placeholder in the thread, edited into the answer.

The bot's messages that are not final answers start with a mark, so a thread can be read back
as history (questions and final answers only) without extra API scopes or metadata.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core import texts
from bot.core.events import Answer, Progress
from bot.core.splitting import split_text, utf8_size
from bot.slack.mrkdwn import close_open_fence, to_mrkdwn

log = logging.getLogger(__name__)

PROGRESS_MARK = ":hourglass_flowing_sand:"  # placeholder and progress
THINKING_MARK = ":thought_balloon:"  # the model's thinking
FAIL_MARK = ":warning:"  # why there is no answer
ASKED_MARK = ":speech_balloon:"  # a question asked with the slash command
POSED_MARK = ":mortar_board:"  # a quiz and its reveal: what the model's explanation answers
NOTICE_MARK = ":rotating_light:"  # an emergency notice, above the answer
OWN_MARKS = (PROGRESS_MARK, THINKING_MARK, FAIL_MARK, NOTICE_MARK)
PLACEHOLDER = f"{PROGRESS_MARK} Thinking…"


def asked_text(user: str, question: str) -> str:
    """The message a slash command posts: who asked, then the question (Slack text) quoted."""
    quoted = "\n".join(f">{line}" for line in question.split("\n"))
    return f"{ASKED_MARK} <@{user}> asked:\n{quoted}"


@dataclass(frozen=True)
class ReplyStyle:
    """How answers are laid out: footer, bytes per message, edit throttle, thinking as a file."""

    disclaimer: str = ""
    limit: int = 3500
    edit_interval: float = 1.0  # at least this many seconds between progress edits
    thinking_messages: int = 3  # thinking that needs more messages goes up as a file

    @property
    def footer(self) -> str:
        """The disclaimer as it ends an answer message."""
        return to_mrkdwn(self.disclaimer)


class SlackReply:
    """Edits one placeholder: progress (throttled, latest wins), then the answer or the failure."""

    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str,
        ts: str,
        style: ReplyStyle,
        request_id: str = "",
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.ts = ts  # the placeholder
        self.style = style
        self.request_id = request_id
        self._lock = asyncio.Lock()  # one edit at a time, in order
        self._latest: Progress | None = None
        self._shown: Progress | None = None
        self._last_edit = -float("inf")
        self._pending: asyncio.Task[None] | None = None
        self._closed = False
        self.delivered: Answer | None = None  # once the answer is shown
        self.answer_ts: list[str] = []  # the messages showing it (people react on these)

    @classmethod
    async def open(
        cls,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str,
        style: ReplyStyle,
        request_id: str = "",
    ) -> SlackReply:
        """Post the placeholder in the thread; raises SlackApiError if Slack refuses."""
        response = await client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=PLACEHOLDER
        )
        return cls(client, channel, thread_ts, response["ts"], style, request_id)

    @property
    def finished(self) -> bool:
        """The placeholder has been given its final text (answer or failure)."""
        return self._closed

    async def notice(self, text: str) -> None:
        """The placeholder becomes the notice; a new placeholder below it will hold the answer."""
        async with self._lock:
            moved = await self.client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread_ts, text=PLACEHOLDER
            )
            notice, self.ts = self.ts, moved["ts"]
            text = f"{NOTICE_MARK} {to_mrkdwn(text)}"
            try:
                await self.client.chat_update(channel=self.channel, ts=notice, text=text)
            except SlackApiError:  # the first placeholder is gone: the notice follows instead
                await self._post(text)

    async def progress(self, progress: Progress) -> None:
        """Show the latest progress, at most one edit per `edit_interval`, without waiting."""
        self._latest = progress
        if not self._closed and (self._pending is None or self._pending.done()):
            self._pending = asyncio.create_task(self._show_progress())

    async def _show_progress(self) -> None:
        while not self._closed:
            await asyncio.sleep(
                max(0.0, self._last_edit + self.style.edit_interval - time.monotonic())
            )
            async with self._lock:
                if self._closed or self._latest is None or self._latest == self._shown:
                    return
                shown, self._last_edit = self._latest, time.monotonic()
                try:
                    await self._update(f"{PROGRESS_MARK} {texts.progress_text(shown)}")
                except Exception:
                    log.warning("request %s: progress edit failed", self.request_id, exc_info=True)
                    return
                self._shown = shown

    async def deliver(self, answer: Answer) -> None:
        """The placeholder becomes the answer (split to fit); the thinking follows in the thread."""
        answer_md = close_open_fence(answer.answer)
        text = to_mrkdwn(
            texts.answer_text(dataclasses.replace(answer, answer=answer_md), self.style.disclaimer)
        )
        first, *rest = split_text(text, self.style.limit, utf8_size)
        self.answer_ts = [await self._finish(first)]
        for part in rest:
            self.answer_ts.append(await self._post(part))
        self.delivered = answer
        thinking = await self._post_thinking(answer)
        log.info(
            "request %s delivered: answer %d chars in %d message(s), thinking %d chars %s",
            self.request_id,
            len(answer.answer),
            1 + len(rest),
            len(answer.thinking),
            thinking,
        )

    async def fail(self, message: str) -> None:
        """The placeholder says why there is no answer."""
        await self._finish(f"{FAIL_MARK} {to_mrkdwn(message)}")

    async def _finish(self, text: str) -> str:
        """End progress (after an edit in flight) and put the final text in the placeholder.

        Returns the ts of the message showing it.
        """
        self._closed = True
        async with self._lock:
            if self._pending is not None:
                self._pending.cancel()
            try:
                await self._update(text)
            except SlackApiError as exc:  # e.g. the placeholder was deleted: say it anew
                log.warning(
                    "request %s: placeholder edit failed (%s); posting instead",
                    self.request_id,
                    exc.response.get("error"),
                )
                return await self._post(text)
            return self.ts

    async def _post_thinking(self, answer: Answer) -> str:
        """Post the thinking as titled messages, or as a file when long; says which it did."""
        if not answer.thinking.strip():
            return "(none)"
        title = f"{THINKING_MARK} *{texts.thinking_title(answer)}*"
        room = self.style.limit - utf8_size(title) - 16  # title, part counter, newline
        parts = split_text(to_mrkdwn(answer.thinking), room, utf8_size)
        if len(parts) > self.style.thinking_messages and await self._upload(title, answer):
            return "as a file"
        for number, part in enumerate(parts, start=1):
            counter = f" ({number}/{len(parts)})" if len(parts) > 1 else ""
            await self._post(f"{title}{counter}\n{part}")
        return f"in {len(parts)} message(s)"

    async def _upload(self, title: str, answer: Answer) -> bool:
        try:
            await self.client.files_upload_v2(
                channel=self.channel,
                thread_ts=self.thread_ts,
                content=answer.thinking,
                filename=f"thinking-{answer.request_id or 'answer'}.md",
                title=texts.thinking_title(answer),
                initial_comment=f"{title} (long, so attached as a file)",
            )
        except SlackApiError as exc:  # e.g. no files:write scope: post it as messages instead
            log.warning("request %s: thinking upload failed (%s)", self.request_id, exc)
            return False
        return True

    async def _update(self, text: str) -> None:
        await self.client.chat_update(channel=self.channel, ts=self.ts, text=text)

    async def _post(self, text: str) -> str:
        """Post in the thread; returns the new message's ts."""
        response = await self.client.chat_postMessage(
            channel=self.channel,
            thread_ts=self.thread_ts,
            text=text,
            unfurl_links=False,
            unfurl_media=False,
        )
        return response["ts"]
