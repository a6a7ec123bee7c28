#!/usr/bin/env bash
# The benchmark matrix: ringcast, the kernel-ceiling baseline and (when installed) nginx-rtmp,
# each loaded by one publisher and N RTMP watchers from ringcast-loadgen, on loopback only.
#
# For every server and N: start the server, publish (not for the kernel ceiling, which makes
# its own media), sample RSS with 0 watchers, start N watchers, and after the warm-up sample the
# server's CPU (utime+stime from /proc/PID/stat) over a fixed window and its RSS. Results: one
# JSON summary per run and a Markdown table in $OUT.
#
# Usage: scripts/bench-matrix.sh [N ...]          (default: 100 500 1000 2000)
# Env:   WORKERS=1 COALESCE_US=0 DURATION=20 WARMUP=6 RAMP=1000 OUT=bench-out SERVERS="ringcast ceiling nginx"
#        CARGO_TARGET_DIR (binaries are taken from $CARGO_TARGET_DIR/release)
set -euo pipefail

cd "$(dirname "$0")/.."
NS=("$@"); [ ${#NS[@]} -eq 0 ] && NS=(100 500 1000 2000)
WORKERS=${WORKERS:-1}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-6}
LG_PROCS=${LG_PROCS:-1}
RAMP=${RAMP:-1000}
OUT=${OUT:-bench-out}
SERVERS=${SERVERS:-"ringcast ceiling nginx"}
BIN=${CARGO_TARGET_DIR:-target}/release
PORT_RC=19401 PORT_KC=19402 PORT_NG=19403
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
HZ=$(getconf CLK_TCK)

if [ "${SKIP_BUILD:-0}" != 1 ] && [ "${RENDER_ONLY:-0}" != 1 ]; then
  cargo build --release -p ringcast -p ringcast-loadgen >&2
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tree_ticks() { # the process and its children (watch --processes K)
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
  echo "$t"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
now_s() { date +%s.%N; }

start_server() { # kind -> sets SPID, PORT
  case $1 in
    ringcast)
      PORT=$PORT_RC
      # Only the RTMP listener, on loopback: no fstream/HTTP/FTL ports that could clash.
      cat >"$OUT/ringcast.toml" <<CONF
[server]
log = "warn"
[rtmp]
listen = ["127.0.0.1:$PORT"]
[fanout]
write_coalesce_us = ${COALESCE_US:-0}
[ftl]
enabled = false
[fstream]
enabled = false
[http]
enabled = false
CONF
      "$BIN/ringcast" --config "$OUT/ringcast.toml" --workers "$WORKERS" >"$OUT/ringcast.log" 2>&1 &
      SPID=$! ;;
    ceiling)
      PORT=$PORT_KC
      "$BIN/ringcast-loadgen" kernel-ceiling --listen "127.0.0.1:$PORT" >"$OUT/ceiling.log" 2>&1 &
      SPID=$! ;;
    nginx)
      PORT=$PORT_NG
      local d="$OUT/nginx"; mkdir -p "$d/logs"
      local mod=/usr/lib/nginx/modules/ngx_rtmp_module.so
      cat >"$d/nginx.conf" <<CONF
load_module $mod;
daemon off;
master_process off;
worker_processes 1;
error_log $d/logs/error.log warn;
pid $d/nginx.pid;
events { worker_connections 20000; }
rtmp { server { listen 127.0.0.1:$PORT; application live { live on; } } }
CONF
      nginx -c "$d/nginx.conf" -p "$d" >"$OUT/nginx.log" 2>&1 &
      SPID=$! ;;
  esac
  PIDS+=("$SPID")
  sleep 1
}

