#!/usr/bin/env bash
# The one command that runs every test. It first installs what the tests need, so it works on a
# fresh machine; CI (.ci/run) calls exactly this.
#   - .venv/ with python-smpplib, and tests/interop/node_modules/ with node-smpp: the third-party
#     SMPP peers of tests/interop.rs;
#   - Debian's redis-server and redis-cli: the tests of the cluster start their own servers on
#     free loopback ports (nothing listens on 6379);
#   - util-linux's prlimit (the store-fault tests put the proxy under a file-size limit);
#   - then cargo test over every target (benches run once in test mode, which checks that
#     rusmpp and smpp-proxy encode the benchmark PDUs identically).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import smpplib' 2>/dev/null; then
  echo "installing python-smpplib into .venv/"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi
if [ ! -d tests/interop/node_modules/smpp ]; then
  echo "installing node-smpp into tests/interop/node_modules/"
  (cd tests/interop && npm ci --no-audit --no-fund --silent)
fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "installing redis-server and redis-tools (Debian)"
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# tests/store_faults.rs runs the proxy under a file-size limit (util-linux's prlimit).
if ! command -v prlimit >/dev/null; then
  echo "installing util-linux (prlimit)"
  apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
fi

cargo test --all-targets "$@"
