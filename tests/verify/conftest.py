"""Marks the tests of the verification code that start a registry server `registry`, so
`tests/bench/mutation.sh` runs each mutant against the server-free tests first, and against the
server ones only where no server-free test reaches the mutated function."""

from pathlib import Path

import pytest

HERE = Path(__file__).parent
SERVER_FIXTURES = frozenset(
    {"npm", "signing", "risky_registry", "registry", "private_registry", "staged_registry"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.path.is_relative_to(HERE) and SERVER_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.registry)
