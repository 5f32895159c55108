"""The rotation's closure: every package whose locked version changes, and what must hold for each.

Pure, apart from `load_malicious_advisories` (a file, a directory or an http(s) URL):
- `changed_nodes`: every `(name, version)` a regenerated lockfile (of any package manager, as
  `bot.managers` parses it) locks that the base lockfile did not: sharp's new dependencies
  too, not only the pins;
- `MaliciousAdvisories`: OSV `MAL-` advisories for npm (the OSV JSON format, as the OpenSSF
  malicious-packages repository publishes them), matched by explicit version or SEMVER range;
  a withdrawn one (a false positive, kept under that repository's `osv/withdrawn/`) is ignored;
- `script_problems`: a `preinstall`/`install`/`postinstall` script a changed node adds or
  changes, unless the runbook allows that package's script by name and version range.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nodesemver
import semver

from bot.errors import ConfigError, ServiceUnavailable
from bot.manifests.locked import LockedTree
from bot.sources.http import HttpSource, host_of
from bot.sources.npm.models import PackageVersion

INSTALL_SCRIPTS = ("preinstall", "install", "postinstall")
ADVISORIES_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class NodeChange:
    """A package whose locked version changes (`previous_version` None: newly in the tree)."""

    name: str
    previous_version: str | None
    new_version: str


def changed_nodes(previous: LockedTree, new: LockedTree) -> tuple[NodeChange, ...]:
    """Every `(name, version)` in `new` that `previous` does not lock, sorted by name."""
    before: dict[str, list[str]] = {}
    for package in previous.packages:
        before.setdefault(package.name, []).append(package.version)
    at_key = {package.key: package.version for package in previous.packages}
    changes: dict[tuple[str, str], NodeChange] = {}
    for package in new.packages:
        if package.version in before.get(package.name, ()):
            continue
        previous_version = at_key.get(package.key) or next(iter(before.get(package.name, ())), None)
        changes.setdefault(
            (package.name, package.version),
            NodeChange(package.name, previous_version, package.version),
        )
    return tuple(sorted(changes.values(), key=lambda change: (change.name, change.new_version)))


# --- known-malicious versions ------------------------------------------------------------------


def affected_by_range(version: str, events: Sequence[Mapping[str, Any]]) -> bool:
    """OSV SEMVER range evaluation: introduced … fixed (exclusive) / last_affected (inclusive)."""
    parsed = semver.Version.parse(version)
    affected = False
    for event in events:  # in order: each fixed/last_affected closes the interval before it
        if "introduced" in event:
            start = str(event["introduced"])
            affected = affected or start == "0" or parsed >= semver.Version.parse(start)
            continue
        end = event.get("fixed", event.get("last_affected"))
        inclusive = "fixed" not in event
        if end is not None:
            limit = semver.Version.parse(str(end))
            if parsed > limit or (parsed == limit and not inclusive):
                affected = False
    return affected


@dataclass(frozen=True)
class MaliciousAdvisory:
    """One OSV `MAL-` advisory for one npm package."""

    id: str
    name: str
    versions: frozenset[str]
    ranges: tuple[tuple[Mapping[str, Any], ...], ...]

    def affects(self, name: str, version: str) -> bool:
        """Whether `name@version` is one of the advisory's malicious versions."""
        if name != self.name:
            return False
        return version in self.versions or any(
            affected_by_range(version, events) for events in self.ranges
        )


@dataclass(frozen=True)
class MaliciousAdvisories:
    """Every known-malicious npm advisory from the configured source."""

    advisories: tuple[MaliciousAdvisory, ...] = ()

    def find(self, name: str, version: str) -> MaliciousAdvisory | None:
        """The advisory listing `name@version`, if any."""
        return next((item for item in self.advisories if item.affects(name, version)), None)


