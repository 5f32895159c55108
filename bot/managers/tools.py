"""Package-manager tools at the version a repository declares, never a global one.

The version comes from the root package.json's `packageManager` field (`pnpm@9.15.0`,
`yarn@4.5.1+sha512.<hex>`), else the manager's pinned default.  The tool's npm package is
downloaded from the configured registry, its sha512 checked against the registry's
`dist.integrity` (and against the `+sha512.`/`+sha256.`… hash corepack puts in
`packageManager`, when there is one), unpacked with tarfile's `data` filter (no absolute paths,
no links leaving the directory, no devices) into the bot's state directory, and run with `node`.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import semver

from bot.errors import InvalidRemoteData, ManifestError
from bot.managers.base import PackageManager, Tool
from bot.models import Project
from bot.sources.npm.registry import NpmRegistry

TOOL_LIMIT = 64 * 1024 * 1024
_DECLARED = re.compile(
    r"^(?P<name>npm|pnpm|yarn)@(?P<version>[0-9][0-9A-Za-z.+-]*?)"
    r"(?:\+(?P<algorithm>sha1|sha224|sha256|sha512)\.(?P<hash>[0-9a-f]+))?$"
)
_MARKER = ".rotation-bot-integrity"


def parse_package_manager(
    value: object, *, source: str, example: str
) -> tuple[str, str, tuple[str, str] | None]:
    """`packageManager` → (tool name, strict version, (hash algorithm, hex) or None);
    `example` is the value the error suggests (the project's own manager)."""
    match = _DECLARED.match(value) if isinstance(value, str) else None
    if match is None:
        raise ManifestError(
            f"{source}: packageManager {value!r} is not NAME@VERSION (npm, pnpm or yarn); "
            f'fix it (e.g. "{example}")'
        )
    version = match.group("version")
    if not semver.Version.is_valid(version):
        raise ManifestError(
            f"{source}: packageManager {value!r} does not name an exact version; pin one"
        )
    digest = (match.group("algorithm"), match.group("hash")) if match.group("hash") else None
    return match.group("name"), version, digest


def declared_tool(
    project: Project, manager: PackageManager
) -> tuple[str, tuple[str, str] | None] | None:
    """(version, hash or None) of the tool a project's `packageManager` names, None when it
    names none; a value that is not NAME@VERSION, or names another manager than the one its
    lockfile belongs to, is an error naming the package.json."""
    if project.package_manager is None:
        return None
    source = project.path("package.json")
    example = f"{manager.declared_as}@{manager.default_version}"
    name, version, digest = parse_package_manager(
        project.package_manager, source=source, example=example
    )
    if name != manager.declared_as or not manager.accepts(version):
        raise ManifestError(
            f"{source}: packageManager says {name}@{version} but the project's lockfile "
            f"{project.lockfile} is {manager.name}'s; make them agree"
        )
    return version, digest


def ensure_tool(
    manager: PackageManager,
    version: str,
    *,
    npm: NpmRegistry,
    cache_dir: Path,
    declared_hash: tuple[str, str] | None = None,
    declared_in: str = "package.json",
) -> Tool:
    """The manager's CLI at `version`, installed into `cache_dir` once and verified
    (`declared_in`: the file whose packageManager names the version and hash)."""
    package = manager.tool_package
    target = cache_dir / f"{package.replace('/', '+')}@{version}"
    marker = target / _MARKER
    if not marker.is_file():
        manifest = npm.packument(package).manifest(version)
        data, integrity = npm.download_tarball(manifest.dist.tarball, limit=TOOL_LIMIT)
        source = f"{package}@{version} from {npm.settings.registry_for(package)}"
        if integrity != manifest.dist.integrity:
            raise InvalidRemoteData(
                f"{source} hashes to {integrity}, not the registry's {manifest.dist.integrity}; "
                "refusing to run it"
            )
        if declared_hash is not None:
            algorithm, expected = declared_hash
            actual = hashlib.new(algorithm, data).hexdigest()
            if actual != expected:
                raise InvalidRemoteData(
                    f"{source} does not match the {algorithm} hash of packageManager in "
                    f"{declared_in}; refusing to run it (check that field: it is the {algorithm} "
                    "hex digest of the tool's tarball, as corepack writes it)"
                )
        _unpack(data, target, integrity, source=source)
    entry = manager.tool_entry(target / "package")
    if not entry.is_file():
        raise InvalidRemoteData(f"{package}@{version} has no {entry.name}; cannot run it")
    return Tool(package, version, ("node", str(entry)))


def _unpack(data: bytes, target: Path, integrity: str, *, source: str) -> None:
    """Unpack into a staging directory next to `target`, then rename it into place (another
    process that got there first wins; its copy was verified the same way)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                archive.extractall(staging, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise InvalidRemoteData(f"{source} is not a usable tarball ({error})") from error
        (staging / _MARKER).write_text(integrity + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if not (target / _MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
