#!/usr/bin/env bash
# Applies the safe kernel settings for a ringcast node (see tuning/README.md for what each does
# and what it measured here). Idempotent: a value already at least as large is left alone, and
# every change is printed as "key: old -> new". Needs root; DRY_RUN=1 only prints.
set -euo pipefail

changed=0
set_min() { # key value: raise a single-valued sysctl to at least value
  local key=$1 want=$2 cur
  cur=$(sysctl -n "$key" 2>/dev/null) || { echo "$key: not available here"; return; }
  if [ "$cur" -ge "$want" ] 2>/dev/null; then return; fi
  echo "$key: $cur -> $want"; changed=1
  [ "${DRY_RUN:-0}" = 1 ] || sysctl -qw "$key=$want" || echo "  (failed: read-only here?)"
}
set_triple() { # key "min default max": raise each field to at least the wanted one
  local key=$1 want=$2 cur new
  cur=$(sysctl -n "$key" 2>/dev/null | tr -s '\t ' ' ') || { echo "$key: not available here"; return; }
  new=$(awk -v c="$cur" -v w="$want" 'BEGIN{split(c,a," ");split(w,b," ");
        for(i=1;i<=3;i++){o=o (i>1?" ":"") (a[i]+0>=b[i]+0?a[i]:b[i])}; print o}')
  if [ "$new" = "$cur" ]; then return; fi
  echo "$key: $cur -> $new"; changed=1
  [ "${DRY_RUN:-0}" = 1 ] || sysctl -qw "$key=$new" || echo "  (failed: read-only here?)"
}

# Accept bursts (a balancer reconnecting thousands of players at once).
set_min net.core.somaxconn 65535
set_min net.ipv4.tcp_max_syn_backlog 65535
# Per-socket send buffers: fan-out is send-bound; let a socket queue ~4 s of a 2.6 Mbit/s
# stream without growing the default (which multiplies by the watcher count).
set_min net.core.wmem_max 16777216
set_min net.core.rmem_max 16777216
set_triple net.ipv4.tcp_wmem "4096 65536 16777216"
set_triple net.ipv4.tcp_rmem "4096 131072 16777216"
# Softirq work per NAPI poll: more packets per round under load.
set_min net.core.netdev_budget 600
set_min net.core.netdev_budget_usecs 8000
# File descriptors: the system-wide ceiling (per-process limits are in limits.conf/systemd).
set_min fs.file-max 4194304
set_min fs.nr_open 4194304

[ "$changed" = 0 ] && echo "nothing to change: all settings already applied"
exit 0
