#!/usr/bin/env bash
# Runs wsreactor (-app echo) and its peers back to back under identical conditions and
# writes one comparison table: the server pinned to CPU 0, the swarm to CPU 1, the same
# sysctls, loopback only. Peers: nbio (event loop) and gorilla (goroutine per connection),
# plus two floors: bare gnet (a TCP echo server: the echo floor, and with plain idle TCP
# sockets the idle-memory floor) and a raw write(2) loop (broadcast floor). Every figure in
# the table comes from this one run.
#
#   scripts/bench-compare.sh [--quick] [--settle 150] [--repeat 3]
#                                                 results: out/bench-compare/{results.md,*.json}
#
# --quick shrinks every count (for trying the script, not for figures).
#
# The idle readings right after a ramp are taken --repeat times, each on a fresh server, and
# the table shows the median (every run's figure is listed under it): one reading moves by
# ±50 B per socket with where the Go GC happened to run during the ramp, and nbio's by more.
# Echo and broadcast run --repeat rounds too, the servers taking turns within each round,
# and the table shows the run with each server's median CPU per message: on a shared
# machine one run's CPU figure moves by ±15 % or more.
#
# Idle memory is read twice at the larger count: right after the ramp (what a burst of
# connects leaves behind, garbage included) and after --settle seconds idle (default 150):
# Go forces a GC two minutes after the last one and then returns free pages to the
# kernel, so that reading is what holding the sockets costs for as long as they stay.
set -euo pipefail
cd "$(dirname "$0")/.."

idle_a=10000 idle_b=19000 echo_conns=1000 echo_secs=10s bc_conns=19000 bc_msgs=20 settle=150 repeat=3
while [ $# -gt 0 ]; do
  case $1 in
    --quick) idle_a=1000 idle_b=2000 echo_conns=100 echo_secs=2s bc_conns=2000 bc_msgs=5 settle=5; shift ;;
    --settle) settle=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    *) echo "bench-compare: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=out/bench-compare
rm -rf "$out" && mkdir -p "$out" bin
go build -o bin/wsreactor ./cmd/wsreactor
go build -o bin/swarm ./cmd/swarm
for p in gorilla nbio gnetecho writeloop; do go build -o "bin/peer-$p" "./bench/peers/$p"; done

