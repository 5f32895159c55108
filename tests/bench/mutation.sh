#!/usr/bin/env bash
# Mutation testing of the verification code (not part of the test suite).
#
#   bash tests/bench/mutation.sh verify   # bot/verify/** against the tests that need no server
#   bash tests/bench/mutation.sh steps    # the verify steps against their Verdaccio tests (slow)
#   bash tests/bench/mutation.sh results  # the mutants of the last run, surviving ones marked
#
# mutmut 3 (`pip install mutmut` into .venv) works in a scratch copy under .mutation/ with its
# own setup.cfg, so no file of the repository is rewritten. A surviving mutant is a change to a
# check that no test notices: kill it with a test that fails when the check is removed, or
# remove the dead code.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
WORK=$ROOT/.mutation
MODE=${1:-verify}
mutmut() { (cd "$WORK" && PATH="$ROOT/.venv/bin:$PATH" "$ROOT/.venv/bin/mutmut" "$@"); }
if [[ "$MODE" == results ]]; then
  mutmut results --all true
  exit
fi
case "$MODE" in
  verify)
    MUTATE="    bot/verify/*"
    TESTS="    tests/verify"
    # the tests that start a registry are left to the `steps` run
    SELECT="    -k
    not step and not keyring and not proposal and not rotation and not configured and not sharp_beyond";;
  steps)
    MUTATE="    bot/steps/verify_tarballs.py
    bot/steps/verify_signatures.py
    bot/steps/verify_provenance.py
    bot/steps/verify_closure.py
    bot/steps/confirm_lockfile.py"
    TESTS="    tests/steps/test_confirm_lockfile.py
    tests/steps/test_verify_tarballs.py
    tests/verify/test_provenance.py
    tests/verify/test_signatures.py
    tests/verify/test_closure.py"
    SELECT="";;
  *) echo "usage: $0 verify|steps|results" >&2; exit 2;;
esac
rm -rf "$WORK"
mkdir -p "$WORK"
git ls-files -z bot tests pyproject.toml runbooks | xargs -0 cp -a --parents -t "$WORK"
rm "$WORK/pyproject.toml"  # mutmut reads [tool.mutmut] from pyproject first, else setup.cfg
cat > "$WORK/setup.cfg" <<CFG
[mutmut]
source_paths = bot
only_mutate =
$MUTATE
pytest_add_cli_args_test_selection =
$TESTS
also_copy =
    tests
    runbooks
    bot/data
pytest_add_cli_args =
    -p
    no:cacheprovider
    -q
$SELECT
CFG
# the Verdaccio harness the tests start (node_modules is not in git)
mkdir -p "$WORK/mutants/tests/harness"
ln -s "$ROOT/tests/harness/node_modules" "$WORK/mutants/tests/harness/node_modules"
mutmut run --max-children 2
mutmut results
