"""What stands between a planned rotation and its pull request, end to end on the GitHub-shaped
server: approvals for majors, the open and hourly limits (with the security bypass), auto-merge,
and onboarding."""

from __future__ import annotations

import re

from bot.models import utc_now
from bot.service.dashboard.auth import Viewer
from bot.service.dashboard.data import FleetQuery, load_fleet
from bot.service.dashboard.render import render_fleet
from tests.conftest import bot
from tests.support.hub import MAJOR, PATCH, REPO, Hub

MAJORS = "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n    major: next\n"


def _dashboard_section(hub: Hub, title: str) -> str:
    """One section of the dependency dashboard issue's body."""
    (issue,) = [
        i for i in hub.api.issues(REPO, state="open") if "rotation-bot-dashboard" in i.labels
    ]
    return str(issue.body).split(f"### {title}\n")[1].split("###")[0]


def _lifecycle(hub: Hub, run: dict[str, object]) -> dict[str, object]:
    (record,) = [s for s in hub.audit().run_steps(str(run["run_id"])) if s["kind"] == "lifecycle"]
    evidence: dict[str, object] = record["evidence"]
    return evidence


def test_a_major_waits_for_approval_then_opens_with_who_approved(hub: Hub) -> None:
    hub.config(MAJORS + "    major-approval: true\ndashboard: true\n")

    patch, major = hub.run()
    announced = _dashboard_section(hub, "Majors awaiting approval")
    (dashboard,) = [i for i in hub.api.issues(REPO) if "rotation-bot-dashboard" in i.labels]
    _, again_major = hub.run()

    assert (patch["outcome"], major["outcome"]) == ("proposed", "waiting")
    assert (
        again_major["outcome"] == "waiting" and "/rotate approve 0.34.1" in again_major["message"]
    )
    assert set(hub.pulls()) == {PATCH} and hub.branch(MAJOR) is None
    (notice,) = [
        i for i in hub.api.issues(REPO, state="open") if "rotation-bot-approval" in i.labels
    ]
    assert "/rotate approve 0.34.1" in str(notice.body)
    assert (
        "sharp `0.34.1`: no pull request yet; a writer approves with `/rotate approve 0.34.1`"
        in announced
    )

    hub.records().record_approval(REPO, "sharp", "0.34.1", by="alice", url="https://x/1")
    _, approved = hub.run()

    pulls = hub.pulls()
    assert approved["outcome"] == "proposed" and set(pulls) == {PATCH, MAJOR}
    assert "Approved by @\u200balice" in str(pulls[MAJOR].body)
    assert [i.number for i in hub.api.issues(REPO, state="open")] == [dashboard.number]
    assert "no pull request yet" not in _dashboard_section(hub, "Majors awaiting approval")
    assert "Approved by @alice" in hub.api.comments_on(REPO, notice.number)[-1].body
    assert hub.audit().verify().ok


def test_a_held_version_shows_in_plan_and_in_the_pull_request_that_skips_it(hub: Hub) -> None:
    hub.records().record_hold(REPO, "sharp", "ignore", "0.33.6", by="alice", url="https://x/2")

    planned = bot(hub.env, "plan", "--repo", REPO, "--runbook", "sharp")
    (run,) = hub.run()

    assert planned.exit_code == 0
    assert "skipped sharp@0.33.6: held by /rotate ignore 0.33.6 (@alice, " in planned.output
    assert run["outcome"] == "proposed" and set(hub.pulls()) == {"rotation-bot/sharp-0.33.5"}
    body = str(hub.pulls()["rotation-bot/sharp-0.33.5"].body)
    assert "### Not proposed" in body
    assert "`sharp@0.33.6`: held by /rotate ignore 0.33.6 (@\u200balice, " in body


