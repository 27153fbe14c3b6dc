"""The fake Discord server with the real discord.py client: login, chat, threads, commands."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.fakes.discord import API, DiscordLimits, FakeDiscord, buttons

NO_MENTIONS = discord.AllowedMentions.none()
MESSAGES = r"^/channels/\d+/messages$"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=100) as server:
        yield server


def _client(trace: aiohttp.TraceConfig | None = None) -> discord.Client:
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.dm_messages = True
    intents.message_content = True
    # on_ready waits guild_ready_timeout (2 s by default) after the last GUILD_CREATE.
    return discord.Client(intents=intents, guild_ready_timeout=0.05, http_trace=trace)


def _answers() -> tuple[aiohttp.TraceConfig, list[tuple[str, int, dict[str, str]]]]:
    """A trace for discord.Client(http_trace=...) recording (path, status, headers) of each
    answer discord.py received."""
    answers: list[tuple[str, int, dict[str, str]]] = []

    async def on_end(session: object, context: object, end: aiohttp.TraceRequestEndParams) -> None:
        path = end.url.path.removeprefix(API)
        answers.append((path, end.response.status, dict(end.response.headers)))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    return trace, answers


def _channel(client: discord.Client, fake: FakeDiscord) -> discord.TextChannel:
    channel = client.get_channel(int(fake.channel_id))
    assert isinstance(channel, discord.TextChannel)
    return channel


async def _post_raw(fake: FakeDiscord, content: str) -> tuple[int, dict[str, str], dict]:
    """POST a message to the fake's channel outside discord.py (whose buckets then know
    nothing of it); its status, headers and JSON body."""
    url = f"{fake.base_url}{API}/channels/{fake.channel_id}/messages"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"content": content}) as response,
    ):
        return response.status, dict(response.headers), await response.json()


async def test_login_and_ready(fake: FakeDiscord) -> None:
    client = _client()
    async with fake.running(client):
        assert client.user is not None and client.user.id == int(fake.bot_user["id"])
        guild = client.get_guild(int(fake.guild_id))
        assert guild is not None and guild.me is not None
        assert isinstance(guild.get_channel(int(fake.channel_id)), discord.TextChannel)
        assert client.application_id == int(fake.application_id)
    assert fake.identifies[0]["intents"] == client.intents.value
    assert fake.gateway_urls[0].startswith("/gateway?")
    assert [c.path for c in fake.calls[:2]] == ["/users/@me", "/oauth2/applications/@me"]


async def test_replies_threads_and_dms(fake: FakeDiscord) -> None:
    client = _client()

    @client.event
    async def on_message(message: discord.Message) -> None:
        if message.author == client.user:
            return
        if message.guild is None:
            await message.author.send(f"dm: {message.content}", allowed_mentions=NO_MENTIONS)
            return
        reply = await message.reply("the answer", allowed_mentions=NO_MENTIONS)
        thread = await reply.create_thread(name="Thinking")
        await thread.send("the thinking", file=discord.File(io.BytesIO(b"steps"), "thinking.md"))

    async with fake.running(client):
        asked = await fake.dispatch_message("what is a fever?", mentions_bot=True)
        await fake.wait_for_calls("POST", r"^/channels/\d+/messages$", count=2)
        await fake.dispatch_message("hello", guild=False)
        await fake.wait_for_calls("POST", r"^/channels/\d+/messages$", count=3)

    assert asked["content"].startswith(f"<@{fake.bot_user['id']}>")
    question, answer = fake.channel_messages(fake.channel_id)
    assert (question["id"], answer["content"]) == (asked["id"], "the answer")
    assert answer["message_reference"]["message_id"] == asked["id"]
    reply_call = fake.calls_to("POST", rf"^/channels/{fake.channel_id}/messages$")[0]
    assert reply_call.json["allowed_mentions"]["parse"] == []
    [thread] = fake.threads
    assert thread.starter is answer and thread.channel["parent_id"] == fake.channel_id
    [thinking] = fake.channel_messages(thread.channel["id"])
    assert thinking["content"] == "the thinking"
    assert thinking["attachments"][0]["filename"] == "thinking.md"
    upload = fake.calls_to("POST", rf"^/channels/{thread.channel['id']}/messages$")[0].files[0]
    assert (upload.field, upload.data) == ("files[0]", b"steps")
    assert len(fake.calls_to("POST", "^/users/@me/channels$")) == 1
    dm = fake.channel_messages(fake.dm_channel_id(fake.human))
    assert [m["content"] for m in dm] == ["hello", "dm: hello"]
    assert "guild_id" not in dm[0]


async def test_slash_command_defers_then_answers(fake: FakeDiscord) -> None:
    client = _client()
    tree = app_commands.CommandTree(client)

    @tree.command(name="ask", description="Ask a medical question")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"thinking about {question}")
        await interaction.edit_original_response(content="final answer")

    async with fake.running(client):
        await tree.sync()
        interaction = await fake.dispatch_interaction("ask", {"question": "fever?"})
        await fake.wait_for_calls("PATCH", "/messages/@original$")

    assert [c["name"] for c in fake.commands["global"]] == ["ask"]
    [callback] = fake.calls_to("POST", rf"^/interactions/{interaction['id']}/")
    assert callback.json["type"] == 5
    original, followup = fake.channel_messages(fake.channel_id)
    assert original is fake.originals[interaction["token"]]
    assert (original["content"], original["flags"]) == ("final answer", 0)
    assert followup["content"] == "thinking about fever?"


async def test_heartbeats_and_resume_after_reconnect(fake: FakeDiscord) -> None:
    client = _client()
    seen: asyncio.Queue[str] = asyncio.Queue()

    @client.event
    async def on_message(message: discord.Message) -> None:
        await seen.put(message.content)

    async with fake.running(client):
        while len(fake.heartbeats) < 3:
            await asyncio.sleep(0.05)
        assert client.latency < 1
        session = fake.session_id
        await fake.send_reconnect()
        await fake.dispatch_message("still there?")
        assert await asyncio.wait_for(seen.get(), 5) == "still there?"

    assert (len(fake.identifies), len(fake.resumes)) == (1, 1)
    assert fake.resumes[0]["session_id"] == session
    assert fake.gateway_urls[-1].startswith("/gateway-resume?")


async def test_rate_limit_is_retried_and_unknown_routes_404(fake: FakeDiscord) -> None:
    client = _client()
    async with fake.running(client):
        fake.fail_next("POST", r"/messages$", retry_after=0.1)
        channel = client.get_channel(int(fake.channel_id))
        assert isinstance(channel, discord.TextChannel)
        await channel.send("hi")
        with pytest.raises(discord.NotFound):
            await client.http.request(discord.http.Route("GET", "/no/such/route"))

    first, second = fake.calls_to("POST", r"/messages$")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.1
    assert fake.calls[-1].status == 404


async def test_edit_delete_history_reactions_and_guild_sync(fake: FakeDiscord) -> None:
    client = _client()
    tree = app_commands.CommandTree(client)

    @tree.command(name="ask", description="Ask a medical question")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await interaction.response.send_message(f"answer to {question}")

    async with fake.running(client):
        guild = discord.Object(int(fake.guild_id))
        tree.copy_global_to(guild=guild)
        assert [c.name for c in await tree.sync(guild=guild)] == ["ask"]
        channel = client.get_channel(int(fake.channel_id))
        assert isinstance(channel, discord.TextChannel)
        async with channel.typing():
            first = await channel.send("draft")
        await first.edit(content="final")
        await first.add_reaction("\N{HOURGLASS}")
        await first.remove_reaction("\N{HOURGLASS}", channel.guild.me)
        doomed = await channel.send("oops")
        await doomed.delete()
        history = [m.content async for m in channel.history(limit=10)]
        fetched = await channel.fetch_message(first.id)
        interaction = await fake.dispatch_interaction("ask", {"question": "cough"}, guild=False)
        await fake.wait_for_calls("POST", "/callback$")

    assert history == ["final"] and fetched.content == "final"
    assert fake.commands[fake.guild_id][0]["guild_id"] == fake.guild_id
    assert [c.status for c in fake.calls_to("PUT", "/reactions/")] == [204]
    dm = fake.channel_messages(fake.dm_channel_id(fake.human))
    assert [(m["content"], m["type"]) for m in dm] == [("answer to cough", 20)]
    assert dm[0] is fake.originals[interaction["token"]]


async def test_button_clicks_reach_a_persistent_view(fake: FakeDiscord) -> None:
    client = _client()
    clicks: list[tuple[str, int]] = []
    roles: list[tuple[list[str], bool]] = []

    class Vote(discord.ui.View):
        def __init__(self) -> None:
            super().__init__(timeout=None)

        @discord.ui.button(label="Yes", custom_id="vote:yes")
        async def yes(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
            clicks.append(("yes", interaction.user.id))
            assert isinstance(interaction.user, discord.Member)
            names = [r.name for r in interaction.user.roles]
            roles.append((names, interaction.permissions.manage_messages))
            await interaction.response.send_message("noted", ephemeral=True)

        @discord.ui.button(label="Close", custom_id="vote:close")
        async def close(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
            clicks.append(("close", interaction.user.id))
            for item in self.children:
                assert isinstance(item, discord.ui.Button)
                item.disabled = True
            await interaction.response.edit_message(content="closed", view=self)
            await interaction.followup.send("results")

    async with fake.running(client):
        client.add_view(Vote())  # persistent: found by custom_id, whatever the message
        channel = client.get_channel(int(fake.channel_id))
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("Vote?", view=Vote())
        poll = fake.messages[fake.channel_id][str(sent.id)]
        educator = await fake.add_role("Educator", discord.Permissions(manage_messages=True))
        bob = fake.make_user("bob", roles=(educator,))
        await fake.click_button(poll, "vote:yes", bob)
        [noted] = await fake.wait_for_calls("POST", "/callback$")
        await fake.click_button(poll, "vote:close")
        await fake.wait_for_calls("POST", r"^/webhooks/")
        with pytest.raises(ValueError, match="no enabled button"):
            await fake.click_button(poll, "vote:yes")

    assert clicks == [("yes", int(bob["id"])), ("close", int(fake.human["id"]))]
    assert roles == [(["@everyone", "Educator"], True)]
    assert (noted.json["type"], noted.json["data"]["flags"]) == (4, 64)
    assert [b["label"] for b in buttons(poll)] == ["Yes", "Close"]
    assert poll["content"] == "closed" and all(b["disabled"] for b in buttons(poll))
    update = fake.calls_to("POST", "/callback$")[1]
    assert update.json["type"] == 7
    ephemeral, results = fake.channel_messages(fake.channel_id)[1:]
    assert ephemeral["flags"] & 64 and ephemeral["interaction_metadata"]["type"] == 3
    assert results["content"] == "results"


async def test_rate_limit_headers_let_discord_py_wait_before_a_429(fake: FakeDiscord) -> None:
    trace, answers = _answers()
    client = _client(trace)
    async with fake.running(client):
        fake.limits = DiscordLimits(scale=20)  # 5 messages per 0.25 s per channel
        channel = _channel(client, fake)
        sent = await asyncio.gather(*(channel.send(f"part {n}") for n in range(12)))
        thread = await sent[0].create_thread(name="Thinking")
        await thread.send("a thread is a channel with its own bucket")

    contents = sorted(m["content"] for m in fake.channel_messages(fake.channel_id))
    assert contents == sorted(f"part {n}" for n in range(12))  # concurrent: in any order
    assert fake.rate_limited() == 0  # discord.py held back on Remaining 0 for Reset-After
    posts = fake.calls_to("POST", MESSAGES)[:12]
    assert posts[-1].at - posts[0].at >= 0.45  # 12 messages need 3 windows of 0.25 s
    first, *_, last = [
        h for path, _, h in answers if path == f"/channels/{fake.channel_id}/messages"
    ]
    assert (first["X-RateLimit-Limit"], first["X-RateLimit-Remaining"]) == ("5", "4")
    assert 0 < float(first["X-RateLimit-Reset-After"]) <= 0.25
    assert float(first["X-RateLimit-Reset"]) > 1.7e9  # epoch seconds
    assert first["X-RateLimit-Bucket"] == last["X-RateLimit-Bucket"]
    in_thread = next(h for path, _, h in answers if path == f"/channels/{thread.id}/messages")
    assert in_thread["X-RateLimit-Remaining"] == "4"
    assert in_thread["X-RateLimit-Bucket"] == first["X-RateLimit-Bucket"]  # same route
    assert first["Content-Type"] == "application/json"


async def test_discord_py_waits_out_a_429_and_sends_once(fake: FakeDiscord) -> None:
    client = _client()
    async with fake.running(client):
        fake.limits = DiscordLimits(scale=10)  # 5 messages per 0.5 s per channel
        for n in range(5):
            await _post_raw(fake, f"someone else {n}")
        status, headers, body = await _post_raw(fake, "one too many")
        await _channel(client, fake).send("answer")

    assert (status, body["message"], body["global"], body["code"]) == (
        429,
        "You are being rate limited.",
        False,
        0,
    )
    assert 0 < body["retry_after"] <= 0.5
    assert headers["Retry-After"] == "1" and headers["Via"] == "1.1 google"
    assert (headers["X-RateLimit-Scope"], headers["X-RateLimit-Remaining"]) == ("user", "0")
    refused, accepted = fake.calls_to("POST", MESSAGES)[-2:]
    assert (refused.status, accepted.status) == (429, 200)
    assert accepted.at > refused.at
    contents = [m["content"] for m in fake.channel_messages(fake.channel_id)]
    assert "one too many" not in contents and contents.count("answer") == 1
    assert fake.rate_limited("POST", MESSAGES) == 2


async def test_global_limit(fake: FakeDiscord) -> None:
    trace, answers = _answers()
    client = _client(trace)
    async with fake.running(client):
        fake.limits = DiscordLimits(routes={}, global_limit=2, scale=10)  # 2 per 0.1 s
        channel = _channel(client, fake)
        await asyncio.gather(*(channel.send(f"n{n}") for n in range(6)))

    assert len(fake.channel_messages(fake.channel_id)) == 6
    refusals = [h for _, status, h in answers if status == 429]
    assert refusals and len(refusals) == fake.rate_limited()
    assert all(h["X-RateLimit-Global"] == "true" for h in refusals)
    assert all(h["X-RateLimit-Scope"] == "global" for h in refusals)


async def test_interaction_follow_ups_have_a_bucket_per_token(fake: FakeDiscord) -> None:
    trace, answers = _answers()
    client = _client(trace)
    tree = app_commands.CommandTree(client)

    @tree.command(name="ask", description="Ask a medical question")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"thinking about {question}")
        await interaction.edit_original_response(content="final answer")

    async with fake.running(client):
        await tree.sync()
        fake.limits = DiscordLimits()
        interaction = await fake.dispatch_interaction("ask", {"question": "fever?"})
        await fake.wait_for_calls("PATCH", "/messages/@original$")

    by_path = {path: h for path, _, h in answers}
    callback = by_path[f"/interactions/{interaction['id']}/{interaction['token']}/callback"]
    assert "X-RateLimit-Limit" not in callback
    hook = f"/webhooks/{fake.application_id}/{interaction['token']}"
    assert by_path[hook]["X-RateLimit-Remaining"] == "4"
    assert by_path[hook + "/messages/@original"]["X-RateLimit-Remaining"] == "4"  # own route


async def test_lost_writes_are_applied_but_the_caller_gets_an_error(fake: FakeDiscord) -> None:
    client = _client()
    echoed: list[str] = []

    @client.event
    async def on_message(message: discord.Message) -> None:
        echoed.append(message.content)

    async with fake.running(client):
        channel = _channel(client, fake)
        fake.lose_next("POST", MESSAGES)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await channel.send("answer")
        [lost] = await fake.wait_for_calls("POST", MESSAGES)
        while not echoed:  # the gateway was told: the message exists
            await asyncio.sleep(0.01)

        # aiohttp retries a DELETE on a dropped connection: the retry finds nothing to delete.
        doomed = await channel.send("doomed")
        fake.lose_next("DELETE", r"/messages/\d+$")
        with pytest.raises(discord.NotFound):
            await doomed.delete()

    assert (lost.status, lost.lost) == (0, True)
    assert echoed[0] == "answer"
    assert [m["content"] for m in fake.channel_messages(fake.channel_id)] == ["answer"]
    assert [c.status for c in fake.calls_to("DELETE", r"/messages/\d+$")] == [0, 404]


async def test_nonce_is_enforced_per_channel(fake: FakeDiscord) -> None:
    client = _client()
    async with fake.running(client):
        channel = _channel(client, fake)
        first = await channel.send("answer", nonce="q1-answer")
        again = await channel.send("answer", nonce="q1-answer")
        elsewhere = await client.get_partial_messageable(int(fake.dm_channel_id(fake.human))).send(
            "answer", nonce="q1-answer"
        )

    assert again.id == first.id != elsewhere.id
    [stored] = fake.channel_messages(fake.channel_id)
    assert stored["nonce"] == "q1-answer"
    post = fake.calls_to("POST", MESSAGES)[1]
    assert (post.json["nonce"], post.json["enforce_nonce"], post.status) == ("q1-answer", True, 200)


async def test_deleted_message_cannot_be_edited(fake: FakeDiscord) -> None:
    client = _client()
    deleted: list[int] = []

    @client.event
    async def on_raw_message_delete(event: discord.RawMessageDeleteEvent) -> None:
        deleted.append(event.message_id)

    async with fake.running(client):
        thinking = await _channel(client, fake).send("thinking…")
        await fake.delete_message(fake.channel_id, str(thinking.id))
        with pytest.raises(discord.NotFound) as gone:
            await thinking.edit(content="answer")
        while not deleted:
            await asyncio.sleep(0.01)

    assert gone.value.code == 10008
    assert deleted == [thinking.id]
    assert fake.channel_messages(fake.channel_id) == []


async def test_redispatched_message_arrives_twice(fake: FakeDiscord) -> None:
    client = _client()
    seen: asyncio.Queue[int] = asyncio.Queue()

    @client.event
    async def on_message(message: discord.Message) -> None:
        await seen.put(message.id)

    async with fake.running(client):
        asked = await fake.dispatch_message("fever?", mentions_bot=True)
        await fake.redispatch(asked)
        ids = [await asyncio.wait_for(seen.get(), 5) for _ in range(2)]

    assert ids == [int(asked["id"])] * 2


async def test_fault_rate_and_repeated_faults(fake: FakeDiscord) -> None:
    client = _client()
    async with fake.running(client):
        channel = _channel(client, fake)

        async def outcomes() -> list[int]:
            statuses = []
            for n in range(16):
                try:
                    await channel.send(f"post {n}")
                    statuses.append(200)
                except discord.DiscordServerError as e:  # discord.py does not retry a 503
                    statuses.append(e.status)
            return statuses

        fake.fault_rate(0.5, kinds=("503",), seed=3)
        first = await outcomes()
        # a GET is not among the faulted methods, and draws nothing from the seeded random
        await channel.fetch_message(int(fake.channel_messages(fake.channel_id)[0]["id"]))
        fake.fault_rate(0.5, kinds=("503",), seed=3)
        second = await outcomes()
        fake.fault_rate(0)
        fake.fail_next("POST", MESSAGES, retry_after=0.01, times=2)
        await channel.send("after two 429s")
        with pytest.raises(ValueError, match="unknown fault kind"):
            fake.fault_rate(0.1, kinds=("429",))

    assert first == second and 0 < first.count(503) < 16
    assert fake.faults_injected == {"503": 2 * first.count(503)}
    assert len(fake.channel_messages(fake.channel_id)) == 2 * first.count(200) + 1
    assert [c.status for c in fake.calls_to("POST", MESSAGES)[-3:]] == [429, 429, 200]
