"""An answer with Slack's own AI features, for direct messages and the agent view.

While the question waits and the model starts, Slack's loading status shows
(`assistant.threads.setStatus`, renewed before Slack drops it after 2 minutes). Then one message
is streamed (slack_sdk's `chat_stream()`: `chat.startStream`, `chat.appendStream`,
`chat.stopStream`): the thinking as a collapsed thinking step "Reasoning" (in progress, then
complete) and below it the final response as it is written, ended with the disclaimer and the
feedback buttons. Thinking too long for the step goes into the thread at the end, as on the
edit-based path (messages, or a file).

Every call goes through the Outbox. Any refusal of the native methods (a plan without AI features,
an unknown method, a stream Slack closed after about 5 minutes) hands the answer to the
edit-based `OutboxReply`, from the stream's own message when there is one: it is edited into the
answer, so no text is lost. So does a lost response of a stream write (it may have been applied:
appending again could show text twice, an edit cannot), and a final text that does not extend
what was streamed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.models.messages.chunk import Chunk, MarkdownTextChunk, TaskUpdateChunk
from slack_sdk.web.async_chat_stream import AsyncChatStream

from bot.core import texts
from bot.core.budget import Priority
from bot.core.events import Answer, Progress
from bot.core.outbox import RateLimited, Transient, Undeliverable, Withdrawn, Write
from bot.core.reply import OutboxReply
from bot.slack.feedback import feedback_block
from bot.slack.limits import classify, method_bucket
from bot.slack.markdown import BLOCK_LIMIT, safe_markdown
from bot.slack.reply import METADATA_TYPE, SlackDelivery, SlackSurface, answer_markdown

log = logging.getLogger(__name__)

STATUS = "is thinking…"
LOADING = (
    "Reading the question…",
    "Reasoning through the case…",
    "Weighing the possibilities…",
    "Writing the answer…",
)
STATUS_EVERY = 90.0  # seconds between two status calls while nothing is streamed (Slack: 120)
APPEND_INTERVAL = 1.0  # seconds between two writes of a stream while it is written, at least
STEP_ID = "reasoning"
STEP_TITLE = "Reasoning"
STEP_LIMIT = 4000  # characters of thinking shown in the step; longer goes into the thread
STEP_LONG = "The reasoning is long: it follows in this thread."
STEP_ERRORS = frozenset({"invalid_chunks"})  # Slack took no thinking step: the thread has it


class StreamReply:
    """A `bot.core.adapter.Reply` streamed natively into a thread (see the module docstring);
    `user` and `team` are the asker's, whom the stream is for."""

    def __init__(
        self,
        delivery: SlackDelivery,
        channel: str,
        thread_ts: str,
        request_id: str,
        *,
        user: str,
        team: str | None,
        stoppable: bool = False,
    ) -> None:
        self.outbox = delivery.outbox
        self.client = delivery.client
        self.style = delivery.style
        self.surface = SlackSurface(
            delivery.client, channel, thread_ts, delivery.style, request_id, stoppable=stoppable
        )
        self.channel, self.thread_ts, self.request_id = channel, thread_ts, request_id
        self.user, self.team = user, team
        self.status_every = STATUS_EVERY
        self._started = False
        self._done: Answer | None = None  # delivered natively
        self._stream: AsyncChatStream | None = None
        self._sent = ""  # the final response's Markdown streamed so far
        self._step: tuple[str, str] | None = None  # the thinking step as sent: status, details
        self._stepping = True  # the thinking is shown in the step (else in the thread)
        self._latest: Progress | None = None
        self._status: asyncio.Task[None] | None = None
        self._refused: str | None = None  # why the native methods will not do for this answer
        self._edits: OutboxReply[str] | None = None  # the edit-based reply, once refused

    # ---- what the adapter and the feedback store read, from whichever path answered ----------
    @property
    def started(self) -> bool:
        return self._started

    @property
    def finished(self) -> bool:
        return self._done is not None or (self._edits is not None and self._edits.finished)

    @property
    def delivered(self) -> Answer | None:
        return self._edits.delivered if self._edits is not None else self._done

    @property
    def shown(self) -> list[str]:
        if self._edits is not None:
            return self._edits.shown
        ts = self._stream.ts if self._stream is not None else None
        return [ts] if self._done is not None and ts else []

    # ---- the Reply ---------------------------------------------------------------------------
    def start(self, status: str = texts.PLACEHOLDER) -> None:
        """Show Slack's loading status until the stream begins; never waits."""
        self._started = True
        if self._edits is not None:
            self._edits.start(status)
        elif self._status is None:
            self._status = asyncio.create_task(self._keep_status(), name="slack-status")

    async def notice(self, text: str) -> None:
        """The urgent notice, as a message of its own above the answer."""
        if self._edits is not None:
            await self._edits.notice(text)
        else:
            await self.outbox.send(self.surface.show(text, "notice"))

    async def progress(self, progress: Progress) -> None:
        """Stream what is new when the budget allows; never waits."""
        self._latest = progress
        if self._edits is not None or self._refused is not None:
            await (await self._switch()).progress(progress)
        elif progress.thinking or progress.answer:
            self.outbox.offer(self, self._write("stream"), APPEND_INTERVAL)

    async def deliver(self, answer: Answer) -> None:
        """End the stream with the whole answer, or hand it to the edits."""
        await self._quiet()
        final = answer_markdown(answer, self.style)
        rest = final.removeprefix(self._sent)
        diverged = bool(self._sent) and not final.startswith(self._sent)
        if self._refused is None and (diverged or len(rest) > BLOCK_LIMIT):
            self._refused = "the final text does not extend what was streamed, or is too long"
        if self._refused is None:
            try:
                await self.outbox.send(self._write("stop stream", answer, rest))
            except Undeliverable as exc:
                self._refused = self._refused or str(exc)
        if self._refused is not None:
            await (await self._switch()).deliver(answer)
            return
        self._done = answer
        log.info("request %s delivered natively: answer %d chars", self.request_id, len(final))
        if answer.thinking.strip() and not self._stepping:
            title = texts.thinking_title(answer)
            await OutboxReply(self.outbox, self.surface, self.request_id).finish_thinking(
                answer.thinking, title
            )

    async def fail(self, message: str) -> None:
        """Say why there is no (whole) answer, through the edits (from the stream's message)."""
        await self._quiet()
        self._refused = self._refused or "failed"
        await (await self._switch()).fail(message)

    # ---- the native writes -------------------------------------------------------------------
    def _write(self, label: str, answer: Answer | None = None, rest: str = "") -> Write[None]:
        """A write bringing the stream up to date (`answer` None) or ending it with `rest`."""
        opening = self._stream is None or self._stream.ts is None
        if answer is not None:
            method = "chat.stopStream"
        else:
            method = "chat.startStream" if opening else "chat.appendStream"

        async def attempt() -> None:
            if self._refused is not None:
                return  # the edits take over: nothing more goes into the stream
            try:
                if answer is None:
                    await self._append()
                else:
                    await self._stop(answer, rest)
            except Exception as exc:
                if not isinstance(classify(exc), RateLimited):  # anything else: the edits
                    self._refused = self._refused or _reason(exc)
                raise

        return Write(label, attempt, (method_bucket(method),))

    async def _append(self) -> None:
        assert self._latest is not None
        chunks: list[Chunk] = []
        done = self._latest.answer[: self._latest.answer.rfind("\n") + 1]  # whole lines only
        new = safe_markdown(done).removeprefix(self._sent) if done else ""
        if new:
            chunks.append(MarkdownTextChunk(text=new))
        step = self._step_update(self._latest.thinking, "in_progress")
        if step is not None:
            chunks.append(step)
        if not chunks:
            return
        await self._send_chunks(chunks)
        self._sent += new
        self._stop_status()  # Slack clears it once the app replies

    async def _send_chunks(self, chunks: list[Chunk]) -> None:
        stream = await self._open()
        try:
            await stream.append(chunks=chunks)
        except SlackApiError as exc:
            if exc.response.get("error") not in STEP_ERRORS or not self._stepping:
                raise
            self._stepping, self._step = False, None  # no step: the thinking goes in the thread
            plain = [chunk for chunk in chunks if not isinstance(chunk, TaskUpdateChunk)]
            if plain:
                await stream.append(chunks=plain)

    async def _stop(self, answer: Answer, rest: str) -> None:
        stream = await self._open()
        chunks: list[Chunk] = [MarkdownTextChunk(text=rest)] if rest else []
        step = self._step_update(answer.thinking, "complete")
        chunks += [step] if step is not None else []
        metadata = {"event_type": METADATA_TYPE, "event_payload": {"role": "answer"}}
        blocks = [feedback_block()]
        await stream.stop(chunks=chunks, blocks=blocks, metadata=metadata)
        self._sent += rest

    def _step_update(self, thinking: str, status: str) -> TaskUpdateChunk | None:
        """The thinking step's update, if it changed; None without a step."""
        if not thinking.strip() or not self._stepping:
            return None
        details = safe_markdown(thinking)
        if len(details) > STEP_LIMIT:
            details = STEP_LONG  # the thread gets the thinking at the end
        if self._step == (status, details):
            return None
        self._step = status, details
        if details == STEP_LONG and status == "complete":
            self._stepping = False
        return TaskUpdateChunk(id=STEP_ID, title=STEP_TITLE, status=status, details=details)

    async def _open(self) -> AsyncChatStream:
        if self._stream is None:
            team = {"recipient_team_id": self.team} if self.team else {}
            self._stream = await self.client.chat_stream(
                channel=self.channel,
                thread_ts=self.thread_ts,
                recipient_user_id=self.user,
                buffer_size=1,  # the Outbox paces the writes
                **team,
            )
        return self._stream

    # ---- the loading status ------------------------------------------------------------------
    async def _keep_status(self) -> None:
        """Set the loading status, again before Slack drops it, until the stream begins; a
        refusal hands the answer to the edits (which post a placeholder instead)."""

        async def attempt() -> Any:
            return await self.client.assistant_threads_setStatus(
                channel_id=self.channel,
                thread_ts=self.thread_ts,
                status=STATUS,
                loading_messages=list(LOADING),
            )

        while self._refused is None:
            write = Write("status", attempt, (method_bucket("assistant.threads.setStatus"),))
            try:
                await self.outbox.send(write, Priority.PLACEHOLDER, patience=self.status_every)
            except Withdrawn:
                return
            except Undeliverable as exc:
                if not isinstance(exc.failure, Transient):  # refused: no AI features here
                    self._refused = str(exc)
                    await self._switch()
                    return
            await asyncio.sleep(self.status_every)

    def _stop_status(self) -> None:
        task, self._status = self._status, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _quiet(self) -> None:
        """No more status calls, and no stream write pending or in flight."""
        self._stop_status()
        await self.outbox.settle(self)

    # ---- the edits ---------------------------------------------------------------------------
    async def _switch(self) -> OutboxReply[str]:
        """The edit-based reply that takes the answer over, from the stream's message if any."""
        if self._edits is None:
            await self._quiet()
            ts = self._stream.ts if self._stream is not None else None
            log.info(
                "request %s: native answer refused (%s); editing %s",
                self.request_id,
                self._refused,
                "the stream's message" if ts else "a placeholder",
            )
            self._edits = OutboxReply(self.outbox, self.surface, self.request_id, placeholder=ts)
            if self._started and ts is None:
                self._edits.start()
            if self._latest is not None:
                await self._edits.progress(self._latest)
        return self._edits


def _reason(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return repr(exc)


def reply_for(
    delivery: SlackDelivery,
    streaming: str,
    channel: str,
    thread_ts: str,
    request_id: str,
    *,
    user: str,
    team: str | None,
) -> OutboxReply[str] | StreamReply:
    """The reply an answer gets by HUATUO_SLACK_STREAMING (`streaming`): native in direct
    messages and the agent view (`auto`) or everywhere (`native`), else edited messages."""
    if streaming == "native" or (streaming == "auto" and channel.startswith("D")):
        return StreamReply(
            delivery, channel, thread_ts, request_id, user=user, team=team, stoppable=True
        )
    return delivery.reply(channel, thread_ts, request_id, stoppable=True)
