"""The code's layers hold: imports run down only, and no module imports itself round a circle.

From the bottom: `inference` and `bot/core` (with `bot/logs.py`); the domain (`bot/quiz`,
`bot/feedback`); the platforms and other adapters (`bot/slack`, `bot/discord`, the terminal,
evaluation, metrics, the web server); on top the settings, the composition root and the commands.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = (
    "bot.config",
    "bot.wiring",
    "bot.runner",
    "bot.cli",
    "bot.instance",
    "bot.evaluation.command",
)
ADAPTERS = ("bot.slack", "bot.discord", "bot.console", "bot.evaluation", "bot.metrics", "bot.web")


def layer(module: str) -> int:
    if module.startswith(TOP):
        return 4
    if module.startswith(ADAPTERS):
        return 3
    if module.startswith(("bot.quiz", "bot.feedback")):
        return 2
    if module.startswith(("bot.core", "bot.logs")) or module == "bot":
        return 1
    assert module.startswith("inference"), module
    return 0


def modules() -> dict[str, Path]:
    found = {}
    for path in [*ROOT.glob("bot/**/*.py"), *ROOT.glob("inference/**/*.py")]:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports() -> dict[str, set[str]]:
    """Which of our modules each of our modules imports (a package's submodules by name)."""
    known, graph = modules(), defaultdict(set)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [s for s in subs if s in known] or [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in known and t != name)
    return graph


def test_imports_run_down_the_layers_only() -> None:
    upward = [f"{a} -> {b}" for a, bs in imports().items() for b in bs if layer(b) > layer(a)]
    assert not upward


def test_no_module_imports_itself_round_a_circle() -> None:
    graph, state, circles = imports(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(modules()):
        if module not in state:
            visit(module, [module])
    assert not circles
