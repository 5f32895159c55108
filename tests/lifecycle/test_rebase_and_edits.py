"""Open rotations when the base moves and when a person pushes to them, on the GitHub-shaped
server with real git: a conflicting base change is regenerated (force-pushed with lease), a
harmless one costs no write, a person's commit is never overwritten and gets one comment."""

from __future__ import annotations

import json

from tests.support.hub import PATCH, REPO, Hub, package_json


def _conflicting_base_change(hub: Hub) -> str:
    """Change the line of package.json the rotation changes too (sharp's spec)."""
    manifest = package_json(hub)
    manifest["dependencies"]["sharp"] = "^0.33.4"
    return hub.people.commit(
        {"package.json": json.dumps(manifest, indent=2) + "\n"}, "Range for sharp", branch="main"
    )


def test_a_harmless_base_change_costs_no_write_and_a_conflict_is_regenerated(hub: Hub) -> None:
    (first,) = hub.run()
    head = hub.branch(PATCH)
    assert first["outcome"] == "proposed" and head is not None

    hub.people.commit({"README.md": "moved on\n"}, "Docs", branch="main")
    hub.api.clear_requests()
    (quiet,) = hub.run()

    assert quiet["outcome"] == "up-to-date"
    assert "without conflicts" in quiet["message"]
    assert hub.writes() == []  # no push, no API write
    assert hub.branch(PATCH) == head

    new_main = _conflicting_base_change(hub)
    (again,) = hub.run()

    regenerated = hub.branch(PATCH)
    hub.people.git("fetch", "-q", "origin")
    assert again["outcome"] == "proposed"
    assert regenerated not in (None, head)
    assert hub.people.git("merge-base", "--is-ancestor", new_main, str(regenerated)) == ""
    assert '"sharp": "^0.33.6"' in hub.people.git("show", f"{regenerated}:package.json")
    assert len(hub.pulls()) == 1  # the same pull request, updated


def test_behind_base_regenerates_on_any_base_change(hub: Hub) -> None:
    hub.run()
    hub.config(
        "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
        "pull-requests:\n  rebase-when: behind-base\n"
    )
    head = hub.branch(PATCH)
    (again,) = hub.run()
    assert again["outcome"] == "proposed" and hub.branch(PATCH) != head


def test_a_persons_push_is_never_overwritten_and_commented_on_once(hub: Hub) -> None:
    hub.run()
    edited = hub.push_as_person({"NOTES.md": "my fix\n"}, "Fix by hand", branch=PATCH)

    (held,) = hub.run()
    _conflicting_base_change(hub)
    (still,) = hub.run()

    (pull,) = hub.pulls().values()
    comments = [c.body for c in hub.api.comments_on(REPO, pull.number)]
    assert held["outcome"] == still["outcome"] == "held"
    assert hub.branch(PATCH) == edited
    assert len(comments) == 1
    assert "edited by @jane" in comments[0] and "/rotate recreate" in comments[0]
    records = [
        step
        for run in (held, still)
        for step in hub.audit().run_steps(run["run_id"])
        if step["kind"] == "lifecycle"
    ]
    assert [r["evidence"]["verdict"] for r in records] == ["held", "held"]
    assert records[0]["evidence"]["edited_by"] == "@jane"
