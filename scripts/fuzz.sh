#!/usr/bin/env bash
# Fuzzes every target, seeded from pdu-fixtures/ and the corpus kept in fuzz/corpus/.
#
#   scripts/fuzz.sh [SECONDS]          each target for SECONDS (default 60): CI's smoke run
#   scripts/fuzz.sh --long [SECONDS]   each target for 10^8 executions or SECONDS (default
#                                      3600), whichever comes first; then its corpus is
#                                      minimised in place (commit fuzz/corpus/ after a long run)
#
# A crash fails the script; turn its input (fuzz/artifacts/<target>/crash-*) into a fixture
# under pdu-fixtures/own/ (scripts/make-fixtures.py) or a test once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
long=false
if [[ "${1:-}" == "--long" ]]; then
  long=true
  shift
  seconds=${1:-3600}
else
  seconds=${1:-60}
fi
targets=(frame_decoder roundtrip receipt client_session)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
done
python3 - <<'PY'
import glob, json, os
requests = {}
for path in sorted(glob.glob("pdu-fixtures/*/*.json")):
    f = json.load(open(path))
    data = bytes.fromhex(f["hex"])
    name = os.path.basename(path)[:-5]
    open(f"fuzz/corpus/frame_decoder/{name}", "wb").write(b"\x07" + data)
    open(f"fuzz/corpus/roundtrip/{name}", "wb").write(data)
    # client_session: the first octet odd puts a bind first; the fixture after it.
    open(f"fuzz/corpus/client_session/{name}", "wb").write(b"\x01" + data)
    if f.get("valid") and len(data) >= 8:
        requests.setdefault(data[4:8], data)
    if f.get("expect", {}).get("receipt"):
        # The receipt text: short_message (sm_length is the octet before it) or message_payload.
        body = f["expect"]["body"]
        text = bytes.fromhex(body.get("short_message", ""))
        if not text:
            text = next(bytes.fromhex(t["value_hex"]) for t in f["expect"]["tlvs"] if t["tag"] == "0x0424")
        open(f"fuzz/corpus/receipt/{name}", "wb").write(text)
# A whole session: bound, one valid PDU of every kind the fixtures hold, unbind last.
unbind = bytes.fromhex("00000010000000060000000000000009")
script = b"".join(d for cid, d in sorted(requests.items()) if cid != unbind[4:8]) + unbind
open("fuzz/corpus/client_session/seed_whole_session", "wb").write(b"\x01" + script)
# The TLS listener: a plaintext bind there (refused in plaintext), and a real ClientHello.
open("fuzz/corpus/client_session/seed_tls_plaintext_bind", "wb").write(b"\x03")
import ssl
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
# A ClientHello is random each time: written once, then kept (the corpus is in git).
hello_path = "fuzz/corpus/client_session/seed_tls_client_hello"
if not os.path.exists(hello_path):
    open(hello_path, "wb").write(b"\x02" + outgoing.read())
PY
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  if $long; then
    echo "fuzz: $target for 10^8 executions or ${seconds}s ($(ls "$corpus" | wc -l) inputs in the corpus)"
    rm -rf "fuzz/artifacts/$target"
    status=0
    cargo +nightly fuzz run "$target" "$corpus" -- -runs=100000000 -max_total_time="$seconds" -max_len=8192 \
      -print_final_stats=1 >"fuzz/$target.log" 2>&1 || status=$?
    grep -E "^Done|stat::number_of_executed_units|stat::peak_rss_mb" "fuzz/$target.log" || true
    found=$(find "fuzz/artifacts/$target" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) 2>/dev/null | head -1)
    if [[ $status -ne 0 || -n "$found" ]]; then
      tail -n 30 "fuzz/$target.log"
      echo "fuzz: $target failed (exit $status) ${found:+: $found}"
      exit 1
    fi
    rm -f "fuzz/$target.log"
    cargo +nightly fuzz cmin "$target" "$corpus" -- -max_len=8192 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true
    echo "fuzz: $target corpus kept: $(ls "$corpus" | wc -l) inputs"
  else
    echo "fuzz: $target for ${seconds}s"
    status=0
    cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -max_len=8192 \
      >"fuzz/$target.log" 2>&1 || status=$?
    if [[ $status -ne 0 ]]; then
      # The panic's message and where it was, not only the end of its backtrace.
      grep -m 1 -A 12 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" "fuzz/$target.log" || true
      tail -n 20 "fuzz/$target.log"
      echo "fuzz: $target failed (exit $status)"
      exit 1
    fi
    tail -n 4 "fuzz/$target.log"
    rm -f "fuzz/$target.log"
  fi
done
