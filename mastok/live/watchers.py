"""Supervisors watching a room: each change told once, at most every 100 ms, paced.

A room may change hundreds of times a second and be watched by hundreds of supervisors:
telling every change to every supervisor inside the room's turn made a participant's placement
wait for the fan-out (p50 12.4 s instead of 0.39 s with 500 supervisors). So the room's turn
only notes what changed, and a task of its own tells the supervisors: the room's view (state
and pool sizes) as it is then, at most every `COALESCE` seconds, so a supervisor always ends
up with the current view, not every step in between; and the notes (a session started, an
error), never dropped, in order, with the view they came with. It tells `PACE` supervisors at
a time and leaves the processor to everything else for `GAP` between them: a participant's
frame never waits behind the whole fan-out (each step of a participant's turn would wait behind
every supervisor's send: p99 x4 with 500 supervisors when they were all handed over at once),
nor behind a run of slices. With the slices back to back (only the event loop let in between),
a participant's placement with 500 supervisors watching took p99 x1.8 to x2.0 of its time
unwatched on 2 cores; with 1 ms between them, x1.1 to x1.4 (bench scenario 7). An update is
encoded once and each supervisor's frames of it go in one write, without a task
(`Connection.send_texts`): a frame at a time, each through its own task and ASGI send, was half
the server's time with 500 supervisors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from mastok.live.connection import Connection
from mastok.live.events import Notify, View
from mastok.live.protocol import Kind, encode
from mastok.tasks import TaskScope

COALESCE = 0.1
PACE = 10  # supervisors told at a time: their sends wait in the event loop with everyone's
SLICE_SECONDS = 0.05  # how long a slice's sends are waited for before the next slice
# Between slices: the room's database crossings, the process's other rooms, and oTree's and
# the supervisors' own processes go first. 500 supervisors are told over about 50 ms.
GAP = 0.001


class Watchers:
    def __init__(self, tasks: TaskScope, name: str) -> None:
        self.connections: set[Connection] = set()
        self._tasks = tasks
        self._name = name
        self._told: View | None = None  # what every watcher but the newest was last told
        self._newest: dict[Connection, View] = {}  # watchers told another view on arrival
        self._latest: View | None = None
        self._notes: list[Notify] = []
        self._teller: asyncio.Task[object] | None = None

    def add(self, connection: Connection, view: View) -> None:
        """A new watcher gets the whole view at once."""
        for kind, payload in _frames(None, view):
            connection.send(kind, payload)
        self.connections.add(connection)
        if self._told is None:
            self._told = self._latest = view
        else:
            self._newest[connection] = view

    def remove(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self._newest.pop(connection, None)
        if not self.connections:  # the next to come gets the view as it is then, whole
            self._told = self._latest = None
            self._notes = []

    @property
    def watched(self) -> bool:
        return bool(self.connections)

    def turn_ended(self, view: View, notes: Sequence[Notify]) -> None:
        """A turn of the room ended, with this view and these notes: called while `watched`
        only (unwatched, the runner makes neither: 2.3% of the Python opcodes a join ran,
        33,680 against 32,910 a participant; `bench.instructions --join --opcodes`)."""
        self._latest = view
        self._notes.extend(notes)
        if (notes or view != self._told) and (self._teller is None or self._teller.done()):
            self._teller = self._tasks.spawn(self._tell(), f"mastok supervisors {self._name}")

    async def _tell(self) -> None:
        """Tell what changed, then at most once per period while things change. The period
        starts once a telling ends: 500 supervisors, told over about 50 ms, are told about
        every 150 ms. Counted from each telling's start instead, the server spent 0.21 of a core
        on a watched room instead of 0.18-0.19, the supervisors' client half as much again, and
        placement was p99 x1.5 unwatched's instead of x1.1 to x1.4 (bench scenario 7)."""
        while self.connections and (self._notes or self._latest != self._told):
            await self._tell_once()
            await asyncio.sleep(COALESCE)

    async def _tell_once(self) -> None:
        view, notes = self._latest, self._notes
        assert view is not None
        told, newest = self._told, self._newest
        self._told, self._notes, self._newest = view, [], {}
        texts = {told: _texts(told, view, notes)}
        connections = list(self.connections)
        for start in range(0, len(connections), PACE):
            writers = []
            for connection in connections[start : start + PACE]:
                since = newest.get(connection, told)
                if since not in texts:
                    texts[since] = _texts(since, view, notes)
                connection.send_texts(texts[since])
                if (writer := connection.writing()) is not None:
                    writers.append(writer)
            if writers:  # a slow supervisor is left to its own writer, not waited for
                await asyncio.wait(writers, timeout=SLICE_SECONDS)
            if start + PACE < len(connections):
                await asyncio.sleep(GAP)


def _texts(told: View | None, view: View, notes: Sequence[Notify]) -> tuple[str, ...]:
    """The frames that bring a supervisor who was `told` up to `view`, with the notes: a
    session start before the sizes and state it changes, an error after the state
    (Unavailable) it explains."""
    started = [(n.kind, n.payload) for n in notes if n.kind == Kind.SESSION_START]
    others = [(n.kind, n.payload) for n in notes if n.kind != Kind.SESSION_START]
    changes = _frames(told, view)
    state = [frame for frame in changes if frame[0] == Kind.STATE]
    sizes = [frame for frame in changes if frame[0] != Kind.STATE]
    return tuple(encode(kind, payload) for kind, payload in [*started, *state, *others, *sizes])


def _frames(told: View | None, view: View) -> list[tuple[Kind, str]]:
    """The frames that bring a supervisor who was `told` up to `view`."""
    frames: list[tuple[Kind, str]] = []
    if told is None or told.state != view.state:
        frames.append((Kind.STATE, view.state))
    if told is None or told.joining != view.joining:
        frames.append((Kind.JOINING_SIZE, view.joining))
    if told is None or told.pending != view.pending:
        frames.append((Kind.PENDING_SIZE, view.pending))
    return frames
