#!/usr/bin/env bash
# Profiles the relay under load: ringcast (release), one publisher, N RTMP watchers on
# loopback; `perf record -g` for 10 s, then `strace -c -f` for 10 s, then
# `perf record -e io_uring:io_uring_complete` for 4 s, on the relay only. The last counts the
# relay's completed operations by size: under 1 KB are lone audio frames (353 bytes with the
# loadgen's defaults), cross-core notifications (1) and player acks (16); 1-20 KB inter frames
# with their audio; 20 KB and over keyframes. What write coalescing saves shows as the first.
# Last, `perf sched record -a` for 3 s shows how the two sides share the machine: per 2 ms, the
# cores the relay's workers ran, the loadgen's (watchers and publisher) and the idle ones, and
# the longest stretches with both cores busy (keyframe bursts).
# Usage: scripts/bench-profile.sh [N]   (default 2000)   Env: WORKERS=0 OUT=bench-out/profile
#        STREAMS=1 (more: N watchers spread over STREAMS streams, each with its own publisher)
#        LG_PROCS=1 (watcher processes; the matrix uses 2)
#        CARGO_TARGET_DIR (binaries from $CARGO_TARGET_DIR/release)
# Output: $OUT/perf.txt (top of `perf report`), $OUT/strace.txt, $OUT/sends.txt (also
#         printed), $OUT/sched-busy.tsv and $OUT/sched-summary.txt (also printed),
#         $OUT/watch.json.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
WORKERS=${WORKERS:-0}
OUT=${OUT:-bench-out/profile}
STREAMS=${STREAMS:-1}
LG_PROCS=${LG_PROCS:-1}
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
  --ramp-per-sec 1000 --processes "$LG_PROCS" --out "$OUT/watch.json" >/dev/null 2>"$OUT/watch.log" &
WATCH=$!; PIDS+=("$WATCH")
sleep 8
perf record -g -p "$RELAY" -o "$OUT/perf.data" -- sleep 10 >/dev/null 2>&1
sleep 1
timeout -s INT 10 strace -c -f -p "$RELAY" -o "$OUT/strace.txt" >/dev/null 2>&1 || true
perf record -e io_uring:io_uring_complete -p "$RELAY" -o "$OUT/complete.data" -- sleep 4 >/dev/null 2>&1
perf sched record -a -o "$OUT/sched.data" -- sleep 3 >/dev/null 2>&1
wait "$WATCH" || true
perf report -i "$OUT/perf.data" --no-children --percent-limit 1 --stdio 2>/dev/null \
  | grep -v "^$" | head -120 >"$OUT/perf.txt" || true
perf report -i "$OUT/perf.data" --no-children --sort dso --stdio 2>/dev/null \
  | grep -v "^#" | grep -v "^$" | head -15 >"$OUT/perf-dso.txt" || true
perf script -i "$OUT/complete.data" 2>/dev/null | grep -o "result [0-9]*" \
  | awk '{r = $2; t++; if (r < 1000) s++; else if (r < 20000) v++; else k++}
         END {printf "completions in 4 s: %d; under 1 KB %d, 1-20 KB %d, 20 KB and over %d\n", t, s, v, k}' \
  | tee "$OUT/sends.txt"
# Each timehist row is one run of a thread ending at $1 after $NF ms: spread it over 2 ms buckets.
perf sched timehist -i "$OUT/sched.data" 2>/dev/null | awk -v cores="$(nproc)" -v B=0.002 '
  $2 ~ /^\[/ && $NF ~ /^[0-9.]+$/ {
    run = $NF / 1000; e = $1; s = e - run
    k = $3 ~ /^ringcast-w[0-9]/ ? "relay" : ($3 ~ /^ringcast-loadge/ ? "loadgen" : ($3 ~ /idle/ ? "" : "other"))
    if (k == "") next
    if (t0 == "" || s < t0) t0 = s
    for (i = int((s - t0) / B); s < e; i++) {
      be = t0 + (i + 1) * B; d = (e < be ? e : be) - s
      busy[i, k] += d; if (i > last) last = i; s = be
    }
  }
  END {
    print "ms\trelay\tloadgen\tidle"
    for (i = 0; i <= last; i++) {
      r = busy[i, "relay"] / B; l = busy[i, "loadgen"] / B; o = busy[i, "other"] / B
      idle = cores - r - l - o; if (idle < 0) idle = 0
      printf "%d\t%.2f\t%.2f\t%.2f\n", i * 2, r, l, idle
    }
  }' >"$OUT/sched-busy.tsv" || true
# Bursts: stretches of buckets with under half a core idle, longest first.
awk -F'\t' 'NR > 1 {
    if ($4 < 0.5) { if (!n) start = $1; n++; r += $2; l += $3 }
    else if (n) { printf "%d ms from %d ms: relay %.2f cores, loadgen %.2f\n", n * 2, start, r / n, l / n; n = r = l = 0 }
  }' "$OUT/sched-busy.tsv" | sort -rn | head -8 >"$OUT/sched.txt" || true
awk -F'\t' 'NR > 1 { r += $2; l += $3; i += $4; n++ }
  END { if (n) printf "over %d ms: relay %.2f cores, loadgen %.2f, idle %.2f; longest bursts:\n", n * 2, r / n, l / n, i / n }' \
  "$OUT/sched-busy.tsv" | cat - "$OUT/sched.txt" | tee "$OUT/sched-summary.txt"
echo "profile in $OUT" >&2
