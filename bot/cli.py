"""The `rotation-bot` command: plan, run, serve, audit, demo, validate, schema.

This is the one place where `BotError` becomes a one-line message and an exit code: 0 done
(including nothing to do), 1 a step or verification failed (nothing published), 2 usage or
configuration error, 3 an external service is unavailable (an unusable audit database or a full
disk too).  `run` and `demo` stop cleanly on SIGTERM or SIGINT (exit 128 + the signal number):
downloads end at their next chunk, the worktree and the scratch directory with the npm
userconfig are removed, and the run is recorded interrupted.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, cast

import click

from bot.cancellation import Cancelled, SignalReceived, run_deadline
from bot.config import (
    REPO_CONFIG_PATH,
    Settings,
    config_schema,
    load_settings,
    secret_variables,
    validate_repo_config,
)
from bot.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    BotError,
    ServiceUnavailable,
    UsageError,
    VerificationFailed,
    redact,
)
from bot.forges.base import Forge
from bot.forges.local import LocalForge
from bot.lifecycle.records import CommandRecords
from bot.models import Plan, RunRequest, RunSummary, Trigger, utc_now
from bot.pipeline import Pipeline, plan_evidence
from bot.runbook import load_runbooks, runbooks_dir
from bot.service.locks import RepositoryLocks
from bot.services import build_services
from bot.shell import process_environment
from bot.sources.http import HttpSource
from bot.watchers import watch_kind
from bot.workspace import private_temp_root

if TYPE_CHECKING:
    from bot.audit import AuditStore
    from bot.forges.github import RequestBudget
    from bot.sources.npm.registry import PackumentCache


class _TextFormatter(logging.Formatter):
    """`LEVEL logger: message key=value …`, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        suffix = "".join(f" {key}={value}" for key, value in sorted(fields.items()))
        return redact(f"{record.levelname} {record.name}: {record.getMessage()}{suffix}")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, sort_keys=True))


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


