"""What every browser visit shares: its arguments, and a phone-sized page of the system's
Chromium on which every name under tollgate.test resolves to loopback.

The visits import it from beside them (Python puts a script's own folder on its path).
"""

import json
import pathlib
import sys

from playwright.sync_api import expect

TIMEOUT_MS = 10_000


def visit_arguments():
    """The visit's JSON argument, and its screenshots folder (created)."""
    args = json.loads(sys.argv[1])
    shots = pathlib.Path(args["screenshots"])
    shots.mkdir(parents=True, exist_ok=True)
    return args, shots


def open_page(playwright, chromium):
    """The browser and its one page, every wait bounded; the page's own errors printed,
    should a step fail."""
    browser = playwright.chromium.launch(
        executable_path=chromium,
        args=["--host-resolver-rules=MAP *.tollgate.test 127.0.0.1", "--no-sandbox"],
    )
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.on("pageerror", lambda error: print("page error:", error))
    page.on("console", lambda message: print("console:", message.text))
    page.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    return browser, page
