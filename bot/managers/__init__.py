"""Package managers: one implementation each behind `PackageManager`, chosen per project from
the lockfile it has and its `packageManager` field (`yarn@1` → Yarn classic, `yarn@2+` or a
Berry lockfile → Yarn Berry)."""

from __future__ import annotations

from collections.abc import Callable

from bot.managers.base import PackageManager
from bot.managers.npm import Npm
from bot.managers.pnpm import Pnpm
from bot.managers.yarn_berry import YarnBerry
from bot.managers.yarn_classic import YarnClassic

MANAGERS: dict[str, PackageManager] = {
    manager.name: manager for manager in (Npm(), Pnpm(), YarnBerry(), YarnClassic())
}
# lockfile name → the managers that write it, asked in order, in the order a project's files
# are checked
LOCKFILES: dict[str, tuple[str, ...]] = {
    "package-lock.json": ("npm",),
    "pnpm-lock.yaml": ("pnpm",),
    "yarn.lock": ("yarn-berry", "yarn-classic"),
}
# lockfiles of managers rotation-bot does not drive: named in the skip reason
FOREIGN_LOCKFILES: dict[str, str] = {
    "bun.lockb": "bun",
    "bun.lock": "bun",
    "npm-shrinkwrap.json": "npm (npm-shrinkwrap.json)",
}


def get_manager(name: str) -> PackageManager:
    """The manager registered under `name`."""
    return MANAGERS[name]


def declared_manager(package_manager: str | None) -> tuple[str, str] | None:
    """(tool, version) of a `packageManager` value (`yarn@4.5.1+sha512.…` → yarn, 4.5.1), or
    None when absent or unreadable (discovery then goes by the lockfile)."""
    if not package_manager or "@" not in package_manager[1:]:
        return None
    name, _, version = package_manager.partition("@")
    return name, version.split("+", 1)[0]


def manager_for(
    lockfile: str, package_manager: str | None, lock_text: Callable[[], str | None]
) -> str:
    """The manager of a project with `lockfile` (a `LOCKFILES` name)."""
    names = LOCKFILES[lockfile]
    declared = declared_manager(package_manager)
    return next((name for name in names if MANAGERS[name].claims(declared, lock_text)), names[-1])
