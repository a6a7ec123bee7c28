#!/usr/bin/env bash
# Relay memory per RTMP watcher, measured both ways, and optionally a heap profile.
#
# For each N and repetition: start ringcast (WORKERS workers), publish the loadgen's synthetic
# stream (2.5 Mbit/s video + 128 kbit/s audio, 30 fps, 2 s GOP), sample the relay's RSS
# EARLY seconds after the publisher starts (before the first watcher, GOP cache still filling:
# the independent tool's baseline) and SETTLE seconds after (GOP cache full: bench-matrix's
# baseline), then start N RTMP watchers (RAMP per second), and HOLD seconds after the ramp
# sample the RSS again. Per watcher = (after - baseline) / N, for both baselines. Prints one row
# per run and the medians per N.
#
# Usage: scripts/bench-memory.sh [N ...]           (default: 1000 2000)
# Env:   REPS=3 WORKERS=2 EARLY=2 SETTLE=8 HOLD=8 RAMP=1000 OUT=bench-memory
#        HEAPTRACK=1: run the relay under heaptrack (one repetition per N, plus N=0) and print
#        its peak consumers to $OUT/heap-N.txt (slow: use small N)
#        EXTRA_TOML appended to the relay's config
set -euo pipefail

cd "$(dirname "$0")/.."
NS=("$@"); [ ${#NS[@]} -eq 0 ] && NS=(1000 2000)
REPS=${REPS:-3} WORKERS=${WORKERS:-2} EARLY=${EARLY:-2} SETTLE=${SETTLE:-8} HOLD=${HOLD:-8}
RAMP=${RAMP:-1000} OUT=${OUT:-bench-memory}
BIN=${CARGO_TARGET_DIR:-target}/release
PORT=19601
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p ringcast -p ringcast-loadgen >&2
fi
if [ "${HEAPTRACK:-0}" = 1 ]; then REPS=1; NS=(0 "${NS[@]}"); fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
relay_pid() { # the ringcast process (under heaptrack, its child)
  local p=$1 c
  for _ in $(seq 50); do
    c=$(pgrep -f "^$BIN/ringcast --config" -P "$p" 2>/dev/null || true)
    [ -n "$c" ] && { echo "$c"; return; }
    [ "${HEAPTRACK:-0}" = 1 ] || { echo "$p"; return; }
    sleep 0.2
  done
  echo "$p"
}

cat >"$OUT/ringcast.toml" <<CONF
[server]
log = "warn"
[rtmp]
listen = ["127.0.0.1:$PORT"]
[ftl]
enabled = false
[fstream]
enabled = false
[http]
enabled = false
${EXTRA_TOML:-}
CONF

ROWS="$OUT/rows.tsv"
printf 'n\trep\trss_early_kib\trss_settled_kib\trss_after_kib\tper_watcher_from_early_kib\tper_watcher_from_settled_kib\n' >"$ROWS"
for n in "${NS[@]}"; do
  for rep in $(seq "$REPS"); do
    if [ "${HEAPTRACK:-0}" = 1 ]; then
      heaptrack -o "$OUT/heap-$n" "$BIN/ringcast" --config "$OUT/ringcast.toml" --workers "$WORKERS" \
        >"$OUT/relay-$n.log" 2>&1 &
    else
      "$BIN/ringcast" --config "$OUT/ringcast.toml" --workers "$WORKERS" >"$OUT/relay-$n.log" 2>&1 &
    fi
    top=$!; PIDS+=("$top"); sleep 1.5
    rc=$(relay_pid "$top")
    "$BIN/ringcast-loadgen" publish --target "127.0.0.1:$PORT" --stream live/mem >/dev/null 2>&1 &
    pub=$!; PIDS+=("$pub")
    sleep "$EARLY"; early=$(rss_kib "$rc")
    sleep $(( SETTLE - EARLY )); settled=$(rss_kib "$rc")
    after=$settled
    if [ "$n" -gt 0 ]; then
      dur=$(( n / RAMP + HOLD + 4 ))
      "$BIN/ringcast-loadgen" watch --target "127.0.0.1:$PORT" --stream live/mem --watchers "$n" \
        --ramp-per-sec "$RAMP" --duration "$dur" --warmup 2 --quiet --processes 2 \
        >"$OUT/watch-$n-$rep.json" 2>/dev/null &
      lg=$!; PIDS+=("$lg")
      sleep $(( n / RAMP + HOLD )); after=$(rss_kib "$rc")
      wait "$lg" || true
    fi
    kill "$pub" 2>/dev/null || true
    kill -TERM "$rc" 2>/dev/null || true
    wait "$top" 2>/dev/null || true
    if [ "$n" -gt 0 ]; then
      pe=$(awk -v a="$after" -v b="$early" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')
      ps=$(awk -v a="$after" -v b="$settled" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')
    else
      pe=- ps=-
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$rep" "$early" "$settled" "$after" "$pe" "$ps" | tee -a "$ROWS"
    if [ "${HEAPTRACK:-0}" = 1 ]; then
      f=$(ls -t "$OUT"/heap-"$n"*.zst "$OUT"/heap-"$n"*.gz 2>/dev/null | head -n 1 || true)
      [ -n "$f" ] && heaptrack_print -f "$f" --print-peaks 1 --print-allocators 0 \
        --print-temporary 0 --print-leaks 0 --peak-limit 15 >"$OUT/heap-$n.txt" 2>/dev/null || true
    fi
  done
done
echo "medians (KiB per watcher: from before the first watcher / from the settled GOP cache):"
python3 - "$ROWS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
for n in sorted({int(r[0]) for r in rows if r[5] != "-"}):
    e = [float(r[5]) for r in rows if int(r[0]) == n]
    s = [float(r[6]) for r in rows if int(r[0]) == n]
    print(f"N={n}: {statistics.median(e):.2f} KiB from before the first watcher, "
          f"{statistics.median(s):.2f} KiB from the settled GOP cache ({len(e)} runs)")
PY
