"""A person at a browser: opens a service behind Traefik, is sent to Tollgate's sign-in page,
signs in, lands back on the service's page whose WebSocket answers, sees the console's
overview (credits, usage and its chart), creates an API key (shown once) and revokes it,
opens the LLM page (the models it may call, no calls yet), reads the ledger and sets the
alert thresholds, adds a webhook endpoint and sends it a test
(and again), filters and verifies the audit log,
invites a person, moves a bot to another worker, creates a runner token (shown once) and
with it plays the job's runner while it watches the job progress to done, signs out, and is sent to sign in again. Then a member signs in and
finds no admin pages. Driven by Playwright with Debian's Chromium; every wait is
bounded by Playwright's timeout. Screenshots of each page go to the directory given.

Usage: python sign_in.py '<json>' with keys chromium, service, console, tenant, email,
password, user_id, pool_credits (as the page writes them), member_email, member_password,
bot, default_worker, other_worker, job_id, api (the API's base through the proxy),
webhook_url (a receiver that answers 200), screenshots.
"""

import json
import re
import urllib.request

from playwright.sync_api import expect, sync_playwright

from phone import open_page, visit_arguments

args, shots = visit_arguments()
sign_in_url = re.compile(r"^http://auth\.tollgate\.test:\d+/console/sign-in\?return_to=")


runner_token = None


def runner(path, body):
    """What a gpu-runner sends Tollgate: `path` of the API with the runner token the
    console issued."""
    request = urllib.request.Request(
        args["api"] + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": "Bearer " + runner_token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")

with sync_playwright() as playwright:
    browser, page = open_page(playwright, args["chromium"])

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
    expect(page.locator("#usage-summary")).to_contain_text("Jobs today 1, this month 1")
    expect(page.get_by_role("img", name=re.compile("^Jobs per day"))).to_be_visible()
    expect(page.locator("#alerts")).to_have_text("No open alerts.")
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

    page.get_by_role("link", name="LLM").click()
    expect(page.get_by_role("heading", name="LLM gateway")).to_be_visible()
    expect(page.locator("#calls")).to_have_text("No calls yet.")
    expect(page.locator("#models")).to_be_visible()
    page.screenshot(path=shots / "5b-llm.png", full_page=True)

    page.get_by_role("link", name="Credits").click()
    expect(page.locator('#ledger tr[data-kind="grant"]')).to_contain_text("+5000")
    page.get_by_label("Alert at these percentages used").fill("50 90 100")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    page.screenshot(path=shots / "6-credits.png", full_page=True)

    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill(args["webhook_url"])
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.locator("#endpoint-secret")).to_contain_text("whsec_")
    endpoint = page.locator(f'#endpoints tr[data-url="{args["webhook_url"]}"]')
    endpoint.get_by_role("button", name="Send a test").click()
    delivery = page.locator('#deliveries tr[data-event="webhook.test"]')
    expect(delivery.locator(".status")).to_have_text("succeeded")
    delivery.get_by_role("button", name="Redeliver").click()
    expect(page.locator('#deliveries tr[data-event="webhook.test"]')).to_contain_text("200")
    page.screenshot(path=shots / "8-webhooks.png", full_page=True)

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action (or category.*)").fill("auth.*")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator('#audit tr[data-action="auth.login"]').first).to_be_visible()
    page.get_by_role("button", name="Verify the log").click()
    expect(page.locator("#audit-verdict")).to_contain_text("The log is intact")
    page.screenshot(path=shots / "7-audit.png", full_page=True)

    page.get_by_role("link", name="People").click()
    page.get_by_label("Email", exact=True).fill("new.person@acme.test")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_role("button", name="Invite").click()
    expect(page.locator('#invitations tr[data-email="new.person@acme.test"]')).to_contain_text("viewer")
    page.screenshot(path=shots / "9-people.png", full_page=True)

    page.get_by_role("link", name="Workers").click()
    bot = page.locator(f'tr[data-bot="{args["bot"]}"]')
    expect(bot.locator(".state")).to_have_text(args["default_worker"])
    bot.get_by_label(f'Worker of {args["bot"]}').select_option(label=args["other_worker"])
    expect(bot.locator(".state")).to_have_text(args["other_worker"])
    page.get_by_label("Pool", exact=True).select_option(label=args["default_worker"])
    page.get_by_label("GPU host").fill("gpu-1")
    page.get_by_role("button", name="Create runner token").click()
    expect(page.locator("#runner-token")).to_contain_text("tgr_")
    runner_token = page.locator("#runner-token").inner_text()
    page.screenshot(path=shots / "10-workers.png", full_page=True)

    page.get_by_role("link", name="Jobs").click()
    job = page.locator(f'tr[data-job="{args["job_id"]}"]')
    expect(job.locator(".status")).to_have_text("queued")
    claimed = runner("runner/claim", {"free_vram_mb": 24576})
    assert claimed["job_id"] == args["job_id"], claimed
    runner(f"runner/jobs/{claimed['job_id']}/progress",
           {"lease_id": claimed["lease_id"], "progress": 40, "current_node": "3"})
    expect(job.locator(".status")).to_have_text("running")
    expect(job).to_contain_text("40%")
    page.screenshot(path=shots / "11-job-running.png", full_page=True)
    runner(f"runner/jobs/{claimed['job_id']}/finish",
           {"lease_id": claimed["lease_id"], "status": "succeeded", "gpu_seconds": 12,
            "outputs": [{"filename": "out_00001_.png", "type": "output"}]})
    expect(job.locator(".status")).to_have_text("succeeded")
    expect(job).to_contain_text("out_00001_.png")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))

    page.goto(args["service"])
    expect(page).to_have_url(sign_in_url)

    # A member signs in at the console itself, and finds no admin pages.
    member = browser.new_page(viewport={"width": 390, "height": 844})
    member.goto(args["console"])
    expect(member).to_have_url(re.compile(r"/console/sign-in$"))
    member.get_by_label("Organisation").fill(args["tenant"])
    member.get_by_label("Email").fill(args["member_email"])
    member.get_by_label("Password").fill(args["member_password"])
    member.get_by_role("button", name="Sign in").click()
    expect(member.get_by_text("Signed in to")).to_contain_text("member")
    expect(member.get_by_role("link", name="Jobs")).to_be_visible()
    expect(member.get_by_role("link", name="People")).to_have_count(0)
    expect(member.get_by_role("link", name="Workers")).to_have_count(0)
    expect(member.get_by_role("link", name="Audit log")).to_have_count(0)
    expect(member.get_by_role("link", name="Webhooks")).to_have_count(0)
    member.goto(args["console"] + "#users")
    expect(member.get_by_role("alert")).to_contain_text("owners and admins")
    member.screenshot(path=shots / "12-member-no-admin.png", full_page=True)
    browser.close()

print("browser: signed in through the proxy, used the page and its socket, the overview and the keys, signed out")
