#!/usr/bin/env bash
# Installs the external programs the integration tests drive, on Debian 12 as root:
# the distribution ffmpeg 5.1 (legacy RTMP, libx264), GStreamer with rtmp2src, HAProxy (the load
# balancer in front of the PROXY protocol tests), and a modern ffmpeg for Enhanced RTMP
# (imageio-ffmpeg's static build, from PyPI, in a venv).
#
# Idempotent and quiet: each step is skipped when its tool already works; installer output goes
# to a log that is printed only on failure. Every tool is verified at the end and a missing one
# fails loudly: the tests never skip.
#
# stdout carries only `export NAME=VALUE` lines for the caller to eval:
#   eval "$(scripts/install-test-deps.sh)"
set -euo pipefail

VENV="${RINGCAST_TEST_VENV:-/opt/ringcast-test-venv}"
LOG="$(mktemp -t ringcast-test-deps.XXXXXX.log)"
trap 'rm -f "$LOG"' EXIT

say() { echo "install-test-deps: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

quietly() {
    if ! "$@" >>"$LOG" 2>&1; then
        say "command failed: $*"
        tail -n 60 "$LOG" >&2
        exit 1
    fi
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        quietly "$@"
    elif command -v sudo >/dev/null 2>&1; then
        quietly sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

have() { command -v "$1" >/dev/null 2>&1; }
# Debian installs haproxy in /usr/sbin, which a non-root PATH may not include.
haproxy_path() { command -v haproxy 2>/dev/null || { [ -x /usr/sbin/haproxy ] && echo /usr/sbin/haproxy; }; }
gst_has() { gst-inspect-1.0 "$1" >/dev/null 2>&1; }

# --- distribution packages -------------------------------------------------------------
missing=()
if ! have ffmpeg || ! have ffprobe; then missing+=(ffmpeg); fi
if ! have gst-launch-1.0 || ! have gst-inspect-1.0; then missing+=(gstreamer1.0-tools); fi
if ! have gst-inspect-1.0 || ! gst_has rtmp2src || ! gst_has flvdemux || ! gst_has filesink \
    || ! gst_has aacparse || ! gst_has avdec_aac || ! gst_has h264parse || ! gst_has avdec_h264; then
    missing+=(gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav)
fi
# rtmp2src speaks rtmps:// through GIO's TLS backend (the RTMPS tests).
gio_tls() { compgen -G "/usr/lib/*/gio/modules/libgiognutls.so" >/dev/null || compgen -G "/usr/lib/gio/modules/libgiognutls.so" >/dev/null; }
if ! gio_tls; then missing+=(glib-networking); fi
if ! have python3; then missing+=(python3); fi
if ! haproxy_path >/dev/null; then missing+=(haproxy); fi
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# --- modern ffmpeg (Enhanced RTMP) -----------------------------------------------------
modern_from() {
    "$1" -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())' 2>/dev/null
}
modern=""
if [ -n "${RINGCAST_FFMPEG_MODERN:-}" ] && [ -x "${RINGCAST_FFMPEG_MODERN}" ]; then
    modern="$RINGCAST_FFMPEG_MODERN"
elif [ -x "$VENV/bin/python3" ] && modern="$(modern_from "$VENV/bin/python3")"; then
    :
elif modern="$(modern_from python3)"; then
    :
else
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    say "creating $VENV and installing imageio-ffmpeg"
    rm -rf "$VENV"
    as_root python3 -m venv "$VENV"
    as_root "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check imageio-ffmpeg
    modern="$(modern_from "$VENV/bin/python3")" || die "imageio_ffmpeg installed but reports no ffmpeg binary"
fi

# --- verify everything the tests use ---------------------------------------------------
for tool in ffmpeg ffprobe gst-launch-1.0 gst-inspect-1.0; do
    have "$tool" || die "$tool is still missing after install"
done
haproxy_bin="$(haproxy_path)" || die "haproxy is still missing after install"
"$haproxy_bin" -v >/dev/null 2>&1 || die "haproxy does not run: $haproxy_bin"
for element in rtmp2src flvdemux filesink aacparse avdec_aac h264parse avdec_h264; do
    gst_has "$element" || die "GStreamer element $element is missing after install"
done
# Capture before grepping: `grep -q` exiting early would SIGPIPE ffmpeg and trip pipefail.
encoders="$(ffmpeg -hide_banner -encoders 2>/dev/null)" || die "ffmpeg does not run"
for enc in libx264 aac; do
    grep -q " $enc " <<<"$encoders" || die "ffmpeg has no $enc encoder"
done
gio_tls || die "GIO has no TLS backend (glib-networking): rtmp2src cannot play rtmps://"
protocols="$(ffmpeg -hide_banner -protocols 2>/dev/null)" || die "ffmpeg does not run"
grep -q "rtmps" <<<"$protocols" || die "ffmpeg has no rtmps protocol (built without TLS)"
[ -x "$modern" ] || die "modern ffmpeg not executable: '$modern'"
modern_encoders="$("$modern" -hide_banner -encoders 2>/dev/null)" || die "modern ffmpeg does not run: $modern"
for enc in libx265 libsvtav1; do
    grep -q " $enc " <<<"$modern_encoders" || die "modern ffmpeg ($modern) has no $enc encoder"
done

echo "export RINGCAST_FFMPEG_MODERN='$modern'"
echo "export RINGCAST_HAPROXY='$haproxy_bin'"
