"""Geometry of the server-rendered SVG charts (pure; the templates draw the shapes).

No JavaScript and no style attributes (the Content-Security-Policy forbids inline styles): every
shape is positioned by SVG attributes and coloured by a class from the stylesheet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.service.dashboard.data import FAILURE_OUTCOMES, LeadTime, RunRef, StepView

WIDTH = 640
HEIGHT = 150
LEFT = 36
BOTTOM = 20
TOP = 8


@dataclass(frozen=True)
class Shape:
    """A rectangle with a class and a tooltip (`<title>`)."""

    x: float
    y: float
    width: float
    height: float
    css: str
    label: str


@dataclass(frozen=True)
class Tick:
    """An axis label at a position."""

    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    """Shapes and labels inside a `WIDTH` x `height` view box."""

    shapes: tuple[Shape, ...]
    ticks: tuple[Tick, ...]
    height: float
    empty: bool


def outcome_chart(runs: Sequence[RunRef], *, now: datetime, window: timedelta) -> Chart:
    """Runs per day (per week for windows over a month), stacked: succeeded below, failed above."""
    step = timedelta(days=1) if window <= timedelta(days=31) else timedelta(days=7)
    count = max(int(window / step), 1)
    start = now - step * count
    succeeded = [0] * count
    failed = [0] * count
    for run in runs:
        if run.started_at is None or run.started_at < start or run.outcome is None:
            continue
        index = min(int((run.started_at - start) / step), count - 1)
        if run.outcome in FAILURE_OUTCOMES:
            failed[index] += 1
        else:
            succeeded[index] += 1
    peak = max([ok + bad for ok, bad in zip(succeeded, failed, strict=True)] + [1])
    plot = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / count
    shapes: list[Shape] = []
    ticks: list[Tick] = [Tick(LEFT - 4, TOP + 8, str(peak)), Tick(LEFT - 4, HEIGHT - BOTTOM, "0")]
    for index in range(count):
        x = LEFT + index * slot + 1
        day = start + step * index
        label = f"{day:%Y-%m-%d}"
        base = float(HEIGHT - BOTTOM)
        for value, css, word in (
            (succeeded[index], "ok", "succeeded"),
            (failed[index], "failed", "failed"),
        ):
            if value:
                height = plot * value / peak
                base -= height
                shapes.append(
                    Shape(x, base, max(slot - 2, 1), height, css, f"{label}: {value} {word}")
                )
        if index % max(count // 6, 1) == 0:
            ticks.append(Tick(x, HEIGHT - 4, f"{day:%m-%d}"))
    return Chart(tuple(shapes), tuple(ticks), HEIGHT, not any(succeeded) and not any(failed))


def _unit(seconds: float) -> tuple[str, float]:
    """A unit that suits the longest bar: minutes, hours or days."""
    if seconds < 2 * 3600:
        return "min", 60.0
    if seconds < 2 * 86400:
        return "h", 3600.0
    return "days", 86400.0


def lead_time_chart(leads: Sequence[LeadTime], *, now: datetime, limit: int = 12) -> Chart:
    """One bar per proposal (newest `limit`): waiting (published → opened), then in review
    (opened → merge seen, or → now while open)."""
    shown = list(leads)[-limit:]
    row = 18
    height = max(len(shown), 1) * row + BOTTOM + TOP
    waits = [
        max((lead.opened_at - lead.published_at).total_seconds(), 0.0) if lead.published_at else 0.0
        for lead in shown
    ]
    reviews = [
        max(((lead.merged_seen_at or now) - lead.opened_at).total_seconds(), 0.0) for lead in shown
    ]
    longest = max([a + b for a, b in zip(waits, reviews, strict=True)] + [60.0])
    unit, size = _unit(longest)
    label_width = 200
    scale = (WIDTH - label_width - 8) / longest
    shapes: list[Shape] = []
    ticks: list[Tick] = []
    for index, lead in enumerate(shown):
        y = TOP + index * row
        name = f"{lead.runbook} {lead.version}"
        repo = lead.repo.rstrip("/").rsplit("/", 1)[-1][:18]
        ticks.append(Tick(label_width - 6, y + 12, f"{repo} {name}"[:34]))
        wait, review = waits[index], reviews[index]
        if lead.published_at is not None:
            shapes.append(
                Shape(
                    label_width,
                    y + 2,
                    max(wait * scale, 1),
                    row - 6,
                    "wait",
                    f"{name}: released → PR opened in {wait / size:.1f} {unit}",
                )
            )
        else:
            shapes.append(
                Shape(
                    label_width, y + 2, 1, row - 6, "unknown", f"{name}: release date not recorded"
                )
            )
        merged = lead.merged_seen_at is not None
        shapes.append(
            Shape(
                label_width + wait * scale,
                y + 2,
                max(review * scale, 1),
                row - 6,
                "review" if merged else "open",
                f"{name}: PR opened → merge seen in {review / size:.1f} {unit}"
                if merged
                else f"{name}: PR open for {review / size:.1f} {unit} (merge not seen yet)",
            )
        )
    ticks.append(Tick(WIDTH - 4, height - 4, f"{longest / size:.1f} {unit}"))
    return Chart(tuple(shapes), tuple(ticks), height, not shown)


def timeline_chart(steps: Sequence[StepView]) -> Chart:
    """The run's steps as a Gantt strip: one row per step, positioned by start and duration."""
    timed = [step for step in steps if step.started_at is not None]
    row = 16
    height = max(len(steps), 1) * row + TOP + BOTTOM
    if not timed:
        return Chart((), (), height, True)
    start = min(step.started_at for step in timed if step.started_at is not None)
    end = max((step.finished_at or step.started_at) for step in timed if step.started_at)
    total = max((end - start).total_seconds(), 0.001)
    left = 170
    scale = (WIDTH - left - 8) / total
    shapes: list[Shape] = []
    ticks: list[Tick] = []
    for index, step in enumerate(steps):
        y = TOP + index * row
        ticks.append(Tick(left - 6, y + 11, f"{step.sequence}. {step.kind}"[:26]))
        if step.started_at is None:
            continue
        offset = (step.started_at - start).total_seconds() * scale
        shapes.append(
            Shape(
                left + offset,
                y + 2,
                max(step.seconds * scale, 2),
                row - 5,
                step.status,
                f"{step.kind}: {step.status}, {step.seconds:.2f} s",
            )
        )
    ticks.append(Tick(WIDTH - 4, height - 4, f"{total:.1f} s"))
    return Chart(tuple(shapes), tuple(ticks), height, False)
