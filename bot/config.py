"""Configuration: the target repository's `.github/rotation-bot.yml` and the service settings.

Both are validated up front; an unknown key or a bad value is a `ConfigError` whose one-line
message names the file and the key.  Service settings come from `ROTATION_BOT_*` environment
variables, a TOML file, and `*_FILE` variants for mounted secrets; secrets are registered for
redaction as soon as they are read.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import platformdirs
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from bot.errors import ConfigError, register_secret
from bot.limits import REPO_CONFIG, check_size, too_deep, yaml_nesting_exceeds

REPO_CONFIG_PATH = ".github/rotation-bot.yml"
# at most 8 digits: 99999999w is inside what a timedelta holds (the JSON Schema says so too)
_DURATION = re.compile(r"^\s*(\d{1,8})\s*([smhdw]?)\s*$")
_MAX_SECONDS = 99_999_999
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """`3d`, `12h`, `30m`, `45s`, `1w` or a whole number of seconds → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration like 3d, 12h, 30m (up to 8 digits)")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_SECONDS:
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration like 3d, 12h, 30m (up to 8 digits)")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _DURATION.pattern},
                {"type": "integer", "minimum": 0, "maximum": _MAX_SECONDS},
            ],
            "description": "a duration: 3d, 12h, 30m, 45s, 1w, or whole seconds",
        }
    ),
]


def _whole_number(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _not_boolean(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    return value


# YAML's (and JSON Schema's) types, without pydantic's lax coercions ("yes" → true, "5" → 5)
# (the bound before the validator, or the JSON Schema says "ge" where it means "minimum")
PositiveCount = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]
FormatVersion = Annotated[Literal[1], BeforeValidator(_not_boolean)]
Policy = Literal["required", "if-published", "off"]


_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def _branch_problem(name: str) -> str | None:
    """What git's rules (`git check-ref-format --branch`, minus the `@{-N}` shorthands) have
    against `name`, apart from its length."""
    if name.startswith("-"):
        return "it starts with '-'"
    if name == "@" or "@{" in name:
        return "it is a revision expression ('@' or '@{'), not a branch"
    if ".." in name or "//" in name:
        return "it contains '..' or '//'"
    if name.startswith("/") or name.endswith(("/", ".")):
        return "it starts with '/' or ends with '/' or '.'"
    if _REF_FORBIDDEN.search(name):
        return "it contains a space, a control character or one of ~ ^ : ? * [ \\"
    if any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        return "a part of it starts with '.' or ends with '.lock'"
    if name == "HEAD":
        return "HEAD is not a branch"
    return None


def check_branch_name(name: str) -> str:
    """`name` if git accepts it as a branch name, at most 255 bytes, else `ValueError` saying
    why."""
    problem = "it must be 1 to 255 bytes long" if not name or len(name.encode()) > 255 else None
    problem = problem or _branch_problem(name)
    if problem is not None:
        raise ValueError(f"{name!r} is not a branch name ({problem}); name an existing branch")
    return name


def _config_branch(name: str) -> str:
    """A branch named in the config: git's rules, 1 to 255 characters (what the JSON Schema
    states; the repository's own branch is checked again, in bytes, when it is opened)."""
    problem = "it must be 1 to 255 characters long" if not 0 < len(name) <= 255 else None
    problem = problem or _branch_problem(name)
    if problem is not None:
        raise ValueError(f"{name!r} is not a branch name ({problem}); name an existing branch")
    return name


BranchName = Annotated[str, AfterValidator(check_branch_name)]
# `_config_branch` as a JSON Schema pattern (the lookaheads are its rules, in order)
_BRANCH_PATTERN = (
    r"^(?![^\n]*\n)(?!-)(?!@$)(?![^\n]*@\{)(?![^\n]*\.\.)(?![^\n]*//)(?!/)(?![^\n]*[/.]$)"
    r"(?!\.)(?![^\n]*/\.)(?![^\n]*\.lock(?:/|$))(?!HEAD$)[^\x00-\x20\x7f~^:?*\[\\]{1,255}$"
)
ConfigBranch = Annotated[
    str,
    AfterValidator(_config_branch),
    WithJsonSchema({"type": "string", "pattern": _BRANCH_PATTERN}),
]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, keys are kebab-case, values frozen."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=_kebab, populate_by_name=True
    )


