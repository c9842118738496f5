#!/usr/bin/env bash
# The data-path benchmark with real process boundaries: one simulator, and the same load
# (smpp-proxy bench, receipts on) sent four ways in one run: directly to the simulator, through
# HAProxy in TCP mode (the L4 reference), through smpp-proxy with its durable store (the default
# `sync = "periodic"`, and `sync = "always"`), and through smpp-proxy with the memory store.
# Prints msg/s and the ratios.
# Usage: scripts/bench.sh [COUNT] [BINDS] [WINDOW] [ROUNDS]   (installs haproxy from Debian if missing)
# CLUSTER=1 adds the shared store: one node on Redis, and two nodes on Redis behind HAProxy
# (round robin), against a redis-server this script starts (AOF, appendfsync always: the same
# promise as the embedded store's fsync; REDIS_FSYNC=everysec to trade it for speed).
# BASELINE=path/to/an/older/smpp-proxy adds that binary's durable and memory proxies to every
# round and prints new/old ratios: a change measured against the build before it, same run.
# TRAIL=1 adds a durable proxy that keeps the message trail ([log] messages: a JSON line per
# submit and per receipt) and prints its cost as a ratio to the durable proxy without one.
# PROXY_LOG sets the durable proxy's RUST_LOG (e.g. smpp_proxy::store=debug: every group commit);
# KEEP_LOGS=1 copies the logs to /tmp before the work directory goes. RECEIPT_DELAY (default
# 1ms) is how long the simulator waits before it sends each receipt.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-200000}
binds=${2:-4}
window=${3:-100}
rounds=${4:-1}
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
if [ -n "${CLUSTER:-}" ]; then
  command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null; }
fi
cargo build --release --quiet
bin=target/release/smpp-proxy
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP_LOGS:-}" ] && cp "$work"/*.log /tmp/ ; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port=$(free_port); ha_port=$(free_port); px_port=$(free_port); mem_port=$(free_port)
old_px_port=$(free_port); old_mem_port=$(free_port); trail_port=$(free_port); always_port=$(free_port)
redis_port=$(free_port); r1_port=$(free_port); r2a_port=$(free_port); r2b_port=$(free_port); r2_port=$(free_port)

$bin sim --listen 127.0.0.1:$sim_port --receipt-delay "${RECEIPT_DELAY:-1ms}" >"$work/sim.log" 2>&1 &
declare -A pid
pid[direct]=$!
cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen smpp
    bind 127.0.0.1:$ha_port
    server sim 127.0.0.1:$sim_port
CFG
haproxy -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pid[haproxy]=$!
# Each proxy binds with its own system_id: the simulator sends receipts to the account that
# submitted, so each proxy gets exactly its own.
proxy_config() { # PORT BACKEND [SYSTEM_ID] [NODE_ID] [KEY_PREFIX] [STORE SYNC]
cat <<CFG
node_id = "${4:-bench}"
[listen]
smpp = "127.0.0.1:$1"
[store]
backend = "$2"
$(if [ "$2" = redis ]; then printf 'url = "redis://127.0.0.1:%s/0"\nkey_prefix = "%s"' "$redis_port" "${5:-b:}"; else printf 'path = "%s"' "$work/store-$1"; fi)
$([ -n "${6:-}" ] && printf 'sync = "%s"' "$6")
[[clients]]
system_id = "shop"
password = "secret"
window = $((window * 2))
deliver_window = $window
[[upstreams]]
name = "sim"
address = "127.0.0.1:$sim_port"
system_id = "${3:-proxy-$2}"
password = "pw"
sessions = $binds
window = $((window * 2))
CFG
}
proxy_config "$px_port" embedded >"$work/proxy.toml"
proxy_config "$mem_port" memory >"$work/memory.toml"
RUST_LOG=${PROXY_LOG:-warn} $bin run --config "$work/proxy.toml" >"$work/proxy.log" 2>&1 &
pid[durable]=$!
RUST_LOG=warn $bin run --config "$work/memory.toml" >"$work/memory.log" 2>&1 &
pid[memory]=$!
proxy_config "$always_port" embedded proxy-always always "" always >"$work/always.toml"
RUST_LOG=warn $bin run --config "$work/always.toml" >"$work/always.log" 2>&1 &
pid[always]=$!
paths="direct haproxy durable always memory"
if [ -n "${CLUSTER:-}" ]; then
  mkdir -p "$work/redis"
  (cd "$work/redis" && redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes \
    --appendfsync "${REDIS_FSYNC:-always}" >"$work/redis.log" 2>&1 &)
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.1; done
  # One node on Redis; two nodes on Redis (their own keys, their own upstream account) behind
  # HAProxy, which spreads the load generator's binds over both.
  proxy_config "$r1_port" redis proxy-redis1 r1 r1: >"$work/r1.toml"
  proxy_config "$r2a_port" redis proxy-redis2 r2a r2: >"$work/r2a.toml"
  proxy_config "$r2b_port" redis proxy-redis2 r2b r2: >"$work/r2b.toml"
  for n in r1 r2a r2b; do RUST_LOG=warn $bin run --config "$work/$n.toml" >"$work/$n.log" 2>&1 & pid[$n]=$!; done
  pid[redis-1]=${pid[r1]}
  cat >>"$work/haproxy.cfg" <<CFG
