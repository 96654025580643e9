"""Who runs the waiting rooms (mastok/live/leadership.py), event by event, against the rules
alone: no database, no lock, no sockets."""

from __future__ import annotations

import pytest

from mastok.live.leadership import (
    SERVICE_RESTART,
    Acquired,
    Announce,
    CloseRooms,
    DrainRooms,
    Dropped,
    Event,
    HaltRooms,
    Leadership,
    Refused,
    Role,
    StartRooms,
    Stopping,
    Unreachable,
)


def at(*events: Event) -> Leadership:
    machine = Leadership()
    for event in events:
        machine.handle(event)
    return machine


def test_a_process_starts_as_a_standby_that_wants_the_lock() -> None:
    machine = Leadership()
    assert machine.role == Role.STANDBY
    assert machine.wants_lock and machine.queues
    assert not machine.leads


def test_only_a_standby_waits_in_the_locks_queue() -> None:
    assert not at(Acquired()).queues
    adrift = at(Acquired(), Dropped("reset"))
    assert adrift.role == Role.ADRIFT and adrift.wants_lock and not adrift.queues
    assert at(Acquired(), Dropped("reset"), Refused()).queues
    assert not at(Stopping()).queues


@pytest.mark.parametrize("event", [Refused(), Unreachable("refused")])
def test_a_standby_that_does_not_get_the_lock_stays_a_standby_quietly(event: Event) -> None:
    machine = Leadership()
    assert machine.handle(event) == []
    assert machine.role == Role.STANDBY
    assert machine.wants_lock


def test_taking_the_lock_starts_the_rooms_from_the_database() -> None:
    machine = Leadership()
    effects = machine.handle(Acquired())
    assert effects == [StartRooms(keep_sockets=False), Announce(Role.LEADER, "took the lock")]
    assert machine.leads
    assert not machine.wants_lock  # a leader checks its connection instead
    assert machine.terms == 1


@pytest.mark.parametrize("event", [Acquired(), Refused(), Unreachable("x")])
def test_a_leader_ignores_attempts_it_never_makes(event: Event) -> None:
    machine = at(Acquired())
    assert machine.handle(event) == []
    assert machine.role == Role.LEADER
    assert machine.terms == 1


def test_a_dropped_lock_connection_halts_the_rooms_at_once_but_keeps_their_sockets() -> None:
    machine = at(Acquired())
    effects = machine.handle(Dropped("connection reset"))
    assert effects == [HaltRooms(), Announce(Role.ADRIFT, "lost the lock: connection reset")]
    assert machine.role == Role.ADRIFT
    assert not machine.leads  # sockets are refused, no room event is handled
    assert machine.wants_lock  # and the lock is tried again


def test_adrift_while_the_database_is_away_keeps_trying() -> None:
    machine = at(Acquired(), Dropped("reset"))
    for _ in range(3):
        assert machine.handle(Unreachable("connection refused")) == []
        assert machine.role == Role.ADRIFT


def test_taking_the_lock_back_rebuilds_the_rooms_from_the_database_sockets_kept() -> None:
    machine = at(Acquired(), Dropped("reset"), Unreachable("refused"))
    effects = machine.handle(Acquired())
    # The halted rooms' sockets come into the rooms rebuilt from the database: none is closed.
    assert effects == [
        StartRooms(keep_sockets=True),
        Announce(Role.LEADER, "took the lock back"),
    ]
    assert machine.leads
    assert machine.terms == 2


def test_rooms_that_could_not_be_rebuilt_keep_their_sockets_for_the_next_attempt() -> None:
    # The driver reports a failed rebuild as a drop (it lets the lock go meanwhile).
    machine = at(Acquired(), Dropped("reset"), Acquired())
    assert machine.handle(Dropped("no rooms")) == [
        HaltRooms(),
        Announce(Role.ADRIFT, "lost the lock: no rooms"),
    ]
    assert machine.handle(Acquired()) == [
        StartRooms(keep_sockets=True),
        Announce(Role.LEADER, "took the lock back"),
    ]
    assert machine.terms == 3


def test_a_leader_twice_adrift_keeps_its_sockets_each_time() -> None:
    machine = at(Acquired(), Dropped("reset"), Acquired(), Dropped("reset again"))
    assert machine.role == Role.ADRIFT
    assert machine.handle(Acquired())[0] == StartRooms(keep_sockets=True)


def test_finding_the_lock_taken_closes_the_rooms_sockets_and_stands_by() -> None:
    machine = at(Acquired(), Dropped("reset"))
    effects = machine.handle(Refused())
    assert effects == [
        CloseRooms(SERVICE_RESTART),
        Announce(Role.STANDBY, "another process holds the lock"),
    ]
    assert machine.role == Role.STANDBY
    assert machine.wants_lock
    # The next time it gets the lock is a term of its own, from the database, with no sockets.
    assert machine.handle(Acquired())[0] == StartRooms(keep_sockets=False)
    assert machine.terms == 2


def test_a_standby_has_no_lock_to_drop() -> None:
    machine = Leadership()
    assert machine.handle(Dropped("reset")) == []
    assert machine.role == Role.STANDBY


@pytest.mark.parametrize(
    ("events", "effects"),
    [
        ((), []),
        ((Acquired(),), [DrainRooms()]),
        ((Acquired(), Dropped("reset")), [CloseRooms(SERVICE_RESTART)]),
    ],
    ids=["standby", "leader", "adrift"],
)
def test_stopping(events: tuple[Event, ...], effects: list[object]) -> None:
    machine = at(*events)
    assert machine.handle(Stopping()) == effects
    assert machine.role == Role.STOPPED
    assert not machine.wants_lock
    for event in (Acquired(), Dropped("x"), Refused(), Stopping()):
        assert machine.handle(event) == []
    assert machine.role == Role.STOPPED