ws=127.0.0.1:18600 admin=127.0.0.1:19600
srv_pid=""
start() { # name, command...
  local name=$1; shift
  taskset -c 0 "$@" >"$out/$name.log" 2>&1 &
  srv_pid=$!
  for _ in $(seq 100); do
    if [ "$name" = gnetecho ]; then
      (exec 3<>/dev/tcp/127.0.0.1/18600) 2>/dev/null && break
    else
      curl -sf "http://$admin/healthz" >/dev/null && break
    fi
    sleep 0.1
  done
}
stop() { kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; sleep 1; }
# Each run gets its own source range so TIME_WAIT from the last run never starves it.
src_n=0
swarm() { # report-name, scenario, flags...
  local name=$1 scenario=$2; shift 2
  src_n=$((src_n + 1))
  taskset -c 1 bin/swarm "$scenario" -url "ws://$ws/" -server-pid "$srv_pid" \
    -source "127.0.$((100 + src_n)).1-127.0.$((100 + src_n)).60" -report "$out/$name.json" "$@" \
    >"$out/$name.md" 2>&1 || true
}
# pick_median report-name field: of the runs report-name-1.json .. -$repeat.json, keeps the
# one with the median server.<field> as report-name.json, and writes every run's figure, in
# run order, to report-name.runs.
pick_median() {
  python3 - "$out" "$1" "$2" "$repeat" <<'PY'
import json, shutil, sys
out, name, field, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = []
for k in range(1, n + 1):
    try:
        runs.append((json.load(open(f"{out}/{name}-{k}.json"))["server"][field], k))
    except (OSError, KeyError, ValueError):
        pass
if runs:
    shutil.copy(f"{out}/{name}-{sorted(runs)[len(runs) // 2][1]}.json", f"{out}/{name}.json")
    fmt = "%.0f" if max(v for v, _ in runs) >= 100 else "%.2f"
    open(f"{out}/{name}.runs", "w").write(" · ".join(fmt % v for v, _ in runs))
PY
}
# idle_median report-name server-name swarm-flags...: runs an idle reading $repeat times,
# each on a fresh server started with "${srv[@]}", and keeps the median (pick_median).
idle_median() {
  local name=$1 server=$2; shift 2
  for k in $(seq "$repeat"); do
    start "$server" "${srv[@]}"; swarm "$name-$k" idle "$@"; stop
  done
  pick_median "$name" user_bytes_per_conn
}
field() { python3 -c "import json,sys; r=json.load(open('$out/$1.json')); print(eval(sys.argv[1]))" "$2" 2>/dev/null || echo "n/a"; }
# server_cmd name kind: sets srv (and raw, the swarm's -raw for a floor) to the command of
# server name; kind is echo or bc, which picks the floor (bare gnet or the write loop).
server_cmd() {
  raw=()
  case $1 in
    wsreactor) srv=(bin/wsreactor -app echo -listen "$ws" -admin "$admin") ;;
    nbio) srv=(bin/peer-nbio -listen "$ws" -admin "$admin") ;;
    gorilla) srv=(bin/peer-gorilla -listen "$ws" -admin "$admin") ;;
    floor)
      if [ "$2" = echo ]; then srv=(bin/peer-gnetecho -listen "$ws"); raw=(-raw)
      else srv=(bin/peer-writeloop -listen "$ws" -admin "$admin"); fi ;;
  esac
}
# The server name start() is given: gnetecho is polled by TCP connect, not /healthz.
start_name() { if [ "${srv[0]}" = bin/peer-gnetecho ]; then echo gnetecho; else echo "$1"; fi; }

for s in wsreactor nbio gorilla; do
  server_cmd "$s" echo
  idle_median "$s-idle-a" "$s" -conns $idle_a -duration 3s
  idle_median "$s-idle-b" "$s" -conns $idle_b -duration 3s
  start "$s" "${srv[@]}"; swarm "$s-idle-settled" idle -conns $idle_b -duration "${settle}s"; stop
done
# The idle floor: bare gnet holding plain TCP sockets, what any server on gnet pays per
# socket before it keeps a byte of its own.
server_cmd floor echo
idle_median floor-idle-a gnetecho -raw -conns $idle_a -duration 3s
idle_median floor-idle-b gnetecho -raw -conns $idle_b -duration 3s
start gnetecho "${srv[@]}"; swarm floor-idle-settled idle -raw -conns $idle_b -duration "${settle}s"; stop

# CPU per message moves by ±15 % or more between runs on a shared machine, so echo and
# broadcast run $repeat rounds in which the servers take turns (a noisy minute then lands on
# all of them, not on one), and the table has each server's median.
for k in $(seq "$repeat"); do
  for s in wsreactor nbio gorilla floor; do
    server_cmd "$s" echo
    start "$(start_name "$s")" "${srv[@]}"
    swarm "$s-echo-$k" echo "${raw[@]}" -conns $echo_conns -duration $echo_secs -size 64; stop
    server_cmd "$s" bc
    start "$(start_name "$s")" "${srv[@]}"
    swarm "$s-bc-$k" broadcast -admin "http://$admin" -conns $bc_conns -messages $bc_msgs -rate 2 -size 64; stop
  done
done
for s in wsreactor nbio gorilla floor; do
  pick_median "$s-echo" cpu_us_per_op
  pick_median "$s-bc" cpu_us_per_op
done

