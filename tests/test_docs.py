"""The docs checked against the code: README's settings table and .env.example list exactly the
settings of the table in mastok/config.py, with their defaults; docs/protocol.md lists every
frame kind each way and every Disconnect reason.

`tables(path)` reads every markdown table of a document with the heading it sits under; a check
of another document (say, docs/protocol.md against the frame kinds) reads it the same way and
compares `code_names(...)` of a column with the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from dotenv import dotenv_values
from markdown_it import MarkdownIt

from mastok import config_files
from mastok.config import PROJECT_ROOT, SETTINGS, Setting
from mastok.live.protocol import Kind, Reason

README = PROJECT_ROOT / "README.md"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
SETTINGS_HEADER = ("variable", "default", "meaning")


@dataclass
class Table:
    heading: str  # the nearest heading above the table
    header: tuple[str, ...]
    rows: list[dict[str, str]]  # cells keyed by the header, as written (markdown source)


def tables(path: Path) -> list[Table]:
    found: list[Table] = []
    heading, cells, inline_of = "", [], ""
    for token in MarkdownIt("commonmark").enable("table").parse(path.read_text()):
        if token.type in ("heading_open", "th_open", "td_open"):
            inline_of = token.type
        elif token.type == "inline" and inline_of == "heading_open":
            heading, inline_of = token.content, ""
        elif token.type == "inline" and inline_of:
            cells.append(token.content)
            inline_of = ""
        elif token.type == "table_open":
            found.append(Table(heading, (), []))
        elif token.type == "tr_close" and not found[-1].header:
            found[-1].header, cells = tuple(cells), []
        elif token.type == "tr_close":
            found[-1].rows.append(dict(zip(found[-1].header, cells, strict=True)))
            cells = []
    return found


def table(path: Path, header: tuple[str, ...]) -> Table:
    """The one table of the document with this header row."""
    matching = [found for found in tables(path) if found.header == header]
    assert len(matching) == 1, f"{path.name}: {len(matching)} tables headed {' | '.join(header)}"
    return matching[0]


def code_names(cell: str) -> list[str]:
    """The `code` spans of a cell: `MASTOK_LOGIN`, `MASTOK_PASSWORD` -> both names."""
    return re.findall(r"`([^`]+)`", cell)


# --- README's settings table ------------------------------------------------------------------

PASTE = "paste `mastok settings --format markdown` into README.md's Configuration section"


@pytest.fixture(scope="module")
def readme_settings() -> dict[str, dict[str, str]]:
    rows = table(README, SETTINGS_HEADER).rows
    return {name: row for row in rows for name in code_names(row["variable"])}


@pytest.mark.parametrize("row", SETTINGS, ids=lambda row: row.name)
def test_readme_documents_the_setting_and_its_default(
    readme_settings: dict[str, dict[str, str]], row: Setting
) -> None:
    documented = readme_settings.get(row.variable)
    assert documented is not None, f"README.md lacks {row.variable}: {PASTE}"
    cells = (documented["variable"], documented["default"], documented["meaning"])
    assert cells == config_files.markdown_rows()[SETTINGS.index(row)], PASTE


def test_readme_documents_no_other_setting_in_the_table_order(
    readme_settings: dict[str, dict[str, str]],
) -> None:
    assert list(readme_settings) == [row.variable for row in SETTINGS], PASTE


def test_the_table_reader_sees_each_table_under_its_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    listed = config_files.markdown_table()
    page.write_text(f"# Settings\n\n{listed}\nText.\n\n## Frames\n\n| kind |\n| --- |\n| `A` |\n")

    settings, frames = tables(page)

    assert (settings.heading, settings.header) == ("Settings", SETTINGS_HEADER)
    assert [tuple(row.values()) for row in settings.rows] == config_files.markdown_rows()
    assert (frames.heading, frames.rows) == ("Frames", [{"kind": "`A`"}])
    assert code_names("`MASTOK_LOGIN`, `MASTOK_PASSWORD`") == ["MASTOK_LOGIN", "MASTOK_PASSWORD"]


# --- .env.example -----------------------------------------------------------------------------


def test_env_example_lists_every_setting_with_its_default() -> None:
    listed = dotenv_values(ENV_EXAMPLE)

    assert listed == {row.variable: config_files.shown(row.default) for row in SETTINGS}


def test_env_example_is_written_from_the_table() -> None:
    assert ENV_EXAMPLE.read_text() == config_files.env_example(), (
        ".env.example differs from the table in mastok/config.py: "
        "run `mastok settings --format env > .env.example`"
    )


# --- docs/protocol.md against the frame kinds and reasons -------------------------------------

PROTOCOL = PROJECT_ROOT / "docs" / "protocol.md"
KIND_TABLES = {  # the heading of each table of frames, and the kinds it must list exactly
    "Server to participant": {
        Kind.STATE,
        Kind.PAUSED,
        Kind.COMPLETED,
        Kind.RESUME,
        Kind.CONSENT,
        Kind.GROUPING,
        Kind.INSTRUCTIONS,
        Kind.JOINING_SIZE,
        Kind.PENDING,
        Kind.STARTING,
        Kind.WAITING,
        Kind.READY_CHECK,
        Kind.EXIT,
        Kind.ERROR,
        Kind.DISCONNECT,
        Kind.PONG,
    },
    "Participant to server": {
        Kind.LAND,
        Kind.RESUME,
        Kind.AGREE,
        Kind.CONNECT,
        Kind.LEAVE,
        Kind.READY,
        Kind.PING,
    },
    "Server to supervisor": {
        Kind.STATE,
        Kind.JOINING_SIZE,
        Kind.PENDING_SIZE,
        Kind.SESSION_START,
        Kind.ERROR,
        Kind.PONG,
    },
    "Supervisor to server": {Kind.STATE, Kind.PING},
}


@pytest.mark.parametrize("heading", KIND_TABLES)
def test_protocol_lists_every_frame_kind_each_way(heading: str) -> None:
    (found,) = [t for t in tables(PROTOCOL) if t.heading == heading]
    listed = [name for row in found.rows for name in code_names(row["kind"])]
    assert sorted(listed) == sorted(KIND_TABLES[heading])


def test_every_frame_kind_is_documented_somewhere() -> None:
    assert set().union(*KIND_TABLES.values()) == set(Kind)


def test_protocol_names_every_disconnect_reason() -> None:
    text = PROTOCOL.read_text()
    reasons = text[text.index("Disconnect reasons:") :].split("\n\n", 1)[0]
    sent = set(Reason) - {Reason.AWAY}  # Away is never sent: it is the record's reason
    assert {r for r in sent if f"`{r}`" in reasons} == sent
    assert "`Redirect:{URL}`" in reasons
    assert "`Away`" in reasons
