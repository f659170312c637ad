// What the console's scripts share: calling the API, and building the page from
// elements (strings become text, never markup).

// Calls Tollgate's API (`path` under /api/v1/, or a path from the root such as /v1/models)
// with `headers`; answers the JSON, or throws the API's own message.
export async function call(method, path, body, headers = {}) {
  if (body !== undefined) headers["Content-Type"] = "application/json";
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
    const error = new Error(data && data.error ? data.error.message : `${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

export function el(tag, attributes = {}, ...children) {
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

export function panel(title, ...children) {
  return el("section", { class: "panel", "aria-label": title }, el("h2", {}, title), ...children);
}

// Tables scroll sideways inside their panel on a narrow screen instead of widening the page.
export function scrolling(table, attributes = {}) {
  return el("div", { class: "scroll", ...attributes }, table);
}

// A table with a header row of `columns` and the rows given.
export function table(columns, rows, attributes = {}) {
  return scrolling(el("table", attributes,
    el("thead", {}, el("tr", {}, ...columns.map((name) => el("th", { scope: "col" }, name)))),
    el("tbody", {}, rows)));
}

export function failure(error) {
  return el("p", { role: "alert", class: "alert" }, error.message);
}

export function labelled(id, label, input) {
  return [el("label", { for: id }, label), input];
}

export const number = (value) => (value === null || value === undefined ? "no limit" : value.toLocaleString("en"));
