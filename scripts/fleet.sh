#!/usr/bin/env bash
# Runs an N-node wsreactor fleet on this host, joined by NATS, for demos and benchmarks.
#
#   scripts/fleet.sh start N [--reuse-port] [-- EXTRA_FLAGS...]
#   scripts/fleet.sh status
#   scripts/fleet.sh stop
#
# start builds bin/wsreactor, then starts node1..nodeN:
#   node i   -node-id node<i>  -listen 127.0.0.1:808<i>  -admin 127.0.0.1:909<i>
#            (WebSocket port 8080+i, admin port 9090+i)
#   node1    also runs the embedded NATS server (-nats-embedded) on FLEET_NATS_URL;
#            the others connect to it (-broker nats), so node1 starts first and stops last.
#            With FLEET_NATS_EMBEDDED=0 no node embeds one: every node connects to
#            FLEET_NATS_URL, e.g. the cluster of scripts/nats-cluster.sh.
#   --reuse-port   every node listens on 127.0.0.1:8080 with -reuse-port (the kernel spreads
#                  connections over them); admin ports stay 9090+i.
#   -- FLAGS       passed to every node, e.g. `-- -app echo -heartbeat 10s`.
# It waits for each node's /healthz and fails (stopping what it started) if one dies or
# does not answer within 30 s. Logs and pid files live in FLEET_DIR (default out/fleet/).
#
# stop sends SIGTERM to every node (the others first, node1 and its NATS server last) and
# waits for each to drain and exit, up to FLEET_STOP_WAIT seconds (default 40: above the
# default -drain-timeout of 30s), then SIGKILLs what is left.
#
# Environment: FLEET_DIR, FLEET_HOST (default 127.0.0.1), FLEET_NATS_URL (default
# nats://127.0.0.1:4222; a comma list for a cluster), FLEET_NATS_EMBEDDED (default 1),
# FLEET_STOP_WAIT.
#
# Example (a publish on node 3 reaches a subscriber on node 1):
#   scripts/fleet.sh start 3
#   curl -X POST 127.0.0.1:9093/v1/publish -d '{"channel":"demo","data":"hi"}'
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
dir=${FLEET_DIR:-$root/out/fleet}
host=${FLEET_HOST:-127.0.0.1}
nats_url=${FLEET_NATS_URL:-nats://127.0.0.1:4222}
nats_embedded=${FLEET_NATS_EMBEDDED:-1}
stop_wait=${FLEET_STOP_WAIT:-40}
bin=$root/bin/wsreactor

usage() { sed -n '2,7s/^# \{0,1\}//p' "$0"; }
die() { echo "fleet: $*" >&2; exit 1; }

ws_port() { echo $((8080 + $1)); }
admin_port() { echo $((9090 + $1)); }

# pids prints "node pid" for each pid file, node1 last (stop order).
pids() {
  local f n
  [ -d "$dir" ] || return 0
  for f in "$dir"/node*.pid; do
    [ -e "$f" ] || continue
    n=${f##*/node}
    n=${n%.pid}
    [ "$n" = 1 ] && continue
    echo "$n $(cat "$f")"
  done | sort -n
  [ -e "$dir/node1.pid" ] && echo "1 $(cat "$dir/node1.pid")"
  return 0
}

# ours reports whether pid is alive and is a wsreactor we started (not a reused pid).
ours() {
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q -- "$bin .*-node-id node"
}

healthy() { curl -sf -m 1 "http://127.0.0.1:$(admin_port "$1")/healthz" >/dev/null; }

# wait_healthy waits for node $1 (pid $2) to answer /healthz, for up to 30 s.
wait_healthy() {
  local i
  for ((i = 0; i < 300; i++)); do
    healthy "$1" && return 0
    if ! kill -0 "$2" 2>/dev/null; then
      echo "fleet: node$1 exited during start; last lines of $dir/node$1.log:" >&2
      tail -n 20 "$dir/node$1.log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "fleet: node$1 did not answer /healthz on :$(admin_port "$1") within 30s" >&2
  return 1
}

start_node() {
  local i=$1
  shift
  local listen
  local -a flags
  if [ "$reuse_port" = yes ]; then
    listen="$host:8080"
    flags=(-reuse-port)
  else
    listen="$host:$(ws_port "$i")"
    flags=()
  fi
  flags+=(-node-id "node$i" -listen "$listen" -admin "127.0.0.1:$(admin_port "$i")"
    -broker nats -nats-url "$nats_url")
  [ "$i" = 1 ] && [ "$nats_embedded" != 0 ] && flags+=(-nats-embedded)
  nohup "$bin" "${flags[@]}" "$@" >"$dir/node$i.log" 2>&1 &
  echo $! >"$dir/node$i.pid"
  echo "fleet: node$i pid $! ws $listen admin 127.0.0.1:$(admin_port "$i")"
}

cmd_start() {
  local n=${1:-}
  [[ $n =~ ^[1-9][0-9]*$ ]] || { usage >&2; die "start needs a node count"; }
  shift
  reuse_port=no
  while [ $# -gt 0 ]; do
    case "$1" in
      --reuse-port) reuse_port=yes; shift ;;
      --) shift; break ;;
      *) die "unknown option $1 (node flags go after --)" ;;
    esac
  done
  local node pid
  while read -r node pid; do
    [ -n "$pid" ] && ours "$pid" && die "node$node (pid $pid) is already running; run: scripts/fleet.sh stop"
  done < <(pids)
  mkdir -p "$dir" "$root/bin"
  rm -f "$dir"/node*.pid
  echo "fleet: building $bin"
  go build -o "$bin" ./cmd/wsreactor

  # node1 first: it hosts NATS, which the others connect to at start.
  start_node 1 "$@"
  wait_healthy 1 "$(cat "$dir/node1.pid")" || { cmd_stop >/dev/null; die "start failed"; }
  local i
  for ((i = 2; i <= n; i++)); do start_node "$i" "$@"; done
  for ((i = 2; i <= n; i++)); do
    wait_healthy "$i" "$(cat "$dir/node$i.pid")" || { cmd_stop >/dev/null; die "start failed"; }
  done
  echo "fleet: $n node(s) healthy; logs in $dir"
}

