"""The npm layouts of tests/fixtures/layouts, rotated end to end as a user would run them.

Each layout is the shape of a real repository (see its fixture.json): its files are copied byte
for byte, its packages and the START version of the fake sharp family are published into an
empty Verdaccio, real npm locks it, git commits it, the rest of the family is published, and the
real `rotation-bot run` rotates it.  The assertions are the outcome a user wants: the exact bytes
of every manifest (only the expected lines change), the exact versions and integrity of the
lockfile entries, the copies that stay (and that the proposal names them), no lockfile entry
outside sharp's family changed (counted here, independently of the bot's own check), a rerun
that creates nothing, and honest skips.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import pytest

from bot.audit import AuditStore
from tests.conftest import Env, bot, bot_json, lock_entries, publish_sharp
from tests.support.layouts import (
    Layout,
    build_layout,
    edit_json_text,
    expected_file,
    load_layout,
)
from tests.support.verdaccio import TOOLS, Verdaccio, running_verdaccio

NPM_LAYOUTS = (
    "01-npm-workspaces-root-optional-pins",
    "02-caret-optional-pins-subdir-no-sharp",
    "03-override-only-sharp-via-next",
    "03b-nested-next-sharp-override",
    "04-devdependency-sharp-matching-override",
    "05-no-pins-tabs-no-final-newline",
    "06-independent-subprojects",
    "07-second-sharp-copy-under-parent",
    "12-npm11-allowscripts-sharp-version",
)
CONFIG = "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"

# What the proposal must say for each layout (fixture.json `pr_says`, made exact).  The body is
# compared after removing the zero-width spaces and backslashes that neutralise mentions and
# Markdown in external text.
PR_SAYS: Mapping[str, tuple[str, ...]] = {
    "01-npm-workspaces-root-optional-pins": (
        "- `client/package.json` `devDependencies`: `sharp` `^0.33.4` → `^0.33.6`",
        "- `package.json` `optionalDependencies`: `@img/sharp-linuxmusl-x64` `0.33.4` → `0.33.6`",
        "Not pinned: `@img/sharp-linux-x64`, `@img/sharp-libvips-linux-x64`, "
        "`@img/sharp-libvips-linuxmusl-x64`",
        "| `@img/sharp-libvips-linuxmusl-x64` | `1.0.2` → `1.0.4` |",
    ),
    "02-caret-optional-pins-subdir-no-sharp": (
        "- sharp is not installed by this project: extensions/cli/package.json pins its binaries",
        "- `extensions/cli/package.json` `optionalDependencies`: `@img/sharp-darwin-arm64` "
        "`^0.33.4` → `^0.33.6`",
        "| `@img/sharp-darwin-arm64` | `0.33.4` → `0.33.6` |",
        "| `@img/sharp-libvips-linux-x64` | `1.0.2` → `1.0.4` |",
    ),
    "03-override-only-sharp-via-next": (
        "- sharp is not declared: next@16.3.3 brings it and admin-dashboard/package.json "
        "overrides.sharp forces it",
        "- `admin-dashboard/package.json` `overrides`: `sharp` `^0.33.4` → `^0.33.6`",
        "Not pinned: `@img/sharp-linux-x64`",
        '"overrides": {\n    "@img/sharp-linux-x64": "0.33.6",',
    ),
    "03b-nested-next-sharp-override": (
        "- `package.json` `dependencies`: `sharp` `^0.33.4` → `^0.33.6`",
        "- `package.json` `overrides.next`: `sharp` `>=0.33.4` → `>=0.33.6`",
    ),
    "04-devdependency-sharp-matching-override": (
        "- `package.json` `devDependencies`: `sharp` `^0.33.4` → `^0.33.6`",
        "- `package.json` `overrides`: `sharp` `^0.33.4` → `^0.33.6`",
    ),
    "05-no-pins-tabs-no-final-newline": (
        "- `package.json` `dependencies`: `sharp` `^0.33.4` → `^0.33.6`",
        "Not pinned: `@img/sharp-linux-x64`, `@img/sharp-libvips-linux-x64`, "
        "`@img/sharp-linuxmusl-x64`, `@img/sharp-libvips-linuxmusl-x64`",
        "set `runbooks.sharp.pin: true`",
    ),
    "06-independent-subprojects": (
        "#### `admin-dashboard` (npm, `admin-dashboard/package-lock.json`)",
        "#### `frontend-marketing` (npm, `frontend-marketing/package-lock.json`)",
        "- frontend-marketing/package.json overrides.sharp is '$sharp': it follows the declaration",
        "- `frontend-marketing/package.json` `dependencies`: `sharp` `^0.33.4` → `^0.33.6`",
        "- `admin-dashboard/package.json` `overrides`: `sharp` `^0.33.4` → `^0.33.6`",
    ),
    "07-second-sharp-copy-under-parent": (
        "- `docs/package.json` `dependencies`: `sharp` `^0.34.0` → `^0.34.1`",
        "| `@img/sharp-libvips-linux-x64` | `1.1.0` → `1.1.1` |",
    ),
    "12-npm11-allowscripts-sharp-version": (
        "- `package.json` `devDependencies`: `sharp` `^0.33.4` → `^0.33.6`",
        "- `package.json` `allowScripts`: key `sharp@0.33.4` → `sharp@0.33.6`",
    ),
}
# Projects of a layout that do not rotate and must say why (directory → reason).
SKIPS: Mapping[str, Mapping[str, str]] = {
    "07-second-sharp-copy-under-parent": {
        "core/vendor": "sharp arrives only through @xenova/transformers@2.14.0; not managed here"
    },
}


@pytest.fixture
def empty_registry(tmp_path: Path) -> Iterator[Verdaccio]:
    """A Verdaccio of this test's own with nothing published yet (a layout is locked against
    the start of the family only)."""
    with running_verdaccio(tmp_path / "verdaccio") as server:
        yield server


@dataclass
class Built:
    """A layout as a committed repository, and what the test needs to run the bot on it."""

    layout: Layout
    path: Path
    repo: git.Repo
    env: Env
    registry: Verdaccio

    def run(self, *args: str) -> tuple[int, Any]:
        return bot_json(self.env, "run", "--repo", str(self.path), "--runbook", "sharp", *args)

    def plan(self, *args: str) -> tuple[int, Any]:
        return bot_json(self.env, "plan", "--repo", str(self.path), "--runbook", "sharp", *args)

    def show(self, ref: str, path: str) -> bytes:
        data: bytes = self.repo.git.show(f"{ref}:{path}", stdout_as_string=False)
        return data

    def audit(self) -> AuditStore:
        return AuditStore(f"sqlite:///{self.env.state / 'audit.sqlite3'}")


def build(
    tmp_path: Path,
    registry: Verdaccio,
    tools_dir: Path | None,
    name: str,
    *,
    config: str = CONFIG,
    **hooks: Any,
) -> Built:
    env = Env(tmp_path, registry.url, registry.token, tools=tools_dir)
    layout = load_layout(name)
    path = tmp_path / "repo"
    repo = build_layout(layout, path, registry, env.variables(), config=config, **hooks)
    return Built(layout, path, repo, env, registry)


def family(name: str) -> bool:
    """sharp and its platform packages (the fake sharp depends on nothing else)."""
    return name == "sharp" or name.startswith("@img/sharp-")


def name_of(key: str, entry: Mapping[str, Any]) -> str:
    return str(entry.get("name") or key.rsplit("node_modules/", 1)[-1])


def without_family(entry: Mapping[str, Any] | None) -> Any:
    """An importer entry with every mention of the family removed."""
    if entry is None:
        return None
    return {
        key: {n: spec for n, spec in value.items() if not family(n)}
        if isinstance(value, dict)
        else value
        for key, value in entry.items()
    }


def changed_outside_family(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Lockfile keys whose entry changed although they are not sharp's family: packages by
    name, importers (the project and its workspaces) by everything but family specs."""
    changed = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if "node_modules/" in key:
            if family(name_of(key, new or old or {})):
                continue
        elif without_family(old) == without_family(new):
            continue
        changed.append(key)
    return changed


