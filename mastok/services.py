"""What the routes work with, built at start-up, and typed access to it from a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

if TYPE_CHECKING:  # for the types only: web/ modules import this, and live/ imports must not loop
    from mastok.audit import AuditLog
    from mastok.campaigns.service import CampaignService
    from mastok.config import Settings
    from mastok.db import Database
    from mastok.lightmill.service import LightMill
    from mastok.live.leader import Leader
    from mastok.live.records import Records
    from mastok.otree import OTreeClient
    from mastok.otree.probe import OTreeProbe


@dataclass
class Services:
    """Kept on `app.state.services` by the app's lifespan."""

    settings: Settings
    db: Database
    otree: OTreeClient
    campaigns: CampaignService
    records: Records
    leader: Leader  # its `rooms` while this process leads
    lightmill: LightMill
    audit: AuditLog
    otree_probe: OTreeProbe


def services(connection: HTTPConnection) -> Services:
    """The app's services, for a request or a WebSocket."""
    found: Services = connection.app.state.services
    return found


def settings(connection: HTTPConnection) -> Settings:
    """The app's settings, there before the lifespan starts (unlike the services)."""
    found: Settings = connection.app.state.settings
    return found
