"""Every `/rotate` command end to end: a signed `issue_comment` delivery to the running service,
the real pipeline (real git, npm and Verdaccio), and every GitHub call against the GitHub-shaped
server, including the permission refusals; and the config check a `pull_request` delivery
starts."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.audit import AuditStore
from bot.config import Settings
from bot.forges.github import GitHubForge, GitHubOptions
from bot.pipeline import Pipeline
from bot.runbook import DEFAULT_RUNBOOKS_DIR, load_runbooks
from bot.service.app import RunningService, ServiceOptions, start_service
from bot.services import build_services
from tests.conftest import Env
from tests.support.hub import CONFIG, PATCH, REPO, TOKEN, Hub, served_hub
from tests.support.service import SECRET, comment_payload, deliver, examples, wait_until

FAST = GitHubOptions(timeout=5, seconds_between_requests=0, seconds_between_writes=0, backoff=0.1)


@dataclass
class Chat:
    """The served repository, the running service, and an issue to comment on."""

    hub: Hub
    service: RunningService
    client: httpx.Client
    issue: int

    def say(self, body: str, *, login: str = "alice", number: int | None = None) -> int:
        """Comment `body` as `login` on `number` (default: the issue) and deliver it."""
        where = number or self.issue
        comment = self.hub.api.add_comment(REPO, where, user=login, body=body)
        payload = comment_payload(body, login=login)
        payload["repository"]["full_name"] = REPO
        payload["issue"]["number"] = where
        if self.hub.api.repository(REPO).items[where].is_pull:
            payload["issue"]["pull_request"] = {"url": f"{self.hub.api.api_url}/pulls/{where}"}
        else:
            payload["issue"].pop("pull_request", None)
        payload["comment"]["id"] = comment
        payload["comment"]["html_url"] = f"https://github.com/{REPO}/issues/{where}#c{comment}"
        assert deliver(self.client, self.service.url, payload).status_code == 202
        return comment

    def answer(self, comment: int, number: int | None = None, timeout: float = 300) -> str:
        """The bot's last reply on `number` after its 👍 or 👎 on `comment`."""

        def replies() -> list[str]:
            return [
                c.body
                for c in self.hub.api.comments_on(REPO, number or self.issue)
                if c.user == "rotation-bot" and c.id > comment and c.body.startswith("@")
            ]

        def answered() -> bool:
            return bool({"+1", "-1"} & set(self.reactions(comment))) and bool(replies())

        wait_until(answered, timeout=timeout, message="the command's answer")
        return replies()[-1]

    def idle(self) -> None:
        """Wait until every run of the service has finished."""
        wait_until(
            lambda: all(run["outcome"] for run in self.hub.audit().list_runs(100)),
            timeout=300,
            message="the service's runs to finish",
        )

    def reactions(self, comment: int) -> list[str]:
        return [c for i, _, c in self.hub.api.repository(REPO).reactions if i == comment]


@pytest.fixture
def chat(tmp_path: Path, env: Env) -> Iterator[Chat]:
    with served_hub(tmp_path, env) as hub:
        settings = Settings(
            github_url=hub.api.api_url,
            github_token=TOKEN,
            webhook_secret=SECRET,
            listen="127.0.0.1:0",
            state_dir=env.state,
            database_url=f"sqlite:///{env.state / 'audit.sqlite3'}",
            release_notes_url="http://127.0.0.1:9",
            repositories=(REPO,),
        )
        forge = GitHubForge(hub.api.api_url, token=TOKEN, options=FAST)
        audit = AuditStore(settings.resolved_database_url)
        pipeline = Pipeline(
            services=build_services(settings, env.variables(), forge=forge),
            audit=audit,
            runbooks=load_runbooks(DEFAULT_RUNBOOKS_DIR),
        )
        service = start_service(
            settings,
            pipeline,
            repositories=lambda: (REPO,),
            options=ServiceOptions(shutdown_grace=30),
        )
        issue = hub.api.add_issue(REPO, title="Rotations", user="alice")
        client = httpx.Client(timeout=10)
        try:
            yield Chat(hub, service, client, issue)
        finally:
            client.close()
            service.stop()


