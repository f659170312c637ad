"""A person at a browser signs in with the organisation's identity provider, behind Traefik.

At the organisation's own subdomain the console's sign-in page offers its provider; the
button goes through Tollgate to the provider (a real OpenID provider on loopback, which
signs the person the test named in) and back to Tollgate's callback, which opens the
session and sends the browser on to the service it was going to, whose page and socket
pass forward-auth. Every wait is bounded by Playwright's timeout. Screenshots go to the
directory given.

Usage: python sso.py '<json>' with keys chromium, sign_in (the console's sign-in URL at the
tenant's subdomain, with return_to), service, provider_name, screenshots.
"""


from playwright.sync_api import expect, sync_playwright

from phone import open_page, visit_arguments

args, shots = visit_arguments()

with sync_playwright() as playwright:
    browser, page = open_page(playwright, args["chromium"])
    try:
        page.goto(args["sign_in"])
        button = page.get_by_role("link", name=f"Sign in with {args['provider_name']}")
        expect(button).to_be_visible()
        page.screenshot(path=shots / "30-sign-in-with-sso.png", full_page=True)
        button.click()
        expect(page).to_have_url(args["service"])
        expect(page.locator("#user")).not_to_have_text("nobody")
        expect(page.locator("#socket")).to_have_text("pong:ping")
        page.screenshot(path=shots / "31-service-after-sso.png", full_page=True)
    except Exception:
        page.screenshot(path=shots / "failed-sso.png", full_page=True)
        raise
    browser.close()

print("browser: signed in through the organisation's identity provider and back to the service")
