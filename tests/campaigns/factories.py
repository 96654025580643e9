"""Valid campaign input to start tests from."""

from __future__ import annotations

from typing import Any

CONSENT = "# Consent\n\n- [ ] I am over 18\n- [ ] I agree to take part\n\n[accept]I agree[/accept]"


def campaign_input(namespace: str = "study_1", **changes: Any) -> dict[str, Any]:
    """Fields of a valid new campaign on the demo's two-player config."""
    return {
        "namespace": namespace,
        "slug": f"{namespace}_join",
        "otree_config_name": "guess_two",
        "per_session": 2,
        "join_once": False,
        "show_nb_participants": True,
        "max_sessions": 3,
        "concurrent_sessions": 1,
        "session_duration": 30,
        "waiting_limit": 5,
        "consent": CONSENT,
        "grouping": "",
        "instructions": "Please wait for the others.",
        "paused": "We are paused.",
        "completed": "We are done, thank you.",
        "pending": "The room is full, please wait.",
        **changes,
    }
