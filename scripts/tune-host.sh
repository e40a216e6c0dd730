#!/usr/bin/env bash
# Tunes a Linux host's kernel for N concurrent TCP sockets (wsreactor's target is one
# million per host), or reports what falls short.
#
#   scripts/tune-host.sh [--target N] [--check | --dry-run]
#
#   (default)   apply (root): raise each setting that falls short, print before -> after
#   --check     change nothing; list what falls short; exit 1 if anything does, else 0
#   --dry-run   change nothing; print the sysctl -w commands an apply would run
#   --target N  sockets this host must hold at once (default 1000000). A loopback benchmark
#               with the swarm on the same host holds two per connection: pass 2x.
#
# Only ever moves a setting towards the target: limits already above it are left alone, so
# running it twice changes nothing the second time. Each key is applied on its own; a key
# the kernel refuses (a container's read-only /proc/sys, a value over a kernel cap) is
# reported and the run goes on. Apply exits 1 if any key could not be set.
#
# Not a sysctl, and not something this script can change: the open-file limit of the
# process that runs the server (RLIMIT_NOFILE). A process can only lower its own hard limit
# and never raise its parent's, so the hard limit comes from whoever starts the server:
# LimitNOFILE= in its systemd unit (scripts/wsreactor.service), or /etc/security/limits.conf
# (nofile) for login sessions, or `ulimit -Hn` raised by root in the launching shell.
# wsreactor raises its soft limit to that hard limit by itself. fs.nr_open (below) caps it.
#
# Applied values last until reboot; the script prints the lines to put in
# /etc/sysctl.d/90-wsreactor.conf to keep them.
set -euo pipefail

target=1000000
mode=apply

usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs a number}; shift 2 ;;
    --target=*) target=${1#--target=}; shift ;;
    --check) mode=check; shift ;;
    --dry-run) mode=dry-run; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "tune-host: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if ! [[ $target =~ ^[0-9]+$ ]] || [ "$target" -lt 1 ]; then
  echo "tune-host: --target must be a positive integer, got '$target'" >&2
  exit 2
fi
if [ "$mode" = apply ] && [ "$(id -u)" -ne 0 ]; then
  echo "tune-host: applying needs root; use --check or --dry-run to look without changing" >&2
  exit 2
fi

page=$(getconf PAGESIZE)
mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)

# Descriptors a server process needs besides its sockets (listeners, epoll and eventfd per
# loop, stdio, admin scrapes, NATS), and what the rest of the system keeps open.
proc_reserve=1024
sys_reserve=65536

# --- What the target needs ------------------------------------------------------------
# Each entry: key, wanted value, and how each field of it compares with the current one:
#   ge  the current value must be at least this (limits: never lowered)
#   le  the current value must be at most this
#   eq  exactly this
declare -a keys wants ops why

want() { keys+=("$1"); wants+=("$2"); ops+=("$3"); why+=("$4"); }

# fs.nr_open: the ceiling for any process's RLIMIT_NOFILE (and so for LimitNOFILE=); one
# server process holds every socket. Never below the kernel default 1048576, which the
# systemd unit's LimitNOFILE=1048576 relies on.
nr_open=$((target + proc_reserve))
[ "$nr_open" -lt 1048576 ] && nr_open=1048576
want fs.nr_open "$nr_open" ge "per-process descriptor ceiling (caps LimitNOFILE)"

# fs.file-max: descriptors for the whole system: the sockets plus everything else running.
want fs.file-max $((target + sys_reserve)) ge "system-wide descriptors"

# Accept backlogs: a drain or a network blip sends every client back at once; a short
# queue turns that wave into SYN retries of 1 s, 3 s, 7 s. Go and gnet read somaxconn
# when they listen, so restart the server after raising it.
want net.core.somaxconn 65535 ge "accept queue per listener (reconnect waves)"
want net.ipv4.tcp_max_syn_backlog 65535 ge "half-open connections queued during a connect storm"

