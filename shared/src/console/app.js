// The console's pages in the browser: each panel is one call of Tollgate's own API, made
// with the session cookie and, when it changes state, the session's CSRF token.

const view = document.getElementById("view");

function csrfToken() {
  const pair = document.cookie.split("; ").find((cookie) => cookie.startsWith("tollgate_csrf="));
  return pair ? decodeURIComponent(pair.slice("tollgate_csrf=".length)) : "";
}

async function api(method, path, body) {
  const headers = { "X-CSRF-Token": csrfToken() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // Tollgate's own API, or the OpenAI-shaped gateway under /v1/.
  const url = path.startsWith("/") ? path : `/api/v1/${path}`;
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    throw new Error(`unexpected answer from ${url}: ${response.status}`);
  }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `${response.status}`;
    throw new Error(message);
  }
  return data;
}

// An element with attributes and children (strings become text, never markup).
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function panel(title, ...children) {
  return el("section", { class: "panel", "aria-label": title }, el("h2", {}, title), ...children);
}

// Tables scroll sideways inside their panel on a narrow screen instead of widening the page.
function scrolling(table, attributes = {}) {
  return el("div", { class: "scroll", ...attributes }, table);
}

function failure(error) {
  return el("p", { role: "alert", class: "alert" }, error.message);
}

const number = (value) => (value === null || value === undefined ? "no limit" : value.toLocaleString("en"));

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