listen pair
    bind 127.0.0.1:$r2_port
    balance roundrobin
    server a 127.0.0.1:$r2a_port
    server b 127.0.0.1:$r2b_port
CFG
  kill "$(pgrep -f "haproxy -f $work/haproxy.cfg")" 2>/dev/null || true
  haproxy -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
  pid[haproxy]=$!
  paths="$paths redis-1 redis-2"
fi
if [ -n "${TRAIL:-}" ]; then
  { proxy_config "$trail_port" embedded proxy-trail; printf '[log]\nmessages = "%s"\n' "$work/messages.jsonl"; } >"$work/trail.toml"
  RUST_LOG=warn $bin run --config "$work/trail.toml" >"$work/trail.log" 2>&1 &
  pid[trail]=$!
  paths="$paths trail"
fi
if [ -n "${BASELINE:-}" ]; then
  proxy_config "$old_px_port" embedded old-embedded >"$work/old-proxy.toml"
  proxy_config "$old_mem_port" memory old-memory >"$work/old-memory.toml"
  RUST_LOG=warn "$BASELINE" run --config "$work/old-proxy.toml" >"$work/old-proxy.log" 2>&1 &
  pid[old-durable]=$!
  RUST_LOG=warn "$BASELINE" run --config "$work/old-memory.toml" >"$work/old-memory.log" 2>&1 &
  pid[old-memory]=$!
  paths="$paths old-durable old-memory"
fi
sleep 1

run() { # PORT [PID of the process under test] [RATE] [COUNT]
  $bin bench --connect "127.0.0.1:$1" --count "${4:-$count}" --binds "$binds" --window "$window" --receipts --json \
    ${2:+--measure-pid $2} ${3:+--rate $3} 2>/dev/null \
    | python3 -c '
import json, sys
r = json.load(sys.stdin)
cpu = r.get("cpu_us_per_message")
# Custody, checked on every run: a receipt lost or sent twice is a bug, whatever the speed.
dup, unmatched, lost = r["receipts_duplicated"], r["receipts_unmatched"], r["acked"] - r["receipts_matched"]
if dup or unmatched or lost > 0:
    print(f"  !! receipts: {dup} duplicated, {unmatched} unmatched, {lost} missing", file=sys.stderr)
print(round(r["acked_per_second"]), r["acked"], r["receipts_matched"], r["response_latency"]["p50_us"],
      r["response_latency"]["p99_us"], r["receipt_latency"]["p99_us"], "-" if cpu is None else round(cpu, 2),
      round(r.get("generator_cpu_us_per_message") or 0, 2))'
}
# cpu: user + system CPU of the process under test (the simulator for "direct"; for HAProxy and
# the two-node path, the HAProxy process / the first node only) per message; gen: the load
# generator's own.
printf '%-22s %10s %8s %9s %8s %8s %10s %7s %6s\n' "path" "msg/s" "acked" "receipts" "p50 us" "p99 us" "rcpt p99" "cpu us" "gen us"
# The four paths in turn, ROUNDS times: on a noisy machine a burst of noise then hits one round
# of every path, not one path; the ratios are of the per-path medians.
declare -A rates
for round in $(seq 1 "$rounds"); do
  for path in $paths; do
    case $path in
      direct) port=$sim_port label="direct" ;;
      haproxy) port=$ha_port label="haproxy (tcp)" ;;
      durable) port=$px_port label="smpp-proxy (durable)" ;;
      always) port=$always_port label="durable, sync always" ;;
      memory) port=$mem_port label="smpp-proxy (memory)" ;;
      old-durable) port=$old_px_port label="baseline (durable)" ;;
      redis-1) port=$r1_port label="redis, 1 node" ;;
      redis-2) port=$r2_port label="redis, 2 nodes" ;;
      old-memory) port=$old_mem_port label="baseline (memory)" ;;
      trail) port=$trail_port label="durable + trail" ;;
    esac
    read -r rate acked rcpt p50 p99 rp99 cpu gen <<<"$(run "$port" "${pid[$path]:-}")"
    printf '%-22s %10s %8s %9s %8s %8s %10s %7s %6s\n' "$label" "$rate" "$acked" "$rcpt" "$p50" "$p99" "$rp99" "$cpu" "$gen"
    rates[$path]="${rates[$path]:-} $rate"
  done