def normalized(body: str) -> str:
    return body.replace("\u200b", "").replace("\\", "")


@pytest.mark.parametrize("name", NPM_LAYOUTS)
def test_layout_rotates_as_a_user_wants(
    tmp_path: Path, empty_registry: Verdaccio, tools_dir: Path, name: str
) -> None:
    built = build(tmp_path, empty_registry, tools_dir, name)
    expect = built.layout.spec["expect"]
    target = expect["rotation"]["to"]
    branch = f"rotation-bot/sharp-{target}"
    tracked = built.repo.git.ls_files().splitlines()

    code, summaries = built.run()

    assert code == 0, summaries
    (proposed,) = summaries
    assert (proposed["outcome"], proposed["target"]) == ("proposed", target), proposed["message"]
    rotating = [project for project in built.layout.projects() if project["rotates"]]
    # every manifest byte for byte: only the expected lines changed, nothing else anywhere
    edits_by_file: dict[str, list[Mapping[str, Any]]] = {}
    for project in rotating:
        for edit in project["edits"]:
            edits_by_file.setdefault(edit["file"], []).append(edit)
    lockfiles = {project["lockfile"] for project in rotating}
    changed = set(built.repo.git.diff("--name-only", "main", branch).splitlines())
    assert changed == set(edits_by_file) | lockfiles
    for path in tracked:
        if path in lockfiles:
            continue
        original = built.show("main", path)
        assert built.show(branch, path) == expected_file(original, edits_by_file.get(path, ())), (
            path
        )
    body = normalized(proposed["proposal"]["body"])
    for project in rotating:
        before = lock_entries(built.show("main", project["lockfile"]).decode())
        after = lock_entries(built.show(branch, project["lockfile"]).decode())
        # the exact versions and integrity of the regenerated entries
        for key, version in project["lock_after"].items():
            entry = after[key]
            assert entry["version"] == version, (key, entry)
            assert entry["integrity"] == built.registry.integrity(name_of(key, entry), version), key
        for key in project.get("lock_must_not_contain", ()):
            assert key not in after, key
        for key, entry in after.items():
            if "node_modules/" in key and family(name_of(key, entry)):
                assert entry["integrity"] == built.registry.integrity(
                    name_of(key, entry), entry["version"]
                )
        # copies another package holds stay, with their own binaries, and the PR names them
        for copy in project.get("copies_that_stay", ()):
            nested = {key for key in before if key.startswith(copy["path"])}
            assert {key: after.get(key) for key in nested} == {key: before[key] for key in nested}
            assert after[copy["path"]]["version"] == copy["version"]
            holder = copy["held_by"].replace(" ", "@")
            assert (
                f"- `{copy['path']}` stays at `{copy['version']}`: held by `{holder}` "
                f"(`{copy['range']}`)"
            ) in body
        # minimal diff: zero entries outside sharp's family changed
        assert changed_outside_family(before, after) == []
    for said in PR_SAYS[name]:
        assert said in body, said
    steps = built.audit().run_steps(proposed["run_id"])
    confirmed = next(step for step in steps if step["kind"] == "confirm-lockfile")
    assert confirmed["evidence"]["changed_outside"] == 0
    assert {entry["project"] for entry in confirmed["evidence"]["entries"]} == {
        project["dir"] for project in rotating
    }
    heads = {head.name: head.commit.hexsha for head in built.repo.heads}

    rerun_code, rerun = built.run()

    assert rerun_code == 0
    assert [summary["outcome"] for summary in rerun] == ["up-to-date"]
    assert {head.name: head.commit.hexsha for head in built.repo.heads} == heads
    runs = built.audit().list_runs()
    assert [run["outcome"] for run in runs].count("proposed") == 1
    plan_code, (plan,) = built.plan()
    assert plan_code == 0
    reasons = {item["subject"]: item["reason"] for item in plan["skipped"]}
    for directory, reason in SKIPS.get(name, {}).items():
        assert reason in reasons[directory]
    assert not any("does not depend" in reason for reason in reasons.values())


