"""Who may ask, where and how often: each refusal as the asker sees it on Slack and Discord."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from bot import wiring
from bot.config import Settings
from bot.core import texts
from bot.core.admission import AccessPolicy, Admission, RateLimiter
from bot.core.events import ConversationRef, Question
from bot.slack.reply import FAIL_MARK, NOTICE_MARK
from inference.scripted import Script, ScriptedEngine
from tests.fakes.discord import EPHEMERAL, FakeDiscord
from tests.fakes.slack import BOT_USER_ID, app_mention_event, message_event
from tests.harness.discord import replies, serving
from tests.harness.engines import scripted
from tests.harness.polling import until
from tests.harness.slack import Bot, running


def answers_ok(question: str) -> Script:
    return Script(("## Final Response\n\nok",))


def question(author: str = "U1", channel: str = "C1", **where: object) -> Question:
    return Question("why?", author, ConversationRef("slack", channel, **where), "mention")


# ---- the rules ------------------------------------------------------------------------------


def test_empty_lists_allow_everyone_and_each_list_narrows() -> None:
    assert AccessPolicy().refusal(question()) is None
    in_c1 = AccessPolicy(channels=frozenset({"C1"}))
    assert in_c1.refusal(question(channel="C1")) is None
    assert in_c1.refusal(question(channel="C2")).message == texts.NOT_IN_THIS_CHANNEL
    # a direct message is not "a channel": only HUATUO_ALLOW_DIRECT_MESSAGES governs it
    assert in_c1.refusal(question(channel="D9", direct=True)) is None
    no_dms = AccessPolicy(allow_dms=False)
    assert no_dms.refusal(question(channel="D9", direct=True)).message == texts.NO_DIRECT_MESSAGES
    in_guild = AccessPolicy(guilds=frozenset({"G1"}))
    assert in_guild.refusal(question(guild="G1")) is None
    assert in_guild.refusal(question(guild="G2")).message == texts.NOT_IN_THIS_SERVER


def test_people_pass_by_name_or_by_group_and_admins_pass_everything() -> None:
    policy = AccessPolicy(
        channels=frozenset({"C1"}),
        users=frozenset({"U1"}),
        groups=frozenset({"S1"}),
        admins=frozenset({"UADMIN"}),
    )
    assert policy.refusal(question("U1")) is None
    member = Question(
        "why?", "U2", ConversationRef("slack", "C1"), "mention", groups=frozenset({"S1"})
    )
    assert policy.refusal(member) is None
    assert policy.refusal(question("U3")).message == texts.NOT_ALLOWED
    assert policy.refusal(question("UADMIN", channel="C7")) is None


def test_rate_limit_is_a_sliding_window_that_forgets_old_askers() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 60.0, clock=lambda: now[0])
    assert limiter.acquire("a") is None
    now[0] = 10.0
    assert limiter.acquire("a") is None
    assert limiter.acquire("b") is None  # people are counted separately
    now[0] = 30.0
    assert limiter.acquire("a") == pytest.approx(30.0)  # the first one leaves the window at 60
    now[0] = 60.5
    assert limiter.acquire("a") is None
    assert limiter.acquire("a") is not None
    now[0] = 200.0
    limiter.acquire("c")
    assert limiter.tracked == 1  # a and b have nothing left in the window: forgotten


def test_rate_limit_text_says_the_limit_and_when_to_come_back() -> None:
    assert texts.rate_limited(5, 3600, 125) == (
        "You've reached the limit of 5 questions per hour. Please try again in about 2 minutes."
    )
    assert "1 question per 10 minutes" in texts.rate_limited(1, 600, 30)
    assert "8 questions per 90 minutes" in texts.rate_limited(8, 5400, 100)
    assert "per 90 seconds" in texts.rate_limited(8, 90, 10)


def test_one_question_at_a_time_is_released_even_when_answering_fails() -> None:
    admission = Admission()
    with pytest.raises(RuntimeError), admission.admit(question()) as refusal:
        assert refusal is None
        with admission.admit(question()) as second:
            assert second.message == texts.ONE_AT_A_TIME
        raise RuntimeError("the answer failed")
    assert admission.in_flight == 0
    with admission.admit(question()) as again:
        assert again is None


@pytest.mark.parametrize(
    ("name", "value", "example"),
    [
        ("SLACK_ALLOWED_CHANNELS", "#general", "C0123ABCD"),
        ("SLACK_ALLOWED_USERGROUPS", "@nurses", "S0123ABCD"),
        ("SLACK_ADMINS", "dr.wang", "U0123ABCD"),
        ("DISCORD_ALLOWED_ROLES", "Nurses", "123456789012345678"),
    ],
)
def test_a_name_where_an_id_belongs_is_refused_with_how_to_find_the_id(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, example: str
) -> None:
    monkeypatch.setenv(name, f"{value}, {example}")  # one name, one id
    with pytest.raises(ValidationError, match=rf"'{re.escape(value)}' is not an id.*{example}"):
        Settings(_env_file=None)


def test_settings_read_comma_or_space_separated_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_ALLOWED_CHANNELS", "C1, C2  C3")
    monkeypatch.setenv("DISCORD_ALLOWED_ROLES", "")
    monkeypatch.setenv("HUATUO_RATE_LIMIT", "4")
    admission = wiring.make_admission(Settings(_env_file=None))
    assert admission.policy("slack").channels == {"C1", "C2", "C3"}
    assert admission.policy("discord").groups == frozenset()
    assert admission.limiter.limit == 4


# ---- on Slack -------------------------------------------------------------------------------


def slack_admission(**policy: object) -> Admission:
    return Admission({"slack": AccessPolicy(**policy)})


async def ask(bot: Bot, text: str, user: str = "U1", channel: str = "C1") -> str:
    """`user` mentions the bot in `channel`; returns the first bot reply's text once it is final."""
    ts = bot.slack.add_message(channel, f"<@{BOT_USER_ID}> {text}", user=user)
    await bot.event(app_mention_event(text, ts=ts, user=user, channel=channel))
    await bot.idle()
    return bot.bot_messages(channel, ts)[0].text


