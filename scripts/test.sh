#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests drive (the wasm
# targets, rustfmt/clippy, nginx for the reverse-proxy test), checks formatting and lints,
# builds the shared crate for both wasm targets, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

say "toolchain: targets and components"
rustup component add rustfmt clippy >/dev/null
rustup target add wasm32-unknown-unknown wasm32-wasip2 >/dev/null

if ! command -v nginx >/dev/null 2>&1; then
    say "installing nginx (the reverse proxy of the forward-auth test)"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx >/dev/null
fi

say "format"
cargo fmt --all --check

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "shared crate on the edge targets"
cargo build --locked -p tollgate -p tollgate-cloudflare --target wasm32-unknown-unknown
cargo build --locked -p tollgate -p tollgate-spin --target wasm32-wasip2

say "an S3-compatible server for the object-store tests (moto, from PyPI)"
eval "$(bash scripts/tools/s3.sh)"

say "tests"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "\ntests: %d passed, %d failed\n", passed, failed }' "$log"
