"""The local GitHub-shaped server answers in the shapes of GitHub's own OpenAPI description.

Every operation the bot (and the chat-command handler) uses is called over plain HTTP, and each
answer is validated against the response schema for its operation and status in
`tests/fixtures/github-openapi-subset.json` (extracted from the npm package `@octokit/openapi`
by `tests/support/github_openapi_subset.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.github_api import (
    Fault,
    GitHubApi,
    GitRepository,
    make_git_repository,
    start_github_api,
)
from tests.support.github_openapi_subset import FIXTURE, OPERATIONS

REPO = "octo/app"
TOKEN = "ghp_schema_token"
SPEC: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))


def check(operation: str, response: httpx.Response) -> Any:
    """Validate one answer against its operation's schema for that status; returns the JSON."""
    responses = SPEC["operations"][operation]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{operation} has no {status} response in the description"
    schema = {**responses[status], "components": SPEC["components"]}
    body = response.json()
    jsonschema.Draft202012Validator(schema).validate(body)
    return body


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GitHubApi, GitRepository, httpx.Client]]:
    running = start_github_api(tmp_path / "api")
    api = running.api
    remote = make_git_repository(tmp_path / "git", {"README.md": "hello\n"})
    remote.commit({"package.json": "{}\n"}, "Rotate", branch="rotation-bot/sharp-0.33.5")
    api.add_repository(REPO, remote.bare)
    api.add_token(TOKEN, login="rotation-bot")
    api.set_permission(REPO, "alice", "write")
    client = httpx.Client(
        base_url=api.api_url, headers={"Authorization": f"token {TOKEN}"}, timeout=10
    )
    try:
        yield api, remote, client
    finally:
        client.close()
        running.stop()


def test_description_subset_covers_every_served_operation() -> None:
    assert set(SPEC["operations"]) == set(OPERATIONS)
    assert SPEC["source"].startswith("@octokit/openapi@")
    assert FIXTURE.stat().st_size < 100_000


def test_schema_is_not_vacuous(served: tuple[GitHubApi, GitRepository, httpx.Client]) -> None:
    _, _, client = served
    answer = client.post(
        f"/repos/{REPO}/pulls",
        json={"title": "t", "head": "rotation-bot/sharp-0.33.5", "base": "main"},
    )
    pull = check("pulls/create", answer)
    broken = {key: value for key, value in pull.items() if key != "head"}
    schema = {
        **SPEC["operations"]["pulls/create"]["responses"]["201"],
        "components": SPEC["components"],
    }
    with pytest.raises(jsonschema.ValidationError, match="head"):
        jsonschema.Draft202012Validator(schema).validate(broken)


def test_pull_request_and_issue_operations_match_the_description(
    served: tuple[GitHubApi, GitRepository, httpx.Client],
) -> None:
    _, _, client = served
    repo = check("repos/get", client.get(f"/repos/{REPO}"))
    assert repo["default_branch"] == "main" and repo["clone_url"].endswith("/octo/app.git")
    check("repos/get", client.get("/repos/octo/missing"))
    pull = check(
        "pulls/create",
        client.post(
            f"/repos/{REPO}/pulls",
            json={
                "title": "Rotate",
                "head": "octo:rotation-bot/sharp-0.33.5",
                "base": "main",
                "body": "b",
                "draft": True,
            },
        ),
    )
    again = check(
        "pulls/create",
        client.post(
            f"/repos/{REPO}/pulls",
            json={"title": "Rotate", "head": "rotation-bot/sharp-0.33.5", "base": "main"},
        ),
    )
    assert "A pull request already exists for octo:rotation-bot/sharp-0.33.5." in json.dumps(again)
    number = pull["number"]
    listed = check(
        "pulls/list",
        client.get(f"/repos/{REPO}/pulls", params={"head": "octo:rotation-bot/sharp-0.33.5"}),
    )
    assert [p["number"] for p in listed] == [number]
    assert (
        check("pulls/list", client.get(f"/repos/{REPO}/pulls", params={"head": "octo:other"})) == []
    )
    check("pulls/get", client.get(f"/repos/{REPO}/pulls/{number}"))
    check("pulls/get", client.get(f"/repos/{REPO}/pulls/999"))
    check("pulls/update", client.patch(f"/repos/{REPO}/pulls/{number}", json={"body": "c"}))
    reviewed = check(
        "pulls/request-reviewers",
        client.post(
            f"/repos/{REPO}/pulls/{number}/requested_reviewers", json={"reviewers": ["alice"]}
        ),
    )
    assert [u["login"] for u in reviewed["requested_reviewers"]] == ["alice"]
    labels = check(
        "issues/add-labels",
        client.post(f"/repos/{REPO}/issues/{number}/labels", json={"labels": ["dependencies"]}),
    )
    assert [label["name"] for label in labels] == ["dependencies"]
    check(
        "issues/add-assignees",
        client.post(f"/repos/{REPO}/issues/{number}/assignees", json={"assignees": ["alice"]}),
    )
    comment = check(
        "issues/create-comment",
        client.post(f"/repos/{REPO}/issues/{number}/comments", json={"body": "Superseded"}),
    )
    issue = check(
        "issues/create",
        client.post(
            f"/repos/{REPO}/issues",
            json={"title": "Incident", "body": "x", "labels": ["rotation-bot-incident"]},
        ),
    )
    found = check(
        "issues/list-for-repo",
        client.get(
            f"/repos/{REPO}/issues", params={"labels": "rotation-bot-incident", "state": "open"}
        ),
    )
    assert [i["number"] for i in found] == [issue["number"]]
    everything = check("issues/list-for-repo", client.get(f"/repos/{REPO}/issues"))
    assert {"pull_request" in i for i in everything} == {True, False}
    closed = check(
        "issues/update",
        client.patch(f"/repos/{REPO}/issues/{issue['number']}", json={"state": "closed"}),
    )
    assert closed["state"] == "closed" and closed["closed_at"]
    created = client.post(
        f"/repos/{REPO}/issues/comments/{comment['id']}/reactions", json={"content": "eyes"}
    )
    repeated = client.post(
        f"/repos/{REPO}/issues/comments/{comment['id']}/reactions", json={"content": "eyes"}
    )
    invalid = client.post(
        f"/repos/{REPO}/issues/comments/{comment['id']}/reactions", json={"content": "shrug"}
    )
    assert (created.status_code, repeated.status_code, invalid.status_code) == (201, 200, 422)
    for answer in (created, repeated, invalid):
        check("reactions/create-for-issue-comment", answer)
    for login, level in (("alice", "write"), ("mallory", "none")):
        permission = check(
            "repos/get-collaborator-permission-level",
            client.get(f"/repos/{REPO}/collaborators/{login}/permission"),
        )
        assert permission["permission"] == level
    check("rate-limit/get", client.get("/rate_limit"))


