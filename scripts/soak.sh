#!/usr/bin/env bash
# Soak: the release proxy (durable store) under mixed traffic for SOAK_MINUTES (default 30),
# all on 127.0.0.1, with what a bad day brings:
#   - steady load with receipts: 2 binds at 300 msg/s, new binds every minute;
#   - binds coming and going: a synchronous client (window 1) binding, sending 100 with
#     receipts, unbinding, every few seconds;
#   - slow readers: python-smpplib as account `slow`, submitting with receipts and reading one
#     PDU every 100 ms, dropping its connection every 2 minutes;
#   - SMSC restarts: every 2 minutes one of the two simulators is killed (SIGKILL) and started
#     again 15 s later, in turn.
# The proxy's RSS and open file descriptors are sampled every 10 s (with its connections, the
# outboxes and the correlations held, from /status) into a CSV. At the end the load stops, the
# proxy gets 30 s to settle, and the script checks both are flat: the median RSS of the last
# quarter of the run within 10 % (+4 MiB) of the second quarter's (after warm-up: no trend),
# RSS at the end within 25 % (+8 MiB) of it, descriptors at the end within 8 of what they were
# once the load was up. Exit 1 if not, or if the proxy died.
# Not in CI (it takes half an hour). Usage: SOAK_MINUTES=30 scripts/soak.sh [OUT.csv]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${SOAK_MINUTES:-30}
out=${1:-/tmp/smpp-proxy-soak.csv}
[ -x .venv/bin/python ] || { python3 -m venv .venv && .venv/bin/pip install -q -r tests/interop/requirements.txt; }
cargo build --release --quiet
bin=$PWD/target/release/smpp-proxy
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_a=$(free_port); sim_b=$(free_port); smpp=$(free_port); admin=$(free_port)

