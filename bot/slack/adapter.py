"""The Slack adapter: slack-bolt's AsyncApp over Socket Mode or HTTP, answering in threads.

Every listener only decides and acknowledges; the answer runs in a background task that the
adapter tracks, so the ack goes out at once and stop() can finish or cancel answers cleanly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot import logs
from bot.core import texts
from bot.core.budget import Budget
from bot.core.errors import ConfigError
from bot.core.events import ConversationRef, Question
from bot.core.outbox import Outbox, Undeliverable, Write
from bot.core.recent import RecentIds
from bot.core.reply import OutboxReply
from bot.core.service import AnswerService
from bot.core.serving import InFlight, last_word, serve
from bot.feedback.store import FeedbackStore
from bot.quiz.bank import QuestionBank
from bot.quiz.registry import Quizzes
from bot.slack import limits
from bot.slack.agent import AgentView
from bot.slack.events import (
    Identity,
    Trigger,
    bot_answered,
    mention_trigger,
    message_trigger,
    question_text,
    thread_history,
)
from bot.slack.feedback import SlackFeedback
from bot.slack.mrkdwn import to_mrkdwn
from bot.slack.quiz import SlackQuiz
from bot.slack.reply import STOP_ACTION, ReplyStyle, SlackDelivery, asked_text
from bot.slack.stream import reply_for
from bot.slack.usergroups import UserGroups
from inference.engine import Message

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
CANNOT_POST = (
    "I can't post in this conversation. Invite me to the channel (`/invite @HuatuoGPT`) "
    "or ask me in a direct message."
)


def usage(command: str) -> str:
    """The private help text for the slash command."""
    return (
        "*Ask HuatuoGPT-o1 a medical question*\n"
        f"• `{command} <question>`: posts your question here and answers in its thread\n"
        f"• `{command} quiz`: posts a multiple-choice question here; everyone answers with the "
        "buttons, and the answer, the tally and my explanation follow at the reveal\n"
        "• Mention me in a channel, or send me a direct message\n"
        "• Reply in an answer's thread to follow up; no mention needed\n"
        "The answer comes first; the model's reasoning follows in the thread."
    )


SETTLE_TIMEOUT = 10.0  # seconds a progress edit in flight may take before the answer goes anew
HISTORY_PATIENCE = 30.0  # seconds of retries to read a thread before the asker is told


@dataclass(frozen=True)
class SlackOptions:
    """What the Slack adapter is told (bot/wiring.py makes it from the settings)."""

    bot_token: str  # SLACK_BOT_TOKEN
    app_token: str | None = None  # SLACK_APP_TOKEN: Socket Mode
    signing_secret: str | None = None  # SLACK_SIGNING_SECRET: HTTP mode
    api_url: str | None = None  # SLACK_API_URL
    disclaimer: str = ""
    streaming: str = "auto"  # HUATUO_SLACK_STREAMING


def web_client(options: SlackOptions, *, retries: bool = True) -> AsyncWebClient:
    """The Web API client: SLACK_API_URL (with its trailing slash), retrying 429s and resets, or
    (`retries` False) leaving every retry to the Outbox, which can tell whether a post landed."""
    base_url = options.api_url or AsyncWebClient.BASE_URL
    handlers = [
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
    ]
    return AsyncWebClient(
        token=options.bot_token,
        base_url=base_url.rstrip("/") + "/",
        retry_handlers=handlers if retries else [],
    )


class SlackAdapter:
    """Mentions, DMs, thread follow-ups and a slash command, answered by the AnswerService."""

    name = "slack"

    def __init__(
        self,
        options: SlackOptions,
        service: AnswerService,
        web_app: web.Application | None = None,
        *,
        command: str = "/huatuo",
        stop_grace: float = 5.0,
        feedback: FeedbackStore | None = None,
        quizzes: Quizzes | None = None,
        budget: Budget | None = None,
    ) -> None:
        if not options.bot_token:
            raise ConfigError("SLACK_BOT_TOKEN is not set (the xoxb- token of the Slack app).")
        self.socket_mode = bool(options.app_token)
        if not self.socket_mode and not options.signing_secret:
            raise ConfigError(
                "Set SLACK_APP_TOKEN (xapp-, Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)."
            )
        self.options = options
        self.service = service
        self.command = command
        self.stop_grace = stop_grace
        self.style = ReplyStyle(disclaimer=options.disclaimer)
        self.client = web_client(options)
        # A Slack call is one request (no retries inside the SDK client), so an edit in flight
        # is waited for; edits held back by a Retry-After are what make an answer post anew.
        self.outbox = Outbox(
            "slack", budget or limits.budget(), limits.classify, settle_timeout=SETTLE_TIMEOUT
        )
        writer = web_client(options, retries=False)  # every call of an answer or quiz
        self.delivery = SlackDelivery(self.outbox, writer, self.style)
        self.app = AsyncApp(
            client=self.client,
            signing_secret=options.signing_secret or "",
            process_before_response=True,  # listeners only decide and spawn: ack when they return
            name="huatuo-bot",
        )
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.command(command)(self._on_command)
        self.app.action(STOP_ACTION)(self._on_stop)
        self.work = InFlight("slack")  # answers and quiz work, after their event's ack
        self._owns_quizzes = quizzes is None  # else the runner shares one and closes it
        if quizzes is None:  # the shipped questions
            quizzes = Quizzes(QuestionBank.load(""), service.engine, service.sampling)
        self.quiz = SlackQuiz(self.app, quizzes, self.delivery, self.work.spawn, service.admission)
        self.feedback = SlackFeedback(feedback, self._identity_if_new)
        self.feedback.listen(self.app)
        AgentView(self.delivery, self._identity_if_new, self.work.spawn).listen(self.app)
        self.team: str | None = None  # the workspace, known once started
        self.usergroups = UserGroups(self.client, service.admission.policy("slack").groups)
        self.bot: Identity | None = None  # known once started
        self._accepting = False
        self._seen = RecentIds()
        self._answered = RecentIds(ttl=7 * 24 * 3600.0)  # threads with our answers (channel ts)
        self._socket: AsyncSocketModeHandler | None = None
        if not self.socket_mode:
            if web_app is None:
                raise ValueError("HTTP mode needs the web app to add POST /slack/events to")
            web_app.router.add_post(EVENTS_PATH, self._http_events)

    async def start(self) -> None:
        """Check the token, learn the bot's ids, and connect (Socket Mode) or start serving."""
        auth = await self.client.auth_test()
        self.bot = Identity(auth["user_id"], auth.get("bot_id"))
        self.team = auth.get("team_id")
        self._accepting = True
        if self.socket_mode:
            self._socket = AsyncSocketModeHandler(self.app, self.options.app_token)
            await self._socket.connect_async()
        log.info(
            "slack: connected as %s in %s",
            self.bot.user_id,
            "Socket Mode" if self.socket_mode else f"HTTP mode ({EVENTS_PATH})",
        )

    @property
    def ready(self) -> bool:
        """Taking events: started, and in Socket Mode with its websocket open."""
        if not self._accepting:
            return False
        if self._socket is None:
            return not self.socket_mode
        session = self._socket.client.current_session
        return session is not None and not session.closed

    @property
    def in_flight(self) -> int:
        """Answers being worked on (after their event was acknowledged)."""
        return len(self.work)

    async def stop(self, grace: float | None = None) -> None:
        """Take no new events; give answers in flight `grace` s (default `stop_grace`), then
        stop them and tell their askers."""
        self._accepting = False
        if self._owns_quizzes:  # open quizzes are revealed now rather than lost
            await self.quiz.quizzes.close(self.stop_grace if grace is None else grace)
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        cut = await self.work.stop(self.stop_grace if grace is None else grace)
        log.info("slack: stopped (%d answer(s) cut short)", cut)

    # ---- input side: decide, then hand off ------------------------------------------------------
    async def _http_events(self, request: web.Request) -> web.Response:
        if not self._accepting:  # not started, or stopping: Slack retries later
            return web.json_response({"error": "not ready"}, status=503)
        try:
            bolt_request = await to_bolt_request(request)
        except ValueError:  # a body that is not the JSON or form it says it is
            return web.json_response({"error": "malformed body"}, status=400)
        response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    def _identity(self) -> Identity | None:
        """The bot's identity while it takes events (None before start and while stopping)."""
        return self.bot if self._accepting else None

    def _identity_if_new(self, body: Mapping[str, Any]) -> Identity | None:
        """The bot's identity, or None to drop the event: a retry (same event_id), or stopping."""
        bot, event_id = self._identity(), body.get("event_id")
        if bot and event_id and not self._seen.first_time(event_id):
            log.info("slack: event %s is a retry; already handled", event_id)
            return None
        return bot

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        bot = self._identity_if_new(body)
        trigger = mention_trigger(event, bot) if bot else None
        if bot and trigger and not self.quiz.intercepts(trigger):
            self.work.spawn(self._answer(trigger, bot), body.get("event_id"))

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        bot = self._identity_if_new(body)
        trigger = message_trigger(event, bot) if bot else None
        if bot and trigger and not self.quiz.intercepts(trigger):
            self.work.spawn(self._answer(trigger, bot), body.get("event_id"))

    async def _on_command(
        self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond
    ) -> None:
        text = (command.get("text") or "").strip()
        bot = self._identity()
        if text.lower() in ("", "help") or bot is None:
            reply = usage(self.command) if bot else texts.RESTARTING
            await ack(text=reply, response_type="ephemeral")
            return
        await ack()
        if text.lower() == "quiz":
            self.work.spawn(self._start_quiz(command, respond), command.get("trigger_id"))
            return
        self.work.spawn(self._ask_in_channel(command, respond, bot), command.get("trigger_id"))

    async def _on_stop(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        """The Stop button under an answer being written: for its asker and the admins."""
        await ack()
        user, channel = body["user"]["id"], (body.get("channel") or {}).get("id", "")
        result = self.service.stops.stop(action.get("value", ""), user)
        if result != "stopped":
            text = texts.STOP_NOT_ALLOWED if result == "not allowed" else texts.STOP_FINISHED
            self.work.spawn(self.delivery.whisper(channel, user, to_mrkdwn(text)), None)

    async def _start_quiz(self, command: Mapping[str, Any], respond: AsyncRespond) -> None:
        """`/huatuo quiz` (the quiz flow checks the allow-lists and the rate limit)."""
        user, channel = command["user_id"], command["channel_id"]
        groups = await self.usergroups.of(user)
        await self.quiz.start(_where(channel), user, groups, respond)

    async def post_quiz(self, channel: str) -> None:
        """Post a case-of-the-day quiz into `channel` (the scheduler calls this)."""
        await self.quiz.post_case_of_the_day(channel)

    # ---- the answer, after the ack --------------------------------------------------------------
    async def _ask_in_channel(
        self, command: Mapping[str, Any], respond: AsyncRespond, bot: Identity
    ) -> None:
        """Slash command: post the question to the channel, then answer in its thread."""
        channel, user, text = command["channel_id"], command["user_id"], command["text"].strip()
        question = question_text(text, bot.user_id)
        asked = Question(
            question, user, _where(channel), "slash", groups=await self.usergroups.of(user)
        )
        logs.request_id.set(asked.request_id)  # on this task's log records from here on
        if (refusal := self.service.screen(asked)) is not None:  # before anything is posted
            text = to_mrkdwn(refusal.message)
            await _quietly(lambda: respond(text=text, response_type="ephemeral"))
            return
        write = self.delivery.poster(channel).post(asked_text(user, question), "question")
        try:
            ts = await self.outbox.send(write)
        except Undeliverable as exc:
            log.warning("slack: cannot post a slash question in %s: %s", channel, exc)
            await _quietly(lambda: respond(text=CANNOT_POST, response_type="ephemeral"))
            return
        trigger = Trigger("slash", channel, user, question, ts=ts, thread_ts=ts)
        await self._answer(trigger, bot, asked)

    async def _answer(self, trigger: Trigger, bot: Identity, asked: Question | None = None) -> None:
        """Placeholder (when the budget allows), history, service, delivery. `asked`: the
        question as already screened (a slash command), else made from `trigger`."""
        if asked is None:
            groups = await self.usergroups.of(trigger.user)
            where = _where(trigger.channel, trigger.thread_ts)
            asked = Question(trigger.text, trigger.user, where, trigger.origin, groups=groups)
        reply = reply_for(
            self.delivery,
            self.options.streaming,
            trigger.channel,
            trigger.thread_ts,
            asked.request_id,
            user=trigger.user,
            team=self.team,
        )
        if trigger.origin != "follow-up":
            reply.start()  # a courtesy: the question goes on whether or not it lands
        await serve(
            self.service,
            asked,
            reply,
            prepare=lambda: self._with_history(trigger, bot, asked, reply),
            record=self.feedback.answered,
        )
        if reply.shown:
            self._answered.first_time(f"{trigger.channel} {trigger.thread_ts}")

    async def _with_history(
        self, trigger: Trigger, bot: Identity, asked: Question, reply: OutboxReply[str]
    ) -> Question | None:
        """The question with its thread's history; None when it is not for the bot (a reply in
        someone else's thread), or when the thread cannot be read (the asker is then told)."""
        history: tuple[Message, ...] = ()
        if trigger.in_thread:
            replies = await self._replies(trigger)
            ours = f"{trigger.channel} {trigger.thread_ts}" in self._answered
            if replies is None and (ours or trigger.origin != "follow-up"):
                await last_word(reply, texts.HISTORY_UNREADABLE)
                return None
            theirs = replies is not None and not bot_answered(replies, bot)
            if replies is None or (trigger.origin == "follow-up" and theirs):
                return None  # not a conversation of ours, or no way to tell
            history = thread_history(replies, trigger.ts, bot, self.style.footer)
            reply.start()
        where = _where(trigger.channel, trigger.thread_ts)
        question = dataclasses.replace(asked, conversation=where, history=history)
        log.info(
            "request %s: slack %s in %s, %d chars, %d history turns",
            question.request_id,
            trigger.origin,
            trigger.channel,
            len(question.text),
            len(history),
        )
        return question

    async def _replies(self, trigger: Trigger) -> list[dict[str, Any]] | None:
        """The thread's messages, oldest first; None if Slack will not say (after retries)."""

        async def read() -> list[dict[str, Any]]:
            messages: list[dict[str, Any]] = []
            pages = await self.delivery.client.conversations_replies(
                channel=trigger.channel, ts=trigger.thread_ts, limit=200, include_all_metadata=True
            )
            async for page in pages:
                messages += page.get("messages", [])
            return messages

        write = Write("read the thread", read, (limits.method_bucket("conversations.replies"),))
        try:
            return await self.outbox.send(write, patience=HISTORY_PATIENCE)
        except Undeliverable as exc:
            log.warning("slack: cannot read thread %s: %s", trigger.thread_ts, exc)
            return None


def _where(channel: str, thread: str | None = None) -> ConversationRef:
    """A Slack conversation; direct-message channel ids start with D."""
    return ConversationRef("slack", channel, thread, direct=channel.startswith("D"))


async def _quietly(send: Callable[[], Coroutine[Any, Any, Any]], timeout: float = 10.0) -> None:
    """Try to tell the asker something; log instead of raising if Slack cannot be reached."""
    try:
        await asyncio.wait_for(send(), timeout)
    except Exception:
        log.warning("slack: could not deliver a notice", exc_info=True)
