#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), seeded from pdu-fixtures/.
# A crash fails the script; turn its input (fuzz/artifacts/<target>/crash-*) into a fixture
# under pdu-fixtures/own/ (scripts/make-fixtures.py) once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in frame_decoder roundtrip receipt; do
  mkdir -p "fuzz/corpus/$target"
done
python3 - <<'PY'
import glob, json, os
for path in glob.glob("pdu-fixtures/*/*.json"):
    f = json.load(open(path))
    data = bytes.fromhex(f["hex"])
    name = os.path.basename(path)[:-5]
    open(f"fuzz/corpus/frame_decoder/{name}", "wb").write(b"\x07" + data)
    open(f"fuzz/corpus/roundtrip/{name}", "wb").write(data)
    if f.get("expect", {}).get("receipt"):
        # The receipt text: short_message (sm_length is the octet before it) or message_payload.
        body = f["expect"]["body"]
        text = bytes.fromhex(body.get("short_message", ""))
        if not text:
            text = next(bytes.fromhex(t["value_hex"]) for t in f["expect"]["tlvs"] if t["tag"] == "0x0424")
        open(f"fuzz/corpus/receipt/{name}", "wb").write(text)
PY
for target in frame_decoder roundtrip receipt; do
  echo "fuzz: $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds" -max_len=8192 2>&1 | tail -n 4
done
