"""Benchmark (not a test): signed `/rotate` deliveries per second against the running service.

    .venv/bin/python tests/bench/bench_webhook.py [--count 300] [--rate 50] [--repos 300]

The service runs in its own process on 127.0.0.1 (the real webhook app, chat pool, work queue
and scheduler; the rotation itself is the recording runner, 50 ms per run), talking to the
GitHub-shaped API server in this process.  Each delivery is a real `issue_comment` example with
its own comment and author, signed with the test secret; every tenth is then replayed with the
same delivery id.  Prints the acknowledgement latency (p50, p99, max) and checks that every
accepted delivery was processed exactly once: one permission check, one 👀, one answer, and at
most one run, and that no replay was processed again.  Bounded: at most 2000 deliveries and
60 s of sending.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.github_api import make_git_repository, start_github_api  # noqa: E402
from tests.support.service import comment_payload, deliver  # noqa: E402

SERVICE = """
import json, sys
from pathlib import Path
from bot.forges.github import GitHubForge, GitHubOptions
from bot.audit import AuditStore
from bot.config import Settings
from bot.service.app import ServiceOptions, start_service
from tests.support.service import SECRET, RecordingPipeline, RecordingRunner

root, api_url, repos = Path(sys.argv[1]), sys.argv[2], tuple(sys.argv[3].split(","))
settings = Settings(listen="127.0.0.1:0", webhook_secret=SECRET, state_dir=root / "state",
                    database_url=f"sqlite:///{root / 'audit.sqlite3'}", repositories=repos)
forge = GitHubForge(api_url, token="ghp_bench",
                    options=GitHubOptions(seconds_between_requests=0, seconds_between_writes=0))
runner = RecordingRunner(seconds=0.05)
service = start_service(settings, RecordingPipeline(runner, AuditStore(settings.resolved_database_url),
                                                   forge=forge),
                        repositories=lambda: repos,
                        options=ServiceOptions(chat_workers=8, workers=4, queue_capacity=2000,
                                               http_threads=8))
