"""Yarn Berry (2 to 4): yarn.lock with `__metadata`, pins in `resolutions`, and
`yarn install --mode=update-lockfile` (resolution and the lockfile only: no link step, no
scripts).

Nothing of the repository runs or is trusted.  Its `.yarnrc.yml` is reduced to the settings that
shape resolution (`RC_KEYS`: nodeLinker, supportedArchitectures, packageExtensions, …); its
`yarnPath` (committed code) is dropped and `YARN_IGNORE_PATH=1` set, so the bot's own Yarn of the
declared version runs; `plugins`, `enableScripts: true`, `injectEnvironmentFiles`, credentials,
proxies and TLS settings are dropped; `npmRegistryServer` (also per scope) is kept only when it
names a registry the operator configured.  The operator's registries and credentials reach Yarn
through a 0600 `.yarnrc.yml` in a home directory of the run's scratch space, never the
repository's.  Berry refuses unknown `YARN_*` variables, so its environment carries only
settings every Berry version knows.

The lockfile's `checksum` is Yarn's own archive checksum (and `--mode=update-lockfile` writes
none for conditional packages such as `@img/*`), so the npm sha512 evidence comes from the
registry and the downloaded tarballs, never from this lockfile.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
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
)
from bot.managers.yarn_classic import yarn_major
from bot.manifests.locked import LockedTree
from bot.manifests.overrides import Target, yarn_resolution
from bot.manifests.yaml_document import load_yaml
from bot.manifests.yarn_lock import berry_lock_version, is_berry_lock, parse_berry_lock
from bot.models import Project
from bot.sources.npm.settings import NpmSettings

RC_FILE = ".yarnrc.yml"
DEFAULT_YARN_BERRY = "4.18.0"
# lockfile __metadata.version 6 is Yarn 3's: Yarn 4 would rewrite every entry
DEFAULT_YARN_3 = "3.8.7"
RC_KEYS = frozenset(
    {
        "nodeLinker",
        "supportedArchitectures",
        "packageExtensions",
        "compressionLevel",
        "npmMinimalAgeGate",
        "npmPreapprovedPackages",
        "defaultProtocol",
        "enableTransparentWorkspaces",
        "nmHoistingLimits",
        "pnpMode",
    }
)
_REGISTRY_KEYS = ("npmRegistryServer", "npmScopes")


def _url(value: str) -> str:
    return value.rstrip("/")


def _operator_registries(settings: NpmSettings) -> set[str]:
    return {_url(settings.registry), *(_url(url) for _, url in settings.scoped_registries)}


def _load_rc(text: str, rc: str) -> dict[str, Any]:
    """The settings of a .yarnrc.yml (`rc`: its path); not a YAML mapping is an error."""
    data = load_yaml(text, source=rc) or {}
    if not isinstance(data, dict):
        raise ManifestError(f"{rc} must hold a YAML mapping of Yarn settings; fix it")
    return data


def _sanitise_rc(
    data: Mapping[str, Any], settings: NpmSettings, rc: str
) -> tuple[dict[str, Any], list[str]]:
    """(kept settings, dropped key names) of a repository's .yarnrc.yml (`rc`: its path)."""
    allowed = _operator_registries(settings)
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in data.items():
        if key in RC_KEYS or (
            key == "npmRegistryServer" and isinstance(value, str) and _url(value) in allowed
        ):
            kept[key] = value
        elif key == "npmScopes" and isinstance(value, dict):
            scopes = {
                scope: {"npmRegistryServer": entry["npmRegistryServer"]}
                for scope, entry in value.items()
                if isinstance(entry, dict)
                and isinstance(entry.get("npmRegistryServer"), str)
                and _url(entry["npmRegistryServer"]) in allowed
            }
            if scopes:
                kept[key] = scopes
            if scopes != value:
                dropped.append(f"{rc}: {key} (registries the operator did not configure)")
        else:
            dropped.append(f"{rc}: {key}")
    return kept, dropped


def home_rc(settings: NpmSettings) -> str:
    """The operator's registries, credentials and network settings as a Yarn Berry rc, with
    scripts and telemetry off."""
    registries: dict[str, dict[str, Any]] = {}
    for url in sorted(_operator_registries(settings)):
        key = _nerf(url + "/")
        for prefix, name, value in settings.credentials:
            if key.startswith(prefix) and name in ("_authToken", "_auth"):
                field = "npmAuthToken" if name == "_authToken" else "npmAuthIdent"
                registries[url] = {field: value, "npmAlwaysAuth": True}
    rc: dict[str, Any] = {
        "npmRegistryServer": _url(settings.registry),
        "enableScripts": False,
        "enableTelemetry": False,
    }
    if settings.scoped_registries:
        rc["npmScopes"] = {
            scope.lstrip("@"): {"npmRegistryServer": _url(url)}
            for scope, url in settings.scoped_registries
        }
    if registries:
        rc["npmRegistries"] = registries
    insecure = sorted(
        {httpx.URL(url).host for url in _operator_registries(settings) if url.startswith("http:")}
    )
    if insecure:
        rc["unsafeHttpWhitelist"] = insecure
    network = dict(settings.network)
    for npm_key, yarn_key in (
        ("https-proxy", "httpsProxy"),
        ("proxy", "httpProxy"),
        ("cafile", "caFilePath"),
    ):
        if network.get(npm_key):
            rc[yarn_key] = network[npm_key]
    if network.get("strict-ssl") == "false":
        rc["enableStrictSsl"] = False
    return yaml.safe_dump(rc, sort_keys=False)


