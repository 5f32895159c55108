"""The work queue and repository locks: one rotation per repository, whatever the trigger."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.audit import AuditStore
from bot.cancellation import check
from bot.errors import StepFailed
from bot.models import RunRequest, RunSummary, Trigger
from bot.service.locks import RepositoryBusy, RepositoryLocks, repository_key
from bot.service.metrics import Metrics
from bot.service.workqueue import WorkQueue, WorkResult, close_abandoned_runs
from tests.support.service import RecordingRunner, wait_until

ROOT = Path(__file__).resolve().parents[2]


def request(
    repo: str,
    kind: str = "schedule",
    runbooks: tuple[str, ...] | None = ("sharp",),
    target: str | None = None,
) -> RunRequest:
    return RunRequest(
        repo=repo,
        trigger=Trigger(kind=kind, actor=f"{kind}-actor"),  # type: ignore[arg-type]
        runbooks=runbooks,
        target=target,
    )


class Queue:
    def __init__(
        self, tmp_path: Path, *, workers: int = 3, capacity: int = 32, seconds: float = 0.0
    ) -> None:
        self.locks = RepositoryLocks(tmp_path / "locks")
        self.runner = RecordingRunner(seconds=seconds)
        self.metrics = Metrics()
        self.queue = WorkQueue(
            self.runner, locks=self.locks, metrics=self.metrics, workers=workers, capacity=capacity
        )
        self.results: list[WorkResult] = []
        self.queue.start()

    def done(self, result: WorkResult) -> None:
        self.results.append(result)


@pytest.fixture
def q(tmp_path: Path) -> Iterator[Queue]:
    value = Queue(tmp_path)
    try:
        yield value
    finally:
        value.queue.stop(5)


def hold_lock_in_another_process(
    locks: RepositoryLocks, repo: str, seconds: float, marker: Path
) -> subprocess.Popen[bytes]:
    """A separate process (like `rotation-bot run`) holding `repo`'s lock for `seconds`; it
    writes `marker` once it holds the lock and appends its release time when it lets go."""
    code = (
        "import sys, time; from pathlib import Path; from bot.service.locks import RepositoryLocks\n"
        "locks = RepositoryLocks(Path(sys.argv[1]))\n"
        "with locks.hold(sys.argv[2]):\n"
        "    Path(sys.argv[4]).write_text('held\\n')\n"
        "    time.sleep(float(sys.argv[3]))\n"
        "    released = time.monotonic()\n"
        "Path(sys.argv[4]).write_text(f'held\\n{released}\\n')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(locks.directory), repo, str(seconds), str(marker)],
        cwd=ROOT,
        start_new_session=True,
    )
    wait_until(marker.exists, message="the other process to take the lock")
    return process


# --- locks -----------------------------------------------------------------------------------


def test_lock_is_exclusive_between_threads_and_reentrant_within_one(tmp_path: Path) -> None:
    locks = RepositoryLocks(tmp_path / "locks")
    outcome: list[str] = []
    with locks.hold("octo/app"):
        with locks.hold("Octo/App"):  # same repository, same thread: re-entrant
            outcome.append("nested")

        def other() -> None:
            try:
                with locks.hold("octo/app", timeout=0.2):
                    outcome.append("other thread got it")
            except RepositoryBusy as error:
                outcome.append(error.slug)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert locks.is_busy("octo/app") is False  # this thread holds it: not busy for us
    assert outcome == ["nested", "busy"]
    with locks.hold("octo/app", timeout=0):
        pass


def test_a_checkout_is_one_repository_however_its_path_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "app").mkdir()
    monkeypatch.chdir(tmp_path)
    assert (
        repository_key("app")
        == repository_key(str(tmp_path / "app"))
        == repository_key(f"{tmp_path}/./app/")
    )
    assert repository_key("Octo/App") == "octo/app"
    assert repository_key("https://example.com/Octo/App.git") == "https://example.com/Octo/App.git"
    locks = RepositoryLocks(tmp_path / "locks")
    assert locks.path("app") == locks.path(str(tmp_path / "app"))


def test_lock_excludes_another_process_and_names_the_lock(tmp_path: Path) -> None:
    locks = RepositoryLocks(tmp_path / "locks")
    process = hold_lock_in_another_process(locks, "octo/app", 0.6, tmp_path / "marker")
    try:
        assert locks.is_busy("octo/app") and not locks.is_busy("octo/api")
        with pytest.raises(RepositoryBusy) as caught, locks.hold("octo/app", timeout=0.1):
            pass
        assert str(locks.path("octo/app")) in caught.value.message
        assert caught.value.exit_code == 3
        with locks.hold("octo/app", timeout=10):  # waits for the other process
            assert "\n" in (tmp_path / "marker").read_text().strip()
    finally:
        process.wait(10)


def test_waiting_for_a_lock_gives_up_when_told_to_stop(tmp_path: Path) -> None:
    locks = RepositoryLocks(tmp_path / "locks")
    stop = threading.Event()
    with locks.hold("octo/app"):
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                with locks.hold("octo/app", timeout=-1, stop=stop):
                    pass
            except RepositoryBusy as error:
                errors.append(error)

        thread = threading.Thread(target=wait)
        thread.start()
        thread.join(5)
    assert len(errors) == 1 and time.monotonic() - started < 2


# --- the queue -------------------------------------------------------------------------------


def test_no_interleaving_per_repository_under_concurrent_triggers(tmp_path: Path) -> None:
    q = Queue(tmp_path, workers=4, capacity=200, seconds=0.02)
    repos = ("octo/app", "octo/api", "octo/web")
    answers: list[str] = []
    barrier = threading.Barrier(12)

    def trigger(index: int) -> None:
        barrier.wait()
        for round_ in range(6):
            kind = ("schedule", "chat", "cli")[(index + round_) % 3]
            answers.append(
                q.queue.submit(
                    request(repos[(index + round_) % 3], kind, runbooks=(f"r{index}-{round_}",)),
                    if_busy="wait",
                    on_done=q.done,
                )
            )

    threads = [threading.Thread(target=trigger, args=(index,)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = q.runner.wait_for_calls(answers.count("queued"), timeout=20)
    q.queue.stop(5)

    assert answers.count("queued") == 72 and len(calls) == 72 and len(q.results) == 72
    for repo in repos:
        spans = sorted((call.started, call.finished) for call in calls if call.request.repo == repo)
        assert len(spans) == 24
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"two rotations of {repo} overlapped"
    # Different repositories did run at the same time, so the check above means something.
    every = sorted((call.started, call.finished, call.request.repo) for call in calls)
    assert any(
        later[0] < earlier[1] and later[2] != earlier[2]
        for earlier, later in itertools.pairwise(every)
    )


def test_busy_repository_rejects_chat_and_queues_the_schedule(q: Queue) -> None:
    gate = q.runner.hold("octo/app")
    assert q.queue.submit(request("octo/app", "chat"), if_busy="reject") == "queued"
    assert q.runner.entered.wait(5)
    assert (
        q.queue.submit(request("octo/app", "chat", ("base-image",)), if_busy="reject")
        == "already-running"
    )
    assert q.queue.submit(request("octo/app"), if_busy="wait", on_done=q.done) == "queued"
    assert q.queue.submit(request("octo/app"), if_busy="wait") == "already-queued"
    assert q.queue.submit(request("octo/api", "chat"), if_busy="reject") == "queued"
    activity = q.queue.activity("OCTO/APP")
    assert activity.running is not None and activity.running.trigger.kind == "chat"
    assert [item.trigger.kind for item in activity.queued] == ["schedule"]
    gate.set()
    calls = q.runner.wait_for_calls(3)
    order = [
        (call.request.repo, call.request.trigger.kind)
        for call in calls
        if call.request.repo == "octo/app"
    ]
    assert order == [("octo/app", "chat"), ("octo/app", "schedule")]


def test_an_action_is_queued_beside_a_plain_rotation_of_the_same_runbooks(q: Queue) -> None:
    gate = q.runner.hold("octo/app")
    assert q.queue.submit(request("octo/app", "chat"), if_busy="reject") == "queued"
    assert q.runner.entered.wait(5)
    plain = request("octo/app")
    explain = dataclasses.replace(plain, action="explain")
    assert q.queue.submit(plain, if_busy="wait") == "queued"
    assert q.queue.submit(explain, if_busy="wait") == "queued"
    assert q.queue.submit(explain, if_busy="wait") == "already-queued"
    gate.set()
    calls = q.runner.wait_for_calls(3)
    assert [call.request.action for call in calls] == ["rotate", "rotate", "explain"]


def test_a_rotation_running_in_another_process_blocks_the_repository(
    q: Queue, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    process = hold_lock_in_another_process(q.locks, "octo/app", 0.5, marker)
    try:
        assert q.queue.submit(request("octo/app", "chat"), if_busy="reject") == "already-running"
        assert q.queue.submit(request("octo/app"), if_busy="wait") == "queued"
        (call,) = q.runner.wait_for_calls(1)
    finally:
        process.wait(10)
    released = float(marker.read_text().split()[1])
    assert call.started >= released, "the scheduled run started before the CLI run let go"


def test_queue_is_bounded(tmp_path: Path) -> None:
    q = Queue(tmp_path, workers=1, capacity=2)
    gate = q.runner.hold("octo/app")
    try:
        assert q.queue.submit(request("octo/app"), if_busy="wait") == "queued"
        assert q.runner.entered.wait(5)
        assert q.queue.submit(request("octo/b"), if_busy="wait") == "queued"
        assert q.queue.submit(request("octo/c"), if_busy="wait") == "queued"
        assert q.queue.submit(request("octo/d"), if_busy="wait") == "queue-full"
        metrics = q.metrics.registry
        assert metrics.get_sample_value("rotation_bot_queue_depth") == 2
        assert metrics.get_sample_value("rotation_bot_runs_in_progress") == 1
    finally:
        gate.set()
        q.queue.stop(5)


def test_failures_reach_the_callback_and_the_metrics(tmp_path: Path) -> None:
    q = Queue(tmp_path)
    q.runner.error = StepFailed("git fetch failed for octo/app")
    try:
        q.queue.submit(request("octo/app", "chat"), if_busy="reject", on_done=q.done)
        wait_until(lambda: len(q.results) == 1, message="the callback")
    finally:
        q.queue.stop(5)
    (result,) = q.results
    assert result.error == "git fetch failed for octo/app" and result.started
    assert (
        q.metrics.registry.get_sample_value(
            "rotation_bot_runs_total", {"trigger": "chat", "outcome": "error"}
        )
        == 1
    )


class _Crawling(RecordingRunner):
    """A rotation that keeps checking for cancellation, as downloads do between chunks."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        super().__init__()
        self.stop = stop

    def run(self, request: RunRequest) -> list[RunSummary]:
        self.entered.set()
        for _ in range(600):
            check(self.stop)
            time.sleep(0.05)
        return super().run(request)


