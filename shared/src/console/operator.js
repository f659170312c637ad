// The platform operator's console: tenants, plans and the email outbox, each panel one
// call of the admin API. The operator's access token lives in this tab's sessionStorage
// (see shared/src/console/operator.rs for why) and is sent as a bearer token.

import { call, el, failure, labelled, number, panel, table } from "./ui.js";

const view = document.getElementById("view");
const nav = document.querySelector("nav[aria-label=Operator]");
const TOKEN = "tollgate_operator_token";
const PLANS = ["FREE", "PRO", "ENTERPRISE"];

async function api(method, path, body) {
  try {
    return await call(method, path, body, { Authorization: `Bearer ${sessionStorage.getItem(TOKEN)}` });
  } catch (error) {
    // An expired or revoked token: sign in again.
    if (error.status === 401) {
      sessionStorage.removeItem(TOKEN);
      signIn("Your operator session has ended; sign in again.");
    }
    throw error;
  }
}

function signIn(notice) {
  nav.hidden = true;
  const problem = el("div", { "aria-live": "polite" }, notice ? el("p", { role: "status" }, notice) : null);
  const form = el("form", { id: "operator-sign-in" },
    ...labelled("operator-email", "Email", el("input", { id: "operator-email", name: "email", type: "email", autocomplete: "username", required: "" })),
    ...labelled("operator-password", "Password", el("input", { id: "operator-password", name: "password", type: "password", autocomplete: "current-password", required: "" })),
    el("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const session = await call("POST", "admin/login", { email: form.email.value, password: form.password.value });
      sessionStorage.setItem(TOKEN, session.access_token);
      show();
    } catch (error) {
      problem.replaceChildren(failure(error));
    }
  });
  view.replaceChildren(el("h2", {}, "Sign in as a platform operator"), problem, form);
}

function signOutButton() {
  return el("button", { type: "button", class: "secondary", onclick: () => {
    sessionStorage.removeItem(TOKEN);
    signIn("Signed out.");
  } }, "Sign out");
}

// Acting on one tenant, in `place`: status, plan and overrides, credits. After each
// action the list and this panel are drawn again from the API, saying what happened.
function tenantActions(tenant, reload, place, notice) {
  const said = el("div", { "aria-live": "polite" }, notice ? el("p", { role: "status" }, notice) : null);
  const act = (work, done) => async (event) => {
    event.preventDefault();
    try {
      await work();
      const message = done();
      const fresh = (await reload()).find((row) => row.id === tenant.id) || tenant;
      place.replaceChildren(tenantActions(fresh, reload, place, message));
    } catch (error) {
      said.replaceChildren(failure(error));
    }
  };
  // One key per drawn form: a second click of the same grant is one grant. (Not
  // crypto.randomUUID, which needs a secure context: development runs on plain HTTP.)
  const grantKey = Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, "0")).join("");
  const suspended = tenant.status === "suspended";
  const status = el("button", { type: "button", class: "secondary",
    onclick: act(() => api("POST", `admin/tenants/${tenant.id}/${suspended ? "reactivate" : "suspend"}`),
      () => `${tenant.slug} is ${suspended ? "active again" : "suspended"}.`) },
    suspended ? `Reactivate ${tenant.slug}` : `Suspend ${tenant.slug}`);
  const plan = el("form", { class: "plan" },
    ...labelled(`plan-${tenant.id}`, "Plan", el("select", { id: `plan-${tenant.id}`, name: "plan" },
      ...PLANS.map((code) => el("option", { value: code, ...(code === tenant.plan ? { selected: "" } : {}) }, code)))),
    ...labelled(`overrides-${tenant.id}`, "Overrides (JSON, e.g. {\"max_workers\": 5})",
      el("input", { id: `overrides-${tenant.id}`, name: "overrides", placeholder: "{}" })),
    el("button", { type: "submit" }, "Set plan"));
  plan.addEventListener("submit", act(async () => {
    const text = plan.overrides.value.trim();
    let overrides;
    try {
      overrides = text ? JSON.parse(text) : undefined;
    } catch {
      throw new Error("The overrides are not JSON.");
    }
    await api("PUT", `admin/tenants/${tenant.id}/plan`, { plan: plan.plan.value, overrides });
  }, () => `${tenant.slug} is on ${plan.plan.value}.`));
  const grant = el("form", { class: "grant" },
    ...labelled(`grant-${tenant.id}`, "Credits to grant", el("input", { id: `grant-${tenant.id}`, name: "amount", type: "number", min: "1", required: "" })),
    ...labelled(`reason-${tenant.id}`, "Reason", el("input", { id: `reason-${tenant.id}`, name: "reason", placeholder: "goodwill" })),
    el("button", { type: "submit" }, "Grant credits"));
  grant.addEventListener("submit", act(async () => {
    await api("POST", `admin/tenants/${tenant.id}/credits/grants`, {
      amount: Number(grant.amount.value),
      reason: grant.reason.value || undefined,
      idempotency_key: grantKey,
    });
  }, () => `Granted ${Number(grant.amount.value).toLocaleString("en")} credits to ${tenant.slug}.`));
  // The operator vouches that the tenant owns an email domain it added for single sign-on.
  const domain = el("form", { class: "domain" },
    ...labelled(`domain-${tenant.id}`, "Approve an SSO email domain", el("input", { id: `domain-${tenant.id}`, name: "domain", required: "", placeholder: "example.com" })),
    el("button", { type: "submit" }, "Approve domain"));
  domain.addEventListener("submit", act(async () => {
    await api("POST", `admin/tenants/${tenant.id}/sso/domains/${encodeURIComponent(domain.domain.value.trim().toLowerCase())}/approve`);
  }, () => `${domain.domain.value.trim().toLowerCase()} is proven for ${tenant.slug}.`));
  return panel(`Manage ${tenant.slug}`, status, plan, grant, domain, said);
}

