#!/usr/bin/env bash
# Mutation testing of the verification code (not part of the test suite).
#
#   bash tests/bench/mutation.sh verify [MODULE...]  # bot/verify modules, one run each
#   bash tests/bench/mutation.sh steps               # the verify steps against their tests (slow)
#   bash tests/bench/mutation.sh results [MODULE]    # a module's mutants, the surviving ones marked
#   bash tests/bench/mutation.sh survivors MODULE    # its survivors again, against today's tests
#
# MODULE is a path under bot/verify (`closure.py`, `sigstore/tlog.py`); without one, every module
# is run in turn. Each run works in its own scratch copy, .mutation/<module>/, with its own
# setup.cfg, so no file of the repository is rewritten and the runs can be redone one by one.
#
# mutmut 3 (`pip install mutmut` into .venv) first records which tests reach which function, then
# runs each mutant against those tests only, stopping at the first failure. Two passes keep that
# affordable on two cores:
#   1. every mutant against the tests that start no server (`-m "not registry"`, the marker is
#      set in tests/verify/conftest.py);
#   2. the mutants pass 1 did not kill (no test reached them, or they survived) against the
#      tests that start a registry, in .mutation/<module>+registry/.
# Each module ends with one verdict over both passes ("both passes") and the mutants left.
# A surviving mutant is a change to a check that no test notices: kill it with a test that fails
# when the check is removed, or remove the dead code.
#
# mutmut runs under tests/bench/subreaper.py so that no registry a killed test started (mutmut
# ends a slow test with SIGXCPU: no fixture teardown) outlives the run; `ps -eo pid,ppid,args | grep -E 'verdaccio|signing_registry'` after a run shows none.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
MODE=${1:-verify}
shift || true

mutmut() {
  (cd "$1" && shift && PATH="$ROOT/.venv/bin:$PATH" "$ROOT/.venv/bin/python" \
    "$ROOT/tests/bench/subreaper.py" "$ROOT/.venv/bin/mutmut" "$@")
}

# prepare WORK MUTATE TESTS MARKER: a scratch copy whose mutmut config mutates MUTATE (one glob a
# line), selects TESTS (one path a line) and the tests matching the pytest MARKER expression.
prepare() {
  local work=$1 mutate=$2 tests=$3 marker=$4
  rm -rf "$work"
  mkdir -p "$work"
  git ls-files -z bot tests runbooks | xargs -0 cp -a --parents -t "$work"
  # the pytest settings only: mutmut reads [tool.mutmut] from pyproject first, else setup.cfg
  "$ROOT/.venv/bin/python" -c 'import tomllib; o = tomllib.load(open("pyproject.toml", "rb"))["tool"]["pytest"]["ini_options"]; print("[tool.pytest.ini_options]", *(f"{k} = {v!r}" for k, v in o.items()), sep="\n")' >"$work/pyproject.toml"
  {
    echo "[mutmut]"
    echo "source_paths = bot"
    echo "only_mutate ="
    sed 's/^/    /' <<<"$mutate"
    echo "pytest_add_cli_args_test_selection ="
    sed 's/^/    /' <<<"$tests"
    echo "also_copy ="
    printf '    %s\n' tests runbooks bot/data
    echo "pytest_add_cli_args ="
    printf '    %s\n' -p no:cacheprovider -q -m "$marker"
  } >"$work/setup.cfg"
  # the Verdaccio harness the tests start (node_modules is not in git)
  mkdir -p "$work/mutants/tests/harness"
  ln -s "$ROOT/tests/harness/node_modules" "$work/mutants/tests/harness/node_modules"
}

# the names of the mutants WORK's run did not kill (no test reached them, or they survived or
# timed out there)
unkilled() {
  (cd "$1/mutants" && "$ROOT/.venv/bin/python" - <<'PY'
import json
import pathlib

from mutmut.stats import status_by_exit_code

for meta in pathlib.Path("bot").rglob("*.meta"):
    for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
        if code is not None and status_by_exit_code[code] != "killed":
            print(name)
PY
  )
}

# the verdict of both passes of module NAME: a mutant counts as killed if either pass killed it,
# else by its second-pass status (where that pass had a test for it); one line of figures, then
# each mutant not killed with its status
verdict() {
  local work=$ROOT/.mutation/$1
  [[ -d "$work/mutants" ]] || return 0
  (cd "$work" && "$ROOT/.venv/bin/python" - "$1" <<'PY'
import collections
import json
import pathlib
import sys

from mutmut.stats import status_by_exit_code


def statuses(work):
    found = {}
    for meta in pathlib.Path(work, "mutants", "bot").rglob("*.meta"):
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if code is not None:
                found[name] = status_by_exit_code[code]
    return found


final = statuses(".")
for name, status in statuses(f"../{sys.argv[1]}+registry").items():
    if final.get(name) != "killed" and status != "no tests":
        final[name] = status
counts = collections.Counter(final.values())
print(f"{sys.argv[1]} (both passes): {len(final)} mutants, "
      + ", ".join(f"{n} {counts[n]}" for n in ("killed", "survived", "no tests", "timeout"))
      + "".join(f", {n} {c}" for n, c in counts.items()
                if n not in ("killed", "survived", "no tests", "timeout")))
for name, status in sorted(final.items()):
    if status != "killed":
        print(f"    {name}: {status}")
PY
  )
}