def test_repo_inside_a_checkout_says_what_to_pass_and_the_advice_narrows_the_rotation(
    tmp_path: Path, empty_registry: Verdaccio, tools_dir: Path
) -> None:
    built = build(tmp_path, empty_registry, tools_dir, "06-independent-subprojects")
    inside = built.path / "admin-dashboard"

    refused = bot(built.env, "plan", "--repo", str(inside), "--runbook", "sharp")

    config = built.path / ".github" / "rotation-bot.yml"
    assert refused.exit_code == 2
    assert refused.output == (
        f"rotation-bot: repository: {inside} is inside the checkout {built.path}: pass --repo "
        f"{built.path} (rotation-bot finds every project in the repository; to rotate only this "
        'one, set runbooks.sharp.directories: ["admin-dashboard/"] in .github/rotation-bot.yml)\n'
    )
    # following the advice: the config names the directory, --repo the checkout
    config.write_text(CONFIG + '    directories: ["admin-dashboard/"]\n')
    built.repo.git.commit("-am", "rotate admin-dashboard only", "--no-verify")

    code, summaries = built.run()

    assert code == 0
    (proposed,) = summaries
    changed = built.repo.git.diff("--name-only", "main", "rotation-bot/sharp-0.33.6").splitlines()
    assert sorted(changed) == ["admin-dashboard/package-lock.json", "admin-dashboard/package.json"]
    body = proposed["proposal"]["body"]
    assert "frontend-marketing" not in body and "####" not in body
    _, (plan,) = built.plan()
    assert [status["project"]["directory"] for status in plan["projects"]] == ["admin-dashboard"]