cmd_stop() {
  local node pid any=no
  local -a others=()
  while read -r node pid; do
    if ! ours "$pid"; then
      rm -f "$dir/node$node.pid"
      continue
    fi
    any=yes
    if [ "$node" = 1 ]; then
      # The other nodes' drains may still publish; NATS goes last.
      [ ${#others[@]} -gt 0 ] && wait_gone "${others[@]}"
      others=()
    fi
    echo "fleet: SIGTERM node$node (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    others+=("$node:$pid")
  done < <(pids)
  [ ${#others[@]} -gt 0 ] && wait_gone "${others[@]}"
  [ "$any" = yes ] || echo "fleet: no node running"
  return 0
}

# wait_gone waits for each node:pid to exit, SIGKILLing any still alive after stop_wait.
wait_gone() {
  local np node pid i
  for np in "$@"; do
    node=${np%%:*} pid=${np#*:}
    for ((i = 0; i < stop_wait * 10; i++)); do
      ours "$pid" || break
      sleep 0.1
    done
    if ours "$pid"; then
      echo "fleet: node$node (pid $pid) still running after ${stop_wait}s; SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    else
      echo "fleet: node$node stopped"
    fi
    rm -f "$dir/node$node.pid"
  done
}

cmd_status() {
  local node pid state ready active bad=0
  if [ -z "$(pids)" ]; then
    echo "fleet: no node running"
    return 1
  fi
  printf '%-6s %-8s %-8s %-10s %-8s %s\n' node pid state ready sockets admin
  while read -r node pid; do
    if ! ours "$pid"; then
      printf '%-6s %-8s %-8s\n' "node$node" "$pid" "dead"
      bad=$((bad + 1))
      continue
    fi
    state=up ready=- active=-
    if healthy "$node"; then
      ready=$(curl -s -m 1 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(admin_port "$node")/readyz" || true)
      [ "$ready" = 200 ] && ready=ready || ready="draining"
      active=$(curl -s -m 1 "http://127.0.0.1:$(admin_port "$node")/metrics" |
        awk '$1 == "ws_connections_active" {print $2}' || true)
    else
      state=unhealthy
      bad=$((bad + 1))
    fi
    printf '%-6s %-8s %-8s %-10s %-8s %s\n' "node$node" "$pid" "$state" "$ready" "${active:--}" "127.0.0.1:$(admin_port "$node")"
  done < <(pids | sort -n)
  [ "$bad" = 0 ]
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
