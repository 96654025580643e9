"""The table of settings written out: config.yml, .env.example, README's table, a plain listing.

`mastok settings --format F` prints them; tests/test_docs.py and tests/test_config.py check the
committed files against them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import yaml

from mastok.config import SETTINGS, Setting

WIDTH = 100
SOURCE = "from the table in mastok/config.py"


def shown(value: Any) -> str:
    """A value as one types it in .env or on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sentence(row: Setting) -> str:
    """The help as a sentence, for comments and flags ("oTree" and "`DEV`" keep their case)."""
    first = row.help.split(maxsplit=1)[0]
    help = row.help[0].upper() + row.help[1:] if first.islower() else row.help
    return help + "."


def _comment(text: str) -> str:
    return textwrap.fill(text, WIDTH, initial_indent="# ", subsequent_indent="# ") + "\n"


def env_example() -> str:
    head = _comment(
        "mastok's environment. Copy to .env: in DEV mode mastok loads it (variables already set "
        f"in the environment win). Written by `mastok settings --format env` {SOURCE}."
    )
    rows = [_comment(sentence(row)) + f"{row.variable}={shown(row.default)}\n" for row in SETTINGS]
    return head + "".join("\n" + row for row in rows)


def config_yml() -> str:
    head = _comment(
        "Non-secret defaults for mastok. Every key can be overridden by the environment variable "
        "MASTOK_<KEY IN UPPER CASE> (see .env.example); command-line flags override both. "
        f"Written by `mastok settings --format yaml` {SOURCE}."
    )
    rows = [
        _comment(sentence(row)) + yaml.safe_dump({row.name: _plain(row.default)})
        for row in SETTINGS
        if not row.secret
    ]
    return head + "".join("\n" + row for row in rows)


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def markdown_rows() -> list[tuple[str, str, str]]:
    """README's table: variable, default, meaning."""
    return [
        (f"`{row.variable}`", f"`{shown(row.default)}`" if row.default != "" else "empty", row.help)
        for row in SETTINGS
    ]


def markdown_table() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in markdown_rows()]
    return "\n".join(lines) + "\n"


def listing() -> str:
    """For people at a terminal: each variable, its type and default, and what it means."""
    parts = []
    for row in SETTINGS:
        secret = "; secret" if row.secret else ""
        default = shown(row.default) or "empty"
        parts.append(f"{row.variable} ({row.kind}{secret}; default: {default})\n")
        parts.append(textwrap.indent(textwrap.fill(sentence(row), WIDTH - 4), "    ") + "\n")
    return "".join(parts)


FORMATS: dict[str, Callable[[], str]] = {
    "text": listing,
    "env": env_example,
    "yaml": config_yml,
    "markdown": markdown_table,
}
