"""Configuration: the target repository's `.github/rotation-bot.yml` and the service settings.

Both are validated up front; an unknown key or a bad value is a `ConfigError` whose one-line
message names the file and the key.  Service settings come from `ROTATION_BOT_*` environment
variables, a TOML file, and `*_FILE` variants for mounted secrets; secrets are registered for
redaction as soon as they are read.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from bot.errors import ConfigError, register_secret
from bot.limits import REPO_CONFIG, check_size, too_deep, yaml_nesting_exceeds

REPO_CONFIG_PATH = ".github/rotation-bot.yml"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """`3d`, `12h`, `30m`, `45s`, `1w` or a number of seconds → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and value >= 0:
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration like 3d, 12h, 30m")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Policy = Literal["required", "if-published", "off"]


_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def check_branch_name(name: str) -> str:
    """`name` if git accepts it as a branch name (`git check-ref-format --branch` rules, minus
    the `@{-N}` shorthands), else `ValueError` saying why."""
    problem = None
    if not name or len(name.encode("utf-8")) > 255:
        problem = "it must be 1 to 255 bytes long"
    elif name.startswith("-"):
        problem = "it starts with '-'"
    elif name == "@" or "@{" in name:
        problem = "it is a revision expression ('@' or '@{'), not a branch"
    elif ".." in name or "//" in name:
        problem = "it contains '..' or '//'"
    elif name.startswith("/") or name.endswith(("/", ".")):
        problem = "it starts with '/' or ends with '/' or '.'"
    elif _REF_FORBIDDEN.search(name):
        problem = "it contains a space, a control character or one of ~ ^ : ? * [ \\"
    elif any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        problem = "a part of it starts with '.' or ends with '.lock'"
    elif name == "HEAD":
        problem = "HEAD is not a branch"
    if problem is not None:
        raise ValueError(f"{name!r} is not a branch name ({problem}); name an existing branch")
    return name


BranchName = Annotated[str, AfterValidator(check_branch_name)]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, keys are kebab-case, values frozen."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_kebab, populate_by_name=True
    )


class RunbookSettings(StrictModel):
    """Per-runbook settings in the repo config; which keys apply depends on the runbook."""

    enabled: bool = True
    platforms: tuple[str, ...] | None = None
    document: str | None = None
    minimum_release_age: Duration | None = None
    schedule: str | None = None
    dockerfiles: tuple[str, ...] | None = None
    pin_unpinned: bool = False
    image_platforms: tuple[str, ...] | None = None
    # true / "next": propose the next line as a major rotation; "latest": the newest line
    major: bool | Literal["next", "latest"] = True
    # gitignore-style patterns selecting project directories (`!` excludes): [apps/*, !apps/old]
    directories: tuple[str, ...] | None = None
    # add exact pins of the binaries (under overrides) to projects that have none
    pin: bool = False

    @property
    def major_policy(self) -> Literal["off", "next", "latest"]:
        """`major` as one of off / next / latest."""
        if self.major is False:
            return "off"
        return "latest" if self.major == "latest" else "next"


class VerifySettings(StrictModel):
    """How strictly registry signatures and provenance are required (None: per-registry default)."""

    signatures: Policy | None = None
    provenance: Policy = "if-published"
    # also run `npm ci` + `npm audit signatures` (needs the sigstore TUF service online)
    npm_audit_signatures: bool = False


class PullRequestSettings(StrictModel):
    """Labels, reviewers and assignees put on every rotation pull request."""

    labels: tuple[str, ...] = ("dependencies", "security")
    reviewers: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    base: BranchName | None = None
    draft_major: bool = True


class RepoConfig(StrictModel):
    """The whole `.github/rotation-bot.yml`; every key is optional."""

    version: Literal[1] = 1
    runbooks: dict[str, RunbookSettings] = Field(default_factory=dict)
    verify: VerifySettings = VerifySettings()
    pull_requests: PullRequestSettings = PullRequestSettings()
    # keep one dependency-dashboard issue current (GitHub: an issue; local forge: stored)
    dashboard: bool = False

    def runbook(self, name: str) -> RunbookSettings:
        """Settings for one runbook (defaults when the file does not mention it)."""
        return self.runbooks.get(name, RunbookSettings())