class RunbookSettings(StrictModel):
    """Settings every runbook takes in the repo config (`runbooks.<name>`)."""

    enabled: StrictBool = True
    minimum_release_age: Duration | None = None
    schedule: str | None = None


def _major_policy(value: object) -> object:
    if value is True or value is False or value in ("next", "latest"):
        return value
    raise ValueError(f"{value!r} is not one of true, false, next, latest")


# one problem (not one per member of the union) for a value that is none of them
MajorPolicy = Annotated[StrictBool | Literal["next", "latest"], BeforeValidator(_major_policy)]


class NpmFamilySettings(RunbookSettings):
    """`runbooks.<name>` for a runbook that watches an npm package family (sharp, esbuild)."""

    platforms: tuple[str, ...] | None = None
    document: str | None = None
    # true / "next": propose the next line as a major rotation; "latest": the newest line
    major: MajorPolicy = True
    # open a major rotation's pull request only after a writer's `/rotate approve VERSION`
    major_approval: StrictBool = False
    # gitignore-style patterns selecting project directories (`!` excludes): [apps/*, !apps/old]
    directories: tuple[str, ...] | None = None
    # add exact pins of the binaries (under overrides) to projects that have none
    pin: StrictBool = False

    @property
    def major_policy(self) -> Literal["off", "next", "latest"]:
        """`major` as one of off / next / latest."""
        if self.major is False:
            return "off"
        return "latest" if self.major == "latest" else "next"


class BaseImageSettings(RunbookSettings):
    """`runbooks.<name>` for a runbook that re-pins base-image digests."""

    dockerfiles: tuple[str, ...] | None = None
    pin_unpinned: StrictBool = False
    image_platforms: tuple[str, ...] | None = None


# a runbook's watch kind (see bot.watchers.watch_kind) → the settings model of its config section
SETTINGS_MODELS: dict[str, type[RunbookSettings]] = {
    "npm": NpmFamilySettings,
    "base-images": BaseImageSettings,
}
# the runbooks shipped in the package and their watch kinds (a test checks this against them)
SHIPPED_RUNBOOKS: dict[str, str] = {"sharp": "npm", "base-image": "base-images"}


class VerifySettings(StrictModel):
    """How strictly registry signatures and provenance are required (None: per-registry default)."""

    signatures: Policy | None = None
    provenance: Policy = "if-published"
    # also run `npm ci` + `npm audit signatures` (needs the sigstore TUF service online)
    npm_audit_signatures: StrictBool = False


RebaseWhen = Literal["conflicted", "behind-base", "never"]


class PullRequestSettings(StrictModel):
    """How rotation pull requests are opened and kept: labels, people, base, limits, merging."""

    labels: tuple[str, ...] = ("dependencies", "security")
    reviewers: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    base: ConfigBranch | None = None
    draft_major: StrictBool = True
    # regenerate an open rotation when the base moved: only if it conflicts (default), whenever
    # the base has commits it lacks, or never (then only `/rotate rebase` does)
    rebase_when: RebaseWhen = "conflicted"
    # at most this many open rotation pull requests in the repository (None: no limit)
    max_open: PositiveCount | None = None
    # turn on the forge's auto-merge for patch rotations whose every verification passed
    automerge: StrictBool = False


class RepoConfig(StrictModel):
    """The whole `.github/rotation-bot.yml`; every key is optional.

    `runbooks` maps a runbook's name to the settings model of its kind; which names exist and
    which kind each is comes from the runbooks loaded (`config_model`)."""

    version: FormatVersion = 1
    runbooks: dict[str, RunbookSettings] = Field(default_factory=dict)
    verify: VerifySettings = VerifySettings()
    pull_requests: PullRequestSettings = PullRequestSettings()
    # keep one dependency-dashboard issue current (GitHub: an issue; local forge: stored)
    dashboard: StrictBool = False

    def runbook(self, name: str) -> RunbookSettings:
        """The settings every runbook has (defaults when the file does not mention it)."""
        return self.runbooks.get(name, RunbookSettings())

    def settings_for(self, name: str, model: type[S]) -> S:
        """Runbook `name`'s settings as `model` (its kind's model; defaults when absent)."""
        found = self.runbooks.get(name)
        return found if isinstance(found, model) else model()