{
  echo "Run $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), $(go version | cut -d' ' -f3-4)"
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores; kernel $(uname -r)"
  echo "Server on CPU 0 (taskset; GOMAXPROCS 1), swarm on CPU 1. sysctls: $(sysctl -n net.ipv4.tcp_rmem | tr '\t' ' ') (tcp_rmem), $(sysctl -n net.ipv4.tcp_wmem | tr '\t' ' ') (tcp_wmem), somaxconn $(sysctl -n net.core.somaxconn)"
  echo
  echo "| figure | wsreactor | nbio | gorilla | floor | wsreactor / nbio | wsreactor / gorilla | wsreactor / floor |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  row() { # label, python expr, report suffix, floor report or "", format
    local label=$1 expr=$2 suf=$3 floor=$4 fmt=$5
    local a b c f
    a=$(field "wsreactor-$suf" "$expr"); b=$(field "nbio-$suf" "$expr"); c=$(field "gorilla-$suf" "$expr")
    f="–"; [ -n "$floor" ] && f=$(field "$floor" "$expr")
    python3 - "$label" "$fmt" "$a" "$b" "$c" "$f" <<'PY'
import sys
label, fmt, *v = sys.argv[1:]
def num(x):
    try: return float(x)
    except ValueError: return None
a, b, c, f = (num(x) for x in v)
cell = lambda x, raw: (fmt % x) if x is not None else raw
ratio = lambda x, y: ("%.2f" % (x / y)) if x is not None and y not in (None, 0) else "–"
print(f"| {label} | {cell(a, v[0])} | {cell(b, v[1])} | {cell(c, v[2])} | {cell(f, v[3])} | {ratio(a, b)} | {ratio(a, c)} | {ratio(a, f)} |")
PY
  }
  row "user-space bytes / idle conn @ $idle_a (median of $repeat)" "r['server']['user_bytes_per_conn']" idle-a floor-idle-a "%.0f"
  row "user-space bytes / idle conn @ $idle_b (median of $repeat)" "r['server']['user_bytes_per_conn']" idle-b floor-idle-b "%.0f"
  row "user-space bytes / idle conn @ $idle_b after ${settle} s idle" "r['server']['user_bytes_per_conn']" idle-settled floor-idle-settled "%.0f"
  row "kernel slab bytes / conn pair @ $idle_b" "r['server']['kernel_slab_bytes_per_conn_pair']" idle-b floor-idle-b "%.0f"
  row "connect rate @ $idle_b (conn/s)" "r['connect']['rate_per_s']" idle-b floor-idle-b "%.0f"
  row "echo msgs/s, $echo_conns conns" "r['msgs_per_s']" echo floor-echo "%.0f"
  row "echo p50 (ms)" "r['latency_ms']['p50']" echo floor-echo "%.2f"
  row "echo p99 (ms)" "r['latency_ms']['p99']" echo floor-echo "%.2f"
  row "server CPU µs / echo msg (median of $repeat)" "r['server']['cpu_us_per_op']" echo floor-echo "%.2f"
  row "broadcast 64 B to $bc_conns: time to last delivery p50 (ms)" "r['broadcast']['time_to_last_delivery_ms_p50']" bc floor-bc "%.1f"
  row "server CPU µs / broadcast delivery (median of $repeat)" "r['server']['cpu_us_per_op']" bc floor-bc "%.2f"
  row "errors + lost (median broadcast run; any other run with some is named above the table)" "r['errors'] + r['lost']" bc floor-bc "%.0f"
  echo
  runs() { cat "$out/$1.runs" 2>/dev/null || echo n/a; }
  echo "Every run (the table has the median; the echo and broadcast rows are the median run by CPU):"
  for s in wsreactor nbio gorilla floor; do
    echo "- $s: idle bytes @ $idle_a: $(runs "$s-idle-a"); @ $idle_b: $(runs "$s-idle-b"); CPU µs / echo msg: $(runs "$s-echo"); / broadcast delivery: $(runs "$s-bc")"
  done
} >"$out/results.md"
for f in "$out"/*.json; do
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); e=r['errors']+r['lost']; print(sys.argv[1], 'errors+lost =', e) if e else None" "$f"
done
cat "$out/results.md"
