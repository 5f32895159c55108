"""The lifecycle tests' served repository (tests/support/hub.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env
from tests.support.hub import Hub, served_hub


@pytest.fixture
def hub(tmp_path: Path, env: Env) -> Iterator[Hub]:
    with served_hub(tmp_path, env) as served:
        yield served
