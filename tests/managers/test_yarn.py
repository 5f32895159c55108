"""Yarn projects end to end: real Yarn 1.22 and Yarn 4 from the test registry, real Verdaccio,
real git, the real CLI, on layouts taken from real repositories (tests/fixtures/layouts/10, 11)."""

from __future__ import annotations

from pathlib import Path

from bot.manifests.yarn_lock import parse_berry_lock, parse_classic_lock
from tests.conftest import bot, pin_names
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

CLASSIC_WORKSPACE = "10-yarn1-workspace-resolutions"
BERRY_SUBDIRECTORY = "11-yarn4-subdir-projects"
PNP_SUPPORTED_ARCHITECTURES = "11b-yarn3-pnp-subdir-supported-architectures"


def test_yarn1_workspace_resolutions_rotate_patch_and_major(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    env, path, repo = staged_layout(
        CLASSIC_WORKSPACE,
        tmp_path,
        staged_registry,
        tools_dir,
        repository="mulmoclaude",
        start=["0.33.4"],
        versions={".": "1.22.22"},
    )
    before = parse_classic_lock(show(repo, "main", "yarn.lock"))

    outcome = run_bot(env, path)

    assert outcome.code == 0, outcome.summaries
    patch, major = "rotation-bot/sharp-0.33.6", "rotation-bot/sharp-0.34.1"
    assert set(branches(repo)) == {"main", patch, major}
    for file in ("package.json", "packages/mulmoclaude/package.json"):
        assert changed_lines(repo, patch, file) == expected_lines(CLASSIC_WORKSPACE, file)
    text = show(repo, patch, "yarn.lock")
    lock = parse_classic_lock(text)
    # one sharp: the resolution still collapses miniflare's exact request onto it
    assert [p.version for p in lock.find("sharp")] == ["0.33.6"]
    assert '\nsharp@0.33.4, sharp@^0.33.6:\n  version "0.33.6"' in text
    assert_pins_locked_at_target(lock, staged_registry)
    unrelated = {"miniflare", "wrangler", "tar", "undici", "uuid", "which", "typescript"}
    assert {p.key: p.integrity for p in lock.packages if p.name in unrelated} == {
        p.key: p.integrity for p in before.packages if p.name in unrelated
    }
    confirmed = outcome.evidence("0.33.6", "confirm-lockfile")
    assert confirmed["changed_outside"] == 0
    assert any("records no os/cpu/libc" in note for note in confirmed["notes"])
    regenerated = outcome.evidence("0.33.6", "regenerate-lockfile")["lockfiles"]
    assert [(r["manager"], r["tool"]) for r in regenerated] == [("yarn-classic", "yarn@1.22.22")]
    major_lock = parse_classic_lock(show(repo, major, "yarn.lock"))
    assert [p.version for p in major_lock.find("sharp")] == ["0.34.1"]
    assert [p.version for p in major_lock.find("@img/sharp-libvips-linuxmusl-x64")] == ["1.1.1"]

    assert_second_run_is_up_to_date(env, path, repo)


def berry_layout(tmp_path: Path, registry: Verdaccio, tools: Path) -> StagedLayout:
    """Layout 11 locked by Yarn 4.18.0 with only sharp 0.33.4 published, then the rest."""
    return staged_layout(
        BERRY_SUBDIRECTORY,
        tmp_path,
        registry,
        tools,
        repository="dolt-workbench",
        start=["0.33.4"],
        versions={"web": "4.18.0", "graphql-server": "4.18.0"},
    )


def test_yarn4_sub_directory_project_rotates_without_running_repository_code(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    env, path, _ = berry_layout(tmp_path, staged_registry, tools_dir)
    # the attacker's commit: a yarnPath binary, a plugin and an install script (enableScripts is
    # already true in the real repository's rc), each leaving a marker if anything runs it
    markers = {name: tmp_path / f"{name}-ran" for name in ("yarnpath", "plugin", "postinstall")}
    web = path / "web"
    (web / ".yarn" / "releases").mkdir(parents=True)
    (web / ".yarn" / "plugins").mkdir(parents=True)
    writer = "require('fs').writeFileSync({!r}, 'x');\n"
    (web / ".yarn" / "releases" / "yarn-evil.cjs").write_text(
        writer.format(str(markers["yarnpath"]))
    )
    (web / ".yarn" / "plugins" / "evil.cjs").write_text(
        writer.format(str(markers["plugin"]))
        + "module.exports = {name: 'evil', factory: () => ({})};\n"
    )
    rc = web / ".yarnrc.yml"
    rc.write_text(
        rc.read_text()
        + "\nyarnPath: .yarn/releases/yarn-evil.cjs\n\nplugins:\n  - path: .yarn/plugins/evil.cjs\n"
    )
    manifest = web / "package.json"
    manifest.write_text(
        manifest.read_text().replace(
            '"electron-builder install-app-deps"', f'"touch {markers["postinstall"]}"'
        )
    )
    repo = commit_directory(path, "the attacker's change")
    before = parse_berry_lock(show(repo, "main", "web/yarn.lock"))

    outcome = run_bot(env, path, "--target", "0.33.6")

    assert outcome.code == 0, outcome.summaries
    assert [name for name, marker in markers.items() if marker.exists()] == []
    branch = "rotation-bot/sharp-0.33.6"
    assert changed_lines(repo, branch, "web/package.json") == expected_lines(
        BERRY_SUBDIRECTORY, "web/package.json"
    )
    assert show(repo, branch, "web/.yarnrc.yml") == show(repo, "main", "web/.yarnrc.yml")
    assert show(repo, branch, "graphql-server/yarn.lock") == show(
        repo, "main", "graphql-server/yarn.lock"
    )
    lock = parse_berry_lock(show(repo, branch, "web/yarn.lock"))
    assert [p.key for p in lock.find("sharp")] == ["sharp@npm:0.33.6"]
    for name in pin_names():
        version = "1.0.4" if "libvips" in name else "0.33.6"
        (entry,) = lock.find(name)
        assert (entry.version, entry.integrity) == (version, None)
        assert entry.libc == (("musl",) if "musl" in name else ("glibc",))
    unrelated = {"next", "react", "uuid", "postcss", "typescript"}
    assert {p.key: p.checksum for p in lock.packages if p.name in unrelated} == {
        p.key: p.checksum for p in before.packages if p.name in unrelated
    }
    confirmed = outcome.evidence("0.33.6", "confirm-lockfile")
    assert confirmed["changed_outside"] == 0
    # Yarn's checksum is recorded as Yarn's; the npm sha512 is the registry's, and the tarball
    # check says no lockfile recorded one
    (entry,) = [e for e in confirmed["entries"] if e["name"] == "sharp"]
    assert entry["new_integrity"] is None
    assert entry["registry_integrity"] == staged_registry.integrity("sharp", "0.33.6")
    assert entry["lock_checksum"].startswith("10c0/")
    tarballs = outcome.evidence("0.33.6", "verify-tarballs")["tarballs"]
    assert {(t["matches_registry"], t["matches_lockfile"]) for t in tarballs} == {(True, None)}
    regenerated = outcome.evidence("0.33.6", "regenerate-lockfile")["lockfiles"]
    assert [(r["project"], r["tool"]) for r in regenerated] == [("web", "@yarnpkg/cli-dist@4.18.0")]
    (item,) = regenerated
    assert any("yarnPath" in note for note in item["not_run"])
    assert any("plugins" in note for note in item["not_run"])
    assert "web/.yarnrc.yml: enableScripts" in item["ignored_config"]
    body = outcome.summary("0.33.6")["proposal"]["body"]
    assert "registry `sha512-" in body and "own archive checksum" in body

    assert_second_run_is_up_to_date(env, path, repo, "--target", "0.33.6")


def test_a_broken_yarnrc_fails_the_plan_naming_it_before_any_work(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    env, path, _ = berry_layout(tmp_path, staged_registry, tools_dir)
    (path / "web" / ".yarnrc.yml").write_text("- nodeLinker: node-modules\n")
    repo = commit_directory(path, "a list where Yarn wants a mapping")
    heads = branches(repo)

    # `plan` never regenerates: only a check at plan time can find it
    planned = bot(env, "plan", "--repo", str(path), "--runbook", "sharp")

    assert planned.exit_code == 2, planned.output
    assert "web/.yarnrc.yml must hold a YAML mapping of Yarn settings; fix it" in planned.output
    assert run_bot(env, path, "--target", "0.33.6").code == 2
    assert branches(repo) == heads


def test_a_tampered_binary_fails_a_yarn4_rotation_closed(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    env, path, repo = berry_layout(tmp_path, staged_registry, tools_dir)
    assert_a_tampered_binary_fails_closed(env, path, repo, staged_registry)


def test_yarn3_plug_n_play_project_keeps_every_supported_architecture(
    tmp_path: Path, staged_registry: Verdaccio, tools_dir: Path
) -> None:
    env, path, repo = staged_layout(
        PNP_SUPPORTED_ARCHITECTURES,
        tmp_path,
        staged_registry,
        tools_dir,
        repository="storyteller",
        start=["0.33.4"],
        # docs declares yarn@3.6.3; its lockfile is only read, never regenerated
        versions={"web": "3.6.0", "docs": "3.6.0"},
    )

    outcome = run_bot(env, path, "--target", "0.33.6")

    assert outcome.code == 0, outcome.summaries
    branch = "rotation-bot/sharp-0.33.6"
    assert changed_lines(repo, branch, "web/package.json") == expected_lines(
        PNP_SUPPORTED_ARCHITECTURES, "web/package.json"
    )
    assert show(repo, branch, "web/.yarnrc.yml") == show(repo, "main", "web/.yarnrc.yml")
    text = show(repo, branch, "web/yarn.lock")
    assert "\n  version: 6\n" in text  # still Yarn 3's lockfile
    lock = parse_berry_lock(text)
    assert [p.key for p in lock.find("sharp")] == ["sharp@npm:0.33.6"]
    platforms = {
        (p.name, p.version, p.os, p.cpu, p.libc)
        for p in lock.packages
        if p.name.startswith("@img/")
    }
    assert ("@img/sharp-darwin-arm64", "0.33.6", ("darwin",), ("arm64",), ()) in platforms
    assert ("@img/sharp-linuxmusl-x64", "0.33.6", ("linux",), ("x64",), ("musl",)) in platforms
    regenerated = outcome.evidence("0.33.6", "regenerate-lockfile")["lockfiles"]
    assert [(r["project"], r["tool"]) for r in regenerated] == [("web", "@yarnpkg/cli-dist@3.6.0")]
    assert any(".yarn/releases/yarn-3.6.0.cjs" in note for note in regenerated[0]["not_run"])
