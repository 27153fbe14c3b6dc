"""One `run` process per Slack app and Discord application on a host (bot/instance.py): the lock
in this process, then two real `huatuo-bot run` processes with the same Discord settings."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest

from bot.config import Settings
from bot.instance import AlreadyRunning, lock_path, single_instance
from tests.fakes.discord import FakeDiscord
from tests.harness.polling import until
from tests.servers.scripted import ScriptedServer

# Seconds that mean "stuck", not "slow": a process is ready in about 3 s on an idle 2-core machine.
PATIENCE = 300.0


def settings(tmp_path: Path, **values: str) -> Settings:
    """Both platforms' tokens, the feedback database in `tmp_path`; `values` override them."""
    defaults = {
        "DISCORD_BOT_TOKEN": "discord-secret",
        "SLACK_BOT_TOKEN": "xoxb-secret",
        "HUATUO_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
    }
    return Settings(_env_file=None, **{**defaults, **values})


def test_a_second_holder_of_the_same_token_is_refused_until_the_first_lets_go(tmp_path):
    with single_instance(settings(tmp_path), ["discord"]):
        with (
            pytest.raises(AlreadyRunning, match="already serving Discord") as refused,
            single_instance(settings(tmp_path), ["discord"]),
        ):
            pass
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and "DISCORD_BOT_TOKEN" in message
        assert "both answer every message" in message
    with single_instance(settings(tmp_path), ["discord"]):  # let go at the end of the block
        pass


def test_other_bots_and_other_platforms_of_the_same_bot_coexist(tmp_path):
    with single_instance(settings(tmp_path), ["discord"]):
        with single_instance(settings(tmp_path, DISCORD_BOT_TOKEN="another-bot"), ["discord"]):
            pass
        with single_instance(settings(tmp_path), ["slack"]):  # `run --platform slack` beside it
            pass


def test_slack_is_guarded_too(tmp_path):
    with (
        single_instance(settings(tmp_path), ["slack", "discord"]),
        pytest.raises(AlreadyRunning, match=r"already serving Slack .*SLACK_BOT_TOKEN"),
        single_instance(settings(tmp_path), ["slack"]),
    ):
        pass


def test_the_lock_sits_beside_the_feedback_database_and_never_names_the_token(tmp_path):
    path = lock_path(settings(tmp_path), "discord")
    assert path.parent == tmp_path
    assert "discord-secret" not in path.name and path.name.startswith("huatuo-bot-discord-")
    assert lock_path(settings(tmp_path), "slack") != path
    off = settings(tmp_path, HUATUO_FEEDBACK_DB="")
    assert lock_path(off, "discord").parent == Path(tempfile.gettempdir())


def test_a_folder_that_cannot_hold_the_lock_is_logged_not_fatal(tmp_path, caplog):
    missing = settings(tmp_path, HUATUO_FEEDBACK_DB=str(tmp_path / "gone" / "feedback.sqlite3"))
    with single_instance(missing, ["discord"]):
        pass
    assert "cannot check for a second discord process" in caplog.text


def test_a_link_planted_in_place_of_the_lock_is_not_followed(tmp_path, caplog):
    victim = tmp_path / "victim.txt"
    victim.write_text("kept")
    lock_path(settings(tmp_path), "discord").symlink_to(victim)
    with single_instance(settings(tmp_path), ["discord"]):
        pass
    assert victim.read_text() == "kept"
    assert "cannot check for a second discord process" in caplog.text


# ---- two real `huatuo-bot run` processes -------------------------------------------------------


async def test_a_second_run_with_the_same_discord_bot_refuses_and_the_first_keeps_serving(
    tmp_path, unused_tcp_port_factory
):
    async with ScriptedServer() as model, FakeDiscord(token="discord-secret-token") as discord:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("HUATUO_", "SLACK_"))},
            "HUATUO_BACKEND": "openai",
            "HUATUO_OPENAI_BASE_URL": model.base_url,
            "HUATUO_OPENAI_MODEL": "scripted",
            "HUATUO_OPENAI_API_KEY": "right-key",
            "HUATUO_FEEDBACK_DB": str(tmp_path / "feedback.sqlite3"),
            "DISCORD_BOT_TOKEN": discord.token,
            "DISCORD_API_BASE": f"{discord.base_url}/api/v10",
            "DISCORD_GATEWAY_URL": f"ws://127.0.0.1:{discord.port}/gateway",
        }
        processes: list[asyncio.subprocess.Process] = []

        async def start(name: str) -> tuple[asyncio.subprocess.Process, int, Path]:
            port, log = unused_tcp_port_factory(), tmp_path / f"{name}.log"
            with log.open("w") as output:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bot.cli", "run", "--platform", "discord",
                    env={**env, "HUATUO_HTTP_PORT": str(port)}, cwd=tmp_path,
                    stdout=output, stderr=output,
                )  # fmt: skip
            processes.append(process)
            return process, port, log

        async def ready(process: asyncio.subprocess.Process, port: int, log: Path) -> None:
            """Until /readyz says 200: the model server answers and Discord is connected."""

            async def up() -> bool:
                assert process.returncode is None, log.read_text()
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(up, PATIENCE, every=0.1)

        try:
            async with aiohttp.ClientSession() as http:
                first, first_port, first_log = await start("first")
                await ready(first, first_port, first_log)
                assert len(discord.identifies) == 1

                second, _, second_log = await start("second")
                code = await asyncio.wait_for(second.wait(), PATIENCE)
                told = second_log.read_text()
                assert code == 2, told
                assert "already serving Discord with this DISCORD_BOT_TOKEN" in told
                assert f"pid {first.pid} on " in told
                assert "both answer every message" in told and "Stop that process first" in told
                assert discord.token not in told
                assert len(discord.identifies) == 1, "the second never opened a session"
                await ready(first, first_port, first_log)  # still serving

                # The lock goes with the process, however it ends.
                first.send_signal(signal.SIGKILL)
                await first.wait()
                third, third_port, third_log = await start("third")
                await ready(third, third_port, third_log)
                assert len(discord.identifies) == 2
                third.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(third.wait(), PATIENCE) == 0, third_log.read_text()
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    [lock] = tmp_path.glob("huatuo-bot-discord-*.lock")
    assert discord.token not in lock.name