async def test_slack_channel_allow_list_refuses_elsewhere_and_admins_pass() -> None:
    admission = slack_admission(channels=frozenset({"C1"}), admins=frozenset({"UADMIN"}))
    async with (
        scripted(answers_ok) as engine,
        running(engine, admission=admission) as bot,
    ):
        assert await ask(bot, "what is sepsis?", channel="C2") == (
            f"{FAIL_MARK} {texts.NOT_IN_THIS_CHANNEL}"
        )
        assert not engine.requests, "a refused question never reaches the model"
        assert (await ask(bot, "what is sepsis?", channel="C1")).startswith("ok")
        assert (await ask(bot, "what is sepsis?", user="UADMIN", channel="C2")).startswith("ok")


async def test_slack_user_group_members_are_allowed_others_told_whom_to_ask() -> None:
    admission = slack_admission(groups=frozenset({"S1"}))
    async with (
        scripted(answers_ok) as engine,
        running(engine, admission=admission) as bot,
    ):
        bot.slack.usergroups["S1"] = ["U2"]
        assert (await ask(bot, "dose of amoxicillin?", user="U2")).startswith("ok")
        refused = await ask(bot, "dose of amoxicillin?", user="U1")
        assert refused == f"{FAIL_MARK} {texts.NOT_ALLOWED}"
        assert len(bot.slack.calls_to("usergroups.users.list")) == 1, "membership is cached"


async def test_slack_direct_messages_can_be_turned_off() -> None:
    admission = slack_admission(allow_dms=False)
    async with (
        scripted(answers_ok) as engine,
        running(engine, admission=admission) as bot,
    ):
        ts = bot.slack.add_message("D1", "what is sepsis?")
        await bot.event(message_event("what is sepsis?", channel="D1", ts=ts, channel_type="im"))
        await bot.idle()
        assert bot.bot_messages("D1", ts)[0].text == f"{FAIL_MARK} {texts.NO_DIRECT_MESSAGES}"


async def test_slack_rate_limit_counts_per_person_and_says_when_to_return() -> None:
    admission = Admission(rate_limit=2, rate_window=3600)
    async with (
        scripted(answers_ok) as engine,
        running(engine, admission=admission) as bot,
    ):
        for _ in range(2):
            assert (await ask(bot, "what is sepsis?")).startswith("ok")
        refused = await ask(bot, "what is sepsis?")
        assert refused.startswith(f"{FAIL_MARK} You've reached the limit of 2 questions per hour.")
        assert "try again in about 1 hour" in refused
        assert (await ask(bot, "what is sepsis?", user="U2")).startswith("ok")
        assert len(engine.requests) == 3


