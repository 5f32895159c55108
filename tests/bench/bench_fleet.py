"""Benchmark (not a test): the distributed mode's throughput on this machine.

A fleet of repositories (local bare git repositories served by the GitHub-shaped server over
git's HTTP protocol), a private Verdaccio with the fake sharp family behind a counting proxy, a
real PostgreSQL, and `rotation-bot serve --role worker` processes:

- no-op cycle: every repository is at the newest sharp; one scheduled request each is enqueued
  and the wall time until the queue is empty is measured.  Per fleet size, one database: a cold
  cycle with the most workers (every repository cloned and checked in full, which leaves its
  no-op memo, bot/unchanged.py), then for each worker count fresh workers ("memo": nothing
  cloned, the memos answer) and the same workers again ("warm"); with registry requests per
  cycle (should equal the distinct packages the plans read), GitHub API calls and git HTTP
  requests per repository, and the outcomes (`unchanged` answers leave no audit run: they are
  counted from the memo table);
- wave: every repository of a smaller set is one patch behind (sharp 0.34.0 → 0.34.1); the
  rotations per minute with 1, 2, … workers, and with the one-process mode (`serve` without a
  database URL: SQLite and the in-process queue, its default two worker threads).

    .venv/bin/python -m tests.bench.bench_fleet [--repos 200,1000] [--workers 1,2,4] [--wave 24]
        [--rounds 1] [--concurrency 2] [--budget 4000] [--skip noop,wave,embedded]

Targets: a 200-repository no-op cycle within 10 s; rotations per minute at least 1.7x from one
worker to two.  The machine is shared: the load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from statistics import median

import git
import httpx
import psycopg

from bot.audit import AuditStore
from bot.config import Settings
from bot.forges.github import GitHubForge, GitHubOptions
from bot.models import RunRequest, Trigger
from bot.pipeline import Pipeline
from bot.runbook import DEFAULT_RUNBOOKS_DIR, load_runbooks
from bot.service.distributed.fleet import FleetQueue, conninfo
from bot.service.locks import RepositoryLocks
from bot.service.metrics import Metrics
from bot.service.workqueue import WorkQueue, WorkResult
from bot.services import build_services
from tests.conftest import Env, make_project, publish_family
from tests.support.bot_process import BotProcess, start_bot
from tests.support.github_api import GitHubApi, start_github_api
from tests.support.postgres import Postgres, start_postgres
from tests.support.verdaccio import start_verdaccio

TOKEN = "ghp_benchfleet"
NO_OP_CONFIG = "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n"
WAVE_CONFIG = NO_OP_CONFIG + "    major: false\n"
_GIT = re.compile(r"\.git/(info/refs|git-upload-pack|git-receive-pack)$")


class CountingProxy:
    """Forwards GETs to the registry and counts packument requests (everything but tarballs)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.packuments: list[str] = []
        self.lock = threading.Lock()
        # one client for every request: kept-alive connections to the registry, and no TLS
        # context built per request (what made the proxy, not the workers, the wave's limit)
        self.client = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=64))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                if not self.path.endswith(".tgz"):
                    with proxy.lock:
                        proxy.packuments.append(self.path)
                headers = {
                    key: value
                    for key, value in self.headers.items()
                    if key.lower() in ("accept", "authorization", "if-none-match", "npm-command")
                }
                answer = proxy.client.get(proxy.upstream + self.path, headers=headers)
                body = answer.content
                self.send_response(answer.status_code)
                for key in ("content-type", "etag", "last-modified"):
                    if key in answer.headers:
                        self.send_header(key, answer.headers[key])
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[str]:
        with self.lock:
            taken, self.packuments = self.packuments, []
        return taken


