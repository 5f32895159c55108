"""The planner through pnpm's and Yarn's hooks: overrides in pnpm-workspace.yaml in pnpm's
`parent>child` syntax, Yarn `resolutions` (paths and kinds kept: npm's EOVERRIDE rule is npm's)."""

from __future__ import annotations

import json

from bot.managers import MANAGERS
from bot.manifests.package_json import PackageJson
from bot.manifests.yaml_document import YamlDocument
from bot.models import Project
from bot.planning.npm_family import ProjectInput
from tests.planning.test_npm_family import NAMES, edits, plan


def manager_input(
    manager_name: str,
    lockfile: str,
    lock: str,
    manifest: dict[str, object],
    *,
    workspace_file: str | None = None,
) -> ProjectInput:
    manager = MANAGERS[manager_name]
    manifests: dict[str, object] = {"package.json": PackageJson.parse(json.dumps(manifest))}
    overrides_path, field = ("package.json", manager.pin_field)
    if workspace_file is not None:
        manifests["pnpm-workspace.yaml"] = YamlDocument.parse(
            workspace_file, source="pnpm-workspace.yaml"
        )
        overrides_path, field = "pnpm-workspace.yaml", ("overrides",)
    return ProjectInput(
        Project("", manager_name, lockfile),
        manifests,  # type: ignore[arg-type]
        manager.parse_lock(lock, source=lockfile, manifests={"": manifest}),
        field,
        override_manifest=overrides_path,
        override_target=manager.override_target,
        overrides_follow_dependencies=manager.overrides_follow_dependencies,
        install_command=manager.install_command,
        spec_reference=manager.spec_reference,
    )


YARN1_LOCK = f"""# yarn lockfile v1

"{NAMES[0]}@0.33.4":
  version "0.33.4"

"{NAMES[1]}@1.0.2":
  version "1.0.2"

sharp@0.33.4, sharp@^0.33.4:
  version "0.33.4"
  optionalDependencies:
    "{NAMES[0]}" "0.33.4"
    "{NAMES[1]}" "1.0.2"
"""


def test_yarn_resolutions_keep_their_kind_beside_a_caret_dependency() -> None:
    item = manager_input(
        "yarn-classic",
        "yarn.lock",
        YARN1_LOCK,
        {
            "dependencies": {"sharp": "^0.33.4"},
            "resolutions": {"sharp": "0.33.4", f"**/{NAMES[0]}": "0.33.4"},
        },
    )

    (patch, _) = plan(item).rotations
    (pinned, _) = plan(item, add_pins=True).rotations

    moved = [
        ("dependencies.sharp", "value", "^0.33.4", "^0.33.5"),
        ("resolutions.sharp", "value", "0.33.4", "0.33.5"),  # exact stays exact
        (f"resolutions.**/{NAMES[0]}", "value", "0.33.4", "0.33.5"),
    ]
    assert edits(patch) == moved
    # the missing libvips pin is offered beside the others, and added with `pin: true`
    (part,) = patch.projects
    assert part.unpinned == (NAMES[1],)
    assert [(".".join(e.location), e.new) for e in part.suggested] == [
        (f"resolutions.{NAMES[1]}", "1.0.4")
    ]
    assert edits(pinned) == [*moved, (f"resolutions.{NAMES[1]}", "insert", "", "1.0.4")]


PNPM_LOCK = f"""lockfileVersion: '9.0'

importers:
  .:
    dependencies:
      next:
        specifier: 15.0.0
        version: 15.0.0

packages:
  next@15.0.0:
    resolution: {{integrity: sha512-next}}
  sharp@0.33.4:
    resolution: {{integrity: sha512-sharp}}
  '{NAMES[0]}@0.33.4':
    resolution: {{integrity: sha512-bin}}
  '{NAMES[1]}@1.0.2':
    resolution: {{integrity: sha512-vips}}

snapshots:
  next@15.0.0:
    optionalDependencies:
      sharp: 0.33.4
  sharp@0.33.4:
    optionalDependencies:
      '{NAMES[0]}': 0.33.4
      '{NAMES[1]}': 1.0.2
  '{NAMES[0]}@0.33.4': {{}}
  '{NAMES[1]}@1.0.2': {{}}
"""