def test_a_request_past_the_run_timeout_ends_with_that_reason(tmp_path: Path) -> None:
    queue = WorkQueue(
        _Crawling(), locks=RepositoryLocks(tmp_path), metrics=Metrics(), run_timeout=0.5
    )
    results: list[WorkResult] = []
    queue.start()
    try:
        queue.submit(request("octo/app"), if_busy="wait", on_done=results.append)
        wait_until(lambda: len(results) == 1, timeout=20, message="the request to end")
    finally:
        queue.stop(5)
    (result,) = results
    assert result.error == (
        "the run took longer than its 0.5s deadline (ROTATION_BOT_RUN_TIMEOUT); stopped, nothing "
        "was published"
    )
    assert not result.interrupted  # a late run is a failure, not a cycle to run again


def test_a_request_cancelled_by_shutdown_is_handed_back_as_interrupted(tmp_path: Path) -> None:
    stopping = threading.Event()
    runner = _Crawling(stopping)
    queue = WorkQueue(runner, locks=RepositoryLocks(tmp_path), metrics=Metrics(), stopping=stopping)
    results: list[WorkResult] = []
    queue.start()
    queue.submit(request("octo/app"), if_busy="wait", on_done=results.append)
    assert runner.entered.wait(10)

    assert queue.stop(20) == []  # cancelled, not waited out

    (result,) = results
    assert result.interrupted and result.started and runner.calls == []


