"""No secrets in output: URL credentials are masked wherever a URL is shown, and a Slack request
whose signature fails is logged without its body (the question's text) at every level."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from bot import logs
from bot.cli import main
from bot.config import ConfigError, Settings
from bot.wiring import remote_engine
from inference.remote import RemoteEngine, mask_urls
from tests.fakes.slack import app_mention_event, event_callback, signed_request, slash_command
from tests.harness.slack import SECRET, running

PASSWORD = "s3cret-pw-6215"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:s3cret@gpu:8000/v1", "http://***@gpu:8000/v1"),
        ("https://token123@proxy.example/v1", "https://***@proxy.example/v1"),
        ("http://a:p@ss@gpu/v1", "http://***@gpu/v1"),  # an unencoded @ in the password
        ("http://gpu/v1?key=abc&api-version=2", "http://gpu/v1?key=***&api-version=***"),
        ("alice:s3cret@gpu:8000/v1", "***@gpu:8000/v1"),  # given without a scheme
        (
            "The model server at http://u:pw@gpu/v1 failed (url='http://u:pw@gpu/v1/models')",
            "The model server at http://***@gpu/v1 failed (url='http://***@gpu/v1/models')",
        ),
        ("http://gpu:8000/v1/@models", "http://gpu:8000/v1/@models"),  # an @ in the path
        ("http://localhost:8000/v1", "http://localhost:8000/v1"),
        ("no URL here: 55-year-old, 120/80", "no URL here: 55-year-old, 120/80"),
    ],
)
def test_mask_urls_hides_users_passwords_and_query_values(text: str, shown: str) -> None:
    assert mask_urls(text) == shown


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def openai_env(monkeypatch, tmp_path):
    """HUATUO_BACKEND=openai and Discord configured, nothing else from the environment or .env."""
    for name in (
        "HUATUO_MODEL", "HUATUO_OPENAI_BASE_URL", "HUATUO_OPENAI_API_KEY", "HUATUO_OPENAI_MODEL",
        "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "HUATUO_HTTP_HOST",
        "HUATUO_HTTP_PORT", "HUATUO_METRICS_TOKEN",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUATUO_BACKEND", "openai")
    monkeypatch.setenv("HUATUO_OPENAI_MODEL", "scripted")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "token")
    return monkeypatch


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice:{pw}@127.0.0.1:{port}/v1", "✗ model server: The model server at "
         "http://***@127.0.0.1:{port}/v1 is not reachable"),
        ("http://127.0.0.1:{port}/v1?key={pw}", "✗ model server: The model server at "
         "http://127.0.0.1:{port}/v1?key=*** is not reachable"),
        ("ftp://alice:{pw}@127.0.0.1:{port}/v1", "✗ backend: HUATUO_OPENAI_BASE_URL: "
         "'ftp://***@127.0.0.1:{port}/v1' is not an http(s) URL"),
    ],
)  # fmt: skip
def test_check_shows_the_server_url_without_its_credentials(
    openai_env, capsys, url: str, shown: str
) -> None:
    port = free_port()  # nothing listens there
    openai_env.setenv("HUATUO_OPENAI_BASE_URL", url.format(pw=PASSWORD, port=port))
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert shown.format(port=port) in out, out
    assert PASSWORD not in out


@asynccontextmanager
async def login_page() -> AsyncIterator[str]:
    """A proxy answering every request with an HTML login page (200); yields its port."""
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<html><body>Please log in</body></html>", content_type="text/html"
        )

    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
def configured_logs() -> Iterator[Callable[..., None]]:
    """bot.logs.configure (to the captured stderr); the root logger is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield logs.configure
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_the_start_up_warning_and_readyz_hide_the_password_in_the_url(
    configured_logs, capsys
) -> None:
    configured_logs(verbose=True)
    async with login_page() as port:
        engine = RemoteEngine(f"http://alice:{PASSWORD}@127.0.0.1:{port}/v1", "scripted")
        await engine.start()
        problem = await engine.problem()  # the reason /readyz gives
        await engine.close(grace=0)
    err = capsys.readouterr().err
    said = f"The model server at http://***@127.0.0.1:{port}/v1 gave no model list"
    assert said in err and problem is not None and problem.startswith(said), (err, problem)
    assert PASSWORD not in err and PASSWORD not in problem


@pytest.mark.parametrize("style", ["text", "json"])
def test_logs_mask_url_credentials_from_any_library_and_traceback(
    configured_logs, capsys, style
) -> None:
    configured_logs(verbose=True, style=style)
    logging.getLogger("some.library").warning("GET %s failed", f"https://u:{PASSWORD}@h/x")
    try:
        raise ConnectionError(f"cannot reach http://bot:{PASSWORD}@proxy:3128")
    except ConnectionError:
        logging.getLogger("bot.test").exception("while connecting")
    err = capsys.readouterr().err
    assert "GET https://***@h/x failed" in err and "http://***@proxy:3128" in err
    assert PASSWORD not in err


# ---- Slack HTTP mode: a request whose signature fails ----------------------------------------

QUESTION = "Is quokka-zebra-4711 syndrome contagious?"


async def test_a_badly_signed_request_is_logged_without_its_text(scripted_engine, caplog) -> None:
    """A rotated secret or a skewed clock fails every request: each is refused (401) and logged,
    even at DEBUG, with the clock offset and without the body."""
    caplog.set_level(logging.DEBUG)  # before the app exists: slack_bolt copies the root level
    skewed = int(time.time()) - 3600
    async with running(scripted_engine, "http") as bot:
        mention = event_callback(app_mention_event(QUESTION))
        command = slash_command(QUESTION, response_url=bot.slack.new_response_url())
        for body, headers in (
            signed_request(mention, "a-rotated-secret"),
            signed_request(command, "a-rotated-secret", form=True),
            signed_request(mention, SECRET, timestamp=skewed),
        ):
            assert (await bot.post(body, headers))[0] == 401
        await bot.idle()
    assert not scripted_engine.requests
    refusals = [
        r.getMessage() for r in caplog.records if "signature does not match" in r.getMessage()
    ]
    assert len(refusals) == 3, refusals
    assert re.search(r"its timestamp is -360[01] s from this machine's clock", refusals[2])
    for record in caplog.records:
        logged = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        assert "quokka-zebra-4711" not in logged, logged
        assert "response_url" not in logged and "a-rotated-secret" not in logged, logged


def test_a_password_in_the_url_and_an_api_key_together_are_refused_clearly() -> None:
    """aiohttp cannot send both; every question would fail with a library error otherwise."""
    settings = Settings(
        _env_file=None,
        backend="openai",
        openai_base_url="http://alice:secret@models.internal:8000/v1",
        openai_api_key="sk-test",
        openai_model="m",
    )
    with pytest.raises(ConfigError, match="only one of them") as raised:
        remote_engine(settings)
    assert "secret" not in str(raised.value)
