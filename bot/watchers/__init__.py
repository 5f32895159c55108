"""Watchers: the I/O half of planning. Each reads a repository and its sources, then hands the
facts to a pure planner and returns a `Plan`.  A runbook's `watch:` section picks the watcher
(`npm: <package>` → "npm", `base-images: true` → "base-images").

Each module registers its watcher with `@watcher("kind")` and is named after the kind
(`base-images` lives in base_images.py); `get_watcher` imports only the one asked for.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bot.errors import ConfigError
from bot.models import Plan

if TYPE_CHECKING:
    from bot.config import RepoConfig, RunbookSettings
    from bot.runbook import Runbook
    from bot.services import Services
    from bot.sources.npm.registry import NpmRegistry
    from bot.workspace import Workspace


@dataclass(frozen=True)
class WatchRequest:
    """Everything a watcher needs to plan one runbook for one repository."""

    runbook: Runbook
    settings: RunbookSettings
    repo_config: RepoConfig
    workspace: Workspace
    services: Services
    npm: NpmRegistry
    target: str | None
    now: datetime
    explicit: bool
    # versions and lines the repository holds back (`/rotate ignore`): selector → why
    held: Mapping[str, str] = field(default_factory=dict)


WatchFunction = Callable[[WatchRequest], Plan]
_WATCHERS: dict[str, WatchFunction] = {}


def watcher(kind: str) -> Callable[[WatchFunction], WatchFunction]:
    """Register a watcher under `kind`."""

    def register(function: WatchFunction) -> WatchFunction:
        _WATCHERS[kind] = function
        return function

    return register


def watch_kind(runbook: Runbook) -> str:
    """Which watcher a runbook uses."""
    if runbook.watch.npm:
        return "npm"
    if runbook.watch.base_images:
        return "base-images"
    raise ConfigError(f"{runbook.source}: watch must name an npm package or base-images: true")


def get_watcher(kind: str) -> WatchFunction:
    """The watcher registered for `kind`, imported on demand from the module named after it
    (`base-images` → `base_images`), so a plan loads only the watcher it uses."""
    modules = {module.name for module in pkgutil.iter_modules(__path__)}
    name = kind.replace("-", "_")
    if name in modules:
        importlib.import_module(f"{__name__}.{name}")
    try:
        return _WATCHERS[kind]
    except KeyError:
        known = ", ".join(sorted(module.replace("_", "-") for module in modules))
        raise ConfigError(f"unknown watcher {kind!r}; known: {known}") from None
