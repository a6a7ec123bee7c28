#!/usr/bin/env bash
# The project's test command: installs what the integration tests need (skipped when already
# present), then runs rustfmt, clippy and rustdoc with warnings denied, and the whole
# workspace's tests (cargo-nextest when installed, else cargo test). Any failure fails the script.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

eval "$(scripts/install-test-deps.sh)"
export RINGCAST_FFMPEG_MODERN RINGCAST_HAPROXY
echo "test.sh: modern ffmpeg: $RINGCAST_FFMPEG_MODERN"
echo "test.sh: haproxy: $RINGCAST_HAPROXY"

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check

echo "test.sh: cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
# The benchmark-only frame trace (src/fanout/trace.rs) is built only with its feature: keep it
# compiling, lint-clean and tested.
echo "test.sh: the frame-trace feature"
cargo clippy --lib --quiet --features frame-trace -- -D warnings
cargo test --lib --quiet --features frame-trace fanout::trace

# The //! headers and item docs are the house's map of the code: keep every intra-doc link
# resolving (private items included, as the developers read them).
echo "test.sh: cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --quiet

if cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: cargo nextest run"
    cargo nextest run --workspace --no-fail-fast
else
    echo "test.sh: cargo-nextest not found, using cargo test"
    cargo test --workspace --no-fail-fast
fi
