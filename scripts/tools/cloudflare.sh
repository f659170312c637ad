#!/usr/bin/env bash
# The Cloudflare Workers toolchain and build, for the edge tests and for deploys.
#
# Installs, once, into a cache directory (${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}),
# reusing whatever is already there at the right version:
#   cargo/bin/worker-build           worker-build 0.8.7 (the worker crate is pinned to =0.8.7)
#   cargo/bin/wasm-bindgen           wasm-bindgen-cli at the wasm-bindgen version in Cargo.lock
#   cargo/bin/wasm-bindgen-test-runner   (worker-build would otherwise download it: no network)
#   npm/node_modules/.bin/wrangler   wrangler 4.86 (the last that runs on Node 20)
#   npm/node_modules/.bin/wasm-opt   binaryen's wasm-opt
#   npm/node_modules/.bin/esbuild    esbuild, which worker-build bundles the JS glue with
# then builds the worker with worker-build (the size-optimised `worker` profile).
#
# Usage:
#   scripts/tools/cloudflare.sh [build]    install, build, print the exports below (stdout)
#   scripts/tools/cloudflare.sh install    install only, print the exports
#   scripts/tools/cloudflare.sh wasm-test  install, then run shared's wasm-bindgen tests
#                                          (tests/wasm.rs) on wasm32-unknown-unknown under Node
#   source scripts/tools/cloudflare.sh     install, build, and export into this shell
# Progress goes to stderr; stdout carries only `export NAME=value` lines, so
#   eval "$(scripts/tools/cloudflare.sh)"
# is the same as sourcing it.
#
# Exports:
#   TOLLGATE_WORKER_DIR  worker-build's output (functions/cloudflare/build): worker/shim.mjs is
#                        the module wrangler serves, beside index.js and index_bg.wasm. The
#                        edge tests (tests/src/edge/workerd.rs) run `wrangler dev` on it
#                        without rebuilding.
#   TOLLGATE_WRANGLER    the wrangler executable
#   WASM_BINDGEN_BIN, WASM_OPT_BIN, ESBUILD_BIN   what worker-build uses instead of downloading
#   PATH                 with the cache's cargo/bin and npm/node_modules/.bin in front
#
# Cargo honours CARGO_TARGET_DIR as usual (the worker build and the wasm tests use it).

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: run in a child bash (so `set -e` and friends stay out of the caller's
    # shell) and take its exports.
    __tollgate_cf_exports="$(bash "${BASH_SOURCE[0]}" build)" || return 1
    eval "$__tollgate_cf_exports"
    unset __tollgate_cf_exports
    return 0
fi

set -euo pipefail

WORKER_BUILD_VERSION=0.8.7
WRANGLER_VERSION=4.86
BINARYEN_VERSION=132
# worker-build 0.8.7 bundles with esbuild 0.28 (and would download it: ESBUILD_BIN).
ESBUILD_VERSION=0.28

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
cargo_root="$tools/cargo"
npm_prefix="$tools/npm"
node_bin="$npm_prefix/node_modules/.bin"

say() { printf '== %s\n' "$*" >&2; }

# The wasm-bindgen version the workspace locks: the CLI must match it exactly.
locked_wasm_bindgen() {
    awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' \
        "$repo/Cargo.lock"
}

# Installs a crate's binaries into the cache unless `$bin --version` already ends in $version.
cargo_tool() {
    local crate="$1" version="$2" bin="$3"
    # `worker-build --version` prints `0.8.7`, `wasm-bindgen --version` `wasm-bindgen 0.2.130`.
    if [[ -x "$cargo_root/bin/$bin" ]] &&
        [[ "$("$cargo_root/bin/$bin" --version 2>/dev/null | awk 'NR == 1 { print $NF }')" == "$version" ]]; then
        return 0
    fi
    say "installing $crate $version into $cargo_root (a few minutes, once)"
    # Its own target dir, so an install neither waits on nor disturbs the workspace's.
    # --locked first, for the versions the crate was released with; a lockfile that names a
    # yanked crate (wasm-bindgen-cli 0.2.130 pins a yanked webpki-roots) makes that fail, and
    # then the newest compatible versions are used.
    local install=(cargo install --quiet --force --root "$cargo_root" "$crate" --version "=$version")
    if ! CARGO_TARGET_DIR="$tools/cargo-build" "${install[@]}" --locked >&2; then
        say "$crate $version: its lockfile cannot be used here; installing without --locked"
        CARGO_TARGET_DIR="$tools/cargo-build" "${install[@]}" >&2
    fi
    rm -rf "$tools/cargo-build"
}

npm_tool() {
    local package="$1" version="$2" probe="$3"
    if [[ -f "$npm_prefix/node_modules/$package/package.json" ]] &&
        node -e "process.exit(require(process.argv[1]).version.startsWith(process.argv[2] + '.') ? 0 : 1)" \
            "$npm_prefix/node_modules/$package/package.json" "$version" &&
        [[ -x "$node_bin/$probe" ]]; then
        return 0
    fi
    say "installing $package@$version into $npm_prefix"
    mkdir -p "$npm_prefix"
    npm install --prefix "$npm_prefix" --no-audit --no-fund --loglevel=error \
        "$package@$version" >&2
}

install() {
    command -v cargo >/dev/null || { echo "cargo is needed (rustup)" >&2; exit 1; }
    command -v npm >/dev/null || { echo "node and npm are needed" >&2; exit 1; }
    rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
    local bindgen
    bindgen="$(locked_wasm_bindgen)"
    [[ -n "$bindgen" ]] || { echo "no wasm-bindgen in Cargo.lock" >&2; exit 1; }
    cargo_tool worker-build "$WORKER_BUILD_VERSION" worker-build
    cargo_tool wasm-bindgen-cli "$bindgen" wasm-bindgen
    npm_tool wrangler "$WRANGLER_VERSION" wrangler
    npm_tool binaryen "$BINARYEN_VERSION" wasm-opt
    npm_tool esbuild "$ESBUILD_VERSION" esbuild
    export PATH="$cargo_root/bin:$node_bin:$PATH"
    export WASM_BINDGEN_BIN="$cargo_root/bin/wasm-bindgen"
    export WASM_OPT_BIN="$node_bin/wasm-opt"
    export ESBUILD_BIN="$node_bin/esbuild"
}

build() {
    # The `worker` profile (root Cargo.toml): release, size-optimised, with LTO; wasm-opt -Oz.
    say "building the worker (worker-build --profile worker)"
    (cd "$repo/functions/cloudflare" && worker-build --profile worker >&2)
    local wasm="$repo/functions/cloudflare/build/index_bg.wasm"
    if [[ -f "$wasm" ]]; then
        say "worker wasm: $(wc -c <"$wasm") bytes raw, $(gzip -9 -c "$wasm" | wc -c) bytes gzip"
    fi
}

wasm_test() {
    say "shared's wasm tests on wasm32-unknown-unknown under Node"
    (cd "$repo" && CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
        cargo test --locked -p tollgate --target wasm32-unknown-unknown --test wasm)
}

exports() {
    printf 'export TOLLGATE_TOOLS=%q\n' "$tools"
    printf 'export PATH=%q\n' "$PATH"
    printf 'export WASM_BINDGEN_BIN=%q\n' "$WASM_BINDGEN_BIN"
    printf 'export WASM_OPT_BIN=%q\n' "$WASM_OPT_BIN"
    printf 'export ESBUILD_BIN=%q\n' "$ESBUILD_BIN"
    printf 'export TOLLGATE_WRANGLER=%q\n' "$node_bin/wrangler"
    if [[ -d "$repo/functions/cloudflare/build" ]]; then
        printf 'export TOLLGATE_WORKER_DIR=%q\n' "$repo/functions/cloudflare/build"
    fi
}

case "${1:-build}" in
    install) install; exports ;;
    build) install; build; exports ;;
    wasm-test) install; wasm_test ;;
    *) echo "usage: $0 [build|install|wasm-test]" >&2; exit 2 ;;
esac