# Ephemeral ports bound outgoing connections per (source IP, destination) pair: the swarm,
# a proxy's upstream side, NATS. The range starts at 10000 so ephemeral ports never take
# the default listeners' ports (8080-8089, 9090-9099, 4222) before they start; listeners
# on ports above 10000 (the benchmark scripts' 18080 and the like) can still collide, so
# list those in net.ipv4.ip_local_reserved_ports on a busy host.
want net.ipv4.ip_local_port_range "10000 65535" "le ge" "ports for outgoing connections (swarm, proxy upstreams)"

# tcp_mem (pages, for all TCP sockets together): min / pressure / max. Idle sockets queue
# nothing, so the budget is for sockets with data in flight: below 2 KiB a socket on
# average the kernel does not regulate; from 4 KiB it enters memory pressure and shrinks
# buffers towards the tcp_rmem/tcp_wmem minimum; at 8 KiB it refuses to queue more. The
# maximum is capped at three quarters of RAM: past that the OOM killer, not TCP, decides.
mem_min=$((target * 2048 / page))
mem_pressure=$((target * 4096 / page))
mem_max=$((target * 8192 / page))
ram_cap=$((mem_kb * 1024 * 3 / 4 / page))
mem_capped=""
if [ "$mem_max" -gt "$ram_cap" ]; then
  mem_capped="capped at 3/4 of RAM: $((mem_kb / 1024)) MiB is small for $target sockets at 8 KiB each"
  mem_max=$ram_cap
  [ "$mem_pressure" -gt "$mem_max" ] && mem_pressure=$mem_max
  [ "$mem_min" -gt "$mem_pressure" ] && mem_min=$mem_pressure
fi
want net.ipv4.tcp_mem "$mem_min $mem_pressure $mem_max" "ge ge ge" "TCP memory in pages: min pressure max${mem_capped:+ ($mem_capped)}"

# tcp_rmem / tcp_wmem (bytes per socket): min default max. The default is what a new
# socket may queue before autotuning grows it; 4 KiB (one page) instead of 128 KiB/16 KiB
# keeps a million sockets from each being allowed a large queue, so the kernel's memory
# stays bounded by tcp_mem instead of by a few slow readers. The trade-off: a socket that
# suddenly moves a lot (a large message, a catch-up burst) starts small and needs a few
# round trips of autotuning to grow, and until then writes come back short and the rest
# waits in wsreactor's own per-socket send buffer (-send-buffer-limit). WebSocket traffic
# is small messages, where that costs nothing; the 16 MiB maximum still lets a busy socket
# grow to full speed. A larger current maximum is kept.
want net.ipv4.tcp_rmem "4096 4096 16777216" "le le ge" "receive buffer per socket: min default max (bytes)"
want net.ipv4.tcp_wmem "4096 4096 16777216" "le le ge" "send buffer per socket: min default max (bytes)"

# Packets queued per CPU between the driver (or loopback) and the TCP stack; a broadcast
# to a million sockets on loopback, or a connect storm, overflows the default 1000.
want net.core.netdev_max_backlog 16384 ge "per-CPU input packet queue"

# Connection tracking: every TCP connection through netfilter takes an entry, loopback
# included; a full table drops new connections ("nf_conntrack: table full"). Only when
# the module is loaded (its sysctl exists); otherwise there is nothing to size.
if [ -e /proc/sys/net/netfilter/nf_conntrack_max ]; then
  want net.netfilter.nf_conntrack_max $((target + target / 4)) ge "tracked connections (+25% for churn)"
fi

# Reuse TIME_WAIT sockets for new outgoing connections when safe (timestamps): the swarm,
# proxies and churn benchmarks open and close many connections to the same destination.
# 1 = everywhere (the kernel default 2 is loopback only).
want net.ipv4.tcp_tw_reuse 1 eq "reuse TIME_WAIT ports for outgoing connections"

# --- Comparing and applying -----------------------------------------------------------

# norm prints a sysctl value with its fields separated by single spaces.
norm() { tr -s ' \t' '  ' <<<"$1" | sed 's/^ //; s/ $//'; }

