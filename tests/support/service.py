"""Helpers for the service tests: a recording runner, signed webhook deliveries, example payloads.

`RecordingRunner` implements the service's own `Runner` interface (the pipeline's entry point),
and `RecordingPipeline` wraps it with a forge (the local one, or a `GitHubForge` pointed at the
GitHub-shaped server, which then answers the chat commands):
it records every request with its start and end time, can hold a repository's run open until the
test releases it, and answers with `RunSummary`s shaped like the pipeline's.  The GitHub side is
never faked: the webhook tests talk to `tests/support/github_api.py`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from bot.audit import AuditStore
from bot.config import RepoConfig
from bot.forges.base import Forge
from bot.forges.local import LocalForge
from bot.models import Outcome, PublishedProposal, RunRequest, RunSummary, StepResult
from bot.runbook import DEFAULT_RUNBOOKS_DIR, Runbook, load_runbooks

EXAMPLES = (
    Path(__file__).resolve().parent.parent
    / "harness/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
)
SECRET = "test-webhook-secret"


@dataclass(frozen=True)
class Call:
    """One request the runner executed."""

    request: RunRequest
    started: float
    finished: float


@dataclass
class RecordingRunner:
    """A `Runner` that records calls; `hold(repo)` keeps that repository's next runs open."""

    seconds: float = 0.0
    outcome: Outcome = "proposed"
    error: Exception | None = None
    calls: list[Call] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    _gates: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hold(self, repo: str) -> threading.Event:
        """Make runs of `repo` wait until the returned event is set."""
        gate = threading.Event()
        self._gates[repo] = gate
        return gate

    def run(self, request: RunRequest) -> list[RunSummary]:
        started = time.monotonic()
        self.entered.set()
        gate = self._gates.get(request.repo)
        if gate is not None:
            gate.wait(30)
        time.sleep(self.seconds)
        finished = time.monotonic()
        with self._lock:
            self.calls.append(Call(request, started, finished))
        if self.error is not None:
            raise self.error
        return [
            summary(request, runbook, self.outcome)
            for runbook in request.runbooks or ("sharp", "base-image")
        ]

    def wait_for_calls(self, count: int, timeout: float = 10.0) -> list[Call]:
        """The calls, once there are at least `count` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.calls) >= count:
                    return list(self.calls)
            time.sleep(0.01)
        raise AssertionError(f"expected {count} runs, saw {len(self.calls)}")


def summary(request: RunRequest, runbook: str, outcome: Outcome) -> RunSummary:
    """A summary shaped like the pipeline's, with one timed step."""
    start = datetime.now(UTC)
    step = StepResult(
        kind="bump-overrides",
        status="passed",
        summary="pins bumped",
        started_at=start,
        finished_at=start + timedelta(seconds=1.5),
    )
    run_id = str(uuid.uuid4())
    if outcome == "proposed":
        url = f"https://github.com/{request.repo}/pull/42"
        return RunSummary(
            run_id,
            request.repo,
            runbook,
            request.target or "0.34.5",
            outcome,
            f"proposed rotation-bot/{runbook} at {url}",
            0,
            (step,),
            None,
            PublishedProposal(url=url, created=True, updated=False),
        )
    return RunSummary(
        run_id,
        request.repo,
        runbook,
        request.target,
        outcome,
        "step verify-tarballs failed: integrity mismatch; nothing was published",
        1,
        (step,),
    )


class RecordingPipeline:
    """What `start_service` needs from a pipeline, around a `RecordingRunner`."""

    def __init__(
        self,
        runner: RecordingRunner,
        audit: AuditStore,
        configs: Mapping[str, RepoConfig] | None = None,
        forge: Forge | None = None,
    ) -> None:
        self.runner = runner
        self.audit = audit
        self.forge: Forge = forge or LocalForge(audit)
        self.runbooks: dict[str, Runbook] = load_runbooks(DEFAULT_RUNBOOKS_DIR)
        self.configs = dict(configs or {})

    def run(self, request: RunRequest) -> list[RunSummary]:
        return self.runner.run(request)

    def open_repo(self, repo: str) -> Any:
        return SimpleNamespace(config=self.configs.get(repo, RepoConfig()))


# --- webhook deliveries ----------------------------------------------------------------------


def examples(event: str, action: str) -> list[dict[str, Any]]:
    """Real example payloads of `event` with `action` from @octokit/webhooks-examples."""
    for entry in json.loads(EXAMPLES.read_text(encoding="utf-8")):
        if entry["name"] == event:
            return [example for example in entry["examples"] if example.get("action") == action]
    raise KeyError(event)


def comment_payload(
    body: str, *, login: str = "Codertocat", action: str = "created", user_type: str = "User"
) -> dict[str, Any]:
    """The first real `issue_comment` example with the comment's body and author replaced."""
    payload = copy.deepcopy(examples("issue_comment", action)[0])
    payload["comment"]["body"] = body
    payload["comment"]["user"]["login"] = login
    payload["comment"]["user"]["type"] = user_type
    return payload


def sign(body: bytes, secret: str = SECRET) -> str:
    """GitHub's `X-Hub-Signature-256` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    client: httpx.Client,
    url: str,
    payload: Any,
    *,
    event: str = "issue_comment",
    delivery: str | None = None,
    secret: str | None = SECRET,
    signature: str | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    """POST a delivery as GitHub does (signed with `secret` unless `signature` is given)."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
    }
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    return client.post(f"{url}/webhook", content=body, headers=headers)


def wait_until(predicate: Any, timeout: float = 10.0, message: str = "condition") -> None:
    """Poll `predicate` until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {message}")