@dataclass
class Bench:
    root: Path
    env: Env
    api: GitHubApi
    postgres: Postgres
    proxy: CountingProxy
    budget: float
    concurrency: int

    def repositories(self, prefix: str, count: int, sharp: str, config: str) -> list[str]:
        """`count` repositories `fleet/<prefix>N`, bare clones of one project."""
        template = self.root / "templates" / prefix
        make_project(template, self.env, sharp=sharp, config=config)
        names = []
        for index in range(count):
            bare = self.root / "bare" / f"{prefix}{index}.git"
            git.Repo.clone_from(template, bare, bare=True)
            name = f"fleet/{prefix}{index}"
            self.api.add_repository(name, bare)
            names.append(name)
        return names

    def database(self, name: str) -> str:
        url = self.postgres.create_database(name)
        environ = {**self.env.variables(), "ROTATION_BOT_DATABASE_URL": url}
        process = start_bot(self.root / f"migrate-{name}", environ, "migrate")
        if process.finish(120) != 0:
            raise SystemExit(process.output())
        return url

    def workers(self, url: str, count: int, label: str) -> list[BotProcess]:
        started = []
        for index in range(count):
            name = f"{label}-w{index}"
            environ = {
                **self.env.variables(),
                "ROTATION_BOT_STATE_DIR": str(self.root / name / "state"),
                "ROTATION_BOT_DATABASE_URL": url,
                "ROTATION_BOT_GITHUB_URL": self.api.api_url,
                "ROTATION_BOT_GITHUB_TOKEN": TOKEN,
                "ROTATION_BOT_PACKUMENT_TTL": "30m",
                # the GitHub request budget (4000/h, bursts of 333, by default) is a deliberate
                # cap, not throughput: a cycle of more repositories than the burst waits for it
                "ROTATION_BOT_GITHUB_RATE_BUDGET": str(self.budget),
                "ROTATION_BOT_WORKER_CONCURRENCY": str(self.concurrency),
            }
            started.append(start_bot(self.root / name, environ, "serve", "--role", "worker"))
        for process in started:
            process.wait_for_output("rotation-bot: serving", timeout=120)
        return started


def stop(processes: list[BotProcess]) -> None:
    for process in processes:
        process.signal(signal.SIGTERM)
    for process in processes:
        process.finish(120)


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds used so far by the processes `roots` and all their descendants (live ones'
    own time plus what every process counted for the children it reaped), from /proc."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        stats[int(entry.name)] = (int(fields[1]), sum(int(value) for value in fields[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, stack, seen = 0, list(roots), set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        stack.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def run_ids(url: str) -> set[str]:
    return {str(run["id"]) for run in AuditStore(url).list_runs(limit=5000)}


def memo_hits(url: str) -> int:
    """Checks answered `unchanged` so far (they leave no audit run; bot/unchanged.py)."""
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT coalesce(sum(unchanged), 0) FROM rotation_bot_no_op_memos"
        ).fetchone()
    return int(row[0]) if row is not None else 0


def cycle(bench: Bench, url: str, names: list[str]) -> tuple[float, dict[str, int]]:
    """Enqueue one scheduled request per repository; (seconds until the queue is empty,
    outcomes of the runs it made)."""
    before = run_ids(url)
    hits = memo_hits(url)
    queue = FleetQueue(url)
    started = time.perf_counter()
    try:
        for name in names:
            request = RunRequest(name, Trigger(kind="schedule", actor="schedule"))
            if queue.submit(request, if_busy="wait") != "queued":
                raise SystemExit(f"{name} not queued")
        with psycopg.connect(conninfo(url), autocommit=True) as connection:
            while True:
                row = connection.execute(
                    "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = 'rotations' "
                    "AND status IN ('todo', 'doing')"
                ).fetchone()
                if row is not None and row[0] == 0:
                    break
                time.sleep(0.05)
        seconds = time.perf_counter() - started
    finally:
        queue.close()
    counts: dict[str, int] = {}
    if unchanged := memo_hits(url) - hits:
        counts["unchanged"] = unchanged
    for run in AuditStore(url).list_runs(limit=5000):
        if str(run["id"]) not in before:
            counts[str(run["outcome"])] = counts.get(str(run["outcome"]), 0) + 1
    return seconds, counts