def test_a_pnpm_parent_child_override_in_the_workspace_file_controls_the_copy() -> None:
    workspace = "packages:\n  - web\noverrides:\n  next>sharp: 0.33.4\n"
    item = manager_input(
        "pnpm",
        "pnpm-lock.yaml",
        PNPM_LOCK,
        {"dependencies": {"next": "15.0.0"}},
        workspace_file=workspace,
    )

    (patch, _) = plan(item).rotations

    (part,) = patch.projects
    assert part.kept == ()
    assert [(e.manifest, e.location, e.previous, e.new) for e in part.edits] == [
        ("pnpm-workspace.yaml", ("overrides", "next>sharp"), "0.33.4", "0.33.5")
    ]


def test_without_an_override_a_pnpm_copy_held_by_another_package_is_skipped_with_pnpm_advice() -> (
    None
):
    item = manager_input("pnpm", "pnpm-lock.yaml", PNPM_LOCK, {"dependencies": {"next": "15.0.0"}})

    result = plan(item)

    assert result.rotations == ()
    (skip,) = result.skipped
    assert "sharp arrives only through next@15.0.0" in skip.reason


PNPM_DIRECT_LOCK = PNPM_LOCK.replace(
    "      next:\n        specifier: 15.0.0\n        version: 15.0.0\n",
    "      sharp:\n        specifier: 'catalog:'\n        version: 0.33.4\n",
)


def test_a_pnpm_catalog_entry_is_where_a_catalog_declaration_is_rotated() -> None:
    workspace = (
        "packages:\n  - web\ncatalog:\n  sharp: ^0.33.4\ncatalogs:\n  img:\n    sharp: 0.33.4\n"
    )
    item = manager_input(
        "pnpm",
        "pnpm-lock.yaml",
        PNPM_DIRECT_LOCK,
        {"dependencies": {"sharp": "catalog:"}, "devDependencies": {"sharp": "catalog:img"}},
        workspace_file=workspace,
    )

    (patch, _) = plan(item).rotations

    (part,) = patch.projects
    assert [(e.manifest, e.location, e.previous, e.new) for e in part.edits] == [
        ("pnpm-workspace.yaml", ("catalog", "sharp"), "^0.33.4", "^0.33.5"),
        ("pnpm-workspace.yaml", ("catalogs", "img", "sharp"), "0.33.4", "0.33.5"),
    ]


def test_a_version_keyed_pnpm_allow_builds_entry_follows_the_rotation() -> None:
    workspace = (
        "overrides:\n  sharp: 0.33.4\nallowBuilds:\n  sharp@0.33.4: true\n  esbuild: false\n"
    )
    item = manager_input(
        "pnpm",
        "pnpm-lock.yaml",
        PNPM_DIRECT_LOCK,
        {"dependencies": {"sharp": "0.33.4"}},
        workspace_file=workspace,
    )

    (patch, _) = plan(item).rotations

    (part,) = patch.projects
    assert ("pnpm-workspace.yaml", ("allowBuilds", "sharp@0.33.4"), "key", "sharp@0.33.5") in [
        (e.manifest, e.location, e.kind, e.new) for e in part.edits
    ]


def test_a_pnpm_override_keyed_with_a_selector_reaches_only_the_copies_in_its_range() -> None:
    def rotations(key: str) -> object:
        item = manager_input(
            "pnpm",
            "pnpm-lock.yaml",
            PNPM_LOCK,
            {"dependencies": {"next": "15.0.0"}},
            workspace_file=f"overrides:\n  '{key}': 0.33.4\n",
        )
        return plan(item)

    (patch, _) = rotations("sharp@<0.34").rotations
    assert [(e.location, e.new) for part in patch.projects for e in part.edits] == [
        (("overrides", "sharp@<0.34"), "0.33.5")
    ]
    # next's copy (0.33.4) is outside `<0.33`: that override is not the rotation's to move
    outside = rotations("sharp@<0.33")
    assert outside.rotations == ()
    assert [skip.reason for skip in outside.skipped] == [
        "pnpm-workspace.yaml overrides.sharp@<0.33 reaches no locked copy of sharp (next@15.0.0 "
        "holds 0.33.4); not managed here (widen the override's range to rotate it)"
    ]
