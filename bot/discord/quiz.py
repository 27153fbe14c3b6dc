"""The quiz on Discord: `/quiz`, answer buttons, the reveal, and the case of the day.

The quiz message shows the case and its options, with a button per option and a Reveal button.
The buttons are `QuizButton` dynamic items: discord.py rebuilds one from the custom id of any
click (`huatuo-quiz:<quiz id>:<letter or reveal>`), so clicks are handled whatever became of the
view that sent them. Every click is answered at once: learners get a private (ephemeral)
confirmation, and the message shows only how many have answered. The reveal edits the message
(buttons removed, the correct option marked) and opens a thread on it with the correct answer and
the tally, then the model's own answer, which is posted like any answer (replying to
the tally), its thinking after it. In DMs and threads, with no new thread, all of that follows in
the same conversation and the model's answer replies to the quiz message itself: that is how
`bot.discord.history` finds the case for a question replying to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands

from bot.core.admission import Admission
from bot.core.outbox import Outbox, Undeliverable
from bot.core.splitting import split_text
from bot.discord import events
from bot.discord.surface import (
    MESSAGE_LIMIT,
    NO_PINGS,
    ChannelSurface,
    Post,
    discord_reply,
    edit_write,
    post_write,
    thread_name,
    thread_write,
    whisper,
)
from bot.quiz import texts
from bot.quiz.bank import QuizItem
from bot.quiz.explanation import Explanation, ExplanationFailed
from bot.quiz.registry import QuizNotOpened, Quizzes
from bot.quiz.session import Quiz, Reveal, RevealRefused

log = logging.getLogger(__name__)

REVEAL = "reveal"
TEMPLATE = r"huatuo-quiz:(?P<quiz>[0-9a-f]{12}):(?P<choice>[A-Z]|reveal)"
COUNT_INTERVAL = 2.0  # seconds between edits of the "N answers so far" line
COUNT_ROOM = 40  # characters kept free in the quiz message for that line
CASE_ABOVE = "_(The case is in the message above.)_"
CANNOT_POST = (
    "Sorry, I can't post a quiz here. Please check that I may send messages in this channel."
)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


class QuizButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=TEMPLATE):
    """An option or Reveal button of a quiz; a click becomes a `quiz_click` client event."""

    def __init__(self, quiz_id: str, choice: str) -> None:
        reveal = choice == REVEAL
        super().__init__(
            discord.ui.Button(
                label="Reveal" if reveal else choice,
                style=discord.ButtonStyle.primary if reveal else discord.ButtonStyle.secondary,
                custom_id=f"huatuo-quiz:{quiz_id}:{choice}",
            )
        )
        self.quiz_id, self.choice = quiz_id, choice

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button[discord.ui.View],
        match: re.Match[str],
    ) -> QuizButton:
        return cls(match["quiz"], match["choice"])

    async def callback(self, interaction: discord.Interaction) -> None:
        interaction.client.dispatch("quiz_click", interaction, self.quiz_id, self.choice)


@dataclass
class _Posted:
    """An open quiz's message with the buttons, and what it shows."""

    message: discord.PartialMessage
    item: QuizItem  # the item as shown there (a long case goes in a message of its own above)
    text: str

    def content(self, answered: int) -> str:
        return _with_count(self.text, answered)


