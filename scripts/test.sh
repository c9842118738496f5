#!/usr/bin/env bash
# The one command that runs every test. It first installs what the tests need, so it works on a
# fresh machine; CI (.ci/run) calls exactly this.
#   - .venv/ with python-smpplib, and tests/interop/node_modules/ with node-smpp: the third-party
#     SMPP peers of tests/interop.rs; prometheus-client's parser checks /metrics (tests/metrics.rs);
#   - Debian's redis-server and redis-cli: the tests of the cluster start their own servers on
#     free loopback ports (nothing listens on 6379);
#   - util-linux's prlimit (the store-fault tests put the proxy under a file-size limit);
#   - promtool (Debian's prometheus): the alert rules in contrib/ and their unit tests;
#   - Debian's chromium, driven by playwright-core (node_modules above): the status page test;
#   - then cargo test over every target (benches run once in test mode, which checks that
#     rusmpp and smpp-proxy encode the benchmark PDUs identically).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import smpplib, prometheus_client' 2>/dev/null; then
  echo "installing python-smpplib and prometheus-client (the metrics parser) into .venv/"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi
if [ ! -d tests/interop/node_modules/smpp ] || [ ! -d tests/interop/node_modules/playwright-core ]; then
  echo "installing node-smpp and playwright-core into tests/interop/node_modules/"
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

# tests/status_page.rs drives the admin endpoint's page in Debian's headless Chromium.
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian)"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# tests/contrib.rs checks the alert rules with promtool (Debian's prometheus package; only the
# tool is used, the server it ships is not started by the tests).
if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian's prometheus)"
  apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

cargo test --all-targets "$@"