def test_rotate_explain_rebase_and_recreate_on_the_pull_request(chat: Chat) -> None:
    hub = chat.hub
    assert "proposed" in chat.answer(chat.say("/rotate sharp"))
    (pull,) = hub.pulls().values()
    head = hub.branch(PATCH)

    explained = chat.answer(chat.say("/rotate explain", number=pull.number), pull.number)
    assert "leaves its pull request as it is" in explained
    assert "patch `sharp` 0.33.4 → 0.33.6" in explained

    hub.people.commit({"README.md": "moved on\n"}, "Docs", branch="main")
    rebased = chat.answer(chat.say("/rotate rebase", number=pull.number), pull.number)
    assert "rebase finished" in rebased and hub.branch(PATCH) != head

    hub.push_as_person({"NOTES.md": "mine\n"}, "By hand", branch=PATCH)
    recreated = chat.answer(chat.say("/rotate recreate", number=pull.number), pull.number)
    pulls = hub.api.pulls(REPO)
    assert "recreate finished" in recreated
    assert [p.state for p in pulls] == ["closed", "open"]
    assert (
        "Closed to recreate it on request of alice"
        in hub.api.comments_on(REPO, pull.number)[-2].body
    )
    assert hub.api.repository(REPO).git("log", "-1", "--format=%ce", PATCH).strip() == (
        "rotation-bot@users.noreply.github.com"
    )


def test_holds_approvals_refusals_and_malformed_commands(chat: Chat) -> None:
    hub = chat.hub
    hub.api.set_permission(REPO, "mallory", "read")
    chat.answer(chat.say("/rotate sharp"))

    refused = chat.say("/rotate ignore 0.33", login="mallory")
    wait_until(lambda: len(hub.api.comments_on(REPO, chat.issue)) >= 4, message="refusal")
    assert "only people with write" in hub.api.comments_on(REPO, chat.issue)[-1].body
    assert chat.reactions(refused) == [] and hub.records().holds(REPO) == ()

    held = chat.say("/rotate ignore 0.33.6")
    wait_until(lambda: PATCH not in hub.pulls(), timeout=300, message="the held proposal closed")
    assert chat.reactions(held) == ["eyes", "+1"]
    (hold,) = hub.records().holds(REPO, "sharp")
    assert (hold.selector, hold.by) == ("0.33.6", "alice")
    closed = next(p for p in hub.api.pulls(REPO) if p.head == PATCH)
    assert (
        "held by /rotate ignore 0.33.6 (@alice" in hub.api.comments_on(REPO, closed.number)[-1].body
    )
    wait_until(
        lambda: "rotation-bot/sharp-0.33.5" in hub.pulls(), timeout=300, message="the next patch"
    )
    chat.idle()

    explained = chat.answer(chat.say("/rotate explain sharp"))
    assert "sharp@0.33.6`: held by /rotate ignore 0.33.6" in explained

    chat.answer(chat.say("/rotate unignore 0.33.6"))
    assert hub.records().holds(REPO) == ()

    approved = chat.answer(chat.say("/rotate approve 0.34.1"))
    approval = hub.records().approval(REPO, "sharp", "0.34.1")
    assert approval is not None and approval.by == "alice"
    assert "its pull request is opened now" in approved

    chat.idle()
    chat.service.queue.stop(30)  # shutdown began: the queue takes no run to act on a command
    late = chat.answer(chat.say("/rotate approve 0.34.2"))
    assert hub.records().approval(REPO, "sharp", "0.34.2") is not None  # stored all the same
    assert "its pull request is opened at the next cycle" in late
    assert "No run was started now (the service is restarting)" in late

    for body, problem in (
        ("/rotate ignore banana", "`banana` is not a line like 0.35"),
        ("/rotate approve 0.34", "`0.34` is not an exact version"),
        ("/rotate rebase sharp now", "takes at most a runbook name"),
        ("/rotate frobnicate", "no runbook or command `frobnicate`"),
    ):
        comment = chat.say(body)
        wait_until(lambda c=comment: "eyes" in chat.reactions(c), message=body)
        wait_until(
            lambda p=problem: p in hub.api.comments_on(REPO, chat.issue)[-1].body,
            message=f"help for {body}",
        )
        assert "`/rotate explain [runbook]`" in hub.api.comments_on(REPO, chat.issue)[-1].body
    assert hub.audit().verify().ok


def _pull_request_event(chat: Chat, action: str, number: int, branch: str) -> None:
    """Deliver GitHub's `pull_request` example for pull request `number` of `branch`."""
    payload = copy.deepcopy(examples("pull_request", action)[0])
    payload["repository"]["full_name"] = REPO
    payload["pull_request"]["number"] = number
    payload["pull_request"]["head"]["sha"] = chat.hub.branch(branch)
    payload["pull_request"]["base"]["sha"] = chat.hub.branch("main")
    response = deliver(chat.client, chat.service.url, payload, event="pull_request")
    assert response.status_code == 202