loops=()
# Stops the load: each loop and what it runs now (a bench, the slow reader).
stop_load() {
  for p in "${loops[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
}
cleanup() {
  stop_load
  # The simulators, whoever started them (the restarter's are its children, not ours).
  pkill -f "smpp-proxy sim --listen 127.0.0.1:($sim_a|$sim_b)" 2>/dev/null || true
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_sim() { # port
  $bin sim --listen "127.0.0.1:$1" --receipt-delay 200ms >>"$work/sim-$1.log" 2>&1 &
}
start_sim "$sim_a"; sim_pid_a=$!
start_sim "$sim_b"; sim_pid_b=$!

# correlation_ttl is short so that the correlations of messages whose receipts died with an
# SMSC (and with them the store) reach their steady state within the run.
cat >"$work/proxy.toml" <<TOML
node_id = "soak"
correlation_ttl = "5m"
[listen]
smpp = "127.0.0.1:$smpp"
admin = "127.0.0.1:$admin"
[store]
path = "$work/store"
[[clients]]
system_id = "shop"
password = "secret"
allow = ["127.0.0.0/8"]
[[clients]]
system_id = "churn"
password = "secret"
allow = ["127.0.0.0/8"]
[[clients]]
system_id = "slow"
password = "secret"
allow = ["127.0.0.0/8"]
[[upstreams]]
name = "smsc-a"
address = "127.0.0.1:$sim_a"
system_id = "proxy"
password = "pw"
sessions = 2
[[upstreams]]
name = "smsc-b"
address = "127.0.0.1:$sim_b"
system_id = "proxy"
password = "pw"
sessions = 2
TOML
RUST_LOG=warn $bin run --config "$work/proxy.toml" 2>"$work/proxy.log" &
proxy=$!
for _ in $(seq 100); do
  $bin status --admin "127.0.0.1:$admin" >/dev/null 2>&1 && break
  sleep 0.1
done

end=$(( $(date +%s) + minutes * 60 ))
running() { [ "$(date +%s)" -lt "$end" ]; }

# Steady load: 2 binds, 300 msg/s with receipts, a minute per run (so new binds every minute).
( while running; do
    $bin bench --connect "127.0.0.1:$smpp" --binds 2 --window 20 --rate 300 --duration 60s --receipts --json \
      >>"$work/steady.jsonl" 2>>"$work/bench.log" || true
  done ) &
loops+=($!)
# Binds coming and going: a synchronous client, 100 messages with receipts per bind.
( while running; do
    $bin bench --connect "127.0.0.1:$smpp" --system-id churn --binds 1 --window 1 --count 100 --receipts --json \
      >>"$work/churn.jsonl" 2>>"$work/bench.log" || true
    sleep 2
  done ) &
loops+=($!)
# A slow reader: reads one PDU every 100 ms (a message every 300 ms: it keeps up, slowly),
# reconnects every 2 minutes.
( while running; do
    timeout 120 .venv/bin/python - "127.0.0.1" "$smpp" >>"$work/slow.log" 2>&1 <<'PY' || true
import sys, time
import smpplib.client, smpplib.consts
c = smpplib.client.Client(sys.argv[1], int(sys.argv[2]), timeout=1, allow_unknown_opt_params=True)
c.connect()
c.bind_transceiver(system_id="slow", password="secret")
n = 0
while True:
    if n % 3 == 0:
        c.send_message(source_addr_ton=1, source_addr="447700900000", dest_addr_ton=1,
                       destination_addr="447700900123", short_message=b"slow %d" % n, registered_delivery=True)
    n += 1
    try:
        c.read_once(auto_send_enquire_link=False)
    except OSError:
        pass
    time.sleep(0.1)
PY
  done ) &
loops+=($!)
# SMSC restarts, in turn.
( turn=0
  while running; do
    sleep 120
    running || break
    if [ $((turn % 2)) -eq 0 ]; then
      kill -9 "$sim_pid_a" 2>/dev/null || true; sleep 15; start_sim "$sim_a"; sim_pid_a=$!
    else
      kill -9 "$sim_pid_b" 2>/dev/null || true; sleep 15; start_sim "$sim_b"; sim_pid_b=$!
    fi
    echo "$(date +%T) restarted smsc-$([ $((turn % 2)) -eq 0 ] && echo a || echo b)" >>"$work/restarts.log"
    turn=$((turn + 1))
  done
  kill -9 "$sim_pid_a" "$sim_pid_b" 2>/dev/null || true ) 2>/dev/null &  # (bash would report each kill)
restarter=$!

sample() { # elapsed seconds -> one CSV line
  local rss fds status conns outbox correlations
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$proxy/status")
  fds=$(ls "/proc/$proxy/fd" | wc -l)
  status=$($bin status --admin "127.0.0.1:$admin" --json 2>/dev/null || echo '{}')
  conns=$(echo "$status" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("listener",{}).get("connections",""))' 2>/dev/null || echo "")
  outbox=$(echo "$status" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(c.get("outbox",0) for c in d.get("clients",[])))' 2>/dev/null || echo "")
  correlations=$(echo "$status" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("correlations",""))' 2>/dev/null || echo "")
  echo "$1,$rss,$fds,$conns,$outbox,$correlations"
}

echo "seconds,rss_kb,fds,connections,outbox,correlations" >"$out"
start=$(date +%s)
baseline_fds=""
while running; do
  kill -0 "$proxy" 2>/dev/null || { echo "soak: the proxy died"; tail -20 "$work/proxy.log"; exit 1; }
  elapsed=$(( $(date +%s) - start ))
  line=$(sample "$elapsed")
  echo "$line" >>"$out"
  [ "$elapsed" -ge 60 ] && [ -z "$baseline_fds" ] && baseline_fds=$(echo "$line" | cut -d, -f3)
  [ $((elapsed % 60)) -lt 10 ] && echo "soak: $line"
  sleep 10
done

# The load stops; both SMSCs are up again; the proxy settles.
stop_load
wait "$restarter" 2>/dev/null || true
start_sim "$sim_a"; start_sim "$sim_b"
sleep 30
kill -0 "$proxy" 2>/dev/null || { echo "soak: the proxy died"; exit 1; }
final=$(sample $(( $(date +%s) - start )))
echo "$final" >>"$out"

python3 - "$out" "$final" "${baseline_fds:-0}" "$work" <<'PY'
import csv, glob, json, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
final = sys.argv[2].split(",")
baseline_fds = int(sys.argv[3])
work = sys.argv[4]
n = len(rows)
warm = [int(r["rss_kb"]) for r in rows[n // 4: n // 2]] or [int(rows[0]["rss_kb"])]
warm_rss = statistics.median(warm)
late_rss = statistics.median([int(r["rss_kb"]) for r in rows[3 * n // 4:]] or warm)
end_rss, end_fds = int(final[1]), int(final[2])
peak = max(int(r["rss_kb"]) for r in rows)
def total(path, keys):
    """Sums the bench reports (pretty JSON objects, one after another) in `path`."""
    t = dict.fromkeys(keys, 0)
    t["errors"] = {}
    text = open(path).read() if glob.glob(path) else ""
    decoder, at = json.JSONDecoder(), 0
    while True:
        at = text.find("{", at)
        if at < 0:
            break
        r, at = decoder.raw_decode(text, at)
        for k in keys:
            v = r.get(k, 0)
            if isinstance(v, dict):
                for status, count in v.items():
                    t[k][status] = t[k].get(status, 0) + count
            else:
                t[k] += v
    return t
keys = ["sent", "acked", "errors", "unanswered", "receipts_matched", "receipts_duplicated"]
steady, churn = total(f"{work}/steady.jsonl", keys), total(f"{work}/churn.jsonl", keys)
restarts = sum(1 for _ in open(f"{work}/restarts.log")) if glob.glob(f"{work}/restarts.log") else 0
print(f"soak: {n} samples; SMSC restarts {restarts}")
print(f"soak: steady load: {steady}")
print(f"soak: bind churn:  {churn}")
print(f"soak: at the end: connections {final[3]}, outbox {final[4]}, correlations {final[5]}")
print(f"soak: RSS MiB: median of the second quarter {warm_rss/1024:.1f}, of the last {late_rss/1024:.1f}, "
      f"peak {peak/1024:.1f}, end {end_rss/1024:.1f}; fds: after warm-up {baseline_fds}, end {end_fds}")
ok = (late_rss <= warm_rss * 1.10 + 4 * 1024 and end_rss <= warm_rss * 1.25 + 8 * 1024
      and end_fds <= baseline_fds + 8)
print("soak: flat" if ok else "soak: NOT flat")
sys.exit(0 if ok else 1)
PY
