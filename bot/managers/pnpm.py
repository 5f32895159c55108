"""pnpm: pnpm-lock.yaml (v6, v9), pins in `pnpm.overrides` (package.json) or `overrides` in
pnpm-workspace.yaml, workspaces from pnpm-workspace.yaml, and
`pnpm install --lockfile-only --ignore-scripts --ignore-pnpmfile`.

Nothing of the repository runs: `.pnpmfile.cjs` is never copied into the scratch copy and
`--ignore-pnpmfile` is passed anyway; pnpm-workspace.yaml is reduced to the settings that shape
resolution (`WORKSPACE_KEYS`: overrides, catalogs, packageExtensions, supportedArchitectures, …),
so `configDependencies` (packages pnpm would load as plugins), `pnpmfile`, shells, registries and
patches named there never reach pnpm.  `supportedArchitectures` (package.json `pnpm` or the
workspace file) is kept as written; pnpm's lockfile lists every platform either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bot.errors import ManifestError
from bot.managers.base import (
    PackageManager,
    Prepared,
    Reader,
    ScratchProject,
    Tool,
    ToolPlaces,
    join,
    manifest_files,
    write_npmrc,
)
from bot.manifests.locked import LockedTree
from bot.manifests.overrides import Target, pnpm_override
from bot.manifests.pnpm_lock import parse_pnpm_lock
from bot.manifests.yaml_document import load_yaml
from bot.models import Project
from bot.sources.npm.settings import NpmSettings

WORKSPACE_FILE = "pnpm-workspace.yaml"
# pnpm 10 reads overrides from pnpm-workspace.yaml as well as package.json and writes lockfile v9
DEFAULT_PNPM = "10.32.1"
# the last pnpm that writes lockfile v6: a v6 project without packageManager stays v6
DEFAULT_PNPM_V6 = "8.15.9"
# settings of pnpm-workspace.yaml that shape how the tree resolves; everything else (hooks,
# plugins, shells, registries, patches, scripts) is dropped from the scratch copy
WORKSPACE_KEYS = frozenset(
    {
        "packages",
        "catalog",
        "catalogs",
        "catalogMode",
        "overrides",
        "packageExtensions",
        "peerDependencyRules",
        "allowedDeprecatedVersions",
        "supportedArchitectures",
        "ignoredOptionalDependencies",
        "onlyBuiltDependencies",
        "neverBuiltDependencies",
        "ignoredBuiltDependencies",
        "allowBuilds",
        "autoInstallPeers",
        "dedupePeerDependents",
        "dedupeDirectDeps",
        "dedupeInjectedDeps",
        "strictPeerDependencies",
        "resolvePeersFromWorkspaceRoot",
        "resolutionMode",
        "preferWorkspacePackages",
        "injectWorkspacePackages",
        "linkWorkspacePackages",
        "sharedWorkspaceLockfile",
        "saveWorkspaceProtocol",
        "includeWorkspaceRoot",
        "excludeLinksFromLockfile",
        "lockfileIncludeTarballUrl",
        "nodeLinker",
        "shamefullyHoist",
        "hoist",
        "hoistPattern",
        "publicHoistPattern",
        "hoistWorkspacePackages",
        "minimumReleaseAge",
        "minimumReleaseAgeExclude",
    }
)


def _workspace(read: Reader, source: str) -> dict[str, Any]:
    text = read(WORKSPACE_FILE)
    if text is None:
        return {}
    data = load_yaml(text, source=source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ManifestError(f"{source} must hold a YAML mapping")
    return data


class Pnpm(PackageManager):
    """pnpm 8 to 10 (lockfileVersion 6.x and 9.0)."""

    name = "pnpm"
    lockfile = "pnpm-lock.yaml"
    tool_package = "pnpm"
    declared_as = "pnpm"
    pin_field = ("pnpm", "overrides")
    install_command = "pnpm install"
    default_version = DEFAULT_PNPM
    hook_files = (".pnpmfile.cjs", ".pnpmfile.mjs")

    def default_tool_version(self, lock_text: str) -> str:
        """pnpm 8 for a v6 lockfile, else `DEFAULT_PNPM`."""
        first = next((line for line in lock_text.splitlines() if line.strip()), "")
        return (
            DEFAULT_PNPM_V6
            if first.replace("'", "").startswith("lockfileVersion: 6")
            else (DEFAULT_PNPM)
        )

    def workspace_patterns(self, manifest: object, read: Reader) -> tuple[str, ...]:
        """pnpm-workspace.yaml `packages` (pnpm ignores package.json `workspaces`)."""
        try:
            packages = _workspace(read, WORKSPACE_FILE).get("packages")
        except ManifestError:
            return ()
        if not isinstance(packages, list):
            return ()
        return tuple(item for item in packages if isinstance(item, str) and item.strip())

    def pin_location(self, project: Project, read: Reader) -> tuple[str, tuple[str, ...]]:
        """pnpm-workspace.yaml `overrides` when that file has them, else package.json
        `pnpm.overrides`."""
        path = project.path(WORKSPACE_FILE)
        if isinstance(_workspace(read, path).get("overrides"), dict):
            return path, ("overrides",)
        return project.path("package.json"), self.pin_field

    def override_target(self, relative: tuple[str, ...]) -> Target | None:
        """`sharp`, `sharp@<0.34`, `next>sharp`."""
        return pnpm_override(relative)

    def documents(self, project: Project) -> tuple[str, ...]:
        """pnpm-workspace.yaml (catalogs, overrides)."""
        return (project.path(WORKSPACE_FILE),)

    def spec_reference(self, name: str, spec: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """`catalog:` / `catalog:default` → `catalog.<name>` (or `catalogs.default.<name>`);
        `catalog:NAME` → `catalogs.NAME.<name>`, in pnpm-workspace.yaml."""
        if not spec.startswith("catalog:"):
            return ()
        catalog = spec.removeprefix("catalog:").strip() or "default"
        if catalog == "default":
            return (
                (WORKSPACE_FILE, ("catalog", name)),
                (WORKSPACE_FILE, ("catalogs", "default", name)),
            )
        return ((WORKSPACE_FILE, ("catalogs", catalog, name)),)

    def project_files(self, directory: str, members: Sequence[str]) -> tuple[str, ...]:
        """package.json, pnpm-lock.yaml, pnpm-workspace.yaml and the members' package.json."""
        return manifest_files(directory, self.lockfile, members, WORKSPACE_FILE)

    def regenerate_argv(self, tool: Tool) -> tuple[str, ...]:
        """`pnpm install --lockfile-only` with scripts and the repository's pnpmfile off."""
        return (
            *tool.argv,
            "install",
            "--lockfile-only",
            "--ignore-scripts",
            "--ignore-pnpmfile",
            "--no-frozen-lockfile",
            "--reporter=append-only",
        )

    def prepare(self, project: ScratchProject, settings: NpmSettings) -> Prepared:
        """The sanitised `.npmrc`, and pnpm-workspace.yaml reduced to `WORKSPACE_KEYS`."""
        npmrc = write_npmrc(project, settings)
        path = project.directory / WORKSPACE_FILE
        if not path.exists():
            return npmrc
        source = join(project.location, WORKSPACE_FILE)
        data = _workspace(lambda _: path.read_text(encoding="utf-8"), source)
        dropped = sorted(key for key in data if key not in WORKSPACE_KEYS)
        if dropped:
            kept = {key: value for key, value in data.items() if key in WORKSPACE_KEYS}
            path.write_text(yaml.safe_dump(kept, sort_keys=False), encoding="utf-8")
        return Prepared(ignored=(*npmrc.ignored, *(f"{source}: {key}" for key in dropped)))

    def environment(
        self, base: Mapping[str, str], settings: NpmSettings, places: ToolPlaces
    ) -> dict[str, str]:
        """npm's environment plus pnpm's: its store and cache in the bot's cache, no switching
        to another pnpm version, no pnpmfile, no update check."""
        return {
            **base,
            "npm_config_manage_package_manager_versions": "false",
            "npm_config_ignore_pnpmfile": "true",
            "npm_config_store_dir": str(places.cache / "pnpm-store"),
            "npm_config_cache_dir": str(places.cache / "pnpm-cache"),
            "npm_config_state_dir": str(places.scratch / "pnpm-state"),
            "npm_config_update_notifier": "false",
        }

    def parse_lock(
        self, text: str, *, source: str, manifests: Mapping[str, Mapping[str, Any]] | None = None
    ) -> LockedTree:
        """pnpm-lock.yaml v6 or v9 (importers are recorded in the lockfile)."""
        return parse_pnpm_lock(text, source=source)

    def tool_entry(self, package_dir: Path) -> Path:
        """pnpm's `bin/pnpm.cjs`."""
        return package_dir / "bin" / "pnpm.cjs"