def describe_validation_error(error: ValidationError) -> str:
    """The first validation problem as `unknown key a.b` or `a.b: message`."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "top level"
    if first["type"] == "extra_forbidden":
        return f"unknown key {where}"
    if first["type"] == "literal_error":
        return f"{where}: {first['msg'].lower()}"
    if first["type"] == "value_error":
        return f"{where}: {first['ctx']['error']}"
    return f"{where}: {first['msg']}"


def parse_repo_config(text: str | None, *, source: str = REPO_CONFIG_PATH) -> RepoConfig:
    """Parse and validate the repo config text; `None` (no file) gives the defaults.

    Size and nesting are checked before anything is built from the text, so a hostile file is a
    one-line `ConfigError` like any other mistake."""
    if text is None:
        return RepoConfig()
    check_size(source, len(text.encode("utf-8")), REPO_CONFIG)
    try:
        if yaml_nesting_exceeds(text):
            raise ConfigError(too_deep(source))
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}:{where} is not valid YAML; fix the syntax") from error
    if data is None:
        return RepoConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(
            f"{source}: {describe_validation_error(error)}; see README 'Configuration'"
        ) from error


@dataclass(frozen=True)
class Settings:
    """Service settings: forge credentials, webhook secret, database, what to serve, who may
    read the dashboard."""

    github_url: str = "https://api.github.com"
    github_token: str | None = None
    github_app_id: str | None = None
    github_app_key: str | None = None
    webhook_secret: str | None = None
    database_url: str | None = None
    repositories: tuple[str, ...] = ()
    listen: str = "127.0.0.1:8080"
    state_dir: Path = Path(platformdirs.user_state_dir("rotation-bot"))
    release_notes_url: str = "https://api.github.com"
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[tuple[str, str], ...] = ()
    schedule: str = "0 6 * * 1-5"
    log_format: Literal["text", "json"] = "text"
    malicious_advisories: str | None = None
    # variables a repository's .npmrc may reference as ${VAR} (none by default)
    npmrc_variables: tuple[str, ...] = ()
    # where package-manager tools (npm, pnpm, yarn) are unpacked; default <state_dir>/tools
    tools_dir: Path | None = None

    @property
    def resolved_tools_dir(self) -> Path:
        """The tool cache: the configured one, or `tools` in the state directory."""
        return self.tools_dir or self.state_dir / "tools"

    audit_anchor: Path | None = None
    audit_syslog: str | None = None
    # seconds one HTTP request may take in all (retries and body included), and one run
    request_timeout: float = 300.0
    run_timeout: float = 1800.0
    dashboard_token: str | None = None
    dashboard_auth_header: str | None = None
    dashboard_trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # distributed mode (a PostgreSQL database URL): GitHub API requests per hour each App
    # installation (or the token) may spend across the whole fleet; how long a fetched
    # packument serves every worker; how often a worker proves it is alive (a worker silent for
    # three intervals is presumed dead and its rotation is retried elsewhere)
    github_rate_budget: float = 4000.0
    packument_ttl: float = 60.0
    worker_heartbeat: float = 10.0

    @property
    def has_github_credentials(self) -> bool:
        """Whether a GitHub token or App credentials are configured."""
        return bool(self.github_token or (self.github_app_id and self.github_app_key))

    @property
    def resolved_database_url(self) -> str:
        """The audit store URL: the configured one, or SQLite in the state directory."""
        return self.database_url or f"sqlite:///{self.state_dir / 'audit.sqlite3'}"

    @property
    def distributed(self) -> bool:
        """Whether the service runs distributed (web, scheduler and workers on PostgreSQL):
        the database URL names PostgreSQL."""
        return (self.database_url or "").startswith(("postgresql:", "postgresql+", "postgres:"))

    @property
    def resolved_audit_anchor(self) -> Path:
        """Where each finished run's chain head is appended: the configured file, or
        `audit-anchor.log` in the state directory."""
        return self.audit_anchor or self.state_dir / "audit-anchor.log"


_SECRET_SETTINGS = (
    "github_token",
    "github_app_key",
    "webhook_secret",
    "database_url",
    "dashboard_token",
)
_LIST_SETTINGS = (
    "repositories",
    "insecure_registries",
    "npmrc_variables",
    "dashboard_trusted_proxies",
)
_DURATION_SETTINGS = ("request_timeout", "run_timeout", "packument_ttl", "worker_heartbeat")


def secret_variables(environ: Mapping[str, str]) -> list[str]:
    """The `ROTATION_BOT_*` variables in `environ` that carry secrets (not their `_FILE` paths),
    which the composition root removes from the process environment once settings are read, so
    no child process (git included) can inherit them."""
    names = {f"ROTATION_BOT_{name.upper()}" for name in _SECRET_SETTINGS}
    return sorted(name for name in environ if name in names)


def _split_list(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(item).strip() for item in value if str(item).strip())
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


def _mirrors(value: object) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        return tuple(sorted((str(key), str(item)) for key, item in value.items()))
    pairs = []
    for part in _split_list(value):
        registry, _, mirror = part.partition("=")
        if not mirror:
            raise ConfigError(f"registry mirror {part!r} must look like registry=mirror")
        pairs.append((registry.strip(), mirror.strip()))
    return tuple(pairs)


def _positive_seconds(name: str, value: object) -> float:
    try:
        seconds = parse_duration(value).total_seconds()
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise ConfigError(
            f"ROTATION_BOT_{name.upper()}={value!r} must be a positive duration like 30m or 300s"
        )
    return seconds


def _positive_number(name: str, value: object) -> float:
    try:
        number = float(str(value))
    except ValueError:
        number = 0.0
    if not number > 0:
        raise ConfigError(f"ROTATION_BOT_{name.upper()}={value!r} must be a positive number")
    return number


def load_settings(environ: Mapping[str, str], config_file: Path | None = None) -> Settings:
    """Settings from a TOML file (optional), overridden by `ROTATION_BOT_*` variables."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values.update(tomllib.loads(config_file.read_text(encoding="utf-8")))
        except OSError as error:
            raise ConfigError(f"{config_file}: cannot read ({error.strerror})") from error
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{config_file}: not valid TOML ({error})") from error
    known = set(Settings.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{config_file}: unknown setting {unknown[0]}")
    for name in known:
        variable = f"ROTATION_BOT_{name.upper()}"
        if variable in environ:
            values[name] = environ[variable]
        elif f"{variable}_FILE" in environ:
            path = Path(environ[f"{variable}_FILE"])
            try:
                values[name] = path.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigError(
                    f"{variable}_FILE={path}: cannot read ({error.strerror})"
                ) from error
    for name in _LIST_SETTINGS:
        if name in values:
            values[name] = _split_list(values[name])
    if "registry_mirrors" in values:
        values["registry_mirrors"] = _mirrors(values["registry_mirrors"])
    if values.get("log_format", "text") not in ("text", "json"):
        raise ConfigError(
            f"ROTATION_BOT_LOG_FORMAT must be text or json, not {values['log_format']!r}"
        )
    for name in _DURATION_SETTINGS:
        if name in values:
            values[name] = _positive_seconds(name, values[name])
    if "github_rate_budget" in values:
        values["github_rate_budget"] = _positive_number(
            "github_rate_budget", values["github_rate_budget"]
        )
    for name in ("state_dir", "tools_dir", "audit_anchor"):
        if name in values:
            values[name] = Path(values[name])
    for name in _SECRET_SETTINGS:
        register_secret(values.get(name))
    try:
        return Settings(**values)
    except TypeError as error:
        raise ConfigError(f"invalid service settings: {error}") from error
