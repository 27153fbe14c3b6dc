"""One question's messages in Slack: a placeholder in the thread, edited into the answer.

Answers and thinking are `markdown` blocks (bot/slack/markdown.py), with the same text as the
plain-text fallback. Every message the bot posts carries metadata with its role (answer,
thinking, progress...), and its own id: the thread is read back as history (questions and final
answers only) by role, and after a post whose response was lost, the thread says whether it
landed, so nothing is posted twice. Messages that are not final answers also start with a mark,
which older messages (without a role) are read by.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.core import texts
from bot.core.events import Answer
from bot.core.outbox import Outbox, Undeliverable, Write
from bot.core.reply import LIVE, OutboxReply, Role, Send
from bot.core.splitting import split_text, utf8_size
from bot.slack.feedback import feedback_block
from bot.slack.limits import method_bucket, post_bucket
from bot.slack.markdown import markdown_block, safe_markdown
from bot.slack.mrkdwn import close_open_fence, escape

log = logging.getLogger(__name__)

PROGRESS_MARK = ":hourglass_flowing_sand:"  # placeholder and progress
THINKING_MARK = ":thought_balloon:"  # the model's thinking
FAIL_MARK = ":warning:"  # why there is no answer
ASKED_MARK = ":speech_balloon:"  # a question asked with the slash command
POSED_MARK = ":mortar_board:"  # a quiz and its reveal: what the model's explanation answers
NOTICE_MARK = ":rotating_light:"  # an emergency notice, above the answer
OWN_MARKS = (PROGRESS_MARK, THINKING_MARK, FAIL_MARK, NOTICE_MARK)
PLACEHOLDER = f"{PROGRESS_MARK} {texts.PLACEHOLDER}"
STOP_ACTION = "huatuo_stop"  # the Stop button under an answer being written; value: request id
WHISPER_PATIENCE = 30.0  # seconds a private message is retried: past that it is moot
METADATA_TYPE = "huatuo_message"  # our messages' metadata: {"id": <its write's id>, "role": ...}
MARKS: dict[Role, str] = {
    "placeholder": PROGRESS_MARK,
    "progress": PROGRESS_MARK,
    "notice": NOTICE_MARK,
    "failure": FAIL_MARK,
}


def asked_text(user: str, question: str) -> str:
    """The message a slash command posts: who asked, then the question (plain text) quoted."""
    quoted = "\n".join(f">{escape(line)}" for line in question.split("\n"))
    return f"{ASKED_MARK} <@{user}> asked:\n{quoted}"


@dataclass(frozen=True)
class ReplyStyle:
    """How answers are laid out: footer, bytes per message, edit throttle, thinking as a file."""

    disclaimer: str = ""
    limit: int = 3500
    edit_interval: float = 2.0  # at least this many seconds between progress edits of a message
    thinking_messages: int = 3  # thinking that needs more messages goes up as a file

    @property
    def footer(self) -> str:
        """The disclaimer as it ends an answer message."""
        return safe_markdown(self.disclaimer)


class SlackPoster:
    """Posts into one channel (in a thread, or at the top), tagging each message so that a post
    whose response was lost can be found instead of made twice."""

    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str | None) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts

    def post(self, text: str, label: str, role: str = "", **fields: Any) -> Write[str]:
        """Post `text` (mrkdwn, or the fallback of `blocks`) as a message of `role`; the write's
        result is the new message's ts."""
        tag = uuid.uuid4().hex
        metadata = {"event_type": METADATA_TYPE, "event_payload": {"id": tag, "role": role}}

        async def attempt() -> str:
            response = await self.client.chat_postMessage(
                channel=self.channel,
                thread_ts=self.thread_ts,
                text=text,
                metadata=metadata,
                unfurl_links=False,
                unfurl_media=False,
                **fields,
            )
            return response["ts"]

        return Write(label, attempt, (post_bucket(self.channel),), lambda: self.find(tag))

    def edit(self, ts: str, text: str, label: str, role: str = "", **fields: Any) -> Write[str]:
        """Change message `ts` to `text`, a message of `role` now (an edit made twice is the
        same edit)."""
        if role:
            fields["metadata"] = {"event_type": METADATA_TYPE, "event_payload": {"role": role}}

        async def attempt() -> str:
            await self.client.chat_update(channel=self.channel, ts=ts, text=text, **fields)
            return ts

        return Write(label, attempt, (method_bucket("chat.update"),))

    def delete(self, ts: str) -> Write[object]:
        """Delete message `ts`."""

        async def attempt() -> object:
            return await self.client.chat_delete(channel=self.channel, ts=ts)

        return Write("delete placeholder", attempt, (method_bucket("chat.delete"),))

    async def find(self, tag: str) -> str | None:
        """The ts of our message tagged `tag`, if Slack has it."""
        return await self.find_where(
            lambda m: ((m.get("metadata") or {}).get("event_payload") or {}).get("id") == tag
        )

    async def find_where(self, match: Callable[[dict[str, Any]], bool]) -> str | None:
        """The ts of the latest message of the thread (or channel) that `match`es."""
        if self.thread_ts is None:  # newest first: ours is on the first page
            pages = await self.client.conversations_history(
                channel=self.channel, limit=50, include_all_metadata=True
            )
            messages = pages.get("messages", [])
        else:  # oldest first: every page, for ours is among the last
            pages = await self.client.conversations_replies(
                channel=self.channel, ts=self.thread_ts, limit=200, include_all_metadata=True
            )
            messages = [m async for page in pages for m in page.get("messages", [])]
        found = sorted(m["ts"] for m in messages if match(m))
        return found[-1] if found else None


