"""Every setting is documented: `.env.example` lists each one with a working value, and the README's
configuration table names it."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import Settings

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
NAMES = [field.validation_alias for field in Settings.model_fields.values()]


def listed() -> list[str]:
    """The names `.env.example` sets, in order."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    return [line.partition("=")[0] for line in lines if line and not line.startswith("#")]


def test_env_example_lists_every_setting_once_and_nothing_else() -> None:
    assert sorted(listed()) == sorted(NAMES)


def test_env_example_as_it_ships_is_valid(monkeypatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(str(name), raising=False)
    shipped = Settings(_env_file=ENV_EXAMPLE).model_dump()
    defaults = Settings(_env_file=None).model_dump()
    # Its values are the defaults; an empty value stands for "not set".
    differ = {
        k: v for k, v in shipped.items() if v != defaults[k] and (v, defaults[k]) != ("", None)
    }
    assert differ == {}


def test_the_readme_names_every_setting_in_its_configuration_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.partition("## Configuration")[2].partition("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {
        name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    }
    assert set(NAMES) <= documented, set(NAMES) - documented
