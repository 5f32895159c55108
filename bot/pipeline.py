"""The flow, in one direction: trigger → watch → plan → steps in a worktree → verify → publish
→ audit.

`Pipeline.run` is the single entry point for the CLI, the scheduler and the chat command.  Every
run is opened, recorded and closed by one `RunRecorder`, which builds every `RunSummary`; a
`BotError` from opening the repository, planning, a step or publishing ends the run there with
its outcome (`failed` for a step or verification that did not pass — a verification failure
also files an incident —, `error` for bad input or an unreachable service).  Publishing is the
last stage, after every step passed.
"""

from __future__ import annotations

import functools
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

import git

from bot.cancellation import Cancelled, check
from bot.config import REPO_CONFIG_PATH, RepoConfig, parse_repo_config, validate_repo_config
from bot.errors import EXIT_FAILED, EXIT_OK, BotError, ConfigError, UsageError, VerificationFailed
from bot.forges.base import Forge, Notice
from bot.lifecycle.explain import Assessed, explain
from bot.lifecycle.gate import Assessment, ProposalGate, Stop
from bot.lifecycle.onboarding import (
    ONBOARDING_BRANCH,
    ONBOARDING_VERSION,
    onboarding_body,
    render_config,
)
from bot.lifecycle.records import CommandRecords, Hold
from bot.lifecycle.slots import HourlySlots
from bot.models import (
    Outcome,
    Plan,
    Proposal,
    Rotation,
    RunRequest,
    RunSummary,
    Skipped,
    StepResult,
    utc_now,
)
from bot.publish import Publication, publish
from bot.runbook import Runbook
from bot.services import Services
from bot.sources.npm.registry import NpmRegistry
from bot.sources.npm.settings import NpmSettings, load_npm_settings
from bot.steps.registry import StepContext, get_step
from bot.unchanged import (
    Memo,
    Memos,
    NoOpCheck,
    bot_version,
    digest,
    fingerprint,
    observing,
)
from bot.watchers import WatchRequest, get_watcher, watch_kind
from bot.workspace import Workspace, is_owner_name

if TYPE_CHECKING:
    from bot.audit import AuditStore

log = logging.getLogger(__name__)
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@)")
PUBLISH = "propose"
LIFECYCLE = "lifecycle"


@dataclass(frozen=True)
class RepoContext:
    """A repository opened for one request: workspace, its config, its npm registry."""

    workspace: Workspace
    config: RepoConfig
    npm: NpmRegistry
    npm_settings: NpmSettings
    configured: bool = True  # the repository has a .github/rotation-bot.yml


def plan_evidence(plan: Plan) -> dict[str, Any]:
    """A plan as audit evidence / JSON output."""
    return {
        "repo": plan.repo,
        "runbook": plan.runbook,
        "base_commit": plan.base_commit,
        "current_version": plan.current_version,
        "current_pins": [asdict(pin) for pin in plan.current_pins],
        "projects": [asdict(status) for status in plan.projects],
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
        "projects": [asdict(part) for part in rotation.projects],
    }