def test_pin_true_adds_the_pins_in_the_files_own_indentation(
    tmp_path: Path, empty_registry: Verdaccio, tools_dir: Path
) -> None:
    built = build(
        tmp_path,
        empty_registry,
        tools_dir,
        "05-no-pins-tabs-no-final-newline",
        config=CONFIG + "    pin: true\n",
    )
    original = built.show("main", "package.json").decode()

    code, (proposed,) = built.run()

    assert code == 0 and proposed["outcome"] == "proposed"
    assert original.endswith('\t\t"typescript": "5.2.2"\n\t}\n}')
    expected = original.replace('"sharp": "^0.33.4"', '"sharp": "^0.33.6"').removesuffix("\n}") + (
        ',\n\t"overrides": {\n'
        '\t\t"@img/sharp-linux-x64": "0.33.6",\n'
        '\t\t"@img/sharp-libvips-linux-x64": "1.0.4",\n'
        '\t\t"@img/sharp-linuxmusl-x64": "0.33.6",\n'
        '\t\t"@img/sharp-libvips-linuxmusl-x64": "1.0.4"\n'
        "\t}\n}"
    )
    assert built.show("rotation-bot/sharp-0.33.6", "package.json").decode() == expected
    after = lock_entries(built.show("rotation-bot/sharp-0.33.6", "package-lock.json").decode())
    for name, version in (
        ("@img/sharp-linux-x64", "0.33.6"),
        ("@img/sharp-libvips-linux-x64", "1.0.4"),
        ("@img/sharp-linuxmusl-x64", "0.33.6"),
        ("@img/sharp-libvips-linuxmusl-x64", "1.0.4"),
    ):
        entry = after[f"node_modules/{name}"]
        assert (entry["version"], entry["integrity"]) == (
            version,
            built.registry.integrity(name, version),
        )
    body = normalized(proposed["proposal"]["body"])
    assert "Not pinned" not in body
    assert '- `package.json`: added `overrides` `{"@img/sharp-linux-x64": "0.33.6", ' in body


