"""Benchmark results as tables in README.md, each between its own pair of markers."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def write_section(name: str, text: str) -> None:
    """Replace what lies between `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->`."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    readme = README.read_text()
    if begin not in readme or end not in readme:
        raise SystemExit(f"README.md lacks the {begin} / {end} markers")
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    README.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