def test_a_pull_request_that_changes_the_config_gets_the_validation_result(chat: Chat) -> None:
    hub = chat.hub
    metrics = chat.service.app.metrics.registry

    def checks(result: str) -> float:
        found = metrics.get_sample_value("rotation_bot_chat_commands_total", {"result": result})
        return found or 0.0

    def said(number: int) -> list[str]:
        return [c.body for c in hub.api.comments_on(REPO, number) if c.user == "rotation-bot"]

    bad = CONFIG + "    image-platforms: [linux/amd64]\n"
    hub.people.commit({".github/rotation-bot.yml": bad}, "Configure", branch="configure")
    number = hub.api.add_pull(REPO, head="configure", base="main", user="jane", title="Config")
    _pull_request_event(chat, "opened", number, "configure")
    wait_until(lambda: checks("config-invalid") == 1, message="the config check")

    (first,) = said(number)
    assert (
        ".github/rotation-bot.yml:6: unknown key runbooks.sharp.image-platforms (it is a setting "
        "of base-image)" in first
    )
    contents = f"/repos/{REPO}/contents/.github/rotation-bot.yml"
    reads = {r.query.get("ref") for r in hub.api.requests_matching("GET", contents)}
    assert reads == {hub.branch("configure"), hub.branch("main")}  # read at both commits

    hub.people.commit({"NOTES.md": "why\n"}, "Notes", branch="configure")  # the same verdict
    _pull_request_event(chat, "synchronize", number, "configure")
    wait_until(lambda: checks("config-invalid") == 2, message="the second config check")
    assert said(number) == [first]

    hub.people.commit(
        {".github/rotation-bot.yml": CONFIG + "dashboard: true\n"}, "Fix", branch="configure"
    )
    _pull_request_event(chat, "synchronize", number, "configure")
    wait_until(lambda: checks("config-valid") == 1, message="the fixed config's check")
    (_, second) = said(number)
    assert second.startswith(
        f"rotation-bot checked `.github/rotation-bot.yml` as of {hub.branch('configure')[:12]}: "
        "it is valid."
    )

    hub.people.commit({".github/rotation-bot.yml": bad}, "Back again", branch="configure")
    _pull_request_event(chat, "synchronize", number, "configure")
    wait_until(lambda: checks("config-invalid") == 3, message="the broken config's check")
    (_, _, third) = said(number)  # said again: the newest verdict is what counts
    assert third.split("\n", 1)[1] == first.split("\n", 1)[1]  # the same problems and marker

    unreadable = (  # the file itself is the problem, not only logged: the author is told
        (CONFIG.encode() + b"# caf\xe9\n", "is not UTF-8 text (invalid byte at offset"),
        (CONFIG + "#" * 300_000 + "\n", "is 300,"),
    )
    for count, (broken, problem) in enumerate(unreadable, start=4):
        hub.people.commit({".github/rotation-bot.yml": broken}, "Break it", branch="configure")
        _pull_request_event(chat, "synchronize", number, "configure")
        wait_until(lambda n=count: checks("config-invalid") == n, message="the unreadable config")
        *_, latest = said(number)
        assert f".github/rotation-bot.yml: {problem}" in latest, latest

    main_config = hub.api.repository(REPO).git("show", "main:.github/rotation-bot.yml")
    hub.people.commit({".github/rotation-bot.yml": main_config}, "Revert", branch="configure")
    _pull_request_event(chat, "synchronize", number, "configure")
    wait_until(lambda: checks("config-unchanged") == 1, message="the reverted config's check")
    *_, reverted = said(number)  # the earlier verdict no longer stands over the pull request
    assert "this pull request no longer changes `.github/rotation-bot.yml`" in reverted
    _pull_request_event(chat, "synchronize", number, "configure")
    wait_until(lambda: checks("config-unchanged") == 2, message="the reverted config, again")
    assert said(number)[-1] == reverted and len(said(number)) == 6  # said once

    hub.people.commit({"README.md": "more\n"}, "Docs", branch="docs")
    other = hub.api.add_pull(REPO, head="docs", base="main", user="jane", title="Docs")
    _pull_request_event(chat, "opened", other, "docs")
    wait_until(lambda: checks("config-unchanged") == 3, message="the check of a docs change")
    assert said(other) == []
