"""The quiz in Slack: `/huatuo quiz`, answer buttons, the reveal, and the case of the day.

What happens when is bot.quiz.flow's; this is its Slack surface: the quiz message in Block Kit
(a button per option, and Reveal), clicks (`block_actions`, acknowledged at once, handled in the
background), ephemeral private messages, and the reveal in the quiz's thread, the model's answer
posted like any answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.core.admission import Admission
from bot.core.events import ConversationRef
from bot.core.outbox import Undeliverable
from bot.core.reply import OutboxReply
from bot.core.splitting import split_text
from bot.quiz import texts
from bot.quiz.flow import CannotPost, QuizFlow, Spawn
from bot.quiz.registry import Quizzes
from bot.quiz.session import Quiz, Reveal
from bot.slack.events import Trigger
from bot.slack.mrkdwn import escape, to_mrkdwn
from bot.slack.reply import POSED_MARK, SlackDelivery

log = logging.getLogger(__name__)

ANSWER_ACTION = re.compile(r"^huatuo_quiz_answer_([A-Z])$")
REVEAL_ACTION = "huatuo_quiz_reveal"
SECTION_LIMIT = 3000  # characters of text per section block
COUNT_INTERVAL = 2.0  # seconds between edits of the "N answers so far" line
CANNOT_POST = (
    "I can't post a quiz in this conversation. Invite me to the channel (`/invite @HuatuoGPT`) "
    "and try again."
)


def mrkdwn(markdown: str, *mentions: str) -> str:
    """Markdown as Slack mrkdwn, keeping the given `<@U…>` mentions live (not escaped)."""
    text = to_mrkdwn(markdown)
    for mention in mentions:
        text = text.replace(escape(mention), mention)
    return text


def sections(text: str) -> list[dict[str, Any]]:
    """Section blocks holding `text` (mrkdwn), split to fit."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}}
        for part in split_text(text, SECTION_LIMIT)
    ]


@dataclass(frozen=True)
class SlackVia:
    """A command or click in `channel` by `user`; `respond` answers a command privately."""

    channel: str
    user: str
    respond: AsyncRespond | None = None


