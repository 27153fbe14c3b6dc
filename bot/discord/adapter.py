"""The Discord adapter: a discord.py client for mentions, DMs, follow-ups and `/ask` (design §6)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl
from discord import app_commands

from bot import logs
from bot.core import texts
from bot.core.budget import Budget
from bot.core.errors import ConfigError
from bot.core.events import Origin, Question
from bot.core.outbox import Outbox, Undeliverable, Write
from bot.core.recent import RecentIds
from bot.core.reply import OutboxReply
from bot.core.service import AnswerService
from bot.core.serving import CUT_SHORT_PATIENCE, InFlight, Prepare, last_word, serve
from bot.discord import events, limits
from bot.discord.feedback import DiscordFeedback
from bot.discord.history import history
from bot.discord.quiz import DiscordQuiz
from bot.discord.surface import (
    NO_PINGS,
    ChannelSurface,
    InteractionSurface,
    StopButton,
    discord_reply,
    thread_name,
    whisper,
)
from bot.feedback.store import FeedbackStore
from bot.quiz.registry import Quizzes
from inference.engine import Message

log = logging.getLogger(__name__)

GATEWAY_CLOSE_TIMEOUT = 5.0  # seconds for the gateway connection to close at stop
HISTORY_PATIENCE = 30.0  # seconds of retries to read a conversation before the asker is told


def gateway_intents() -> discord.Intents:
    """The least the bot needs (the README says why for each)."""
    intents = discord.Intents.none()
    intents.guilds = True  # channels and threads in the cache: which threads are ours
    intents.guild_messages = True  # messages in server channels and threads
    intents.dm_messages = True  # messages in DMs
    intents.message_content = True  # text of follow-ups that do not mention us; thread history
    intents.guild_reactions = True  # 👍 / 👎 on answers in servers: feedback
    intents.dm_reactions = True  # the same in DMs
    return intents


@dataclass(frozen=True)
class DiscordOptions:
    """What the Discord adapter is told (bot/wiring.py makes it from the settings)."""

    bot_token: str  # DISCORD_BOT_TOKEN
    api_base: str | None = None  # DISCORD_API_BASE
    gateway_url: str | None = None  # DISCORD_GATEWAY_URL
    disclaimer: str = ""


class DiscordAdapter:
    """Serves `AnswerService` on Discord; `start` connects, `stop` finishes or cancels answers."""

    name = "discord"

    def __init__(
        self,
        options: DiscordOptions,
        service: AnswerService,
        *,
        sync_guild: int | None = None,
        client_kwargs: dict[str, Any] | None = None,
        stop_grace: float = 5.0,
        feedback: FeedbackStore | None = None,
        quizzes: Quizzes | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.options = options
        self.service = service
        self.outbox = Outbox("discord", budget or limits.budget(), limits.classify)
        self.stop_grace = stop_grace
        self.sync_guild = discord.Object(sync_guild) if sync_guild is not None else None
        defaults = {"intents": gateway_intents(), "allowed_mentions": NO_PINGS}
        self.client = discord.Client(**{**defaults, **(client_kwargs or {})})
        self.client.event(self.on_message)
        self.client.add_dynamic_items(StopButton)
        self.client.event(self.on_stop_click)
        self.work = InFlight("discord")  # answers and quiz work
        self.feedback = DiscordFeedback(feedback, self.client)
        self.feedback.listen()
        self.tree = app_commands.CommandTree(self.client)
        self.tree.add_command(self._ask_command(), guild=self.sync_guild)
        self.quiz: DiscordQuiz | None = None  # `/quiz` and the case of the day, with `quizzes`
        if quizzes is not None:
            self.quiz = DiscordQuiz(
                self.client,
                quizzes,
                disclaimer=self.options.disclaimer,
                spawn=self.work.spawn,
                outbox=self.outbox,
                admission=service.admission,
            )
            self.tree.add_command(self.quiz.command(), guild=self.sync_guild)
        self._seen = RecentIds()  # message ids: a redelivered MESSAGE_CREATE is answered once
        self._gateway: asyncio.Task[None] | None = None
        self._accepting = False
        self._stopping = False

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> None:
        """Log in, connect to the gateway and register `/ask`; returns once ready.

        Raises ConfigError, saying what to fix, when Discord refuses the bot or does not answer.
        """
        token = self.options.bot_token
        if not token:
            raise ConfigError("DISCORD_BOT_TOKEN is not set (Developer Portal → Bot → Token).")
        self._point_at_endpoints()
        try:
            await self.client.login(token)
        except discord.LoginFailure as exc:
            await self.client.close()
            raise ConfigError(
                "Discord refused DISCORD_BOT_TOKEN; reset it in the Developer Portal (Bot → "
                "Reset Token) and copy it again."
            ) from exc
        except (discord.HTTPException, OSError) as exc:
            await self.client.close()
            raise ConfigError(
                f"Cannot log in to Discord at {discord.http.Route.BASE}: {exc}"
            ) from exc
        self._gateway = asyncio.create_task(self.client.connect(), name="discord-gateway")
        ready = asyncio.create_task(self.client.wait_until_ready())
        await asyncio.wait(
            {self._gateway, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if not ready.done():
            ready.cancel()
            error = self._gateway.exception() if self._gateway.done() else None
            await self.stop()
            raise ConfigError(_gateway_problem(error, timeout)) from error
        self._accepting = True
        await self._sync_commands()
        assert self.client.user is not None
        log.info("discord: connected as %s (%s)", self.client.user, self.client.user.id)

    @property
    def ready(self) -> bool:
        """Taking questions: started, and the gateway connection ready and open."""
        return self._accepting and self.client.is_ready() and not self.client.is_closed()

    @property
    def in_flight(self) -> int:
        """Questions being worked on."""
        return len(self.work)

    async def stop(self, grace: float | None = None) -> None:
        """Take no new questions; give answers in flight `grace` s (default `stop_grace`), then
        cancel them and close.

        Askers who arrive meanwhile, and those whose answers are cancelled, are told the bot is
        restarting.
        """
        self._stopping = True
        self._accepting = False
        cut = await self.work.stop(self.stop_grace if grace is None else grace)
        log.info("discord: stopping (%d answer(s) cut short)", cut)
        await self.client.close()
        if self._gateway is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._gateway, GATEWAY_CLOSE_TIMEOUT)

    def _point_at_endpoints(self) -> None:
        """DISCORD_API_BASE and DISCORD_GATEWAY_URL (process-wide: discord.py reads class attrs)."""
        if self.options.api_base:
            discord.http.Route.BASE = self.options.api_base.rstrip("/")
        if self.options.gateway_url:
            url = yarl.URL(self.options.gateway_url)
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = url

    async def _sync_commands(self) -> None:
        """Register `/ask` (and `/quiz`): in one guild at once, or globally (Discord may take a
        while)."""
        where = f"in guild {self.sync_guild.id}" if self.sync_guild else "globally"
        try:
            await self.tree.sync(guild=self.sync_guild)
        except discord.HTTPException as exc:
            log.error(
                "discord: could not register the commands %s (HTTP %s); was the bot invited with "
                "the applications.commands scope?",
                where,
                exc.status,
            )
            return
        log.info("discord: commands registered %s", where)

    async def post_quiz(self, channel: str) -> None:
        """Case of the day: post a quiz into the channel with this id (the scheduler calls it)."""
        if self.quiz is None:
            raise RuntimeError("quizzes are not enabled on this Discord adapter")
        await self.quiz.post_case_of_the_day(channel)

    # ---- messages -----------------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        """A mention, a DM or a follow-up becomes a question; everything else is ignored."""
        me = self.client.user
        if me is None or (origin := events.origin(message, me.id)) is None:
            return
        if not self._seen.first_time(str(message.id)):
            log.info("discord: message %s delivered again; already handled", message.id)
            return
        if self.quiz is not None and self.quiz.intercepts(message, me.id):
            return
        if self._accepting:
            self.work.spawn(self._answer_message(message, origin, me.id))
        elif self._stopping:  # still connected while answers in flight finish
            question = events.question(message, me.id, origin)
            reply = self._in_channel(message, question)
            await last_word(reply, texts.RESTARTING, CUT_SHORT_PATIENCE)

    async def on_stop_click(self, interaction: discord.Interaction, request_id: str) -> None:
        """The Stop button under an answer being written: for its asker and the admins."""
        result = self.service.stops.stop(request_id, str(interaction.user.id))
        try:
            if result == "stopped":
                await interaction.response.defer()  # the message itself shows it stopped
            else:
                text = texts.STOP_NOT_ALLOWED if result == "not allowed" else texts.STOP_FINISHED
                await whisper(interaction, text)
        except discord.HTTPException as exc:
            log.warning("discord: stop click not answered (HTTP %s)", exc.status)

    async def _answer_message(self, message: discord.Message, origin: Origin, bot_id: int) -> None:
        question = events.question(message, bot_id, origin)
        reply = self._in_channel(message, question)
        reply.start()  # a courtesy: the question goes on whether or not it lands
        if origin != "follow-up":
            await self._answer(question, reply)
            return

        async def with_history() -> Question | None:
            turns = await self._history(message, bot_id, reply.request_id)
            if turns is None:
                await last_word(reply, texts.HISTORY_UNREADABLE)
                return None
            return dataclasses.replace(question, history=turns)

        await self._answer(question, reply, with_history)

    async def _history(
        self, message: discord.Message, bot_id: int, request_id: str
    ) -> tuple[Message, ...] | None:
        """A follow-up's earlier turns; None when Discord would not say (after retries)."""
        write = Write("read the conversation", lambda: history(message, bot_id, self.disclaimer))
        try:
            return await self.outbox.send(write, patience=HISTORY_PATIENCE)
        except Undeliverable as exc:
            log.warning("request %s: history unreadable (%s)", request_id, exc)
            return None

    # ---- /ask -------------------------------------------------------------------------------
    def _ask_command(self) -> app_commands.Command[Any, ..., None]:
        @app_commands.command(name="ask", description="Ask HuatuoGPT-o1 a medical question")
        @app_commands.describe(
            question="Your question, with the relevant details of the case",
            private="Only you see the answer (default: everyone in the channel)",
        )
        async def ask(
            interaction: discord.Interaction, question: str, private: bool = False
        ) -> None:
            await self._on_ask(interaction, question, private)

        return ask

    async def _on_ask(self, interaction: discord.Interaction, text: str, private: bool) -> None:
        """Refuse privately, or defer within Discord's 3 s; the answer is made in the background."""
        channel = interaction.channel or discord.Object(interaction.channel_id or 0)
        question = Question(
            text,
            str(interaction.user.id),
            events.conversation(channel),
            "slash",
            groups=events.role_ids(interaction.user),
        )
        logs.request_id.set(question.request_id)  # this interaction's log records from here on
        refusal = self.service.screen(question) if self._accepting else None
        if not self._accepting or refusal is not None:
            message = refusal.message if refusal is not None else texts.RESTARTING
            await interaction.response.send_message(message, ephemeral=True)
            return
        try:
            await interaction.response.defer(ephemeral=private, thinking=True)
        except discord.HTTPException as exc:
            log.warning("discord: /ask not acknowledged in time (HTTP %s)", exc.status)
            return
        self.work.spawn(self._answer_slash(interaction, question, private))

    async def _answer_slash(
        self, interaction: discord.Interaction, question: Question, private: bool
    ) -> None:
        logs.request_id.set(question.request_id)  # on this task's log records from here on
        text = question.text
        shown = None
        if not private and _can_post(interaction):
            # The interaction token expires after 15 minutes, so a public answer is an ordinary
            # message: the deferred response becomes the visible question, which it replies to.
            try:
                shown = await interaction.edit_original_response(
                    content=events.quote(text), allowed_mentions=NO_PINGS
                )
            except discord.HTTPException as exc:
                log.warning(
                    "request %s: question not shown (HTTP %s)", question.request_id, exc.status
                )
        if shown is None:
            surface = InteractionSurface(
                interaction,
                ephemeral=private,
                disclaimer=self.disclaimer,
                request_id=question.request_id,
            )
            reply = self._reply(discord_reply(self.outbox, surface, question.request_id), question)
        else:
            reply = self._in_channel(shown, question)
            reply.start()
        await self._answer(question, reply)

    # ---- answering --------------------------------------------------------------------------
    @property
    def disclaimer(self) -> str:
        return self.options.disclaimer

    def _in_channel(self, message: discord.Message, question: Question) -> OutboxReply[Any]:
        """A reply to `message` in its channel."""
        name = thread_name(question.text)
        surface = ChannelSurface(message, name, self.disclaimer, question.request_id)
        return self._reply(discord_reply(self.outbox, surface, question.request_id), question)

    def _reply(self, reply: OutboxReply[Any], question: Question) -> OutboxReply[Any]:
        """`reply`, logged; from here on, this task's log records carry the request id."""
        logs.request_id.set(question.request_id)
        log.info(
            "request %s: discord %s, %d chars",
            question.request_id,
            question.origin,
            len(question.text),
        )
        return reply

    async def _answer(
        self, question: Question, reply: OutboxReply[Any], prepare: Prepare | None = None
    ) -> None:
        await serve(self.service, question, reply, prepare=prepare, record=self.feedback.answered)


def _can_post(interaction: discord.Interaction) -> bool:
    """Whether the bot may post replies where the command was used."""
    allowed = interaction.app_permissions
    if isinstance(interaction.channel, discord.Thread):
        return allowed.send_messages_in_threads and allowed.read_message_history
    return allowed.send_messages and allowed.read_message_history


def _gateway_problem(error: BaseException | None, timeout: float) -> str:
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    if isinstance(error, discord.PrivilegedIntentsRequired):
        return (
            "Discord refused the Message Content intent: enable it in the Developer Portal "
            "(Bot → Privileged Gateway Intents → Message Content Intent)."
        )
    if error is not None:
        return f"The Discord gateway at {gateway} closed the connection: {error!r}"
    return f"No READY from the Discord gateway at {gateway} within {timeout:.0f} s."
