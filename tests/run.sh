#!/usr/bin/env bash
# Set up everything the test suite needs, then run lint, types and the whole suite.
# Extra arguments go to pytest (e.g. `bash tests/run.sh -m "not network"`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh --test
export PATH="$PWD/.venv/bin:$PATH"
echo "+ ruff check ."
ruff check .
echo "+ ruff format --check ."
ruff format --check .
echo "+ mypy --strict bot"
mypy
echo "+ pytest"
# pytest-randomly shuffles the order (the seed is printed; -p no:randomly turns it off)
exec python -m pytest -n 2 -p no:cacheprovider "$@"
