"""What RemoteEngine costs over a plain client of the same OpenAI-compatible server.

One server (`transformers serve` with continuous batching on the built-in model, one CPU thread),
the same streaming request from both clients, greedy so both get the same tokens, at 1 and 8
concurrent requests; rounds alternate the clients because the machine is shared and noisy.
Throughput counts the server's tokens (`usage`) over the wall time; time to first token is from
sending to the first text the caller sees. Writes `bench/results/remote.json` and prints a table.

    python -m bench.remote_overhead [--max-tokens 64] [--rounds 5] [--folder DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from inference.engine import GenerationRequest, Message, SamplingParams
from inference.loading import BUILTIN, load_model, resolve_model
from inference.remote import RemoteEngine
from tests.servers.transformers_serve import TransformersServer, export_builtin, exported_folder

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results/remote.json"
TOPICS = ["asthma", "diabetes", "hepatitis", "migraine", "anemia", "pneumonia", "glaucoma", "gout"]
CONCURRENCY = (1, 8)


@dataclass
class Answer:
    ttft: float  # seconds from sending to the first text the caller sees
    tokens: int


Client = Callable[[str], Awaitable[Answer]]


def direct_client(session: aiohttp.ClientSession, url: str, body: dict) -> Client:
    """The plain way: POST, read the event stream, parse each JSON event, note the first text."""

    async def ask(question: str) -> Answer:
        request = {**body, "messages": [{"role": "user", "content": question}]}
        started, first, tokens = time.perf_counter(), None, 0
        async with session.post(f"{url}/chat/completions", json=request) as response:
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                event = json.loads(line[6:])
                if event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
                for choice in event.get("choices") or ():
                    if first is None and choice["delta"].get("content"):
                        first = time.perf_counter()
        return Answer((first or time.perf_counter()) - started, tokens)

    return ask


def engine_client(engine: RemoteEngine, sampling: SamplingParams) -> Client:
    """Through RemoteEngine: submit, then iterate the Generation as the bot's service does."""

    async def ask(question: str) -> Answer:
        started, first = time.perf_counter(), None
        generation = engine.submit(GenerationRequest((Message("user", question),), sampling))
        async for _ in generation:
            if first is None:
                first = time.perf_counter()
        return Answer((first or time.perf_counter()) - started, generation.stats.completion_tokens)

    return ask


async def measure(client: Client, concurrent: int) -> dict[str, float]:
    """`concurrent` questions at once: tokens/s overall, median TTFT, client CPU per token."""
    questions = [f"What is {TOPICS[i % len(TOPICS)]}?" for i in range(concurrent)]
    cpu, wall = time.process_time(), time.perf_counter()
    answers = await asyncio.gather(*(client(q) for q in questions))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tokens = sum(a.tokens for a in answers)
    return {
        "tokens": tokens,
        "seconds": wall,
        "tokens_per_s": tokens / wall,
        "ttft_median_ms": 1000 * statistics.median(a.ttft for a in answers),
        "client_cpu_ms_per_token": 1000 * cpu / tokens,
    }


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians over the rounds."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def bench(server: TransformersServer, max_tokens: int, rounds: int) -> dict:
    sampling = SamplingParams(max_new_tokens=max_tokens, temperature=0.0, top_p=1.0)
    body = {
        "model": server.model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "top_p": 1.0,
    }
    engine = RemoteEngine(server.base_url, server.model, max_batch=16)
    await engine.start()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        clients = {
            "direct": direct_client(session, server.base_url, body),
            "engine": engine_client(engine, sampling),
        }
        await measure(clients["direct"], 8)  # warm-up: the server's batching starts lazily
        await measure(clients["engine"], 8)
        results: dict = {}
        for concurrent in CONCURRENCY:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
            for n in range(rounds):
                order = list(clients) if n % 2 == 0 else list(reversed(clients))
                for name in order:
                    runs[name].append(await measure(clients[name], concurrent))
            direct, through = summary(runs["direct"]), summary(runs["engine"])
            results[str(concurrent)] = {
                "direct": direct,
                "engine": through,
                "throughput_overhead_pct": 100
                * (1 - through["tokens_per_s"] / direct["tokens_per_s"]),
                "ttft_overhead_ms": through["ttft_median_ms"] - direct["ttft_median_ms"],
            }
    await engine.close(grace=0)
    return results


def table(results: dict) -> str:
    rows = [
        "| concurrent | client | tokens/s | median TTFT | client CPU per token |",
        "| --- | --- | --- | --- | --- |",
    ]
    for concurrent, result in results.items():
        for name, label in (("direct", "plain aiohttp client"), ("engine", "RemoteEngine")):
            r = result[name]
            rows.append(
                f"| {concurrent} | {label} | {r['tokens_per_s']:.1f} | {r['ttft_median_ms']:.0f} ms"
                f" | {r['client_cpu_ms_per_token']:.2f} ms |"
            )
        rows.append(
            f"| {concurrent} | overhead | {result['throughput_overhead_pct']:+.1f} % | "
            f"{result['ttft_overhead_ms']:+.0f} ms | |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folder", type=Path, help="keep the exported model here for next time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = exported_folder(args.folder or Path(scratch))
        if not folder.exists():
            export_builtin(folder, *load_model(resolve_model(BUILTIN)))
        with TransformersServer(folder, continuous_batching=True) as server:
            results = asyncio.run(bench(server, args.max_tokens, args.rounds))
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, shared 2-core machine; server on 1 thread",
        "server": "transformers serve --continuous-batching, built-in SmolLM2-135M (float32, CPU)",
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "results": results,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