def test_outcomes_and_step_durations_are_counted(q: Queue) -> None:
    q.queue.submit(request("octo/app", runbooks=None), if_busy="wait", on_done=q.done)
    wait_until(lambda: len(q.results) == 1, message="the run")
    registry = q.metrics.registry
    assert (
        registry.get_sample_value(
            "rotation_bot_runs_total", {"trigger": "schedule", "outcome": "proposed"}
        )
        == 2
    )
    assert registry.get_sample_value(
        "rotation_bot_step_duration_seconds_sum", {"step": "bump-overrides", "status": "passed"}
    ) == pytest.approx(3.0)


def test_stop_takes_no_work_hands_back_the_queue_and_waits_for_the_running(
    tmp_path: Path,
) -> None:
    q = Queue(tmp_path, workers=1)
    gate = q.runner.hold("octo/app")
    q.queue.submit(request("octo/app"), if_busy="wait", on_done=q.done)
    assert q.runner.entered.wait(5)
    q.queue.submit(request("octo/api", "chat"), if_busy="reject", on_done=q.done)
    threading.Timer(0.3, gate.set).start()

    still = q.queue.stop(5)

    assert still == []
    assert q.queue.submit(request("octo/web"), if_busy="wait") == "stopping"
    by_repo = {result.request.repo: result for result in q.results}
    assert by_repo["octo/api"].started is False and by_repo["octo/api"].interrupted
    assert by_repo["octo/app"].started and not by_repo["octo/app"].interrupted
    assert [call.request.repo for call in q.runner.calls] == ["octo/app"]


