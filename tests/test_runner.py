"""`huatuo-bot run --platform all`: Slack and Discord from one process, one model, then SIGTERM
in the middle of an answer."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp
import pytest

from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import BOT_USER_ID, FakeSlack, app_mention_event, event_callback
from tests.harness.polling import until

FOOTER = "is not a substitute for clinical judgement"  # the default disclaimer ends answers
# Seconds that mean "stuck", not "slow": the whole run takes about 25 s on an idle 2-core machine.
PATIENCE = 300.0


@pytest.mark.model
async def test_run_all_serves_both_platforms_with_one_model_and_stops_gracefully(
    unused_tcp_port, tmp_path
):
    async with FakeSlack() as slack, FakeDiscord() as discord:
        env = {
            **os.environ,
            "HUATUO_MODEL": "builtin:smollm2",
            "HUATUO_MAX_NEW_TOKENS": "48",
            "HUATUO_TEMPERATURE": "0",
            "HUATUO_SHUTDOWN_GRACE": str(PATIENCE),  # the answer in flight is finished, never cut
            "HUATUO_HTTP_PORT": str(unused_tcp_port),
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_APP_TOKEN": "xapp-test",
            "SLACK_API_URL": slack.api_url,
            "DISCORD_BOT_TOKEN": discord.token,
            "DISCORD_API_BASE": f"{discord.base_url}/api/v10",
            "DISCORD_GATEWAY_URL": f"ws://127.0.0.1:{discord.port}/gateway",
        }
        log = tmp_path / "run.log"
        with log.open("w") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "-v", "run", "--platform", "all",
                env=env, cwd=tmp_path, stderr=stderr, stdout=stderr,
            )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as http:

                async def healthy() -> bool:
                    try:
                        url = f"http://127.0.0.1:{unused_tcp_port}/healthz"
                        async with http.get(url) as response:
                            return response.status == 200
                    except aiohttp.ClientConnectionError:
                        return False

                await until(healthy, PATIENCE, every=0.1)
            await slack.wait_connected(timeout=30)

            async def discord_ready() -> bool:  # /ask is registered once the bot takes messages
                return bool(discord.calls_to("PUT", r"/commands$"))

            await until(discord_ready, PATIENCE, every=0.1)
            ts = slack.add_message("C1", f"<@{BOT_USER_ID}> What is asthma?")
            mention = app_mention_event("What is asthma?", ts=ts)
            await slack.send_socket_event("events_api", event_callback(mention))
            question = await discord.dispatch_message("What is gout?", mentions_bot=True)

            async def slack_answer() -> str | None:
                thread = slack.thread("C1", ts)  # the latest question's thread
                final = [m.text for m in thread if m.user == BOT_USER_ID and FOOTER in m.text]
                return final[0] if final else None

            async def discord_answer() -> str | None:
                for message in discord.channel_messages(discord.channel_id):
                    replied = (message.get("message_reference") or {}).get("message_id")
                    if replied == question["id"] and FOOTER in message["content"]:
                        return message["content"]
                return None

            assert "asthma" in (await until(slack_answer, PATIENCE, every=0.1)).lower()
            assert "gout" in (await until(discord_answer, PATIENCE, every=0.1)).lower()
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{unused_tcp_port}"
                async with http.get(f"{base}/readyz") as response:
                    assert response.status == 200, await response.text()
                async with http.get(f"{base}/metrics") as response:
                    metrics = await response.text()
            counted = [x for x in metrics.splitlines() if x.startswith("huatuo_questions_total")]
            assert any('outcome="answered"' in x for x in counted), metrics

            # SIGTERM while an answer is being written: it is finished and delivered; someone
            # asking during the shutdown is told to come back; then the process exits 0.
            ts = slack.add_message("C1", f"<@{BOT_USER_ID}> What is eczema?")
            mention = app_mention_event("What is eczema?", ts=ts, user="U2")
            await slack.send_socket_event("events_api", event_callback(mention))

            async def placeholder() -> bool:  # shown, and the answer not finished yet
                mine = [m for m in slack.thread("C1", ts) if m.user == BOT_USER_ID]
                return bool(mine) and not any(FOOTER in m.text for m in mine)

            await until(placeholder, PATIENCE, every=0.1)
            process.send_signal(signal.SIGTERM)

            async def stopping() -> bool:
                async with aiohttp.ClientSession() as http:
                    url = f"http://127.0.0.1:{unused_tcp_port}/readyz"
                    async with http.get(url) as response:
                        return (await response.json())["stopping"]

            await until(stopping, 10, every=0.1)
            late = await discord.dispatch_message("What is psoriasis?", mentions_bot=True)
            assert await asyncio.wait_for(process.wait(), PATIENCE + 30) == 0
            assert await slack_answer() is not None, "the answer in flight was delivered"
            [told] = [
                m["content"]
                for m in discord.channel_messages(discord.channel_id)
                if (m.get("message_reference") or {}).get("message_id") == late["id"]
            ]
            assert "restarting" in told
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = log.read_text()
    assert output.count("model builtin:smollm2 loaded") == 1, output
    assert "serving slack, discord" in output
    # the answer being written, and perhaps an earlier one still posting its thinking
    assert re.search(r"stopping: finishing [12] answer\(s\) in flight", output), output
