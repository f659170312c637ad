#!/usr/bin/env bash
# A real browser for the console's end-to-end tests (tests/proxy/browser.rs): Debian's
# Chromium, driven by Playwright for Python from PyPI with that system browser (Playwright's
# own browser downloads are not used).
#
# Installs, once: the Debian package `chromium` (with apt, when /usr/bin/chromium is
# missing), and into a cache directory (${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}),
# reusing it when it is already there at the right version:
#   browser/bin/python   a virtual environment with playwright 1.65.3
#
# Usage:
#   scripts/tools/browser.sh              install, print the exports below (stdout)
#   source scripts/tools/browser.sh       install and export into this shell
# Progress goes to stderr; stdout carries only `export NAME=value` lines.
#
# Exports:
#   TOLLGATE_BROWSER_PYTHON   the venv's python, which imports `playwright`
#   TOLLGATE_CHROMIUM         the Chromium executable the tests launch headless

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    __tollgate_browser_exports="$(bash "${BASH_SOURCE[0]}")" || return 1
    eval "$__tollgate_browser_exports"
    unset __tollgate_browser_exports
    return 0
fi

set -euo pipefail

PLAYWRIGHT_VERSION=1.65.3

tools="${TOLLGATE_TOOLS:-$HOME/.cache/tollgate-tools}"
venv="$tools/browser"
python="$venv/bin/python"

say() { printf '== %s\n' "$*" >&2; }

chromium="$(command -v chromium || true)"
if [[ -z "$chromium" ]]; then
    say "installing Chromium from Debian's packages"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
    chromium="$(command -v chromium)"
fi
"$chromium" --version >&2

installed_version() {
    "$python" -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null || true
}

if [[ -x "$python" && "$(installed_version)" == "$PLAYWRIGHT_VERSION" ]]; then
    say "playwright $PLAYWRIGHT_VERSION: already in $venv"
else
    say "installing playwright $PLAYWRIGHT_VERSION into $venv"
    system_python="$(command -v python3 || command -v python)"
    rm -rf "$venv"
    "$system_python" -m venv "$venv"
    "$python" -m pip install --quiet --disable-pip-version-check \
        "playwright==$PLAYWRIGHT_VERSION" >&2
fi

"$python" -c 'import playwright.sync_api; print("playwright", __import__("importlib.metadata").metadata.version("playwright"))' >&2

printf 'export TOLLGATE_BROWSER_PYTHON=%q\n' "$python"
printf 'export TOLLGATE_CHROMIUM=%q\n' "$chromium"