S = TypeVar("S", bound=RunbookSettings)


def _field_name(index: int) -> str:
    return f"runbook_{index}"


@functools.cache
def _config_model(kinds: tuple[tuple[str, str], ...]) -> type[BaseModel]:
    fields: dict[str, Any] = {
        _field_name(index): (
            SETTINGS_MODELS[kind] | None,
            Field(default=None, alias=name, title=name),
        )
        for index, (name, kind) in enumerate(kinds)
    }
    runbooks = create_model(
        "Runbooks",
        __config__=ConfigDict(extra="forbid", frozen=True, populate_by_name=False),
        __doc__="One section per runbook; which keys a section takes depends on the runbook.",
        **fields,
    )
    return create_model(
        "RotationBotConfig",
        __base__=StrictModel,
        __doc__="rotation-bot's repository config, .github/rotation-bot.yml",
        version=(FormatVersion, 1),
        runbooks=(runbooks, Field(default_factory=runbooks)),
        verify=(VerifySettings, VerifySettings()),
        pull_requests=(PullRequestSettings, PullRequestSettings()),
        dashboard=(StrictBool, False),
    )


def config_model(kinds: Mapping[str, str] | None = None) -> type[BaseModel]:
    """The model of the config file for runbooks `kinds` (name → watch kind; default: the
    shipped runbooks): a key that belongs to no runbook, or to another runbook's kind, is an
    error.  Its JSON Schema is `rotation-bot schema`."""
    chosen = SHIPPED_RUNBOOKS if kinds is None else kinds
    unknown = sorted(kind for kind in chosen.values() if kind not in SETTINGS_MODELS)
    if unknown:
        raise ConfigError(f"no settings model for runbook kind {unknown[0]!r}")
    return _config_model(tuple(sorted(chosen.items())))


