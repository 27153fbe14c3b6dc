"""Local engine vs. the reference notebook's way (one `generate` per question, in turn).

Everything is measured in one run on the built-in model, greedy, 128 new tokens, and reported as
ratios to the notebook's way, because the machine is shared and noisy. Writes
`bench/results/engine.json` and the table between the markers in README.md.

    python -m bench.engine_throughput [--new-tokens 128] [--no-readme]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

import torch

from bench.readme import write_section
from inference.engine import GenerationRequest, Message, SamplingParams
from inference.loading import load_model, resolve_model
from inference.local import LocalEngine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data"
PROMPT_SETS = {  # name: (file, description)
    "vignettes": ("medqa_sample.jsonl", "MedQA case vignettes (~300 tokens)"),
    "short": ("open_questions.jsonl", "the notebook's open questions (~30 tokens), repeated"),
}
RESULTS = ROOT / "bench/results/engine.json"


def questions(prompt_set: str, n: int) -> list[str]:
    """The first `n` questions of a prompt set, repeated when it has fewer."""
    lines = (DATA / PROMPT_SETS[prompt_set][0]).read_text().splitlines()
    rows = [json.loads(line)["question"] for line in lines if line.strip()]
    return [rows[i % len(rows)] for i in range(n)]


class LoopLag:
    """Worst lateness of a 10 ms ticker on the event loop while it runs."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.perf_counter() - start - 0.01)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def notebook_way(model, tokenizer, prompts: list[str], new_tokens: int) -> dict:
    """One `model.generate` per question, in turn, called on the event loop as the notebook does."""
    tokens = 0
    with LoopLag() as lag:
        await asyncio.sleep(0.02)
        start = time.perf_counter()
        for prompt in prompts:
            chat = [{"role": "user", "content": prompt}]
            inputs = tokenizer.apply_chat_template(
                chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
            tokens += out.shape[1] - inputs["input_ids"].shape[1]
            await asyncio.sleep(0)
        elapsed = time.perf_counter() - start
        await asyncio.sleep(0.02)
    return {
        "tokens": tokens,
        "seconds": elapsed,
        "tokens_per_s": tokens / elapsed,
        "worst_loop_lag_ms": lag.worst * 1000,
    }


def request(prompt: str, new_tokens: int) -> GenerationRequest:
    return GenerationRequest((Message("user", prompt),), SamplingParams(new_tokens, 0.0, 1.0))


async def concurrent(engine: LocalEngine, prompts: list[str], new_tokens: int) -> dict:
    """All prompts submitted at once; aggregate tokens/s and worst loop lag."""
    with LoopLag() as lag:
        start = time.perf_counter()
        generations = [engine.submit(request(p, new_tokens)) for p in prompts]
        await asyncio.gather(*(g.collect() for g in generations))
        elapsed = time.perf_counter() - start
    tokens = sum(g.stats.completion_tokens for g in generations)
    return {
        "tokens": tokens,
        "seconds": elapsed,
        "tokens_per_s": tokens / elapsed,
        "worst_loop_lag_ms": lag.worst * 1000,
    }


async def late_arrival(engine: LocalEngine, prompts: list[str], new_tokens: int) -> dict:
    """Seven requests mid-generation, then an eighth: how soon its first token comes."""
    with LoopLag() as lag:
        running = [engine.submit(request(p, new_tokens)) for p in prompts[:7]]
        while min(g.stats.completion_tokens for g in running) < new_tokens // 4:
            await asyncio.sleep(0.005)
        late = engine.submit(request(prompts[7], new_tokens))
        first_token = None
        async for _ in late:
            first_token = late.stats.time_to_first_token
            break
        await asyncio.gather(late.collect(), *(g.collect() for g in running))
    return {
        "late_first_token_s": first_token,
        "worst_loop_lag_ms": lag.worst * 1000,
        "running_at_arrival": 7,
    }


async def slot_handover(engine: LocalEngine, prompts: list[str], new_tokens: int) -> dict:
    """With every slot busy, how long a waiting request waits after a slot frees."""
    engine.max_batch = 4
    short = engine.submit(request(prompts[0], 8))
    others = [engine.submit(request(p, new_tokens)) for p in prompts[1:4]]
    waiting = engine.submit(request(prompts[4], 16))
    await asyncio.gather(short.collect(), waiting.collect(), *(g.collect() for g in others))
    engine.max_batch = 16
    assert short.stats.finished_at and waiting.stats.started_at
    return {"handover_s": waiting.stats.started_at - short.stats.finished_at}


def table(results: dict) -> str:
    lines = [
        "| Prompts | Way | tokens/s | vs. notebook | worst loop lag |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, (_, description) in PROMPT_SETS.items():
        runs = results[name]
        base = runs["notebook"]["tokens_per_s"]
        for key, way in (
            ("notebook", "one `generate` per question, in turn (notebook)"),
            ("engine_8", "engine, 8 concurrent"),
            ("engine_16", "engine, 16 concurrent"),
        ):
            r = runs[key]
            lines.append(
                f"| {description} | {way} | {r['tokens_per_s']:.0f} | "
                f"{r['tokens_per_s'] / base:.1f}x | {r['worst_loop_lag_ms']:.0f} ms |"
            )
    late = results["late_arrival"]
    lines += [
        "",
        f"An 8th request arriving while 7 are mid-generation got its first token after "
        f"**{late['late_first_token_s']:.2f} s** (worst loop lag meanwhile "
        f"{late['worst_loop_lag_ms']:.0f} ms); a waiting request took a freed slot after "
        f"{results['slot_handover']['handover_s'] * 1000:.0f} ms. Measured {results['date']} on "
        f"{results['machine']}, built-in model, greedy, {results['new_tokens']} new tokens.",
    ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    n = args.new_tokens

    spec = resolve_model("builtin:smollm2")
    model, tokenizer = load_model(spec)
    engine = LocalEngine(spec, max_batch=16, model=model, tokenizer=tokenizer)
    await engine.start()
    await concurrent(engine, questions("short", 2), 8)  # warm-up

    # Each way runs while no other thread has torch work: two threads that both ran torch ops
    # slow each other down for the rest of the process (torch's per-thread OpenMP pools; seen
    # here: the engine 78 -> 62 tokens/s, the notebook way 30 -> 16). So the engine is measured
    # first and closed, then the notebook way runs on the main thread.
    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{torch.get_num_threads()} CPU threads, {platform.machine()}",
        "new_tokens": n,
    }
    for name in PROMPT_SETS:
        prompts = questions(name, 16)
        results[name] = {
            "engine_8": await concurrent(engine, prompts[:8], n),
            "engine_16": await concurrent(engine, prompts, n),
        }
    vignettes = questions("vignettes", 16)
    results["late_arrival"] = await late_arrival(engine, vignettes, n)
    results["slot_handover"] = await slot_handover(engine, vignettes, n)
    await engine.close()
    for name in PROMPT_SETS:
        runs = results[name]
        runs["notebook"] = await notebook_way(model, tokenizer, questions(name, 8), n)
        base = runs["notebook"]["tokens_per_s"]
        runs["ratios"] = {k: runs[k]["tokens_per_s"] / base for k in ("engine_8", "engine_16")}

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    if not args.no_readme:
        write_section("engine", table(results))


if __name__ == "__main__":
    asyncio.run(main())
