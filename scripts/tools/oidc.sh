#!/usr/bin/env bash
# A real OpenID Connect provider for the SSO tests (tests/auth/sso.rs): Authlib's
# authorization server in Flask, from PyPI, run by tests/auth/sso/provider.py.
#
# Installs, once, into a cache directory (${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}),
# reusing it when it is already there at the right versions:
#   oidc/bin/python   a virtual environment with Authlib and Flask
#
# Usage:
#   scripts/tools/oidc.sh              install, print the exports below (stdout)
#   source scripts/tools/oidc.sh       install and export into this shell
# Progress goes to stderr; stdout carries only `export NAME=value` lines.
#
# Exports:
#   TOLLGATE_OIDC_PYTHON   the venv's python, which imports `authlib` and `flask`

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    __tollgate_oidc_exports="$(bash "${BASH_SOURCE[0]}")" || return 1
    eval "$__tollgate_oidc_exports"
    unset __tollgate_oidc_exports
    return 0
fi

set -euo pipefail

AUTHLIB_VERSION=1.9.10
FLASK_VERSION=3.1.3

tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
venv="$tools/oidc"
python="$venv/bin/python"

say() { printf '== %s\n' "$*" >&2; }

installed() {
    "$python" -c 'import importlib.metadata as m; print(m.version("authlib"), m.version("flask"))' 2>/dev/null || true
}

if [[ -x "$python" && "$(installed)" == "$AUTHLIB_VERSION $FLASK_VERSION" ]]; then
    say "authlib $AUTHLIB_VERSION, flask $FLASK_VERSION: already in $venv"
else
    say "installing authlib $AUTHLIB_VERSION and flask $FLASK_VERSION into $venv"
    system_python="$(command -v python3 || command -v python)"
    rm -rf "$venv"
    "$system_python" -m venv "$venv"
    "$python" -m pip install --quiet --disable-pip-version-check \
        "authlib==$AUTHLIB_VERSION" "flask==$FLASK_VERSION" >&2
fi

"$python" -c 'import authlib.oidc.core, flask, joserfc' >&2

printf 'export TOLLGATE_OIDC_PYTHON=%q\n' "$python"
