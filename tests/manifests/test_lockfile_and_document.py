"""Lockfile reading and pin-table re-baselining."""

from __future__ import annotations

import json

import pytest

from bot.errors import ManifestError
from bot.manifests.document import RowChange, rebaseline
from bot.manifests.lockfile import parse_package_lock

LOCK = {
    "lockfileVersion": 3,
    "packages": {
        "": {"name": "app", "dependencies": {"sharp": "^0.33.5", "other": "1.0.0"}},
        "node_modules/sharp": {
            "version": "0.33.5",
            "integrity": "sha512-p",
            "resolved": "http://r/s",
            "optionalDependencies": {
                "@img/sharp-linux-x64": "0.33.5",
                "@img/sharp-darwin-arm64": "0.33.5",
            },
        },
        "node_modules/other": {
            "version": "1.0.0",
            "dependencies": {"@img/sharp-linux-x64": "0.33.2"},
        },
        "node_modules/@img/sharp-linux-x64": {
            "version": "0.33.5",
            "os": ["linux"],
            "cpu": ["x64"],
            "libc": ["glibc"],
            "optional": True,
        },
        "node_modules/other/node_modules/@img/sharp-linux-x64": {"version": "0.33.2"},
        "packages/linked": {"link": True},
    },
}


def test_find_returns_hoisted_and_nested_copies() -> None:
    lock = parse_package_lock(json.dumps(LOCK))
    assert [e.version for e in lock.find("@img/sharp-linux-x64")] == ["0.33.5", "0.33.2"]
    top = lock.package("node_modules/@img/sharp-linux-x64")
    assert top is not None and top.libc == ("glibc",)
    assert lock.records_resolved
    assert lock.importers == (".",), "link entries are not importers"


def test_edges_resolve_the_way_node_does() -> None:
    lock = parse_package_lock(json.dumps(LOCK))
    # sharp finds the hoisted binary; `other` finds its own nested copy first
    assert [edge.holder for edge in lock.dependents("node_modules/@img/sharp-linux-x64")] == [
        "node_modules/sharp"
    ]
    (nested,) = lock.dependents("node_modules/other/node_modules/@img/sharp-linux-x64")
    assert (nested.holder, nested.spec) == ("node_modules/other", "0.33.2")
    # the project root is an importer, not a package
    (root,) = lock.dependents("node_modules/sharp")
    assert root.holder == "." and lock.package(root.holder) is None
    # another platform's optional package is not installed: the edge has no target
    darwin = [edge for edge in lock.edges if edge.name == "@img/sharp-darwin-arm64"]
    assert darwin and darwin[0].target is None
    closure = lock.closure(["node_modules/sharp"])
    assert closure == {"node_modules/sharp", "node_modules/@img/sharp-linux-x64"}


@pytest.mark.parametrize("text", ["{", '{"lockfileVersion": 1, "dependencies": {}}', "[]"])
def test_unusable_lockfiles_are_refused(text: str) -> None:
    with pytest.raises(ManifestError, match="package-lock.json"):
        parse_package_lock(text)


def test_rebaseline_touches_only_table_rows_of_pinned_packages() -> None:
    text = (
        "sharp 0.33.4 is mentioned in prose.\n\n| Package | Version | Integrity |\n|---|---|---|\n"
        "| `sharp` | 0.33.4 | sha512-old |\n| left-pad | 0.33.4 | x |\n| sharp | 10.33.4 | y |\n"
    )
    new, updated = rebaseline(
        text, [RowChange("sharp", "0.33.4", "0.33.5", "sha512-old", "sha512-new")]
    )
    assert updated == ["sharp"]
    assert new.splitlines() == [
        "sharp 0.33.4 is mentioned in prose.",
        "",
        "| Package | Version | Integrity |",
        "|---|---|---|",
        "| `sharp` | 0.33.5 | sha512-new |",
        "| left-pad | 0.33.4 | x |",
        "| sharp | 10.33.4 | y |",
    ]