class RunRecorder:
    """One audited run: opened once, its records appended, closed exactly once.

    Every `RunSummary` the pipeline returns is built by `finish`, so the audit trail and what
    the CLI or the service report can never disagree.
    """

    def __init__(
        self,
        audit: AuditStore,
        forge: Forge,
        request: RunRequest,
        *,
        repo: str,
        runbook: str,
        target: str | None,
    ) -> None:
        self.audit = audit
        self.forge = forge
        self.repo = repo
        self.runbook = runbook
        self.target = target
        self.results: list[StepResult] = []
        self.run_id = audit.start_run(
            repo=repo,
            runbook=runbook,
            trigger=request.trigger.kind,
            actor=request.trigger.actor
            + (f" ({request.trigger.url})" if request.trigger.url else ""),
            target=target,
        )
        self._usage = forge.api_usage()
        self.closed = False

    def retarget(self, target: str) -> None:
        """The plan picked the target this run rotates to."""
        self.target = target
        self.audit.set_target(self.run_id, target)

    def record(
        self,
        kind: str,
        status: str,
        evidence: Mapping[str, Any],
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Append one record to the run's chain."""
        self.audit.append(
            self.run_id, kind, status, evidence, started_at=started_at, finished_at=finished_at
        )

    def step(self, result: StepResult) -> None:
        """Record a finished step and keep it for the summary."""
        self.record(
            result.kind,
            result.status,
            result.evidence,
            started_at=result.started_at,
            finished_at=result.finished_at,
        )
        self.results.append(result)

    def fail(self, kind: str, error: BotError) -> RunSummary:
        """Record `error` (bad input, an unreachable service) as the failure of `kind` and close
        the run with outcome `error`."""
        self.record(kind, "failed", error.as_evidence())
        return self.finish("error", error.message, error.exit_code)

    def finish(
        self,
        outcome: Outcome,
        message: str,
        exit_code: int,
        *,
        publication: Publication | None = None,
    ) -> RunSummary:
        """Close the run (recording its forge API cost) and build its summary."""
        used = self.forge.api_usage() - self._usage
        proposal = publication.proposal if publication is not None else None
        published = publication.published if publication is not None else None
        self.audit.finish_run(
            self.run_id,
            outcome=outcome,
            message=message,
            proposal_title=proposal.title if proposal else None,
            proposal_body=proposal.body if proposal else None,
            proposal_url=published.url if published else None,
            extra={"api_requests": used.requests, "api_not_modified": used.not_modified},
        )
        self.closed = True
        return RunSummary(
            self.run_id,
            self.repo,
            self.runbook,
            self.target,
            outcome,
            message,
            exit_code,
            tuple(self.results),
            proposal,
            published,
        )


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
        records: CommandRecords | None = None,
    ) -> None:
        self.services = services
        self._audit = audit
        self.runbooks = dict(runbooks)
        self.clock = clock
        self.stop = stop
        # the commands people gave (holds, approvals): from the audit store, or from `records`
        # (a planning-only pipeline may read an existing store's)
        self.records = records or (CommandRecords(audit) if audit is not None else None)
        self.gate = ProposalGate(services.forge, self.records, services.settings, clock)

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
        workspace = self.open_workspace(repo)
        text = workspace.read_text(REPO_CONFIG_PATH)
        config = parse_repo_config(text, kinds=self.runbook_kinds)
        if config.pull_requests.base:  # the policy lives on the default branch
            workspace = workspace.with_base(config.pull_requests.base)
        npm_settings = load_npm_settings(
            self.services.environ,
            project_npmrc=workspace.read_text(".npmrc"),
            project_variables=settings.npmrc_variables,
        )
        npm = NpmRegistry(
            npm_settings,
            self.services.http,
            cache_dir=settings.state_dir / "packuments",
            cache=self.services.packuments,
        )
        return RepoContext(workspace, config, npm, npm_settings, configured=text is not None)

    def open_workspace(self, repo: str) -> Workspace:
        """A local path, a git URL, or `owner/name` on the forge, fetched, at its default
        branch."""
        settings = self.services.settings
        cache = settings.state_dir / "repositories"
        if Path(repo).exists():
            workspace = Workspace.open_local(Path(repo))
        elif _URL.match(repo):
            workspace = Workspace.open_remote(repo, cache_dir=cache)
        elif is_owner_name(repo):
            workspace = Workspace.open_remote(
                self.forge.clone_url(repo),
                cache_dir=cache,
                name=repo,
                auth=self.forge.push_auth(repo),
            )
        else:
            raise UsageError(f"--repo {repo!r} is not an existing path, a git URL or owner/name")
        return workspace

    @property
    def runbook_kinds(self) -> dict[str, str]:
        """Each loaded runbook's watch kind (which settings model its config section has)."""
        return {name: watch_kind(runbook) for name, runbook in self.runbooks.items()}

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
        holds = self.holds(context.workspace.name, runbook.name)
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
            held={hold.selector: hold.reason for hold in holds},
        )
        plan = get_watcher(watch_kind(runbook))(watch)
        shown = {item.subject for item in plan.skipped}
        unreleased = [  # holds no release matched yet are shown too
            Skipped(f"{plan.runbook} {hold.selector}", hold.reason)
            for hold in holds
            if not any(
                subject.rpartition("@")[2] == hold.selector
                or subject.rpartition("@")[2].startswith(f"{hold.selector}.")
                for subject in shown
            )
        ]
        return replace(plan, skipped=(*plan.skipped, *unreleased)) if unreleased else plan

    def holds(self, repo: str, runbook: str) -> tuple[Hold, ...]:
        """The lines and versions of `runbook` held back in `repo` (`/rotate ignore`)."""
        return () if self.records is None else self.records.holds(repo, runbook)

    # --- plan ------------------------------------------------------------------------------

    def plan(self, request: RunRequest) -> list[tuple[str, Plan | BotError]]:
        """(runbook, what would rotate) per runbook; changes nothing and records nothing.  A
        problem in one runbook is that runbook's answer and never hides the others."""
        context = self.open_repo(request.repo)
        plans: list[tuple[str, Plan | BotError]] = []
        for runbook, explicit in self.selected_runbooks(request, context.config):
            try:
                plans.append((runbook.name, self.watch(context, runbook, request, explicit)))
            except BotError as error:
                plans.append((runbook.name, error))
        return plans

    # --- run -------------------------------------------------------------------------------

    def _recorder(
        self, request: RunRequest, repo: str, runbook: str, target: str | None
    ) -> RunRecorder:
        return RunRecorder(
            self.audit, self.forge, request, repo=repo, runbook=runbook, target=target
        )

    def run(self, request: RunRequest) -> list[RunSummary]:
        """Execute every selected runbook; each rotation is one audited run.  A plain scheduled
        request first tries the no-op fast path (bot/unchanged.py)."""
        check_fast = request.trigger.kind == "schedule" and (
            request.runbooks is None and request.target is None and request.action == "rotate"
        )
        fast = self.no_op_check if check_fast and is_owner_name(request.repo) else None
        if fast is None:
            return self._run(request)[0]
        memo = fast.unchanged(request.repo)
        if memo is not None:
            log.info("unchanged since its last no-op check", extra={"repo": request.repo})
            return [self._unchanged(memo, runbook, run_id) for runbook, run_id in memo.runs]
        holds = fast.holds(request.repo)
        with observing() as inputs:
            summaries, context = self._run(request)
        heads, config_blob = _heads(context) if context is not None else (None, None)
        if context is not None and (not context.configured or context.config.dashboard):
            heads = None  # onboarding and the dashboard issue need a full run each time
        fast.remember(request.repo, heads, config_blob, holds, summaries, inputs)
        return summaries

    @functools.cached_property
    def no_op_check(self) -> NoOpCheck | None:
        """The fast path for scheduled no-op checks (None without an audit store, or when the
        operator's npm config cannot be read: then every run says why)."""
        if self._audit is None:
            return None
        services = self.services
        settings = services.settings
        try:
            npm = load_npm_settings(services.environ, project_variables=settings.npmrc_variables)
        except BotError:
            return None
        parts = [
            *(
                (f"runbook {name}", runbook.model_dump_json(exclude={"source"}))
                for name, runbook in self.runbooks.items()
            ),
            ("npm", repr(npm)),
            ("oci", repr((settings.insecure_registries, settings.registry_mirrors))),
            ("onboarding", repr(settings.onboarding)),
        ]

        def heads(repo: str, known: Mapping[str, str]) -> dict[str, str]:
            return {
                branch: self.forge.branch_head(repo, branch, commit)
                for branch, commit in known.items()
            }

        def holds(repo: str) -> str:
            return digest(repr(self.records.holds(repo) if self.records is not None else ()))

        return NoOpCheck(
            memos=Memos(self.audit.engine),
            fingerprint=fingerprint(bot_version(), parts),
            heads=heads,
            packuments=services.packuments,
            oci=services.oci,
            holds=holds,
        )

    def _unchanged(self, memo: Memo, runbook: str, run_id: str) -> RunSummary:
        default = memo.branches[0]
        message = (
            f"unchanged since run {run_id} ({default} at {memo.heads[default][:12]}, "
            f"{len(memo.inputs)} registry answers the same)"
        )
        return RunSummary(
            run_id, memo.repo, runbook, None, "unchanged", message, EXIT_OK, (), None, None
        )

    def _run(self, request: RunRequest) -> tuple[list[RunSummary], RepoContext | None]:
        try:
            context = self.open_repo(request.repo)
            selected = self.selected_runbooks(request, context.config)
        except BotError as error:
            recorder = self._recorder(request, request.repo, "-", request.target)
            return [recorder.fail("open-repository", error)], None
        if not context.configured and self.services.settings.onboarding:
            return [self._onboard(context, request)], context
        summaries: list[RunSummary] = []
        for runbook, explicit in selected:
            if request.action == "explain":
                summaries.append(self._explain(context, runbook, request, explicit))
            else:
                summaries.extend(self._run_runbook(context, runbook, request, explicit))
        if context.config.dashboard and summaries:
            self._update_dashboard(context.workspace.name, summaries[-1].run_id)
        return summaries, context

    def _explain(
        self, context: RepoContext, runbook: Runbook, request: RunRequest, explicit: bool
    ) -> RunSummary:
        """`/rotate explain`: the plan and what would happen to each rotation; nothing written
        but the audited run that says so."""
        workspace = context.workspace
        recorder = self._recorder(request, workspace.name, runbook.name, request.target)
        started = self.clock()
        try:
            plan = self.watch(context, runbook, request, explicit)
            assessed = []
            for rotation in plan.rotations:
                found = self.gate.assess(workspace, context.config, runbook, rotation, "rotate")
                assessed.append(
                    Assessed(
                        rotation,
                        "waiting" if found.waiting else found.decision.verdict,
                        found.waiting or found.bypass or found.decision.reason,
                    )
                )
        except BotError as error:
            return recorder.fail("plan", error)
        recorder.record(
            "plan", "passed", plan_evidence(plan), started_at=started, finished_at=self.clock()
        )
        text = explain(plan, assessed, self.holds(workspace.name, runbook.name))
        return recorder.finish("explained", text, EXIT_OK)

    def _onboard(self, context: RepoContext, request: RunRequest) -> RunSummary:
        """A repository without a config (onboarding on): propose one, and nothing else."""
        workspace = context.workspace
        repo = workspace.name
        recorder = self._recorder(request, repo, "onboarding", None)
        branch = ONBOARDING_BRANCH
        try:
            existing = self.forge.find_proposal(repo, branch)
            tip = workspace.branch_commit(branch)
            if existing is None and self._onboarded_before(repo):
                message = (
                    "the onboarding pull request was closed without merging; add "
                    f"{REPO_CONFIG_PATH} to start rotations here"
                )
                recorder.record(LIFECYCLE, "skipped", {"branch": branch, "reason": message})
                return recorder.finish("nothing-to-do", message, EXIT_OK)
            if existing is not None and workspace.foreign_commit(branch) is not None:
                message = f"{branch} was edited by someone; waiting for it to be merged"
                recorder.record(LIFECYCLE, "skipped", {"branch": branch, "reason": message})
                return recorder.finish("held", message, EXIT_OK)
            if existing is not None and existing.base_commit == workspace.base_commit:
                message = f"waiting for the onboarding pull request to be merged: {existing.url}"
                recorder.record(LIFECYCLE, "skipped", {"branch": branch, "reason": message})
                return recorder.finish("up-to-date", message, EXIT_OK)
            plans = [(runbook.name, found) for runbook, found in self._plan_all(context, request)]
            config = render_config(list(self.runbooks.values()), plans)
            _, problems = validate_repo_config(config, kinds=self.runbook_kinds)
            if problems:  # the bot's own file must pass its own validation
                raise ConfigError(f"the onboarding config does not validate: {problems[0]}")
            recorder.record(
                "onboarding",
                "passed",
                {"branch": branch, "config": config, "runbooks": [name for name, _ in plans]},
            )
            with workspace.worktree(recorder.run_id) as worktree:
                target = worktree / REPO_CONFIG_PATH
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(config, encoding="utf-8")
                commit = workspace.commit(
                    worktree,
                    f"Configure rotation-bot\n\nrotation-bot run {recorder.run_id} (onboarding)",
                    [REPO_CONFIG_PATH],
                )
            proposal = Proposal(
                branch=branch,
                title="Configure rotation-bot",
                body=onboarding_body(config),
                base_branch=workspace.base_branch,
                base_commit=workspace.base_commit,
                head_commit=commit,
                runbook="onboarding",
                new_version=ONBOARDING_VERSION,
                run_id=recorder.run_id,
                labels=context.config.pull_requests.labels,
            )
            self.audit.ensure_durable()
            workspace.publish_branch(branch, commit, expected=tip)
            published = self.forge.ensure_proposal(repo, proposal, supersedes_prefix=None)
        except BotError as error:
            return recorder.fail(PUBLISH, error)
        recorder.record(
            PUBLISH,
            "passed",
            {
                "summary": f"onboarding proposed at {published.url}",
                "branch": branch,
                "commit": commit,
                "files": [REPO_CONFIG_PATH],
                "url": published.url,
                "created": published.created,
                "superseded": [],
            },
        )
        publication = Publication(commit, (REPO_CONFIG_PATH,), proposal, published)
        return recorder.finish(
            "proposed", f"proposed {branch} at {published.url}", EXIT_OK, publication=publication
        )

    def _plan_all(
        self, context: RepoContext, request: RunRequest
    ) -> list[tuple[Runbook, Plan | BotError]]:
        found: list[tuple[Runbook, Plan | BotError]] = []
        for runbook in sorted(self.runbooks.values(), key=lambda item: item.name):
            try:
                found.append((runbook, self.watch(context, runbook, request, False)))
            except BotError as error:
                found.append((runbook, error))
        return found

    def _onboarded_before(self, repo: str) -> bool:
        """Whether the bot proposed an onboarding pull request here before."""
        return any(
            record["evidence"].get("branch") == ONBOARDING_BRANCH
            for record in self.audit.records_for_repo(repo, {PUBLISH})
        )

    def _update_dashboard(self, repo: str, run_id: str) -> None:
        """Bring the repository's dashboard issue (opt-in `dashboard: true`) up to date with the
        audit trail; a forge failure is logged and never fails the rotation."""
        from bot.service.dashboard.render import issue_body  # noqa: PLC0415 - Jinja2 when opted in

        body = issue_body(self.audit, repo, runbooks=sorted(self.runbooks), now=self.clock())
        if body is None:
            return
        try:
            url = self.forge.ensure_dashboard_issue(repo, body, run_id=run_id)
        except BotError as error:
            log.warning("dashboard issue not updated", extra={"repo": repo, "error": error.message})
            return
        log.info("dashboard issue current", extra={"repo": repo, "url": url})

    def _run_runbook(
        self, context: RepoContext, runbook: Runbook, request: RunRequest, explicit: bool
    ) -> list[RunSummary]:
        repo = context.workspace.name
        recorder = self._recorder(request, repo, runbook.name, request.target)
        started = self.clock()
        try:
            plan = self.watch(context, runbook, request, explicit)
        except BotError as error:
            return [recorder.fail("plan", error)]
        except Cancelled as stop:
            recorder.finish("interrupted", stop.reason, EXIT_FAILED)
            raise
        evidence = plan_evidence(plan)
        recorder.record("plan", "passed", evidence, started_at=started, finished_at=self.clock())
        try:
            holds = self.holds(context.workspace.name, runbook.name)
            closed = self.gate.close_held(context.workspace, runbook, holds)
        except BotError as error:
            return [recorder.fail("hold", error)]
        if closed:
            recorder.record("hold", "passed", {"closed": closed})
        if not plan.rotations:
            reason = "; ".join(f"{item.subject}: {item.reason}" for item in plan.skipped)
            message = f"nothing to rotate ({reason})" if reason else "nothing to rotate"
            return [recorder.finish("nothing-to-do", message, EXIT_OK)]
        summaries = []
        for index, rotation in enumerate(plan.rotations):
            if index > 0:
                recorder = self._recorder(request, repo, runbook.name, rotation.new_version)
                recorder.record("plan", "passed", evidence, started_at=started, finished_at=started)
            else:
                recorder.retarget(rotation.new_version)
            summaries.append(self._execute(recorder, context, runbook, plan, rotation, request))
        return summaries

    def _execute(
        self,
        recorder: RunRecorder,
        context: RepoContext,
        runbook: Runbook,
        plan: Plan,
        rotation: Rotation,
        request: RunRequest,
    ) -> RunSummary:
        workspace = context.workspace
        try:
            assessment = self.gate.assess(
                workspace, context.config, runbook, rotation, request.action
            )
            lifecycle = self.gate.before_publishing(
                workspace, runbook, rotation, assessment, request.trigger.actor
            )
        except BotError as error:
            return recorder.fail(LIFECYCLE, error)
        if isinstance(lifecycle, Stop):
            recorder.record(LIFECYCLE, "skipped", lifecycle.evidence)
            return recorder.finish(lifecycle.outcome, lifecycle.message, EXIT_OK)
        try:
            with (
                workspace.worktree(recorder.run_id) as worktree,
                _scratch(recorder.run_id) as scratch,
            ):
                ctx = StepContext(
                    run_id=recorder.run_id,
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
                    results=recorder.results,
                    audit=self.audit,
                )
                for kind in runbook.steps:
                    try:
                        check(self.stop)  # shutdown, or the run's deadline
                    except Cancelled as stop:
                        recorder.record(kind, "skipped", {"reason": stop.reason})
                        return recorder.finish(
                            "interrupted",
                            f"interrupted before step {kind}: {stop.reason}",
                            EXIT_FAILED,
                        )
                    started = self.clock()
                    try:
                        result = get_step(kind)(ctx)
                    except BotError as error:
                        return self._step_failed(recorder, context, runbook, rotation, kind, error)
                    recorder.step(
                        replace(result, kind=kind, started_at=started, finished_at=self.clock())
                    )
                started = self.clock()
                claim: int | None = None
                if self._limited(assessment):
                    claimed = self._claim_slot(recorder, workspace.name, rotation)
                    if isinstance(claimed, RunSummary):
                        return claimed
                    claim = claimed
                try:
                    publication = publish(ctx, lifecycle)
                except BotError as error:
                    if claim is not None:
                        self.hourly_slots.release(claim)
                    return self._step_failed(recorder, context, runbook, rotation, PUBLISH, error)
                if claim is not None and not publication.published.created:
                    self.hourly_slots.release(claim)  # an existing pull request was updated
                verb = "opened" if publication.published.created else "updated"
                recorder.record(
                    PUBLISH,
                    "passed",
                    {
                        "summary": f"{verb} {publication.published.url}",
                        "branch": rotation.branch,
                        "commit": publication.commit,
                        "files": list(publication.files),
                        "url": publication.published.url,
                        "created": publication.published.created,
                        "superseded": list(publication.published.superseded),
                        "automerge": publication.automerge,
                        "lifecycle": assessment.decision.reason,
                    },
                    started_at=started,
                    finished_at=self.clock(),
                )
                try:
                    self.gate.after_publishing(
                        workspace, runbook, rotation, assessment, publication
                    )
                except BotError as error:  # the pull request is open: a stale notice is a warning
                    log.warning("approval notice not closed", extra={"error": error.message})
        except BotError as error:
            return recorder.fail("worktree", error)
        except Exception as error:
            log.exception("internal error", extra={"run": recorder.run_id})
            recorder.record(
                "internal-error", "failed", {"error": type(error).__name__, "message": str(error)}
            )
            return recorder.finish(
                "error", f"internal error: {type(error).__name__}: {error}", EXIT_FAILED
            )
        except BaseException as error:
            if not recorder.closed:
                recorder.finish("interrupted", f"interrupted ({type(error).__name__})", EXIT_FAILED)
            raise
        return recorder.finish(
            "proposed",
            f"proposed {rotation.branch} at {publication.published.url}",
            EXIT_OK,
            publication=publication,
        )

    @functools.cached_property
    def hourly_slots(self) -> HourlySlots:
        """The claims under `ROTATION_BOT_MAX_PRS_PER_HOUR`, in the audit database."""
        return HourlySlots(self.audit.engine)

    def _limited(self, assessment: Assessment) -> bool:
        """Whether publishing opens a new pull request that the hourly limit applies to."""
        return (
            self.services.settings.max_prs_per_hour is not None
            and self._audit is not None
            and assessment.facts.proposal is None
            and assessment.bypass is None
        )

    def _claim_slot(self, recorder: RunRecorder, repo: str, rotation: Rotation) -> int | RunSummary:
        """Claim an hourly slot for a new pull request (atomically across the fleet), or end the
        run `waiting` when the hour's are all taken."""
        limit = self.services.settings.max_prs_per_hour or 0
        claim = self.hourly_slots.claim(repo, rotation.branch, limit, self.clock())
        if claim is not None:
            return claim
        message = (
            f"waiting for a slot: the service opened {limit} pull requests in the last hour "
            f"(ROTATION_BOT_MAX_PRS_PER_HOUR={limit}); a later cycle proposes it"
        )
        recorder.record(
            LIFECYCLE,
            "skipped",
            {"branch": rotation.branch, "verdict": "waiting", "reason": message},
        )
        return recorder.finish("waiting", message, EXIT_OK)

    def _step_failed(
        self,
        recorder: RunRecorder,
        context: RepoContext,
        runbook: Runbook,
        rotation: Rotation,
        kind: str,
        error: BotError,
    ) -> RunSummary:
        recorder.record(kind, "failed", error.as_evidence())
        if isinstance(error, VerificationFailed):
            self._incident(context, runbook, rotation, recorder, kind, error)
        return recorder.finish(
            "failed",
            f"step {kind} failed: {error.message}; nothing was published",
            error.exit_code,
        )

    def _incident(
        self,
        context: RepoContext,
        runbook: Runbook,
        rotation: Rotation,
        recorder: RunRecorder,
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
                f"Audit record: `rotation-bot audit show {recorder.run_id}`",
            ]
        )
        incident = Notice(
            kind="incident",
            runbook=runbook.name,
            target=rotation.new_version,
            title=f"rotation-bot: {rotation.subject} {rotation.new_version} failed {kind}",
            body=body,
            run_id=recorder.run_id,
        )
        try:
            url = self.forge.ensure_notice(context.workspace.name, incident)
        except BotError as failure:
            url = None
            log.warning("incident could not be filed", extra={"error": failure.message})
        recorder.record(
            "incident", "passed" if url else "skipped", {"url": url, "title": incident.title}
        )


def _heads(context: RepoContext) -> tuple[dict[str, str], str | None]:
    """The heads a full check planned on, default branch first (the one the bot's repository
    cache follows), and the blob id of the config it read."""
    workspace = context.workspace
    repo = workspace.repo
    default = str(repo.git.symbolic_ref("HEAD", "--short"))
    heads = {default: repo.commit(f"refs/heads/{default}").hexsha}
    heads[workspace.base_branch] = workspace.base_commit
    try:
        blob = str(repo.git.rev_parse(f"{heads[default]}:{REPO_CONFIG_PATH}"))
    except git.GitCommandError:
        blob = None
    return heads, blob


@contextmanager
def _scratch(run_id: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"rotation-bot-{run_id[:8]}-scratch-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
