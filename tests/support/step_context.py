"""A real `StepContext` for running one verify step against a local registry.

Real HTTP, real npm source, real repo config and the shipped sharp runbook; the forge and
release-notes and OCI services are not used by the verify steps and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bot.audit import now
from bot.config import Settings, parse_repo_config
from bot.models import PinChange, Plan, Project, ProjectRotation, Rotation
from bot.runbook import DEFAULT_RUNBOOKS_DIR, load_runbook
from bot.services import Services
from bot.sources.http import HttpSource
from bot.sources.npm.registry import NpmRegistry
from bot.sources.npm.settings import NpmSettings
from bot.steps.registry import StepContext


class BaseFiles:
    """The part of `bot.workspace.Workspace` the verify steps read: files at the base commit."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = dict(files)

    def read_text(self, path: str) -> str | None:
        """The file's text at the base commit, None when it does not exist there."""
        return self.files.get(path)


def rotation_for(
    new_version: str,
    pins: Mapping[str, tuple[str | None, str]],
    *,
    previous_version: str | None = "0.33.4",
) -> Rotation:
    """A sharp patch rotation of the repository's root npm project to `new_version` with `pins`
    (name → previous, new)."""
    changes = tuple(PinChange(name, old, new) for name, (old, new) in pins.items())
    return Rotation(
        runbook="sharp",
        kind="patch",
        subject="sharp",
        previous_version=previous_version,
        new_version=new_version,
        branch=f"rotation-bot/sharp-{new_version}",
        pins=changes,
        projects=(
            ProjectRotation(
                Project("", "npm", "package-lock.json"),
                previous_version or "",
                new_version,
                changes,
                pinned=True,
                edits=(),
            ),
        ),
    )


def make_context(
    tmp_path: Path,
    registry_url: str,
    rotation: Rotation,
    *,
    config: str | None = None,
    environ: Mapping[str, str] | None = None,
    worktree: Path | None = None,
    workspace: object = None,
) -> StepContext:
    """A context whose npm registry is `registry_url` and state dir is under `tmp_path`."""
    settings = Settings(state_dir=tmp_path / "state")
    npm_settings = NpmSettings(registry=registry_url)
    http = HttpSource(attempts=1)
    repo_config = parse_repo_config(config)
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return StepContext(
        run_id="0123456789abcdef",
        runbook=load_runbook(DEFAULT_RUNBOOKS_DIR / "sharp.yml"),
        repo_config=repo_config,
        runbook_settings=repo_config.runbook("sharp"),
        plan=Plan("fixture", "sharp", "0" * 40, rotation.previous_version, (), (rotation,)),
        rotation=rotation,
        workspace=workspace,  # type: ignore[arg-type]
        worktree=worktree or tmp_path,
        scratch=scratch,
        services=Services(
            settings=settings,
            environ=dict(environ or {}),
            http=http,
            releases=None,  # type: ignore[arg-type]
            forge=None,  # type: ignore[arg-type]
            clock=now,
            oci=None,  # type: ignore[arg-type]
        ),
        npm=NpmRegistry(npm_settings, http),
        npm_settings=npm_settings,
    )
