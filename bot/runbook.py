"""Runbooks are data: `runbooks/*.yml` loaded into validated `Runbook` objects.

A runbook names its watch source, how pins are derived, and an ordered list of step kinds.
Every step kind must be registered in `bot.steps`; an unknown one is a `ConfigError` naming the
file and the known kinds.  Another package family (esbuild → `@esbuild/{platform}`) is a new
YAML file, not new code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from bot import DATA_DIR
from bot.config import Duration, StrictModel, describe_validation_error
from bot.errors import ConfigError
from bot.steps.registry import known_steps

# bot/data/runbooks links to the top-level runbooks/ in a checkout and is a copy in the wheel
DEFAULT_RUNBOOKS_DIR = DATA_DIR / "runbooks"


class Watch(StrictModel):
    """Where new versions come from."""

    npm: str | None = None
    release_notes: str | None = None
    base_images: bool = False


class PinRule(StrictModel):
    """How the pin set is derived from the parent package at the target version."""

    derive_from: Literal["optionalDependencies"] = "optionalDependencies"
    packages: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()

    def names(self, platforms: tuple[str, ...]) -> tuple[str, ...]:
        """Concrete package names for `platforms`, in runbook order."""
        return tuple(
            template.format(platform=platform)
            for platform in platforms
            for template in self.packages
        )


class MajorRules(StrictModel):
    """What a major rotation adds to the proposal."""

    checklist: tuple[str, ...] = ()


class InstallScriptAllowance(StrictModel):
    """An install script the runbook expects: a package's script, for versions in a range."""

    package: str
    versions: str
    script: Literal["preinstall", "install", "postinstall"]


class Runbook(StrictModel):
    """One runbook: a watch source, a pin rule and an ordered list of step kinds."""

    name: str
    title: str
    document: str | None = None
    watch: Watch = Watch()
    pins: PinRule | None = None
    steps: tuple[str, ...] = Field(min_length=1)
    major: MajorRules = MajorRules()
    dockerfiles: tuple[str, ...] = ()
    minimum_release_age: Duration = timedelta(0)
    allow_install_scripts: tuple[InstallScriptAllowance, ...] = ()
    source: str = ""


def load_runbook(path: Path) -> Runbook:
    """Load and validate one runbook file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read runbook ({error.strerror})") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: runbook is not valid YAML") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a runbook must be a mapping")
    try:
        runbook = Runbook.model_validate({**data, "source": str(path)})
    except ValidationError as error:
        raise ConfigError(f"{path}: {describe_validation_error(error)}") from error
    known = known_steps()
    for kind in runbook.steps:
        if kind == "propose":
            raise ConfigError(
                f"{path}: 'propose' is not a step: publishing is the pipeline's last stage, "
                "after every step passed; remove it from steps"
            )
        if kind not in known:
            raise ConfigError(
                f"{path}: unknown step kind {kind!r}; known kinds: {', '.join(sorted(known))}"
            )
    if runbook.name != path.stem:
        raise ConfigError(f"{path}: runbook name {runbook.name!r} must match the file name")
    return runbook


def runbooks_dir(environ: Mapping[str, str]) -> Path:
    """Where runbooks live: `ROTATION_BOT_RUNBOOKS_DIR` or the runbooks shipped in the package."""
    return Path(environ.get("ROTATION_BOT_RUNBOOKS_DIR") or DEFAULT_RUNBOOKS_DIR)


def load_runbooks(directory: Path) -> dict[str, Runbook]:
    """Every `*.yml` runbook in `directory`, by name."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: runbook directory not found")
    return {runbook.name: runbook for runbook in map(load_runbook, sorted(directory.glob("*.yml")))}
