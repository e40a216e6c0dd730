#!/usr/bin/env bash
# One million concurrent WebSocket connections on one host, measured (issue: scale).
#
# Starts one NATS (embedded in node 1) and as many wsreactor nodes as the per-process
# open-file limit requires, all on one port with SO_REUSEPORT, then ramps the swarm (its
# own worker processes, many 127.0.x.y source addresses) through the stages, measuring at
# each: connect rate, total server RSS and user-space bytes per socket, kernel slab and TCP
# memory, and server CPU while idle (heartbeats only, default 30 s). At the top it holds for
# --hold seconds, publishes one channel message and one wsr.all broadcast (each must reach
# every socket), drains one node (its sockets must come back through the swarm's
# reconnect policy), and reports what was lost. Never part of CI.
#
#   scripts/scale.sh [--total 1000000] [--stages "100000 250000 500000 750000 1000000"]
#                    [--per-node 17000] [--hold 300] [--min-free-mib 2048] [--no-tune]
#                    [--routing broadcast|directed] [--tick 100ms] [--conn-rate 2500]
#
# --tick is every node's and swarm worker's wheel tick. Each tick wakes each swarm worker's
# event loops, and a node's loops whenever one of their timers is due (with a heartbeat's
# pings spread over the ramp's seconds, most ticks of a held stage); at the 10 ms default a
# mostly idle process spends 1-2 % of a core on ticks alone, and across the ~120 processes
# this host needs for a million sockets that is more than both cores, so the run uses
# 100 ms (deadlines and pings fire up to 100 ms late; nothing here needs better).
# Every process runs with GOMAXPROCS=1 for the same reason: one P per process, no spinning
# threads looking for work. --conn-rate caps each stage's ramp (connects per second over all
# of its workers) so handshakes never starve the heartbeats of the sockets already held.
#
# Direct-message routing defaults to broadcast here: directed routing holds one NATS
# subscription per connected identity (a million on the NATS server and ~17,000 in each
# node's client), which on this 2-core host would make the ramp measure NATS, not the
# nodes. Pass --routing directed to measure that instead.
#
# Results: out/scale/results.md, with every swarm's JSON report beside it. The memory
# guard: the swarm stops ramping when MemAvailable falls under --min-free-mib, and no
# further stage starts.
set -euo pipefail
cd "$(dirname "$0")/.."

total=1000000 stages="100000 250000 500000 750000 1000000" per_node=17000 hold=300 min_free=2048 tune=1 routing=broadcast
tick=100ms conn_rate=2500
while [ $# -gt 0 ]; do
  case $1 in
    --total) total=$2; shift 2 ;;
    --stages) stages=$2; shift 2 ;;
    --per-node) per_node=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --min-free-mib) min_free=$2; shift 2 ;;
    --no-tune) tune=0; shift ;;
    --routing) routing=$2; shift 2 ;;
    --tick) tick=$2; shift 2 ;;
    --conn-rate) conn_rate=$2; shift 2 ;;
    *) echo "scale: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=out/scale
rm -rf "$out" && mkdir -p "$out" bin
go build -o bin/wsreactor ./cmd/wsreactor
go build -o bin/swarm ./cmd/swarm

# Both ends of every connection live on this host: tune for twice the sockets.
[ $tune = 1 ] && scripts/tune-host.sh --target $((2 * total)) >"$out/tune-host.txt" 2>&1 || true
hard=$(ulimit -Hn)
nodes=$(( (total + per_node - 1) / per_node ))
echo "scale: $total sockets over $nodes nodes (open-file hard limit $hard per process, tick $tick)"
export GOMAXPROCS=1