def test_major_next_names_the_newest_line_and_major_latest_proposes_it(
    tmp_path: Path, empty_registry: Verdaccio, tools_dir: Path
) -> None:
    built = build(tmp_path, empty_registry, tools_dir, "05-no-pins-tabs-no-final-newline")
    publish_sharp(empty_registry, "0.35.1", "1.2.1")
    next_line = CONFIG.replace("major: false", "major: next")
    (built.path / ".github" / "rotation-bot.yml").write_text(next_line)
    built.repo.git.commit("-am", "major: next", "--no-verify")

    _, (plan,) = built.plan()

    assert [(r["kind"], r["new_version"]) for r in plan["rotations"]] == [
        ("patch", "0.33.6"),
        ("major", "0.34.1"),
    ]
    reasons = {item["subject"]: item["reason"] for item in plan["skipped"]}
    assert reasons["sharp@0.35.1"].startswith(
        "the newest line; . is offered the next line (0.34.1)"
    )
    assert "runbooks.sharp.major: latest" in reasons["sharp@0.35.1"]
    (built.path / ".github" / "rotation-bot.yml").write_text(
        CONFIG.replace("major: false", "major: latest")
    )
    built.repo.git.commit("-am", "major: latest", "--no-verify")

    _, (latest,) = built.plan()
    code, summaries = built.run()

    assert [(r["kind"], r["new_version"]) for r in latest["rotations"]] == [
        ("patch", "0.33.6"),
        ("major", "0.35.1"),
    ]
    assert code == 0
    assert [(s["outcome"], s["target"]) for s in summaries] == [
        ("proposed", "0.33.6"),
        ("proposed", "0.35.1"),
    ]
    manifest = built.show("rotation-bot/sharp-0.35.1", "package.json").decode()
    assert '\t\t"sharp": "^0.35.1"\n\t},' in manifest
    after = lock_entries(built.show("rotation-bot/sharp-0.35.1", "package-lock.json").decode())
    assert after["node_modules/@img/sharp-libvips-linux-x64"]["version"] == "1.2.1"
    assert "### Major rotation checklist" in summaries[1]["proposal"]["body"]


def failed_step(built: Built, run_id: str) -> dict[str, Any]:
    steps = built.audit().run_steps(run_id)
    return next(step for step in steps if step["status"] == "failed")


def test_npm_eoverride_shows_npms_own_code_and_line_in_the_output_and_the_audit(
    tmp_path: Path, empty_registry: Verdaccio, tools_dir: Path
) -> None:
    # a hand edit the lockfile never saw: an override of a direct dependency that disagrees
    def break_manifest(path: Path) -> None:
        edit_json_text(
            path / "package.json",
            '        "nanoid@3": "^3.3.17",\n',
            '        "nanoid@3": "^3.3.17",\n        "react": "19.1.0",\n',
        )

    built = build(
        tmp_path,
        empty_registry,
        tools_dir,
        "04-devdependency-sharp-matching-override",
        after_lock=break_manifest,
    )

    result = bot(built.env, "run", "--repo", str(built.path), "--runbook", "sharp")

    assert result.exit_code == 1
    npm_says = (
        "npm error code EOVERRIDE; npm error Override for react@^19.1.0 conflicts with direct "
        "dependency"
    )
    assert npm_says in result.output
    assert "/_logs/" not in result.output
    (run,) = built.audit().list_runs()
    step = failed_step(built, run["id"])
    assert step["kind"] == "regenerate-lockfile"
    assert npm_says in step["evidence"]["message"]
    assert "npm error Override for react@^19.1.0 conflicts" in step["evidence"]["stderr"]
    assert [head.name for head in built.repo.heads] == ["main"]


