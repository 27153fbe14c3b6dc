"""The fake Discord server with the real discord.py client: login, chat, threads, commands."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import discord
import pytest
from discord import app_commands

from tests.fakes.discord import FakeDiscord, buttons

NO_MENTIONS = discord.AllowedMentions.none()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=100) as server:
        yield server


def _client() -> discord.Client:
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.dm_messages = True
    intents.message_content = True
    # on_ready waits guild_ready_timeout (2 s by default) after the last GUILD_CREATE.
    return discord.Client(intents=intents, guild_ready_timeout=0.05)


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
