"""The distributed mode against a real PostgreSQL (the session's `postgres` fixture), real
procrastinate workers as separate `rotation-bot serve --role …` processes, the GitHub-shaped
server and local bare git repositories.

Every wait is for an event (a log line, a recorded request, a row); nothing sleeps before a
negative assertion, and nothing is asserted about wall-clock time."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import httpx
import psycopg
import pytest

from bot.audit import AuditStore
from bot.config import Settings
from bot.models import RunRequest, Trigger
from bot.service.distributed.fleet import FleetQueue, conninfo, request_arguments, request_from
from bot.service.scheduler import job_id
from tests.conftest import Env, bot, make_project
from tests.service.test_serve import make_due
from tests.support.bot_process import BotProcess, start_bot
from tests.support.github_api import Fault, GitHubApi, RunningApi, start_github_api
from tests.support.postgres import Postgres
from tests.support.service import SECRET, comment_payload, deliver, wait_until

TOKEN = "ghp_distributed"
_SERVING = re.compile(r"serving on (http://\S+) ")


@dataclass
class Fleet:
    """A database with the schema applied, a GitHub-shaped server and the processes started."""

    tmp: Path
    env: Env
    database_url: str
    running: RunningApi
    processes: list[BotProcess] = field(default_factory=list)

    @property
    def api(self) -> GitHubApi:
        return self.running.api

    def environ(self, name: str, **extra: str) -> dict[str, str]:
        """The environment of one process (its own state directory, as on its own machine)."""
        return {
            **self.env.variables(),
            "ROTATION_BOT_STATE_DIR": str(self.tmp / name / "state"),
            "ROTATION_BOT_DATABASE_URL": self.database_url,
            "ROTATION_BOT_GITHUB_URL": self.api.api_url,
            "ROTATION_BOT_GITHUB_TOKEN": TOKEN,
            "ROTATION_BOT_WEBHOOK_SECRET": SECRET,
            "ROTATION_BOT_WORKER_HEARTBEAT": "1s",
            "ROTATION_BOT_LISTEN": "127.0.0.1:0",
            **extra,
        }

    def start(self, name: str, role: str, **extra: str) -> BotProcess:
        """`rotation-bot serve --role ROLE`, once it says it is serving."""
        process = start_bot(
            self.tmp / name, self.environ(name, **extra), "-v", "serve", "--role", role
        )
        self.processes.append(process)
        process.wait_for_output("rotation-bot: serving", timeout=60)
        return process

    def repository(self, name: str) -> Path:
        """A sharp 0.33.4 project served by the API as `octo/NAME` from a local bare clone (over
        git's HTTP protocol, with the token, as GitHub serves it)."""
        project = self.tmp / "projects" / name
        make_project(project, self.env)
        bare = self.tmp / "bare" / f"{name}.git"
        git.Repo.clone_from(project, bare, bare=True)
        self.api.add_repository(f"octo/{name}", bare)
        return bare

    def queue(self) -> FleetQueue:
        return FleetQueue(self.database_url)

    def rows(self, query: str, *parameters: object) -> list[tuple[object, ...]]:
        with psycopg.connect(conninfo(self.database_url)) as connection:
            return connection.execute(query, parameters).fetchall()  # type: ignore[arg-type]


@pytest.fixture
def fleet(tmp_path: Path, env: Env, postgres: Postgres) -> Iterator[Fleet]:
    database_url = postgres.create_database(f"fleet_{uuid.uuid4().hex[:12]}")
    env.extra["ROTATION_BOT_DATABASE_URL"] = database_url
    result = bot(env, "migrate")
    assert result.exit_code == 0, result.output
    assert "job queue (procrastinate): schema applied" in result.output
    running = start_github_api(tmp_path / "github")
    running.api.add_token(TOKEN, login="rotation-bot")
    fleet = Fleet(tmp_path, env, database_url, running)
    try:
        yield fleet
    finally:
        for process in fleet.processes:
            if process.process.poll() is None:
                os.killpg(process.process.pid, signal.SIGKILL)
                process.process.wait(10)
        running.stop()


def chat_request(repo: str, target: str | None = "0.33.5") -> RunRequest:
    return RunRequest(
        repo=repo,
        trigger=Trigger(kind="chat", actor="alice"),
        runbooks=("sharp",),
        target=target,
    )


def runs_of(fleet: Fleet, repo: str) -> list[dict[str, object]]:
    return [
        run for run in AuditStore(fleet.database_url).list_runs(limit=100) if run["repo"] == repo
    ]


def test_one_repository_rotates_on_one_worker_at_a_time_and_a_duplicate_is_refused(
    fleet: Fleet,
) -> None:
    fleet.repository("app")
    # The first rotation stays in the middle (its pull-request lookup answers late) until the
    # test has looked at the queue.
    fleet.api.inject(Fault.timeout("GET", "/repos/octo/app/pulls", seconds=6, perform=True))
    first, second = fleet.start("w1", "worker"), fleet.start("w2", "worker")
    queue = fleet.queue()
    try:
        assert queue.submit(chat_request("octo/app"), if_busy="wait") == "queued"
        wait_until(
            lambda: fleet.api.requests_matching("GET", "/repos/octo/app/pulls"),
            timeout=120,
            message="the first rotation to reach its pull-request lookup",
        )
        # Another request for the same repository waits for the lock however many workers
        # are idle; the same request again is refused while it waits.
        later = chat_request("octo/app", target=None)
        assert queue.submit(later, if_busy="wait") == "queued"
        assert queue.submit(later, if_busy="wait") == "already-queued"
        activity = queue.activity("octo/app")
        assert activity.running == chat_request("octo/app")
        assert activity.queued == (later,)
        # A chat command for a repository that is rotating is answered "already running".
        assert queue.submit(chat_request("octo/app", "0.33.6"), if_busy="reject") == (
            "already-running"
        )
        wait_until(
            lambda: (first.output() + second.output()).count("job done repo=octo/app") == 2,
            timeout=180,
            message="both rotations to finish",
        )
    finally:
        queue.close()
    # The audit trail shows the two requests' runs one after the other, never overlapping.
    runs = sorted(runs_of(fleet, "octo/app"), key=lambda run: str(run["started_at"]))
    for earlier, later_run in itertools.pairwise(runs):
        assert str(earlier["finished_at"]) <= str(later_run["started_at"]), runs
    assert (runs[0]["target"], runs[0]["outcome"]) == ("0.33.5", "proposed"), runs
    assert [pull.head for pull in fleet.api.pulls("octo/app") if "0.33.5" in pull.head] == [
        "rotation-bot/sharp-0.33.5"
    ]


def test_one_worker_process_runs_rotations_of_two_repositories_at_once(fleet: Fleet) -> None:
    """`ROTATION_BOT_WORKER_CONCURRENCY=2`: while one rotation waits on GitHub, the same process
    starts the next repository's (with one at a time, the second would wait for the first)."""
    fleet.repository("slow")
    fleet.repository("quick")
    gate = threading.Event()
    fleet.api.inject(Fault.held("GET", "/repos/octo/slow/pulls", gate))
    worker = fleet.start("w1", "worker", ROTATION_BOT_WORKER_CONCURRENCY="2")
    queue = fleet.queue()
    try:
        assert queue.submit(chat_request("octo/slow"), if_busy="wait") == "queued"
        wait_until(
            lambda: fleet.api.requests_matching("GET", "/repos/octo/slow/pulls"),
            timeout=120,
            message="the first rotation to wait on its pull-request lookup",
        )
        assert queue.submit(chat_request("octo/quick"), if_busy="wait") == "queued"
        worker.wait_for_output("rotation started repo=octo/quick", timeout=60)
        assert "job done repo=octo/slow" not in worker.output()  # still held: both at once
    finally:
        gate.set()
        queue.close()
    wait_until(
        lambda: worker.output().count("job done repo=octo/") == 2,
        timeout=180,
        message="both rotations to finish",
    )


def test_a_killed_worker_s_rotation_is_retried_elsewhere_once(fleet: Fleet) -> None:
    fleet.repository("app")
    # Whichever worker takes the job hangs in its pull-request lookup: it is killed there.
    fleet.api.inject(Fault.timeout("GET", "/repos/octo/app/pulls", seconds=60, perform=False))
    workers = [fleet.start("w1", "worker"), fleet.start("w2", "worker")]
    queue = fleet.queue()
    try:
        assert queue.submit(chat_request("octo/app"), if_busy="wait") == "queued"
    finally:
        queue.close()
    wait_until(
        lambda: fleet.api.requests_matching("GET", "/repos/octo/app/pulls"),
        timeout=120,
        message="a worker to reach the pull-request lookup",
    )
    (victim,) = [w for w in workers if "rotation started repo=octo/app" in w.output()]
    (survivor,) = [w for w in workers if w is not victim]
    os.killpg(victim.process.pid, signal.SIGKILL)  # the machine is gone: no cleanup at all
    victim.process.wait(10)
    survivor.wait_for_output("job done repo=octo/app", timeout=180)

    assert "job of a worker that stopped sending heartbeats retried" in survivor.output()
    (pull,) = fleet.api.pulls("octo/app")
    assert pull.head == "rotation-bot/sharp-0.33.5"
    runs = runs_of(fleet, "octo/app")
    outcomes = sorted(str(run["outcome"]) for run in runs)
    assert outcomes == ["interrupted", "proposed"], runs
    result = bot(fleet.env, "audit", "verify")
    assert result.exit_code == 0, result.output


def test_two_schedulers_enqueue_a_due_cycle_once(fleet: Fleet, tmp_path: Path) -> None:
    project = tmp_path / "local-app"
    make_project(project, fleet.env)
    extra = {"ROTATION_BOT_REPOSITORIES": str(project)}
    first = fleet.start("s0", "scheduler", **extra)
    first.wait_for_output("scheduler leader", timeout=60)
    first.wait_for_output("job added", timeout=60)
    first.signal(signal.SIGTERM)
    assert first.finish() == 0
    settings = Settings(database_url=fleet.database_url)
    job = job_id(str(project), "sharp")
    slot = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    make_due(settings, job, slot)

    schedulers = [fleet.start("s1", "scheduler", **extra), fleet.start("s2", "scheduler", **extra)]
    wait_until(
        lambda: any("scheduled rotation answer=queued" in s.output() for s in schedulers),
        timeout=60,
        message="the active scheduler to enqueue the due cycle",
    )
    (leader,) = [s for s in schedulers if "scheduler leader" in s.output()]
    (standby,) = [s for s in schedulers if s is not leader]
    assert "scheduler standby" in standby.output()
    stamp = int(slot.timestamp())
    jobs = fleet.rows(
        "SELECT count(*) FROM procrastinate_jobs WHERE (args->>'timestamp')::bigint = %s", stamp
    )
    assert jobs == [(1,)]
    # Even asked again for the same slot (a second scheduler firing it), the queue adds nothing.
    queue = fleet.queue()
    try:
        request = RunRequest(
            str(project), Trigger(kind="schedule", actor="schedule"), runbooks=("sharp",)
        )
        assert queue.defer_slot(request, job, slot) in ("slot-already-enqueued", "already-queued")
    finally:
        queue.close()
    assert fleet.rows("SELECT count(*) FROM procrastinate_jobs") == [(1,)]


def test_a_scheduler_failover_loses_no_cycle_and_repeats_none(fleet: Fleet, tmp_path: Path) -> None:
    project = tmp_path / "local-app"
    make_project(project, fleet.env)
    extra = {"ROTATION_BOT_REPOSITORIES": str(project)}
    settings = Settings(database_url=fleet.database_url)
    sharp, base = job_id(str(project), "sharp"), job_id(str(project), "base-image")
    setup = fleet.start("s0", "scheduler", **extra)
    setup.wait_for_output("job added", timeout=60)
    setup.signal(signal.SIGTERM)
    assert setup.finish() == 0
    first_slot = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    make_due(settings, sharp, first_slot)
    active = fleet.start("a", "scheduler", **extra)
    active.wait_for_output(f"job={sharp} slot=", timeout=60)
    # The active scheduler dies as if between enqueueing a slot and recording its next fire
    # time: the job table still says the first slot is due.  Meanwhile another job's slot comes
    # due with no scheduler running.
    os.killpg(active.process.pid, signal.SIGKILL)
    active.process.wait(10)
    second_slot = first_slot + timedelta(minutes=5)
    make_due(settings, sharp, first_slot)
    make_due(settings, base, second_slot)

    successor = fleet.start("b", "scheduler", **extra)
    successor.wait_for_output("scheduler leader", timeout=60)
    successor.wait_for_output(f"job={base} slot=", timeout=60)
    successor.wait_for_output(f"job={sharp} slot=", timeout=60)
    assert (
        f"answer=slot-already-enqueued job={sharp} slot={first_slot.isoformat()}"
        in successor.output()
    )
    assert f"answer=queued job={base} slot={second_slot.isoformat()}" in successor.output()
    counts = dict(
        fleet.rows(
            "SELECT args->'request'->'runbooks'->>0, count(*) FROM procrastinate_jobs GROUP BY 1"
        )
    )
    assert counts == {"sharp": 1, "base-image": 1}


def test_a_replayed_delivery_across_two_web_replicas_is_handled_once(fleet: Fleet) -> None:
    fleet.repository("app")
    api = fleet.api
    api.set_permission("octo/app", "alice", "write")
    issue = api.add_issue("octo/app", title="Rotate please", user="alice")
    comment = api.add_comment("octo/app", issue, user="alice", body="/rotate sharp 0.33.5")
    extra = {"ROTATION_BOT_REPOSITORIES": "octo/app"}
    replicas = [fleet.start("web1", "web", **extra), fleet.start("web2", "web", **extra)]
    urls = [_SERVING.search(replica.output()).group(1) for replica in replicas]  # type: ignore[union-attr]
    payload = comment_payload("/rotate sharp 0.33.5", login="alice")
    payload["repository"]["full_name"] = "octo/app"
    payload["issue"]["number"] = issue
    payload["comment"]["id"] = comment
    delivery = str(uuid.uuid4())
    with httpx.Client(timeout=10) as client:
        answers = [deliver(client, url, payload, delivery=delivery).json() for url in urls]
        again = deliver(client, urls[0], payload, delivery=delivery).json()
    assert sorted(answer["result"] for answer in answers) == ["accepted", "duplicate"]
    assert again["result"] == "duplicate"
    wait_until(
        lambda: fleet.rows("SELECT args FROM procrastinate_jobs"),
        timeout=30,
        message="the accepted command to be enqueued",
    )
    jobs = fleet.rows("SELECT args FROM procrastinate_jobs")
    assert len(jobs) == 1
    assert [c for _, _, c in api.repository("octo/app").reactions] == ["eyes"]
    (arguments,) = jobs[0]
    assert isinstance(arguments, dict)
    assert arguments["request"]["target"] == "0.33.5"
    assert arguments["answer"]["comment_id"] == comment
    assert json.dumps(arguments).count(TOKEN) == 0
    # No worker runs here: either replica's /metrics reads the fleet's queue from PostgreSQL.
    with httpx.Client(timeout=10) as client:
        assert client.get(urls[0] + "/healthz").json() == {"status": "ok"}
        metrics = client.get(urls[1] + "/metrics").text
    assert "rotation_bot_queue_depth 1.0" in metrics.splitlines()
    assert "rotation_bot_runs_in_progress 0.0" in metrics.splitlines()


def test_serve_without_a_role_runs_web_scheduler_and_worker_in_one_process(fleet: Fleet) -> None:
    fleet.repository("app")
    api = fleet.api
    api.set_permission("octo/app", "alice", "write")
    issue = api.add_issue("octo/app", title="Rotate please", user="alice")
    comment = api.add_comment("octo/app", issue, user="alice", body="/rotate sharp 0.33.5")
    environ = fleet.environ("all", ROTATION_BOT_REPOSITORIES="octo/app")
    process = start_bot(fleet.tmp / "all", environ, "-v", "serve")  # --role all by default
    fleet.processes.append(process)
    process.wait_for_output("rotation-bot: serving", timeout=60)
    process.wait_for_output("scheduler leader", timeout=60)
    url = _SERVING.search(process.output()).group(1)  # type: ignore[union-attr]
    payload = comment_payload("/rotate sharp 0.33.5", login="alice")
    payload["repository"]["full_name"] = "octo/app"
    payload["issue"]["number"] = issue
    payload["comment"]["id"] = comment
    with httpx.Client(timeout=10) as client:
        assert deliver(client, url, payload).json()["result"] == "accepted"
    process.wait_for_output("job done repo=octo/app", timeout=180)

    (pull,) = api.pulls("octo/app")
    assert pull.head == "rotation-bot/sharp-0.33.5"
    # The worker that ran the job answered the comment the web side accepted.
    wait_until(
        lambda: [c for c in api.comments_on("octo/app", issue) if c.user == "rotation-bot"],
        timeout=30,
        message="the answer to the command",
    )
    (answer,) = [c for c in api.comments_on("octo/app", issue) if c.user == "rotation-bot"]
    assert answer.body.startswith("@alice rotation finished:"), answer.body
    assert [c for _, _, c in api.repository("octo/app").reactions] == ["eyes", "+1"]
    assert fleet.rows("SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'rotations'") == [
        (0,)
    ]


def test_a_rotate_explain_reaches_a_worker_with_its_action_and_is_answered_through_the_forge(
    fleet: Fleet,
) -> None:
    fleet.repository("app")
    api = fleet.api
    api.set_permission("octo/app", "alice", "write")
    issue = api.add_issue("octo/app", title="Why?", user="alice")
    comment = api.add_comment("octo/app", issue, user="alice", body="/rotate explain sharp")
    web = fleet.start("web", "web", ROTATION_BOT_REPOSITORIES="octo/app")
    url = _SERVING.search(web.output()).group(1)  # type: ignore[union-attr]
    # A plain rotation of the same runbook already waits: the explanation is other work, so it
    # is queued beside it, not refused as "already queued".
    queue = fleet.queue()
    try:
        plain = RunRequest("octo/app", Trigger(kind="schedule", actor="schedule"), ("sharp",))
        assert queue.submit(plain, if_busy="wait") == "queued"
    finally:
        queue.close()
    payload = comment_payload("/rotate explain sharp", login="alice")
    payload["repository"]["full_name"] = "octo/app"
    payload["issue"]["number"] = issue
    payload["issue"].pop("pull_request", None)
    payload["comment"]["id"] = comment
    with httpx.Client(timeout=10) as client:
        assert deliver(client, url, payload).json()["result"] == "accepted"
    wait_until(
        lambda: len(fleet.rows("SELECT id FROM procrastinate_jobs")) == 2,
        timeout=30,
        message="the explanation to be enqueued beside the plain rotation",
    )
    jobs = fleet.rows("SELECT args, queueing_lock FROM procrastinate_jobs ORDER BY id")
    assert [(args["request"]["action"], lock) for args, lock in jobs] == [  # type: ignore[index]
        ("rotate", "octo/app|sharp|"),
        ("explain", "octo/app|sharp||explain"),
    ]
    assert "answer" in jobs[1][0]  # type: ignore[operator]

    worker = fleet.start("w1", "worker")
    wait_until(
        lambda: worker.output().count("job done repo=octo/app") == 2,
        timeout=240,
        message="the explanation and the rotation",
    )
    # The worker ran the explanation as one (chat work first: before the scheduled rotation),
    # and answered the comment through its forge.
    runs = sorted(runs_of(fleet, "octo/app"), key=lambda run: str(run["started_at"]))
    assert [(run["trigger"], run["outcome"]) for run in runs] == [
        ("chat", "explained"),
        ("schedule", "proposed"),  # the patch
        ("schedule", "proposed"),  # the minor
    ], runs
    (answer,) = [c for c in api.comments_on("octo/app", issue) if c.user == "rotation-bot"]
    assert answer.body.startswith("@alice explanation finished:"), answer.body
    assert "0.33.6: would open a pull request" in answer.body, answer.body
    assert [c for _, _, c in api.repository("octo/app").reactions] == ["eyes", "+1"]
    # Only the plain rotation opened pull requests.
    assert sorted(pull.head for pull in api.pulls("octo/app")) == [
        "rotation-bot/sharp-0.33.6",
        "rotation-bot/sharp-0.34.1",
    ]


def test_a_job_s_action_travels_with_it_and_is_checked_when_read_back() -> None:
    rebase = dataclasses.replace(chat_request("octo/app"), action="rebase")
    arguments = request_arguments(rebase)
    assert request_from(json.loads(json.dumps(arguments))) == rebase
    # a job enqueued before requests had an action is a plain rotation
    earlier = {key: value for key, value in arguments.items() if key != "action"}
    assert request_from(earlier) == chat_request("octo/app")
    with pytest.raises(ValueError, match="unknown action 'delete'"):
        request_from({**arguments, "action": "delete"})


def test_serve_roles_need_postgresql(env: Env) -> None:
    result = bot(env, "serve", "--role", "worker")
    assert result.exit_code == 2
    assert "--role worker needs the distributed mode" in result.output


def test_chat_commands_go_before_scheduled_work(fleet: Fleet) -> None:
    for name in ("app", "cron", "chat"):
        fleet.repository(name)
    # The only worker is busy with `app` while the other two requests arrive.
    fleet.api.inject(Fault.timeout("GET", "/repos/octo/app/pulls", seconds=5, perform=True))
    worker = fleet.start("w1", "worker")
    queue = fleet.queue()
    try:
        assert queue.submit(chat_request("octo/app"), if_busy="wait") == "queued"
        wait_until(
            lambda: fleet.api.requests_matching("GET", "/repos/octo/app/pulls"),
            timeout=120,
            message="the worker to be busy",
        )
        scheduled = RunRequest("octo/cron", Trigger(kind="schedule", actor="schedule"))
        assert queue.submit(scheduled, if_busy="wait") == "queued"
        assert queue.submit(chat_request("octo/chat"), if_busy="wait") == "queued"
    finally:
        queue.close()
    wait_until(
        lambda: worker.output().count("job done repo=") == 3,
        timeout=240,
        message="the three jobs",
    )
    started = [
        line.split("repo=")[1].split()[0]
        for line in worker.output().splitlines()
        if "rotation started repo=" in line
    ]
    assert started == ["octo/app", "octo/chat", "octo/cron"]


def test_a_transient_failure_is_retried_with_backoff(fleet: Fleet) -> None:
    fleet.repository("app")
    # GitHub answers 502 to every attempt the forge makes to read the repository, once.
    fleet.api.inject(
        Fault.respond("GET", "/repos/octo/app", 502, {"message": "Bad Gateway"}, times=4)
    )
    worker = fleet.start("w1", "worker")
    queue = fleet.queue()
    try:
        assert queue.submit(chat_request("octo/app"), if_busy="wait") == "queued"
    finally:
        queue.close()
    worker.wait_for_output("rotation will be retried attempt=1", timeout=120)
    worker.wait_for_output("job done repo=octo/app", timeout=180)
    runs = sorted(runs_of(fleet, "octo/app"), key=lambda run: str(run["started_at"]))
    assert [run["outcome"] for run in runs] == ["error", "proposed"], runs
    (pull,) = fleet.api.pulls("octo/app")
    assert pull.head == "rotation-bot/sharp-0.33.5"
