"""The quiz on Discord: `/quiz`, the clicks on its buttons, and the case of the day.

What happens when is bot.quiz.flow's; its messages are bot.discord.quiz_surface's. Every click
is answered at once: learners get a private (ephemeral) confirmation, the message shows only how
many have answered. The reveal closes the message as the click's response and opens a thread on
it with the correct answer and the tally, then the model's own answer, posted like any answer.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from bot.core.admission import Admission
from bot.core.outbox import Outbox
from bot.discord import events
from bot.discord.quiz_surface import REVEAL, DiscordQuizSurface, DiscordVia, QuizButton
from bot.discord.surface import NO_PINGS, whisper
from bot.quiz import texts
from bot.quiz.flow import QuizFlow, Spawn
from bot.quiz.registry import Quizzes

log = logging.getLogger(__name__)

COUNT_INTERVAL = 2.0  # seconds between edits of the "N answers so far" line


class DiscordQuiz:
    """The quizzes of one DiscordAdapter (sharing its client, outbox and tasks): `/quiz`, the
    clicks and the case of the day, handed to the quiz flow."""

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
        self.surface = DiscordQuizSurface(outbox, disclaimer, COUNT_INTERVAL)
        self.flow = QuizFlow(quizzes, self.surface, spawn, admission)
        self._spawn = spawn
        client.add_dynamic_items(QuizButton)
        client.event(self.on_quiz_click)

    def command(self) -> app_commands.Command[Any, ..., None]:
        @app_commands.command(
            name="quiz", description="Post a multiple-choice question for learners to answer"
        )
        async def quiz(interaction: discord.Interaction) -> None:
            await self._on_command(interaction)

        return quiz

    async def _on_command(self, interaction: discord.Interaction) -> None:
        """`/quiz`: the quiz is the interaction's response, so it is answered at once."""
        channel = interaction.channel
        if channel is None or not hasattr(channel, "get_partial_message"):
            await whisper(interaction, self.surface.cannot_post)
            return
        user, roles = str(interaction.user.id), events.role_ids(interaction.user)
        via = DiscordVia(channel, interaction)
        await self.flow.start(via, user, events.conversation(channel), roles)

    async def post_case_of_the_day(self, channel_id: str) -> None:
        """A scheduled quiz nobody started, in a channel given by id: revealed by its timer (or
        an admin). Raises when the channel cannot be found or written to."""
        channel = self.client.get_channel(int(channel_id)) or await self.client.fetch_channel(
            int(channel_id)
        )
        if not hasattr(channel, "get_partial_message"):
            raise ValueError(f"Discord channel {channel_id} does not take messages")
        await self.flow.post_case_of_the_day(events.conversation(channel), DiscordVia(channel))

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
            self._spawn(self._tell(message, texts.WAIT_FOR_REVEAL), "quiz-notice")
        return True

    @staticmethod
    async def _tell(message: discord.Message, text: str) -> None:
        try:
            await message.reply(text, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("discord: quiz notice not posted (HTTP %s)", exc.status)

    async def on_quiz_click(
        self, interaction: discord.Interaction, quiz_id: str, choice: str
    ) -> None:
        """A button click, answered at once (Discord allows 3 s)."""
        via, user = DiscordVia(interaction.channel, interaction), str(interaction.user.id)
        try:
            if choice == REVEAL:
                await self.flow.reveal(via, user, quiz_id)
            else:
                await self.flow.answer(via, user, quiz_id, choice)
        except discord.HTTPException as exc:
            log.warning("discord: quiz click not answered (HTTP %s)", exc.status)
