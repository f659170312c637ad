#!/usr/bin/env bash
# An S3-compatible server for the gpu-runner's object-store tests: moto's standalone server
# (PyPI `moto[server]`), which checks AWS Signature V4 on header-signed requests once its
# authentication is switched on (the tests do that through its /moto-api/reset-auth).
#
# Installs, once, into a cache directory (${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}),
# reusing it when it is already there at the right version:
#   moto/bin/moto_server   moto 5.2.1 in a virtual environment of its own
#
# Usage:
#   scripts/tools/s3.sh              install, print the exports below (stdout)
#   source scripts/tools/s3.sh       install and export into this shell
# Progress goes to stderr; stdout carries only `export NAME=value` lines, so
#   eval "$(scripts/tools/s3.sh)"
# is the same as sourcing it.
#
# Exports:
#   TOLLGATE_MOTO_SERVER   the moto_server executable; gpu-runner/tests/s3.rs starts it on a
#                          free loopback port (and fails, saying so, when this is unset)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: run in a child bash (so `set -e` stays out of the caller's shell) and take
    # its exports.
    __tollgate_s3_exports="$(bash "${BASH_SOURCE[0]}")" || return 1
    eval "$__tollgate_s3_exports"
    unset __tollgate_s3_exports
    return 0
fi

set -euo pipefail

MOTO_VERSION=5.2.1

tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
venv="$tools/moto"
server="$venv/bin/moto_server"

say() { printf '== %s\n' "$*" >&2; }

installed_version() {
    "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true
}

if [[ -x "$server" && "$(installed_version)" == "$MOTO_VERSION" ]]; then
    say "moto $MOTO_VERSION: already in $venv"
else
    say "installing moto[server] $MOTO_VERSION into $venv"
    python="$(command -v python3 || command -v python)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION" >&2
fi

# Fail here, not in the test, if the install did not give a working server.
"$venv/bin/python" -c 'import moto.server' >&2

printf 'export TOLLGATE_MOTO_SERVER=%q\n' "$server"
