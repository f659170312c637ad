#!/usr/bin/env bash
# The official OpenAI Python client (PyPI `openai`), which the LLM gateway's tests
# (tests/llm/sdk.rs) drive against the running server, so the gateway is judged by the SDK
# its users run: its requests, and the exception classes it raises for the gateway's errors.
#
# Installs, once, into a cache directory (${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}),
# reusing it when it is already there at the right version:
#   openai/bin/python   a virtual environment with openai 3.51.0
#
# Usage:
#   scripts/tools/openai.sh              install, print the exports below (stdout)
#   source scripts/tools/openai.sh       install and export into this shell
# Progress goes to stderr; stdout carries only `export NAME=value` lines, so
#   eval "$(scripts/tools/openai.sh)"
# is the same as sourcing it.
#
# Exports:
#   TOLLGATE_OPENAI_PYTHON   the venv's python, which imports `openai`; the llm tests run
#                            their SDK script with it (and fail, saying so, when this is unset)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: run in a child bash (so `set -e` stays out of the caller's shell) and take
    # its exports.
    __tollgate_openai_exports="$(bash "${BASH_SOURCE[0]}")" || return 1
    eval "$__tollgate_openai_exports"
    unset __tollgate_openai_exports
    return 0
fi

set -euo pipefail

OPENAI_VERSION=3.51.0

tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
venv="$tools/openai"
python="$venv/bin/python"

say() { printf '== %s\n' "$*" >&2; }

installed_version() {
    "$python" -c 'import importlib.metadata as m; print(m.version("openai"))' 2>/dev/null || true
}

if [[ -x "$python" && "$(installed_version)" == "$OPENAI_VERSION" ]]; then
    say "openai $OPENAI_VERSION: already in $venv"
else
    say "installing openai $OPENAI_VERSION into $venv"
    system_python="$(command -v python3 || command -v python)"
    rm -rf "$venv"
    "$system_python" -m venv "$venv"
    "$python" -m pip install --quiet --disable-pip-version-check \
        "openai==$OPENAI_VERSION" >&2
fi

# Fail here, not in the test, if the install did not give a working client.
"$python" -c 'import openai; print("openai", openai.__version__)' >&2

printf 'export TOLLGATE_OPENAI_PYTHON=%q\n' "$python"
