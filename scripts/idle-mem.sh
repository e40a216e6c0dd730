#!/usr/bin/env bash
# Measures server memory per idle WebSocket connection: starts wsreactor (-app echo) on
# loopback, opens N idle connections from a separate process (scripts/idlehold), and
# reports the server's RSS and Go heap growth per connection, plus the kernel's slab and
# TCP memory growth (client and server sockets both live in this kernel, so kernel figures
# are per connection *pair*).
#
#   scripts/idle-mem.sh [N ...]        default: 10000 19000
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("${@:-10000 19000}")
[ $# -eq 0 ] && counts=(10000 19000)
port=18080 admin=19090
mkdir -p bin
go build -o bin/wsreactor ./cmd/wsreactor
go build -o bin/idlehold ./scripts/idlehold

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
metric() { curl -s "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
meminfo_kb() { awk -v k="$1:" '$1 == k {print $2}' /proc/meminfo; }
tcp_pages() { awk '/^TCP:/ {for (i = 1; i <= NF; i++) if ($i == "mem") print $(i+1)}' /proc/net/sockstat; }
settle() { curl -s "http://127.0.0.1:$admin/debug/pprof/heap?gc=1" >/dev/null; sleep 2; }

echo "| conns | server RSS delta / conn | Go heap in use delta / conn | kernel slab delta / pair | TCP mem delta / pair | ramp |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
for n in "${counts[@]}"; do
  ./bin/wsreactor -app echo -listen 127.0.0.1:$port -admin 127.0.0.1:$admin 2>/dev/null &
  srv=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break; sleep 0.1; done
  settle
  rss0=$(rss_kb $srv) heap0=$(metric go_memstats_heap_inuse_bytes) slab0=$(meminfo_kb Slab) tcp0=$(tcp_pages)
  log=$(mktemp)
  ./bin/idlehold -url ws://127.0.0.1:$port/ -conns "$n" -source 127.0.0.2-127.0.0.60 -hold 1h >"$log" &
  cli=$!
  for _ in $(seq 600); do grep -q '^open=' "$log" && break; sleep 0.1; done
  ramp=$(sed -n 's/.*ramp=\([^ ]*\).*/\1/p' "$log")
  active=$(metric ws_connections_active)
  settle
  rss1=$(rss_kb $srv) heap1=$(metric go_memstats_heap_inuse_bytes) slab1=$(meminfo_kb Slab) tcp1=$(tcp_pages)
  awk -v n="$active" -v r0="$rss0" -v r1="$rss1" -v h0="$heap0" -v h1="$heap1" -v s0="$slab0" -v s1="$slab1" \
      -v t0="$tcp0" -v t1="$tcp1" -v ramp="$ramp" 'BEGIN {
    printf "| %d | %.0f B | %.0f B | %.0f B | %.0f B | %s |\n", n, (r1-r0)*1024/n, (h1-h0)/n, (s1-s0)*1024/n, (t1-t0)*4096/n, ramp }'
  grep -v '^open=' "$log" || true
  kill $cli 2>/dev/null; wait $cli 2>/dev/null || true
  kill $srv; wait $srv 2>/dev/null || true
  rm -f "$log"
done
