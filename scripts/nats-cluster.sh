#!/usr/bin/env bash
# Runs a local N-node NATS cluster (default 3) for a wsreactor fleet that must survive the
# loss of a NATS server, which the embedded single server of `fleet.sh` cannot.
#
#   scripts/nats-cluster.sh start [N]
#   scripts/nats-cluster.sh status
#   scripts/nats-cluster.sh stop
#
# start builds bin/nats-server from the nats-server module this project already pins
# (go.mod), then starts server i (1..N) with client port 4221+i, cluster (route) port
# 6221+i and monitoring port 8221+i on 127.0.0.1, each routed to all the others, and
# waits until every server sees N-1 routes. It prints the URL list for wsreactor:
#
#   -broker nats -nats-url nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
#
# (the client connects to one and fails over to the others), e.g. with
#   FLEET_NATS_EMBEDDED=0 FLEET_NATS_URL=<that list> scripts/fleet.sh start 3
#
# stop sends SIGTERM to every server and waits for it to exit. Logs and pid files live in
# NATS_CLUSTER_DIR (default out/nats-cluster/); NATS_CLUSTER_HOST (default 127.0.0.1).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
dir=${NATS_CLUSTER_DIR:-$root/out/nats-cluster}
host=${NATS_CLUSTER_HOST:-127.0.0.1}
bin=$root/bin/nats-server

die() { echo "nats-cluster: $*" >&2; exit 1; }
client_port() { echo $((4221 + $1)); }
route_port() { echo $((6221 + $1)); }
monitor_port() { echo $((8221 + $1)); }

# routes prints how many other servers server $1 has routes to, from its monitoring port
# (several connections per peer with route pooling, so distinct remote names are counted).
routes() {
  { curl -sf -m 1 "http://$host:$(monitor_port "$1")/routez" || true; } |
    grep -o '"remote_name": *"[^"]*"' | sort -u | wc -l
}

urls() {
  local i list=
  for ((i = 1; i <= $1; i++)); do list+="${list:+,}nats://$host:$(client_port "$i")"; done
  echo "$list"
}

cmd_start() {
  local n=${1:-3} i j peers
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "start needs a server count, got $n"
  for f in "$dir"/nats*.pid; do
    [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && die "already running; run: scripts/nats-cluster.sh stop"
  done
  mkdir -p "$dir" "$root/bin"
  rm -f "$dir"/nats*.pid
  echo "nats-cluster: building $bin"
  go build -o "$bin" github.com/nats-io/nats-server/v2
  for ((i = 1; i <= n; i++)); do
    peers=
    for ((j = 1; j <= n; j++)); do
      [ "$j" = "$i" ] || peers+="${peers:+,}nats://$host:$(route_port "$j")"
    done
    args=(-a "$host" -p "$(client_port "$i")" -m "$(monitor_port "$i")" -n "nats$i"
      --cluster_name wsreactor --cluster "nats://$host:$(route_port "$i")")
    [ -n "$peers" ] && args+=(--routes "$peers")
    nohup "$bin" "${args[@]}" >"$dir/nats$i.log" 2>&1 &
    echo $! >"$dir/nats$i.pid"
    echo "nats-cluster: nats$i pid $! client $host:$(client_port "$i") routes :$(route_port "$i")"
  done
  for ((i = 1; i <= n; i++)); do
    local tries=0
    until [ "$(routes "$i")" = "$((n - 1))" ]; do
      if ! kill -0 "$(cat "$dir/nats$i.pid")" 2>/dev/null || ((++tries > 300)); then
        tail -n 20 "$dir/nats$i.log" >&2 || true
        cmd_stop >/dev/null
        die "nats$i did not join the cluster within 30s"
      fi
      sleep 0.1
    done
  done
  echo "nats-cluster: $n server(s) routed to each other; for wsreactor:"
  echo "  -broker nats -nats-url $(urls "$n")"
}

cmd_status() {
  local f i pid
  for f in "$dir"/nats*.pid; do
    [ -e "$f" ] || continue
    i=${f##*/nats}
    i=${i%.pid}
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      echo "nats$i pid $pid up, $(routes "$i") route(s)"
    else
      echo "nats$i pid $pid gone"
    fi
  done
}

cmd_stop() {
  local f pid i
  for f in "$dir"/nats*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100 && $(kill -0 "$pid" 2>/dev/null && echo 1 || echo 0); i++)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  echo "nats-cluster: stopped"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  *) sed -n '2,8s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
