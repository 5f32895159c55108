"""Onboarding (service setting `ROTATION_BOT_ONBOARDING`, off by default): a repository without
`.github/rotation-bot.yml` first gets one pull request adding it, listing what the bot found
(projects, pins, base images) and spelling out the settings it will use.  Nothing else happens
there until that file is on the base branch (or the setting is off).

Rendering is pure; every string from the repository or a registry goes into a YAML comment on
one line, with anything but printable characters replaced, so it cannot add a key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import timedelta

from bot.errors import BotError
from bot.markdown import code_block
from bot.models import Plan
from bot.runbook import Runbook

ONBOARDING_BRANCH = "rotation-bot/configure"
ONBOARDING_VERSION = "1.0.0"  # the config format the pull request adds (version: 1)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def _comment(text: object) -> str:
    return _UNPRINTABLE.sub("?", str(text))[:200]


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(seconds)


def _flow(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def render_config(runbooks: Sequence[Runbook], plans: Sequence[tuple[str, Plan | BotError]]) -> str:
    """The `.github/rotation-bot.yml` the onboarding pull request adds."""
    lines = [
        "# rotation-bot configuration (see its README, 'Configuration').",
        "# Written by rotation-bot's onboarding from what it found in this repository;",
        "# edit it in this pull request, then merge it to start the rotations.",
        "#",
        "# Found:",
    ]
    for name, found in plans:
        if isinstance(found, BotError):
            lines.append(f"#   {name}: could not be planned ({_comment(found.message)})")
            continue
        for status in found.projects:
            project = status.project
            pinned = ", ".join(f"{pin.name} {pin.version}" for pin in status.pins) or "no pins"
            lines.append(
                f"#   {name}: project {_comment(project.label)} ({_comment(project.manager)}, "
                f"{_comment(project.lockfile)}) at {_comment(status.current_version)}; "
                f"{_comment(pinned)}"
            )
        if not found.projects:
            lines += [
                f"#   {name}: {_comment(pin.name)} {_comment(pin.version)}"
                for pin in found.current_pins
            ]
        lines += [
            f"#   {name}: would rotate {_comment(rotation.subject)} to "
            f"{_comment(rotation.new_version if rotation.kind != 'digest' else 'new digests')}"
            for rotation in found.rotations
        ]
        if not found.projects and not found.current_pins and not found.rotations:
            reasons = "; ".join(f"{item.subject}: {item.reason}" for item in found.skipped)
            lines.append(f"#   {name}: nothing ({_comment(reasons or 'nothing found')})")
    lines += ["", "version: 1", "runbooks:"]
    for runbook in sorted(runbooks, key=lambda item: item.name):
        lines.append(f"  {runbook.name}:")
        lines.append("    enabled: true")
        if runbook.pins is not None:
            lines.append(f"    platforms: {_flow(runbook.pins.platforms)}")
        if runbook.watch.base_images:
            lines.append(f"    dockerfiles: {_flow(runbook.dockerfiles)}")
        lines.append(f"    minimum-release-age: {_duration(runbook.minimum_release_age)}")
    lines += [
        "verify:",
        "  provenance: if-published",
        "pull-requests:",
        "  labels: [dependencies, security]",
        "  rebase-when: conflicted",
        "  automerge: false",
        "",
    ]
    return "\n".join(lines)


def onboarding_body(config: str) -> str:
    """The onboarding pull request's body."""
    return "\n".join(
        [
            "## Configure rotation-bot",
            "",
            "rotation-bot found this repository without `.github/rotation-bot.yml`. This pull "
            "request adds one that lists what it found and the settings it will use. Nothing "
            "else happens here until it is merged; edit it first if the settings are not right "
            "(`rotation-bot validate FILE` checks a config, and the bot comments on pull "
            "requests that change it).",
            "",
            *code_block(config.rstrip("\n")),
            "",
        ]
    )
