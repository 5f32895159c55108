"""Risk signals from registry metadata: what changed between two versions of a package that a
reviewer should look at before merging a rotation.

Pure: two validated `PackageVersion`s (and the publishers seen before) in, signals out.  A
signal is not a failure; it is rendered in the pull request body so that a person decides.
Signals, in a fixed order per package:

- `install-script-added` / `install-script-changed`: a `preinstall`, `install` or
  `postinstall` script appeared or changed (npm runs these on install; the bot never does);
- `new-dependency`: a dependency (or optional dependency) name the previous version lacked;
- `new-publisher`: the version was published by an account that published none of the
  earlier versions;
- `provenance-dropped`: the previous version had a provenance attestation, this one has none;
- `size-change`: the unpacked size changed by more than `SIZE_CHANGE_THRESHOLD`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.sources.npm.models import PackageVersion

SIZE_CHANGE_THRESHOLD = 0.20
INSTALL_SCRIPTS = ("preinstall", "install", "postinstall")


@dataclass(frozen=True)
class RiskSignal:
    """One thing about a new version worth a reviewer's attention."""

    package: str
    signal: str
    detail: str


def _size(value: int) -> str:
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value} B"


def _scripts(previous: PackageVersion | None, new: PackageVersion) -> list[RiskSignal]:
    signals = []
    before = previous.install_scripts if previous else {}
    for name in INSTALL_SCRIPTS:
        script = new.install_scripts.get(name)
        if script is None or before.get(name) == script:
            continue
        if name in before:
            detail = f"`{name}` changed from `{before[name]}` to `{script}`"
            signals.append(RiskSignal(new.name, "install-script-changed", detail))
        else:
            signals.append(RiskSignal(new.name, "install-script-added", f"`{name}`: `{script}`"))
    return signals


def _dependencies(previous: PackageVersion, new: PackageVersion) -> list[RiskSignal]:
    signals = []
    for kind, before, after in (
        ("dependency", previous.dependencies, new.dependencies),
        ("optional dependency", previous.optional_dependencies, new.optional_dependencies),
    ):
        for name in sorted(set(after) - set(before)):
            signals.append(
                RiskSignal(new.name, "new-dependency", f"{kind} `{name}` `{after[name]}`")
            )
    return signals


def _provenance(previous: PackageVersion, new: PackageVersion) -> list[RiskSignal]:
    had = previous.dist.provenance_predicate or previous.dist.attestations_url
    has = new.dist.provenance_predicate or new.dist.attestations_url
    if had and not has:
        detail = f"{previous.version} was published with provenance, {new.version} without"
        return [RiskSignal(new.name, "provenance-dropped", detail)]
    return []


def _unpacked_size(previous: PackageVersion, new: PackageVersion) -> list[RiskSignal]:
    before, after = previous.dist.unpacked_size, new.dist.unpacked_size
    if not before or after is None:
        return []
    change = (after - before) / before
    if abs(change) <= SIZE_CHANGE_THRESHOLD:
        return []
    detail = f"unpacked size {_size(before)} → {_size(after)} ({change:+.0%})"
    return [RiskSignal(new.name, "size-change", detail)]


def compare_versions(
    previous: PackageVersion | None,
    new: PackageVersion,
    *,
    earlier_publishers: Iterable[str] = (),
) -> tuple[RiskSignal, ...]:
    """The risk signals of moving from `previous` (None: a newly pinned package) to `new`.

    `earlier_publishers` are the accounts that published versions before `new` (the previous
    version's publisher counts too).
    """
    signals = _scripts(previous, new)
    if previous is None:
        return tuple(signals)
    signals += _dependencies(previous, new)
    known = {*earlier_publishers, *([previous.publisher] if previous.publisher else [])}
    if new.publisher and known and new.publisher not in known:
        detail = (
            f"{new.version} was published by `{new.publisher}`, who published none of the "
            f"earlier versions (e.g. {previous.version} by `{previous.publisher or 'unknown'}`)"
        )
        signals.append(RiskSignal(new.name, "new-publisher", detail))
    signals += _provenance(previous, new)
    signals += _unpacked_size(previous, new)
    return tuple(signals)