def _configure_logging(verbose: bool, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _fail(error: BotError) -> NoReturn:
    click.echo(f"rotation-bot: {error.slug}: {error.message}", err=True)
    sys.exit(error.exit_code)


_FULL_OR_READ_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def _environment_problem(ctx: click.Context, error: Exception) -> BotError | None:
    """A full disk or an unusable audit database as a one-line error; None for anything else."""
    if isinstance(error, OSError) and error.errno in _FULL_OR_READ_ONLY:
        where = error.filename or "the state or temporary directory"
        return ServiceUnavailable(
            f"{where}: {error.strerror}; free space there (or make it writable) and retry"
        )
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - loaded only if it was used
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    if not isinstance(error, SQLAlchemyError):
        return None
    cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    if "locked" in cause:
        advice = "another process is writing to it; retry when it has finished"
    elif "readonly" in cause or "read-only" in cause:
        advice = (
            "it is read-only; make it writable, or point ROTATION_BOT_DATABASE_URL at a writable "
            "database"
        )
    elif "full" in cause:
        advice = "the disk it lives on is full; free space there and retry"
    else:
        advice = "check ROTATION_BOT_DATABASE_URL"
    where = ""
    if isinstance(ctx.obj, _State):  # the URL is a secret; its file or host is not
        url = make_url(ctx.obj.settings.resolved_database_url)
        where = f" {url.database}" if url.drivername.startswith("sqlite") else f" on {url.host}"
    return ServiceUnavailable(f"audit database{where}: {redact(cause)}; {advice}")


class _Group(click.Group):
    """Catches `BotError` (and a full disk or an unusable database) from every command in one
    place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BotError as error:
            _fail(error)
        except Exception as error:
            problem = _environment_problem(ctx, error)
            if problem is None:
                raise
            _fail(problem)


class _State:
    """What the group options resolve to, shared by subcommands."""

    def __init__(self, environ: Mapping[str, str], settings: Settings) -> None:
        self.environ = environ
        self.settings = settings

    def audit(self) -> AuditStore:
        from bot.audit import Anchor, AuditStore  # noqa: PLC0415 - SQLAlchemy only when recording

        anchor = Anchor(self.settings.resolved_audit_anchor, syslog=self.settings.audit_syslog)
        return AuditStore(self.settings.resolved_database_url, anchor=anchor)

    def forge(
        self, name: str | None, audit: AuditStore | None, budget: RequestBudget | None = None
    ) -> Forge:
        chosen = name or ("github" if self.settings.has_github_credentials else "local")
        if chosen == "local":
            return LocalForge(audit)
        from bot.forges.github import (  # noqa: PLC0415 - only with GitHub configured
            GitHubForge,
            GitHubOptions,
        )

        # Under a fleet budget (distributed mode) the budget paces every request across the
        # fleet; PyGithub's own 0.25 s between GETs would only serialise each worker. Writes
        # keep GitHub's one second apart.
        options = GitHubOptions(seconds_between_requests=0.0) if budget is not None else None
        forge: Forge = GitHubForge.from_settings(self.settings, options=options, budget=budget)
        return forge

    def pipeline(
        self,
        forge_name: str | None = None,
        *,
        record: bool = True,
        stop: threading.Event | None = None,
        packuments: PackumentCache | None = None,
        budget: RequestBudget | None = None,
    ) -> Pipeline:
        audit = self.audit() if record else None
        if audit is not None:
            audit.close_interrupted_runs()  # runs a killed process left open on this host
        http = HttpSource(deadline=self.settings.request_timeout, stop=stop)
        services = build_services(
            self.settings,
            self.environ,
            forge=self.forge(forge_name, audit, budget),
            http=http,
            packuments=packuments,
        )
        return Pipeline(
            services=services,
            audit=audit,
            runbooks=load_runbooks(runbooks_dir(self.environ)),
            stop=stop,
            records=None if record else self.existing_records(),
        )

    def existing_records(self) -> CommandRecords | None:
        """The holds and approvals of an audit database that exists already (planning creates
        none)."""
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - SQLAlchemy only when used

        url = make_url(self.settings.resolved_database_url)
        if url.drivername.startswith("sqlite") and not Path(str(url.database)).is_file():
            return None
        return CommandRecords(self.audit())


@click.group(cls=_Group)
@click.version_option(package_name="rotation-bot", prog_name="rotation-bot")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file with service settings (environment variables override it).",
)
@click.option("--database-url", help="Audit store URL (default: SQLite in the state directory).")
@click.option("-v", "--verbose", is_flag=True, help="Log each command and request.")
@click.pass_context
def main(
    ctx: click.Context, config_file: Path | None, database_url: str | None, verbose: bool
) -> None:
    """Keep sharp's native-binary pins and base-image digests fresh and verified."""
    environ = dict(ctx.obj) if ctx.obj is not None else process_environment()
    settings = load_settings(environ, config_file)
    _configure_logging(verbose, settings.log_format)
    for name in secret_variables(environ):  # read once; no child process may inherit them
        os.environ.pop(name, None)
        del environ[name]
    if database_url:
        settings = replace(settings, database_url=database_url)
    ctx.obj = _State(environ, settings)
    # every worktree and scratch directory of this process goes in here (removed at exit)
    ctx.with_resource(private_temp_root())


def _request(
    repo: str,
    runbook: Sequence[str],
    target: str | None,
    forge: str | None,
    environ: Mapping[str, str],
) -> RunRequest:
    actor = environ.get("USER") or environ.get("LOGNAME") or "cli"
    return RunRequest(
        repo=repo,
        trigger=Trigger(kind="cli", actor=actor),
        runbooks=tuple(runbook) or None,
        target=target,
        forge=forge,
    )


def _print_plan(plan: Plan) -> None:
    click.echo(f"{plan.runbook}: {plan.repo} (base {plan.base_commit[:12]})")
    for status in plan.projects:
        project = status.project
        pinned = "pinned" if status.pinned else "binaries not pinned"
        click.echo(
            f"  project {project.label} ({project.manager}, {project.lockfile}): "
            f"{plan.runbook} {status.current_version}, {pinned}"
        )
        for pin in status.pins:
            click.echo(f"    {pin.name} {pin.version}")
        for copy in status.kept:
            click.echo(f"    stays: {copy.key} {copy.version} (held by {copy.holder}, {copy.spec})")
        for note in status.notes:
            click.echo(f"    note: {note}")
    for rotation in plan.rotations:
        projects = ", ".join(part.project.label for part in rotation.projects)
        click.echo(
            f"  {rotation.kind}: {rotation.subject} {rotation.previous_version or '-'} → "
            f"{rotation.new_version}  (branch {rotation.branch}"
            + (f"; projects {projects})" if projects else ")")
        )
        for change in rotation.pins:
            click.echo(
                f"    {change.name} {change.previous_version or '(new)'} → {change.new_version}"
            )
        for digest in rotation.digests:
            click.echo(
                f"    {digest.file}:{digest.line} {digest.image}:{digest.tag} "
                f"{digest.previous_digest or '(unpinned)'} → {digest.new_digest}"
            )
    if not plan.rotations:
        click.echo("  nothing to rotate")
    for item in plan.skipped:
        click.echo(f"  skipped {item.subject}: {item.reason}")


@main.command()
@click.option("--repo", required=True, help="Local path, git URL, or owner/name on the forge.")
@click.option(
    "--runbook", multiple=True, help="Runbook name (repeatable; default: all that apply)."
)
@click.option("--target", help="Rotate to this exact version instead of the planned ones.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plan(
    state: _State, repo: str, runbook: tuple[str, ...], target: str | None, as_json: bool
) -> None:
    """Show what would rotate; changes nothing."""
    plans = state.pipeline(record=False).plan(_request(repo, runbook, target, None, state.environ))
    errors = [error for _, error in plans if isinstance(error, BotError)]
    if as_json:
        click.echo(
            json.dumps(
                [
                    plan_evidence(item)
                    if isinstance(item, Plan)
                    else {"runbook": name, "error": item.slug, "message": item.message}
                    for name, item in plans
                ],
                indent=2,
            )
        )
    else:
        for name, item in plans:
            if isinstance(item, Plan):
                _print_plan(item)
            else:
                click.echo(f"{name}: {item.slug}: {item.message}")
    if errors:
        sys.exit(max(error.exit_code for error in errors))


def _summary_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "repo": summary.repo,
        "runbook": summary.runbook,
        "target": summary.target,
        "outcome": summary.outcome,
        "message": summary.message,
        "exit_code": summary.exit_code,
        "steps": [
            {"kind": step.kind, "status": step.status, "summary": step.summary}
            for step in summary.steps
        ],
        "proposal": None
        if summary.proposal is None
        else {
            "branch": summary.proposal.branch,
            "title": summary.proposal.title,
            "body": summary.proposal.body,
            "url": summary.published.url if summary.published else None,
        },
    }