def test_stop_reports_what_outlives_the_grace_period(tmp_path: Path) -> None:
    q = Queue(tmp_path, workers=1)
    gate = q.runner.hold("octo/app")
    q.queue.submit(request("octo/app"), if_busy="wait")
    assert q.runner.entered.wait(5)
    started = time.monotonic()
    still = q.queue.stop(0.3)
    gate.set()
    assert [item.repo for item in still] == ["octo/app"]
    assert time.monotonic() - started < 2


# --- runs a killed process left open ---------------------------------------------------------


def test_runs_left_open_by_a_killed_service_are_marked_interrupted(tmp_path: Path) -> None:
    audit = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    locks = RepositoryLocks(tmp_path / "locks")
    stale = audit.start_run(repo="octo/app", runbook="sharp", trigger="schedule", actor="schedule")
    live = audit.start_run(repo="octo/api", runbook="sharp", trigger="chat", actor="alice")
    cli = audit.start_run(repo="octo/web", runbook="sharp", trigger="cli", actor="tester")
    done = audit.start_run(repo="octo/app", runbook="sharp", trigger="chat", actor="bob")
    audit.finish_run(done, outcome="proposed", message="ok")
    process = hold_lock_in_another_process(locks, "octo/api", 2, tmp_path / "marker")
    try:
        closed = close_abandoned_runs(audit, locks)
    finally:
        process.kill()
        process.wait(10)

    assert closed == [stale]
    runs = {run["id"]: run for run in audit.list_runs()}
    assert runs[stale]["outcome"] == "interrupted"
    assert runs[live]["outcome"] is None and runs[cli]["outcome"] is None
    assert runs[done]["outcome"] == "proposed"
    assert audit.verify().ok