def no_op(bench: Bench, repos: int, workers: list[int]) -> None:
    """One fleet of `repos` repositories and one database: a cold cycle with the most workers
    (every repository cloned and checked in full, leaving its no-op memo), then for each worker
    count fresh workers run a cycle (no clone: the memos answer) and a second one (warm)."""
    names = bench.repositories(f"n{repos}r", repos, "0.34.1", NO_OP_CONFIG)
    url = bench.database(f"noop_{repos}")
    runs = [(max(workers), ("cold",))] + [(count, ("memo", "warm")) for count in workers]
    for count, labels in runs:
        processes = bench.workers(url, count, f"noop-{repos}-{count}-{labels[0]}")
        try:
            for label in labels:
                measure(bench, url, names, processes, label)
        finally:
            stop(processes)


def measure(
    bench: Bench, url: str, names: list[str], processes: list[BotProcess], label: str
) -> None:
    """One no-op cycle, printed: wall time, requests, outcomes and CPU per repository (the
    workers', and everything's: workers, PostgreSQL, the GitHub-shaped server, its git)."""
    repos, workers = len(names), len(processes)
    pids = [process.process.pid for process in processes]
    bench.api.clear_requests()
    bench.proxy.take()
    cpu = tree_cpu(pids), tree_cpu([os.getpid()])
    seconds, counts = cycle(bench, url, names)
    worker_cpu = (tree_cpu(pids) - cpu[0]) / repos
    all_cpu = (tree_cpu([os.getpid()]) - cpu[1]) / repos
    packuments = bench.proxy.take()
    rest = [r for r in bench.api.requests if not _GIT.search(r.path)]
    git_requests = len(bench.api.requests) - len(rest)
    not_modified = sum(1 for r in rest if r.status == 304)
    kinds = Counter(f"{r.method} {re.sub(r'/repos/fleet/[^/]+', '/repos/R', r.path)}" for r in rest)
    print(
        f"no-op {repos:>5} repos  {workers} worker(s)  {label:>5}: {seconds:7.1f} s  "
        f"registry requests {len(packuments)} ({len(set(packuments))} distinct)  "
        f"GitHub API calls/repo {len(rest) / repos:.2f} ({not_modified} of them 304) "
        f"{dict(kinds)}  "
        f"git HTTP requests/repo {git_requests / repos:.1f}  outcomes {counts}  "
        f"CPU/repo workers {worker_cpu * 1000:.0f} ms, all {all_cpu * 1000:.0f} ms  {load()}",
        flush=True,
    )


def wave(bench: Bench, size: int, workers: int, round_: int) -> float:
    names = bench.repositories(f"v{size}w{workers}n{round_}r", size, "0.34.0", WAVE_CONFIG)
    url = bench.database(f"wave_{size}_{workers}_{round_}")
    processes = bench.workers(url, workers, f"wave-{size}-{workers}-{round_}")
    pids = [process.process.pid for process in processes]
    try:
        cpu = tree_cpu(pids), tree_cpu([os.getpid()])
        seconds, counts = cycle(bench, url, names)
        worker_cpu, all_cpu = tree_cpu(pids) - cpu[0], tree_cpu([os.getpid()]) - cpu[1]
    finally:
        stop(processes)
    rate = counts.get("proposed", 0) / seconds * 60
    print(
        f"wave  {size:>5} repos  {workers} worker(s): {seconds:7.1f} s  {rate:6.1f} rotations/min"
        f"  outcomes {counts}  CPU/rotation workers {worker_cpu / size:.1f} s, all "
        f"{all_cpu / size:.1f} s (all busy {all_cpu / seconds:.2f} cores)  {load()}",
        flush=True,
    )
    return rate