class DiscordQuiz:
    """Starts, tracks and reveals the quizzes of one DiscordAdapter (sharing its client)."""

    def __init__(
        self,
        client: discord.Client,
        quizzes: Quizzes,
        *,
        disclaimer: str,
        spawn: Spawn,
        outbox: Outbox,
        admission: Admission | None = None,
    ) -> None:
        self.client = client
        self.quizzes = quizzes
        self.outbox = outbox  # the model's explanation goes out like any answer
        self.disclaimer = disclaimer
        self.admission = admission or Admission()  # who may start a quiz, where, how often
        self._spawn = spawn
        self._posted: dict[str, _Posted] = {}  # open quizzes by id
        client.add_dynamic_items(QuizButton)
        client.event(self.on_quiz_click)

    # ---- starting ------------------------------------------------------------------------------
    def command(self) -> app_commands.Command[Any, ..., None]:
        @app_commands.command(
            name="quiz", description="Post a multiple-choice question for learners to answer"
        )
        async def quiz(interaction: discord.Interaction) -> None:
            await self._on_command(interaction)

        return quiz

    async def _on_command(self, interaction: discord.Interaction) -> None:
        """`/quiz`, for those the allow-lists and the rate limit let start one here: the quiz is
        the interaction's response, so it is answered at once."""
        channel = interaction.channel
        if channel is None or not hasattr(channel, "get_partial_message"):
            await whisper(interaction, CANNOT_POST)
            return
        user, roles = str(interaction.user.id), events.role_ids(interaction.user)
        where = events.conversation(channel)
        refusal = self.admission.may_start(user, where, roles)
        if refusal is not None:
            await whisper(interaction, refusal.message)
            return
        try:
            quiz = self._open(user, channel, self.quizzes.seconds, texts.QUIZ_TITLE)
        except QuizNotOpened as exc:
            await whisper(interaction, str(exc))
            return
        try:
            await self._post(quiz, channel, self.quizzes.seconds, interaction)
        except discord.HTTPException as exc:
            log.warning("discord: quiz %s not posted (HTTP %s)", quiz.id, exc.status)
            if not interaction.response.is_done():
                await whisper(interaction, CANNOT_POST)
        else:
            self.admission.started(user, where)

    async def post_case_of_the_day(self, channel_id: str) -> None:
        """A scheduled quiz nobody started, in a channel given by id: revealed by its timer (or
        an admin). Raises when the channel cannot be found or written to."""
        channel = self.client.get_channel(int(channel_id)) or await self.client.fetch_channel(
            int(channel_id)
        )
        if not hasattr(channel, "get_partial_message"):
            raise ValueError(f"Discord channel {channel_id} does not take messages")
        seconds = self.quizzes.case_seconds
        await self._post(self._open(None, channel, seconds, texts.CASE_TITLE), channel, seconds)

    def _open(self, starter: str | None, channel: Any, seconds: float, title: str) -> Quiz:
        where = events.conversation(channel)
        return self.quizzes.open(starter, where, self.publish, seconds, title)

    async def _post(
        self,
        quiz: Quiz,
        channel: Any,
        seconds: float,
        interaction: discord.Interaction | None = None,
    ) -> None:
        """Post the quiz (through the interaction, if any); forget it if that fails."""
        lead, item, text = _layout(quiz, seconds)
        view = discord.ui.View(timeout=None)
        for letter in quiz.item.options:
            view.add_item(QuizButton(quiz.id, letter))
        if quiz.starter is not None or quiz.admins:
            view.add_item(QuizButton(quiz.id, REVEAL))
        try:
            for part in lead:
                await self._send(channel, interaction, part)
            message_id = await self._send(channel, interaction, _with_count(text, 0), view)
        except BaseException:
            self.quizzes.discard(quiz)
            raise
        quiz.message = str(message_id)
        self._posted[quiz.id] = _Posted(channel.get_partial_message(message_id), item, text)

    async def _send(
        self,
        channel: Any,
        interaction: discord.Interaction | None,
        content: str,
        view: discord.ui.View | None = None,
    ) -> int:
        """Post one message: the interaction's response (within its 3 s, directly), then its
        followups; or in the channel, through the outbox."""
        extra: dict[str, Any] = {"view": view} if view is not None else {}
        if interaction is None:
            message = await self.outbox.send(post_write(channel, Post(content), "quiz", **extra))
            return message.id
        if not interaction.response.is_done():
            response = await interaction.response.send_message(
                content, allowed_mentions=NO_PINGS, **extra
            )
            assert response is not None and response.message_id is not None
            return response.message_id
        followup = await interaction.followup.send(
            content, wait=True, allowed_mentions=NO_PINGS, **extra
        )
        return followup.id

    def intercepts(self, message: discord.Message, bot_id: int) -> bool:
        """A reply to an open quiz is not answered before the reveal (no spoilers); someone who
        mentions the bot in it is told why."""
        reference = message.reference
        if reference is None or reference.message_id is None:
            return False
        channel = events.conversation(message.channel).channel
        if self.quizzes.posted_at("discord", channel, str(reference.message_id)) is None:
            return False
        if any(user.id == bot_id for user in message.mentions):
            self._spawn(self._tell(message, texts.WAIT_FOR_REVEAL))
        return True

    @staticmethod
    async def _tell(message: discord.Message, text: str) -> None:
        try:
            await message.reply(text, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("discord: quiz notice not posted (HTTP %s)", exc.status)

    # ---- clicks --------------------------------------------------------------------------------
    async def on_quiz_click(
        self, interaction: discord.Interaction, quiz_id: str, choice: str
    ) -> None:
        """A button click, answered at once (Discord allows 3 s)."""
        quiz = self.quizzes.get(quiz_id)
        user = str(interaction.user.id)
        try:
            if choice == REVEAL:
                await self._on_reveal(interaction, quiz, user)
            else:
                await self._on_answer(interaction, quiz, user, choice)
        except discord.HTTPException as exc:
            log.warning("discord: quiz click not answered (HTTP %s)", exc.status)

    async def _on_answer(
        self, interaction: discord.Interaction, quiz: Quiz | None, user: str, letter: str
    ) -> None:
        changed = quiz is not None and user in quiz.answers
        if quiz is None or letter not in quiz.item.options or not quiz.answer(user, letter):
            await whisper(interaction, texts.QUIZ_CLOSED)
            return
        await whisper(interaction, texts.confirmation(quiz.item, letter, changed))
        self._show_count(quiz)

    async def _on_reveal(
        self, interaction: discord.Interaction, quiz: Quiz | None, user: str
    ) -> None:
        try:
            result = None if quiz is None else self.quizzes.reveal(quiz, user)
        except RevealRefused:
            assert quiz is not None
            revealer = f"<@{quiz.starter}>" if quiz.starter else None
            left = quiz.deadline - self.quizzes.clock()
            await whisper(interaction, texts.reveal_refused(revealer, left))
            return
        if result is None:  # revealed already: a second reveal does nothing
            await interaction.response.defer()
            return
        await self.publish(result, interaction)

    def _show_count(self, quiz: Quiz) -> None:
        """Edit "N answers so far" into the quiz message: best effort, at most once per
        COUNT_INTERVAL, the latest count only."""
        posted = self._posted.get(quiz.id)
        if posted is not None and not quiz.revealed:
            edit = edit_write(posted.message, posted.content(quiz.answered), "quiz count")
            self.outbox.offer(("quiz", quiz.id), edit, COUNT_INTERVAL)

    # ---- the reveal ----------------------------------------------------------------------------
    async def publish(self, reveal: Reveal, interaction: discord.Interaction | None = None) -> None:
        """Close the quiz message (as the click's response, if any), post the answer and the
        tally in a thread on it, then the model's explanation."""
        quiz = reveal.quiz
        await self.outbox.settle(("quiz", quiz.id))  # no count edit after the closed message
        posted = self._posted.pop(quiz.id, None)
        if posted is None:
            return
        closed = texts.closed_question_text(posted.item, quiz.title, reveal.tally.total)
        try:
            if interaction is not None:  # the click's response: within Discord's 3 s, directly
                await interaction.response.edit_message(
                    content=closed, view=None, allowed_mentions=NO_PINGS
                )
            else:
                await self.outbox.send(edit_write(posted.message, closed, "close quiz", view=None))
        except (discord.HTTPException, Undeliverable) as exc:  # e.g. deleted: the answer follows
            log.warning("discord: quiz %s message not closed (%s)", quiz.id, exc)
        name = thread_name(f"{quiz.title}: {quiz.item.question}")
        thread = await self._thread(posted.message, name)
        where = thread or posted.message.channel
        try:
            shown = await self.outbox.send(
                post_write(where, Post(texts.reveal_text(reveal)), "reveal")
            )
        except Undeliverable as exc:
            log.error("discord: quiz %s answer not posted (%s)", quiz.id, exc)
            return
        if quiz.explanation is not None:
            answering = shown if thread else posted.message  # so that history finds the case
            self._spawn(self._explain(quiz, quiz.explanation, answering, name))

    async def _thread(self, message: discord.PartialMessage, name: str) -> discord.Thread | None:
        """A thread on the quiz for its reveal; None in DMs and threads, or if Discord refuses."""
        if not isinstance(message.channel, discord.TextChannel):
            return None
        try:
            return await self.outbox.send(thread_write(message, name))
        except Undeliverable as exc:
            log.warning("discord: no thread for the reveal (%s); posting in the channel", exc)
            return None

    async def _explain(
        self,
        quiz: Quiz,
        explanation: Explanation,
        answering: discord.Message | discord.PartialMessage,
        name: str,
    ) -> None:
        """The model's answer below the reveal, replying to `answering`: at once if ready, else a
        note now and it later."""
        surface = ChannelSurface(answering, name, self.disclaimer)
        reply = discord_reply(self.outbox, surface, f"quiz-{quiz.id}")
        try:
            answer = await explanation.wait(self.quizzes.explain_wait)
            if answer is None:
                reply.start(texts.EXPLANATION_PENDING)
                answer = await explanation.wait(None)
                assert answer is not None  # waiting without a timeout answers or raises
            await reply.deliver(explanation.labelled(answer))
        except ExplanationFailed as exc:
            await reply.fail(str(exc))
        except asyncio.CancelledError:  # the bot is stopping
            if not reply.finished:
                last_word = asyncio.wait_for(reply.fail(texts.EXPLANATION_STOPPED), 5.0)
                await asyncio.gather(asyncio.shield(last_word), return_exceptions=True)
            raise


def _layout(quiz: Quiz, seconds: float) -> tuple[list[str], QuizItem, str]:
    """The messages to post before the one with the buttons (a case too long to share it), and
    the item and text that one shows."""
    revealer = f"<@{quiz.starter}>" if quiz.starter else None
    item = quiz.item
    text = texts.question_text(item, quiz.title, seconds, revealer)
    if len(text) + COUNT_ROOM <= MESSAGE_LIMIT:
        return [], item, text
    lead = split_text(f"**{quiz.title}**\n\n{item.question.strip()}", MESSAGE_LIMIT)
    shown = dataclasses.replace(item, question=CASE_ABOVE)
    return lead, shown, texts.question_text(shown, quiz.title, seconds, revealer)


def _with_count(text: str, answered: int) -> str:
    """The quiz message: its text and how many have answered so far."""
    return f"{text}\n\n{texts.answered_text(answered)}"
