"""How many real HuatuoGPT-o1 answers come out whole at 512, 768 and 1024 new tokens, with the
thinking budget and without.

The real outputs in ../shared/data/huatuo_samples.json that HuatuoGPT-o1 ended by itself are
replayed through the remote engine by the project's scripted OpenAI-compatible server
(tests/servers/scripted.py), one token per event, stopping at `max_tokens` with finish_reason
"length" as a real server does. Tokens are counted with the built-in model's tokenizer
(SmolLM2's BPE; HuatuoGPT-o1's own is not on this machine, so counts differ somewhat from the
real model's). The replay of a request:

- a plain one gets the output as recorded;
- one that continues the Thinking header written for the model (HUATUO_PREFILL_THINKING) gets the
  output after the sample's own Thinking header (the whole output if it has none recognisable);
- one that continues a forced Final Response header gets the sample's own final response (what
  the model answered after its whole thinking: a capped model may answer otherwise, which no
  replay can tell; a sample without a Final Response header gets nothing).

Three setups: as before (no header written, no budget), the header written without a budget,
and the header with the default budget (HUATUO_MAX_NEW_TOKENS less 512, at least half).
Writes bench/results/thinking_budget.json and the table between the `bench:thinking` markers in
README.md.

    python -m bench.thinking_budget [--no-readme]   # from the repo root
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from functools import cache
from pathlib import Path
from typing import Any

from bench.readme import write_section
from inference.engine import GenerationRequest, Message, SamplingParams
from inference.loading import BUILTIN, resolve_model
from inference.reasoning import FINAL_HEADER, THINKING_HEADER, split_reasoning
from inference.remote import RemoteEngine
from inference.thinking import FORCED_FINAL, PREFILL, default_budget
from tests.servers.scripted import Body, ScriptedServer, continued

SAMPLES = Path(__file__).resolve().parents[2] / "shared/data/huatuo_samples.json"
RESULTS = Path(__file__).parent / "results" / "thinking_budget.json"
LIMITS = (512, 768, 1024)
SETUPS = {  # name: (header written for the model, budget on)
    "as before": (False, False),
    "header, no budget": (True, False),
    "header and budget": (True, True),
}


def real_outputs() -> list[dict[str, Any]]:
    """The samples HuatuoGPT-o1 wrote and ended by itself."""
    samples = json.loads(SAMPLES.read_text())
    return [
        s
        for s in samples
        if s["model"].startswith("FreedomIntelligence/HuatuoGPT-o1") and not s["stopped_by_length"]
    ]


def after_thinking_header(output: str) -> str:
    """What the model writes after a Thinking header: the output past its own, if any."""
    header = THINKING_HEADER.search(output)
    return output[header.end() :].lstrip("\n") if header else output


def final_response(output: str) -> str:
    """The output after its last Final Response header ("" without one)."""
    headers = list(FINAL_HEADER.finditer(output))
    return output[headers[-1].end() :].lstrip("\n") if headers else ""


def replayer(samples: list[dict[str, Any]]) -> Any:
    """The server's reply to a request: the part of its sample the request asks for."""
    outputs = {s["user_prompt"]["question"]: s["raw_output"] for s in samples}

    def reply(body: Body) -> str:
        output = outputs[body["messages"][0]["content"]]
        given = continued(body)
        if given is None:
            return output
        if given.endswith(FORCED_FINAL):
            return final_response(output)
        assert given == PREFILL, "the replay continues only the two headers"
        return after_thinking_header(output)

    return reply


def tokenizer_split() -> Any:
    """Text into the built-in model's tokens, as text pieces that join up to the whole."""
    from transformers import AutoTokenizer

    spec = resolve_model(BUILTIN)
    tokenizer = AutoTokenizer.from_pretrained(spec.source, gguf_file=spec.gguf_file)

    @cache
    def split(text: str) -> list[str]:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = [0, *(start for start, _ in offsets["offset_mapping"][1:]), len(text)]
        return [text[a:b] for a, b in itertools.pairwise(starts) if b > a]

    return split


async def replay(
    server: ScriptedServer, samples: list[dict[str, Any]], limit: int, prefill: bool, budget: bool
) -> dict[str, Any]:
    """Every sample at once through a fresh engine; what came out whole."""
    engine = RemoteEngine(
        server.base_url, "scripted", api_key="right-key", prefill_thinking=prefill
    )
    await engine.start()
    sampling = SamplingParams(limit, 0.5, 0.9, default_budget(limit) if budget else 0)
    try:
        generations = [
            engine.submit(
                GenerationRequest((Message("user", s["user_prompt"]["question"]),), sampling)
            )
            for s in samples
        ]
        texts = await asyncio.gather(*(g.collect() for g in generations))
    finally:
        await engine.close(grace=0)
    parsed = [
        split_reasoning(text, truncated=g.finish_reason == "length")
        for g, text in zip(generations, texts, strict=True)
    ]
    return {
        "complete": sum(p.complete for p in parsed),
        "capped": sum(g.stats.thinking_capped for g in generations),
        "budget": sampling.thinking_budget,
        "incomplete": [s["id"] for s, p in zip(samples, parsed, strict=True) if not p.complete],
    }


async def run() -> dict[str, Any]:
    samples = real_outputs()
    split = tokenizer_split()
    lengths = sorted(len(split(s["raw_output"])) for s in samples)
    thinking = sorted(len(split(split_reasoning(s["raw_output"]).thinking)) for s in samples)
    results: dict[str, Any] = {}
    async with ScriptedServer(reply=replayer(samples), split=split) as server:
        for limit in LIMITS:
            results[str(limit)] = {
                name: await replay(server, samples, limit, prefill, budget)
                for name, (prefill, budget) in SETUPS.items()
            }
            print(limit, json.dumps(results[str(limit)]), flush=True)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "samples": len(samples),
        "output_tokens": {"median": statistics.median(lengths), "max": lengths[-1]},
        "thinking_tokens": {"median": statistics.median(thinking), "max": thinking[-1]},
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    """The README table: answers complete out of the samples, per limit and setup."""
    n = report["samples"]
    lines = [
        "| `HUATUO_MAX_NEW_TOKENS` | thinking budget | complete, as before | header written, "
        "no budget | header written and budget | thinking capped |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for limit, setups in report["results"].items():
        capped = setups["header and budget"]
        lines.append(
            f"| {int(limit):,} | {capped['budget']:,} | {setups['as before']['complete']} of {n} | "
            f"{setups['header, no budget']['complete']} of {n} | {capped['complete']} of {n} | "
            f"{capped['capped']} |"
        )
    tokens, thinking = report["output_tokens"], report["thinking_tokens"]
    lines += [
        "",
        f"{n} real HuatuoGPT-o1 outputs that ended by themselves, replayed (whole outputs: median "
        f"{tokens['median']:,.0f}, at most {tokens['max']:,} tokens; thinking: median "
        f"{thinking['median']:,.0f}, at most {thinking['max']:,}). Measured {report['date']}; "
        "`make bench` reruns it.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    report = asyncio.run(run())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    if not args.no_readme:
        write_section("thinking", table(report))


if __name__ == "__main__":
    main()