print(json.dumps({"url": service.url}), flush=True)
sys.stdin.read()  # until the benchmark closes stdin
service.stop()
(root / "calls.json").write_text(json.dumps([call.request.trigger.url for call in runner.calls]))
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0, help="deliveries per second")
    parser.add_argument(
        "--repos",
        type=int,
        default=300,
        help="repositories the comments are spread over (fewer: more collisions)",
    )
    arguments = parser.parse_args()
    count = min(arguments.count, 2000)
    rate = max(min(arguments.rate, 1000.0), count / 60.0)
    root = Path(tempfile.mkdtemp(prefix="rotation-bot-bench-webhook-"))

    running = start_github_api(root / "github")
    api = running.api
    api.add_token("ghp_bench", login="rotation-bot")
    bare = make_git_repository(root / "git", {"README.md": "bench\n"}).bare
    repos = [f"bench/repo-{index}" for index in range(max(1, min(arguments.repos, count)))]
    issues = {}
    for repo in repos:
        api.add_repository(repo, bare)
        issues[repo] = api.add_issue(repo, title="bench", user="bench")
    plan = []
    for index in range(count):
        repo = repos[index % len(repos)]
        login = f"user-{index}"
        api.set_permission(repo, login, "write")
        comment = api.add_comment(repo, issues[repo], user=login, body="/rotate sharp")
        payload = comment_payload("/rotate sharp", login=login)
        payload["repository"]["full_name"] = repo
        payload["issue"]["number"] = issues[repo]
        payload["comment"]["id"] = comment
        payload["comment"]["html_url"] = f"https://github.com/{repo}/issues/1#c-{comment}"
        plan.append((index, repo, login, comment, payload, str(uuid.uuid4())))

    log = (root / "service.log").open("w")
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(root), api.api_url, ",".join(repos)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    try:
        assert service.stdout is not None and service.stdin is not None
        first = service.stdout.readline()
        if not first:
            raise SystemExit(f"the service did not start:\n{(root / 'service.log').read_text()}")
        url = json.loads(first)["url"]
        latencies: list[float] = []
        answers: Counter[str] = Counter()
        replays: Counter[str] = Counter()
        accepted_by_login: Counter[str] = Counter()
        lock = threading.Lock()
        client = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=64))

        def send(item: tuple[int, str, str, int, dict[str, object], str], at: float) -> None:
            time.sleep(max(0.0, at - time.monotonic()))
            started = time.monotonic()
            response = deliver(client, url, item[4], delivery=item[5])
            elapsed = time.monotonic() - started
            with lock:
                latencies.append(elapsed)
                answers[f"{response.status_code} {response.json()['result']}"] += 1
                accepted_by_login[item[2]] += response.status_code == 202
            if item[0] % 10 == 0:
                again = deliver(client, url, item[4], delivery=item[5])
                with lock:
                    replays[f"{again.status_code} {again.json()['result']}"] += 1
                    accepted_by_login[item[2]] += again.status_code == 202

        began = time.monotonic() + 0.2
        with ThreadPoolExecutor(max_workers=32) as pool:
            futures = [
                pool.submit(send, item, began + position / rate)
                for position, item in enumerate(plan)
            ]
        for future in futures:
            future.result()  # a failed send fails the benchmark
        sent_seconds = time.monotonic() - began

        def replies() -> dict[str, int]:
            found: Counter[str] = Counter()
            for repo in repos:
                for comment in api.comments_on(repo, issues[repo]):
                    if comment.user == "rotation-bot":
                        found[comment.body.split()[0]] += 1
            return found

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(replies().values()) < sum(
            accepted_by_login.values()
        ):
            time.sleep(0.2)
        drained = time.monotonic() - began
        service.stdin.close()
        service.wait(60)
        runs = Counter(json.loads((root / "calls.json").read_text()))
    finally:
        if service.poll() is None:
            service.kill()
        running.stop()

    accepted = sum(accepted_by_login.values())
    permission_checks = Counter(
        request.path.rsplit("/", 2)[-2]
        for request in api.requests
        if request.method == "GET" and request.path.endswith("/permission")
    )
    eyes = Counter(
        login
        for repo in repos
        for _, login_, content in api.repository(repo).reactions
        if content == "eyes"
        for login in [login_]
    )
    answered = replies()
    problems = []
    for _, repo, login, comment, payload, _ in plan:
        # Accepted (202, first time or on redelivery after a 503): handled exactly once.
        # Never accepted (503 "busy" every time): not handled at all.
        expected = accepted_by_login[login]
        html_url = payload["comment"]["html_url"]  # type: ignore[index]
        reacted = [c for c_id, _, c in api.repository(repo).reactions if c_id == comment]
        seen = {
            "acceptances": expected,
            "permission checks": permission_checks[login],
            "answers": answered.get(f"@{login}", 0),
            "👀": reacted.count("eyes"),
        }
        problems += [
            f"{login}: {value} {what}" for what, value in seen.items() if value != min(expected, 1)
        ]
        if runs[html_url] > min(expected, 1):
            problems.append(f"{login}: {runs[html_url]} runs")
    print(
        f"deliveries {count} at {rate:.0f}/s over {len(repos)} repositories "
        f"(sent in {sent_seconds:.1f} s, all answered after {drained:.1f} s)"
    )
    print(f"answers: {dict(answers)}; replays: {dict(replays)}")
    print(
        f"ack latency: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms, "
        f"mean {statistics.mean(latencies) * 1000:.1f} ms"
    )
    print(
        f"runs {sum(runs.values())}, 'already running' answers "
        f"{accepted - sum(runs.values())}, 👀 {sum(eyes.values())}"
    )
    if problems:
        print("NOT exactly once:", problems[:10], file=sys.stderr)
        raise SystemExit(1)
    print(
        f"exactly once: all {accepted} accepted deliveries processed once, "
        f"{count - accepted} refused (503) deliveries not at all; "
        f"{replays['200 duplicate']} replays of accepted ones ignored"
    )


if __name__ == "__main__":
    main()
