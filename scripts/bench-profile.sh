#!/usr/bin/env bash
# Profiles the relay under load: ringcast (release), one publisher, N RTMP watchers on
# loopback; `perf record -g` for 10 s, then `strace -c -f` for 10 s, then
# `perf record -e io_uring:io_uring_complete` for 4 s, on the relay only. The last counts the
# relay's completed operations by size: under 1 KB are lone audio frames (353 bytes with the
# loadgen's defaults), cross-core notifications (1) and player acks (16); 1-20 KB inter frames
# with their audio; 20 KB and over keyframes. What write coalescing saves shows as the first.
# Usage: scripts/bench-profile.sh [N]   (default 2000)   Env: WORKERS=0 OUT=bench-out/profile
#        STREAMS=1 (more: N watchers spread over STREAMS streams, each with its own publisher)
#        CARGO_TARGET_DIR (binaries from $CARGO_TARGET_DIR/release)
# Output: $OUT/perf.txt (top of `perf report`), $OUT/strace.txt, $OUT/sends.txt (also
#         printed), $OUT/watch.json.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
WORKERS=${WORKERS:-0}
OUT=${OUT:-bench-out/profile}
STREAMS=${STREAMS:-1}
BIN=${CARGO_TARGET_DIR:-target}/release
PORT=19404
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
"$BIN/ringcast" --config "$OUT/ringcast.toml" --workers "$WORKERS" >"$OUT/ringcast.log" 2>&1 &
RELAY=$!; PIDS+=("$RELAY")
sleep 1
"$BIN/ringcast-loadgen" publish --target "127.0.0.1:$PORT" --stream-count "$STREAMS" --duration 45 >"$OUT/publish.log" 2>&1 &
PIDS+=("$!")
sleep 1
"$BIN/ringcast-loadgen" watch --target "127.0.0.1:$PORT" --watchers "$N" --stream-count "$STREAMS" \
  --duration 40 --warmup 6 \
  --ramp-per-sec 1000 --out "$OUT/watch.json" >/dev/null 2>"$OUT/watch.log" &
WATCH=$!; PIDS+=("$WATCH")
sleep 8
perf record -g -p "$RELAY" -o "$OUT/perf.data" -- sleep 10 >/dev/null 2>&1
sleep 1
timeout -s INT 10 strace -c -f -p "$RELAY" -o "$OUT/strace.txt" >/dev/null 2>&1 || true
perf record -e io_uring:io_uring_complete -p "$RELAY" -o "$OUT/complete.data" -- sleep 4 >/dev/null 2>&1
wait "$WATCH" || true
perf report -i "$OUT/perf.data" --no-children --percent-limit 1 --stdio 2>/dev/null \
  | grep -v "^$" | head -120 >"$OUT/perf.txt" || true
perf report -i "$OUT/perf.data" --no-children --sort dso --stdio 2>/dev/null \
  | grep -v "^#" | grep -v "^$" | head -15 >"$OUT/perf-dso.txt" || true
perf script -i "$OUT/complete.data" 2>/dev/null | grep -o "result [0-9]*" \
  | awk '{r = $2; t++; if (r < 1000) s++; else if (r < 20000) v++; else k++}
         END {printf "completions in 4 s: %d; under 1 KB %d, 1-20 KB %d, 20 KB and over %d\n", t, s, v, k}' \
  | tee "$OUT/sends.txt"
echo "profile in $OUT" >&2
