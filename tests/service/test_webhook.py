"""`POST /webhook` and the `/rotate` command against the local GitHub-shaped API server.

Deliveries are real `@octokit/webhooks-examples` payloads with the comment body and author
replaced, signed here with the test secret, and posted over HTTP to the running service.  Every
GitHub call the command makes (permission, reactions, replies) goes to
`tests/support/github_api.py`; the rotation itself is the recording runner (the service's own
interface), so these tests see exactly which requests reached the pipeline.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.audit import AuditStore
from bot.config import Settings
from bot.forges.github import GitHubForge, GitHubOptions
from bot.models import Trigger
from bot.runbook import DEFAULT_RUNBOOKS_DIR, load_runbooks
from bot.service.app import RunningService, ServiceOptions, start_service
from bot.service.chat import comment_event, parse_command
from tests.support.github_api import Fault, GitHubApi, make_git_repository, start_github_api
from tests.support.service import (
    SECRET,
    RecordingPipeline,
    RecordingRunner,
    comment_payload,
    deliver,
    examples,
    sign,
    wait_until,
)

REPO = "Codertocat/Hello-World"  # the repository of the example payloads
FAST = GitHubOptions(timeout=5, seconds_between_requests=0, seconds_between_writes=0, backoff=0.1)
RUNBOOKS = load_runbooks(DEFAULT_RUNBOOKS_DIR)


@dataclass
class World:
    """The GitHub-shaped server, the running service, and a client to deliver with."""

    api: GitHubApi
    service: RunningService
    runner: RecordingRunner
    client: httpx.Client
    issue: int

    @property
    def url(self) -> str:
        return self.service.url

    def command(
        self, body: str, *, login: str = "Codertocat", delivery: str | None = None, **changes: Any
    ) -> tuple[httpx.Response, int]:
        """Post `body` as a new comment by `login` (created on the server too)."""
        comment = self.api.add_comment(REPO, self.issue, user=login, body=body)
        payload = comment_payload(body, login=login, **changes)
        payload["comment"]["id"] = comment
        payload["comment"]["html_url"] = (
            f"https://github.com/{REPO}/issues/{self.issue}#issuecomment-{comment}"
        )
        return deliver(self.client, self.url, payload, delivery=delivery), comment

    def reactions(self, comment: int) -> list[str]:
        return [
            content
            for comment_id, _, content in self.api.repository(REPO).reactions
            if comment_id == comment
        ]

    def replies(self) -> list[str]:
        return [
            comment.body
            for comment in self.api.comments_on(REPO, self.issue)
            if comment.user == "rotation-bot"
        ]

    def wait_reply(self, count: int = 1) -> list[str]:
        wait_until(lambda: len(self.replies()) >= count, message=f"{count} bot replies")
        return self.replies()

    def metric(self, name: str, **labels: str) -> float | None:
        value = self.service.app.metrics.registry.get_sample_value(name, labels)
        return value


def start(
    tmp_path: Path,
    api: GitHubApi,
    runner: RecordingRunner,
    served: Callable[[], Iterable[str]] = lambda: (REPO,),
) -> RunningService:
    settings = Settings(
        listen="127.0.0.1:0",
        webhook_secret=SECRET,
        state_dir=tmp_path / "state",
        database_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}",
    )
    forge = GitHubForge(api.api_url, token="ghp_test", options=FAST)
    pipeline = RecordingPipeline(runner, AuditStore(settings.resolved_database_url), forge=forge)
    return start_service(
        settings,
        pipeline,
        repositories=served,
        options=ServiceOptions(shutdown_grace=2, max_body=64 * 1024),
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    running = start_github_api(tmp_path / "github")
    api = running.api
    api.add_token("ghp_test", login="rotation-bot")
    api.add_repository(REPO, make_git_repository(tmp_path / "git", {"README.md": "hi\n"}).bare)
    issue = api.add_issue(REPO, title="Spelling error in the README file", user="Codertocat")
    runner = RecordingRunner()
    service = start(tmp_path, api, runner)
    client = httpx.Client(timeout=5)
    try:
        yield World(api, service, runner, client, issue)
    finally:
        client.close()
        service.stop()
        running.stop()


# --- signatures, sizes, replays --------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        None,  # unsigned
        "",  # empty header
        "sha256=" + "0" * 64,  # forged
        sign(b"a different body"),  # signature of another body
        sign(b"{}", "another-secret"),  # another secret
        "sha1=0123456789abcdef0123456789abcdef01234567",  # the old SHA-1 header's format
    ],
)
def test_unsigned_or_forged_deliveries_are_rejected_before_anything_happens(
    world: World, signature: str | None
) -> None:
    payload = comment_payload("/rotate sharp")
    response = deliver(
        world.client, world.url, payload, secret=None, signature=signature, delivery="forged-1"
    )
    assert response.status_code == 401
    assert response.json()["result"] == "unauthorized"
    assert world.api.requests == []  # not even a permission lookup
    # The forged delivery id was not recorded: the genuine delivery with that id is accepted.
    genuine = deliver(world.client, world.url, payload, delivery="forged-1")
    assert genuine.status_code == 202
    assert world.metric("rotation_bot_webhook_deliveries_total", result="unauthorized") == 1


def test_tampered_body_with_the_original_signature_is_rejected(world: World) -> None:
    body = b'{"action": "created"}'
    response = deliver(world.client, world.url, None, raw=body + b" ", signature=sign(body))
    assert response.status_code == 401


def test_oversized_delivery_is_refused(world: World) -> None:
    payload = comment_payload("/rotate sharp\n" + "x" * 70_000)
    response = deliver(world.client, world.url, payload)
    assert response.status_code == 413
    assert world.api.requests == [] and world.runner.calls == []
    assert world.metric("rotation_bot_webhook_deliveries_total", result="too-large") == 1


def test_replayed_delivery_is_ignored_even_after_a_restart(world: World, tmp_path: Path) -> None:
    first, comment = world.command("/rotate sharp", delivery="delivery-1")
    assert first.status_code == 202
    world.runner.wait_for_calls(1)
    world.wait_reply()

    payload = comment_payload("/rotate sharp")
    payload["comment"]["id"] = comment
    again = deliver(world.client, world.url, payload, delivery="delivery-1")
    assert (again.status_code, again.json()["result"]) == (200, "duplicate")

    old = world.url
    world.service.stop()
    with pytest.raises(httpx.ConnectError):  # the old process stopped listening
        world.client.get(f"{old}/healthz")
    world.service = start(tmp_path, world.api, world.runner)
    after_restart = deliver(world.client, world.url, payload, delivery="delivery-1")
    assert (after_restart.status_code, after_restart.json()["result"]) == (200, "duplicate")
    world.service.stop()  # waits for every comment being handled and every queued run
    assert len(world.runner.calls) == 1


def test_deliveries_during_shutdown_are_refused_for_redelivery(world: World) -> None:
    world.service.app.stopping.set()
    response, _ = world.command("/rotate sharp")
    assert (response.status_code, response.json()["result"]) == (503, "stopping")
    world.service.app.stopping.clear()
    world.service.stop()  # waits for every comment being handled and every queued run
    assert world.api.requests == [] and world.runner.calls == []


def test_malformed_deliveries(world: World) -> None:
    assert deliver(world.client, world.url, None, raw=b"not json").status_code == 400
    no_id = world.client.post(
        f"{world.url}/webhook",
        content=b"{}",
        headers={"X-Hub-Signature-256": sign(b"{}"), "X-GitHub-Event": "issue_comment"},
    )
    assert no_id.status_code == 400
    assert world.client.get(f"{world.url}/webhook").status_code == 405
    assert world.client.get(f"{world.url}/nowhere").status_code == 404


# --- who may rotate --------------------------------------------------------------------------


@pytest.mark.parametrize("permission", ["admin", "maintain", "write"])
def test_writers_trigger_a_rotation_and_get_the_pull_request_link(
    world: World, permission: str
) -> None:
    world.api.set_permission(REPO, "alice", permission)
    response, comment = world.command("/rotate sharp", login="alice")
    assert response.status_code == 202  # acknowledged before the rotation runs

    (call,) = world.runner.wait_for_calls(1)
    (reply,) = world.wait_reply()
    assert call.request.repo == REPO and call.request.runbooks == ("sharp",)
    assert call.request.target is None
    assert call.request.trigger == Trigger(
        kind="chat",
        actor="alice",
        url=f"https://github.com/{REPO}/issues/{world.issue}#issuecomment-{comment}",
    )
    wait_until(lambda: "+1" in world.reactions(comment), message="👍")
    assert world.reactions(comment) == ["eyes", "+1"]
    assert f"https://github.com/{REPO}/pull/42" in reply and reply.startswith("@alice")
    permission_checks = world.api.requests_matching(
        "GET", f"/repos/{REPO}/collaborators/alice/permission"
    )
    assert permission_checks, "permission comes from the API"


@pytest.mark.parametrize("permission", ["triage", "read", "none"])
def test_others_get_a_polite_reply_and_nothing_runs(world: World, permission: str) -> None:
    world.api.set_permission(REPO, "mallory", permission)
    # author_association says OWNER; only the API's answer counts.
    response, comment = world.command("/rotate sharp", login="mallory")
    assert response.status_code == 202
    (reply,) = world.wait_reply()
    assert "only people with write, maintain or admin permission" in reply
    assert "@mallory" in reply
    world.service.stop()  # waits for every comment being handled and every queued run
    assert world.runner.calls == []
    assert world.reactions(comment) == []
    assert world.metric("rotation_bot_chat_commands_total", result="denied") == 1


# --- the commands ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "runbooks", "target"),
    [
        ("/rotate sharp", ("sharp",), None),
        ("/rotate base-image", ("base-image",), None),
        ("/rotate all", None, None),
        ("/rotate sharp 0.34.5", ("sharp",), "0.34.5"),
        ("  /rotate   SHARP   0.34.5-rc.1  \nthanks!", ("sharp",), "0.34.5-rc.1"),
    ],
)
def test_rotate_variants_reach_the_pipeline(
    world: World, body: str, runbooks: tuple[str, ...] | None, target: str | None
) -> None:
    response, _ = world.command(body)
    assert response.status_code == 202
    (call,) = world.runner.wait_for_calls(1)
    assert (call.request.runbooks, call.request.target) == (runbooks, target)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("/rotate", "say what to rotate"),
        ("/rotate nonsense", "there is no runbook or command `nonsense`"),
        ("/rotate sharp v0.34.5", "`v0.34.5` is not an exact version"),
        ("/rotate sharp 0.34", "`0.34` is not an exact version"),
        ("/rotate sharp latest", "`latest` is not an exact version"),
        ("/rotate base-image 1.2.3", "`base-image` takes no target version"),
        ("/rotate sharp 0.34.5 now", "too many words"),
        ("/rotate all 0.34.5", "there is no runbook or command `all`"),
        ("/rotate `rm -rf`", "there is no runbook or command `rm`"),
    ],
)
def test_unknown_commands_get_the_list_of_valid_ones(world: World, body: str, problem: str) -> None:
    response, comment = world.command(body)
    assert response.status_code == 202
    (reply,) = world.wait_reply()
    assert problem in reply
    for command in (
        "`/rotate sharp`",
        "`/rotate base-image`",
        "`/rotate all`",
        "`/rotate sharp 1.2.3`",
        "`/rotate status`",
    ):
        assert command in reply
    assert world.reactions(comment) == ["eyes"]
    assert world.runner.calls == []


@pytest.mark.parametrize(
    ("body", "changes"),
    [
        ("please /rotate sharp", {}),
        ("/rotated sharp", {}),
        ("Looks good to me", {}),
        ("/rotate sharp", {"action": "edited"}),
        ("/rotate sharp", {"user_type": "Bot"}),
    ],
)
def test_junk_edits_and_bots_are_ignored_without_any_api_call(
    world: World, body: str, changes: dict[str, str]
) -> None:
    response, _ = world.command(body, **changes)
    assert (response.status_code, response.json()["result"]) == (200, "ignored")
    world.service.stop()  # waits for every comment being handled and every queued run
    assert world.api.requests == [] and world.runner.calls == []


@pytest.mark.parametrize(
    "change",
    [
        {"action": "closed"},
        {"action": "edited"},
        {"head": "not-a-sha"},
        {"number": True},
        {"repository": "someone/else"},  # not served
    ],
)
def test_pull_requests_the_config_check_does_not_concern_are_ignored_without_any_api_call(
    world: World, change: dict[str, Any]
) -> None:
    payload = copy.deepcopy(examples("pull_request", "opened")[0])
    payload["action"] = change.get("action", "synchronize")
    payload["pull_request"]["head"]["sha"] = change.get("head", "a" * 40)
    payload["pull_request"]["number"] = change.get("number", 2)
    payload["repository"]["full_name"] = change.get("repository", REPO)
    response = deliver(world.client, world.url, payload, event="pull_request")
    assert (response.status_code, response.json()["result"]) == (200, "ignored")
    world.service.stop()  # waits for everything being handled
    assert world.api.requests == []


@pytest.mark.parametrize(
    "body",
    [
        "    /rotate sharp",  # an indented code block
        "\t/rotate sharp",  # a tab is four columns: a code block too
        "  \t/rotate sharp",
        "\r\n\r\n    /rotate sharp\r\nsee above",
        "```\n/rotate sharp\n```",  # fenced code
        "~~~\r\n/rotate sharp\r\n~~~",
        "> /rotate sharp",  # a quote of someone else's command
        ">/rotate sharp",
        "\u00a0/rotate sharp",  # a no-break space is text, not indentation
        "/rotate\u00a0sharp",
        "\u2028/rotate sharp",  # not a line break in Markdown
    ],
)
def test_commands_in_code_blocks_or_quotes_do_not_run(world: World, body: str) -> None:
    response, _ = world.command(body)
    assert (response.status_code, response.json()["result"]) == (200, "ignored")
    assert world.api.requests == [] and world.runner.calls == []


@pytest.mark.parametrize("body", ["   /rotate sharp", "\r\n/rotate sharp\r\nthanks"])
def test_a_command_indented_less_than_a_code_block_runs(world: World, body: str) -> None:
    response, _ = world.command(body)
    assert response.status_code == 202
    (call,) = world.runner.wait_for_calls(1)
    assert call.request.runbooks == ("sharp",)


def test_comments_on_repositories_not_served_are_ignored(world: World) -> None:
    payload = comment_payload("/rotate sharp")
    payload["repository"]["full_name"] = "someone/else"
    response = deliver(world.client, world.url, payload)
    assert response.json()["result"] == "ignored"
    assert world.api.requests == []


def test_an_installation_event_refreshes_the_served_repositories(
    world: World, tmp_path: Path
) -> None:
    served: list[str] = []
    world.service.stop()
    world.service = start(tmp_path / "again", world.api, world.runner, served=lambda: served)
    ignored, _ = world.command("/rotate sharp")
    assert ignored.json()["result"] == "ignored"

    served.append(REPO)  # the App was installed on the repository
    added = examples("installation_repositories", "added")[0]
    response = deliver(world.client, world.url, added, event="installation_repositories")
    assert response.status_code == 202
    wait_until(lambda: world.service.scheduler.serves(REPO), timeout=5, message="a refresh")
    assert world.service.scheduler.next_runs(REPO).keys() == {"sharp", "base-image"}
    accepted, _ = world.command("/rotate sharp")
    assert accepted.status_code == 202
    world.runner.wait_for_calls(1)


def test_failure_answers_thumbs_down_with_the_audit_run(world: World) -> None:
    world.runner.outcome = "failed"
    _, comment = world.command("/rotate sharp 0.34.5")
    (reply,) = world.wait_reply()
    wait_until(lambda: "-1" in world.reactions(comment), message="👎")
    assert world.reactions(comment) == ["eyes", "-1"]
    assert "rotation failed" in reply and "integrity mismatch" in reply
    assert "rotation-bot audit show " in reply and "audit run `" in reply


def test_second_command_for_a_busy_repository_is_answered_already_running(world: World) -> None:
    gate = world.runner.hold(REPO)
    world.command("/rotate sharp")
    assert world.runner.entered.wait(5)
    world.command("/rotate base-image")
    (reply,) = world.wait_reply()
    assert "already running" in reply
    gate.set()
    world.wait_reply(2)
    assert [call.request.runbooks for call in world.runner.calls] == [("sharp",)]


def test_status_reports_running_scheduled_and_recent_runs(world: World) -> None:
    audit = world.service.scheduler  # the service's own scheduler holds the cron jobs
    assert audit.next_runs(REPO)
    world.command("/rotate sharp")
    world.runner.wait_for_calls(1)
    world.wait_reply()
    gate = world.runner.hold(REPO)
    world.runner.entered.clear()
    world.command("/rotate base-image")
    assert world.runner.entered.wait(5)
    _, comment = world.command("/rotate status")
    replies = world.wait_reply(2)
    gate.set()
    status = next(reply for reply in replies if "status for" in reply)
    assert f"**rotation-bot status for {REPO}**" in status
    assert "Running: base-image (chat by Codertocat)" in status
    assert "Next scheduled sharp:" in status and "Next scheduled base-image:" in status
    assert "eyes" in world.reactions(comment)


def test_ack_does_not_wait_for_github(world: World) -> None:
    answer = threading.Event()
    world.api.inject(Fault.held("GET", f"/repos/{REPO}/collaborators/*", answer))
    response, _ = world.command("/rotate sharp")  # GitHub has not answered the permission check
    assert response.status_code == 202
    assert world.runner.calls == []
    answer.set()
    world.runner.wait_for_calls(1, timeout=15)


def test_health_metrics_and_ping(world: World) -> None:
    health = world.client.get(f"{world.url}/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (
        deliver(
            world.client, world.url, {"zen": "Keep it logically awesome."}, event="ping"
        ).json()["result"]
        == "pong"
    )
    deliver(world.client, world.url, comment_payload("/rotate sharp"), secret=None)
    world.command("/rotate sharp")
    world.runner.wait_for_calls(1)
    world.wait_reply()
    text = world.client.get(f"{world.url}/metrics").text
    for line in (
        'rotation_bot_webhook_deliveries_total{result="pong"} 1.0',
        'rotation_bot_webhook_deliveries_total{result="unauthorized"} 1.0',
        'rotation_bot_webhook_deliveries_total{result="accepted"} 1.0',
        'rotation_bot_runs_total{outcome="proposed",trigger="chat"} 1.0',
        'rotation_bot_step_duration_seconds_count{status="passed",step="bump-overrides"} 1.0',
        "rotation_bot_queue_depth 0.0",
        'rotation_bot_chat_commands_total{result="queued"} 1.0',
    ):
        assert line in text, line


# --- pure parts ------------------------------------------------------------------------------


def test_parse_command_only_reads_the_first_line() -> None:
    assert parse_command("\n\n/rotate status\n/rotate sharp", RUNBOOKS) is not None
    assert parse_command("hello\n/rotate sharp", RUNBOOKS) is None
    command = parse_command("/rotate status", RUNBOOKS)
    assert command is not None and command.action == "status"


def test_comment_event_validates_what_came_from_the_network() -> None:
    good = comment_payload("/rotate sharp")
    assert comment_event(good) is not None
    for path, value in [
        (("repository", "full_name"), "../../etc"),
        (("comment", "id"), "1; DROP TABLE"),
        (("comment", "id"), True),
        (("issue", "number"), -1),
        (("comment", "user", "login"), "a b"),
        (("comment", "user", "login"), "dependabot[bot]"),
        (("comment", "html_url"), "javascript:alert(1)"),
        (("comment", "body"), None),
    ]:
        payload = comment_payload("/rotate sharp")
        target = payload
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert comment_event(payload) is None, path
    assert comment_event({"action": "created"}) is None
    assert comment_event([]) is None
    assert comment_event({**good, "comment": None}) is None
    assert uuid.UUID(str(uuid.uuid4()))
