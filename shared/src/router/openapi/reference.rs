//! The API reference page: the OpenAPI document rendered as one self-contained HTML page
//! (inline style, no script, nothing fetched), grouped by tag, with every schema linked.

use std::fmt::Write;

use serde_json::Value as Json;

use crate::api::escape_html as escape;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fafafa}\
main{max-width:60rem;margin:0 auto;padding:1rem 1.5rem 4rem}\
h1{margin-bottom:.2rem}h2{margin-top:2.5rem;border-bottom:2px solid #d0d7de;text-transform:capitalize}\
nav a{margin-right:.8rem}code{font:13px ui-monospace,monospace;background:#eef1f4;padding:0 .25rem;border-radius:3px}\
.op{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}\
.op h3{margin:.2rem 0;font:600 15px ui-monospace,monospace}\
.method{display:inline-block;min-width:4.2rem;text-transform:uppercase;color:#fff;border-radius:4px;padding:0 .4rem;margin-right:.5rem;text-align:center}\
.get{background:#1f6feb}.post{background:#1a7f37}.put{background:#9a6700}.patch{background:#8250df}.delete{background:#cf222e}\
table{border-collapse:collapse;width:100%;margin:.4rem 0}td,th{border-top:1px solid #e5e8eb;padding:.25rem .5rem;text-align:left;vertical-align:top}\
ul.schema{margin:.2rem 0;padding-left:1.2rem}.muted{color:#57606a}.req{color:#cf222e}";

/// The page for `document`.
pub fn render(document: &Json) -> String {
    let info = &document["info"];
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} API reference</title><style>{STYLE}</style></head><body><main>\
         <h1>{title} API reference</h1><p class=\"muted\">Version {version} · OpenAPI {openapi} · \
         <a href=\"openapi.json\">openapi.json</a></p><p>{summary}</p><p>{description}</p>",
        title = text(&info["title"]),
        version = text(&info["version"]),
        openapi = text(&document["openapi"]),
        summary = text(&info["summary"]),
        description = inline_code(&info["description"]),
    );
    let tags: Vec<&str> = document["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tag| tag["name"].as_str())
        .collect();
    page.push_str("<nav>");
    for tag in &tags {
        let _ = write!(page, "<a href=\"#tag-{}\">{}</a>", anchor(tag), escape(tag));
    }
    page.push_str("<a href=\"#security\">security</a><a href=\"#schemas\">schemas</a></nav>");
    let paths = document["paths"].as_object().cloned().unwrap_or_default();
    for tag in &tags {
        let _ = write!(page, "<h2 id=\"tag-{}\">{}</h2>", anchor(tag), escape(tag));
        for (path, item) in &paths {
            for method in METHODS {
                let operation = &item[method];
                let tagged = operation["tags"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|name| name == tag));
                if tagged {
                    render_operation(&mut page, method, path, operation);
                }
            }
        }
    }
    render_security(&mut page, &document["components"]["securitySchemes"]);
    page.push_str("<h2 id=\"schemas\">Schemas</h2>");
    for (name, schema) in document["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = write!(
            page,
            "<div class=\"op\" id=\"schema-{anchor}\"><h3>{name}</h3>{schema}</div>",
            anchor = anchor(name),
            name = escape(name),
            schema = schema_html(schema),
        );
    }
    page.push_str("</main></body></html>\n");
    page
}

fn render_operation(page: &mut String, method: &str, path: &str, operation: &Json) {
    let _ = write!(
        page,
        "<div class=\"op\" id=\"{id}\"><h3><span class=\"method {method}\">{method}</span>/api/v1{path}</h3><p>{summary}</p>",
        id = escape(operation["operationId"].as_str().unwrap_or_default()),
        path = escape(path),
        summary = text(&operation["summary"]),
    );
    if operation["description"].is_string() {
        let _ = write!(page, "<p>{}</p>", inline_code(&operation["description"]));
    }
    let security: Vec<String> = operation["security"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|requirement| {
            let names: Vec<String> = requirement
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, _)| format!("<a href=\"#security-{0}\">{0}</a>", escape(name)))
                .collect();
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(" + ")
            }
        })
        .collect();
    let _ = write!(
        page,
        "<p><b>Credentials:</b> {}</p>",
        if security.is_empty() {
            "none".to_owned()
        } else {
            security.join(" or ")
        }
    );
    if let Some(parameters) = operation["parameters"].as_array() {
        page.push_str("<table><tr><th>parameter</th><th>in</th><th>schema</th><th></th></tr>");
        for parameter in parameters {
            let _ = write!(
                page,
                "<tr><td><code>{name}</code>{required}</td><td>{location}</td><td>{schema}</td><td>{description}</td></tr>",
                name = text(&parameter["name"]),
                required = if parameter["required"] == true {
                    " <span class=\"req\">required</span>"
                } else {
                    ""
                },
                location = text(&parameter["in"]),
                schema = schema_html(&parameter["schema"]),
                description = inline_code(&parameter["description"]),
            );
        }
        page.push_str("</table>");
    }
    let body = &operation["requestBody"];
    if body.is_object() {
        let _ = write!(
            page,
            "<p><b>Body</b> (<code>application/json</code>{}):</p>{}",
            if body["required"] == true {
                ", required"
            } else {
                ", optional"
            },
            schema_html(&body["content"]["application/json"]["schema"]),
        );
    }
    page.push_str("<table><tr><th>status</th><th>answer</th></tr>");
    for (status, response) in operation["responses"].as_object().into_iter().flatten() {
        let answer = match response["$ref"].as_str() {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or_default();
                format!(
                    "the error shape (<a href=\"#schema-Error\">Error</a>): {}",
                    escape(name)
                )
            }
            None => {
                let schema = &response["content"]["application/json"]["schema"];
                if schema.is_null() {
                    text(&response["description"])
                } else {
                    schema_html(schema)
                }
            }
        };
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{answer}</td></tr>",
            escape(status)
        );
    }
    page.push_str("</table></div>");
}

