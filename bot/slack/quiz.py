"""The quiz in Slack: `/huatuo quiz`, answer buttons, the reveal, and the case of the day.

The quiz message carries one button per option and a Reveal button (Block Kit); clicks arrive as
`block_actions` payloads, acknowledged at once. Learners get a private (ephemeral) confirmation;
the message shows only how many have answered. The reveal edits the message (buttons removed,
the correct option marked) and posts in its thread the correct answer and the tally, then the
model's own answer, posted like any answer (its thinking follows in the thread).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.core.events import ConversationRef
from bot.core.outbox import Undeliverable
from bot.core.splitting import split_text
from bot.quiz import texts
from bot.quiz.explanation import Explanation, ExplanationFailed
from bot.quiz.registry import QuizNotOpened, Quizzes
from bot.quiz.session import Quiz, Reveal, RevealRefused
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

Spawn = Callable[[Coroutine[Any, Any, None], str | None], None]


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


class SlackQuiz:
    """Starts, tracks and reveals quizzes for one SlackAdapter (sharing its app and tasks)."""

    def __init__(
        self,
        app: AsyncApp,
        quizzes: Quizzes,
        delivery: SlackDelivery,
        spawn: Spawn,
    ) -> None:
        self.delivery = delivery
        self.quizzes = quizzes
        self._spawn = spawn
        self._questions: dict[str, str] = {}  # the open quizzes' question text (mrkdwn)
        app.action(ANSWER_ACTION)(self._on_answer)
        app.action(REVEAL_ACTION)(self._on_reveal)

    # ---- starting ------------------------------------------------------------------------------
    async def start(self, command: Mapping[str, Any], respond: AsyncRespond) -> bool:
        """`/huatuo quiz` (after the ack): post a quiz, or tell the starter privately why not;
        whether it was posted."""
        channel, user = command["channel_id"], command["user_id"]
        try:
            await self._post(channel, user, texts.QUIZ_TITLE, self.quizzes.seconds)
        except QuizNotOpened as exc:
            await respond(text=str(exc), response_type="ephemeral")
        except Undeliverable as exc:
            log.warning("slack: cannot post a quiz in %s: %s", channel, exc)
            await respond(text=CANNOT_POST, response_type="ephemeral")
        else:
            return True
        return False

    async def post_case_of_the_day(self, channel: str) -> None:
        """A scheduled quiz nobody started: revealed by its timer (or an admin)."""
        await self._post(channel, None, texts.CASE_TITLE, self.quizzes.case_seconds)

    async def _post(self, channel: str, starter: str | None, title: str, seconds: float) -> None:
        where = ConversationRef("slack", channel)
        quiz = self.quizzes.open(starter, where, self.publish, seconds, title)
        revealer = f"<@{starter}>" if starter else None
        markdown = texts.question_text(quiz.item, title, seconds, revealer)
        self._questions[quiz.id] = question = mrkdwn(markdown, *filter(None, [revealer]))
        post = self.delivery.poster(channel).post(question, "quiz", blocks=self._open_blocks(quiz))
        try:
            quiz.message = await self.delivery.outbox.send(post)
        except BaseException:
            self.quizzes.discard(quiz)
            self._questions.pop(quiz.id, None)
            raise
        if quiz.answers:  # clicked while the post's response was still on its way
            self._show_count(quiz)

    def _open_blocks(self, quiz: Quiz) -> list[dict[str, Any]]:
        """The question, how many have answered, a button per option, and Reveal."""
        buttons: list[dict[str, Any]] = [
            {
                "type": "button",
                "action_id": f"huatuo_quiz_answer_{letter}",
                "text": {"type": "plain_text", "text": letter},
                "value": quiz.id,
            }
            for letter in quiz.item.options
        ]
        if quiz.starter is not None or quiz.admins:
            buttons.append(
                {
                    "type": "button",
                    "action_id": REVEAL_ACTION,
                    "text": {"type": "plain_text", "text": "Reveal"},
                    "style": "primary",
                    "value": quiz.id,
                }
            )
        count = {"type": "mrkdwn", "text": texts.answered_text(quiz.answered)}
        return [
            *sections(self._questions[quiz.id]),
            {"type": "context", "elements": [count]},
            {"type": "actions", "block_id": f"quiz-{quiz.id}", "elements": buttons},
        ]

    def intercepts(self, trigger: Trigger) -> bool:
        """A message in the thread of an open quiz is not answered before the reveal (no
        spoilers); someone who mentions the bot there is told why, privately."""
        if trigger.thread_ts == trigger.ts:
            return False
        if self.quizzes.posted_at("slack", trigger.channel, trigger.thread_ts) is None:
            return False
        if trigger.origin == "mention":
            self._spawn(self._tell(trigger.channel, trigger.user, texts.WAIT_FOR_REVEAL), None)
        return True

    # ---- clicks --------------------------------------------------------------------------------
    async def _on_answer(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body["channel"]["id"]
        letter = ANSWER_ACTION.match(action["action_id"]).group(1)  # type: ignore[union-attr]
        quiz = self.quizzes.get(action.get("value", ""))
        if quiz is None or letter not in quiz.item.options:
            self._spawn(self._tell(channel, user, texts.QUIZ_CLOSED), None)
            return
        changed = user in quiz.answers
        if not quiz.answer(user, letter):
            self._spawn(self._tell(channel, user, texts.QUIZ_CLOSED), None)
            return
        self._spawn(self._tell(channel, user, texts.confirmation(quiz.item, letter, changed)), None)
        self._show_count(quiz)

    async def _on_reveal(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user, channel = body["user"]["id"], body["channel"]["id"]
        quiz = self.quizzes.get(action.get("value", ""))
        if quiz is None:  # already revealed: a second reveal does nothing
            return
        try:
            result = self.quizzes.reveal(quiz, user)
        except RevealRefused:
            revealer = f"<@{quiz.starter}>" if quiz.starter else None
            refusal = texts.reveal_refused(revealer, quiz.deadline - self.quizzes.clock())
            self._spawn(self._tell(channel, user, refusal, *filter(None, [revealer])), None)
            return
        if result is not None:
            self._spawn(self.publish(result), f"reveal-{quiz.id}")

    async def _tell(self, channel: str, user: str, markdown: str, *mentions: str) -> None:
        """A private message to one person in the channel."""
        await self.delivery.whisper(channel, user, mrkdwn(markdown, *mentions))

    def _show_count(self, quiz: Quiz) -> None:
        """Edit "N answers so far" into the quiz message: best effort, at most once per
        COUNT_INTERVAL, the latest count only."""
        if quiz.revealed or not quiz.message:
            return
        poster = self.delivery.poster(quiz.where.channel)
        blocks = self._open_blocks(quiz)
        edit = poster.edit(quiz.message, self._questions[quiz.id], "quiz count", blocks=blocks)
        self.delivery.outbox.offer(("quiz", quiz.id), edit, COUNT_INTERVAL)

    # ---- the reveal ----------------------------------------------------------------------------
    async def publish(self, reveal: Reveal) -> None:
        """Close the quiz message, post the answer and tally in its thread, then the explanation."""
        quiz = reveal.quiz
        # An older count edit must not land after the closed message.
        await self.delivery.outbox.settle(("quiz", quiz.id))
        self._questions.pop(quiz.id, None)
        if quiz.message is None:
            return
        send, channel = self.delivery.outbox.send, quiz.where.channel
        closed = mrkdwn(texts.closed_question_text(quiz.item, quiz.title, reveal.tally.total))
        edit = self.delivery.poster(channel).edit(
            quiz.message, f"{POSED_MARK} {closed}", "close quiz", blocks=sections(closed)
        )
        try:
            await send(edit)
        except Undeliverable as exc:  # e.g. deleted: the thread still gets the answer
            log.warning("slack: quiz %s message edit failed: %s", quiz.id, exc)
        reveal_text = f"{POSED_MARK} {mrkdwn(texts.reveal_text(reveal))}"
        try:
            await send(self.delivery.poster(channel, quiz.message).post(reveal_text, "reveal"))
        except Undeliverable as exc:  # e.g. the channel was archived: nowhere left to say it
            log.warning("slack: quiz %s reveal could not be posted: %s", quiz.id, exc)
            return
        if quiz.explanation is not None:
            self._spawn(self._explain(quiz, quiz.explanation), f"explain-{quiz.id}")

    async def _explain(self, quiz: Quiz, explanation: Explanation) -> None:
        """The model's answer in the thread: at once if ready, else a note now and it later."""
        assert quiz.message is not None
        reply = self.delivery.reply(quiz.where.channel, quiz.message, f"quiz-{quiz.id}")
        try:
            answer = await explanation.wait(self.quizzes.explain_wait)
            if answer is None:
                reply.start(texts.EXPLANATION_PENDING)
                answer = await explanation.wait(None)
                assert answer is not None  # waiting without a timeout answers or raises
            await reply.deliver(explanation.labelled(answer))
        except ExplanationFailed as exc:
            await reply.fail(str(exc))
        except asyncio.CancelledError:
            if not reply.finished:
                await asyncio.shield(_quietly(reply.fail(texts.EXPLANATION_STOPPED)))
            raise


async def _quietly(work: Coroutine[Any, Any, Any], timeout: float = 5.0) -> None:
    """Try to tell the learners something while stopping; log instead of raising."""
    try:
        await asyncio.wait_for(work, timeout)
    except Exception:
        log.warning("slack: could not post a quiz notice", exc_info=True)
