"""pnpm projects end to end: real pnpm 9 and 10 from the test registry, real Verdaccio, real git,
the real CLI, on layouts taken from real repositories (tests/fixtures/layouts/08, 09)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from bot.manifests.pnpm_lock import parse_pnpm_lock
from tests.conftest import pin_names
from tests.managers.rotation import (
    assert_a_tampered_binary_fails_closed,
    assert_pins_locked_at_target,
    assert_second_run_is_up_to_date,
    branches,
    changed_lines,
    expected_lines,
    run_bot,
    show,
)
from tests.support.git_fixture import commit_directory
from tests.support.layouts import StagedLayout, staged_layout
from tests.support.verdaccio import Verdaccio

PACKAGE_JSON_OVERRIDES = "08-pnpm-package-json-overrides"
WORKSPACE_OVERRIDES = "09-pnpm10-workspace-yaml-overrides"


def fuwari_layout(tmp_path: Path, registry: Verdaccio, tools: Path, pnpm: str) -> StagedLayout:
    """Layout 08 locked by `pnpm` with only sharp 0.33.4 published, then the rest."""
    return staged_layout(
        PACKAGE_JSON_OVERRIDES,
        tmp_path,
        registry,
        tools,
        repository="fuwari",
        start=["0.33.4"],
        versions={".": pnpm},
    )


def test_pnpm_overrides_in_package_json_rotate_patch_and_major_with_pnpm_10_on_a_pnpm_9_lock(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    env, path, repo = fuwari_layout(tmp_path, staged_registry, tools_dir, "9.15.9")
    before = parse_pnpm_lock(show(repo, "main", "pnpm-lock.yaml"))

    outcome = run_bot(env, path)

    assert outcome.code == 0, outcome.summaries
    patch, major = "rotation-bot/sharp-0.33.6", "rotation-bot/sharp-0.34.1"
    assert set(branches(repo)) == {"main", patch, major}
    # exactly the two lines of package.json the fixture names: the dependency's floor and the
    # pnpm override (a lower floor, kept a caret)
    assert changed_lines(repo, patch, "package.json") == expected_lines(
        PACKAGE_JSON_OVERRIDES, "package.json"
    )
    text = show(repo, patch, "pnpm-lock.yaml")
    lock = parse_pnpm_lock(text)
    assert yaml.safe_load(text)["overrides"]["sharp"] == "^0.33.6"
    assert [p.version for p in lock.find("sharp")] == ["0.33.6"]
    assert_pins_locked_at_target(lock, staged_registry)
    for name in pin_names():
        (entry,) = lock.find(name)
        assert entry.libc == (("musl",) if "musl" in name else ("glibc",))
    # nothing outside sharp's closure moved: same keys, versions and integrity
    unrelated = {"astro", "astro-compress", "stylus", "typescript"}
    assert {p.key: p.integrity for p in lock.packages if p.name in unrelated} == {
        p.key: p.integrity for p in before.packages if p.name in unrelated
    }
    assert outcome.evidence("0.33.6", "confirm-lockfile")["changed_outside"] == 0
    # verify-closure read the pnpm lockfile: every changed node, and nothing else
    closure = outcome.evidence("0.33.6", "verify-closure")
    previous = {p.name: p.version for p in before.packages}
    assert {(n["name"], n["previous_version"], n["new_version"]) for n in closure["nodes"]} == {
        (p.name, previous[p.name], p.version)
        for p in lock.packages
        if p.name == "sharp" or p.name.startswith("@img/")
    }
    assert len(closure["nodes"]) > len(pin_names())  # sharp and every platform pnpm locked
    regenerated = outcome.evidence("0.33.6", "regenerate-lockfile")["lockfiles"]
    assert [(r["manager"], r["tool"]) for r in regenerated] == [("pnpm", "pnpm@10.32.1")]
    assert "--ignore-pnpmfile" in regenerated[0]["command"]
    major_lock = parse_pnpm_lock(show(repo, major, "pnpm-lock.yaml"))
    assert [p.version for p in major_lock.find("sharp")] == ["0.34.1"]
    assert [p.version for p in major_lock.find("@img/sharp-libvips-linux-x64")] == ["1.1.1"]
    assert "Major rotation checklist" in outcome.summary("0.34.1")["proposal"]["body"]

    assert_second_run_is_up_to_date(env, path, repo)


def immich_layout(
    tmp_path: Path,
    registry: Verdaccio,
    tools: Path,
    change: Callable[[Path], None] | None = None,
) -> StagedLayout:
    """Layout 09 (`change`d, for a variant) locked by pnpm 10.32.1 with sharp 0.33.4 and 0.33.5
    published, then the rest."""
    return staged_layout(
        WORKSPACE_OVERRIDES,
        tmp_path,
        registry,
        tools,
        repository="immich",
        start=["0.33.4", "0.33.5"],
        versions={".": "10.32.1"},
        change=change,
    )


def test_pnpm_workspace_overrides_rotate_without_running_the_repository_pnpmfile(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    env, path, _ = immich_layout(tmp_path, staged_registry, tools_dir)
    # the attacker's commit: immich's kind of .pnpmfile.cjs, a pnpmfile named by the workspace
    # file, and an install script — each would leave a marker if anything ran it
    markers = [tmp_path / "pnpmfile-ran", tmp_path / "named-pnpmfile-ran", tmp_path / "script-ran"]
    hook = "module.exports = {{hooks: {{readPackage(p) {{ require('fs').writeFileSync({!r}, 'x'); return p }}}}}}\n"
    (path / ".pnpmfile.cjs").write_text(hook.format(str(markers[0])))
    (path / "hooks").mkdir()
    (path / "hooks" / "evil.cjs").write_text(hook.format(str(markers[1])))
    workspace_file = path / "pnpm-workspace.yaml"
    workspace_file.write_text(workspace_file.read_text() + "pnpmfile: hooks/evil.cjs\n")
    server = path / "server" / "package.json"
    server.write_text(
        server.read_text().replace(
            '"build": "nest build",',
            f'"postinstall": "touch {markers[2]}",\n    "build": "nest build",',
        )
    )
    repo = commit_directory(path, "the attacker's change")
    before = parse_pnpm_lock(show(repo, "main", "pnpm-lock.yaml"))

    outcome = run_bot(env, path, "--target", "0.33.6")

    assert outcome.code == 0, outcome.summaries
    assert [marker for marker in markers if marker.exists()] == []
    branch = "rotation-bot/sharp-0.33.6"
    assert changed_lines(repo, branch, "pnpm-workspace.yaml") == expected_lines(
        WORKSPACE_OVERRIDES, "pnpm-workspace.yaml"
    )
    assert changed_lines(repo, branch, "server/package.json") == [
        ('    "sharp": "^0.33.4"', '    "sharp": "^0.33.6"')
    ]
    assert show(repo, branch, "web/package.json") == show(repo, "main", "web/package.json")
    lock = parse_pnpm_lock(show(repo, branch, "pnpm-lock.yaml"))
    (sharp,) = lock.find("sharp")
    assert sharp.version == "0.33.6"
    # one copy for the member and the dev tool; packageExtensions still applied to it
    assert {e.holder for e in lock.dependents(sharp.key)} == {"server", "imagetools-core@8.0.0"}
    assert {e.name for e in lock.edges if e.holder == sharp.key} >= {"node-addon-api", "node-gyp"}
    # libvips did not move: its entries are the same bytes of evidence as before
    (libvips,) = lock.find("@img/sharp-libvips-linux-x64")
    assert libvips == next(iter(before.find("@img/sharp-libvips-linux-x64")))
    regenerated = outcome.evidence("0.33.6", "regenerate-lockfile")["lockfiles"][0]
    assert regenerated["tool"] == "pnpm@10.32.1"
    assert ".pnpmfile.cjs not run" in regenerated["not_run"]
    assert "pnpm-workspace.yaml: pnpmfile" in regenerated["ignored_config"]
    body = outcome.summary("0.33.6")["proposal"]["body"]
    assert "repository code not run: .pnpmfile.cjs not run" in body


def test_a_tampered_binary_fails_a_pnpm_rotation_closed(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    env, path, repo = fuwari_layout(tmp_path, staged_registry, tools_dir, "10.32.1")
    message = assert_a_tampered_binary_fails_closed(env, path, repo, staged_registry)

    assert "@img/sharp-linuxmusl-x64@0.33.6" in message


def catalog_without_override(root: Path) -> None:
    """immich's layout with sharp declared `catalog:` (directus's way) instead of overridden."""
    server = root / "server" / "package.json"
    server.write_text(server.read_text().replace('"sharp": "^0.33.4"', '"sharp": "catalog:"'))
    workspace_file = root / "pnpm-workspace.yaml"
    text = workspace_file.read_text().replace("  sharp: ^0.33.5\n", "")
    workspace_file.write_text(text + "catalog:\n  sharp: ^0.33.5\n")


def use_the_catalog(root: Path) -> None:
    """The catalog variant, and web without the dev tool that shares server's copy."""
    catalog_without_override(root)
    web = root / "web" / "package.json"
    web.write_text(web.read_text().replace('"@sveltejs/enhanced-img": "^0.9.0"', ""))


