"""Campaigns for live tests, created through the admin API of a running server."""

from __future__ import annotations

from typing import Any

from tests.campaigns.factories import campaign_input
from tests.fixtures.live import LiveServer


def running_campaign(server: LiveServer, namespace: str = "live", **changes: Any) -> dict[str, Any]:
    """A Running campaign (per_session 2 on the demo's two-player game unless changed)."""
    with server.admin() as admin:
        created = admin.post("/api/campaigns", json=campaign_input(namespace, **changes))
        assert created.status_code == 201, created.text
        running = admin.patch(f"/api/campaigns/{namespace}", json={"state": "Running"})
        assert running.status_code == 200, running.text
        return running.json()


def campaign_state(server: LiveServer, namespace: str) -> dict[str, Any]:
    with server.admin() as admin:
        return admin.get(f"/api/campaigns/{namespace}").json()
