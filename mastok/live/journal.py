"""Undoable changes: the room writes each change to itself here, so that an event whose
database writes failed can be taken back whole.

The room changes memory first and the database after (the writes of an event go in one
transaction once the event is handled). If that transaction fails, `rollback` puts every
attribute, mapping entry and list back as it was before the event, in reverse order; once it
is committed, `commit` forgets the undo steps. In a turn of several events, an event whose
rules failed is rolled back to the mark taken before it; if their transaction fails, all are.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from functools import partial
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class Journal:
    __slots__ = ("_undo",)

    def __init__(self) -> None:
        self._undo: list[Callable[[], object]] = []

    def set(self, target: object, name: str, value: object) -> None:
        """`target.name = value`."""
        old = getattr(target, name)
        if old is value:
            return
        self._undo.append(partial(setattr, target, name, old))
        setattr(target, name, value)

    def put(self, mapping: MutableMapping[K, V], key: K, value: V) -> None:
        """`mapping[key] = value`."""
        if key in mapping:
            self._undo.append(partial(mapping.__setitem__, key, mapping[key]))
        else:
            self._undo.append(partial(mapping.pop, key, None))
        mapping[key] = value

    def pop(self, mapping: MutableMapping[K, V], key: K) -> V | None:
        """`mapping.pop(key, None)`."""
        if key not in mapping:
            return None
        value = mapping.pop(key)
        self._undo.append(partial(mapping.__setitem__, key, value))
        return value

    def append(self, items: list[T], item: T) -> None:
        self._undo.append(items.pop)
        items.append(item)

    def replace(self, items: list[T], new: list[T]) -> None:
        """`items[:] = new` (the same list object: those holding it see the change)."""
        self._undo.append(partial(items.__setitem__, slice(None), items[:]))
        items[:] = new

    def commit(self) -> None:
        self._undo.clear()

    def rollback(self, to: int = 0) -> None:
        """Undo every change since the last commit, or since there were `to` undo steps (a
        mark taken with `len`: the changes of one event among those of a turn)."""
        while len(self._undo) > to:
            self._undo.pop()()

    def __len__(self) -> int:
        return len(self._undo)
