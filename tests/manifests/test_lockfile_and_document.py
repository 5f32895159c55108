"""Lockfile reading and pin-table re-baselining."""

from __future__ import annotations

import json

import pytest

from bot.errors import ManifestError
from bot.manifests.document import RowChange, rebaseline
from bot.manifests.lockfile import Lockfile

LOCK = {
    "lockfileVersion": 3,
    "packages": {
        "": {"name": "app"},
        "node_modules/sharp": {
            "version": "0.33.5",
            "integrity": "sha512-p",
            "resolved": "http://r/s",
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
    lock = Lockfile.parse(json.dumps(LOCK))
    assert [e.version for e in lock.find("@img/sharp-linux-x64")] == ["0.33.5", "0.33.2"]
    top = lock.top_level("@img/sharp-linux-x64")
    assert top is not None and top.libc == ("glibc",) and top.optional
    assert lock.records_resolved


@pytest.mark.parametrize("text", ["{", '{"lockfileVersion": 1, "dependencies": {}}', "[]"])
def test_unusable_lockfiles_are_refused(text: str) -> None:
    with pytest.raises(ManifestError, match="package-lock.json"):
        Lockfile.parse(text)


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
