#!/usr/bin/env bash
# Restream cost: one 6 Mbit/s stream watched by N RTMP watchers (default 2000), measured by
# scripts/bench-matrix.sh twice, without and with DESTS `[[push]]` destinations of that stream
# (default 50: DESTS-1 real RTMP receivers, a second ringcast taking each push as a publisher of
# its own stream, plus one black hole that accepts and never reads). Reports the relay's CPU per
# destination and the watchers' latency p99 with and without the pushes. Loopback only.
#
# Usage: scripts/bench-push.sh [N]
# Env:   DESTS=50 BITRATE=6000000 OUT=bench-out/push, plus anything bench-matrix.sh takes
#        (WORKERS, WARMUP, MEASURE, RAMP, LG_PROCS, ...)
# Output: $OUT/without/, $OUT/with/ (each a bench-matrix cell) and $OUT/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
DESTS=${DESTS:-50}
BITRATE=${BITRATE:-6000000}
OUT=${OUT:-bench-out/push}
SINK_PORT=19460 HOLE_PORT=19461
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN=${CARGO_TARGET_DIR:-target}/release

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p ringcast -p ringcast-loadgen >&2
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# The receiving ringcast: one worker, every push is a publisher of sink/d<i>.
cat >"$OUT/sink.toml" <<CONF
[server]
log = "warn"
workers = 1
[rtmp]
listen = ["127.0.0.1:$SINK_PORT"]
[ftl]
enabled = false
[fstream]
enabled = false
[http]
enabled = false
CONF
"$BIN/ringcast" --config "$OUT/sink.toml" >"$OUT/sink.log" 2>&1 &
PIDS+=("$!")
# The black hole: accepts and never reads.
python3 - "$HOLE_PORT" >"$OUT/hole.log" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    held.append(s.accept()[0])
PY
PIDS+=("$!")
sleep 1

pushes=""
for i in $(seq 1 $((DESTS - 1))); do
  pushes+=$'[[push]]\n'"id = \"d$i\""$'\nfrom = "live/bench"\n'"url = \"rtmp://127.0.0.1:$SINK_PORT/sink\""$'\n'"key = \"d$i\""$'\n'
done
pushes+=$'[[push]]\nid = "hole"\nfrom = "live/bench"\n'"url = \"rtmp://127.0.0.1:$HOLE_PORT/sink\""$'\nkey = "hole"\n'

run_cell() { # name extra_toml
  env SKIP_BUILD=1 SERVERS=ringcast SCENARIOS=rtmp OUT="$OUT/$1" EXTRA_TOML="$2" \
    PUBLISH_ARGS="--bitrate $BITRATE" scripts/bench-matrix.sh "$N" >/dev/null 2>"$OUT/$1.log" \
    || { echo "bench-push: the $1 cell failed (see $OUT/$1.log)" >&2; exit 1; }
}
echo "bench-push: $N watchers, no pushes" >&2
run_cell without ""
echo "bench-push: $N watchers, $DESTS pushes (one black hole)" >&2
run_cell with "$pushes"

python3 - "$OUT" "$N" "$DESTS" <<'PY' | tee "$OUT/summary.md"
import json, sys
out, n, dests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def cell(name):
    row = open(f"{out}/{name}/rows.tsv").read().split("\t")
    j = json.load(open(f"{out}/{name}/ringcast-{n}.json"))
    return float(row[2]), j
cpu0, j0 = cell("without")
cpu1, j1 = cell("with")
p0, p1 = j0["latency_ms"]["p99"], j1["latency_ms"]["p99"]
print(f"| {n} RTMP watchers, 6 Mbit/s | relay CPU (cores) | watchers' latency p50 / p99 (ms) | playing | stalls |")
print("|---|---|---|---|---|")
print(f"| no pushes | {cpu0:.3f} | {j0['latency_ms']['p50']:.1f} / {p0:.1f} | {j0['playing']} | {j0['stalls']} |")
print(f"| {dests} pushes (1 black hole) | {cpu1:.3f} | {j1['latency_ms']['p50']:.1f} / {p1:.1f} | {j1['playing']} | {j1['stalls']} |")
print()
print(f"Relay CPU per destination: {(cpu1 - cpu0) / dests * 1000:.1f} millicores; "
      f"watchers' p99 change: {(p1 - p0) / p0 * 100 if p0 else 0:+.1f} %")
PY