async function tenants() {
  const results = el("div", {});
  const manage = el("div", { id: "manage" });
  const search = el("form", { id: "tenant-search", role: "search" },
    ...labelled("tenant-query", "Find a tenant (slug, name or domain)", el("input", { id: "tenant-query", name: "q", type: "search" })),
    el("button", { type: "submit" }, "Search"));
  const load = async () => {
    const query = search.q.value.trim();
    try {
      const page = await api("GET", `admin/tenants?limit=50${query ? `&q=${encodeURIComponent(query)}` : ""}`);
      showTenants(page.data);
      return page.data;
    } catch (error) {
      results.replaceChildren(failure(error));
      return [];
    }
  };
  const showTenants = (data) => results.replaceChildren(data.length === 0 ? el("p", {}, "No tenant matches.") : table(
    ["Tenant", "Name", "Plan", "Status", "People", ""],
    data.map((tenant) => el("tr", { "data-tenant": tenant.slug },
      el("td", {}, tenant.slug), el("td", {}, tenant.name), el("td", { class: "plan" }, tenant.plan),
      el("td", { class: "status" }, tenant.status), el("td", {}, tenant.users),
      el("td", {}, el("button", { type: "button", class: "secondary", "aria-label": `Manage ${tenant.slug}`,
        onclick: () => manage.replaceChildren(tenantActions(tenant, load, manage)) }, "Manage")))),
    { id: "tenants" }));
  search.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  view.replaceChildren(el("h2", {}, "Tenants"), panel("Search", search, results), manage);
  await load();
}

async function plans() {
  let list;
  try {
    list = await api("GET", "plans");
  } catch (error) {
    return view.replaceChildren(el("h2", {}, "Plans"), failure(error));
  }
  const said = el("div", { "aria-live": "polite" });
  const price = el("form", { id: "plan-price" },
    ...labelled("price-plan", "Plan", el("select", { id: "price-plan", name: "plan" }, ...list.data.map((plan) => el("option", { value: plan.code }, plan.name)))),
    ...labelled("price-id", "Stripe price id (empty removes it)", el("input", { id: "price-id", name: "price", placeholder: "price_..." })),
    el("button", { type: "submit" }, "Save price"));
  price.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PUT", `admin/plans/${price.plan.value}/stripe-price`, { price_id: price.price.value.trim() || null });
      said.replaceChildren(el("p", { role: "status" }, "Saved."));
    } catch (error) {
      said.replaceChildren(failure(error));
    }
  });
  view.replaceChildren(el("h2", {}, "Plans"),
    panel("Plans and their limits", table(
      ["Plan", "Requests a minute", "People", "API keys", "Credits a month", "Priority"],
      list.data.map((plan) => el("tr", { "data-plan": plan.code },
        el("td", {}, plan.name), el("td", {}, number(plan.limits.requests_per_minute)),
        el("td", {}, number(plan.limits.max_users)), el("td", {}, number(plan.limits.max_api_keys)),
        el("td", {}, number(plan.limits.monthly_credits)), el("td", {}, plan.limits.priority))))),
    panel("Checkout price", price, said));
}

async function emails() {
  const list = el("div", {});
  const filter = el("form", { id: "email-filter" },
    ...labelled("email-status", "Status", el("select", { id: "email-status", name: "status" },
      ...["", "pending", "sent", "failed"].map((status) => el("option", { value: status }, status || "all")))),
    el("button", { type: "submit" }, "Show"));
  const load = async () => {
    const status = filter.status.value;
    try {
      const page = await api("GET", `admin/emails?limit=50${status ? `&status=${status}` : ""}`);
      list.replaceChildren(
        el("p", { id: "delivery" }, page.delivery_configured ? "An email provider is configured." : "No email provider is configured: mails wait here."),
        page.data.length === 0 ? el("p", {}, "No mail.") : table(
          ["Queued", "To", "Template", "Status", "Attempts", "Last error"],
          page.data.map((mail) => el("tr", { "data-template": mail.template },
            el("td", {}, mail.created_at), el("td", {}, mail.recipient), el("td", {}, mail.template),
            el("td", { class: "status" }, mail.status), el("td", {}, mail.attempts), el("td", {}, mail.last_error || ""))),
          { id: "emails" }));
    } catch (error) {
      list.replaceChildren(failure(error));
    }
  };
  filter.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  view.replaceChildren(el("h2", {}, "Email outbox"), panel("Mails", filter, list));
  await load();
}

const pages = { tenants, plans, emails };

async function showPage() {
  if (!sessionStorage.getItem(TOKEN)) return signIn();
  nav.hidden = false;
  if (!nav.querySelector("button")) nav.append(" ", signOutButton());
  const name = location.hash.slice(1) || "tenants";
  for (const link of nav.querySelectorAll("a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  view.setAttribute("aria-busy", "true");
  await (pages[name] || tenants)().catch((error) => {
    if (error.status !== 401) view.append(failure(error));
  });
  view.setAttribute("aria-busy", "false");
}

// One page at a time: a page still loading when another is asked for finishes first, so the
// page left on screen is the last one asked for, not the slowest.
let showing = Promise.resolve();
function show() {
  showing = showing.then(showPage, showPage);
  return showing;
}

window.addEventListener("hashchange", show);
show();
