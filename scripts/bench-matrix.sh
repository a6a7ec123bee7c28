#!/usr/bin/env bash
# The benchmark matrix: ringcast, the kernel-ceiling baselines (one writer thread, and one per
# core with audio coalesced) and (when installed) nginx-rtmp, each loaded by one publisher and N
# watchers from ringcast-loadgen, on loopback only.
#
# Scenarios: `rtmp` (every server, RTMP watchers), `ftl` (ringcast only: one FTL stream of H.264
# + Opus from the loadgen's FTL publisher to N RTMP watchers, series `ringcast-ftl-aac` where the
# watchers get the AAC rendition and `ringcast-ftl-opus` where they list Opus in fourCcList and
# get the Opus as published: the difference is the rendition's cost) and `fstream` (ringcast only, series
# `ringcast-fstream`: an fstream broadcast of the same synthetic media to fstream/bench/main,
# watched by N fstream watchers reading FLV; nginx-rtmp has no fstream and the kernel ceiling is
# protocol-agnostic, so it runs once) and `rtmps` (ringcast only, series `ringcast-rtmps`: the
# same RTMP publish, watched over RTMPS with a throwaway self-signed certificate, verification
# skipped on loopback; run it with `rtmp` for RTMPS next to plain RTMP in one run) and `many`
# (series `ringcast-many` and `nginx-many`: N streams, each published by its own connection and
# watched by MANY_WATCHERS RTMP watchers, so N is the number of streams and N × MANY_WATCHERS
# the number of watchers; the platform's shape, where per-stream and per-frame costs count).
# For every series and N: start the server, publish (not
# for the kernel ceiling, which makes its own media), sample RSS with 0 watchers, start N
# watchers, and after the warm-up sample the server's CPU (utime+stime from /proc/PID/stat) over
# a fixed window and its RSS. Results in $OUT: `<series>-<n>.json` (the watchers' summary),
# rows.tsv (series, n, relay CPU, RSS before, RSS after, loadgen CPU), table.md and plot.svg.
#
# Every cell's warm-up lasts at least until the ramp is over plus 4 s (N / RAMP + 4), and the
# measuring window is MEASURE seconds after it; RSS "before" is sampled SETTLE seconds after
# the publisher starts (2 s by default: before the GOP cache holds a full GOP, so the cache's
# fill counts against the watchers; the conservative figure, and how independent tools take it).
# Watchers read once per readiness with a 16 KiB buffer (the loadgen's default `--read-mode
# once`), like players and other load tools; READ_MODE=drain reads each socket empty instead.
#
# Usage: scripts/bench-matrix.sh [N ...]          (default: 100 1000 2000 4000 6000 8000)
# Env:   WORKERS=0 (ringcast workers, 0 = one per core) COALESCE_US (default: the server's) WARMUP=6 MEASURE=12
#        SETTLE=2 RAMP=1000 OUT=bench-out LG_PROCS=2 MANY_WATCHERS=25 READ_MODE=once SERVER_NICE
#        EXTRA_TOML (appended to ringcast's config, e.g. $'[io_uring]\ndefer_taskrun = false')
#        PIN_CORES (ringcast's server.pin_cores: true, the default, or false)
#        SERVERS="ringcast ceiling ceiling-cores nginx" (ceiling-cores: the kernel ceiling in
#        ringcast's shape, one writer thread per core and audio riding with the next video
#        frame, instead of one thread writing every message alone) SCENARIOS="rtmp fstream rtmps" (add ftl for the AAC rendition,
#        many for many streams: e.g. SCENARIOS=many scripts/bench-matrix.sh 10 40 100; every N
#        is used by every scenario, so run `many` apart from the others: N = 2000 would mean
#        2000 streams × MANY_WATCHERS)
#        FSTREAM_INGEST=fstream (or rtmp: the ringcast-fstream series publishes live/bench over
#        RTMP and its watchers send watch,stream=live/bench)
#        CARGO_TARGET_DIR (binaries are taken from $CARGO_TARGET_DIR/release)
#        PUBLISH_ARGS (extra `ringcast-loadgen publish` options, e.g. "--bitrate 6000000")
set -euo pipefail

