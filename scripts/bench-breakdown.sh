#!/usr/bin/env bash
# Where one frame's time goes: each coded video frame followed from the publisher's read to
# the last watcher's completed send on each core, and how many operations each io_uring_enter
# carries. Builds ringcast with `--features frame-trace` (into target/frame-trace, so the
# shipped binary is untouched), then for each worker count and N runs one bench-matrix cell
# (RTMP watchers) with RINGCAST_FRAME_TRACE set, and `perf stat` on the relay over the
# measuring window for the io_uring tracepoints.
#
# Per frame and core, in ms from the publisher's read: `ring` (appended to this core's ring:
# on the publisher's core at once, on the others after the cross-core hop and wake), `first
# prep` / `last prep` (the first and the last watcher's send carrying it prepared), `first
# done` / `last done` (the first and the last of those sends completed). Medians and p99 over
# the frames of the measuring window.
#
# Usage: scripts/bench-breakdown.sh [N ...]        (default: 1000 2000)
# Env:   WORKER_COUNTS="1 2" OUT=bench-out/breakdown, plus bench-matrix.sh's (EXTRA_TOML, ...)
# Output: $OUT/summary.md; per cell $OUT/w<W>-n<N>/ (the matrix cell, trace/core-*.tsv,
#         perf-stat.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
NS=("$@"); [ ${#NS[@]} -eq 0 ] && NS=(1000 2000)
WORKER_COUNTS=${WORKER_COUNTS:-"1 2"}
OUT=${OUT:-bench-out/breakdown}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TRACE_TARGET=${TRACE_TARGET:-target/frame-trace}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p ringcast-loadgen >&2
  CARGO_TARGET_DIR=$TRACE_TARGET cargo build --release -p ringcast --features frame-trace >&2
fi
# bench-matrix takes both binaries from one directory.
mkdir -p "$TRACE_TARGET/release"
cp -f "${CARGO_TARGET_DIR:-target}/release/ringcast-loadgen" "$TRACE_TARGET/release/"

EVENTS=syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req,io_uring:io_uring_poll_arm,io_uring:io_uring_complete

summarise() { # cell dir, warm-up seconds -> one table row per core and one for all
  python3 - "$1" "$2" <<'PY'
import glob, sys
cell, skip = sys.argv[1], float(sys.argv[2])
rows = []
for path in glob.glob(f"{cell}/trace/core-*.tsv"):
    for line in open(path):
        f = line.split()
        if len(f) != 8:
            continue
        rows.append([int(f[0]), int(f[1])] + [int(x) for x in f[2:7]] + [int(f[7])])
if not rows:
    print("| (no rows) |"); sys.exit()
start = min(r[1] for r in rows)
rows = [r for r in rows if r[1] - start >= skip * 1e6 and r[7] > 0]
def pct(vals, p):
    vals = sorted(v for v in vals if v >= 0)
    if not vals:
        return float("nan")
    return vals[min(len(vals) - 1, int(p * len(vals)))] / 1000
cores = sorted({r[0] for r in rows})
for core in cores + ["all"]:
    sel = [r for r in rows if core == "all" or r[0] == core]
    cols = []
    for i in range(2, 7):
        cols.append(f"{pct([r[i] for r in sel], 0.5):.2f} / {pct([r[i] for r in sel], 0.99):.2f}")
    sends = sum(r[7] for r in sel) / len(sel)
    print(f"| {core} | {len(sel)} | {sends:.0f} | " + " | ".join(cols) + " |")
PY
}

{
  echo "| workers | N | core | frames | sends per frame | ring p50 / p99 (ms) | first prep | last prep | first done | last done |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$OUT/summary.md"
{
  echo
  echo "| workers | N | io_uring_enter calls/s | SQEs submitted per enter | sends that armed a poll (per s) | completions/s |"
  echo "|---|---|---|---|---|---|"
} >"$OUT/uring.md"

for w in $WORKER_COUNTS; do
  for n in "${NS[@]}"; do
    cell="$OUT/w$w-n$n"
    rm -rf "$cell"; mkdir -p "$cell/trace"
    # The cell's timeline (bench-matrix.sh): server, 1 s, publisher, SETTLE (2 s), watchers;
    # their warm-up, then MEASURE seconds. perf watches the middle of the measuring window.
    warmup=$(( 6 > n / 1000 + 4 ? 6 : n / 1000 + 4 ))
    RINGCAST_FRAME_TRACE="$cell/trace" CARGO_TARGET_DIR=$TRACE_TARGET SKIP_BUILD=1 \
      SERVERS=ringcast SCENARIOS=rtmp WORKERS="$w" OUT="$cell" \
      scripts/bench-matrix.sh "$n" >/dev/null 2>"$cell/matrix.log" &
    matrix=$!
    sleep $(( 1 + 2 + warmup + 2 ))
    relay=$(pgrep -f "$cell/ringcast.toml" | head -1 || true)
    if [ -n "$relay" ]; then
      perf stat -x, -e "$EVENTS" -p "$relay" -- sleep 8 2>"$cell/perf-stat.txt" >/dev/null || true
    fi
    wait "$matrix" || echo "cell w$w n$n failed (see $cell/matrix.log)" >&2
    # Frames from the watchers' measuring window only (the trace's clock starts at the
    # publisher's first read, 2 s before the watchers).
    summarise "$cell" $(( 2 + warmup )) | sed "s/^| /| $w | $n | /" >>"$OUT/summary.md"
    awk -F, -v w="$w" -v n="$n" '
      $3 ~ /io_uring_enter/ {enter=$1} $3 ~ /submit_req/ {sub_=$1} $3 ~ /poll_arm/ {arm=$1}
      $3 ~ /io_uring_complete/ {done=$1}
      END { if (enter > 0) printf "| %s | %s | %.0f | %.1f | %.0f | %.0f |\n", w, n, enter/8, sub_/enter, arm/8, done/8 }
    ' "$cell/perf-stat.txt" >>"$OUT/uring.md"
    tail -1 "$cell/matrix.log" >&2 || true
  done
done
cat "$OUT/uring.md" >>"$OUT/summary.md"
cat "$OUT/summary.md"
