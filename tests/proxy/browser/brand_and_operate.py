"""A reseller and the platform's operator at a browser, behind Traefik.

The reseller creates its organisation on the console's sign-up page, brands it (a light
accent colour refused for its contrast first), reads its billing page (the plan; payments
refused clearly on a deployment without Stripe), adds a provider key and a model of its
own on the LLM page, sees its workers' queue and runners, and signs out. At its own
subdomain the sign-in page then wears the brand and asks for no organisation; it signs in
there. The operator signs in to /console/admin, finds the reseller, grants it credits,
moves it to another plan, suspends and reinstates it, approves the email domain it added
for single sign-on, and reads the plans and the email
outbox (the reseller's verification mail, waiting: no provider here). Every wait is bounded
by Playwright's timeout. Screenshots of each page go to the directory given.

Usage: python brand_and_operate.py '<json>' with keys chromium, console (the platform's
console URL), tenant_console (the same at the reseller's subdomain, which is slug
"pixel"), email, password, operator_email, operator_password, screenshots.
"""

import re

from playwright.sync_api import expect, sync_playwright

from phone import open_page, visit_arguments

args, shots = visit_arguments()
LOGO = (
    "data:image/svg+xml;base64,"
    "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSI0MCIgaGVpZ2h0PSI0MCI+"
    "PHJlY3Qgd2lkdGg9IjQwIiBoZWlnaHQ9IjQwIiBmaWxsPSIjMGI1ZDFlIi8+PC9zdmc+"
)
ACCENT_RGB = "rgb(11, 93, 30)"

