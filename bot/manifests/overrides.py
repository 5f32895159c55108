"""What an override key applies to, in each package manager's syntax.  Pure.

Every function takes the key path of one string value below the override field (relative to
it) and returns a `Target`: the package whose dependency it overrides (None: every copy), the
package it sets, and the version range the key narrows it to (`sharp@0.33`, pnpm's
`sharp@<0.34`, Yarn's `sharp@npm:^0.33.4`; empty for a bare name); None when the path names
nothing it understands.

- npm `overrides`: nested objects — `{"sharp": "…"}`, `{"sharp": {".": "…"}}`,
  `{"next": {"sharp": "…"}}`; a key may carry a selector (`next@15`).
- pnpm `overrides` (package.json `pnpm.overrides` or pnpm-workspace.yaml): one flat key —
  `sharp`, `sharp@<0.34`, `next>sharp`, `next@15>sharp`.
- Yarn `resolutions`: one flat key — `sharp`, `**/sharp`, `astro/sharp`, `@scope/pkg/sharp`,
  `sharp@npm:^0.33.4` (Berry descriptors).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_SEGMENT = re.compile(r"@[^/]+/[^/]+|[^/]+")


class Target(NamedTuple):
    """What one override key applies to."""

    holder: str | None
    name: str
    selector: str = ""


def package_name(key: str) -> str:
    """The package name of a key with an optional selector (`next`, `next@15`, `@scope/x@^2`,
    `sharp@npm:^0.33`)."""
    at = key.find("@", 1)
    return key if at < 0 else key[:at]


def selector(key: str) -> str:
    """The version range of a key (`sharp@0.33` → `0.33`, `sharp@npm:^0.33.4` → `^0.33.4`);
    empty for a bare name."""
    at = key.find("@", 1)
    return "" if at < 0 else key[at + 1 :].removeprefix("npm:")


def npm_override(relative: tuple[str, ...]) -> Target | None:
    """npm: the last key is the target (`.` means the object's own key), the one before it the
    holder."""
    if relative and relative[-1] == ".":
        relative = relative[:-1]
    if not relative:
        return None
    holder = package_name(relative[-2]) if len(relative) >= 2 else None
    return Target(holder, package_name(relative[-1]), selector(relative[-1]))


def pnpm_override(relative: tuple[str, ...]) -> Target | None:
    """pnpm: `parent>child` (each side may carry a version selector)."""
    if len(relative) != 1:
        return None
    parts = [part.strip() for part in relative[0].split(">")]
    if not all(parts):
        return None
    holder = package_name(parts[-2]) if len(parts) >= 2 else None
    return Target(holder, package_name(parts[-1]), selector(parts[-1]))


def yarn_resolution(relative: tuple[str, ...]) -> Target | None:
    """Yarn: a path of package names (`**` matches any), the last one the target."""
    if len(relative) != 1:
        return None
    segments = _SEGMENT.findall(relative[0])
    if not segments:
        return None
    holder = segments[-2] if len(segments) >= 2 and segments[-2] != "**" else None
    return Target(
        package_name(holder) if holder else None,
        package_name(segments[-1]),
        selector(segments[-1]),
    )