class SlackSurface:
    """The `bot.core.reply.Surface` of one question in a Slack thread: the answer in the
    placeholder, the thinking in its own messages below it."""

    def __init__(
        self,
        client: AsyncWebClient,
        channel: str,
        thread_ts: str,
        style: ReplyStyle,
        request_id: str = "",
        *,
        stoppable: bool = False,
    ) -> None:
        self.poster = SlackPoster(client, channel, thread_ts)
        self.style = style
        self.request_id = request_id
        self.stoppable = stoppable  # a Stop button while the answer is written
        self.progress_interval = style.edit_interval
        self.detours = True
        self.thinking_messages = style.thinking_messages
        self._last_part: str | None = None  # the answer's last message: feedback goes under it

    def show(self, text: str, role: Role, target: str | None = None) -> Write[str]:
        if role in MARKS:
            text = f"{MARKS[role]} {safe_markdown(text)}"
        blocks = [markdown_block(text)]
        if role in LIVE and self.stoppable:  # an edit to any other role takes Stop away
            blocks.append(stop_actions(self.request_id))
        elif role == "answer" and text == self._last_part:
            blocks.append(feedback_block())
        if target is None:
            return self.poster.post(text, f"post {role}", role, blocks=blocks)
        return self.poster.edit(target, text, f"edit to {role}", role, blocks=blocks)

    def remove(self, target: str) -> Write[object]:
        return self.poster.delete(target)

    def answer_parts(self, answer: Answer) -> list[str]:
        parts = split_text(answer_markdown(answer, self.style), self.style.limit, utf8_size)
        self._last_part = parts[-1]
        return parts

    def draft_parts(self, answer: str) -> list[str]:
        text = safe_markdown(texts.draft_text(close_open_fence(answer)))
        return split_text(text, self.style.limit, utf8_size)

    def thinking_parts(self, thinking: str, title: str) -> list[str]:
        """Titled and numbered messages, marked as the model's reasoning."""
        heading = f"{THINKING_MARK} **{title}**"
        room = self.style.limit - utf8_size(heading) - 16  # title, part counter, newline
        parts = split_text(safe_markdown(thinking), room, utf8_size)
        if len(parts) == 1:
            return [f"{heading}\n{parts[0]}"]
        return [f"{heading} ({n}/{len(parts)})\n{part}" for n, part in enumerate(parts, start=1)]

    async def open_thinking(self, send: Send, anchor: str) -> None:
        return None  # the thread is the thinking's place already

    def think(self, text: str, target: str | None = None) -> Write[str]:
        blocks = [markdown_block(text)]
        if target is None:
            return self.poster.post(text, "post thinking", "thinking", blocks=blocks)
        return self.poster.edit(target, text, "edit thinking", "thinking", blocks=blocks)

    async def attach_thinking(self, send: Send, thinking: str, title: str) -> bool:
        """The thinking as a file in the thread; False when Slack will not take files."""
        filename = f"thinking-{self.request_id or uuid.uuid4().hex[:12]}.md"
        comment = f"{THINKING_MARK} *{title}* (long, so attached whole as `{filename}`)"

        async def attempt() -> bool:
            await self.poster.client.files_upload_v2(
                channel=self.poster.channel,
                thread_ts=self.poster.thread_ts,
                content=thinking,
                filename=filename,
                title=title,
                initial_comment=comment,
            )
            return True

        async def landed() -> bool | None:
            found = await self.poster.find_where(
                lambda m: bool(m.get("files")) and filename in m.get("text", "")
            )
            return True if found else None

        buckets: tuple[Hashable, ...] = (
            method_bucket("files.completeUploadExternal"),
            post_bucket(self.poster.channel),
        )
        try:
            return await send(Write("upload thinking", attempt, buckets, landed))
        except Undeliverable:  # e.g. no files:write scope: post it as messages instead
            return False