with sync_playwright() as playwright:
    browser, page = open_page(playwright, args["chromium"])
    try:

        # Sign up at the platform's console.
        page.goto(args["console"] + "/sign-up")
        expect(page.get_by_role("heading", name="Create an organisation")).to_be_visible()
        page.get_by_label("Organisation").fill("Pixel Forge")
        page.get_by_label("Short name").fill("pixel")
        page.get_by_label("Your name").fill("Pia Forge")
        page.get_by_label("Email").fill(args["email"])
        page.get_by_label("New password").fill(args["password"])
        page.screenshot(path=shots / "20-sign-up.png", full_page=True)
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_text("Signed in to")).to_contain_text("pixel")

        # The brand: a light accent first, refused for its contrast.
        page.get_by_role("link", name="Organisation").click()
        page.get_by_label("Brand name").fill("Pixel Forge Studio")
        page.get_by_label("Logo").fill(LOGO)
        page.get_by_label("Accent colour").fill("#ffeb3b")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("contrast")
        page.get_by_label("Accent colour").fill("#0b5d1e")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("Saved")
        page.reload()
        expect(page.locator("#brand-name")).to_have_text("Pixel Forge Studio")
        expect(page.get_by_role("button", name="Save", exact=True)).to_have_css("background-color", ACCENT_RGB)
        page.screenshot(path=shots / "21-organisation.png", full_page=True)

        # Single sign-on: a domain to prove; this deployment reads no DNS, so it says whom to ask.
        page.get_by_label("Email domain whose people join").fill("pixelforge.test")
        page.get_by_role("button", name="Add domain").click()
        proof = page.locator('tr[data-domain="pixelforge.test"]')
        expect(proof).to_contain_text("_tollgate-verification.pixelforge.test = tollgate-verification=")
        proof.get_by_role("button", name="Verify pixelforge.test").click()
        expect(page.get_by_role("alert")).to_contain_text("ask the operator")
        page.screenshot(path=shots / "21b-single-sign-on.png", full_page=True)

        # Billing: the plan, and payments refused clearly without Stripe.
        page.get_by_role("link", name="Billing").click()
        expect(page.locator("#plan")).to_contain_text("FREE")
        expect(page.locator("#invoices")).to_contain_text("not paid through Stripe yet")
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("alert")).to_contain_text("PRO cannot be bought")
        page.get_by_role("button", name="Buy credits").click()
        expect(page.get_by_role("alert")).to_contain_text("payments are not configured")
        page.screenshot(path=shots / "22-billing.png", full_page=True)

        # The LLM gateway of its own: a provider key (the secret never shown again), a model.
        page.get_by_role("link", name="LLM").click()
        page.get_by_label("Name", exact=True).fill("house vLLM")
        page.get_by_label("API base").fill("http://127.0.0.1:9/v1")
        page.get_by_label("API key").fill("sk-house-0123456789")
        page.get_by_role("button", name="Add provider key").click()
        key = page.locator('tr[data-provider-key="house vLLM"]')
        expect(key).to_contain_text("…6789")
        expect(page.get_by_text("sk-house-0123456789")).to_have_count(0)
        page.get_by_label("Model name").fill("house-llama")
        page.get_by_label("The provider's name of the model").fill("meta-llama/Llama-3.1-8B-Instruct")
        page.get_by_label("Credits per million prompt tokens").fill("100")
        page.get_by_label("Credits per million completion tokens").fill("300")
        page.get_by_role("button", name="Add model").click()
        expect(page.locator('tr[data-own-model="house-llama"]')).to_contain_text("100 / 300")
        expect(page.locator('#models tr[data-model="house-llama"]')).to_be_visible()
        page.screenshot(path=shots / "23-llm-admin.png", full_page=True)

        page.get_by_role("link", name="Workers").click()
        pool = page.locator('tr[data-worker="default"]')
        expect(pool.locator(".online")).to_have_text("0")
        expect(pool.locator(".queue")).to_have_text("0 / 0")
        page.screenshot(path=shots / "24-workers.png", full_page=True)
        page.get_by_role("button", name="Sign out").click()

        # At its own subdomain the sign-in page wears the brand and the domain names the tenant.
        page.goto(args["tenant_console"] + "/sign-in")
        expect(page.locator("#brand-name")).to_have_text("Pixel Forge Studio")
        expect(page.locator("img.logo")).to_be_visible()
        expect(page).to_have_title("Sign in · Pixel Forge Studio")
        expect(page.get_by_label("Organisation")).to_have_count(0)
        expect(page.get_by_role("button", name="Sign in")).to_have_css("background-color", ACCENT_RGB)
        page.screenshot(path=shots / "25-branded-sign-in.png", full_page=True)
        page.get_by_label("Email").fill(args["email"])
        page.get_by_label("Password").fill(args["password"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in to")).to_contain_text("pixel")

        # The operator.
        operator = browser.new_page(viewport={"width": 1024, "height": 900})
        operator.goto(args["console"] + "/admin")
        expect(operator.get_by_role("heading", name="Sign in as a platform operator")).to_be_visible()
        operator.get_by_label("Email").fill(args["operator_email"])
        operator.get_by_label("Password").fill("not the password")
        operator.get_by_role("button", name="Sign in").click()
        expect(operator.get_by_role("alert")).to_contain_text("wrong")
        operator.get_by_label("Password").fill(args["operator_password"])
        operator.get_by_role("button", name="Sign in").click()
        operator.get_by_label("Find a tenant").fill("PIXEL")
        operator.get_by_role("button", name="Search").click()
        row = operator.locator('#tenants tr[data-tenant="pixel"]')
        expect(operator.locator("#tenants tbody tr")).to_have_count(1)
        row.get_by_role("button", name="Manage pixel").click()
        operator.get_by_label("Credits to grant").fill("250")
        operator.get_by_label("Reason").fill("launch gift")
        operator.get_by_role("button", name="Grant credits").click()
        expect(operator.get_by_role("status")).to_have_text("Granted 250 credits to pixel.")
        operator.get_by_label("Plan", exact=True).select_option("PRO")
        operator.get_by_label("Overrides").fill('{"max_workers": 4}')
        operator.get_by_role("button", name="Set plan").click()
        expect(operator.get_by_role("status")).to_have_text("pixel is on PRO.")
        expect(row.locator(".plan")).to_have_text("PRO")
        operator.get_by_role("button", name="Suspend pixel").click()
        expect(row.locator(".status")).to_have_text("suspended")
        operator.screenshot(path=shots / "26-operator-tenants.png", full_page=True)
        operator.get_by_role("button", name="Reactivate pixel").click()
        expect(row.locator(".status")).to_have_text("active")
        operator.get_by_label("Approve an SSO email domain").fill("pixelforge.test")
        operator.get_by_role("button", name="Approve domain").click()
        expect(operator.get_by_role("status")).to_have_text("pixelforge.test is proven for pixel.")

        operator.get_by_role("link", name="Plans").click()
        expect(operator.locator('tr[data-plan="PRO"]')).to_be_visible()
        operator.screenshot(path=shots / "27-operator-plans.png", full_page=True)
        operator.get_by_role("link", name="Email outbox").click()
        expect(operator.locator("#delivery")).to_contain_text("No email provider is configured")
        expect(operator.locator('#emails tr[data-template="verify_email"]').first).to_contain_text(args["email"])
        operator.screenshot(path=shots / "28-operator-outbox.png", full_page=True)

        # The reseller's ledger shows the operator's grant, and its domain is proven.
        page.goto(args["tenant_console"] + "#credits")
        expect(page.locator('#ledger tr[data-kind="grant"]').first).to_contain_text("launch gift")
        page.goto(args["tenant_console"] + "#settings")
        expect(page.locator('tr[data-domain="pixelforge.test"]')).to_contain_text("proven (operator)")
    except Exception:
        opened_pages = [opened for context in browser.contexts for opened in context.pages]
        for number, opened in enumerate(opened_pages):
            opened.screenshot(path=shots / f"failed-{number}.png", full_page=True)
        raise
    browser.close()

print("browser: a reseller signed up, branded its console, and an operator managed it")
