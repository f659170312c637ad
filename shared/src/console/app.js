// The console's pages in the browser: each panel is one call of Tollgate's own API, made
// with the session cookie and, when it changes state, the session's CSRF token.

import { call, el, failure, number, panel, scrolling, table, labelled } from "./ui.js";

const view = document.getElementById("view");

function csrfToken() {
  const pair = document.cookie.split("; ").find((cookie) => cookie.startsWith("tollgate_csrf="));
  return pair ? decodeURIComponent(pair.slice("tollgate_csrf=".length)) : "";
}

// Tollgate's own API, or the OpenAI-shaped gateway under /v1/, with the session cookie
// and the session's CSRF token.
const api = (method, path, body) => call(method, path, body, { "X-CSRF-Token": csrfToken() });

// A bar per day, drawn as SVG: no library, nothing loaded.
function chart(label, history) {
  const width = 320, height = 120, gap = 2;
  const max = Math.max(1, ...history.map((day) => day.used));
  const bar = (width - gap * history.length) / Math.max(1, history.length);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label} per day: ${history.map((day) => `${day.date} ${day.used}`).join(", ")}`);
  history.forEach((day, index) => {
    const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const h = Math.round((day.used / max) * (height - 4));
    rect.setAttribute("x", index * (bar + gap));
    rect.setAttribute("y", height - h);
    rect.setAttribute("width", bar);
    rect.setAttribute("height", h);
    rect.setAttribute("class", "bar");
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = `${day.date}: ${day.used}`;
    rect.append(title);
    svg.append(rect);
  });
  return el("figure", {}, svg, el("figcaption", {}, `${label} per day this month`));
}

async function balancePanel() {
  try {
    const credits = await api("GET", "credits");
    const row = (name, account) =>
      el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, number(account.remaining)),
        el("td", {}, number(account.used)), el("td", {}, number(account.reserved)),
        el("td", {}, account.blocked ? "blocked" : "open"));
    return panel("Credits", scrolling(
      el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, ""), el("th", { scope: "col" }, "Remaining"),
          el("th", { scope: "col" }, "Used"), el("th", { scope: "col" }, "Held"), el("th", { scope: "col" }, "State"))),
        el("tbody", { id: "balances" }, row("Organisation", credits.pool), row("You", credits.user)))));
  } catch (error) {
    return panel("Credits", failure(error));
  }
}

async function usagePanel() {
  try {
    const usage = await api("GET", "usage");
    const jobs = usage.metrics.jobs;
    const gpu = usage.metrics.gpu_seconds;
    return panel("Usage",
      el("p", { id: "usage-summary" },
        `Jobs today ${jobs.day.used}, this month ${jobs.month.used}; `,
        `projected by month end ${Math.round(jobs.projected_month_end)}.`),
      el("p", {}, `GPU seconds this month ${gpu.month.used}, projected ${Math.round(gpu.projected_month_end)}.`),
      chart("Jobs", jobs.daily_history));
  } catch (error) {
    return panel("Usage", failure(error));
  }
}

async function alertsPanel() {
  try {
    const alerts = (await api("GET", "credits/alerts")).data;
    const open = alerts.filter((alert) => !alert.resolved_at);
    return panel("Alerts", open.length === 0 ? el("p", { id: "alerts" }, "No open alerts.") : el("ul", { id: "alerts" },
      open.map((alert) => el("li", { class: alert.threshold >= 100 ? "alert" : "" },
        `${alert.account_id.startsWith("pool") ? "The organisation" : "You"}: ${alert.threshold}% of the credits used`,
        alert.threshold >= 100 ? " (spending is blocked until credits are added)" : "",
        ` since ${alert.created_at}.`))));
  } catch (error) {
    return panel("Alerts", failure(error));
  }
}

async function overview() {
  const panels = await Promise.all([balancePanel(), usagePanel(), alertsPanel()]);
  view.replaceChildren(el("h1", {}, "Overview"), ...panels);
}

async function keys() {
  const heading = el("h1", {}, "API keys");
  const shown = el("div", { id: "new-key", "aria-live": "polite" });
  const form = el("form", { id: "create-key" },
    el("label", { for: "key-name" }, "Name"),
    el("input", { id: "key-name", name: "name", required: "" }),
    el("label", { for: "key-scopes" }, "Scopes (space-separated)"),
    el("input", { id: "key-scopes", name: "scopes", value: "jobs:read" }),
    el("button", { type: "submit" }, "Create key"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const scopes = form.scopes.value.split(/\s+/).filter(Boolean);
      const key = await api("POST", "api-keys", { name: form.name.value, scopes });
      shown.replaceChildren(el("p", {}, "Copy this key now: it is shown once."),
        el("output", { id: "secret", class: "secret" }, key.key));
      form.reset();
      list.replaceChildren(await keyTable());
    } catch (error) {
      shown.replaceChildren(failure(error));
    }
  });
  const list = el("div", {}, await keyTable());
  view.replaceChildren(heading, panel("New key", form, shown), panel("Your keys", list));
}

async function keyTable() {
  try {
    const page = await api("GET", "api-keys");
    const rows = page.data.map((key) => {
      const state = key.revoked_at ? "revoked" : "active";
      const revoke = key.revoked_at ? "" : el("button", {
        type: "button", class: "secondary", "aria-label": `Revoke ${key.name}`,
        onclick: async () => {
          await api("DELETE", `api-keys/${key.id}`);
          document.querySelector("#keys-table").replaceWith(await keyTable());
        },
      }, "Revoke");
      return el("tr", { "data-key": key.name },
        el("td", {}, key.name), el("td", {}, el("code", {}, `${key.prefix}…`)),
        el("td", {}, key.scopes.join(" ")), el("td", {}, key.last_used_at || "never"),
        el("td", { class: "state" }, state), el("td", {}, revoke));
    });
    return el("div", { id: "keys-table" }, table(["Name", "Key", "Scopes", "Last used", "State", ""], rows));
  } catch (error) {
    return failure(error);
  }
}

// Pages for the organisation's owners and admins; the API refuses them to anyone else too.
const ADMIN_ROLES = ["owner", "admin"];
const role = view.dataset.role;
const isAdmin = ADMIN_ROLES.includes(role);

function adminOnly(title) {
  view.replaceChildren(el("h1", {}, title),
    el("p", { role: "alert", class: "alert" }, "This page is for the organisation's owners and admins."));
}

async function users() {
  if (!isAdmin) return adminOnly("People");
  const shown = el("div", { "aria-live": "polite" });
  const form = el("form", { id: "invite" },
    el("label", { for: "invite-email" }, "Email"),
    el("input", { id: "invite-email", name: "email", type: "email", required: "" }),
    el("label", { for: "invite-role" }, "Role"),
    el("select", { id: "invite-role", name: "role" },
      ...["member", "viewer", "admin"].map((name) => el("option", { value: name }, name))),
    el("button", { type: "submit" }, "Invite"));
  const lists = el("div", {});
  const refresh = async () => lists.replaceChildren(...(await Promise.all([peopleTable(), invitationTable()])));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", "invitations", { email: form.email.value, role: form.role.value });
      shown.replaceChildren(el("p", {}, `Invitation sent to ${form.email.value}.`));
      form.reset();
      await refresh();
    } catch (error) {
      shown.replaceChildren(failure(error));
    }
  });
  view.replaceChildren(el("h1", {}, "People"), panel("Invite someone", form, shown), lists);
  await refresh();
}

async function peopleTable() {
  try {
    const page = await api("GET", "users");
    return panel("Members", table(["Name", "Email", "Role", "Last sign-in"], page.data.map((user) => el("tr", {},
        el("td", {}, user.name), el("td", {}, user.email), el("td", {}, user.role), el("td", {}, user.last_login_at || "never")))));
  } catch (error) {
    return panel("Members", failure(error));
  }
}

async function invitationTable() {
  try {
    const page = await api("GET", "invitations");
    return panel("Invitations", table(["Email", "Role", "Expires"], page.data.map((invitation) => el("tr", { "data-email": invitation.email },
        el("td", {}, invitation.email), el("td", {}, invitation.role), el("td", {}, invitation.expires_at))), { id: "invitations" }));
  } catch (error) {
    return panel("Invitations", failure(error));
  }
}

async function workers() {
  if (!isAdmin) return adminOnly("Workers");
  const [pools, bots] = await Promise.all([api("GET", "workers"), api("GET", "bots")]).catch((error) => [null, error]);
  if (!pools) return view.replaceChildren(el("h1", {}, "Workers"), failure(bots));
  const names = Object.fromEntries(pools.data.map((worker) => [worker.id, worker.name]));
  const workerRows = pools.data.map((worker) => el("tr", { "data-worker": worker.name },
    el("td", {}, worker.name), el("td", {}, worker.default ? "default" : worker.shared ? "shared" : "dedicated"),
    el("td", {}, worker.gpu_type || "any"), el("td", {}, number(worker.max_concurrency)),
    el("td", { class: "online" }, worker.activity.runners_online),
    el("td", { class: "queue" }, `${worker.activity.queued} / ${worker.activity.running}`),
    el("td", {}, `${worker.activity.jobs_this_month} jobs, ${number(worker.activity.gpu_seconds_this_month)} GPU s`)));
  const botRows = bots.data.map((bot) => {
    const choose = el("select", { "aria-label": `Worker of ${bot.name}` },
      ...pools.data.map((worker) => el("option", { value: worker.id, ...(worker.id === bot.worker_id ? { selected: "" } : {}) }, worker.name)));
    const state = el("span", { class: "state", "aria-live": "polite" }, names[bot.worker_id] || bot.worker_id);
    choose.addEventListener("change", async () => {
      try {
        const moved = await api("PATCH", `bots/${bot.id}`, { worker_id: choose.value });
        state.textContent = names[moved.worker_id] || moved.worker_id;
      } catch (error) {
        state.replaceChildren(failure(error));
      }
    });
    return el("tr", { "data-bot": bot.name }, el("td", {}, bot.name), el("td", {}, state), el("td", {}, choose));
  });
  // A GPU host joins a pool of the organisation's own with a runner token, shown once.
  const own = pools.data.filter((worker) => !worker.shared);
  const issued = el("div", { "aria-live": "polite" });
  const tokenForm = el("form", { id: "new-runner-token" },
    el("label", { for: "token-worker" }, "Pool"),
    el("select", { id: "token-worker", name: "worker" },
      ...own.map((worker) => el("option", { value: worker.id }, worker.name))),
    el("label", { for: "token-name" }, "GPU host"),
    el("input", { id: "token-name", name: "host", required: "", placeholder: "gpu-1" }),
    el("button", { type: "submit" }, "Create runner token"));
  tokenForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const token = await api("POST", `workers/${tokenForm.worker.value}/runner-tokens`, { name: tokenForm.host.value });
      issued.replaceChildren(el("p", {}, "Give this token to the gpu-runner (GPU_RUNNER_TOKEN); it is shown once:"),
        el("output", { class: "secret", id: "runner-token" }, token.token));
      tokenForm.reset();
    } catch (error) {
      issued.replaceChildren(failure(error));
    }
  });
  const poolForm = el("form", { id: "new-pool" },
    el("label", { for: "pool-name" }, "New pool"),
    el("input", { id: "pool-name", name: "name", required: "" }),
    el("button", { type: "submit" }, "Create pool"));
  poolForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", "workers", { name: poolForm.name.value });
      await workers();
    } catch (error) {
      poolForm.append(failure(error));
    }
  });
  view.replaceChildren(el("h1", {}, "Workers"),
    panel("Worker pools", table(["Name", "Kind", "GPU", "Concurrency", "Runners online", "Queued / running", "This month"], workerRows), poolForm),
    panel("Runner tokens", tokenForm, issued),
    panel("Bots", table(["Bot", "Runs on", "Move to"], botRows)));
}

// Jobs refresh every two seconds while one is queued or running: their progress, live.
let jobsTimer = null;

async function jobs() {
  const list = el("div", { id: "jobs" });
  view.replaceChildren(el("h1", {}, "Jobs"), panel("Recent jobs", list));
  const refresh = async () => {
    try {
      const page = await api("GET", "jobs?limit=20");
      list.replaceChildren(table(["Job", "Status", "Progress", "Cost", "Outputs"], page.data.map((job) => el("tr", { "data-job": job.id },
          el("td", {}, el("code", {}, job.id.slice(-8))), el("td", { class: "status" }, job.status),
          el("td", {}, el("progress", { max: "100", value: job.progress, "aria-label": `Progress of ${job.id.slice(-8)}` }), ` ${job.progress}%`),
          el("td", {}, job.estimated_cost),
          el("td", {}, job.outputs.map((output) => output.url
            ? el("a", { href: output.url }, output.filename || "output")
            : output.filename || ""))))));
      const live = page.data.some((job) => job.status === "queued" || job.status === "running");
      if (live && location.hash === "#jobs") jobsTimer = setTimeout(refresh, 2000);
    } catch (error) {
      list.replaceChildren(failure(error));
    }
  };
  await refresh();
}

async function credits() {
  const account = isAdmin ? "pool" : "user";
  const ledger = el("div", {});
  const load = async () => {
    try {
      const page = await api("GET", `credits/ledger?account=${account}&limit=50`);
      ledger.replaceChildren(table(["When", "Movement", "Credits", "Reason"], page.data.map((entry) => el("tr", { "data-kind": entry.kind },
          el("td", {}, entry.created_at), el("td", {}, entry.kind),
          el("td", { class: "amount" }, entry.amount > 0 ? `+${entry.amount}` : entry.amount),
          el("td", {}, entry.reason || entry.model || ""))), { id: "ledger" }));
    } catch (error) {
      ledger.replaceChildren(failure(error));
    }
  };
  const panels = [panel(isAdmin ? "The organisation's ledger" : "Your ledger", ledger)];
  if (isAdmin) panels.unshift(await settingsPanel());
  view.replaceChildren(el("h1", {}, "Credits"), ...panels);
  await load();
}

async function settingsPanel() {
  let pool;
  try {
    pool = (await api("GET", "credits")).pool;
  } catch (error) {
    return panel("Alerts and top-up", failure(error));
  }
  const saved = el("div", { "aria-live": "polite" });
  const topup = pool.auto_topup;
  const form = el("form", { id: "credit-settings" },
    el("label", { for: "thresholds" }, "Alert at these percentages used"),
    el("input", { id: "thresholds", name: "thresholds", value: pool.alert_thresholds.join(" ") }),
    el("label", { for: "topup-enabled" }, el("input", { id: "topup-enabled", name: "enabled", type: "checkbox", ...(topup.enabled ? { checked: "" } : {}) }), " Top up automatically"),
    el("label", { for: "topup-threshold" }, "When credits remaining fall to"),
    el("input", { id: "topup-threshold", name: "threshold", type: "number", min: "0", value: topup.threshold }),
    el("label", { for: "topup-amount" }, "Buy this many credits"),
    el("input", { id: "topup-amount", name: "amount", type: "number", min: "0", value: topup.amount }),
    el("label", { for: "topup-max" }, "At most this many times a month"),
    el("input", { id: "topup-max", name: "max", type: "number", min: "0", value: topup.max_per_month }),
    el("button", { type: "submit" }, "Save"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PUT", "credits/settings", {
        alert_thresholds: form.thresholds.value.split(/[\s,]+/).filter(Boolean).map(Number),
        auto_topup: {
          enabled: form.enabled.checked,
          threshold: Number(form.threshold.value),
          amount: Number(form.amount.value),
          max_per_month: Number(form.max.value),
        },
      });
      saved.replaceChildren(el("p", { role: "status" }, "Saved."));
    } catch (error) {
      saved.replaceChildren(failure(error));
    }
  });
  return panel("Alerts and top-up", form, saved);
}

async function audit() {
  if (!isAdmin) return adminOnly("Audit log");
  const entries = el("div", {});
  const verdict = el("div", { "aria-live": "polite" });
  const filters = el("form", { id: "audit-filters" },
    el("label", { for: "audit-action" }, "Action (or category.*)"),
    el("input", { id: "audit-action", name: "action", placeholder: "auth.*" }),
    el("button", { type: "submit" }, "Filter"));
  const load = async () => {
    const action = filters.action.value.trim();
    const query = action ? `&action=${encodeURIComponent(action)}` : "";
    try {
      const page = await api("GET", `audit-logs?limit=50${query}`);
      entries.replaceChildren(table(["When", "Action", "Actor", "Target", "Address"], page.data.map((entry) => el("tr", { "data-action": entry.action },
          el("td", {}, entry.created_at), el("td", {}, entry.action),
          el("td", {}, `${entry.actor.type}${entry.actor.id ? " " + entry.actor.id.slice(-8) : ""}`),
          el("td", {}, entry.target ? `${entry.target.type} ${String(entry.target.id || "").slice(-8)}` : ""),
          el("td", {}, entry.ip || ""))), { id: "audit" }));
    } catch (error) {
      entries.replaceChildren(failure(error));
    }
  };
  filters.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  const check = el("button", { type: "button", onclick: async () => {
    try {
      const result = await api("GET", "audit-logs/verify");
      verdict.replaceChildren(el("p", { role: "status", id: "audit-verdict" }, result.valid
        ? `The log is intact: ${result.entries_checked} entries checked.`
        : `The log is broken at entry ${result.first_broken.sequence} (${result.first_broken.reason}).`));
    } catch (error) {
      verdict.replaceChildren(failure(error));
    }
  } }, "Verify the log");
  view.replaceChildren(el("h1", {}, "Audit log"), panel("Entries", filters, entries), panel("Tamper check", check, verdict));
  await load();
}

async function webhooks() {
  if (!isAdmin) return adminOnly("Webhooks");
  const shown = el("div", { "aria-live": "polite" });
  const endpoints = el("div", {});
  const deliveries = el("div", { id: "deliveries", "aria-live": "polite" });
  const form = el("form", { id: "new-endpoint" },
    el("label", { for: "endpoint-url" }, "URL"),
    el("input", { id: "endpoint-url", name: "url", type: "url", required: "", placeholder: "https://example.com/hooks/tollgate" }),
    el("label", { for: "endpoint-events" }, "Events (space-separated; group.* or *)"),
    el("input", { id: "endpoint-events", name: "events", value: "*" }),
    el("button", { type: "submit" }, "Add endpoint"));
  const showDeliveries = async (endpoint) => {
    try {
      const page = await api("GET", `webhooks/endpoints/${endpoint.id}/deliveries?limit=20`);
      deliveries.replaceChildren(el("h3", {}, `Deliveries to ${endpoint.url}`), table(["Event", "Status", "Attempts", "Last answer", ""], page.data.map((delivery) => el("tr", { "data-event": delivery.event_type },
          el("td", {}, delivery.event_type), el("td", { class: "status" }, delivery.status),
          el("td", {}, delivery.attempt_count),
          el("td", {}, delivery.last_status_code || delivery.last_error || ""),
          el("td", {}, el("button", { type: "button", class: "secondary", onclick: async () => {
            await api("POST", `webhooks/deliveries/${delivery.id}/redeliver`);
            await showDeliveries(endpoint);
          } }, "Redeliver"))))));
    } catch (error) {
      deliveries.replaceChildren(failure(error));
    }
  };
  const load = async () => {
    try {
      const page = await api("GET", "webhooks/endpoints");
      endpoints.replaceChildren(table(["URL", "Events", "State", ""], page.data.map((endpoint) => el("tr", { "data-url": endpoint.url },
          el("td", {}, endpoint.url), el("td", {}, endpoint.event_types.join(" ")),
          el("td", {}, endpoint.enabled ? "enabled" : `disabled${endpoint.disabled_reason ? ": " + endpoint.disabled_reason : ""}`),
          el("td", {},
            el("button", { type: "button", class: "secondary", onclick: async () => {
              try {
                await api("POST", `webhooks/endpoints/${endpoint.id}/test`);
              } catch (error) {
                deliveries.replaceChildren(failure(error));
              }
              await showDeliveries(endpoint);
            } }, "Send a test"), " ",
            el("button", { type: "button", class: "secondary", onclick: () => showDeliveries(endpoint) }, "Deliveries")))), { id: "endpoints" }));
    } catch (error) {
      endpoints.replaceChildren(failure(error));
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const created = await api("POST", "webhooks/endpoints", {
        url: form.url.value,
        event_types: form.events.value.split(/\s+/).filter(Boolean),
      });
      shown.replaceChildren(el("p", {}, "The signing secret, shown once:"),
        el("output", { class: "secret", id: "endpoint-secret" }, created.secret));
      form.reset();
      await load();
    } catch (error) {
      shown.replaceChildren(failure(error));
    }
  });
  view.replaceChildren(el("h1", {}, "Webhooks"), panel("New endpoint", form, shown),
    panel("Endpoints", endpoints, deliveries));
  await load();
}

async function llm() {
  const [models, calls] = await Promise.all([
    api("GET", "/v1/models").then((list) => panel("Models you can call", table(["Model", "Served by"], list.data.map((model) => el("tr", { "data-model": model.id },
        el("td", {}, el("code", {}, model.id)), el("td", {}, model.owned_by))), { id: "models" })),
      (error) => panel("Models you can call", failure(error))),
    api("GET", "llm/interactions?limit=20").then((page) => panel(isAdmin ? "Recent calls" : "Your recent calls",
      page.data.length === 0 ? el("p", { id: "calls" }, "No calls yet.") : table(["When", "Model", "Tokens in / out", "Credits", "Status", "Latency"], page.data.map((call) => el("tr", {},
          el("td", {}, call.created_at), el("td", {}, call.model),
          el("td", {}, `${call.prompt_tokens} / ${call.completion_tokens}`), el("td", {}, call.cost),
          el("td", {}, call.status), el("td", {}, `${call.latency_ms} ms`))), { id: "calls" })),
      (error) => panel("Recent calls", failure(error))),
  ]);
  view.replaceChildren(el("h1", {}, "LLM gateway"),
    el("p", {}, "Call these models with an API key and the OpenAI client, base URL ", el("code", {}, `${location.origin}/v1`), "."),
    models, calls, ...(isAdmin ? await llmManagement() : []));
}

// Owners and admins run the gateway for their organisation: the provider accounts its
// calls are made with, the models of its own, and who sees what.
async function llmManagement() {
  const [keys, own, policy] = await Promise.all([
    api("GET", "llm/provider-keys"), api("GET", "llm/models"), api("GET", "llm/settings"),
  ]).catch((error) => [error]);
  if (!own) return [panel("Providers and models", failure(keys))];
  const ownKeys = keys.data.filter((key) => key.owner === "tenant");
  const ownModels = own.data.filter((model) => model.owner === "tenant");
  const keyShown = el("div", { "aria-live": "polite" });
  const keyForm = el("form", { id: "new-provider-key" },
    ...labelled("provider-name", "Name", el("input", { id: "provider-name", name: "name", required: "" })),
    ...labelled("provider-kind", "Kind", el("select", { id: "provider-kind", name: "kind" },
      el("option", { value: "openai" }, "OpenAI-compatible"), el("option", { value: "anthropic" }, "Anthropic"))),
    ...labelled("provider-url", "API base (empty: the provider's own)", el("input", { id: "provider-url", name: "base_url", type: "url" })),
    ...labelled("provider-secret", "API key (stored sealed, never shown again)", el("input", { id: "provider-secret", name: "api_key", type: "password", autocomplete: "off", required: "" })),
    el("button", { type: "submit" }, "Add provider key"));
  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", "llm/provider-keys", {
        name: keyForm.name.value, kind: keyForm.kind.value,
        base_url: keyForm.base_url.value || undefined, api_key: keyForm.api_key.value,
      });
      await llm();
    } catch (error) {
      keyShown.replaceChildren(failure(error));
    }
  });
  const remove = (path, label) => el("button", { type: "button", class: "secondary", "aria-label": label, onclick: async () => {
    try {
      await api("DELETE", path);
      await llm();
    } catch (error) {
      keyShown.replaceChildren(failure(error));
    }
  } }, "Delete");
  const modelShown = el("div", { "aria-live": "polite" });
  const modelForm = el("form", { id: "new-model" },
    ...labelled("model-name", "Model name (what callers ask for)", el("input", { id: "model-name", name: "name", required: "" })),
    ...labelled("model-key", "Served with", el("select", { id: "model-key", name: "key" },
      ...ownKeys.map((key) => el("option", { value: key.id }, key.name)))),
    ...labelled("model-upstream", "The provider's name of the model", el("input", { id: "model-upstream", name: "upstream", required: "" })),
    ...labelled("model-context", "Context window (tokens)", el("input", { id: "model-context", name: "context", type: "number", min: "1", value: "128000" })),
    ...labelled("model-output", "Longest answer (tokens)", el("input", { id: "model-output", name: "output", type: "number", min: "1", value: "4096" })),
    ...labelled("model-input-price", "Credits per million prompt tokens", el("input", { id: "model-input-price", name: "input_price", type: "number", min: "0", value: "0" })),
    ...labelled("model-output-price", "Credits per million completion tokens", el("input", { id: "model-output-price", name: "output_price", type: "number", min: "0", value: "0" })),
    el("button", { type: "submit" }, "Add model"));
  modelForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("POST", "llm/models", {
        name: modelForm.name.value,
        deployments: [{ provider_key_id: modelForm.key.value, model: modelForm.upstream.value }],
        context_window: Number(modelForm.context.value), max_output_tokens: Number(modelForm.output.value),
        input_price: Number(modelForm.input_price.value), output_price: Number(modelForm.output_price.value),
      });
      await llm();
    } catch (error) {
      modelShown.replaceChildren(failure(error));
    }
  });
  const saved = el("div", { "aria-live": "polite" });
  const policyForm = el("form", { id: "llm-policy" },
    ...labelled("visible-models", "Models your people see (space-separated; empty: all)",
      el("input", { id: "visible-models", name: "visible", value: (policy.visible_models || []).join(" ") })),
    el("label", { for: "content-logging" }, el("input", { id: "content-logging", name: "logging", type: "checkbox", ...(policy.content_logging ? { checked: "" } : {}) }), " Keep the text of each call"),
    ...labelled("retention", "For this many days", el("input", { id: "retention", name: "retention", type: "number", min: "1", value: policy.content_retention_days })),
    el("button", { type: "submit" }, "Save policy"));
  policyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const visible = policyForm.visible.value.split(/\s+/).filter(Boolean);
    try {
      await api("PUT", "llm/settings", {
        ...policy,
        visible_models: visible.length ? visible : null,
        content_logging: policyForm.logging.checked,
        content_retention_days: Number(policyForm.retention.value),
      });
      saved.replaceChildren(el("p", { role: "status" }, "Saved."));
    } catch (error) {
      saved.replaceChildren(failure(error));
    }
  });
  return [
    panel("Provider keys", ownKeys.length === 0 ? el("p", {}, "No keys of your own: calls use the platform's.") : table(
      ["Name", "Kind", "API base", "Key", ""],
      ownKeys.map((key) => el("tr", { "data-provider-key": key.name },
        el("td", {}, key.name), el("td", {}, key.kind), el("td", {}, key.base_url),
        el("td", {}, `…${key.api_key_last4}`), el("td", {}, remove(`llm/provider-keys/${key.id}`, `Delete key ${key.name}`))))),
    keyForm, keyShown),
    panel("Your models", ownModels.length === 0 ? el("p", {}, "No models of your own yet.") : table(
      ["Model", "Served by", "Prompt / completion price", ""],
      ownModels.map((model) => el("tr", { "data-own-model": model.name },
        el("td", {}, el("code", {}, model.name)),
        el("td", {}, model.deployments.map((deployment) => deployment.model).join(", ")),
        el("td", {}, `${model.input_price} / ${model.output_price}`),
        el("td", {}, remove(`llm/models/${model.id}`, `Delete model ${model.name}`))))),
    ownKeys.length ? modelForm : el("p", {}, "Add a provider key to add models of your own."), modelShown),
    panel("Policy", policyForm, saved),
  ];
}

async function billing() {
  if (!isAdmin) return adminOnly("Billing");
  const said = el("div", { "aria-live": "polite" });
  const back = `${location.origin}/console#billing`;
  const go = (body) => async (event) => {
    event.preventDefault();
    try {
      const session = await api("POST", "billing/checkout", { ...body(), success_url: back, cancel_url: back });
      location.assign(session.url);
    } catch (error) {
      said.replaceChildren(failure(error));
    }
  };
  const [tenant, plans] = await Promise.all([api("GET", "tenant"), api("GET", "plans")]).catch((error) => [error]);
  if (!plans) return view.replaceChildren(el("h1", {}, "Billing"), failure(tenant));
  const upgrade = el("form", { id: "subscribe" },
    ...labelled("subscribe-plan", "Plan", el("select", { id: "subscribe-plan", name: "plan" },
      ...plans.data.filter((plan) => plan.code !== tenant.plan).map((plan) => el("option", { value: plan.code }, plan.name)))),
    el("button", { type: "submit" }, "Subscribe"));
  upgrade.addEventListener("submit", go(() => ({ kind: "subscription", plan: upgrade.plan.value })));
  const buy = el("form", { id: "buy-credits" },
    ...labelled("buy-amount", "Credits", el("input", { id: "buy-amount", name: "credits", type: "number", min: "1", value: "1000" })),
    el("button", { type: "submit" }, "Buy credits"));
  buy.addEventListener("submit", go(() => ({ kind: "credits", credits: Number(buy.credits.value) })));
  const portal = el("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      location.assign((await api("POST", "billing/portal", { return_url: back })).url);
    } catch (error) {
      said.replaceChildren(failure(error));
    }
  } }, "Payment methods and subscription");
  const invoices = await api("GET", "billing/invoices?limit=12").then((page) => page.data.length === 0
    ? el("p", { id: "invoices" }, "No invoices yet.")
    : table(["Date", "Status", "Amount", ""], page.data.map((invoice) => el("tr", {},
      el("td", {}, new Date(invoice.created * 1000).toISOString().slice(0, 10)), el("td", {}, invoice.status),
      el("td", {}, `${(invoice.amount_due / 100).toFixed(2)} ${String(invoice.currency).toUpperCase()}`),
      el("td", {}, invoice.hosted_invoice_url ? el("a", { href: invoice.hosted_invoice_url }, "View") : ""))), { id: "invoices" }),
  (error) => el("p", { id: "invoices" }, error.message));
  const limits = tenant.plan_limits;
  view.replaceChildren(el("h1", {}, "Billing"),
    panel("Your plan", el("p", { id: "plan" }, `${tenant.plan}: ${number(limits.monthly_credits)} credits a month, `,
      `${number(limits.max_users)} people, ${number(limits.requests_per_minute)} requests a minute.`), upgrade),
    panel("Credits", buy), panel("Invoices", portal, said, invoices));
}

