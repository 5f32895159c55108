"""Project discovery: the root, workspaces sharing its lockfile, independent sub-projects,
node_modules never, `directories:` narrowing, lockfiles of other managers named."""

from __future__ import annotations

import json

from bot.managers.discovery import discover, match_members


def _repo(files: dict[str, object]) -> tuple[list[str], dict[str, str]]:
    texts = {
        path: value if isinstance(value, str) else json.dumps(value)
        for path, value in files.items()
    }
    return list(texts), texts


def test_root_workspaces_and_independent_sub_projects() -> None:
    paths, texts = _repo(
        {
            "package.json": {"name": "mono", "workspaces": ["packages/*", "apps/web"]},
            "package-lock.json": "{}",
            "packages/image/package.json": {"name": "image"},
            "packages/image/deep/package.json": {"name": "not-a-member"},
            "apps/web/package.json": {"name": "web"},
            "apps/docs/package.json": {"name": "docs"},
            "worker/package.json": {"name": "worker", "packageManager": "npm@11.6.2"},
            "worker/package-lock.json": "{}",
            "node_modules/sharp/package.json": {"name": "sharp"},
            "worker/node_modules/x/package-lock.json": "{}",
            "worker/node_modules/x/package.json": {"name": "x"},
        }
    )
    found = discover(paths, texts.get)
    root, worker = found.projects
    assert (root.directory, root.lockfile, root.members) == (
        "",
        "package-lock.json",
        ("apps/web", "packages/image"),
    )
    assert (worker.directory, worker.lockfile, worker.package_manager) == (
        "worker",
        "worker/package-lock.json",
        "npm@11.6.2",
    )
    assert dict(found.orphans) == {
        "apps/docs": "has a package.json but no lockfile",
        "packages/image/deep": "has a package.json but no lockfile",
    }


def test_yarn_style_workspaces_object_and_negation() -> None:
    assert match_members(
        "", ["packages/*", "!packages/legacy"], ["packages/a", "packages/legacy"]
    ) == ("packages/a",)
    assert match_members("", ["tools/**"], ["tools/a/b", "tools"]) == ("tools/a/b",)
    paths, texts = _repo(
        {
            "package.json": {"workspaces": {"packages": ["./libs/*/"]}},
            "yarn.lock": "",
            "libs/a/package.json": {},
        }
    )
    (project,) = discover(paths, texts.get).projects
    assert (project.manager, project.lockfile, project.members) == (
        "yarn-classic",
        "yarn.lock",
        ("libs/a",),
    )


def test_directories_narrow_the_projects_considered() -> None:
    paths, texts = _repo(
        {
            "package.json": {},
            "package-lock.json": "{}",
            "web/package.json": {},
            "web/package-lock.json": "{}",
            "legacy/package.json": {},
            "legacy/package-lock.json": "{}",
        }
    )
    found = discover(paths, texts.get, directories=["web/", "legacy/", "!legacy/"])
    assert [project.directory for project in found.projects] == ["web"]


def test_a_malformed_manifest_is_still_a_project_without_members() -> None:
    paths, texts = _repo({"package.json": "{not json", "package-lock.json": "{}"})
    (project,) = discover(paths, texts.get).projects
    assert project.members == () and project.package_manager is None