def answer_markdown(answer: Answer, style: ReplyStyle) -> str:
    """The whole answer message (final response, notes, disclaimer), made safe."""
    shown = dataclasses.replace(answer, answer=close_open_fence(answer.answer))
    return safe_markdown(texts.answer_text(shown, style.disclaimer))


def stop_actions(request_id: str) -> dict[str, Any]:
    """The Stop button for the answer `request_id`, to go below the text being written."""
    button = {
        "type": "button",
        "action_id": STOP_ACTION,
        "text": {"type": "plain_text", "text": texts.STOP},
        "value": request_id,
    }
    return {"type": "actions", "block_id": "huatuo-stop", "elements": [button]}


@dataclass(frozen=True)
class SlackDelivery:
    """Slack's outbox and the client whose calls it makes (no retries of its own: the outbox
    retries, and can tell whether a post landed); posters and replies for any place."""

    outbox: Outbox
    client: AsyncWebClient
    style: ReplyStyle

    def poster(self, channel: str, thread_ts: str | None = None) -> SlackPoster:
        """Posts in a thread, or at the top of `channel`."""
        return SlackPoster(self.client, channel, thread_ts)

    async def whisper(self, channel: str, user: str, text: str) -> None:
        """A private (ephemeral) message to `user` in `channel`, in mrkdwn; best effort."""

        async def attempt() -> object:
            return await self.client.chat_postEphemeral(channel=channel, user=user, text=text)

        write = Write("private message", attempt, (method_bucket("chat.postEphemeral"),))
        try:
            await self.outbox.send(write, patience=WHISPER_PATIENCE)
        except Undeliverable as exc:
            log.warning("slack: private message to %s not sent (%s)", user, exc)

    def reply(
        self, channel: str, thread_ts: str, request_id: str = "", *, stoppable: bool = False
    ) -> OutboxReply[str]:
        """A Reply in the thread `thread_ts` of `channel`; `stoppable`: with a Stop button."""
        surface = SlackSurface(
            self.client, channel, thread_ts, self.style, request_id, stoppable=stoppable
        )
        return OutboxReply(self.outbox, surface, request_id)