fn render_security(page: &mut String, schemes: &Json) {
    page.push_str("<h2 id=\"security\">Security</h2><table>");
    for (name, scheme) in schemes.as_object().into_iter().flatten() {
        let how = match scheme["type"].as_str() {
            Some("http") => "<code>Authorization: Bearer …</code>".to_owned(),
            _ => format!("<code>{}: …</code>", text(&scheme["name"])),
        };
        let _ = write!(
            page,
            "<tr id=\"security-{anchor}\"><td><code>{name}</code></td><td>{how}</td><td>{description}</td></tr>",
            anchor = escape(name),
            name = escape(name),
            description = inline_code(&scheme["description"]),
        );
    }
    page.push_str("</table>");
}

/// A schema as a short type with its properties nested under it.
fn schema_html(schema: &Json) -> String {
    let mut out = String::new();
    write_schema(&mut out, schema);
    out
}

fn write_schema(out: &mut String, schema: &Json) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        let _ = write!(
            out,
            "<a href=\"#schema-{}\">{}</a>",
            anchor(name),
            escape(name)
        );
        return;
    }
    for (keyword, joiner) in [("allOf", " and "), ("oneOf", " or "), ("anyOf", " or ")] {
        if let Some(parts) = schema[keyword].as_array() {
            for (index, part) in parts.iter().enumerate() {
                if index > 0 {
                    out.push_str(joiner);
                }
                write_schema(out, part);
            }
            return;
        }
    }
    let kind = match &schema["type"] {
        Json::String(kind) => kind.clone(),
        Json::Array(kinds) => kinds
            .iter()
            .filter_map(Json::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    };
    if let Some(items) = schema.get("items") {
        let _ = write!(out, "{} of ", escape(&kind));
        write_schema(out, items);
    } else {
        let _ = write!(out, "<code>{}</code>", escape(&kind));
    }
    if let Some(values) = schema["enum"].as_array() {
        let listed: Vec<String> = values
            .iter()
            .map(|value| escape(&value.to_string()))
            .collect();
        let _ = write!(out, " one of <code>{}</code>", listed.join(", "));
    }
    if let Some(format) = schema["format"].as_str() {
        let _ = write!(out, " <span class=\"muted\">({})</span>", escape(format));
    }
    for bound in ["minimum", "maximum", "default"] {
        if let Some(value) = schema.get(bound) {
            let _ = write!(
                out,
                " <span class=\"muted\">{bound} {}</span>",
                escape(&value.to_string())
            );
        }
    }
    if schema["description"].is_string() {
        let _ = write!(out, " — {}", inline_code(&schema["description"]));
    }
    if let Some(values) = schema["additionalProperties"].as_object() {
        out.push_str(", each value ");
        write_schema(out, &Json::Object(values.clone()));
    }
    if let Some(properties) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .collect();
        out.push_str("<ul class=\"schema\">");
        for (name, property) in properties {
            let _ = write!(out, "<li><code>{}</code>", escape(name));
            if required.contains(&name.as_str()) {
                out.push_str(" <span class=\"req\">required</span>");
            }
            out.push_str(": ");
            write_schema(out, property);
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
}

fn text(value: &Json) -> String {
    escape(value.as_str().unwrap_or_default())
}

/// Escaped text in which `code` spans become `<code>`.
fn inline_code(value: &Json) -> String {
    let escaped = text(value);
    let mut out = String::new();
    for (index, part) in escaped.split('`').enumerate() {
        if index % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

fn anchor(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