def wave_one_process(bench: Bench, size: int) -> float:
    """The same wave through the embedded mode's in-process queue (SQLite, two threads)."""
    names = bench.repositories(f"e{size}r", size, "0.34.0", WAVE_CONFIG)
    state = bench.root / "embedded"
    settings = Settings(
        github_url=bench.api.api_url,
        github_token=TOKEN,
        state_dir=state,
        tools_dir=bench.env.tools,
        database_url=f"sqlite:///{state / 'audit.sqlite3'}",
        release_notes_url="http://127.0.0.1:9",
    )
    audit = AuditStore(settings.resolved_database_url)
    forge = GitHubForge.from_settings(settings, options=GitHubOptions())
    pipeline = Pipeline(
        services=build_services(settings, bench.env.variables(), forge=forge),
        audit=audit,
        runbooks=load_runbooks(DEFAULT_RUNBOOKS_DIR),
    )
    queue = WorkQueue(pipeline, locks=RepositoryLocks(state / "locks"), metrics=Metrics())
    done = threading.Semaphore(0)
    results: list[WorkResult] = []

    def finished(result: WorkResult) -> None:
        results.append(result)
        done.release()

    queue.start()
    started = time.perf_counter()
    for name in names:
        request = RunRequest(name, Trigger(kind="schedule", actor="schedule"))
        while queue.submit(request, if_busy="wait", on_done=finished) == "queue-full":
            time.sleep(0.1)
    for _ in names:
        done.acquire()
    seconds = time.perf_counter() - started
    queue.stop(10)
    proposed = sum(1 for r in results for s in r.summaries if s.outcome == "proposed")
    problems = [result.error for result in results if result.error] + [
        summary.message
        for result in results
        for summary in result.summaries
        if summary.outcome not in ("proposed", "nothing-to-do")
    ]
    rate = proposed / seconds * 60
    print(
        f"wave  {size:>5} repos  one process (2 threads, SQLite): {seconds:7.1f} s  "
        f"{rate:6.1f} rotations/min  proposed {proposed}  {load()}  {problems[:3]}",
        flush=True,
    )
    return rate


@contextmanager
def environment(root: Path, budget: float = 4000.0, concurrency: int = 2) -> Iterator[Bench]:
    verdaccio = start_verdaccio(root / "verdaccio")
    postgres = start_postgres()
    running = start_github_api(root / "github")
    try:
        publish_family(verdaccio)
        proxy = CountingProxy(verdaccio.url)
        running.api.add_token(TOKEN, login="rotation-bot")
        env = Env(root, proxy.url, verdaccio.token, tools=root / "tools")
        try:
            yield Bench(root, env, running.api, postgres, proxy, budget, concurrency)
        finally:
            proxy.client.close()
    finally:
        running.stop()
        postgres.stop()
        verdaccio.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", default="200,1000")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--wave", type=int, default=24)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="wave rounds, the worker counts interleaved (a shared machine's load changes)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=2,
        help="rotations each worker process runs at a time (ROTATION_BOT_WORKER_CONCURRENCY)",
    )
    parser.add_argument("--skip", default="", help="comma-separated: noop, wave, embedded")
    parser.add_argument(
        "--budget",
        type=float,
        default=4000.0,
        help="the workers' GitHub requests per hour (ROTATION_BOT_GITHUB_RATE_BUDGET)",
    )
    arguments = parser.parse_args()
    skip = set(arguments.skip.split(","))
    workers = [int(count) for count in arguments.workers.split(",")]
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    print(
        f"cores {os.cpu_count()}  GitHub budget {arguments.budget:.0f}/h  "
        f"{arguments.concurrency} rotation(s) per worker  {load()}",
        flush=True,
    )
    try:
        with environment(root, arguments.budget, arguments.concurrency) as bench:
            if "noop" not in skip:
                for repos in (int(count) for count in arguments.repos.split(",")):
                    no_op(bench, repos, workers)
            if "wave" not in skip:
                rates: dict[int, list[float]] = {}
                for round_ in range(arguments.rounds):
                    for count in workers:
                        rates.setdefault(count, []).append(
                            wave(bench, arguments.wave, count, round_)
                        )
                if 1 in rates and 2 in rates and median(rates[1]):
                    print(
                        f"scaling 1 -> 2 workers: {median(rates[2]) / median(rates[1]):.2f}x "
                        f"(medians of {arguments.rounds} interleaved round(s))",
                        flush=True,
                    )
            if "embedded" not in skip:
                wave_one_process(bench, arguments.wave)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