ROWS="$OUT/rows.tsv"
# RENDER_ONLY=1 re-renders the table from an earlier run's $OUT.
[ "${RENDER_ONLY:-0}" = 1 ] && SERVERS=""
[ "${RENDER_ONLY:-0}" = 1 ] || : >"$ROWS"
for kind in $SERVERS; do
  if [ "$kind" = nginx ] && ! { command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; }; then
    echo "nginx-rtmp not installed; skipping" >&2; continue
  fi
  for n in "${NS[@]}"; do
    start_server "$kind"
    raw=()
    if [ "$kind" = ceiling ]; then
      raw=(--raw)
    else
      "$BIN/ringcast-loadgen" publish --target "127.0.0.1:$PORT" --duration $((DURATION + 5)) \
        >"$OUT/publish-$kind-$n.log" 2>&1 &
      PIDS+=("$!"); PUB=$!
    fi
    sleep 2
    rss0=$(rss_kib "$SPID")
    "$BIN/ringcast-loadgen" watch --target "127.0.0.1:$PORT" --watchers "$n" "${raw[@]}" \
      --duration "$DURATION" --warmup "$WARMUP" --ramp-per-sec "$RAMP" \
      --processes "$LG_PROCS" --out "$OUT/$kind-$n.json" >/dev/null 2>"$OUT/watch-$kind-$n.log" &
    WPID=$!
    sleep "$WARMUP"
    c0=$(cpu_ticks "$SPID"); l0=$(tree_ticks "$WPID"); t0=$(now_s)
    sleep $((DURATION - WARMUP - 2))
    c1=$(cpu_ticks "$SPID"); l1=$(tree_ticks "$WPID"); t1=$(now_s)
    rss1=$(rss_kib "$SPID")
    wait "$WPID" || echo "watch $kind $n failed" >&2
    cpu=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.3f", (b-a)/hz/(t1-t0)}')
    lcpu=$(awk -v a="$l0" -v b="$l1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.3f", (b-a)/hz/(t1-t0)}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$n" "$cpu" "$rss0" "$rss1" "$lcpu" >>"$ROWS"
    echo "$kind N=$n cpu=$cpu cores loadgen=$lcpu rss0=${rss0}KiB rss=${rss1}KiB $(jq -c '{gbps:.delivered_gbps,playing,p99:.latency_ms.p99,stalls}' "$OUT/$kind-$n.json")" >&2
    kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true
    [ "$kind" != ceiling ] && { kill "$PUB" 2>/dev/null || true; wait "$PUB" 2>/dev/null || true; }
    sleep 1
  done
done

{
  echo "| server | watchers | playing | relay CPU (cores) | loadgen CPU | delivered Gbit/s | per watcher Mbit/s | CPU per Gbit/s | × kernel ceiling | RSS/watcher (KiB) | latency p50 / p99 / p999 (ms) | TTFF p99 (ms) | stalls | lost / skipped frames |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  while IFS=$'\t' read -r kind n cpu rss0 rss1 lcpu; do
    j="$OUT/$kind-$n.json"
    [ -f "$j" ] || continue
    read -r gbps wmbps playing p50 p99 p999 ttff stalls lost skipped < <(jq -r '[.delivered_gbps,.mean_watcher_mbps,.playing,.latency_ms.p50,.latency_ms.p99,.latency_ms.p999,.ttff_ms.p99,.stalls,.lost_frames,.skipped_frames]|@tsv' "$j")
    kc=$(awk -F'\t' -v n="$n" '$1=="ceiling" && $2==n {print $3}' "$ROWS")
    kj="$OUT/ceiling-$n.json"
    kg=$( [ -f "$kj" ] && jq -r .delivered_gbps "$kj" || echo 0)
    awk -v kind="$kind" -v n="$n" -v cpu="$cpu" -v lcpu="${lcpu:--}" -v gbps="$gbps" -v wmbps="$wmbps" -v playing="$playing" -v rss0="$rss0" -v rss1="$rss1" \
        -v p50="$p50" -v p99="$p99" -v p999="$p999" -v ttff="$ttff" -v stalls="$stalls" -v lost="$lost" -v skipped="$skipped" \
        -v kc="${kc:-0}" -v kg="$kg" 'BEGIN{
      per = gbps > 0 ? cpu / gbps : 0
      kper = kg > 0 ? kc / kg : 0
      ratio = kper > 0 ? sprintf("%.2f", per / kper) : "-"
      printf "| %s | %d | %d | %.3f | %s | %.3f | %.2f | %.3f | %s | %.1f | %.1f / %.1f / %.1f | %.1f | %d | %d / %d |\n",
        kind, n, playing, cpu, lcpu, gbps, wmbps, per, ratio, (rss1 - rss0) / n, p50, p99, p999, ttff, stalls, lost, skipped }'
  done <"$ROWS"
} | tee "$OUT/table.md"
