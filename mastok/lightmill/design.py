"""TouchStone experiment designs (`experiment.xml`), parsed into plain dataclasses.

The XML is read with defusedxml: a file that declares entities (the "billion laughs" bomb, or an
external entity such as `file:///etc/passwd`) is refused before anything is expanded or fetched.
Elements nest at most MAX_DEPTH deep (a real design nests six). Unknown elements (`setup`,
`intertitle`, ...) are ignored, and so are the `number`/`total`
attributes: blocks are numbered from 0 in document order, practice blocks included, trials from
0 within their block. `measured_number` counts the non-practice blocks only; practice blocks
have none (LightMill's `measuredBlockNumber` is null for them).
"""

from __future__ import annotations

import xml.sax
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import defusedxml
import defusedxml.sax

TRUE_DEFAULTS = frozenset({"true", "1", "True", "yes", "Yes"})
BLOCK_TAGS = ("block", "practice")
MAX_ID_LENGTH = 255  # the id columns' length
MAX_DEPTH = 64


class DesignError(ValueError):
    """The design cannot be imported; the message says where (element, line) and why."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True)
class FactorValue:
    id: str
    name: str | None


@dataclass(frozen=True)
class Factor:
    id: str
    name: str | None
    type: str | None
    kind: str | None
    tag: str | None
    values: tuple[FactorValue, ...]
    default: str | None  # the id of the default value


@dataclass(frozen=True)
class Measure:
    id: str
    name: str | None
    type: str | None
    trial_level: bool
    event_level: bool


@dataclass(frozen=True)
class Trial:
    number: int
    factor_values: Mapping[str, str]  # effective: defaults < block < trial


@dataclass(frozen=True)
class Block:
    number: int
    measured_number: int | None  # None for practice blocks
    practice: bool
    factor_values: Mapping[str, str]  # the block's own, as written
    trials: tuple[Trial, ...]


@dataclass(frozen=True)
class Run:
    id: str
    blocks: tuple[Block, ...]

    @property
    def trial_count(self) -> int:
        return sum(len(block.trials) for block in self.blocks)


@dataclass(frozen=True)
class Design:
    id: str
    name: str | None
    author: str | None
    description: str | None
    factors: tuple[Factor, ...]
    measures: tuple[Measure, ...]
    runs: tuple[Run, ...]

    @property
    def defaults(self) -> Mapping[str, str]:
        return {f.id: f.default for f in self.factors if f.default is not None}


def parse_design(data: bytes | str) -> Design:
    """Parse a TouchStone design. Raises DesignError."""
    if isinstance(data, str):
        data = data.encode()
    return _design(_read_tree(data))


# --- XML to a small tree with line numbers ---------------------------------------------------


@dataclass
class _Node:
    tag: str
    attrs: dict[str, str]
    line: int | None
    children: list[_Node] = field(default_factory=list)

    def describe(self) -> str:
        shown = " ".join(f'{k}="{v}"' for k, v in self.attrs.items() if k in ("id", "values"))
        return f"<{self.tag}{' ' + shown if shown else ''}>"

    def error(self, message: str) -> DesignError:
        return DesignError(f"{self.describe()}: {message}", self.line)

    def get(self, name: str) -> str | None:
        """An attribute, None when missing or empty (as LightMill stored them)."""
        return self.attrs.get(name) or None

    def require(self, name: str) -> str:
        value = self.attrs.get(name, "").strip()
        if not value:
            raise self.error(f"the {name!r} attribute is missing or empty")
        if len(value) > MAX_ID_LENGTH:
            raise self.error(f"the {name!r} attribute is longer than {MAX_ID_LENGTH} characters")
        return value

    def iter(self, *tags: str) -> Iterator[_Node]:
        """Descendants with these tags, in document order."""
        for child in self.children:
            if child.tag in tags:
                yield child
            yield from child.iter(*tags)


class _TreeBuilder(xml.sax.ContentHandler):
    def __init__(self) -> None:
        super().__init__()
        self.root: _Node | None = None
        self.stack: list[_Node] = []
        self.locator: Any = None

    def setDocumentLocator(self, locator: Any) -> None:
        self.locator = locator

    def line(self) -> int | None:
        return self.locator.getLineNumber() if self.locator is not None else None

    def startElement(self, name: str, attrs: Any) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise DesignError(f"<{name}>: elements nest deeper than {MAX_DEPTH}", self.line())
        node = _Node(name, dict(attrs.items()), self.line())
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node
        self.stack.append(node)

    def endElement(self, name: str) -> None:
        self.stack.pop()


def _read_tree(data: bytes) -> _Node:
    builder = _TreeBuilder()
    try:
        defusedxml.sax.parseString(
            data, builder, forbid_dtd=False, forbid_entities=True, forbid_external=True
        )
    except defusedxml.EntitiesForbidden as error:
        raise DesignError(
            f"entity declarations are not accepted (entity {error.name!r}"
            f"{_system_id(error.sysid)}): write the values out instead",
            builder.line(),
        ) from None
    except defusedxml.ExternalReferenceForbidden as error:
        raise DesignError(
            f"external references are not accepted{_system_id(error.sysid)}", builder.line()
        ) from None
    except xml.sax.SAXParseException as error:
        raise DesignError(
            f"not well-formed XML: {error.getMessage()} (column {error.getColumnNumber()})",
            error.getLineNumber(),
        ) from None
    except (xml.sax.SAXException, defusedxml.DefusedXmlException) as error:
        raise DesignError(f"cannot read the XML: {error}", builder.line()) from None
    if builder.root is None:
        raise DesignError("the document is empty")
    return builder.root


def _system_id(sysid: str | None) -> str:
    return f" pointing to {sysid!r}" if sysid else ""


# --- Tree to design ---------------------------------------------------------------------------


def _design(root: _Node) -> Design:
    if root.tag != "experiment":
        raise root.error("the root element must be <experiment>")
    experiment_id = root.require("id")
    factors = tuple(_factor(node) for node in root.iter("factor"))
    _check_unique(root, "factor", [f.id for f in factors])
    measures = tuple(_measure(node) for node in root.iter("measure"))
    _check_unique(root, "measure", [m.id for m in measures])
    values = {f.id: {v.id for v in f.values} for f in factors}
    defaults = {f.id: f.default for f in factors if f.default is not None}
    runs = tuple(_run(node, values, defaults) for node in root.iter("run"))
    _check_unique(root, "run", [r.id for r in runs])
    return Design(
        id=experiment_id,
        name=root.get("name"),
        author=root.get("author"),
        description=root.get("description"),
        factors=factors,
        measures=measures,
        runs=runs,
    )


def _check_unique(root: _Node, what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for id_ in ids:
        if id_ in seen:
            raise root.error(f"two {what}s have the id {id_!r}")
        seen.add(id_)


def _factor(node: _Node) -> Factor:
    factor_id = node.require("id")
    values: list[FactorValue] = []
    default = None
    for value_node in node.iter("value"):
        value = FactorValue(value_node.require("id"), value_node.get("name"))
        if value.id in {v.id for v in values}:
            raise value_node.error(f"factor {factor_id!r} already has a value {value.id!r}")
        values.append(value)
        if value_node.attrs.get("default") in TRUE_DEFAULTS:
            if default is not None:
                raise value_node.error(
                    f"factor {factor_id!r} already has a default value ({default!r})"
                )
            default = value.id
    return Factor(
        id=factor_id,
        name=node.get("name"),
        type=node.get("type"),
        kind=node.get("kind"),
        tag=node.get("tag"),
        values=tuple(values),
        default=default,
    )


def _measure(node: _Node) -> Measure:
    """Trial level: an attribute whose name contains `log` says `ok`; event level: `cine`."""
    said_ok = [name for name, value in node.attrs.items() if value.strip().lower() == "ok"]
    trial_level = any("log" in name for name in said_ok)
    event_level = any("cine" in name for name in said_ok)
    if not (trial_level or event_level):
        raise node.error('the measure has no level: give it log="ok" and/or cine="ok"')
    return Measure(
        id=node.require("id"),
        name=node.get("name"),
        type=node.get("type"),
        trial_level=trial_level,
        event_level=event_level,
    )


def _run(node: _Node, known: Mapping[str, set[str]], defaults: Mapping[str, str]) -> Run:
    blocks = []
    measured = 0
    for number, block_node in enumerate(node.iter(*BLOCK_TAGS)):
        practice = block_node.tag == "practice"
        own = _factor_values(block_node, known)
        base = {**defaults, **own}
        trials = tuple(
            Trial(i, {**base, **_factor_values(trial_node, known)})
            for i, trial_node in enumerate(c for c in block_node.children if c.tag == "trial")
        )
        blocks.append(
            Block(
                number=number,
                measured_number=None if practice else measured,
                practice=practice,
                factor_values=own,
                trials=trials,
            )
        )
        measured += 0 if practice else 1
    return Run(node.require("id"), tuple(blocks))


def _factor_values(node: _Node, known: Mapping[str, set[str]]) -> dict[str, str]:
    """`values="factor=value,factor=value"`; every factor and value must be declared."""
    found: dict[str, str] = {}
    for item in (node.attrs.get("values") or "").split(","):
        item = item.strip()
        if not item:
            continue
        factor, equals, value = (part.strip() for part in item.partition("="))
        if not equals:
            raise node.error(f"{item!r} is not factor=value")
        if factor not in known:
            raise node.error(f"unknown factor {factor!r}")
        if value not in known[factor]:
            raise node.error(f"factor {factor!r} has no value {value!r}")
        if factor in found:
            raise node.error(f"factor {factor!r} is given twice")
        found[factor] = value
    return found