port=127.0.0.1:18080
pids=()
for i in $(seq 1 "$nodes"); do
  args=(-listen "$port" -reuse-port -admin "127.0.0.1:$((20000 + i))" -node-id "n$i" -loops 1
        -broker nats -nats-url nats://127.0.0.1:14222 -routing "$routing" -max-connections $((hard - 200)) -tick "$tick")
  [ "$i" = 1 ] && args+=(-nats-embedded)
  bin/wsreactor "${args[@]}" >"$out/node$i.log" 2>&1 &
  pids+=($!)
  if [ "$i" = 1 ]; then
    for _ in $(seq 100); do curl -sf http://127.0.0.1:20001/healthz >/dev/null && break; sleep 0.1; done
  fi
done
for i in $(seq 1 "$nodes"); do
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$((20000 + i))/healthz" >/dev/null && break; sleep 0.1; done
done
echo "scale: $nodes nodes up"

fleet_sum() { # sum of one metric over all live nodes (a node that is gone counts 0)
  local sum=0 v
  for i in $(seq 1 "$nodes"); do
    v=$(curl -sf "http://127.0.0.1:$((20000 + i))/metrics" 2>/dev/null | awk -v m="$1" '$1==m{printf "%d", $2}') || v=0
    sum=$((sum + ${v:-0}))
  done
  echo $sum
}
active() { fleet_sum ws_connections_active; }
cpu_ticks() { local t=0 p; for p in "$@"; do [ -r /proc/$p/stat ] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
swarm_pids() { pgrep -f 'bin/swarm' | tr '\n' ' '; }
rss_kb() { local t=0 p; for p in "${pids[@]}"; do [ -r /proc/$p/status ] && t=$((t + $(awk '/^VmRSS/{print $2}' /proc/$p/status))); done; echo $t; }
meminfo() { awk -v k="$1:" '$1==k{print $2}' /proc/meminfo; }
tcp_mem_pages() { awk '/^TCP:/{for(i=1;i<=NF;i++) if($i=="mem") print $(i+1)}' /proc/net/sockstat; }

rss0=$(rss_kb) slab0=$(meminfo Slab) tcp0=$(tcp_mem_pages)
{
  echo "| sockets | connect rate (/s) | server RSS total | user-space B / socket | kernel slab B / conn pair | TCP mem B / conn pair | server CPU idle (cores) | heartbeat CPU µs / socket / s | swarm CPU idle (cores) | MemAvailable |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$out/stages.md"

swarms=() prev=0 stage_n=0 stopped_by_guard=0
for target in $stages; do
  [ "$target" -gt "$total" ] && break
  stage_n=$((stage_n + 1))
  add=$((target - prev))
  procs=$(( (add + per_node - 1) / per_node ))
  # Source addresses: a fresh /24 per stage, so no stage runs short of ephemeral ports.
  bin/swarm reconnect -url "ws://$port/" -conns "$add" -procs "$procs" -duration 3600s \
    -tick "$tick" -conn-rate "$conn_rate" -channel scale -source "127.1.$stage_n.1-127.1.$stage_n.250" -min-free-mib "$min_free" \
    -report "$out/swarm-stage$stage_n.json" >"$out/swarm-stage$stage_n.md" 2>&1 &
  swarms+=($!)
  t0=$(date +%s.%N) last=-1 same=0
  while :; do
    sleep 5
    n=$(active)
    [ "$n" -ge "$target" ] && break
    if [ "$n" = "$last" ]; then same=$((same + 1)); else same=0; fi
    [ $same -ge 6 ] && { echo "scale: stage $target stalled at $n"; break; }
    last=$n
  done
  t1=$(date +%s.%N)
  n=$(active)
  rate=$(python3 -c "print(round(($n - $prev) / ($t1 - $t0)))")
  # Idle CPU: skip the first heartbeat period after the ramp, then measure one full period
  # (every socket pings exactly once in it).
  sleep 30
  sw=$(swarm_pids)
  c0=$(cpu_ticks "${pids[@]}") w0=$(cpu_ticks $sw); sleep 30; c1=$(cpu_ticks "${pids[@]}") w1=$(cpu_ticks $sw)
  rss=$(rss_kb) slab=$(meminfo Slab) tcp=$(tcp_mem_pages) avail=$(meminfo MemAvailable)
  python3 - "$n" "$rate" "$rss" "$rss0" "$slab" "$slab0" "$tcp" "$tcp0" "$c0" "$c1" "$w0" "$w1" "$avail" >>"$out/stages.md" <<'PY'
import sys
n, rate, rss, rss0, slab, slab0, tcp, tcp0, c0, c1, w0, w1, avail = map(float, sys.argv[1:])
cores = (c1 - c0) / 100 / 30
print(f"| {n:,.0f} | {rate:,.0f} | {rss/1024/1024:.2f} GiB | {(rss-rss0)*1024/n:,.0f} | {(slab-slab0)*1024/n:,.0f} | {(tcp-tcp0)*4096/n:,.0f} | {cores:.3f} | {cores*1e6/n:.2f} | {(w1-w0)/100/30:.3f} | {avail/1024/1024:.1f} GiB |")
PY
  tail -1 "$out/stages.md"
  prev=$n
  if [ "$avail" -lt $((min_free * 1024)) ]; then
    echo "scale: memory guard: MemAvailable $((avail / 1024)) MiB < $min_free MiB; no further stages"
    stopped_by_guard=1
    break
  fi
done
top=$(active)
echo "scale: holding $top sockets for ${hold}s"
hold_start=$(date +%s)
sleep "$hold"
held=$(active)

# One channel publish and one wsr.all broadcast, both from node 1's admin API. After each,
# wait until the nodes' sent counters stop moving (every socket written to; on a saturated
# host that takes tens of seconds), then a little more for the clients to read, so the
# drain below never overlaps a broadcast.
now() { date +%s%N; }
pad=$(printf 'x%.0s' $(seq 1 20))
settle_sends() { # wait (up to 180 s) until sends stop growing for 10 s
  local last=-1 same=0 n
  for _ in $(seq 90); do
    sleep 2
    n=$(fleet_sum ws_messages_sent_total)
    if [ "$n" = "$last" ]; then same=$((same + 1)); else same=0; fi
    [ $same -ge 5 ] && break
    last=$n
  done
  sleep 5
}
curl -sf -o /dev/null -X POST http://127.0.0.1:20001/v1/publish -d "{\"channel\":\"scale\",\"data\":\"wsr-bench:0:$(now):$pad\"}"
settle_sends
curl -sf -o /dev/null -X POST http://127.0.0.1:20001/v1/broadcast -d "{\"data\":\"wsr-bench:1:$(now):$pad\"}"
settle_sends

# Drain the last node: its sockets must reconnect to the others.
drained=$(curl -sf "http://127.0.0.1:$((20000 + nodes))/metrics" | awk '$1=="ws_connections_active"{print $2}')
kill -TERM "${pids[$((nodes - 1))]}"
wait "${pids[$((nodes - 1))]}" 2>/dev/null || true
# The drained node is gone from active's sum: wait (up to 120 s) until the others hold
# every socket again, or their count stops growing for 20 s.
last=-1 same=0
for _ in $(seq 24); do
  sleep 5
  after_drain=$(active)
  [ "$after_drain" -ge "$held" ] && break
  if [ "$after_drain" = "$last" ]; then same=$((same + 1)); else same=0; fi
  [ $same -ge 4 ] && break
  last=$after_drain
done

for p in "${swarms[@]}"; do kill -INT "$p" 2>/dev/null || true; done
for p in "${swarms[@]}"; do wait "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done

python3 - "$out" "$top" "$held" "$drained" "$after_drain" "$hold" "$stopped_by_guard" >"$out/summary.md" <<'PY'
import glob, json, sys
out, top, held, drained, after, hold, guard = sys.argv[1:]
reps = [json.load(open(f)) for f in sorted(glob.glob(out + "/swarm-stage*.json"))]
opened = sum(r["connect"]["opened"] for r in reps)
failed = sum(r["connect"]["failed"] for r in reps)
disc = sum(r["reconnect"]["disconnected"] for r in reps)
reco = sum(r["reconnect"]["reconnected"] for r in reps)
lost = sum(r["lost"] for r in reps)
errors = sum(r["errors"] for r in reps)
recv = sum((r.get("broadcast") or {}).get("received", 0) for r in reps)
last = max(((r.get("broadcast") or {}).get("time_to_last_delivery_ms_max", 0) for r in reps), default=0)
causes = {}
for r in reps:
    for k, v in (r["connect"].get("failures_by_cause") or {}).items():
        causes[k] = causes.get(k, 0) + v
print(f"| figure | value |\n| --- | ---: |")
print(f"| sockets opened by the swarm | {opened:,} |")
print(f"| sockets open at the top (servers' ws_connections_active) | {int(top):,} |")
print(f"| still open after the {hold} s hold | {int(held):,} (lost while held: {int(top) - int(held):,}) |")
print(f"| channel publish + wsr.all broadcast deliveries | {recv:,} of {2 * int(held):,} expected |")
print(f"| slowest time to last delivery | {last:,.0f} ms |")
print(f"| sockets on the drained node | {int(drained or 0):,} |")
print(f"| disconnected / reconnected (whole run) | {disc:,} / {reco:,} |")
print(f"| open after the drain | {int(after):,} |")
print(f"| swarm errors / lost | {errors:,} / {lost:,} |")
print(f"| dial failures by cause (retries included) | {causes or 'none'} |")
print(f"| memory guard stopped the ramp | {'yes' if guard == '1' else 'no'} |")
PY
{
  echo "Run $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty'), $(go version | cut -d' ' -f3-4)"
  echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs), $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); kernel $(uname -r); $nodes nodes (-reuse-port, -loops 1, -tick $tick, GOMAXPROCS=1, -routing $routing), swarm -tick $tick -conn-rate $conn_rate per stage, open-file hard limit $hard"
  echo "sysctls: $(sysctl -n net.ipv4.tcp_rmem | tr '\t' ' ') (tcp_rmem), $(sysctl -n net.ipv4.tcp_wmem | tr '\t' ' ') (tcp_wmem), $(sysctl -n net.ipv4.tcp_mem | tr '\t' ' ') (tcp_mem), nf_conntrack_max $(cat /proc/sys/net/netfilter/nf_conntrack_max 2>/dev/null || echo n/a)"
  echo
  cat "$out/stages.md"
  echo
  cat "$out/summary.md"
} >"$out/results.md"
cat "$out/results.md"
