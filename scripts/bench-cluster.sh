#!/usr/bin/env bash
# The scale-out benchmark (README "Scale-out"): one origin and one edge (release builds, each on
# its own loopback address), Redis as the directory, one synthetic publisher on the origin.
#
# 1. Origin CPU per edge pull: the origin's CPU (utime+stime from /proc/PID/stat) over MEASURE
#    seconds with the publisher alone, then with the edge pulling (one watcher on the edge, so
#    one pull); the difference is what one edge pull costs the origin.
# 2. The hop's added latency: N watchers on the origin and N on the edge at the same time (one
#    run, same publisher, same machine); the loadgen's latency probe (publisher clock to watcher)
#    gives p50/p99 on each side; the edge's minus the origin's is the hop.
#
# Usage: scripts/bench-cluster.sh [N]            (default N=1000 per side)
# Env:   WORKERS=1 BITRATE=500000 WARMUP=8 MEASURE=15 OUT=bench-cluster SKIP_BUILD=0
set -euo pipefail

cd "$(dirname "$0")/.."
N=${1:-1000}
WORKERS=${WORKERS:-1}
BITRATE=${BITRATE:-500000}
WARMUP=${WARMUP:-8}
MEASURE=${MEASURE:-15}
OUT=${OUT:-bench-cluster}
BIN=${CARGO_TARGET_DIR:-target}/release
ORIGIN_IP=127.0.0.71 EDGE_IP=127.0.0.72 REDIS=127.0.0.70:16390
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
HZ=$(getconf CLK_TCK)

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p ringcast -p ringcast-loadgen >&2
fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

redis-server --bind "${REDIS%:*}" --port "${REDIS#*:}" --save '' --appendonly no \
  >"$OUT/redis.log" 2>&1 &
PIDS+=($!)

node() { # ip name
  cat >"$OUT/$2.toml" <<TOML
[fanout]
publisher_grace_ms = 15000
[cluster]
mode = "redis"
node_id = "$2"
listen = "$1:1940"
redis = "redis://$REDIS"
TOML
  "$BIN/ringcast" --config "$OUT/$2.toml" --rtmp "$1:1935" --http "$1:8080" \
    --fstream "$1:61920" --workers "$WORKERS" >"$OUT/$2.log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}
node $ORIGIN_IP origin; ORIGIN_PID=$LAST_PID
node $EDGE_IP edge
sleep 2

"$BIN/ringcast-loadgen" publish --target "$ORIGIN_IP:1935" --stream live/bench \
  --bitrate "$BITRATE" >"$OUT/publisher.log" 2>&1 &
PIDS+=($!)
sleep 4

window_cpu() { # pid: CPU seconds over MEASURE seconds
  local a b
  a=$(cpu_ticks "$1"); sleep "$MEASURE"; b=$(cpu_ticks "$1")
  echo "scale=3; ($b - $a) / $HZ" | bc
}
alone=$(window_cpu "$ORIGIN_PID")
"$BIN/ringcast-loadgen" watch --target "$EDGE_IP:1935" --stream live/bench --watchers 1 \
  --duration $((MEASURE + 6)) --warmup 1 --quiet --source-ips 127.0.3.1-127.0.3.1 \
  --out "$OUT/one-edge-watcher.json" >/dev/null 2>&1 &
sleep 3
pulled=$(window_cpu "$ORIGIN_PID")
wait $! || true

secs=$((WARMUP + MEASURE))
"$BIN/ringcast-loadgen" watch --target "$ORIGIN_IP:1935" --stream live/bench --watchers "$N" \
  --duration "$secs" --warmup "$WARMUP" --quiet --source-ips 127.0.4.1-127.0.4.50 \
  --out "$OUT/origin-$N.json" >/dev/null 2>&1 &
O=$!
"$BIN/ringcast-loadgen" watch --target "$EDGE_IP:1935" --stream live/bench --watchers "$N" \
  --duration "$secs" --warmup "$WARMUP" --quiet --source-ips 127.0.5.1-127.0.5.50 \
  --out "$OUT/edge-$N.json" >/dev/null 2>&1 &
E=$!
wait $O $E

python3 - "$OUT" "$N" "$alone" "$pulled" "$MEASURE" <<'PY'
import json, sys
out, n, alone, pulled, measure = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
o = json.load(open(f"{out}/origin-{n}.json")); e = json.load(open(f"{out}/edge-{n}.json"))
lines = [
  f"origin CPU, publisher alone: {100*alone/measure:.2f} % of a core; with one edge pull: {100*pulled/measure:.2f} % "
  f"(one edge pull costs the origin {100*(pulled-alone)/measure:.2f} % of a core)",
  f"{n} watchers on the origin: p50 {o['latency_ms']['p50']:.2f} ms, p99 {o['latency_ms']['p99']:.2f} ms, stalls {o['stalls']}, playing {o['playing']}",
  f"{n} watchers on the edge:   p50 {e['latency_ms']['p50']:.2f} ms, p99 {e['latency_ms']['p99']:.2f} ms, stalls {e['stalls']}, playing {e['playing']}",
  f"added by the hop: p50 {e['latency_ms']['p50']-o['latency_ms']['p50']:+.2f} ms, p99 {e['latency_ms']['p99']-o['latency_ms']['p99']:+.2f} ms",
]
open(f"{out}/summary.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
