#!/usr/bin/env bash
# Relay settings compared at one load: each setting is one ringcast cell of
# scripts/bench-matrix.sh (RTMP watchers of one stream, or with SCENARIO=many N streams of
# MANY_WATCHERS watchers each), run in interleaved repetitions (A B C … A B C …) so
# drift on a shared machine hits every setting alike; the summary gives each metric's median
# over the repetitions, and the spread (min–max) of CPU per Gbit/s.
#
# Usage: scripts/bench-knobs.sh [N]     (default 2000; with SCENARIO=many, the number of streams)
# Env:   SCENARIO=rtmp (or many) REPS=3 KNOBS="default coalesce-off no-defer-taskrun coop-taskrun sqpoll" OUT=bench-out/knobs
#        (also coalesce-5ms, coalesce-20ms, coalesce-40ms, sq-1024, tasks-per-poll-16, tasks-per-poll-256,
#        unpinned; "default" is the server's defaults)
#        plus anything bench-matrix.sh takes (WORKERS, RAMP, LG_PROCS, ...)
# Output: $OUT/<knob>/<rep>/ (each cell's files) and $OUT/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
SCENARIO=${SCENARIO:-rtmp}
case $SCENARIO in
  rtmp) SERIES=ringcast LOAD="$N RTMP watchers" ;;
  many) SERIES=ringcast-many LOAD="$N streams × ${MANY_WATCHERS:-25} watchers" ;;
  *) echo "SCENARIO must be rtmp or many" >&2; exit 2 ;;
esac
REPS=${REPS:-3}
KNOBS=${KNOBS:-"default coalesce-off no-defer-taskrun coop-taskrun sqpoll"}
OUT=${OUT:-bench-out/knobs}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p ringcast -p ringcast-loadgen >&2
fi

cell() { # knob rep
  local out="$OUT/$1/$2"
  local -a env=(SKIP_BUILD=1 SERVERS=ringcast SCENARIOS="$SCENARIO" OUT="$out")
  case $1 in
    default) ;;
    coalesce-off) env+=(COALESCE_US=0) ;;
    coalesce-5ms) env+=(COALESCE_US=5000) ;;
    coalesce-20ms) env+=(COALESCE_US=20000) ;;
    coalesce-40ms) env+=(COALESCE_US=40000) ;;
    no-defer-taskrun) env+=("EXTRA_TOML=$(printf '[io_uring]\ndefer_taskrun = false')") ;;
    coop-taskrun) env+=("EXTRA_TOML=$(printf '[io_uring]\ndefer_taskrun = false\ncoop_taskrun = true')") ;;
    sqpoll) env+=("EXTRA_TOML=$(printf '[io_uring]\ndefer_taskrun = false\nsqpoll_idle_ms = 10')") ;;
    tasks-per-poll-16) env+=("EXTRA_TOML=$(printf '[io_uring]\ntasks_per_poll = 16')") ;;
    tasks-per-poll-256) env+=("EXTRA_TOML=$(printf '[io_uring]\ntasks_per_poll = 256')") ;;
    sq-1024) env+=("EXTRA_TOML=$(printf '[io_uring]\nsq_entries = 1024')") ;;
    unpinned) env+=(PIN_CORES=false) ;;
    *) echo "unknown knob $1" >&2; exit 2 ;;
  esac
  env "${env[@]}" scripts/bench-matrix.sh "$N" >/dev/null 2>"$out.log" || echo "$1 rep $2 failed" >&2
}

for rep in $(seq 1 "$REPS"); do
  for knob in $KNOBS; do
    echo "bench-knobs: $knob, repetition $rep of $REPS" >&2
    mkdir -p "$OUT/$knob"
    cell "$knob" "$rep"
  done
done

python3 - "$OUT" "$N" "$SERIES" "$LOAD" $KNOBS <<'PY' | tee "$OUT/summary.md"
import json, os, statistics, sys
out, n, series, load, knobs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
print(f"| setting ({load}) | runs | relay CPU per Gbit/s, median (min–max) | latency p50 / p99 / p999 (ms) | TTFF p99 (ms) | stalls | lost / skipped |")
print("|---|---|---|---|---|---|---|")
for knob in knobs:
    rows = []
    root = os.path.join(out, knob)
    for rep in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        d = os.path.join(root, rep)
        try:
            cpu = float(open(os.path.join(d, "rows.tsv")).read().split("\t")[2])
            j = json.load(open(os.path.join(d, f"{series}-{n}.json")))
        except (OSError, ValueError, IndexError):
            continue
        g = j["delivered_gbps"]
        rows.append((cpu / g if g else float("nan"), j["latency_ms"], j["ttff_ms"]["p99"],
                     j["stalls"], j["lost_frames"], j["skipped_frames"]))
    if not rows:
        print(f"| {knob} | 0 | | | | | |")
        continue
    med = lambda xs: statistics.median(xs)
    per = [r[0] for r in rows]
    lat = lambda k: med([r[1][k] for r in rows])
    print(f"| {knob} | {len(rows)} | {med(per):.3f} ({min(per):.3f}–{max(per):.3f}) | "
          f"{lat('p50'):.1f} / {lat('p99'):.1f} / {lat('p999'):.1f} | {med([r[2] for r in rows]):.1f} | "
          f"{sum(r[3] for r in rows)} | {sum(r[4] for r in rows)} / {sum(r[5] for r in rows)} |")
PY