async function overview() {
  const panels = await Promise.all([balancePanel(), usagePanel()]);
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
    return scrolling(el("table", {},
      el("thead", {}, el("tr", {}, ...["Name", "Key", "Scopes", "Last used", "State", ""].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, rows)), { id: "keys-table" });
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
    return panel("Members", scrolling(el("table", {},
      el("thead", {}, el("tr", {}, ...["Name", "Email", "Role", "Last sign-in"].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, page.data.map((user) => el("tr", {},
        el("td", {}, user.name), el("td", {}, user.email), el("td", {}, user.role), el("td", {}, user.last_login_at || "never")))))));
  } catch (error) {
    return panel("Members", failure(error));
  }
}

async function invitationTable() {
  try {
    const page = await api("GET", "invitations");
    return panel("Invitations", scrolling(el("table", { id: "invitations" },
      el("thead", {}, el("tr", {}, ...["Email", "Role", "Expires"].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, page.data.map((invitation) => el("tr", { "data-email": invitation.email },
        el("td", {}, invitation.email), el("td", {}, invitation.role), el("td", {}, invitation.expires_at)))))));
  } catch (error) {
    return panel("Invitations", failure(error));
  }
}

async function workers() {
  if (!isAdmin) return adminOnly("Workers");
  const [pools, bots] = await Promise.all([api("GET", "workers"), api("GET", "bots")]).catch((error) => [null, error]);
  if (!pools) return view.replaceChildren(el("h1", {}, "Workers"), failure(bots));
  const names = Object.fromEntries(pools.data.map((worker) => [worker.id, worker.name]));
  const workerRows = pools.data.map((worker) => el("tr", {},
    el("td", {}, worker.name), el("td", {}, worker.default ? "default" : worker.shared ? "shared" : "dedicated"),
    el("td", {}, worker.gpu_type || "any"), el("td", {}, number(worker.max_concurrency))));
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
    panel("Worker pools", scrolling(el("table", {},
      el("thead", {}, el("tr", {}, ...["Name", "Kind", "GPU", "Concurrency"].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, workerRows))), poolForm),
    panel("Runner tokens", tokenForm, issued),
    panel("Bots", scrolling(el("table", {},
      el("thead", {}, el("tr", {}, ...["Bot", "Runs on", "Move to"].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, botRows)))));
}

// Jobs refresh every two seconds while one is queued or running: their progress, live.
let jobsTimer = null;

async function jobs() {
  const table = el("div", { id: "jobs" });
  view.replaceChildren(el("h1", {}, "Jobs"), panel("Recent jobs", table));
  const refresh = async () => {
    try {
      const page = await api("GET", "jobs?limit=20");
      table.replaceChildren(scrolling(el("table", {},
        el("thead", {}, el("tr", {}, ...["Job", "Status", "Progress", "Cost", "Outputs"].map((name) => el("th", { scope: "col" }, name)))),
        el("tbody", {}, page.data.map((job) => el("tr", { "data-job": job.id },
          el("td", {}, el("code", {}, job.id.slice(-8))), el("td", { class: "status" }, job.status),
          el("td", {}, el("progress", { max: "100", value: job.progress, "aria-label": `Progress of ${job.id.slice(-8)}` }), ` ${job.progress}%`),
          el("td", {}, job.estimated_cost),
          el("td", {}, job.outputs.map((output) => output.url
            ? el("a", { href: output.url }, output.filename || "output")
            : output.filename || ""))))))));
      const live = page.data.some((job) => job.status === "queued" || job.status === "running");
      if (live && location.hash === "#jobs") jobsTimer = setTimeout(refresh, 2000);
    } catch (error) {
      table.replaceChildren(failure(error));
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
      ledger.replaceChildren(scrolling(el("table", { id: "ledger" },
        el("thead", {}, el("tr", {}, ...["When", "Movement", "Credits", "Reason"].map((name) => el("th", { scope: "col" }, name)))),
        el("tbody", {}, page.data.map((entry) => el("tr", { "data-kind": entry.kind },
          el("td", {}, entry.created_at), el("td", {}, entry.kind),
          el("td", { class: "amount" }, entry.amount > 0 ? `+${entry.amount}` : entry.amount),
          el("td", {}, entry.reason || entry.model || "")))))));
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
      entries.replaceChildren(scrolling(el("table", { id: "audit" },
        el("thead", {}, el("tr", {}, ...["When", "Action", "Actor", "Target", "Address"].map((name) => el("th", { scope: "col" }, name)))),
        el("tbody", {}, page.data.map((entry) => el("tr", { "data-action": entry.action },
          el("td", {}, entry.created_at), el("td", {}, entry.action),
          el("td", {}, `${entry.actor.type}${entry.actor.id ? " " + entry.actor.id.slice(-8) : ""}`),
          el("td", {}, entry.target ? `${entry.target.type} ${String(entry.target.id || "").slice(-8)}` : ""),
          el("td", {}, entry.ip || "")))))));
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
      deliveries.replaceChildren(el("h3", {}, `Deliveries to ${endpoint.url}`), scrolling(el("table", {},
        el("thead", {}, el("tr", {}, ...["Event", "Status", "Attempts", "Last answer", ""].map((name) => el("th", { scope: "col" }, name)))),
        el("tbody", {}, page.data.map((delivery) => el("tr", { "data-event": delivery.event_type },
          el("td", {}, delivery.event_type), el("td", { class: "status" }, delivery.status),
          el("td", {}, delivery.attempt_count),
          el("td", {}, delivery.last_status_code || delivery.last_error || ""),
          el("td", {}, el("button", { type: "button", class: "secondary", onclick: async () => {
            await api("POST", `webhooks/deliveries/${delivery.id}/redeliver`);
            await showDeliveries(endpoint);
          } }, "Redeliver"))))))));
    } catch (error) {
      deliveries.replaceChildren(failure(error));
    }
  };
  const load = async () => {
    try {
      const page = await api("GET", "webhooks/endpoints");
      endpoints.replaceChildren(scrolling(el("table", { id: "endpoints" },
        el("thead", {}, el("tr", {}, ...["URL", "Events", "State", ""].map((name) => el("th", { scope: "col" }, name)))),
        el("tbody", {}, page.data.map((endpoint) => el("tr", { "data-url": endpoint.url },
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
            el("button", { type: "button", class: "secondary", onclick: () => showDeliveries(endpoint) }, "Deliveries"))))))));
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
    api("GET", "/v1/models").then((list) => panel("Models you can call", scrolling(el("table", { id: "models" },
      el("thead", {}, el("tr", {}, ...["Model", "Served by"].map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, list.data.map((model) => el("tr", { "data-model": model.id },
        el("td", {}, el("code", {}, model.id)), el("td", {}, model.owned_by))))))),
      (error) => panel("Models you can call", failure(error))),
    api("GET", "llm/interactions?limit=20").then((page) => panel(isAdmin ? "Recent calls" : "Your recent calls",
      page.data.length === 0 ? el("p", { id: "calls" }, "No calls yet.") : scrolling(el("table", { id: "calls" },
        el("thead", {}, el("tr", {}, ...["When", "Model", "Tokens in / out", "Credits", "Status", "Latency"].map((name) => el("th", { scope: "col" }, name)))),
        el("tbody", {}, page.data.map((call) => el("tr", {},
          el("td", {}, call.created_at), el("td", {}, call.model),
          el("td", {}, `${call.prompt_tokens} / ${call.completion_tokens}`), el("td", {}, call.cost),
          el("td", {}, call.status), el("td", {}, `${call.latency_ms} ms`))))))),
      (error) => panel("Recent calls", failure(error))),
  ]);
  view.replaceChildren(el("h1", {}, "LLM gateway"),
    el("p", {}, "Call these models with an API key and the OpenAI client, base URL ", el("code", {}, `${location.origin}/v1`), "."),
    models, calls);
}

const pages = { overview, jobs, llm, credits, keys, users, workers, webhooks, audit };

async function show() {
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
window.addEventListener("hashchange", show);
show();
