"""One question's messages in Slack: a placeholder in the thread, edited into the answer.

The bot's messages that are not final answers start with a mark, so a thread can be read back
as history (questions and final answers only) without extra API scopes or metadata. Every
message the bot posts carries metadata with its own id: after a post whose response was lost,
the thread says whether it landed, so nothing is posted twice.
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
from bot.slack.limits import method_bucket, post_bucket
from bot.slack.mrkdwn import close_open_fence, escape, to_mrkdwn

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
SECTION_LIMIT = 3000  # characters of a section block's text
WHISPER_PATIENCE = 30.0  # seconds a private message is retried: past that it is moot
METADATA_TYPE = "huatuo_message"  # our messages' metadata: {"id": <the write's own id>}
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
        return to_mrkdwn(self.disclaimer)


class SlackPoster:
    """Posts into one channel (in a thread, or at the top), tagging each message so that a post
    whose response was lost can be found instead of made twice."""

    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str | None) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts

    def post(self, text: str, label: str, **fields: Any) -> Write[str]:
        """Post `text` (mrkdwn); the write's result is the new message's ts."""
        tag = uuid.uuid4().hex
        metadata = {"event_type": METADATA_TYPE, "event_payload": {"id": tag}}

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

    def edit(self, ts: str, text: str, label: str, **fields: Any) -> Write[str]:
        """Change message `ts` to `text` (an edit made twice is the same edit)."""

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

    def show(self, text: str, role: Role, target: str | None = None) -> Write[str]:
        if role in MARKS:
            text = f"{MARKS[role]} {to_mrkdwn(text)}"
        if role in LIVE and self.stoppable:  # in a section, so that Stop can sit below it
            blocks = stop_blocks(text, self.request_id)
        else:  # an edit takes the Stop button away
            blocks = None if target is None else []
        if target is None:
            return self.poster.post(text, f"post {role}", blocks=blocks)
        return self.poster.edit(target, text, f"edit to {role}", blocks=blocks)

    def remove(self, target: str) -> Write[object]:
        return self.poster.delete(target)

    def answer_parts(self, answer: Answer) -> list[str]:
        shown = dataclasses.replace(answer, answer=close_open_fence(answer.answer))
        text = to_mrkdwn(texts.answer_text(shown, self.style.disclaimer))
        return split_text(text, self.style.limit, utf8_size)

    def draft_parts(self, answer: str) -> list[str]:
        text = to_mrkdwn(texts.draft_text(close_open_fence(answer)))
        return split_text(text, min(self.style.limit, SECTION_LIMIT), utf8_size)

    def thinking_parts(self, thinking: str, title: str) -> list[str]:
        """Titled and numbered messages, marked as the model's reasoning."""
        heading = f"{THINKING_MARK} *{title}*"
        room = self.style.limit - utf8_size(heading) - 16  # title, part counter, newline
        parts = split_text(to_mrkdwn(thinking), room, utf8_size)
        if len(parts) == 1:
            return [f"{heading}\n{parts[0]}"]
        return [f"{heading} ({n}/{len(parts)})\n{part}" for n, part in enumerate(parts, start=1)]

    async def open_thinking(self, send: Send, anchor: str) -> bool:
        return False  # the thread is the thinking's place already

    def think(self, text: str, target: str | None = None) -> Write[str]:
        if target is None:
            return self.poster.post(text, "post thinking")
        return self.poster.edit(target, text, "edit thinking")

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


def stop_blocks(text: str, request_id: str) -> list[dict[str, Any]]:
    """`text` (mrkdwn) with a Stop button below it for the answer `request_id`."""
    button = {
        "type": "button",
        "action_id": STOP_ACTION,
        "text": {"type": "plain_text", "text": texts.STOP},
        "value": request_id,
    }
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "block_id": "huatuo-stop", "elements": [button]},
    ]


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