done
python3 - "${rates[direct]}" "${rates[haproxy]}" "${rates[durable]}" "${rates[memory]}" "${rates[old-durable]:-}" "${rates[old-memory]:-}" "${rates[redis-1]:-}" "${rates[redis-2]:-}" "${rates[trail]:-}" "${rates[always]}" <<'PY'
import statistics, sys
d, h, p, m = (statistics.median(float(x) for x in a.split()) for a in sys.argv[1:5])
a = statistics.median(float(x) for x in sys.argv[10].split())
print(f"medians: direct {d:.0f}, haproxy {h:.0f}, durable {p:.0f}, durable sync always {a:.0f}, memory {m:.0f} msg/s")
print(f"the load generator reaches {d:.0f} msg/s straight to the simulator: every figure below that is the path's, not the generator's")
print(f"smpp-proxy durable = {p/d:.2f} x direct, {p/h:.2f} x haproxy, {p/m:.2f} x its memory store; memory = {m/d:.2f} x direct, {m/h:.2f} x haproxy")
print(f"durable with sync always = {a/d:.2f} x direct, {a/h:.2f} x haproxy, {a/p:.2f} x periodic")
if sys.argv[5]:
    od, om = (statistics.median(float(x) for x in a.split()) for a in sys.argv[5:7])
    print(f"against the baseline binary: durable {p/od:.2f} x, memory {m/om:.2f} x (medians {od:.0f}, {om:.0f} msg/s)")
if sys.argv[7]:
    r1, r2 = (statistics.median(float(x) for x in a.split()) for a in sys.argv[7:9])
    print(f"redis: 1 node {r1:.0f} msg/s = {r1/p:.2f} x the embedded node; 2 nodes {r2:.0f} msg/s = {r2/r1:.2f} x 1 node")
if sys.argv[9]:
    t = statistics.median(float(x) for x in sys.argv[9].split())
    print(f"message trail: durable + trail {t:.0f} msg/s = {t/p:.2f} x durable without it")
PY

# Latency at half of each proxy's maximum rate (the median above), against the simulator
# straight at the same rate, right after: p99 submit->resp the proxy adds. LATENCY_SECONDS
# (default 10) of traffic each; LATENCY=0 skips it.
if [ "${LATENCY:-1}" != 0 ]; then
  printf '\n%-22s %10s %8s %8s %8s %14s\n' "at half its max" "msg/s" "p50 us" "p99 us" "direct p99" "p99 added us"
  for path in durable always memory; do
    case $path in
      durable) port=$px_port label="smpp-proxy (durable)" ;;
      always) port=$always_port label="durable, sync always" ;;
      memory) port=$mem_port label="smpp-proxy (memory)" ;;
    esac
    half=$(python3 -c "import statistics,sys; print(max(1, round(statistics.median(float(x) for x in sys.argv[1].split()) / 2)))" "${rates[$path]}")
    n=$((half * ${LATENCY_SECONDS:-10}))
    read -r _ _ _ dp50 dp99 _ _ _ <<<"$(run "$sim_port" "" "$half" "$n")"
    read -r rate _ _ p50 p99 _ _ _ <<<"$(run "$port" "" "$half" "$n")"
    printf '%-22s %10s %8s %8s %8s %14s\n' "$label" "$rate" "$p50" "$p99" "$dp99" "$((p99 - dp99))"
  done
fi
