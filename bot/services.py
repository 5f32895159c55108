"""The composition root: every service a run talks to, built once per process and passed in.

Nothing below this module constructs a network client, a forge or a clock of its own; tests
build `Services` with local servers instead of monkeypatching.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from bot.config import Settings
from bot.forges.base import Forge
from bot.models import utc_now
from bot.sources.http import HttpSource
from bot.sources.oci.client import OciClient, make_oci_client
from bot.sources.releases import ReleaseNotes


@dataclass
class Services:
    """Everything a step may talk to; built once per process and passed in (never global)."""

    settings: Settings
    environ: Mapping[str, str]
    http: HttpSource
    releases: ReleaseNotes
    forge: Forge
    clock: Callable[[], datetime]
    oci: OciClient


def build_services(
    settings: Settings, environ: Mapping[str, str], *, forge: Forge, http: HttpSource | None = None
) -> Services:
    """The composition root's services for one process."""
    client = http or HttpSource()
    return Services(
        settings=settings,
        environ=environ,
        http=client,
        releases=ReleaseNotes(client, settings.release_notes_url, settings.github_token),
        forge=forge,
        clock=utc_now,
        oci=make_oci_client(settings, environ, http=client),
    )
