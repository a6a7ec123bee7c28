#!/usr/bin/env bash
# The soak: one ringcast under an hour (by default) of realistic abuse, on loopback only.
#
# - STEADY watchers (default 900) play live/soak over RTMP for the whole run: the healthy ones,
#   whose stalls must stay at zero;
# - CHURN watchers (default 100) join and leave every second: each second a loadgen process
#   opens CHURN/10 watchers for 10 s, so CHURN are connected at any time and CHURN/10 join and
#   CHURN/10 leave every second;
# - the publisher reconnects every PUBLISH_SECS (default 300): the next publisher connects and
#   takes the stream over (fanout.takeover) 2 s before the current one leaves, so watchers stay
#   attached and a reconnect is not a gap;
# - once a minute a slow watcher: an HTTP-FLV client that never reads (cut by the slow-watcher
#   policy) and leaves after 2 minutes;
# - once a minute a bad-input case, in turn: random bytes on the RTMP port, an fstream handshake
#   with 300 unknown keys, a malformed HTTP request, an fstream login with a wrong password.
#
# Every SAMPLE seconds (10) it records the relay's RSS and open fds, the kernel's TCP memory
# (/proc/net/sockstat, pages) and the relay's socket send queues, the steady watchers' p99 latency
# and how many of them are stalled (their progress line), and the relay's slow-watcher
# disconnects and dropped log lines (/metrics). Results in $OUT: samples.tsv, table.md (with a
# verdict: RSS and kernel memory flat after the first minutes, zero stalls), plot.svg, the steady
# watchers' summary.json and the relay's log.
#
# Usage: scripts/soak.sh [DURATION_SECONDS]     (default 3600)
# Env:   STEADY=900 CHURN=100 PUBLISH_SECS=300 SAMPLE=10 WORKERS=0 OUT=soak-out
#        FLAT_AFTER=120 (seconds of warm-up excluded from the flatness check)
#        SKIP_BUILD=1 (use the binaries already in $CARGO_TARGET_DIR/release)
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${1:-${DURATION:-3600}}
STEADY=${STEADY:-900}
CHURN=${CHURN:-100}
PUBLISH_SECS=${PUBLISH_SECS:-300}
# (a publisher restart without overlap leaves a gap as long as the encoder's reconnect, which the
# watchers see as a stall: that is the encoder's gap, not the relay's)
SAMPLE=${SAMPLE:-10}
WORKERS=${WORKERS:-0}
FLAT_AFTER=${FLAT_AFTER:-120}
OUT=${OUT:-soak-out}
BIN=${CARGO_TARGET_DIR:-target}/release
PORT_RTMP=19501 PORT_HTTP=19502 PORT_FS=19503
STREAM=live/soak
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -p ringcast -p ringcast-loadgen >&2
fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

cat >"$OUT/ringcast.toml" <<CONF
[server]
log = "info"
[rtmp]
listen = ["127.0.0.1:$PORT_RTMP"]
[http]
listen = ["127.0.0.1:$PORT_HTTP"]
[fstream]
listen = ["127.0.0.1:$PORT_FS"]
users_dir = "$OUT/users"
[[fstream.users]]
name = "soak"
password = "soak"
[fanout]
takeover = true
[ftl]
enabled = false
CONF
"$BIN/ringcast" --config "$OUT/ringcast.toml" --workers "$WORKERS" 2>"$OUT/ringcast.log" &
RC=$!
PIDS+=("$RC")
sleep 1
kill -0 "$RC"

# The publisher, reconnecting every PUBLISH_SECS: the next one connects 2 s before the current
# one leaves and takes the stream over (fanout.takeover = true), as an encoder that restarts
# its connection does; the relay rebases its timestamps and the watchers stay attached.
(
  while true; do
    "$BIN/ringcast-loadgen" publish --target "127.0.0.1:$PORT_RTMP" --stream "$STREAM" \
      --duration $(( PUBLISH_SECS + 2 )) >>"$OUT/publisher.log" 2>&1 &
    sleep "$PUBLISH_SECS"
  done
) &
PIDS+=("$!")
sleep 3

# The steady watchers: one run for the whole soak, progress lines once a second.
"$BIN/ringcast-loadgen" watch --target "127.0.0.1:$PORT_RTMP" --stream "$STREAM" \
  --watchers "$STEADY" --ramp-per-sec 500 --duration "$DURATION" --warmup 10 \
  --processes 2 --out "$OUT/summary.json" >"$OUT/steady.json" 2>"$OUT/steady.log" &