def _print_summaries(summaries: Sequence[RunSummary], as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps([_summary_json(summary) for summary in summaries], indent=2))
    else:
        for summary in summaries:
            target = f" {summary.target}" if summary.target else ""
            click.echo(f"[{summary.outcome}] {summary.runbook}{target}: {summary.message}")
            click.echo(f"  audit: rotation-bot audit show {summary.run_id[:8]}")
            if summary.proposal is not None:
                click.echo(f"\n--- proposal: {summary.proposal.title} ---")
                click.echo(summary.proposal.body)
    return max((summary.exit_code for summary in summaries), default=EXIT_OK)


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` (downloads in every thread end at their next chunk) and
    raise `SignalReceived` in the main thread, once, so the run unwinds through its context managers
    (worktree, scratch directory) and is recorded interrupted; further signals during that
    cleanup are ignored."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            return
        stop.set()
        raise SignalReceived(signum)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _execute(state: _State, forge: str | None, request: RunRequest) -> list[RunSummary]:
    """Run `request` within the run deadline, stopping cleanly on SIGTERM or SIGINT."""
    stop = threading.Event()
    try:
        with _stopped_by_signals(stop), run_deadline(state.settings.run_timeout):
            return state.pipeline(forge, stop=stop).run(request)
    except Cancelled as cancelled:
        click.echo(f"rotation-bot: interrupted: {cancelled.reason}", err=True)
        code = 128 + cancelled.signum if isinstance(cancelled, SignalReceived) else EXIT_FAILED
        sys.exit(code)


@main.command()
@click.option("--repo", required=True, help="Local path, git URL, or owner/name on the forge.")
@click.option(
    "--runbook", multiple=True, help="Runbook name (repeatable; default: all that apply)."
)
@click.option("--target", help="Rotate to this exact version instead of the planned ones.")
@click.option(
    "--forge",
    type=click.Choice(["local", "github"]),
    help="Where proposals go (default: github when credentials are set, else local).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def run(
    state: _State,
    repo: str,
    runbook: tuple[str, ...],
    target: str | None,
    forge: str | None,
    as_json: bool,
) -> None:
    """Execute the runbooks and propose the rotations (SIGTERM or SIGINT stop cleanly)."""
    locks = RepositoryLocks(state.settings.state_dir / "locks")
    with locks.hold(repo, timeout=0):  # the service and other CLI runs wait their turn
        summaries = _execute(state, forge, _request(repo, runbook, target, forge, state.environ))
    sys.exit(_print_summaries(summaries, as_json))


@main.command()
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--repo", help="Validate the config of this repository (path, git URL, owner/name).")
@click.pass_obj
def validate(state: _State, file: Path | None, repo: str | None) -> None:
    """Check a .github/rotation-bot.yml (FILE, --repo's, or the one under the current
    directory): every problem on its own line as FILE:LINE: problem, exit 2 if there is one."""
    if file is not None and repo is not None:
        raise UsageError("give FILE or --repo, not both")
    pipeline = state.pipeline(record=False)
    if repo is not None:
        workspace = pipeline.open_workspace(repo)
        source = f"{workspace.name}:{REPO_CONFIG_PATH}"
        text = workspace.read_text(REPO_CONFIG_PATH)
        if text is None:
            click.echo(f"ok: {workspace.name} has no {REPO_CONFIG_PATH}; the defaults apply")
            return
    else:
        path = file or Path(REPO_CONFIG_PATH)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            why = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise UsageError(f"{path}: cannot read ({why})") from error
    _, problems = validate_repo_config(text, source=source, kinds=pipeline.runbook_kinds)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        sys.exit(EXIT_USAGE)
    click.echo(f"ok: {source} is valid (runbooks: {', '.join(sorted(pipeline.runbooks))})")


@main.command()
@click.pass_obj
def schema(state: _State) -> None:
    """Print the JSON Schema of .github/rotation-bot.yml for the runbooks loaded (the shipped
    ones: bot/data/rotation-bot.schema.json)."""
    runbooks = load_runbooks(runbooks_dir(state.environ))
    kinds = {name: watch_kind(runbook) for name, runbook in runbooks.items()}
    click.echo(json.dumps(config_schema(kinds), indent=2, sort_keys=True, ensure_ascii=False))


@main.group()
def audit() -> None:
    """The runbook audit trail."""


@audit.command("list")
@click.option("--limit", default=30, show_default=True)
@click.pass_obj
def audit_list(state: _State, limit: int) -> None:
    """The newest runs."""
    for row in state.audit().list_runs(limit):
        click.echo(
            f"{row['id'][:8]}  {row['started_at']}  {row['runbook']:<11} "
            f"{(row['target'] or '-'):<10} {(row['outcome'] or 'running'):<13} "
            f"{row['trigger']}:{row['actor']}  {row['repo']}"
        )


@audit.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def audit_show(state: _State, run_id: str, as_json: bool) -> None:
    """One run: its steps, evidence and proposal."""
    store = state.audit()
    run_row = store.find_run(run_id)
    if run_row is None:
        click.echo(f"rotation-bot: usage: no single run matches {run_id!r}", err=True)
        sys.exit(EXIT_USAGE)
    records = store.run_steps(run_row["id"])
    if as_json:
        click.echo(json.dumps({"run": run_row, "steps": records}, indent=2, default=str))
        return
    click.echo(f"run {run_row['id']}  {run_row['repo']}  runbook {run_row['runbook']}")
    click.echo(
        f"  trigger {run_row['trigger']} by {run_row['actor']}; target "
        f"{run_row['target'] or '-'}; outcome {run_row['outcome']}: {run_row['message']}"
    )
    for record in records:
        click.echo(
            f"  {record['sequence']:>2}. {record['kind']:<20} {record['status']:<8} "
            f"{record['started_at']} → {record['finished_at']}  {record['hash'][:12]}"
        )
        evidence = json.dumps(record["evidence"], indent=2, sort_keys=True)
        click.echo("\n".join("        " + line for line in evidence.splitlines()))
    if run_row["proposal_body"]:
        click.echo(f"\n--- proposal: {run_row['proposal_title']} ---\n{run_row['proposal_body']}")


@audit.command("verify")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="An anchor file, log or syslog file holding chain heads (repeatable; default: "
    "ROTATION_BOT_AUDIT_ANCHOR when it exists).",
)
@click.pass_obj
def audit_verify(state: _State, anchors: tuple[Path, ...]) -> None:
    """Recompute the hash chain from the first record, compare every run and proposal with it,
    and check it still holds every anchored head; exit 1 with one line per problem."""
    configured = state.settings.resolved_audit_anchor
    in_use = configured.exists() and configured.stat().st_size > 0
    paths = list(anchors) or ([configured] if in_use else [])
    report = state.audit().verify(paths)
    if not report.ok:
        for problem in report.problems:
            click.echo(f"rotation-bot: audit chain broken: {problem}", err=True)
        sys.exit(1)
    if report.newest_anchored is not None:
        heads = (
            "1 anchored head matches"
            if report.anchored == 1
            else (f"{report.anchored} anchored heads match")
        )
        where = ", ".join(str(path) for path in paths)
        anchored = f"{heads} (newest: record {report.newest_anchored}, {where})"
    else:
        anchored = f"not anchored (nothing anchored in {configured} yet; see docs/AUDIT.md)"
    click.echo(f"ok: {report.records} records in {report.runs} runs, chain intact; {anchored}")


@audit.command("export")
@click.argument("run_id", required=False)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["jsonl", "html"]),
    default="jsonl",
    show_default=True,
    help="jsonl: every run and record; html: the page of one RUN, as a self-contained file.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File for --format html (default: rotation-bot-run-<id>.html; - for stdout).",
)
@click.pass_obj
def audit_export(
    state: _State, run_id: str | None, output_format: str, output: Path | None
) -> None:
    """Every run and record as JSON lines (for archiving or a SIEM), or one run as an HTML page
    (`--format html RUN`, to attach to a change ticket)."""
    store = state.audit()
    if output_format == "html":
        _export_html(store, run_id, output)
        return
    if run_id is not None:
        raise UsageError("RUN selects the run of --format html; jsonl exports the whole trail")
    for row in reversed(store.list_runs(limit=1_000_000)):
        click.echo(json.dumps({"type": "run", **row}, default=str, sort_keys=True))
    for record in store.records():
        record["evidence"] = json.loads(record["evidence"])
        click.echo(json.dumps({"type": "step", **record}, default=str, sort_keys=True))


def _export_html(store: AuditStore, run_id: str | None, output: Path | None) -> None:
    from bot.service.dashboard.data import load_run  # noqa: PLC0415 - Jinja2 only for html
    from bot.service.dashboard.render import export_run  # noqa: PLC0415

    if run_id is None:
        raise UsageError("--format html needs the RUN to export (see rotation-bot audit list)")
    view = load_run(store, run_id)
    if view is None:
        raise UsageError(f"no single run matches {run_id!r}; see rotation-bot audit list")
    page = export_run(view, now=utc_now())
    if output is not None and str(output) == "-":
        click.echo(page, nl=False)
        return
    target = output or Path(f"rotation-bot-run-{view.run.id[:8]}.html")
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{target}: cannot write ({error.strerror})") from error
    click.echo(f"wrote {target} (run {view.run.id})", err=True)


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to build the sample repository (default: a new temp directory).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def demo(state: _State, directory: Path | None, as_json: bool) -> None:
    """Build a sample repository one sharp patch behind and rotate it end to end."""
    from bot.demo import build_sample_repository  # noqa: PLC0415 - demo only

    path = build_sample_repository(directory, state.environ)
    click.echo(f"sample repository: {path}", err=True)
    summaries = _execute(
        state, "local", RunRequest(repo=str(path), trigger=Trigger(kind="cli", actor="demo"))
    )
    code = _print_summaries(summaries, as_json)
    click.echo(
        f"\nnext: git -C {path} branch --list 'rotation-bot/*'; rotation-bot audit list; "
        "rotation-bot audit verify",
        err=True,
    )
    sys.exit(code)


def _serving(url: str | None) -> None:
    if url is None:
        click.echo("rotation-bot: serving (no HTTP in this role)", err=True)
        return
    click.echo(
        f"rotation-bot: serving on {url} (POST /webhook, GET /healthz, GET /metrics, "
        "GET /dashboard)",
        err=True,
    )


@main.command()
@click.option(
    "--role",
    type=click.Choice(["all", "web", "worker", "scheduler"]),
    default="all",
    show_default=True,
    help="With a PostgreSQL database: which part of the service this process runs "
    "(web: webhooks and dashboard; worker: rotations; scheduler: the cron schedule). "
    "Without one, only `all`.",
)
@click.pass_obj
def serve(state: _State, role: str) -> None:
    """Run the scheduler and the webhook server until SIGTERM or SIGINT (graceful)."""
    stopping = threading.Event()
    if not state.settings.distributed:
        if role != "all":
            raise UsageError(
                f"--role {role} needs the distributed mode: set ROTATION_BOT_DATABASE_URL to a "
                "PostgreSQL database (postgresql+psycopg://…) and run `rotation-bot migrate`"
            )
        from bot.service.app import serve_forever  # noqa: PLC0415 - service only

        serve_forever(
            state.settings, state.pipeline(stop=stopping), stopping=stopping, on_ready=_serving
        )
        return
    from sqlalchemy import create_engine  # noqa: PLC0415 - distributed only

    from bot.service.distributed.roles import serve_roles  # noqa: PLC0415 - distributed only
    from bot.service.distributed.shared import (  # noqa: PLC0415 - distributed only
        FleetPackumentCache,
        RequestBudget,
    )

    engine = create_engine(state.settings.resolved_database_url, pool_pre_ping=True)
    pipeline = state.pipeline(
        stop=stopping,
        packuments=FleetPackumentCache(engine, state.settings.packument_ttl),
        budget=RequestBudget(engine, state.settings.github_rate_budget, stop=stopping),
    )
    serve_roles(
        state.settings,
        pipeline,
        role=cast(Literal["all", "web", "worker", "scheduler"], role),
        stopping=stopping,
        on_ready=_serving,
    )


@main.command()
@click.option(
    "--from",
    "source",
    metavar="URL",
    help="Copy this database's audit trail (e.g. sqlite:///…/audit.sqlite3) into the new one, "
    "hash chain intact (the new one must hold no record).",
)
@click.pass_obj
def migrate(state: _State, source: str | None) -> None:
    """Create or complete the database schema: the audit trail, the service's tables and, on
    PostgreSQL, procrastinate's job queue (run once before starting the distributed roles)."""
    from bot.audit import AuditStore  # noqa: PLC0415 - SQLAlchemy only when recording
    from bot.service.distributed.migrate import copy_trail  # noqa: PLC0415
    from bot.service.distributed.migrate import migrate as apply  # noqa: PLC0415

    audit = state.audit()
    for line in apply(state.settings.resolved_database_url, audit):
        click.echo(line)
    if source is not None:
        origin = AuditStore(source)
        copied = copy_trail(origin, audit)
        click.echo(f"audit trail: {copied} records copied from {origin.location}")
        report = audit.verify()
        click.echo(f"audit trail: verify {'ok' if report.ok else 'FAILED'}")
        if not report.ok:
            raise VerificationFailed(
                f"audit database {audit.location}: the copied chain does not verify "
                f"({'; '.join(report.problems[:3])}); keep using {origin.location}"
            )
