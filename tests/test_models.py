"""Core data helpers: how a duration reads in a message."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.models import describe_duration


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (timedelta(0), "0 seconds"),
        (timedelta(seconds=1), "1 second"),
        (timedelta(minutes=30), "30 minutes"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=3), "3 days"),
        (timedelta(weeks=1), "7 days"),
        (timedelta(days=1, hours=12), "1 day 12 hours"),
        (timedelta(hours=2, minutes=1, seconds=5), "2 hours 1 minute 5 seconds"),
    ],
)
def test_a_duration_reads_in_words(value: timedelta, words: str) -> None:
    assert describe_duration(value) == words