def test_max_open_keeps_a_rotation_waiting_for_a_slot_until_one_frees(hub: Hub) -> None:
    hub.config(MAJORS + "pull-requests:\n  max-open: 1\ndashboard: true\n")

    patch, major = hub.run()
    slots = _dashboard_section(hub, "Waiting for a slot")

    assert (patch["outcome"], major["outcome"]) == ("proposed", "waiting")
    assert "waiting for a slot" in str(major["message"]) and "max-open: 1" in str(major["message"])
    assert _lifecycle(hub, major)["verdict"] == "waiting"
    assert set(hub.pulls()) == {PATCH}
    assert "sharp `0.34.1`: waiting for a slot: 1 rotation pull requests are open" in slots
    page = render_fleet(
        load_fleet(hub.audit(), now=utc_now()), FleetQuery(), Viewer("t", "token"), runbooks=[]
    )
    (waiting,) = re.findall(r'<li class="waiting">.*?</li>', page)
    assert 'sharp <code>0.34.1</code>: <span class="reason">waiting for a slot' in waiting

    hub.people.git("fetch", "-q", "origin")  # the patch pull request is merged: a slot frees
    hub.people.git("checkout", "-q", "-B", "main", "origin/main")
    hub.people.git("merge", "-q", "--no-edit", f"origin/{PATCH}")
    hub.people.git("push", "-q", "origin", "HEAD:main")
    hub.api.pulls(REPO)[0].state = "closed"
    (opened,) = hub.run()

    assert opened["outcome"] == "proposed" and set(hub.pulls()) == {MAJOR}


def test_the_hourly_limit_holds_a_rotation_unless_it_fixes_an_advisory(hub: Hub) -> None:
    hub.config(MAJORS)
    hub.env.extra["ROTATION_BOT_MAX_PRS_PER_HOUR"] = "1"

    _, major = hub.run()
    assert major["outcome"] == "waiting" and "ROTATION_BOT_MAX_PRS_PER_HOUR=1" in major["message"]

    hub.api.add_advisory("GHSA-abcd-efgh-ijkl", "sharp", ">= 0.33.0, < 0.34.0", "0.34.0")
    _, fixed = hub.run()

    assert fixed["outcome"] == "proposed"
    assert "it fixes security advisory GHSA-abcd-efgh-ijkl" in str(hub.pulls()[MAJOR].body)
    advisories = hub.api.requests_matching("GET", "/advisories")
    assert {r.query["affects"] for r in advisories} == {"sharp@0.33.4", "sharp@0.34.1"}


def test_auto_merge_only_for_a_patch_whose_every_verification_passed(hub: Hub) -> None:
    hub.config(MAJORS + "verify:\n  signatures: if-published\npull-requests:\n  automerge: true\n")
    hub.api.allow_auto_merge(REPO)

    patch, major = hub.run()

    pulls = hub.pulls()
    assert pulls[PATCH].auto_merge == "SQUASH" and pulls[MAJOR].auto_merge is None
    assert "Auto-merge: requested" in str(pulls[PATCH].body)
    assert "patch rotations only" in str(pulls[MAJOR].body)
    evidence = {
        run["target"]: next(
            s["evidence"] for s in hub.audit().run_steps(run["run_id"]) if s["kind"] == "propose"
        )
        for run in (patch, major)
    }
    assert evidence["0.33.6"]["automerge"] == "enabled" and evidence["0.34.1"]["automerge"] is None
    (graphql,) = hub.api.requests_matching("POST", "/api/graphql")
    assert "enablePullRequestAutoMerge" in graphql.json()["query"]


def test_auto_merge_is_not_asked_when_a_required_verification_was_skipped(hub: Hub) -> None:
    hub.config(
        "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
        "pull-requests:\n  automerge: true\n"
    )
    hub.api.allow_auto_merge(REPO)

    hub.run()

    (pull,) = hub.pulls().values()
    assert pull.auto_merge is None
    assert "verify-signatures was skipped but is required" in str(pull.body)
    assert hub.api.requests_matching("POST", "/api/graphql") == []


def test_onboarding_proposes_the_config_and_nothing_else(hub: Hub) -> None:
    hub.people.git("rm", "-q", ".github/rotation-bot.yml")
    hub.people.git("commit", "-q", "-m", "No config")
    hub.people.git("push", "-q", "origin", "HEAD:main")
    hub.env.extra["ROTATION_BOT_ONBOARDING"] = "true"

    (first,) = hub.run()
    hub.api.clear_requests()
    (again,) = hub.run()

    pulls = hub.pulls()
    hub.people.git("fetch", "-q", "origin")
    assert first["outcome"] == "proposed" and again["outcome"] == "up-to-date"
    assert set(pulls) == {"rotation-bot/configure"}
    config = hub.people.git("show", "origin/rotation-bot/configure:.github/rotation-bot.yml")
    assert "sharp: project . (npm, package-lock.json) at 0.33.4" in config
    assert 'platforms: ["linux-x64", "linuxmusl-x64"]' in config
    assert hub.writes() == []  # nothing else happens there until it is merged
