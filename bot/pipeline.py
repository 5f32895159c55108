"""The flow, in one direction: trigger → watch → plan → steps in a worktree → verify → publish
→ audit.  `Pipeline.run` is the single entry point for the CLI, the scheduler and the chat
command; it catches `BotError` in one place per run and turns it into an audited outcome.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import REPO_CONFIG_PATH, RepoConfig, parse_repo_config
from bot.errors import (
    EXIT_FAILED,
    EXIT_OK,
    BotError,
    ConfigError,
    UsageError,
    VerificationFailed,
)
from bot.forges.base import ApiUsage, Forge, Incident
from bot.models import (
    Outcome,
    Plan,
    Rotation,
    RunRequest,
    RunSummary,
    StepResult,
    utc_now,
)
from bot.runbook import Runbook
from bot.services import Services
from bot.sources.npm import NpmRegistry, NpmSettings, load_npm_settings
from bot.steps.registry import StepContext, get_step
from bot.watchers import WatchRequest, get_watcher, watch_kind
from bot.workspace import Workspace, is_owner_name

if TYPE_CHECKING:
    from bot.audit import AuditStore

log = logging.getLogger(__name__)
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@)")


@dataclass(frozen=True)
class RepoContext:
    """A repository opened for one request: workspace, its config, its npm registry."""

    workspace: Workspace
    config: RepoConfig
    npm: NpmRegistry
    npm_settings: NpmSettings


def plan_evidence(plan: Plan) -> dict[str, Any]:
    """A plan as audit evidence / JSON output."""
    return {
        "repo": plan.repo,
        "runbook": plan.runbook,
        "base_commit": plan.base_commit,
        "current_version": plan.current_version,
        "current_pins": [asdict(pin) for pin in plan.current_pins],
        "rotations": [rotation_evidence(rotation) for rotation in plan.rotations],
        "skipped": [asdict(item) for item in plan.skipped],
    }


def rotation_evidence(rotation: Rotation) -> dict[str, Any]:
    """A rotation as audit evidence / JSON output."""
    return {
        "kind": rotation.kind,
        "subject": rotation.subject,
        "previous_version": rotation.previous_version,
        "new_version": rotation.new_version,
        "branch": rotation.branch,
        "published_at": release.published_at.isoformat()  # where the lead time starts
        if (release := rotation.release) and release.published_at
        else None,
        "pins": [asdict(pin) for pin in rotation.pins],
        "digests": [asdict(change) for change in rotation.digests],
    }


class Pipeline:
    """Runs runbooks against repositories with the services it was given."""

    def __init__(
        self,
        *,
        services: Services,
        audit: AuditStore | None,
        runbooks: Mapping[str, Runbook],
        clock: Callable[[], datetime] = utc_now,
        stop: threading.Event | None = None,
    ) -> None:
        self.services = services
        self._audit = audit
        self.runbooks = dict(runbooks)
        self.clock = clock
        self.stop = stop
        self._usage: dict[str, ApiUsage] = {}

    @property
    def audit(self) -> AuditStore:
        """The audit store (a planning-only pipeline has none)."""
        if self._audit is None:
            raise UsageError("this pipeline was built for planning only and records nothing")
        return self._audit

    @property
    def forge(self) -> Forge:
        """The forge proposals go to."""
        return self.services.forge

    # --- opening a repository ----------------------------------------------------------

    def open_repo(self, repo: str) -> RepoContext:
        """A local path, a git URL, or `owner/name` on the forge → workspace + config + npm."""
        settings = self.services.settings
        cache = settings.state_dir / "repositories"
        if Path(repo).exists():
            workspace = Workspace.open_local(Path(repo))
        elif _URL.match(repo):
            workspace = Workspace.open_remote(repo, cache_dir=cache)
        elif is_owner_name(repo):
            auth = getattr(self.forge, "push_auth", None)
            workspace = Workspace.open_remote(
                self.forge.clone_url(repo),
                cache_dir=cache,
                name=repo,
                auth=auth(repo) if callable(auth) else None,
            )
        else:
            raise UsageError(f"--repo {repo!r} is not an existing path, a git URL or owner/name")
        config = parse_repo_config(workspace.read_text(REPO_CONFIG_PATH))
        if config.pull_requests.base:  # the policy lives on the default branch
            workspace = workspace.with_base(config.pull_requests.base)
        for name in config.runbooks:
            if name not in self.runbooks:
                raise ConfigError(
                    f"{REPO_CONFIG_PATH}: unknown runbook {name!r} under runbooks "
                    f"(known: {', '.join(sorted(self.runbooks))})"
                )
        npm_settings = load_npm_settings(
            self.services.environ, project_npmrc=workspace.read_text(".npmrc")
        )
        npm = NpmRegistry(
            npm_settings, self.services.http, cache_dir=settings.state_dir / "packuments"
        )
        return RepoContext(workspace, config, npm, npm_settings)

    def selected_runbooks(
        self, request: RunRequest, config: RepoConfig
    ) -> list[tuple[Runbook, bool]]:
        """(runbook, asked for by name) pairs for the request."""
        if request.runbooks:
            unknown = [name for name in request.runbooks if name not in self.runbooks]
            if unknown:
                raise UsageError(
                    f"unknown runbook {unknown[0]!r}; known: {', '.join(sorted(self.runbooks))}"
                )
            return [(self.runbooks[name], True) for name in request.runbooks]
        return [
            (runbook, False)
            for name, runbook in sorted(self.runbooks.items())
            if config.runbook(name).enabled
        ]

    def watch(
        self, context: RepoContext, runbook: Runbook, request: RunRequest, explicit: bool
    ) -> Plan:
        """Plan one runbook (network reads, no changes)."""
        watch = WatchRequest(
            runbook=runbook,
            settings=context.config.runbook(runbook.name),
            repo_config=context.config,
            workspace=context.workspace,
            services=self.services,
            npm=context.npm,
            target=request.target,
            now=self.clock(),
            explicit=explicit,
        )
        return get_watcher(watch_kind(runbook))(watch)

    # --- plan ------------------------------------------------------------------------------

    def plan(self, request: RunRequest) -> list[Plan]:
        """What would rotate; changes nothing and records nothing."""
        context = self.open_repo(request.repo)
        return [
            self.watch(context, runbook, request, explicit)
            for runbook, explicit in self.selected_runbooks(request, context.config)
        ]

    # --- run -------------------------------------------------------------------------------

    def run(self, request: RunRequest) -> list[RunSummary]:
        """Execute every selected runbook; each rotation is one audited run."""
        try:
            context = self.open_repo(request.repo)
            selected = self.selected_runbooks(request, context.config)
        except BotError as error:
            run_id = self._start(request, "-", None)
            return [self._fail(run_id, request, "-", None, "open-repository", error, ())]
        summaries: list[RunSummary] = []
        for runbook, explicit in selected:
            summaries.extend(self._run_runbook(context, runbook, request, explicit))
        if context.config.dashboard:
            self._update_dashboard(context.workspace.name, request.repo)
        return summaries

    def _update_dashboard(self, repo: str, recorded_as: str) -> None:
        """Bring the repository's dashboard issue (opt-in `dashboard: true`) up to date with the
        audit trail; a forge failure is logged and never fails the rotation."""
        from bot.service.dashboard.render import issue_body  # noqa: PLC0415 - Jinja2 when opted in

        body = issue_body(self.audit, recorded_as, runbooks=sorted(self.runbooks), now=self.clock())
        if body is None:
            return
        try:
            url = self.forge.ensure_dashboard_issue(repo, body)
        except BotError as error:
            log.warning("dashboard issue not updated: %s", error.message, extra={"repo": repo})
            return
        log.info("dashboard issue current", extra={"repo": repo, "url": url})

    def _start(self, request: RunRequest, runbook: str, target: str | None) -> str:
        run_id = self.audit.start_run(
            repo=request.repo,
            runbook=runbook,
            trigger=request.trigger.kind,
            actor=request.trigger.actor
            + (f" ({request.trigger.url})" if request.trigger.url else ""),
            target=target,
        )
        self._usage[run_id] = self.forge.api_usage()
        return run_id

    def _finish(self, run_id: str, **fields: Any) -> None:
        """Close a run, recording how many forge API calls it cost."""
        used = self.forge.api_usage() - self._usage.pop(run_id, ApiUsage())
        self.audit.finish_run(
            run_id,
            extra={"api_requests": used.requests, "api_not_modified": used.not_modified},
            **fields,
        )

    def _run_runbook(
        self, context: RepoContext, runbook: Runbook, request: RunRequest, explicit: bool
    ) -> list[RunSummary]:
        run_id = self._start(request, runbook.name, request.target)
        started = self.clock()
        try:
            plan = self.watch(context, runbook, request, explicit)
        except BotError as error:
            return [self._fail(run_id, request, runbook.name, None, "plan", error, ())]
        evidence = plan_evidence(plan)
        self.audit.append(
            run_id, "plan", "passed", evidence, started_at=started, finished_at=self.clock()
        )
        if not plan.rotations:
            reason = "; ".join(f"{item.subject}: {item.reason}" for item in plan.skipped)
            message = f"nothing to rotate ({reason})" if reason else "nothing to rotate"
            self._finish(run_id, outcome="nothing-to-do", message=message)
            return [
                RunSummary(
                    run_id,
                    context.workspace.name,
                    runbook.name,
                    None,
                    "nothing-to-do",
                    message,
                    EXIT_OK,
                )
            ]
        summaries = []
        for index, rotation in enumerate(plan.rotations):
            if index > 0:
                run_id = self._start(request, runbook.name, rotation.new_version)
                self.audit.append(
                    run_id, "plan", "passed", evidence, started_at=started, finished_at=started
                )
            else:
                self.audit.set_target(run_id, rotation.new_version)
            summaries.append(self._execute(run_id, context, runbook, plan, rotation, request))
        return summaries

    def _execute(
        self,
        run_id: str,
        context: RepoContext,
        runbook: Runbook,
        plan: Plan,
        rotation: Rotation,
        request: RunRequest,
    ) -> RunSummary:
        workspace = context.workspace
        existing = self.forge.find_proposal(workspace.name, rotation.branch)
        if (
            existing is not None
            and existing.base_commit == workspace.base_commit
            and existing.new_version == rotation.new_version
            and workspace.branch_commit(rotation.branch) == existing.head_commit
        ):
            message = f"already proposed and up to date: {existing.url}"
            self.audit.append(
                run_id,
                "propose",
                "skipped",
                {"url": existing.url, "branch": rotation.branch, "reason": "up-to-date"},
                started_at=None,
            )
            self._finish(run_id, outcome="up-to-date", message=message, proposal_url=existing.url)
            return RunSummary(
                run_id,
                workspace.name,
                runbook.name,
                rotation.new_version,
                "up-to-date",
                message,
                EXIT_OK,
            )
        results: list[StepResult] = []
        try:
            with workspace.worktree(run_id) as worktree, _scratch(run_id) as scratch:
                ctx = StepContext(
                    run_id=run_id,
                    runbook=runbook,
                    repo_config=context.config,
                    runbook_settings=context.config.runbook(runbook.name),
                    plan=plan,
                    rotation=rotation,
                    workspace=workspace,
                    worktree=worktree,
                    scratch=scratch,
                    services=self.services,
                    npm=context.npm,
                    npm_settings=context.npm_settings,
                    results=results,
                )
                for kind in runbook.steps:
                    if self.stop is not None and self.stop.is_set():
                        return self._interrupted(
                            run_id, workspace.name, runbook.name, rotation, kind, tuple(results)
                        )
                    started = self.clock()
                    try:
                        result = get_step(kind)(ctx)
                    except BotError as error:
                        self.audit.append(
                            run_id,
                            kind,
                            "failed",
                            error.as_evidence(),
                            started_at=started,
                            finished_at=self.clock(),
                        )
                        if isinstance(error, VerificationFailed):
                            self._incident(context, runbook, rotation, run_id, kind, error)
                        return self._finish_failed(
                            run_id, request, runbook.name, rotation, kind, error, tuple(results)
                        )
                    result = replace(
                        result, kind=kind, started_at=started, finished_at=self.clock()
                    )
                    self.audit.append(
                        run_id,
                        kind,
                        result.status,
                        result.evidence,
                        started_at=started,
                        finished_at=result.finished_at,
                    )
                    results.append(result)
        except BotError as error:
            return self._fail(
                run_id,
                request,
                runbook.name,
                rotation.new_version,
                "worktree",
                error,
                tuple(results),
            )
        except Exception as error:
            log.exception("internal error in run %s", run_id)
            self.audit.append(
                run_id,
                "internal-error",
                "failed",
                {"error": type(error).__name__, "message": str(error)},
                started_at=None,
            )
            message = f"internal error: {type(error).__name__}: {error}"
            self._finish(run_id, outcome="error", message=message)
            return RunSummary(
                run_id,
                workspace.name,
                runbook.name,
                rotation.new_version,
                "error",
                message,
                1,
                tuple(results),
            )
        except BaseException as error:
            self._finish(
                run_id, outcome="interrupted", message=f"interrupted ({type(error).__name__})"
            )
            raise
        proposal, published = ctx.proposal, ctx.published
        message = f"proposed {rotation.branch}" + (f" at {published.url}" if published else "")
        self._finish(
            run_id,
            outcome="proposed",
            message=message,
            proposal_title=proposal.title if proposal else None,
            proposal_body=proposal.body if proposal else None,
            proposal_url=published.url if published else None,
        )
        return RunSummary(
            run_id,
            workspace.name,
            runbook.name,
            rotation.new_version,
            "proposed",
            message,
            EXIT_OK,
            tuple(results),
            proposal,
            published,
        )

    def _interrupted(
        self,
        run_id: str,
        repo: str,
        runbook: str,
        rotation: Rotation,
        kind: str,
        results: tuple[StepResult, ...],
    ) -> RunSummary:
        message = (
            f"interrupted before step {kind}: the service is shutting down; nothing was published"
        )
        self.audit.append(run_id, kind, "skipped", {"reason": "shutdown"}, started_at=None)
        self._finish(run_id, outcome="interrupted", message=message)
        return RunSummary(
            run_id,
            repo,
            runbook,
            rotation.new_version,
            "interrupted",
            message,
            EXIT_FAILED,
            results,
        )

    def _incident(
        self,
        context: RepoContext,
        runbook: Runbook,
        rotation: Rotation,
        run_id: str,
        kind: str,
        error: VerificationFailed,
    ) -> None:
        problems = error.fields.get("problems") or [error.message]
        body = "\n".join(
            [
                f"rotation-bot stopped the **{runbook.title}** rotation to "
                f"`{rotation.subject}@{rotation.new_version}`: step `{kind}` failed.",
                "",
                *(f"- {problem}" for problem in problems),
                "",
                "Do not bypass this check. Response (from the runbook):",
                "- Cross-check the package on another registry or mirror and compare hashes.",
                "- Keep (or pin back to) the known-good parent version and its pins.",
                "- Report a tampered or republished package to the registry and upstream.",
                "",
                f"Audit record: `rotation-bot audit show {run_id}`",
            ]
        )
        incident = Incident(
            runbook=runbook.name,
            target=rotation.new_version,
            title=f"rotation-bot: {rotation.subject} {rotation.new_version} failed {kind}",
            body=body,
            run_id=run_id,
        )
        try:
            url = self.forge.ensure_incident(context.workspace.name, incident)
        except BotError as failure:
            url = None
            log.warning("incident could not be filed: %s", failure.message)
        self.audit.append(
            run_id,
            "incident",
            "passed" if url else "skipped",
            {"url": url, "title": incident.title},
            started_at=None,
        )

    def _finish_failed(
        self,
        run_id: str,
        request: RunRequest,
        runbook: str,
        rotation: Rotation,
        kind: str,
        error: BotError,
        results: tuple[StepResult, ...],
    ) -> RunSummary:
        message = f"step {kind} failed: {error.message}; nothing was published"
        self._finish(run_id, outcome="failed", message=message)
        return RunSummary(
            run_id,
            request.repo,
            runbook,
            rotation.new_version,
            "failed",
            message,
            error.exit_code,
            results,
        )

    def _fail(
        self,
        run_id: str,
        request: RunRequest,
        runbook: str,
        target: str | None,
        kind: str,
        error: BotError,
        results: tuple[StepResult, ...],
    ) -> RunSummary:
        self.audit.append(run_id, kind, "failed", error.as_evidence(), started_at=None)
        outcome: Outcome = "error"
        self._finish(run_id, outcome=outcome, message=error.message)
        return RunSummary(
            run_id, request.repo, runbook, target, outcome, error.message, error.exit_code, results
        )


@contextmanager
def _scratch(run_id: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"rotation-bot-{run_id[:8]}-scratch-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