def test_npm_eresolve_shows_the_conflicting_peer(
    tmp_path: Path, empty_registry: Verdaccio, tools_dir: Path
) -> None:
    def break_manifest(path: Path) -> None:
        empty_registry.publish(
            "react-dom", "18.3.1", extra={"peerDependencies": {"react": "^18.3.1"}}
        )
        edit_json_text(path / "package.json", '"react-dom": "18.2.0"', '"react-dom": "18.3.1"')

    built = build(
        tmp_path,
        empty_registry,
        tools_dir,
        "05-no-pins-tabs-no-final-newline",
        after_lock=break_manifest,
    )

    code, (summary,) = built.run()

    assert code == 1 and summary["outcome"] == "failed"
    npm_says = (
        "npm error code ERESOLVE; npm error ERESOLVE unable to resolve dependency tree; npm error "
        "While resolving: @pantheon-systems/next-drupal-starter@0.1.0; npm error Found: "
        'react@18.2.0; npm error node_modules/react; npm error react@"18.2.0" from the root '
        "project; npm error Could not resolve dependency:; npm error peer "
        'react@"^18.3.1" from react-dom@18.3.1'
    )
    assert npm_says in summary["message"], summary["message"]
    step = failed_step(built, summary["run_id"])
    assert npm_says in step["evidence"]["message"]


def test_an_override_keyed_with_a_selector_moves_with_the_dependency_not_into_eoverride(
    tmp_path: Path, empty_registry: Verdaccio, tools_dir: Path
) -> None:
    def select(path: Path) -> None:
        edit_json_text(
            path / "package.json",
            '        "sharp": "^0.33.4"\n    },\n    "resolutions"',
            '        "sharp@0.33": "^0.33.4"\n    },\n    "resolutions"',
        )

    built = build(
        tmp_path,
        empty_registry,
        tools_dir,
        "04-devdependency-sharp-matching-override",
        before_lock=select,
    )
    original = built.show("main", "package.json").decode()

    code, (proposed,) = built.run()

    assert code == 0, proposed["message"]
    expected = original.replace('"sharp": "^0.33.4"', '"sharp": "^0.33.6"').replace(
        '"sharp@0.33": "^0.33.4"', '"sharp@0.33": "^0.33.6"'
    )
    assert built.show("rotation-bot/sharp-0.33.6", "package.json").decode() == expected


def test_pins_drifted_from_sharp_are_named_and_realigned(
    tmp_path: Path, empty_registry: Verdaccio, tools_dir: Path
) -> None:
    # TREK's outage: sharp moved (here to 0.33.5) and the root pin stayed behind (0.33.4), so
    # npm nests sharp's own binary under node_modules/sharp/node_modules/@img/
    def publish_next(_path: Path) -> None:
        publish_sharp(empty_registry, "0.33.5", "1.0.4")

    built = build(
        tmp_path,
        empty_registry,
        tools_dir,
        "01-npm-workspaces-root-optional-pins",
        before_lock=publish_next,
    )
    nested = "node_modules/sharp/node_modules/@img/sharp-linuxmusl-x64"
    before = lock_entries(built.show("main", "package-lock.json").decode())
    assert before["node_modules/sharp"]["version"] == "0.33.5"
    assert before[nested]["version"] == "0.33.5"
    assert before["node_modules/@img/sharp-linuxmusl-x64"]["version"] == "0.33.4"

    _, (plan,) = built.plan()
    code, (proposed,) = built.run()

    (status,) = plan["projects"]
    assert status["notes"] == [
        "package.json optionalDependencies.@img/sharp-linuxmusl-x64 is '0.33.4' but sharp 0.33.5 "
        f"needs 0.33.5; the rotation realigns it (npm loads {nested} 0.33.5 today)"
    ]
    assert code == 0
    manifest = built.show("rotation-bot/sharp-0.33.6", "package.json").decode()
    assert '"@img/sharp-linuxmusl-x64": "0.33.6"' in manifest
    after = lock_entries(built.show("rotation-bot/sharp-0.33.6", "package-lock.json").decode())
    assert not any(key.startswith("node_modules/sharp/node_modules/") for key in after)
    assert after["node_modules/@img/sharp-linuxmusl-x64"]["version"] == "0.33.6"
    assert "sharp 0.33.5 needs 0.33.5" in normalized(proposed["proposal"]["body"])


