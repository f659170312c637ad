#!/usr/bin/env bash
# schemathesis, the property-based API tester the fuzz step (scripts/fuzz-api.sh) runs
# against the OpenAPI document: the PyPI package, installed once into a virtualenv in the
# tools cache `${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}` and reused when present.
#
# Source it (bash) to get the variable exported, or run it and evaluate what it prints:
#
#   source scripts/tools/schemathesis.sh
#   exports="$(bash scripts/tools/schemathesis.sh)" && eval "$exports"
#
# It sets TOLLGATE_SCHEMATHESIS (the `st` command). Progress goes to stderr. Needs only
# python3 with its venv module (Debian: python3-venv).

tollgate_schemathesis_tools() (
    set -euo pipefail
    local version="4.32.5"
    local tools prefix st
    tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
    prefix="$tools/schemathesis-$version"
    st="$prefix/bin/st"

    # A virtualenv cannot be moved (its scripts name its own path), so it is made in place
    # and marked complete only once the install succeeded.
    if [ ! -f "$prefix/.complete" ] || ! "$st" --version >/dev/null 2>&1; then
        echo "schemathesis.sh: installing schemathesis $version (PyPI) into $prefix" >&2
        mkdir -p "$tools"
        rm -rf "$prefix"
        python3 -m venv "$prefix" >&2
        "$prefix/bin/python" -m pip install --quiet --disable-pip-version-check \
            "schemathesis==$version" >&2
        touch "$prefix/.complete"
    fi
    "$st" --version >&2
    printf 'export TOLLGATE_SCHEMATHESIS=%q\n' "$st"
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: export into the caller's shell.
    __tollgate_schemathesis_exports="$(tollgate_schemathesis_tools)" || return 1
    eval "$__tollgate_schemathesis_exports"
    unset __tollgate_schemathesis_exports
else
    tollgate_schemathesis_tools
fi
