"""The `verify-tarballs` step against the real Verdaccio family: each fail-closed check has a
test that fails when the check is removed (the lockfile is written from the registry's own
metadata, confirmed, then exactly one thing is broken)."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import pytest

from bot.errors import VerificationFailed
from bot.steps.registry import StepContext
from tests.support.locked_family import LINUX, LINUX_VIPS, run_step
from tests.support.verdaccio import Verdaccio


def test_verify_tarballs_hashes_every_pinned_tarball(tmp_path: Path, registry: Verdaccio) -> None:
    result = run_step("verify-tarballs", tmp_path, registry)

    assert result.status == "passed"
    assert [
        (t["name"], t["matches_registry"], t["matches_lockfile"])
        for t in result.evidence["tarballs"]
    ] == [
        ("sharp", True, True),
        (LINUX, True, True),
        (LINUX_VIPS, True, True),
    ]
    assert all(t["size"] > 0 for t in result.evidence["tarballs"])


def test_verify_tarballs_fails_when_the_lockfile_disagrees(
    tmp_path: Path, registry: Verdaccio
) -> None:
    def other(ctx: StepContext) -> None:
        confirmed = ctx.outputs.lockfile
        assert confirmed is not None
        ctx.outputs.lockfile = replace(
            confirmed,
            entries=tuple(
                replace(entry, new_integrity="sha512-" + "B" * 86 + "==")
                if entry.name == LINUX_VIPS
                else entry
                for entry in confirmed.entries
            ),
        )

    with pytest.raises(
        VerificationFailed, match="tarball hash differs from a lockfile entry"
    ) as caught:
        run_step("verify-tarballs", tmp_path, registry, tamper=other)

    assert [t["matches_lockfile"] for t in caught.value.fields["tarballs"]] == [True, True, False]


def test_verify_tarballs_fails_on_a_tampered_tarball(
    tmp_path: Path, private_registry: Verdaccio
) -> None:
    tarball = private_registry.tarball_path(LINUX, "0.33.5")
    tarball.write_bytes(gzip.compress(b"not the published bytes"))

    with pytest.raises(VerificationFailed, match="hashes to sha512-") as caught:
        run_step("verify-tarballs", tmp_path, private_registry)

    assert f"{LINUX}@0.33.5" in caught.value.message
    assert "do not bypass" in caught.value.message
    assert [t["matches_registry"] for t in caught.value.fields["tarballs"]] == [True, False, True]
