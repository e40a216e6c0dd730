#!/usr/bin/env bash
# Single-process scaling: one wsreactor process (pub/sub, pinned to CPU 0) from 1,000 to
# the largest socket count this host allows, with the swarm pinned to CPU 1. For each
# count it measures user-space and kernel bytes per socket, heartbeat CPU (pings at 2 s
# to have enough of them to time, reported per socket per second at the default 30 s),
# and a 64-byte channel publish to every socket (time to last delivery, CPU per delivery).
# Flat per-socket figures across the counts are what let the per-process result
# extrapolate to a host tuned for a million sockets in one process.
#
#   scripts/single-scale.sh ["1000 5000 10000 19000"]     results: out/single-scale/results.md
set -euo pipefail
cd "$(dirname "$0")/.."
counts=${1:-"1000 5000 10000 19000"}
out=out/single-scale
rm -rf "$out" && mkdir -p "$out" bin
go build -o bin/wsreactor ./cmd/wsreactor
go build -o bin/swarm ./cmd/swarm
ws=127.0.0.1:18800 admin=127.0.0.1:19800 src=0
field() { python3 -c "import json,sys; r=json.load(open('$out/$1.json')); print(eval(sys.argv[1]))" "$2"; }
{
  echo "Run $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), $(go version | cut -d' ' -f3-4); CPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores; kernel $(uname -r)"
  echo
  echo "| sockets | user-space B / socket | kernel slab B / conn pair | CPU µs / ping+pong | heartbeat CPU µs / socket / s at 30 s | publish to all: time to last delivery p50 | CPU µs / delivery | errors + lost |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$out/results.md"
for n in $counts; do
  taskset -c 0 bin/wsreactor -listen $ws -admin $admin -heartbeat 2s -idle-timeout 6s >"$out/server-$n.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://$admin/healthz" >/dev/null && break; sleep 0.1; done
  src=$((src + 1))
  taskset -c 1 bin/swarm idle -url "ws://$ws/" -conns "$n" -duration 20s -server-pid $pid \
    -source "127.2.$src.1-127.2.$src.60" -report "$out/idle-$n.json" >"$out/idle-$n.md" 2>&1 || true
  src=$((src + 1))
  taskset -c 1 bin/swarm broadcast -url "ws://$ws/" -admin "http://$admin" -channel bench -conns "$n" \
    -messages 10 -rate 2 -size 64 -server-pid $pid -source "127.2.$src.1-127.2.$src.60" \
    -report "$out/bc-$n.json" >"$out/bc-$n.md" 2>&1 || true
  kill $pid; wait $pid 2>/dev/null || true
  python3 - "$n" "$out" >>"$out/results.md" <<'PY'
import json, sys
n, out = sys.argv[1], sys.argv[2]
i = json.load(open(f"{out}/idle-{n}.json")); b = json.load(open(f"{out}/bc-{n}.json"))
s = i["server"]; ping = s.get("cpu_us_per_op", 0)
print(f"| {int(n):,} | {s.get('user_bytes_per_conn', 0):,.0f} | {s.get('kernel_slab_bytes_per_conn_pair', 0):,.0f} | {ping:.2f} | {ping/30:.3f} | "
      f"{b['broadcast']['time_to_last_delivery_ms_p50']:.1f} ms | {b['server'].get('cpu_us_per_op', 0):.2f} | {i['errors']+i['lost']+b['errors']+b['lost']} |")
PY
  tail -1 "$out/results.md"
  sleep 1
done
cat "$out/results.md"