STEADY_PID=$!
PIDS+=("$STEADY_PID")

# Churn: every second CHURN/10 watchers join for 10 s.
(
  per=$(( CHURN / 10 > 0 ? CHURN / 10 : 1 ))
  while true; do
    "$BIN/ringcast-loadgen" watch --target "127.0.0.1:$PORT_RTMP" --stream "$STREAM" \
      --watchers "$per" --ramp-per-sec 0 --duration 10 --warmup 1 --quiet \
      --source-ips 127.0.0.51-127.0.0.60 >/dev/null 2>&1 &
    sleep 1
  done
) &
PIDS+=("$!")

# An fstream handshake: 32-bit big-endian length, a zero byte, the payload.
fstream_frame() {
  python3 -c 'import struct, sys; p = sys.argv[1].encode(); sys.stdout.buffer.write(struct.pack(">I", len(p)) + b"\0" + p)' "$1"
}

# A slow watcher and a bad-input case every minute.
(
  i=0
  while true; do
    sleep 60
    (
      exec 3<>"/dev/tcp/127.0.0.1/$PORT_HTTP"
      printf 'GET /%s.flv HTTP/1.1\r\nHost: soak\r\n\r\n' "$STREAM" >&3
      sleep 120
    ) 2>/dev/null &
    case $(( i % 4 )) in
      0) head -c 65536 /dev/urandom >"/dev/tcp/127.0.0.1/$PORT_RTMP" 2>/dev/null || true ;;
      1) keys=$(for k in $(seq 300); do printf ',junk%d=1' "$k"; done)
         fstream_frame "watch,user=soak$keys" >"/dev/tcp/127.0.0.1/$PORT_FS" 2>/dev/null || true ;;
      2) printf 'GET /\x01\x02 HTTP/9.9\r\n\r\n' >"/dev/tcp/127.0.0.1/$PORT_HTTP" 2>/dev/null || true ;;
      3) fstream_frame "broadcast,user=soak,user-password=wrong" \
           >"/dev/tcp/127.0.0.1/$PORT_FS" 2>/dev/null || true ;;
    esac
    i=$(( i + 1 ))
  done
) &
PIDS+=("$!")

metric() { # name -> value summed over its label sets (0 when absent)
  curl -s --max-time 5 "http://127.0.0.1:$PORT_HTTP/metrics" |
    awk -v m="$1" '$1 ~ "^"m"({|$)" { s += $2 } END { print s + 0 }'
}

SAMPLES="$OUT/samples.tsv"
printf 't_s\trss_kib\tfds\ttcp_mem_kib\trelay_sendq_kib\tsteady_playing\tsteady_stalled\tp99_ms\tslow_cuts\tlog_dropped\n' >"$SAMPLES"
start=$(date +%s)
page_kib=$(( $(getconf PAGESIZE) / 1024 ))
while kill -0 "$STEADY_PID" 2>/dev/null; do
  sleep "$SAMPLE"
  kill -0 "$RC" || { echo "ringcast died" >&2; exit 1; }
  t=$(( $(date +%s) - start ))
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$RC/status")
  fds=$(find "/proc/$RC/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  tcp_mem=$(awk -v p="$page_kib" '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i + 1) * p }' /proc/net/sockstat)
  sendq=$(ss -tnH "( sport = :$PORT_RTMP or sport = :$PORT_HTTP or sport = :$PORT_FS )" |
    awk '{ s += $3 } END { printf "%d", s / 1024 }')
  # The newest progress line of each loadgen process ("[K] t=..."): playing and stalled summed,
  # p99 the worst of them (each process's p99 is over everything it measured so far).
  read -r playing stalled p99 < <(grep -aE '^\[[0-9]+\] t=[ 0-9.]+s open=[0-9]+ playing=[0-9]+ fail=[0-9]+ drop=[0-9]+ stalled=[0-9]+ [0-9.]+ Gbit/s p99=[-0-9.]+(ms)?( \(warm-up\))?$' "$OUT/steady.log" | tail -n 20 | awk '
    { split($1, a, "]"); last[a[1]] = $0 }
    END { for (k in last) { l = last[k]
            if (match(l, /playing=[0-9]+/)) p += substr(l, RSTART + 8, RLENGTH - 8)
            if (match(l, /stalled=[0-9]+/)) s += substr(l, RSTART + 8, RLENGTH - 8)
            if (match(l, /p99=[0-9.]+ms/)) { v = substr(l, RSTART + 4, RLENGTH - 6) + 0; if (v > m) m = v } }
          printf "%d %d %s\n", p, s, (m > 0 ? m : "-") }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$rss" "$fds" "$tcp_mem" "$sendq" \
    "$playing" "$stalled" "$p99" "$(metric ringcast_slow_watcher_disconnects_total)" \
    "$(metric ringcast_log_lines_dropped_total)" | tee -a "$SAMPLES"
done
wait "$STEADY_PID" || true

python3 - "$OUT" "$FLAT_AFTER" <<'PY'
import json, os, sys
out, flat_after = sys.argv[1], float(sys.argv[2])
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "samples.tsv"))]
head, rows = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
col = {h: i for i, h in enumerate(head)}
num = lambda r, h: float(r[col[h]]) if r[col[h]] not in ("", "-") else None
try:
    summary = json.load(open(os.path.join(out, "summary.json")))
