"""Prometheus metrics of the unattended service: runs, step durations, webhook deliveries, queue.

Each `Metrics` owns its own `CollectorRegistry` (not the process-wide default), so two services in
one process (tests) never share counters; `/metrics` exposes exactly this registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bot.models import RunSummary

STEP_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class Metrics:
    """The service's counters, histograms and gauges, in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter(
            "rotation_bot_runs",
            "Rotation runs finished, by trigger and outcome.",
            ("trigger", "outcome"),
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "rotation_bot_step_duration_seconds",
            "How long each runbook step took.",
            ("step", "status"),
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.deliveries = Counter(
            "rotation_bot_webhook_deliveries",
            "Webhook deliveries received, by result.",
            ("result",),
            registry=self.registry,
        )
        self.chat_commands = Counter(
            "rotation_bot_chat_commands",
            "`/rotate` comments handled, by result (queued, status, unknown, denied, busy…).",
            ("result",),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "rotation_bot_queue_depth",
            "Rotation requests waiting for a worker.",
            registry=self.registry,
        )
        self.running = Gauge(
            "rotation_bot_runs_in_progress",
            "Rotation requests being executed now.",
            registry=self.registry,
        )

    def watch_queue(self, depth: Callable[[], int], running: Callable[[], int]) -> None:
        """Read the queue depth and the number of running requests at scrape time."""
        self.queue_depth.set_function(lambda: float(depth()))
        self.running.set_function(lambda: float(running()))

    def record_runs(self, trigger: str, summaries: Iterable[RunSummary]) -> None:
        """Count finished runs and observe their step durations."""
        for summary in summaries:
            self.runs.labels(trigger=trigger, outcome=summary.outcome).inc()
            for result in summary.steps:
                if result.started_at is not None and result.finished_at is not None:
                    seconds = (result.finished_at - result.started_at).total_seconds()
                    self.step_seconds.labels(step=result.kind, status=result.status).observe(
                        max(seconds, 0.0)
                    )