// The organisation's name, domain and brand: the brand shows on the console and the
// mails when people reach the console at the organisation's own domain.
async function settings() {
  if (!isAdmin) return adminOnly("Organisation");
  let tenant;
  try {
    tenant = await api("GET", "tenant");
  } catch (error) {
    return view.replaceChildren(el("h1", {}, "Organisation"), failure(error));
  }
  const said = el("div", { "aria-live": "polite" });
  const brand = tenant.branding;
  const form = el("form", { id: "organisation" },
    ...labelled("org-name", "Name", el("input", { id: "org-name", name: "name", value: tenant.name, required: "" })),
    ...labelled("org-domain", "Custom domain (empty: none)", el("input", { id: "org-domain", name: "domain", value: tenant.custom_domain || "", placeholder: "studio.example.com" })),
    ...labelled("org-brand", "Brand name shown to your people (empty: the name)", el("input", { id: "org-brand", name: "brand", value: brand.display_name || "" })),
    ...labelled("org-logo", "Logo (https URL or data: image)", el("input", { id: "org-logo", name: "logo", value: brand.logo_url || "" })),
    ...labelled("org-accent", "Accent colour", el("input", { id: "org-accent", name: "accent", type: "color", value: brand.accent_color || "#1d4ed8" })),
    el("button", { type: "submit" }, "Save"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PUT", "tenant", {
        name: form.name.value,
        custom_domain: form.domain.value.trim() || null,
        branding: { display_name: form.brand.value || null, logo_url: form.logo.value || null, accent_color: form.accent.value },
      });
      said.replaceChildren(el("p", { role: "status" }, "Saved. Reload to see the new look."));
    } catch (error) {
      said.replaceChildren(failure(error));
    }
  });
  view.replaceChildren(el("h1", {}, "Organisation"), panel("Name, domain and brand", form, said), ...await singleSignOn());
}