class SlackQuiz:
    """The Slack surface of the quiz flow, and its commands and clicks (one per SlackAdapter)."""

    cannot_post = CANNOT_POST

    def __init__(
        self,
        app: AsyncApp,
        quizzes: Quizzes,
        delivery: SlackDelivery,
        spawn: Spawn,
        admission: Admission | None = None,
    ) -> None:
        self.delivery = delivery
        self.quizzes = quizzes
        self.flow = QuizFlow(quizzes, self, spawn, admission)
        self._spawn = spawn
        self._questions: dict[str, str] = {}  # the open quizzes' question text (mrkdwn)
        app.action(ANSWER_ACTION)(self._on_answer)
        app.action(REVEAL_ACTION)(self._on_reveal)

    # ---- commands and clicks -------------------------------------------------------------------
    async def start(
        self, where: ConversationRef, user: str, groups: frozenset[str], respond: AsyncRespond
    ) -> None:
        """`/huatuo quiz` by `user` in `where` (after the ack)."""
        await self.flow.start(SlackVia(where.channel, user, respond), user, where, groups)

    async def post_case_of_the_day(self, channel: str) -> None:
        """A scheduled quiz nobody started: revealed by its timer (or an admin)."""
        await self.flow.post_case_of_the_day(ConversationRef("slack", channel))

    def intercepts(self, trigger: Trigger) -> bool:
        """A message in the thread of an open quiz is not answered before the reveal (no
        spoilers); someone who mentions the bot there is told why, privately."""
        if trigger.thread_ts == trigger.ts:
            return False
        if self.quizzes.posted_at("slack", trigger.channel, trigger.thread_ts) is None:
            return False
        if trigger.origin == "mention":
            via = SlackVia(trigger.channel, trigger.user)
            self._spawn(self.whisper(via, texts.WAIT_FOR_REVEAL), "quiz-notice")
        return True

    async def _on_answer(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        letter = ANSWER_ACTION.match(action["action_id"]).group(1)  # type: ignore[union-attr]
        quiz_id, user = action.get("value", ""), body["user"]["id"]
        self._spawn(self.flow.answer(_via(body), user, quiz_id, letter), f"answer-{quiz_id}")

    async def _on_reveal(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        quiz_id, user = action.get("value", ""), body["user"]["id"]
        self._spawn(self.flow.reveal(_via(body), user, quiz_id), f"reveal-{quiz_id}")

    # ---- the surface ---------------------------------------------------------------------------
    def mention(self, user: str) -> str:
        return f"<@{user}>"

    async def post(self, quiz: Quiz, seconds: float, via: SlackVia | None) -> str:
        revealer = self.mention(quiz.starter) if quiz.starter else None
        markdown = texts.question_text(quiz.item, quiz.title, seconds, revealer)
        self._questions[quiz.id] = question = mrkdwn(markdown, *filter(None, [revealer]))
        channel = quiz.where.channel
        post = self.delivery.poster(channel).post(question, "quiz", blocks=self._open_blocks(quiz))
        try:
            return await self.delivery.outbox.send(post)
        except BaseException as exc:
            del self._questions[quiz.id]
            if isinstance(exc, Undeliverable):
                raise CannotPost(str(exc)) from exc
            raise

    def _open_blocks(self, quiz: Quiz) -> list[dict[str, Any]]:
        """The question, how many have answered, a button per option, and Reveal."""
        buttons = [
            _button(f"huatuo_quiz_answer_{letter}", letter, quiz) for letter in quiz.item.options
        ]
        if quiz.revealable:
            buttons.append(_button(REVEAL_ACTION, "Reveal", quiz, style="primary"))
        count = {"type": "mrkdwn", "text": texts.answered_text(quiz.answered)}
        return [
            *sections(self._questions[quiz.id]),
            {"type": "context", "elements": [count]},
            {"type": "actions", "block_id": f"quiz-{quiz.id}", "elements": buttons},
        ]

    def show_count(self, quiz: Quiz) -> None:
        if quiz.revealed or not quiz.message:
            return
        poster, question = self.delivery.poster(quiz.where.channel), self._questions[quiz.id]
        edit = poster.edit(quiz.message, question, "quiz count", blocks=self._open_blocks(quiz))
        self.delivery.outbox.offer(("quiz", quiz.id), edit, COUNT_INTERVAL)

    async def close(self, reveal: Reveal, via: SlackVia | None) -> bool:
        quiz = reveal.quiz
        await self.delivery.outbox.settle(("quiz", quiz.id))
        self._questions.pop(quiz.id, None)
        if quiz.message is None:
            return False
        closed = mrkdwn(texts.closed_question_text(quiz.item, quiz.title, reveal.tally.total))
        edit = self.delivery.poster(quiz.where.channel).edit(
            quiz.message, f"{POSED_MARK} {closed}", "close quiz", blocks=sections(closed)
        )
        try:
            await self.delivery.outbox.send(edit)
        except Undeliverable as exc:  # e.g. deleted: the thread still gets the answer
            log.warning("slack: quiz %s message edit failed: %s", quiz.id, exc)
        return True

    async def post_reveal(self, reveal: Reveal) -> OutboxReply[str] | None:
        quiz, channel = reveal.quiz, reveal.quiz.where.channel
        assert quiz.message is not None
        text = f"{POSED_MARK} {mrkdwn(texts.reveal_text(reveal))}"
        try:
            post = self.delivery.poster(channel, quiz.message).post(text, "reveal")
            await self.delivery.outbox.send(post)
        except Undeliverable as exc:  # e.g. the channel was archived: nowhere left to say it
            log.warning("slack: quiz %s reveal could not be posted: %s", quiz.id, exc)
            return None
        return self.delivery.reply(channel, quiz.message, f"quiz-{quiz.id}")

    async def whisper(self, via: SlackVia, text: str, mentions: Sequence[str] = ()) -> None:
        shown = mrkdwn(text, *mentions)
        if via.respond is None:
            await self.delivery.whisper(via.channel, via.user, shown)
            return
        try:
            await via.respond(text=shown, response_type="ephemeral")
        except Exception:
            log.warning("slack: could not answer /huatuo quiz privately", exc_info=True)

    async def ignore(self, via: SlackVia) -> None:
        """Nothing to do: Slack has the click's acknowledgement already."""


def _via(body: dict[str, Any]) -> SlackVia:
    """The channel and person of a click."""
    return SlackVia(body["channel"]["id"], body["user"]["id"])


def _button(action_id: str, label: str, quiz: Quiz, **style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label},
        "value": quiz.id,
        **style,
    }