def _nerf(url: str) -> str:
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"//{parsed.host}{port}{parsed.path}"


class YarnBerry(PackageManager):
    """Yarn 2, 3 and 4."""

    name = "yarn-berry"
    lockfile = "yarn.lock"
    tool_package = "@yarnpkg/cli-dist"
    declared_as = "yarn"
    pin_field = ("resolutions",)
    install_command = "yarn install"
    default_version = DEFAULT_YARN_BERRY
    hook_files = (".yarn/releases", ".yarn/plugins", ".pnp.cjs")

    def claims(self, declared: tuple[str, str] | None, lock_text: Callable[[], str | None]) -> bool:
        """`packageManager: yarn@2+`, or no yarn declared and a Berry yarn.lock."""
        if declared is not None and declared[0] == "yarn":
            return self.accepts(declared[1])
        return is_berry_lock(lock_text() or "")

    def accepts(self, version: str) -> bool:
        """Yarn 2 and later."""
        major = yarn_major(version)
        return major is not None and major >= 2

    def default_tool_version(self, lock_text: str) -> str:
        """Yarn 3 for a Yarn 3 lockfile (metadata version 6 or older), else Yarn 4."""
        version = berry_lock_version(lock_text)
        return DEFAULT_YARN_3 if version is not None and version < 8 else DEFAULT_YARN_BERRY

    def override_target(self, relative: tuple[str, ...]) -> Target | None:
        """`sharp`, `**/sharp`, `next/sharp`, `sharp@npm:^0.33.4`."""
        return yarn_resolution(relative)

    def project_files(self, directory: str, members: Sequence[str]) -> tuple[str, ...]:
        """package.json, yarn.lock, .yarnrc.yml (sanitised by `prepare`) and the members'
        package.json."""
        return manifest_files(directory, self.lockfile, members, RC_FILE)

    def check_config(self, project: Project, read: Reader) -> None:
        """.yarnrc.yml, when present, is a YAML mapping."""
        text = read(RC_FILE)
        if text is not None:
            _load_rc(text, project.path(RC_FILE))

    def regenerate_argv(self, tool: Tool) -> tuple[str, ...]:
        """`yarn install --mode=update-lockfile`."""
        return (*tool.argv, "install", "--mode=update-lockfile")

    def prepare(self, project: ScratchProject, settings: NpmSettings) -> Prepared:
        """.yarnrc.yml reduced to `RC_KEYS` (and the operator's registries); what was dropped
        and what the repository asked Yarn to run is reported."""
        path = project.directory / RC_FILE
        if not path.exists():
            return Prepared()
        rc = join(project.location, RC_FILE)
        data = _load_rc(path.read_text(encoding="utf-8"), rc)
        kept, dropped = _sanitise_rc(data, settings, rc)
        path.write_text(yaml.safe_dump(kept, sort_keys=False) if kept else "", encoding="utf-8")
        notes = []
        if "yarnPath" in data:
            notes.append(
                f"{rc} yarnPath {data['yarnPath']!r} is repository code: not run (the bot "
                "runs its own Yarn of the declared version)"
            )
        if data.get("plugins"):
            notes.append(f"{rc} plugins are repository code: not loaded")
        if data.get("enableScripts") is True:
            notes.append(f"{rc} enableScripts: true overridden: scripts stay off")
        return Prepared(ignored=tuple(dropped), notes=tuple(notes))

    def environment(
        self, base: Mapping[str, str], settings: NpmSettings, places: ToolPlaces
    ) -> dict[str, str]:
        """A home directory holding the 0600 rc with the operator's registries (written once per
        run), and only `YARN_*` settings every Berry version knows."""
        home = places.scratch / "yarn-home"
        rc = home / RC_FILE
        if not rc.exists():
            home.mkdir(mode=0o700, exist_ok=True)
            descriptor = os.open(rc, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(home_rc(settings))
        environment = {
            key: value for key, value in base.items() if not key.upper().startswith("NPM_CONFIG_")
        }
        return {
            **environment,
            "HOME": str(home),
            "YARN_IGNORE_PATH": "1",
            "YARN_ENABLE_SCRIPTS": "false",
            "YARN_ENABLE_TELEMETRY": "false",
            "YARN_ENABLE_GLOBAL_CACHE": "false",
            "YARN_ENABLE_IMMUTABLE_INSTALLS": "false",
            "YARN_CACHE_FOLDER": str(places.cache / "yarn-berry-cache"),
            "YARN_GLOBAL_FOLDER": str(places.cache / "yarn-berry-global"),
        }

    def parse_lock(
        self, text: str, *, source: str, manifests: Mapping[str, Mapping[str, Any]] | None = None
    ) -> LockedTree:
        """A Berry yarn.lock (its workspaces are entries of their own)."""
        return parse_berry_lock(text, source=source)

    def tool_entry(self, package_dir: Path) -> Path:
        """The bundled Yarn of `@yarnpkg/cli-dist`: `bin/yarn.js`."""
        return package_dir / "bin" / "yarn.js"
