"""SessionStarter against an oTree whose answers each test chooses: what it claims, what it
creates, and which answers it refuses to send anyone to."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mastok.live.events import Entrant
from mastok.live.starter import SessionStarter, StartFailed, StartSpec
from mastok.otree import OTreeClient, Participant, Progress, Session, SessionSummary

SPEC = StartSpec(1, "ns", "uid1", "demo", 2)


class ScriptedOTree(OTreeClient):
    """oTree's sessions as a list: created ones are added, listed, read back."""

    def __init__(self) -> None:
        super().__init__("http://otree.invalid", "k")
        self.sessions: dict[str, Session] = {}
        self.created: list[str] = []
        self.codes: list[list[str]] = []  # participant codes the next creations get
        self.entered: set[str] = set()  # participant codes whose start link was opened

    def add(self, code: str, label: str, participant_codes: list[str]) -> None:
        participants = [Participant(p, n, None) for n, p in enumerate(participant_codes, 1)]
        self.sessions[code] = Session(
            code, len(participants), "demo", "", "", participants=participants, label=label
        )

    async def list_sessions(self) -> list[SessionSummary]:
        return [
            SessionSummary(s.code, s.num_participants, s.config_name, s.label, "", "", None)
            for s in self.sessions.values()
        ]

    async def get_session(self, code: str) -> Session:
        return self.sessions[code]

    async def create_session(
        self,
        config_name: str,
        num_participants: int,
        *,
        label: str | None = None,
        modified_config: dict[str, Any] | None = None,
    ) -> Session:
        code = f"s{len(self.sessions) + 1}"
        codes = (
            self.codes.pop(0) if self.codes else [f"{code}p{n}" for n in range(num_participants)]
        )
        self.add(code, label or "", codes)
        self.created.append(code)
        return self.sessions[code]

    async def set_participant_vars(self, participant_code: str, values: dict[str, Any]) -> None:
        pass

    async def session_progress(self, code: str) -> list[Progress]:
        codes = [p.code for p in self.sessions[code].participants]
        return [Progress(p, 1 if p in self.entered else 0, 3) for p in codes]


ENTRANTS = (Entrant("a", ()), Entrant("b", ()))


@pytest.mark.parametrize("old_codes", [["o1"], ["o1", "o2", "o3"]], ids=["smaller", "larger"])
async def test_a_session_of_another_size_under_its_label_is_not_claimed(
    old_codes: list[str],
) -> None:
    # Session 1 was asked of oTree at another per_session (its answer lost), then per_session
    # became 2. Claimed, a smaller session failed every retry for ever (the pool stuck); a
    # larger one sent the pool into a game waiting for players who never come.
    otree = ScriptedOTree()
    otree.add("old", "mk:ns:1:uid1", old_codes)
    created = await SessionStarter(otree, "http://public").start(SPEC, 1, True, ENTRANTS)
    assert created.code == otree.created[0]
    assert len(created.participants) == 2
    again = await SessionStarter(otree, "http://public").start(SPEC, 1, True, ENTRANTS)
    assert again.code == created.code  # a later retry claims the one of the right size


@pytest.mark.parametrize(
    "codes",
    [["p1", "p1"], ["p1", ""]],
    ids=["a code twice", "an empty code"],
)
async def test_a_session_whose_participant_codes_cannot_seat_everyone_is_refused(
    codes: list[str],
) -> None:
    otree = ScriptedOTree()
    otree.codes = [codes]
    with pytest.raises(StartFailed, match="participant codes"):
        await SessionStarter(otree, "http://public").start(SPEC, 1, False, ENTRANTS)


async def test_of_two_sessions_under_its_label_the_latest_is_claimed() -> None:
    # A database restored from a backup numbers sessions again from the backup's count: "old"
    # was played by others before the restore, "new" created since (its answer lost).
    otree = ScriptedOTree()
    otree.add("old", "mk:ns:1:uid1", ["o1", "o2"])
    otree.add("new", "mk:ns:1:uid1", ["n1", "n2"])
    created = await SessionStarter(otree, "http://public").start(SPEC, 1, True, ENTRANTS)
    assert created.code == "new"
    assert [code for code, _ in created.participants] == ["n1", "n2"]


async def test_a_session_under_its_label_that_somebody_entered_is_not_claimed() -> None:
    # A database restored from a backup taken while session 1 was being asked: the room
    # retries it and looks its label up. The session found was created before the restore
    # and its links sent from the history the restore undid; somebody is playing in it.
    otree = ScriptedOTree()
    otree.add("played", "mk:ns:1:uid1", ["o1", "o2"])
    otree.entered = {"o2"}
    created = await SessionStarter(otree, "http://public").start(SPEC, 1, True, ENTRANTS)
    assert otree.created == [created.code]
    assert created.code != "played"
    again = await SessionStarter(otree, "http://public").start(SPEC, 1, True, ENTRANTS)
    assert again.code == created.code  # the one made now, nobody in it yet, is claimed


@pytest.mark.parametrize("public_url", ["", "otree.example.org"], ids=["none", "no scheme"])
async def test_no_session_is_started_without_a_public_otree_url(public_url: str) -> None:
    # Each participant would be sent to `/InitializeParticipant/...` on mastok's own host (or
    # a path under it): a link that does not work, for a session made for nothing.
    otree = ScriptedOTree()
    with pytest.raises(StartFailed, match="MASTOK_OTREE_PUBLIC_URL"):
        await SessionStarter(otree, public_url).start(SPEC, 1, False, ENTRANTS)
    assert otree.created == []


async def test_a_session_listed_without_its_size_is_claimed_after_its_seats_are_checked() -> None:
    # A list whose entries lack num_participants (read as 0): the session read in full seats
    # the pool, so it is claimed, not made a second time.
    otree = ScriptedOTree()
    otree.add("made", "mk:ns:1:uid1", ["m1", "m2"])
    otree.sessions["made"] = dataclasses.replace(otree.sessions["made"], num_participants=0)
    created = await SessionStarter(otree, "http://public").start(SPEC, 1, True, ENTRANTS)
    assert created.code == "made"
    assert otree.created == []