def test_a_pnpm_catalog_declaration_is_rotated_in_the_workspace_file(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    env, path, repo = immich_layout(tmp_path, staged_registry, tools_dir, use_the_catalog)

    outcome = run_bot(env, path, "--target", "0.33.6")

    assert outcome.code == 0, [s["message"] for s in outcome.summaries]
    branch = "rotation-bot/sharp-0.33.6"
    assert changed_lines(repo, branch, "pnpm-workspace.yaml") == [
        ("  sharp: ^0.33.5", "  sharp: ^0.33.6")
    ]
    assert show(repo, branch, "pnpm-workspace.yaml").endswith("catalog:\n  sharp: ^0.33.6")
    assert show(repo, branch, "server/package.json") == show(repo, "main", "server/package.json")
    text = show(repo, branch, "pnpm-lock.yaml")
    assert yaml.safe_load(text)["catalogs"]["default"]["sharp"] == {
        "specifier": "^0.33.6",
        "version": "0.33.6",
    }
    assert [p.version for p in parse_pnpm_lock(text).find("sharp")] == ["0.33.6"]


def test_a_copy_pnpm_keeps_for_another_package_fails_closed_and_names_it(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    """With sharp from the catalog and no override, pnpm keeps the dev tool's resolution of the
    copy it shared with the member: the rotation would leave a second sharp behind."""
    env, path, repo = immich_layout(tmp_path, staged_registry, tools_dir, catalog_without_override)

    outcome = run_bot(env, path, "--target", "0.33.6")

    assert outcome.code == 1
    (summary,) = outcome.summaries
    assert "confirm-lockfile" in summary["message"]
    assert (
        "sharp@0.33.5 is still 0.33.5; the rotation controls it (pnpm kept it for "
        "imagetools-core@8.0.0: force every copy with an override of sharp"
    ) in summary["message"]
    assert list(branches(repo)) == ["main"]