async def test_slack_second_question_while_the_first_is_answered_waits_its_turn() -> None:
    script = Script(("## Thinking\n\n", "slow", "## Final Response\n\nfirst"), stall_at=1)
    async with scripted(lambda q: script) as engine, running(engine, admission=Admission()) as bot:
        first = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> first")
        await bot.event(app_mention_event("first", ts=first))
        await until(lambda: engine.requests)
        assert await ask_without_waiting(bot, "second") == f"{FAIL_MARK} {texts.ONE_AT_A_TIME}"
        engine.release.set()
        await bot.idle()
        assert bot.bot_messages("C1", first)[0].text.startswith("first")
        assert (await ask(bot, "third")).startswith("first"), "asking again works once answered"


async def ask_without_waiting(bot: Bot, text: str) -> str:
    """Ask while another answer is in flight; wait for this question's refusal only."""
    ts = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> {text}")
    await bot.event(app_mention_event(text, ts=ts))
    message = await until(
        lambda: [m for m in bot.bot_messages("C1", ts) if m.text.startswith(FAIL_MARK)]
    )
    return message[0].text


async def test_emergency_notice_is_shown_even_when_the_question_is_refused() -> None:
    admission = slack_admission(channels=frozenset({"C1"}))
    async with (
        scripted(answers_ok) as engine,
        running(engine, admission=admission) as bot,
    ):
        ts = bot.slack.add_message("C2", f"<@{BOT_USER_ID}> I have crushing chest pain right now")
        mention = app_mention_event("I have crushing chest pain right now", ts=ts, channel="C2")
        await bot.event(mention)
        await bot.idle()
        shown = [m.text for m in bot.bot_messages("C2", ts)]
        assert len(shown) == 2 and shown[0].startswith(NOTICE_MARK), shown  # above the refusal
        assert shown[1] == f"{FAIL_MARK} {texts.NOT_IN_THIS_CHANNEL}"
        assert not engine.requests


# ---- on Discord ----------------------------------------------------------------------------


def discord_admission(**policy: object) -> Admission:
    return Admission({"discord": AccessPolicy(**policy)})


async def discord_answer(fake: FakeDiscord, text: str, **options: object) -> str:
    asked = await fake.dispatch_message(text, mentions_bot=True, **options)
    parts = await until(
        lambda: [m for m in replies(fake, asked) if not m["content"].startswith("Thinking")]
    )
    return parts[0]["content"]


async def test_discord_server_channel_and_role_allow_lists(fake: FakeDiscord) -> None:
    nurses = await fake.add_role("nurses")
    nurse = fake.make_user("nurse", roles=(nurses,))
    visitor = fake.make_user("visitor")
    engine = ScriptedEngine(answers_ok)
    await engine.start()
    try:
        other_server = discord_admission(guilds=frozenset({"1"}))
        async with serving(fake, engine, admission=other_server):
            assert texts.NOT_IN_THIS_SERVER in await discord_answer(fake, "what is sepsis?")
        other_channel = discord_admission(channels=frozenset({"1"}))
        async with serving(fake, engine, admission=other_channel):
            assert texts.NOT_IN_THIS_CHANNEL in await discord_answer(fake, "what is sepsis?")
        by_role = discord_admission(
            groups=frozenset({nurses}), channels=frozenset({fake.channel_id})
        )
        async with serving(fake, engine, admission=by_role):
            assert (await discord_answer(fake, "what is sepsis?", author=nurse)).startswith("ok")
            refused = await discord_answer(fake, "what is sepsis?", author=visitor)
            assert texts.NOT_ALLOWED in refused
        assert len(engine.requests) == 1
    finally:
        await engine.close(grace=0)


async def test_slack_a_full_queue_is_explained_and_the_waiting_are_told_their_place() -> None:
    script = Script(("## Final Response\n\nok",), stall_at=0)
    stalled = ScriptedEngine(lambda q: script, max_batch=1, max_queue=1)
    await stalled.start()
    try:
        async with running(stalled, admission=Admission()) as bot:
            for user in ("U1", "U2", "U3"):  # one answering, one waiting, one too many
                ts = bot.slack.add_message("C1", f"<@{BOT_USER_ID}> dose?", user=user)
                await bot.event(app_mention_event("dose?", ts=ts, user=user))
                await until(lambda ts=ts: bot.bot_messages("C1", ts))
            waiting, full = (bot.bot_messages("C1", ts)[0] for ts in _asked(bot)[1:])
            await until(lambda: "next in line" in waiting.text)
            await until(lambda: full.text.startswith(FAIL_MARK))
            assert "Sorry, too many questions are waiting (request " in full.text, full.text
            stalled.release.set()
            await bot.idle()
    finally:
        await stalled.close(grace=0)