except Exception:
    summary = {}
late = [r for r in rows if float(r[0]) >= flat_after] or rows
def spread(h):
    vals = [num(r, h) for r in late if num(r, h) is not None]
    return (min(vals), max(vals)) if vals else (0, 0)
md = ["| t (s) | RSS (MiB) | fds | kernel TCP mem (MiB) | relay send-q (KiB) | steady playing | stalled now | p99 (ms) | slow cuts | log lines dropped |",
      "|---|---|---|---|---|---|---|---|---|---|"]
step = max(1, len(rows) // 40)
for r in rows[::step] + ([rows[-1]] if rows and (len(rows) - 1) % step else []):
    md.append("| " + " | ".join([r[0], f"{num(r,'rss_kib')/1024:.1f}", r[col['fds']],
        f"{num(r,'tcp_mem_kib')/1024:.1f}", r[col['relay_sendq_kib']], r[col['steady_playing']],
        r[col['steady_stalled']], r[col['p99_ms']], r[col['slow_cuts']], r[col['log_dropped']]]) + " |")
(rmin, rmax), (kmin, kmax) = spread("rss_kib"), spread("tcp_mem_kib")
stalls = summary.get("stalls", "?")
md += ["", f"After {flat_after:.0f} s: RSS {rmin/1024:.1f}–{rmax/1024:.1f} MiB "
       f"(spread {(rmax-rmin)/1024:.1f} MiB), kernel TCP memory {kmin/1024:.1f}–{kmax/1024:.1f} MiB. "
       f"Steady watchers' summary: stalls {stalls}, "
       + ", ".join(f"{k} {summary[k]}" for k in ("playing", "latency_p50_ms", "latency_p99_ms",
                                                  "disconnects", "gaps") if k in summary) + "."]
open(os.path.join(out, "table.md"), "w").write("\n".join(md) + "\n")
# plot.svg: one panel per series, time on x.
series = [("rss_kib", "RSS (KiB)"), ("tcp_mem_kib", "kernel TCP mem (KiB)"), ("fds", "fds"),
          ("p99_ms", "steady p99 (ms)"), ("steady_stalled", "steady stalled")]
W, H, P = 900, 150, 40
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H*len(series)}" font-family="sans-serif" font-size="11">']
tmax = max((float(r[0]) for r in rows), default=1) or 1
for k, (h, label) in enumerate(series):
    pts = [(float(r[0]), num(r, h)) for r in rows if num(r, h) is not None]
    y0 = k * H
    vmax = max((v for _, v in pts), default=1) or 1
    svg.append(f'<text x="{P}" y="{y0+14}">{label} (max {vmax:.0f})</text>')
    svg.append(f'<rect x="{P}" y="{y0+20}" width="{W-2*P}" height="{H-40}" fill="none" stroke="#ccc"/>')
    poly = " ".join(f"{P+(W-2*P)*t/tmax:.1f},{y0+H-20-(H-40)*v/vmax:.1f}" for t, v in pts)
    svg.append(f'<polyline fill="none" stroke="#1f77b4" points="{poly}"/>')
svg.append("</svg>")
open(os.path.join(out, "plot.svg"), "w").write("\n".join(svg))
print("\n".join(md[-1:]))
PY
echo "wrote $OUT/table.md, $OUT/plot.svg, $OUT/samples.tsv" >&2