def test_canned_faults_match_the_description(
    served: tuple[GitHubApi, GitRepository, httpx.Client],
) -> None:
    api, _, client = served
    api.inject(Fault.pull_request_exists(REPO, "rotation-bot/sharp-0.33.5"))
    api.inject(Fault.secondary_rate_limit("POST", f"/repos/{REPO}/pulls", retry_after=3))
    create = {"title": "t", "head": "rotation-bot/sharp-0.33.5", "base": "main"}

    exists = client.post(f"/repos/{REPO}/pulls", json=create)
    limited = client.post(f"/repos/{REPO}/pulls", json=create)

    assert "already exists" in json.dumps(check("pulls/create", exists))
    assert "secondary rate limit" in check("pulls/create", limited)["message"]
    assert limited.headers["retry-after"] == "3"
    assert api.pulls(REPO) == []  # neither fault performed the operation


def test_app_operations_match_the_description(
    served: tuple[GitHubApi, GitRepository, httpx.Client],
) -> None:
    api, _, client = served
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    api.add_app(
        "7",
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    installation = api.add_installation("7", "octo", (REPO,))
    token = jwt.encode({"iss": "7", "iat": 0, "exp": 2**31}, key, algorithm="RS256")
    app = {"Authorization": f"Bearer {token}"}

    listed = check("apps/list-installations", client.get("/app/installations", headers=app))
    issued = check(
        "apps/create-installation-access-token",
        client.post(f"/app/installations/{installation.id}/access_tokens", headers=app),
    )
    repositories = check(
        "apps/list-repos-accessible-to-installation",
        client.get(
            "/installation/repositories", headers={"Authorization": f"token {issued['token']}"}
        ),
    )

    assert [i["account"]["login"] for i in listed] == ["octo"]
    assert [r["full_name"] for r in repositories["repositories"]] == [REPO]
    assert client.get("/app/installations").status_code == 401  # a token is not a JWT
    forged = jwt.encode(
        {"iss": "7", "iat": 0, "exp": 2**31},
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
    )
    assert (
        client.get("/app/installations", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )


def test_conditional_requests_pagination_and_auth(
    served: tuple[GitHubApi, GitRepository, httpx.Client],
) -> None:
    api, _, client = served
    for number in range(3):
        api.add_issue(REPO, title=f"issue {number}", user="alice")
    first = client.get(f"/repos/{REPO}/issues", params={"per_page": 2})
    remaining = first.headers["x-ratelimit-remaining"]
    unchanged = client.get(
        f"/repos/{REPO}/issues",
        params={"per_page": 2},
        headers={"If-None-Match": first.headers["etag"]},
    )
    second = client.get(first.links["next"]["url"])

    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["x-ratelimit-remaining"] == remaining
    assert [i["number"] for i in first.json()] == [3, 2]
    assert [i["number"] for i in second.json()] == [1]
    assert httpx.get(f"{api.api_url}/repos/{REPO}").status_code == 401
    assert [r.status for r in api.requests_matching("GET", f"/repos/{REPO}/issues")] == [
        200,
        304,
        200,
    ]
