"""Delivery under the platforms' real limits and faults: 50 askers at once, Slack and Discord.

The real adapters answer through the fake Slack and fake Discord, which enforce the documented
limits (Slack: ~1 post per second per channel, method tiers; Discord: 5 per 5 s per route and
channel, 50 requests a second) and fail 5 % of writes once (503, or applied with the response
lost). The scripted engine answers at once, so what is measured is delivery alone. For each
asker: answered, told (a clear failure), or lost; duplicates, stale placeholders, the 429s the
platform sent, and the delay from "answer ready" to "the platform has the write that shows it".
Writes bench/results/delivery.json and the table between the `bench:delivery` markers in
README.md.

    python -m bench.delivery [--scale 1] [--askers 50] [--no-readme]   # from the repo root
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path
from typing import Any

from bench.readme import write_section
from tests.harness.crowd import discord_crowd, slack_crowd

RESULTS = Path(__file__).parent / "results" / "delivery.json"
FAULTS = 0.05
PER_CHANNEL = 1.0  # messages a second per channel that both platforms document


async def run(askers: int, scale: float) -> dict[str, Any]:
    """The four crowds, one after the other."""
    scenarios: dict[str, Any] = {}
    for name, crowd in (("slack", slack_crowd), ("discord", discord_crowd)):
        for channels in (1, askers // 5):
            report = await crowd(askers, channels, scale=scale, faults=FAULTS, seed=1)
            scenarios[f"{name}, {channels} channel{'s' if channels > 1 else ''}"] = (
                report.as_dict() | {"channels": channels}
            )
            print(name, channels, json.dumps(scenarios[list(scenarios)[-1]]), flush=True)
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "askers": askers,
        "limits_speed": scale,
        "faults": FAULTS,
        "scenarios": scenarios,
    }


def table(results: dict[str, Any]) -> str:
    """The README table: what every asker saw, and how long the answers waited for the limits."""
    lines = [
        "| Askers at once | answered | told | lost | duplicates | stale | 429s | "
        "ready → shown, median | worst | floor | worst ÷ floor | all served in |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results["scenarios"].items():
        floor = _floor(results["askers"], r["channels"])
        lines.append(
            f"| {results['askers']}, {name} | {r['answered']} | {r['told']} | {r['lost']} | "
            f"{r['duplicates']} | {r['stale']} | {r['rate_limited_429s']} | "
            f"{r['delay_median_s']:.1f} s | {r['delay_worst_s']:.1f} s | {floor:.0f} s | "
            f"{r['delay_worst_s'] / floor:.2f} | {r['seconds']:.0f} s |"
        )
    speed = results["limits_speed"]
    pace = "at the platforms' own pace" if speed == 1 else f"at {speed:g} times the platforms' pace"
    lines += [
        "",
        f"Limits enforced {pace}, {results['faults']:.0%} of writes failing once (503 or a lost "
        f"response; {', '.join(_faults(results))} injected). The floor is when the documented "
        "rate of about one message a second per channel lets the last answer of the busiest "
        f"channel out (short bursts can beat it a little). Measured {results['date']} "
        f"({results['machine']}); `make bench` reruns it.",
    ]
    return "\n".join(lines)


def _floor(askers: int, channels: int) -> float:
    """Seconds before the last answer of the busiest channel can be shown, at best."""
    return -(-askers // channels) / PER_CHANNEL


def _faults(results: dict[str, Any]) -> list[str]:
    return [str(r["faults_injected"]) for r in results["scenarios"].values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--askers", type=int, default=50)
    parser.add_argument("--scale", type=float, default=1.0, help="limits this many times faster")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(args.askers, args.scale))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    if not args.no_readme:
        write_section("delivery", table(results))


if __name__ == "__main__":
    main()
