#!/usr/bin/env bash
# What the proxy holds in memory (resident set, from /proc), measured with real processes:
# 1. BINDS idle client binds (default 10 000), each a TCP connection bound as a transceiver and
#    then left alone: RSS before and after, per bind;
# 2. MESSAGES correlations stored (default 1 000 000): submits asking for a receipt that the
#    simulator holds back for an hour, so every correlation stays; per correlation, for the
#    durable store (default sync) and the memory store.
# Usage: scripts/memory.sh [BINDS] [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
binds=${1:-10000}
messages=${2:-1000000}
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((binds + 1000)) ] || { echo "needs an open-file limit above $((binds + 1000))" >&2; exit 1; }
cargo build --release --quiet
bin=target/release/smpp-proxy
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
sim_port=$(free_port)
$bin sim --listen 127.0.0.1:$sim_port --receipt-delay 1h >"$work/sim.log" 2>&1 &

start_proxy() { # NAME BACKEND -> sets port and pid
  port=$(free_port)
  cat >"$work/$1.toml" <<CFG
node_id = "mem"
[listen]
smpp = "127.0.0.1:$port"
[store]
backend = "$2"
path = "$work/store-$1"
[limits]
max_connections = $((binds + 100))
max_connections_per_ip = $((binds + 100))
[[clients]]
system_id = "shop"
password = "secret"
max_binds = $((binds + 10))
window = 200
[[upstreams]]
name = "sim"
address = "127.0.0.1:$sim_port"
system_id = "px-$1"
password = "pw"
sessions = 4
window = 200
CFG
  RUST_LOG=warn $bin run --config "$work/$1.toml" >"$work/$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  sleep 1
  kill -0 "$pid" 2>/dev/null || { echo "the proxy did not start:" >&2; cat "$work/$1.log" >&2; exit 1; }
}

echo "== $binds idle binds (durable store)"
start_proxy binds embedded
before=$(rss_kib "$pid")
# Binds in waves of 200 (under limits.max_unbound), keeps every connection open, prints how many
# were bound once all are; then waits for its stdin to close.
python3 - "$port" "$binds" >"$work/binder.out" <<'PY' &
import socket, struct, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
body = b"shop\0secret\0\0" + bytes([0x34, 0, 0]) + b"\0"
socks, bound = [], 0
for start in range(0, n, 200):
    wave = []
    for k in range(start, min(n, start + 200)):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(struct.pack(">IIII", 16 + len(body), 0x9, 0, k + 1) + body)
        wave.append(s)
    for s in wave:
        head = b""
        while len(head) < 16:
            head += s.recv(16 - len(head))
        length, cmd, status, _ = struct.unpack(">IIII", head)
        rest = length - 16
        while rest > 0:
            rest -= len(s.recv(rest))
        bound += cmd == 0x80000009 and status == 0
    socks += wave
print(bound, flush=True)
time.sleep(3600)
PY
binder=$!
for _ in $(seq 600); do [ -s "$work/binder.out" ] && break; sleep 0.2; done
sleep 2
after=$(rss_kib "$pid")
bound=$(cat "$work/binder.out")
echo "bound $bound of $binds; RSS $((before / 1024)) MiB before, $((after / 1024)) MiB after: $(( (after - before) * 1024 / (bound > 0 ? bound : 1) )) bytes per idle bind"
kill "$binder" "$pid" 2>/dev/null || true
wait "$binder" "$pid" 2>/dev/null || true

for backend in embedded memory; do
  echo "== $messages correlations stored ($backend store)"
  start_proxy "c-$backend" "$backend"
  before=$(rss_kib "$pid")
  $bin bench --connect "127.0.0.1:$port" --system-id shop --password secret --binds 4 --window 100 \
    --count "$messages" --receipts --receipt-wait 1ms --json 2>/dev/null \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print("acked", r["acked"], "at", round(r["acked_per_second"]), "msg/s")'
  sleep 2
  after=$(rss_kib "$pid")
  store=$(du -sk "$work/store-c-$backend" 2>/dev/null | cut -f1 || true)
  echo "RSS $((before / 1024)) MiB before, $((after / 1024)) MiB after: $(( (after - before) * 1024 / messages )) bytes per stored correlation; store on disk ${store:-0} KiB"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