// Single sign-on: the identity providers, the email domains whose people join, and
// whether members must use SSO.
async function singleSignOn() {
  const [providers, domains, sso] = await Promise.all([
    api("GET", "sso/providers"), api("GET", "sso/domains"), api("GET", "sso/settings"),
  ]).catch((error) => [error]);
  if (!sso) return [panel("Single sign-on", failure(providers))];
  const said = el("div", { "aria-live": "polite" });
  const redo = (work) => async (event) => {
    if (event) event.preventDefault();
    try {
      await work();
      await settings();
    } catch (error) {
      said.replaceChildren(failure(error));
    }
  };
  const add = el("form", { id: "new-provider" },
    ...labelled("sso-name", "Button name", el("input", { id: "sso-name", name: "name", required: "", placeholder: "Google" })),
    ...labelled("sso-kind", "Provider", el("select", { id: "sso-kind", name: "kind" },
      el("option", { value: "oidc" }, "OpenID Connect"), el("option", { value: "google" }, "Google"),
      el("option", { value: "microsoft" }, "Microsoft Entra ID"))),
    ...labelled("sso-issuer", "Issuer URL (OpenID Connect)", el("input", { id: "sso-issuer", name: "issuer", type: "url" })),
    ...labelled("sso-directory", "Directory (Microsoft: id, domain or organizations)", el("input", { id: "sso-directory", name: "directory" })),
    ...labelled("sso-client", "Client id", el("input", { id: "sso-client", name: "client", required: "" })),
    ...labelled("sso-secret", "Client secret (stored sealed)", el("input", { id: "sso-secret", name: "secret", type: "password", autocomplete: "off", required: "" })),
    el("button", { type: "submit" }, "Add provider"));
  add.addEventListener("submit", redo(() => api("POST", "sso/providers", {
    name: add.name.value, kind: add.kind.value,
    issuer: add.issuer.value || undefined, microsoft_tenant: add.directory.value || undefined,
    client_id: add.client.value, client_secret: add.secret.value,
  })));
  const domain = el("form", { id: "new-domain" },
    ...labelled("sso-domain", "Email domain whose people join", el("input", { id: "sso-domain", name: "domain", required: "", placeholder: "example.com" })),
    el("button", { type: "submit" }, "Add domain"));
  domain.addEventListener("submit", redo(() => api("POST", "sso/domains", { domain: domain.domain.value })));
  const policy = el("form", { id: "sso-policy" },
    el("label", { for: "sso-required" }, el("input", { id: "sso-required", name: "required", type: "checkbox", ...(sso.required ? { checked: "" } : {}) }), " Members must use single sign-on (owners keep their password)"),
    ...labelled("sso-role", "Role of people who join", el("select", { id: "sso-role", name: "role" },
      ...["member", "viewer", "admin"].map((name) => el("option", { value: name, ...(name === sso.default_role ? { selected: "" } : {}) }, name)))),
    el("button", { type: "submit" }, "Save sign-in policy"));
  policy.addEventListener("submit", redo(() => api("PUT", "sso/settings", { required: policy.required.checked, default_role: policy.role.value })));
  return [
    said,
    panel("Single sign-on", providers.data.length === 0 ? el("p", {}, "No identity provider yet.") : table(
      ["Provider", "Issuer", "Client", ""],
      providers.data.map((provider) => el("tr", { "data-provider": provider.name },
        el("td", {}, provider.name), el("td", {}, provider.issuer), el("td", {}, provider.client_id),
        el("td", {}, el("button", { type: "button", class: "secondary", "aria-label": `Remove ${provider.name}`,
          onclick: redo(() => api("DELETE", `sso/providers/${provider.id}`)) }, "Remove"))))),
    add),
    panel("Domains", domains.data.length === 0 ? el("p", {}, "No domain yet.") : table(
      ["Domain", "Proof (TXT record)", ""],
      domains.data.map((entry) => el("tr", { "data-domain": entry.domain },
        el("td", {}, entry.domain),
        el("td", {}, entry.verified ? `proven (${entry.verified_by})` : el("code", {}, `${entry.txt_name} = ${entry.txt_value}`)),
        el("td", {}, entry.verified ? "" : el("button", { type: "button", class: "secondary", "aria-label": `Verify ${entry.domain}`,
          onclick: redo(() => api("POST", `sso/domains/${entry.domain}/verify`)) }, "Verify"))))),
    domain),
    panel("Sign-in policy", policy),
  ];
}

const pages = { overview, jobs, llm, credits, keys, users, workers, webhooks, audit, billing, settings };

async function showPage() {
  clearTimeout(jobsTimer);
  const name = location.hash.slice(1) || "overview";
  const page = pages[name] || overview;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  view.setAttribute("aria-busy", "true");
  await page();
  view.setAttribute("aria-busy", "false");
}

if (!isAdmin) {
  for (const link of document.querySelectorAll("nav a[data-admin]")) link.remove();
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
