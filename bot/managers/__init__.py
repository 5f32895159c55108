"""Package managers: one implementation each behind `PackageManager`, chosen per project from
the lockfile it has and its `packageManager` field."""

from __future__ import annotations

from bot.managers.base import PackageManager
from bot.managers.npm import Npm

MANAGERS: dict[str, PackageManager] = {manager.name: manager for manager in (Npm(),)}
# lockfile name → the manager that writes it, in the order a project's files are checked
LOCKFILES: dict[str, str] = {"package-lock.json": "npm"}
# lockfiles of managers rotation-bot does not drive yet: named in the skip reason
FOREIGN_LOCKFILES: dict[str, str] = {
    "pnpm-lock.yaml": "pnpm",
    "yarn.lock": "yarn",
    "bun.lockb": "bun",
    "bun.lock": "bun",
    "npm-shrinkwrap.json": "npm (npm-shrinkwrap.json)",
}


def get_manager(name: str) -> PackageManager:
    """The manager registered under `name`."""
    return MANAGERS[name]