def parse_osv(data: object, *, source: str) -> tuple[MaliciousAdvisory, ...]:
    """`MAL-` advisories for npm in an OSV document, a list of them, or `{"vulns": [...]}`."""
    if isinstance(data, dict) and isinstance(data.get("vulns"), list):
        data = data["vulns"]
    documents = data if isinstance(data, list) else [data]
    found = []
    for document in documents:
        if not isinstance(document, dict) or not isinstance(document.get("id"), str):
            raise ConfigError(f"{source}: not an OSV advisory (no id)")
        if not document["id"].startswith("MAL-") or document.get("withdrawn"):
            continue  # not a malicious-package report, or withdrawn as a false positive
        for affected in document.get("affected") or []:
            package = affected.get("package") if isinstance(affected, dict) else None
            if not isinstance(package, dict) or package.get("ecosystem") != "npm":
                continue
            where = f"{source}: OSV advisory {document['id']}"
            versions = _osv_list(affected.get("versions"), f"{where}: versions")
            ranges = tuple(
                _osv_events(item.get("events"), where)
                for item in _osv_list(affected.get("ranges"), f"{where}: ranges")
                if isinstance(item, dict) and item.get("type") == "SEMVER"
            )
            found.append(
                MaliciousAdvisory(
                    document["id"], str(package.get("name")), frozenset(map(str, versions)), ranges
                )
            )
    return tuple(found)


def _osv_list(value: object, what: str) -> list[Any]:
    """An OSV field that must be a list when present (absent: empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{what} is not a list; fix or remove the advisory")
    return value


def _osv_events(value: object, where: str) -> tuple[Mapping[str, Any], ...]:
    """A SEMVER range's events, each bound a SemVer version (`introduced` may be "0")."""
    events = _osv_list(value, f"{where}: range events")
    for event in events:
        if not isinstance(event, dict):
            raise ConfigError(
                f"{where}: a range event is not an object; fix or remove the advisory"
            )
        for kind in ("introduced", "fixed", "last_affected"):
            bound = event.get(kind)
            if bound is None or (kind == "introduced" and bound == "0"):
                continue
            if not isinstance(bound, str) or not semver.Version.is_valid(bound):
                raise ConfigError(
                    f"{where}: {kind} {bound!r} is not a SemVer version; fix or remove the advisory"
                )
    return tuple(events)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_bytes())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the OSV advisories ({error.strerror})") from error
    except ValueError as error:
        raise ConfigError(f"{path}: the OSV advisories are not valid JSON") from error


def load_malicious_advisories(location: str | None, http: HttpSource) -> MaliciousAdvisories:
    """Advisories from a JSON file, a directory of them (searched recursively) or a URL."""
    if not location:
        return MaliciousAdvisories()
    if location.startswith(("https://", "http://")):
        body = http.fetch(
            "GET", location, headers={"Accept": "application/json"}, limit=ADVISORIES_LIMIT
        )
        if body.status_code in (404, 410):
            raise ConfigError(
                f"{location}: no OSV advisories there (HTTP {body.status_code}); fix "
                "ROTATION_BOT_MALICIOUS_ADVISORIES or unset it"
            )
        if body.status_code != 200:
            raise ServiceUnavailable(
                f"{host_of(location)} answered HTTP {body.status_code} for the OSV advisories; "
                "try again later"
            )
        return MaliciousAdvisories(parse_osv(body.json(), source=location))
    path = Path(location)
    if path.is_dir():
        files: Iterable[Path] = sorted(path.rglob("*.json"))
    elif path.is_file():
        files = (path,)
    else:
        raise ConfigError(
            f"{path}: no OSV advisories file or directory there; fix "
            "ROTATION_BOT_MALICIOUS_ADVISORIES or unset it"
        )
    return MaliciousAdvisories(
        tuple(item for file in files for item in parse_osv(_read_json(file), source=str(file)))
    )


# --- install scripts ---------------------------------------------------------------------------


def script_problems(
    previous: PackageVersion | None,
    new: PackageVersion,
    allowed: Iterable[tuple[str, str, str]],
) -> list[str]:
    """Install scripts `new` adds or changes over `previous`, unless `(package, range, script)`
    in `allowed` covers them."""
    before = previous.install_scripts if previous else {}
    problems = []
    for script in INSTALL_SCRIPTS:
        command = new.install_scripts.get(script)
        if command is None or before.get(script) == command:
            continue
        if any(
            package == new.name
            and script == allowed_script
            and nodesemver.satisfies(new.version, versions)
            for package, versions, allowed_script in allowed
        ):
            continue
        change = "changes" if script in before else "adds"
        problems.append(f"{new.name}@{new.version} {change} a `{script}` script: `{command}`")
    return problems