def _asked(bot: Bot) -> list[str]:
    """The ts of each person's question in C1, oldest first."""
    return [m.ts for m in bot.slack.messages if m.user != BOT_USER_ID and m.thread_ts is None]


async def test_discord_ask_in_an_allowed_server_and_channel_is_answered(fake: FakeDiscord) -> None:
    engine = ScriptedEngine(answers_ok)
    await engine.start()
    guilds, channels = frozenset({fake.guild_id}), frozenset({fake.channel_id})
    here = discord_admission(guilds=guilds, channels=channels)
    try:
        async with serving(fake, engine, admission=here):
            interaction = await fake.dispatch_interaction("ask", {"question": "What is gout?"})
            original = await until(lambda: fake.originals.get(interaction["token"]))
            answer = await until(lambda: [m for m in replies(fake, original) if "ok" in str(m)])
    finally:
        await engine.close(grace=0)
    assert answer[0]["content"].startswith("ok")


@pytest.mark.parametrize("command", ["my patient John Smith, MRN 12345: dose?", "quiz"])
async def test_slack_slash_commands_are_refused_privately_before_anything_is_posted(
    command: str,
) -> None:
    admission = slack_admission(channels=frozenset({"C9"}))
    async with scripted(answers_ok) as engine, running(engine, admission=admission) as bot:
        url = bot.slack.new_response_url()
        await bot.command(command, url)  # in C1
        [response] = await until(lambda: bot.slack.responses[url])
        await bot.idle()
    assert response == {"text": texts.NOT_IN_THIS_CHANNEL, "response_type": "ephemeral"}
    assert not bot.slack.calls_to("chat.postMessage"), "nothing was shown in C1"
    assert not engine.requests


async def test_slack_a_posted_quiz_counts_toward_the_rate_limit_a_failed_one_does_not() -> None:
    admission = Admission(rate_limit=1, rate_window=3600)
    async with (
        scripted(lambda q: Script(("## Final Response\n\nThe answer is A.",))) as engine,
        running(engine, admission=admission) as bot,
    ):

        async def refused_quiz() -> str:
            """/huatuo quiz that is not posted: what the starter was told privately."""
            url = bot.slack.new_response_url()
            await bot.command("quiz", url)
            [response] = await until(lambda: bot.slack.responses[url])
            return response["text"]

        bot.slack.error_next("chat.postMessage", "not_in_channel")
        assert (await refused_quiz()).startswith("I can't post a quiz")
        assert admission.limiter.tracked == 0, "a quiz that was not posted is not counted"
        await bot.command("quiz")
        await until(lambda: admission.limiter.tracked == 1)  # posted, and counted
        over_the_limit = await refused_quiz()
    assert over_the_limit.startswith("You've reached the limit of 1 question per hour.")


async def test_discord_ask_refused_privately_and_roles_unknown_in_direct_messages(
    fake: FakeDiscord,
) -> None:
    nurses = await fake.add_role("nurses")
    engine = ScriptedEngine(answers_ok)
    await engine.start()
    try:
        async with serving(fake, engine, admission=discord_admission(groups=frozenset({nurses}))):
            interaction = await fake.dispatch_interaction("ask", {"question": "What is gout?"})
            [callback] = await fake.wait_for_calls("POST", "/callback$", timeout=3)
            dm = await fake.dispatch_message("What is gout?", guild=False)
            [told] = await until(lambda: replies(fake, dm))
    finally:
        await engine.close(grace=0)
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] == EPHEMERAL
    assert callback.json["data"]["content"] == texts.NOT_ALLOWED
    assert interaction["token"] in fake.originals, "answered at once, privately"
    assert told["content"] == texts.NO_ROLES_IN_DIRECT_MESSAGES
    assert not engine.requests


async def test_a_refused_slash_question_still_gets_the_emergency_notice_first() -> None:
    admission = slack_admission(channels=frozenset({"C9"}))
    async with scripted(answers_ok) as engine, running(engine, admission=admission) as bot:
        url = bot.slack.new_response_url()
        await bot.command("I want to kill myself", url)  # in C1
        [response] = await until(lambda: bot.slack.responses[url])
    assert response["response_type"] == "ephemeral"
    assert "988" in response["text"], "crisis lines first"
    assert response["text"].endswith(texts.NOT_IN_THIS_CHANNEL)
    assert not bot.slack.calls_to("chat.postMessage")
