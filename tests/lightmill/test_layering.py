"""LightMill's domain (mastok/lightmill/) knows nothing of HTTP: its routes live in mastok/web/."""

from __future__ import annotations

import ast
from pathlib import Path

import mastok.lightmill

PACKAGE = Path(mastok.lightmill.__file__).parent
HTTP = ("starlette", "mastok.web", "mastok.app", "mastok.services")


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_lightmill_imports_nothing_of_http() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 10

    offending = {
        f"{path.name}: {name}"
        for path in modules
        for name in imported_modules(path)
        if name.startswith(HTTP)
    }

    assert offending == set()