# merge prints the value to set: each field of current moved just far enough to satisfy
# the op for the wanted field.
merge() {
  local cur=$1 wnt=$2 op=$3 out=() i
  local -a c w o
  read -ra c <<<"$cur"
  read -ra w <<<"$wnt"
  read -ra o <<<"$op"
  if [ "${#c[@]}" -ne "${#w[@]}" ]; then
    echo "$wnt"
    return
  fi
  for i in "${!w[@]}"; do
    case "${o[$i]}" in
      ge) if [ "${c[$i]}" -ge "${w[$i]}" ]; then out+=("${c[$i]}"); else out+=("${w[$i]}"); fi ;;
      le) if [ "${c[$i]}" -le "${w[$i]}" ]; then out+=("${c[$i]}"); else out+=("${w[$i]}"); fi ;;
      eq) out+=("${w[$i]}") ;;
    esac
  done
  echo "${out[*]}"
}

echo "tune-host: $mode for $target sockets (page $page B, RAM $((mem_kb / 1024)) MiB)"
printf '%-32s %-28s %s\n' "key" "before" "after"
short=0 failed=0 persist=()
for i in "${!keys[@]}"; do
  key=${keys[$i]}
  if ! cur=$(sysctl -n "$key" 2>/dev/null); then
    printf '%-32s %-28s %s\n' "$key" "(absent)" "skipped: this kernel has no such key"
    continue
  fi
  cur=$(norm "$cur")
  new=$(merge "$cur" "${wants[$i]}" "${ops[$i]}")
  persist+=("$key = $new")
  if [ "$new" = "$cur" ]; then
    printf '%-32s %-28s %s\n' "$key" "$cur" "ok"
    continue
  fi
  case "$mode" in
    check)
      short=$((short + 1))
      printf '%-32s %-28s %s\n' "$key" "$cur" "SHORT: want $new -- ${why[$i]}"
      ;;
    dry-run)
      short=$((short + 1))
      printf '%-32s %-28s %s\n' "$key" "$cur" "would run: sysctl -w $key=\"$new\""
      ;;
    apply)
      if err=$(sysctl -q -w "$key=$new" 2>&1); then
        after=$(norm "$(sysctl -n "$key" 2>/dev/null || echo '?')")
        if [ "$after" = "$new" ]; then
          printf '%-32s %-28s %s\n' "$key" "$cur" "-> $after"
        else
          failed=$((failed + 1))
          printf '%-32s %-28s %s\n' "$key" "$cur" "-> $after  FAILED: kernel kept $after, wanted $new"
        fi
      else
        failed=$((failed + 1))
        printf '%-32s %-28s %s\n' "$key" "$cur" "FAILED: ${err//$'\n'/ }"
      fi
      ;;
  esac
done

# The open-file limit is per process and inherited: report this shell's, say who sets it.
hard=$(ulimit -Hn)
soft=$(ulimit -Sn)
need=$((target + proc_reserve))
echo
echo "open files (RLIMIT_NOFILE) of this shell: soft $soft, hard $hard; a server for $target sockets needs >= $need"
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  cat <<EOF
  NOTE: not counted above, because no script can raise it for the server: a process never
  raises its parent's limit, and the server inherits the hard limit of whoever starts it.
  Set it there: LimitNOFILE=$need in the systemd unit (scripts/wsreactor.service), or
  'nofile' in /etc/security/limits.conf for login shells, or 'ulimit -Hn $need' as root in
  the shell that launches it. It cannot exceed fs.nr_open. wsreactor raises its soft limit
  to the hard limit itself.
EOF
fi

case "$mode" in
  check)
    if [ "$short" -gt 0 ]; then
      echo "tune-host: $short setting(s) short of $target sockets; run without --check as root to apply"
      exit 1
    fi
    echo "tune-host: every setting meets $target sockets"
    ;;
  dry-run)
    echo "tune-host: dry run, nothing changed ($short setting(s) would change)"
    ;;
  apply)
    echo
    echo "to keep these across reboots, put them in /etc/sysctl.d/90-wsreactor.conf:"
    printf '  %s\n' "${persist[@]}"
    if [ "$failed" -gt 0 ]; then
      echo "tune-host: $failed setting(s) could not be applied (see FAILED above)"
      exit 1
    fi
    ;;
esac
