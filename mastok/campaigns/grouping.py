"""Mastok's grouping text: a question line, `Label:size` lines, an action line.

    What is your gender?
    Female:2
    Male:2
    Next

Participants pick a group; each session takes `size` people from each group.
"""

from __future__ import annotations

from dataclasses import dataclass


class GroupingError(ValueError):
    pass


@dataclass(frozen=True)
class Group:
    label: str
    size: int


@dataclass(frozen=True)
class Grouping:
    question: str
    groups: tuple[Group, ...]
    action: str

    @property
    def labels(self) -> list[str]:
        return [group.label for group in self.groups]

    @property
    def total(self) -> int:
        return sum(group.size for group in self.groups)

    def size_of(self, label: str) -> int | None:
        return next((g.size for g in self.groups if g.label == label), None)

    def as_text(self) -> str:
        """The grouping as Go Mastok sends it in `Grouping` frames (and its page reads it):
        the question line, `Label:size` lines, the action line."""
        lines = [self.question, *(f"{g.label}:{g.size}" for g in self.groups), self.action]
        return "\n".join(lines)


def parse_grouping(text: str) -> Grouping | None:
    """The grouping described by `text`, or None when it is blank (no grouping)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    if len(lines) < 3:
        raise GroupingError(
            "write a question line, then one 'Label:size' line per group, then an action line"
        )
    question, *group_lines, action = lines
    groups = [_parse_group(n, line) for n, line in enumerate(group_lines, start=2)]
    labels = [g.label for g in groups]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise GroupingError(f"group labels must differ: {', '.join(duplicates)} is repeated")
    return Grouping(question=question, groups=tuple(groups), action=action)


def _parse_group(line_number: int, line: str) -> Group:
    label, colon, size_text = line.rpartition(":")
    label = label.strip()
    if not colon or not label:
        raise GroupingError(f"line {line_number} must read 'Label:size', not {line!r}")
    try:
        size = int(size_text.strip())
    except ValueError:
        raise GroupingError(
            f"line {line_number}: the size after ':' must be a whole number, not {size_text!r}"
        ) from None
    if size < 1:
        raise GroupingError(f"line {line_number}: group {label!r} needs a size of at least 1")
    return Group(label=label, size=size)