def test_flat_binary_pins_that_would_reach_a_kept_copy_are_refused_before_npm_runs(
    tmp_path: Path, empty_registry: Verdaccio, tools_dir: Path
) -> None:
    def pin_flat(path: Path) -> None:
        edit_json_text(
            path / "docs" / "package.json",
            '    "zod": "^3.24.0"\n',
            '    "zod": "^3.24.0",\n    "@img/sharp-linux-x64": "0.34.0",\n'
            '    "@img/sharp-libvips-linux-x64": "1.1.0"\n',
        )

    built = build(
        tmp_path,
        empty_registry,
        tools_dir,
        "07-second-sharp-copy-under-parent",
        after_lock=pin_flat,
    )

    code, (summary,) = built.run()

    assert code == 0 and summary["outcome"] == "nothing-to-do"
    assert (
        "docs → sharp@0.34.1: @mintlify/prebuild@1.0.959 keeps sharp 0.33.4 (0.33.4), and the "
        "pins in docs/package.json overrides apply to every copy: sharp 0.33.4 would load "
        "binaries built for 0.34.1" in summary["message"]
    )
    kinds = [step["kind"] for step in built.audit().run_steps(summary["run_id"])]
    assert "regenerate-lockfile" not in kinds and "bump-pins" not in kinds
    assert [head.name for head in built.repo.heads] == ["main"]


def test_package_manager_npm_is_the_npm_that_runs_and_its_hash_is_checked(
    tmp_path: Path, empty_registry: Verdaccio
) -> None:
    tarball = TOOLS / "npm-11.6.2.tgz"
    digest = hashlib.sha512(tarball.read_bytes()).hexdigest()

    def declare(path: Path) -> None:
        edit_json_text(
            path / "package.json",
            '\t"private": true,\n',
            f'\t"private": true,\n\t"packageManager": "npm@11.6.2+sha512.{digest}",\n',
        )

    # the repository's lockfile is written by the npm it declares (which writes no `libc`)
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path / "npm-11.6.2", filter="data")
    npm = ("node", str(tmp_path / "npm-11.6.2" / "package" / "bin" / "npm-cli.js"))
    # no shared tool cache: what gets installed is what this repository asked for
    built = build(
        tmp_path,
        empty_registry,
        None,
        "05-no-pins-tabs-no-final-newline",
        before_lock=declare,
        npm=npm,
        # the second run must regenerate the open rotation after a base change that does not
        # conflict (the default, conflicted, would leave it as it is)
        config=CONFIG + "pull-requests:\n  rebase-when: behind-base\n",
    )
    before = lock_entries(built.show("main", "package-lock.json").decode())
    assert "libc" not in before["node_modules/@img/sharp-linux-x64"]

    code, (proposed,) = built.run()

    assert code == 0, proposed["message"]
    steps = built.audit().run_steps(proposed["run_id"])
    regenerated = next(step for step in steps if step["kind"] == "regenerate-lockfile")
    assert [item["tool"] for item in regenerated["evidence"]["lockfiles"]] == ["npm@11.6.2"]
    assert "regenerated package-lock.json (npm@11.6.2)" in normalized(proposed["proposal"]["body"])
    tools = built.env.state / "tools"
    assert sorted(path.name for path in tools.iterdir() if not path.name.startswith(".")) == [
        "npm@11.6.2"
    ]
    # a packageManager hash that does not match the tarball: fails closed, in one line
    wrong = "0" * 128
    edit_json_text(built.path / "package.json", digest, wrong)
    built.repo.git.commit("-am", "packageManager with another hash", "--no-verify")
    branch = built.repo.commit("rotation-bot/sharp-0.33.6").hexsha
    shutil.rmtree(tools)

    result = bot(built.env, "run", "--repo", str(built.path), "--runbook", "sharp")

    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.startswith("[failed]")]
    assert line == (
        "[failed] sharp 0.33.6: step regenerate-lockfile failed: npm@11.6.2 from "
        f"{empty_registry.url} does not match the sha512 hash of packageManager in package.json; "
        "refusing to run it (check that field: it is the sha512 hex digest of the tool's "
        "tarball, as corepack writes it); nothing was published"
    )
    assert built.repo.commit("rotation-bot/sharp-0.33.6").hexsha == branch
    assert not (tools / "npm@11.6.2").exists()
