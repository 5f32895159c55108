"""The step registry and what every step receives.

A step kind is a function `StepContext -> StepResult` registered under a string key with
`@step("kind")` in the module named after it (`verify-tarballs` → `verify_tarballs.py`).
A step either returns a result (passed or skipped, its typed output stored on
`StepContext.outputs` and recorded as evidence) or raises a `BotError`; the pipeline times it,
records it in the audit trail and stops on an error.  Publishing is not a step: the pipeline
publishes after the last step passed.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import paths
from bot.errors import ConfigError, StepFailed
from bot.managers import get_manager
from bot.manifests.locked import LockedTree
from bot.models import Plan, Project, Rotation, StepResult
from bot.steps.outputs import Outputs

if TYPE_CHECKING:
    from bot.audit import AuditStore
    from bot.config import RepoConfig, RunbookSettings
    from bot.runbook import Runbook
    from bot.services import Services
    from bot.sources.npm.registry import NpmRegistry
    from bot.sources.npm.settings import NpmSettings
    from bot.workspace import Workspace

StepFunction = Callable[["StepContext"], StepResult]
_REGISTRY: dict[str, StepFunction] = {}


def step(kind: str) -> Callable[[StepFunction], StepFunction]:
    """Register a step function under `kind` (a runbook's `steps:` entry)."""

    def register(function: StepFunction) -> StepFunction:
        if kind in _REGISTRY:
            raise ValueError(f"step kind {kind!r} registered twice")
        _REGISTRY[kind] = function
        return function

    return register


def _module_of(kind: str) -> str:
    return kind.replace("-", "_")


def known_steps() -> frozenset[str]:
    """Every step kind: by convention kind `verify-tarballs` lives in `bot/steps/verify_tarballs.py`
    (listed without importing, so loading a runbook stays cheap)."""
    package = importlib.import_module("bot.steps")
    return frozenset(
        module.name.replace("_", "-")
        for module in pkgutil.iter_modules(package.__path__)
        if module.name not in ("registry", "outputs")
    )


def get_step(kind: str) -> StepFunction:
    """The function for `kind` (its module is imported on first use); an unknown kind is a
    `ConfigError` listing the known ones."""
    if kind not in _REGISTRY:
        if kind not in known_steps():
            raise ConfigError(
                f"unknown step kind {kind!r}; known kinds: {', '.join(sorted(known_steps()))}"
            )
        importlib.import_module(f"bot.steps.{_module_of(kind)}")
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ConfigError(
            f"bot/steps/{_module_of(kind)}.py does not register step kind {kind!r}"
        ) from None


def _evidence(output: object | None, extra: dict[str, Any]) -> dict[str, Any]:
    base = asdict(output) if output is not None and is_dataclass(output) else {}  # type: ignore[arg-type]
    return {**base, **extra}


def passed(summary: str, output: object | None = None, **extra: Any) -> StepResult:
    """A successful result whose evidence is its typed output (the pipeline fills in kind and
    timings)."""
    return StepResult(kind="", status="passed", summary=summary, evidence=_evidence(output, extra))


def skipped(summary: str, output: object | None = None, **extra: Any) -> StepResult:
    """A step that had nothing to do here, and why."""
    return StepResult(kind="", status="skipped", summary=summary, evidence=_evidence(output, extra))


@dataclass
class StepContext:
    """One rotation being executed: its plan, its worktree, and what earlier steps found
    (`outputs`, typed; `changed_files`, which the pipeline commits and nothing else)."""

    run_id: str
    runbook: Runbook
    repo_config: RepoConfig
    runbook_settings: RunbookSettings
    plan: Plan
    rotation: Rotation
    workspace: Workspace
    worktree: Path
    scratch: Path
    services: Services
    npm: NpmRegistry
    npm_settings: NpmSettings
    results: list[StepResult] = field(default_factory=list)
    changed_files: set[str] = field(default_factory=set)
    outputs: Outputs = field(default_factory=Outputs)
    audit: AuditStore | None = None

    def ensure_durable_audit(self) -> None:
        """Raise unless this run's audit records are durably written (called right before
        anything is published; a context without an audit store publishes nothing)."""
        if self.audit is None:
            raise StepFailed("this run has no audit store; refusing to publish")
        self.audit.ensure_durable()

    def locked_trees(self, project: Project) -> tuple[LockedTree, LockedTree]:
        """(before, after): `project`'s lockfile as the workspace's base has it and as the
        worktree has it now, read by its manager; a lockfile gone from the worktree is a
        `StepFailed`."""
        manager = get_manager(project.manager)
        text = paths.read_text(self.worktree, project.lockfile)
        if text is None:
            raise StepFailed(f"{project.lockfile} disappeared from the worktree")
        after = manager.parse_lock(text, source=project.lockfile)
        before = manager.parse_lock(
            self.workspace.read_text(project.lockfile) or "", source=project.lockfile
        )
        return before, after
