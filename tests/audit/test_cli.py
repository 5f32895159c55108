"""`rotation-bot audit verify`: checks the configured anchor by default or the files given with
`--anchor`, prints one line per problem and exits 1; `ok: …` says what was anchored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from bot.audit import runs
from tests.audit.conftest import Trail, build_trail, tamper
from tests.conftest import Env, bot


@pytest.fixture
def state(tmp_path: Path) -> tuple[Env, Trail]:
    """A trail in the CLI's state directory, anchored where the service anchors by default."""
    env = Env(tmp_path, "http://127.0.0.1:9/", "unused")
    env.state.mkdir(parents=True)
    return env, build_trail(env.state, "audit-anchor.log")


def test_verify_checks_the_configured_anchor_by_default(state: tuple[Env, Trail]) -> None:
    env, trail = state
    result = bot(env, "audit", "verify")
    assert result.exit_code == 0
    assert result.output == (
        "ok: 16 records in 3 runs, chain intact; 3 anchored heads match (newest: record 16, "
        f"{trail.anchor})\n"
    )


def test_verify_prints_one_line_per_problem_and_exits_1(state: tuple[Env, Trail]) -> None:
    env, trail = state
    tamper(
        trail.store,
        update(runs).where(runs.c.id == trail.first).values(actor="mallory"),
        update(runs).where(runs.c.id == trail.second).values(outcome=None),
    )
    result = bot(env, "audit", "verify")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"rotation-bot: audit chain broken: run {trail.first[:8]}: actor differs from the chain "
        "('mallory' shown, 'alice' chained)",
        f"rotation-bot: audit chain broken: run {trail.second[:8]}: outcome differs from the "
        "chain (None shown, 'proposed' chained)",
    ]


def test_verify_of_a_deleted_database_fails_on_the_anchor(state: tuple[Env, Trail]) -> None:
    env, trail = state
    trail.store.engine.dispose()
    for path in env.state.glob("audit.sqlite3*"):
        path.unlink()

    result = bot(env, "audit", "verify")

    assert result.exit_code == 1 and not result.output.startswith("ok")
    problems = [line for line in result.output.splitlines() if not line.startswith("WARNING ")]
    assert len(problems) == 3  # each anchored head is missing
    assert "record 6 is not in the chain, which ends at record 0" in result.output


def test_verify_with_an_explicit_anchor_and_without_any(state: tuple[Env, Trail]) -> None:
    env, trail = state
    copy = env.root / "shipped-anchor.log"
    copy.write_text(trail.anchor.read_text().splitlines()[0] + "\n")

    explicit = bot(env, "audit", "verify", "--anchor", str(copy))
    trail.anchor.unlink()
    unanchored = bot(env, "audit", "verify")
    missing = bot(env, "audit", "verify", "--anchor", str(env.root / "nope.log"))

    assert (
        explicit.exit_code == 0 and "1 anchored head matches (newest: record 6" in explicit.output
    )
    assert unanchored.exit_code == 0
    assert unanchored.output.endswith(
        f"chain intact; not anchored (nothing anchored in {trail.anchor} yet; see docs/AUDIT.md)\n"
    )
    assert missing.exit_code == 2
    assert missing.output.startswith(
        f"rotation-bot: config: audit anchor {env.root / 'nope.log'}: cannot read"
    )
