#!/usr/bin/env bash
# Mutation testing of the verification code (not part of the test suite; takes tens of minutes).
#
#   bash tests/bench/mutation.sh            # mutmut over bot/verify/ and the verify steps
#   bash tests/bench/mutation.sh --results  # list the surviving mutants of the last run
#
# mutmut 3 (`pip install mutmut` into .venv) copies the tree it mutates into a scratch copy
# under .mutation/ with its own setup.cfg, so the repository's files are never rewritten.
# A surviving mutant is a change to a check that no test notices: kill it with a test that
# fails when the check is removed, or remove the dead code.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$ROOT/.mutation
if [[ "${1:-}" != "--results" ]]; then
  rm -rf "$WORK"
  mkdir -p "$WORK"
  git ls-files -z bot tests pyproject.toml runbooks | xargs -0 cp -a --parents -t "$WORK"
  rm "$WORK/pyproject.toml"  # mutmut reads [tool.mutmut] from pyproject first, else setup.cfg
  cat > "$WORK/setup.cfg" <<'CFG'
[mutmut]
source_paths = bot
only_mutate =
    bot/verify/*
    bot/steps/verify_tarballs.py
    bot/steps/verify_signatures.py
    bot/steps/verify_provenance.py
    bot/steps/verify_closure.py
    bot/steps/confirm_lockfile.py
pytest_add_cli_args_test_selection =
    tests/test_sigstore.py
    tests/test_provenance.py
    tests/test_signatures.py
    tests/test_risk.py
    tests/test_verify_steps.py
    tests/test_verify_closure.py
also_copy =
    tests
    runbooks
    bot/data
pytest_add_cli_args = -p no:cacheprovider -p no:randomly -x -q
CFG
  # the Verdaccio harness the tests start (node_modules is not in git)
  mkdir -p "$WORK/mutants/tests/harness"
  ln -s "$ROOT/tests/harness/node_modules" "$WORK/mutants/tests/harness/node_modules"
fi
cd "$WORK"
if [[ "${1:-}" != "--results" ]]; then
  PATH="$ROOT/.venv/bin:$PATH" "$ROOT/.venv/bin/mutmut" run --max-children 2
fi
PATH="$ROOT/.venv/bin:$PATH" "$ROOT/.venv/bin/mutmut" results --all true 2>/dev/null \
  || PATH="$ROOT/.venv/bin:$PATH" "$ROOT/.venv/bin/mutmut" results