cd "$(dirname "$0")/.."
NS=("$@"); [ ${#NS[@]} -eq 0 ] && NS=(100 1000 2000 4000 6000 8000)
WORKERS=${WORKERS:-0}
WARMUP=${WARMUP:-6}
MEASURE=${MEASURE:-12}
SETTLE=${SETTLE:-2}
MANY_WATCHERS=${MANY_WATCHERS:-25}
READ_MODE=${READ_MODE:-once}
# SERVER_NICE=-10 runs every server at that niceness (as a node whose load comes from elsewhere
# would not share its cores with the watchers); empty by default.
SERVER_NICE=${SERVER_NICE:+nice -n $SERVER_NICE}
LG_PROCS=${LG_PROCS:-2}
RAMP=${RAMP:-1000}
OUT=${OUT:-bench-out}
SERVERS=${SERVERS:-"ringcast ceiling ceiling-cores nginx"}
SCENARIOS=${SCENARIOS:-"rtmp fstream rtmps"}
FSTREAM_INGEST=${FSTREAM_INGEST:-fstream}
BIN=${CARGO_TARGET_DIR:-target}/release
PORT_RC=19401 PORT_KC=19402 PORT_NG=19403 PORT_FS=19404 PORT_RS=19405 PORT_FTL=19406
# The fstream user the ringcast-fstream series broadcasts as (listed in its config).
FS_USER=bench FS_PASSWORD=bench FS_STREAM=fstream/bench/main
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
# The FTL scenario's media, made once: 720p30 H.264 (a keyframe every 2 s) and stereo Opus.
ftl_sources() {
  [ -s "$OUT/ftl.h264" ] || ffmpeg -hide_banner -loglevel error -y -f lavfi \
    -i testsrc2=size=1280x720:rate=30 -t 20 -c:v libx264 -preset veryfast -g 60 -bf 0 \
    -b:v 3M -pix_fmt yuv420p -bsf:v h264_mp4toannexb -f h264 "$OUT/ftl.h264"
  [ -s "$OUT/ftl.ogg" ] || ffmpeg -hide_banner -loglevel error -y -f lavfi \
    -i "sine=frequency=440:sample_rate=48000" -ac 2 -t 20 -c:a libopus -b:a 128k -f ogg "$OUT/ftl.ogg"
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
now_s() { date +%s.%N; }

start_server() { # series -> sets SPID, PORT
  case $1 in
    ringcast-ftl-*)
      PORT=$PORT_RC
      cat >"$OUT/$1.toml" <<CONF
[server]
log = "warn"
${PIN_CORES:+pin_cores = $PIN_CORES}
[rtmp]
listen = ["127.0.0.1:$PORT_RC"]
[fanout]
${COALESCE_US:+write_coalesce_us = $COALESCE_US}
[ftl]
enabled = true
listen = ["127.0.0.1:$PORT_FTL"]
udp_port_range = "19410-19419"
[[ftl.channels]]
id = 77
key = "SECRET"
[fstream]
enabled = false
[http]
enabled = false
${EXTRA_TOML:-}
CONF
      $SERVER_NICE "$BIN/ringcast" --config "$OUT/$1.toml" --workers "$WORKERS" >"$OUT/$1.log" 2>&1 &
      SPID=$! ;;
    ringcast|ringcast-many|ringcast-fstream|ringcast-rtmps)
      PORT=$PORT_RC
      local rtmps=""
      if [ "$1" = ringcast-rtmps ]; then
        PORT=$PORT_RS
        [ -f "$OUT/tls/cert.pem" ] || { mkdir -p "$OUT/tls"; openssl req -x509 -newkey ec \
          -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 -subj /CN=127.0.0.1 \
          -keyout "$OUT/tls/key.pem" -out "$OUT/tls/cert.pem" 2>/dev/null; }
        rtmps="[rtmps]
listen = [\"127.0.0.1:$PORT_RS\"]
[tls]
cert_file = \"$OUT/tls/cert.pem\"
key_file = \"$OUT/tls/key.pem\""
      fi
      # RTMP on loopback, and for ringcast-fstream the fstream listener on loopback with the
      # benchmark's broadcaster; no HTTP/FTL ports that could clash.
      local fstream="[fstream]
enabled = false"
      if [ "$1" = ringcast-fstream ]; then
        PORT=$PORT_FS
        fstream="[fstream]
enabled = true
listen = [\"127.0.0.1:$PORT_FS\"]
users_dir = \"$OUT/users\"
[[fstream.users]]
name = \"$FS_USER\"
password = \"$FS_PASSWORD\""
      fi
      cat >"$OUT/$1.toml" <<CONF
[server]
log = "warn"
${PIN_CORES:+pin_cores = $PIN_CORES}
[rtmp]
listen = ["127.0.0.1:$PORT_RC"]
[fanout]
${COALESCE_US:+write_coalesce_us = $COALESCE_US}
[ftl]
enabled = false
$fstream
[http]
enabled = false
$rtmps
${EXTRA_TOML:-}
CONF
      $SERVER_NICE "$BIN/ringcast" --config "$OUT/$1.toml" --workers "$WORKERS" >"$OUT/$1.log" 2>&1 &
      SPID=$! ;;
    ceiling|ceiling-cores)
      PORT=$PORT_KC
      local shape=(--threads 1); [ "$1" = ceiling-cores ] && shape=(--threads "$(nproc)" --coalesce-audio)
      $SERVER_NICE "$BIN/ringcast-loadgen" kernel-ceiling --listen "127.0.0.1:$PORT" "${shape[@]}" >"$OUT/$1.log" 2>&1 &
      SPID=$! ;;
    nginx|nginx-many)
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
      $SERVER_NICE nginx -c "$d/nginx.conf" -p "$d" >"$OUT/nginx.log" 2>&1 &
      SPID=$! ;;
  esac
  PIDS+=("$SPID")
  sleep 1
}

# The series to run, in order: every server under `rtmp`; ringcast only under `fstream`.
SERIES=()
for scenario in $SCENARIOS; do
  for kind in $SERVERS; do
    case $scenario/$kind in
      rtmp/*) SERIES+=("$kind") ;;
      fstream/ringcast) SERIES+=(ringcast-fstream) ;;
      rtmps/ringcast) SERIES+=(ringcast-rtmps) ;;
      rtmps/ceiling*) [[ " $SCENARIOS " == *" rtmp "* ]] || SERIES+=("$kind") ;;
      rtmps/*) echo "$kind is not run with RTMPS watchers; skipping it in the rtmps scenario" >&2 ;;
      # Protocol-agnostic: run it once even when only the fstream scenario is asked for.
      fstream/ceiling*) [[ " $SCENARIOS " == *" rtmp "* ]] || SERIES+=("$kind") ;;
      fstream/*) echo "$kind has no fstream; skipping it in the fstream scenario" >&2 ;;
      ftl/ringcast) SERIES+=(ringcast-ftl-opus ringcast-ftl-aac) ;;
      ftl/*) ;;
      many/ringcast|many/nginx) SERIES+=("$kind-many") ;;
      many/*) ;;
      *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
  done
done

ROWS="$OUT/rows.tsv"
# RENDER_ONLY=1 re-renders the table from an earlier run's $OUT.
[ "${RENDER_ONLY:-0}" = 1 ] && SERIES=()
[ "${RENDER_ONLY:-0}" = 1 ] || : >"$ROWS"
for series in "${SERIES[@]}"; do
  if [[ $series == nginx* ]] && ! { command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; }; then
    echo "nginx-rtmp not installed; skipping" >&2; continue
  fi
  for n in "${NS[@]}"; do
    # Watchers in the cell: N, or N streams × MANY_WATCHERS.
    watchers=$n; [[ $series == *-many ]] && watchers=$(( n * MANY_WATCHERS ))
    ramp_s=0; [ "${RAMP%.*}" -gt 0 ] && ramp_s=$(( watchers / ${RAMP%.*} ))
    warmup=$(( WARMUP > ramp_s + 4 ? WARMUP : ramp_s + 4 ))
    duration=$(( warmup + MEASURE + 2 ))
    start_server "$series"
    PUB=""
    case $series in
      ceiling*) watch=(--protocol raw) ;;
      ringcast-ftl-*)
        watch=(--protocol rtmp --stream ftl/77)
        [ "$series" = ringcast-ftl-opus ] && watch+=(--rtmp-opus) ;;
      ringcast-fstream)
        if [ "$FSTREAM_INGEST" = rtmp ]; then
          publish=(--target "127.0.0.1:$PORT_RC" --stream live/bench)
          watch=(--protocol fstream --stream live/bench)
        else
          publish=(--protocol fstream --target "127.0.0.1:$PORT_FS" --stream "$FS_STREAM" --user-password "$FS_PASSWORD")
          watch=(--protocol fstream --stream "$FS_STREAM")
        fi ;;
      ringcast-rtmps)
        publish=(--target "127.0.0.1:$PORT_RC" --stream live/bench)
        watch=(--url "rtmps://127.0.0.1:$PORT_RS/live/bench" --tls-insecure) ;;
      *-many)
        publish=(--target "127.0.0.1:$PORT" --stream live/bench --stream-count "$n")
        watch=(--protocol rtmp --stream live/bench --stream-count "$n") ;;
      *)
        publish=(--target "127.0.0.1:$PORT" --stream live/bench)
        watch=(--protocol rtmp --stream live/bench) ;;
    esac
    if [[ $series == ringcast-ftl-* ]]; then
      ftl_sources
      "$BIN/ringcast-loadgen" ftl-publish --addr "127.0.0.1:$PORT_FTL" --key 77-SECRET \
        --h264 "$OUT/ftl.h264" --opus "$OUT/ftl.ogg" --fps 30 --duration $((SETTLE + duration + 5)) \
        >"$OUT/publish-$series-$n.log" 2>&1 &
      PUB=$!; PIDS+=("$PUB")
    elif [[ $series != ceiling* ]]; then
      # shellcheck disable=SC2086 # PUBLISH_ARGS is a list of options
      "$BIN/ringcast-loadgen" publish "${publish[@]}" ${PUBLISH_ARGS:-} --duration $((SETTLE + duration + 5)) \
        >"$OUT/publish-$series-$n.log" 2>&1 &
      PUB=$!; PIDS+=("$PUB")
    fi
    sleep "$SETTLE"
    rss0=$(rss_kib "$SPID")
    # TCP counters over the cell (listen overflows, SYN and tail-loss retransmits), if iproute2 has nstat.
    command -v nstat >/dev/null && nstat -n >/dev/null 2>&1
    "$BIN/ringcast-loadgen" watch --target "127.0.0.1:$PORT" --watchers "$watchers" "${watch[@]}" \
      --read-mode "$READ_MODE" \
      --duration "$duration" --warmup "$warmup" --ramp-per-sec "$RAMP" \
      --processes "$LG_PROCS" --out "$OUT/$series-$n.json" >/dev/null 2>"$OUT/watch-$series-$n.log" &
    WPID=$!
    sleep "$warmup"
    c0=$(cpu_ticks "$SPID"); l0=$(tree_ticks "$WPID"); t0=$(now_s)
    sleep "$MEASURE"
    c1=$(cpu_ticks "$SPID"); l1=$(tree_ticks "$WPID"); t1=$(now_s)
    rss1=$(rss_kib "$SPID")
    wait "$WPID" || echo "watch $series $n failed" >&2
    command -v nstat >/dev/null && nstat >"$OUT/nstat-$series-$n.txt" 2>&1
    cpu=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.3f", (b-a)/hz/(t1-t0)}')
    lcpu=$(awk -v a="$l0" -v b="$l1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" 'BEGIN{printf "%.3f", (b-a)/hz/(t1-t0)}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$series" "$n" "$cpu" "$rss0" "$rss1" "$lcpu" >>"$ROWS"
    echo "$series N=$n cpu=$cpu cores loadgen=$lcpu rss0=${rss0}KiB rss=${rss1}KiB $(jq -c '{gbps:.delivered_gbps,playing,p99:.latency_ms.p99,stalls}' "$OUT/$series-$n.json")" >&2
    kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true
    [ -n "$PUB" ] && { kill "$PUB" 2>/dev/null || true; wait "$PUB" 2>/dev/null || true; }
    sleep 1
  done
done

{
  echo "| server | watchers | playing | relay CPU (cores) | loadgen CPU | delivered Gbit/s | per watcher Mbit/s | CPU per Gbit/s | × kernel ceiling | × nginx-rtmp | RSS/watcher (KiB) | latency p50 / p99 / p999 (ms) | TTFF p99 (ms) | stalls | lost / skipped frames |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  while IFS=$'\t' read -r series n cpu rss0 rss1 lcpu; do
    j="$OUT/$series-$n.json"
    [ -f "$j" ] || continue
    read -r gbps wmbps playing p50 p99 p999 ttff stalls lost skipped < <(jq -r '[.delivered_gbps,.mean_watcher_mbps,.playing,.latency_ms.p50,.latency_ms.p99,.latency_ms.p999,.ttff_ms.p99,.stalls,.lost_frames,.skipped_frames]|@tsv' "$j")
    kc=$(awk -F'\t' -v n="$n" '$1=="ceiling" && $2==n {print $3}' "$ROWS")
    kj="$OUT/ceiling-$n.json"
    kg=$( [ -f "$kj" ] && jq -r .delivered_gbps "$kj" || echo 0)
    # The many-streams series are compared with nginx-many; the kernel ceiling has one stream.
    watchers=$n; ng=nginx
    if [[ $series == *-many ]]; then watchers=$(( n * MANY_WATCHERS )); ng=nginx-many; kc=0; kg=0; fi
    nc=$(awk -F'\t' -v s="$ng" -v n="$n" '$1==s && $2==n {print $3}' "$ROWS")
    nj="$OUT/$ng-$n.json"
    ngb=$( [ -f "$nj" ] && jq -r .delivered_gbps "$nj" || echo 0)
    awk -v series="$series" -v n="$n" -v watchers="$watchers" -v nc="${nc:-0}" -v ngb="$ngb" -v cpu="$cpu" -v lcpu="${lcpu:--}" -v gbps="$gbps" -v wmbps="$wmbps" -v playing="$playing" -v rss0="$rss0" -v rss1="$rss1" \
        -v p50="$p50" -v p99="$p99" -v p999="$p999" -v ttff="$ttff" -v stalls="$stalls" -v lost="$lost" -v skipped="$skipped" \
        -v kc="${kc:-0}" -v kg="$kg" 'BEGIN{
      per = gbps > 0 ? cpu / gbps : 0
      kper = kg > 0 ? kc / kg : 0
      ratio = kper > 0 ? sprintf("%.2f", per / kper) : "-"
      nper = ngb > 0 ? nc / ngb : 0
      nratio = nper > 0 ? sprintf("%.2f", per / nper) : "-"
      shown = watchers == n ? n : sprintf("%d × %d", n, watchers / n)
      # At small N the allocator returning pages can outweigh the watchers: show that as noise.
      rssw = (rss1 - rss0) / watchers
      rss = rssw >= 0 ? sprintf("%.1f", rssw) : "< 0 (noise)"
      printf "| %s | %s | %d | %.3f | %s | %.3f | %.2f | %.3f | %s | %s | %s | %.1f / %.1f / %.1f | %.1f | %d | %d / %d |\n",
        series, shown, playing, cpu, lcpu, gbps, wmbps, per, ratio, nratio, rss, p50, p99, p999, ttff, stalls, lost, skipped }'
  done <"$ROWS"
} | tee "$OUT/table.md"

# Latency and CPU per Gbit/s against watchers, one line per series. The table stands if this fails.
"$BIN/ringcast-loadgen" plot --dir "$OUT" || echo "plot: failed; table.md is complete" >&2