# the figures of a finished run in WORK, one line
figures() {
  (cd "$1/mutants" && "$ROOT/.venv/bin/python" - "$2" <<'PY'
import collections
import json
import pathlib
import sys

from mutmut.stats import status_by_exit_code

counts = collections.Counter(
    status_by_exit_code[code]
    for meta in pathlib.Path("bot").rglob("*.meta")
    for code in json.loads(meta.read_text())["exit_code_by_key"].values()
)
total = sum(counts.values())
print(f"{sys.argv[1]}: {total} mutants, "
      + ", ".join(f"{n} {counts[n]}" for n in ("killed", "survived", "no tests", "timeout"))
      + "".join(f", {n} {c}" for n, c in counts.items()
                if n not in ("killed", "survived", "no tests", "timeout")))
PY
  )
}

# mutmut times a test by its call alone, not by the set-up of the registries its module starts
# (Verdaccio, the signing front, published fixtures: 10-30 s a module on a busy machine), so a
# mutant that every test survives, running them all, exceeded the default limit (estimate+1)*15 s
# (4 s estimated, 100 s taken): WORK's limit gets that set-up as a constant instead
registry_timeouts() {
  sed -i '/^timeout_\(multiplier\|constant\) =/d' "$1/setup.cfg"
  printf '%s\n' "timeout_multiplier = 2" "timeout_constant = 120" >>"$1/setup.cfg"
}

run_module() {
  local module=$1 name=${1//\//.}
  local work=$ROOT/.mutation/$name
  rm -rf "$work+registry"
  prepare "$work" "bot/verify/$module" tests/verify "not registry"
  mutmut "$work" run --max-children 2 >"$work/run.log" 2>&1 || { tail -20 "$work/run.log"; return 1; }
  figures "$work" "$module (no server)"
  mapfile -t names < <(unkilled "$work")
  if ((${#names[@]})); then
    prepare "$work+registry" "bot/verify/$module" tests/verify registry
    registry_timeouts "$work+registry"
    mutmut "$work+registry" run --max-children 2 "${names[@]}" >"$work+registry/run.log" 2>&1 ||
      { tail -20 "$work+registry/run.log"; return 1; }
    figures "$work+registry" "$module (registry, the ${#names[@]} not killed above)"
  fi
  verdict "$name"
}

case "$MODE" in
  verify)
    if (($# == 0)); then
      mapfile -t modules < <(cd bot/verify && git ls-files '*.py' | grep -v '__init__.py$')
      set -- "${modules[@]}"
    fi
    for module in "$@"; do run_module "$module"; done;;
  steps)
    work=$ROOT/.mutation/steps
    prepare "$work" "bot/steps/verify_tarballs.py
bot/steps/verify_signatures.py
bot/steps/verify_provenance.py
bot/steps/verify_closure.py
bot/steps/confirm_lockfile.py" "tests/steps/test_confirm_lockfile.py
tests/steps/test_verify_tarballs.py
tests/verify" "not network"
    mutmut "$work" run --max-children 2 >"$work/run.log" 2>&1 || { tail -20 "$work/run.log"; exit 1; }
    figures "$work" steps;;
  survivors)
    # rerun a module's surviving (and timed-out) mutants against the current tests (the source
    # must not have changed since its run: mutants are made from the copy)
    name=${1:?usage: $0 survivors MODULE}
    for work in "$ROOT/.mutation/${name//\//.}" "$ROOT/.mutation/${name//\//.}+registry"; do
      [[ -d "$work" ]] || continue
      [[ "$work" == *+registry ]] && registry_timeouts "$work"
      mapfile -t names < <(mutmut "$work" results | sed -n 's/^ *\(.*\): \(survived\|timeout\)$/\1/p')
      ((${#names[@]})) || continue
      # mutmut copies the tests from the scratch copy into mutants/ when it starts
      git ls-files -z tests | xargs -0 cp -a --parents -t "$work"
      mutmut "$work" run --max-children 2 "${names[@]}" >"$work/rerun.log" 2>&1 ||
        { tail -20 "$work/rerun.log"; exit 1; }
      figures "$work" "$name (${#names[@]} survivors rerun)"
    done
    verdict "${name//\//.}";;
  results)
    name=${1:-steps}
    for work in "$ROOT/.mutation/${name//\//.}" "$ROOT/.mutation/${name//\//.}+registry"; do
      [[ -d "$work" ]] && mutmut "$work" results
    done;;
  *) echo "usage: $0 verify [MODULE...] | steps | results [MODULE] | survivors MODULE" >&2
     exit 2;;
esac
