#!/usr/bin/env bash
# What the relay's io_uring operations carry: one publisher (or STREAMS publishers), N RTMP
# watchers on loopback, and `perf record -e io_uring:io_uring_complete` on the relay for 4 s
# after the warm-up. Prints the completions by result size: under 1 KB are lone audio frames
# (353 bytes with the loadgen's defaults), cross-core notifications (1) and player acks (16);
# 1–20 KB are inter frames with their audio; 20 KB and over are keyframes. What write
# coalescing saves shows up as the under-1 KB count.
# Usage: scripts/bench-sends.sh [N]   (default 2000)   Env: STREAMS=1 OUT=bench-out/sends
#        CARGO_TARGET_DIR (the relay and loadgen are taken from $CARGO_TARGET_DIR/release)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
STREAMS=${STREAMS:-1}
OUT=${OUT:-bench-out/sends}
BIN=${CARGO_TARGET_DIR:-target}/release
PORT=19408
mkdir -p "$OUT"
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
CONF
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
"$BIN/ringcast" --config "$OUT/ringcast.toml" >"$OUT/ringcast.log" 2>&1 &
RELAY=$!; PIDS+=("$RELAY")
sleep 1
"$BIN/ringcast-loadgen" publish --target "127.0.0.1:$PORT" --stream-count "$STREAMS" --duration 30 \
  >"$OUT/publish.log" 2>&1 &
PIDS+=("$!")
sleep 1
"$BIN/ringcast-loadgen" watch --target "127.0.0.1:$PORT" --watchers "$N" --stream-count "$STREAMS" \
  --processes 2 --duration 25 --warmup 6 --ramp-per-sec 1000 --out "$OUT/watch.json" \
  >/dev/null 2>"$OUT/watch.log" &
WATCH=$!; PIDS+=("$WATCH")
sleep 10
perf record -e io_uring:io_uring_complete -p "$RELAY" -o "$OUT/complete.data" -- sleep 4 >/dev/null 2>&1
wait "$WATCH" || true
perf script -i "$OUT/complete.data" 2>/dev/null | grep -o "result [0-9]*" \
  | awk '{r = $2; t++; if (r < 1000) s++; else if (r < 20000) v++; else k++}
         END {printf "completions in 4 s: %d; under 1 KB %d, 1-20 KB %d, 20 KB and over %d\n", t, s, v, k}'
jq -r '"latency p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, stalls \(.stalls)"' "$OUT/watch.json"
