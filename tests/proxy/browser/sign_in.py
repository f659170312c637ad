"""A person at a browser: opens a service behind Traefik, is sent to Tollgate's sign-in page,
signs in, lands back on the service's page whose WebSocket answers, sees the console's
overview (credits, usage and its chart), creates an API key (shown once) and revokes it,
signs out, and is sent to sign in again. Driven by Playwright with Debian's Chromium; every wait is
bounded by Playwright's timeout. Screenshots of each page go to the directory given.

Usage: python sign_in.py '<json>' with keys chromium, service, console, tenant, email,
password, user_id, pool_credits (as the page writes them), screenshots.
"""

import json
import pathlib
import re
import sys

from playwright.sync_api import expect, sync_playwright

args = json.loads(sys.argv[1])
shots = pathlib.Path(args["screenshots"])
shots.mkdir(parents=True, exist_ok=True)
sign_in_url = re.compile(r"^http://auth\.tollgate\.test:\d+/console/sign-in\?return_to=")

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path=args["chromium"],
        args=["--host-resolver-rules=MAP *.tollgate.test 127.0.0.1", "--no-sandbox"],
    )
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.set_default_timeout(10_000)
    expect.set_options(timeout=10_000)

    page.goto(args["service"])
    expect(page).to_have_url(sign_in_url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.screenshot(path=shots / "1-sign-in.png", full_page=True)

    page.get_by_label("Organisation").fill(args["tenant"])
    page.get_by_label("Email").fill(args["email"])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("wrong")
    page.screenshot(path=shots / "2-sign-in-refused.png", full_page=True)

    page.get_by_label("Password").fill(args["password"])
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(args["service"])
    expect(page.locator("#user")).to_have_text(args["user_id"])
    expect(page.locator("#socket")).to_have_text("pong:ping")
    page.screenshot(path=shots / "3-service-signed-in.png", full_page=True)

    page.goto(args["console"])
    expect(page.get_by_text("Signed in to")).to_contain_text(args["tenant"])
    expect(page.locator("#balances")).to_contain_text(args["pool_credits"])
    expect(page.locator("#usage-summary")).to_contain_text("Jobs today 0")
    expect(page.get_by_role("img", name=re.compile("^Jobs per day"))).to_be_visible()
    page.screenshot(path=shots / "4-overview.png", full_page=True)

    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name", exact=True).fill("from the browser")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#secret")).to_contain_text("tg_")
    row = page.locator('tr[data-key="from the browser"]')
    expect(row.locator(".state")).to_have_text("active")
    page.screenshot(path=shots / "5-api-keys.png", full_page=True)
    row.get_by_role("button", name="Revoke from the browser").click()
    expect(page.locator('tr[data-key="from the browser"] .state')).to_have_text("revoked")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))

    page.goto(args["service"])
    expect(page).to_have_url(sign_in_url)
    browser.close()

print("browser: signed in through the proxy, used the page and its socket, the overview and the keys, signed out")
