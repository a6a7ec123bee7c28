#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/Cargo.toml for FUZZ_SECS seconds each (default 60) on the
# stable toolchain (`-s none`: no sanitizer; the targets use the library's own bounds checks and
# libFuzzer's crash/timeout/OOM detection). Installs cargo-fuzz if it is missing.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   FUZZ_SECS=300 scripts/fuzz.sh ftl_media h264_depacketizer
#
# A crash leaves its input in fuzz/artifacts/TARGET/ and makes the script exit non-zero.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
secs="${FUZZ_SECS:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^ringcast-fuzz$')
fi
failed=()
for target in "${targets[@]}"; do
    echo "== fuzz $target for ${secs}s"
    if ! cargo fuzz run -s none "$target" -- -max_total_time="$secs" -rss_limit_mb=2048; then
        failed+=("$target")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz targets that failed: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${secs}s without a crash"
