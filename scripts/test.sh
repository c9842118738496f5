#!/usr/bin/env bash
# The one command that runs every test. It installs what the tests need first, so it works on
# a fresh machine; CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Benches run once in test mode too (--all-targets), which checks that rusmpp and smpp-proxy
# encode the benchmark PDUs identically.
cargo test --all-targets "$@"