def config_schema(kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON Schema of `.github/rotation-bot.yml` for runbooks `kinds`."""
    schema = config_model(kinds).model_json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _to_repo_config(document: BaseModel) -> RepoConfig:
    runbooks = {
        str(info.alias): value
        for name, info in type(document.runbooks).model_fields.items()  # type: ignore[attr-defined]
        if (value := getattr(document.runbooks, name)) is not None  # type: ignore[attr-defined]
    }
    return RepoConfig(
        version=document.version,  # type: ignore[attr-defined]
        runbooks=runbooks,
        verify=document.verify,  # type: ignore[attr-defined]
        pull_requests=document.pull_requests,  # type: ignore[attr-defined]
        dashboard=document.dashboard,  # type: ignore[attr-defined]
    )


def describe_validation_error(error: ValidationError) -> str:
    """The first validation problem as `unknown key a.b` or `a.b: message`."""
    return _describe(error.errors()[0])


def _describe(first: Mapping[str, Any], kinds: Mapping[str, str] | None = None) -> str:
    where = ".".join(str(part) for part in first["loc"]) or "top level"
    if first["type"] == "extra_forbidden":
        loc = first["loc"]
        if kinds is not None and len(loc) == 2 and loc[0] == "runbooks":
            return f"unknown runbook {loc[1]!r} under runbooks (known: {', '.join(sorted(kinds))})"
        if kinds is not None and len(loc) == 3 and loc[0] == "runbooks":
            owners = sorted(
                name
                for name, kind in kinds.items()
                if any(
                    field.alias == loc[2] for field in SETTINGS_MODELS[kind].model_fields.values()
                )
            )
            if owners:
                return f"unknown key {where} (it is a setting of {', '.join(owners)})"
        return f"unknown key {where}"
    if first["type"] == "literal_error":
        return f"{where}: {first['msg'].lower()}"
    if first["type"] == "value_error":
        return f"{where}: {first['ctx']['error']}"
    return f"{where}: {first['msg']}"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file: where (a 1-based line when known) and what."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.source}:{self.line}: {self.message}"
            if self.line
            else (f"{self.source}: {self.message}")
        )


def _node_at(root: yaml.Node | None, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The YAML node at a validation error's location (the key's node for a key that should
    not be there), or the deepest node found on the way."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node = value if part != loc[-1] else key
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def _load(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """(data, node tree) of a config text; size, nesting and syntax checked first."""
    check_size(source, len(text.encode("utf-8")), REPO_CONFIG)
    try:
        if yaml_nesting_exceeds(text):
            raise ConfigError(too_deep(source))
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}:{where} is not valid YAML; fix the syntax") from error


def validate_repo_config(
    text: str, *, source: str = REPO_CONFIG_PATH, kinds: Mapping[str, str] | None = None
) -> tuple[RepoConfig | None, list[ConfigProblem]]:
    """Every problem in a config text, one each, with its line, in the file's order; (config,
    []) when it is valid.  Schedules are checked as crontab expressions too."""
    try:
        data, tree = _load(text, source)
    except ConfigError as error:
        match = re.match(rf"^{re.escape(source)}: line (\d+) (.*)$", error.message)
        if match:
            return None, [ConfigProblem(source, int(match.group(1)), match.group(2))]
        return None, [ConfigProblem(source, None, error.message.removeprefix(f"{source}: "))]
    if data is None:
        return RepoConfig(), []
    if not isinstance(data, dict):
        return None, [ConfigProblem(source, 1, "expected a mapping at the top level")]
    chosen = SHIPPED_RUNBOOKS if kinds is None else kinds
    try:
        document = config_model(chosen).model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            node = _node_at(tree, tuple(item["loc"]))
            line = node.start_mark.line + 1 if node is not None else None
            problems.append(ConfigProblem(source, line, _describe(item, chosen)))
        return None, sorted(problems, key=lambda problem: problem.line or 0)
    config = _to_repo_config(document)
    problems = []
    for name, settings in sorted(config.runbooks.items()):
        if settings.schedule is None:
            continue
        from bot.service.scheduler import crontab_trigger  # noqa: PLC0415 - APScheduler

        try:
            crontab_trigger(settings.schedule, source=source)
        except ConfigError as error:
            node = _node_at(tree, ("runbooks", name, "schedule"))
            line = node.start_mark.line + 1 if node is not None else None
            message = error.message.removeprefix(f"{source}: ")
            problems.append(ConfigProblem(source, line, f"runbooks.{name}.{message}"))
    return (None, problems) if problems else (config, [])


def parse_repo_config(
    text: str | None, *, source: str = REPO_CONFIG_PATH, kinds: Mapping[str, str] | None = None
) -> RepoConfig:
    """Parse and validate the repo config text; `None` (no file) gives the defaults.  `kinds`
    names the runbooks loaded (name → watch kind; default: the shipped ones).

    Size and nesting are checked before anything is built from the text, so a hostile file is a
    one-line `ConfigError` like any other mistake: the first problem, with its line."""
    if text is None:
        return RepoConfig()
    config, problems = validate_repo_config(text, source=source, kinds=kinds)
    if problems:
        first = problems[0]
        more = (
            f" (and {len(problems) - 1} more: rotation-bot validate)" if len(problems) > 1 else ""
        )
        raise ConfigError(f"{first}{more}; see README 'Configuration'")
    return config or RepoConfig()


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
    # at most this many pull requests opened per hour across every repository (None: no limit)
    max_prs_per_hour: int | None = None
    # a repository without .github/rotation-bot.yml first gets a pull request adding one
    onboarding: bool = False
    # distributed mode (a PostgreSQL database URL): GitHub API requests per hour each App
    # installation (or the token) may spend across the whole fleet; how long a fetched
    # packument serves every worker; how often a worker proves it is alive (a worker silent for
    # three intervals is presumed dead and its rotation is retried elsewhere); how many
    # rotations one worker process runs at a time (threads: a rotation mostly waits on the
    # network and its package manager)
    github_rate_budget: float = 4000.0
    packument_ttl: float = 60.0
    worker_heartbeat: float = 10.0
    worker_concurrency: int = 2

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


def _positive_count(name: str, value: object) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) < 1:
        raise ConfigError(f"ROTATION_BOT_{name.upper()}={value!r} must be a whole number from 1")
    return int(text)


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"ROTATION_BOT_{name.upper()}={value!r} must be true or false")


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
    for name in ("max_prs_per_hour", "worker_concurrency"):
        if name in values:
            values[name] = _positive_count(name, values[name])
    if "onboarding" in values:
        values["onboarding"] = _flag("onboarding", values["onboarding"])
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
