//! The OpenAPI document: committed exactly as the code generates it, covering every route of
//! the router, served with its reference page, and true of the server's real answers.

mod answers;
mod checker;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;
use tollgate::router::openapi::{self, DOCUMENT, DOCUMENT_PATH, REFERENCE, REFERENCE_PATH};
use tollgate_tests::spawn_app;

const REGENERATE: &str = "TOLLGATE_UPDATE_OPENAPI=1 cargo test -p tollgate-tests --test openapi";

/// The document's text as committed: keys sorted, two-space indents, a final newline.
fn canonical_text(document: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|key| (key.clone(), sorted(&map[key])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string_pretty(&sorted(document)).unwrap() + "\n"
}

#[test]
fn the_committed_document_and_page_are_what_the_code_generates() {
    let document = openapi::document();
    let text = canonical_text(&document);
    let page = openapi::render(&document);
    if std::env::var_os("TOLLGATE_UPDATE_OPENAPI").is_some() {
        std::fs::write(DOCUMENT_PATH, &text).unwrap();
        std::fs::write(REFERENCE_PATH, &page).unwrap();
        return;
    }
    assert!(
        text == DOCUMENT,
        "shared/openapi.json differs from what the code generates; regenerate it with `{REGENERATE}`"
    );
    assert!(
        page == REFERENCE,
        "shared/openapi.html differs from what the code generates; regenerate it with `{REGENERATE}`"
    );
}

#[test]
fn every_schema_of_the_document_is_a_json_schema_2020_12() {
    let document: Value = serde_json::from_str(DOCUMENT).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let mut schemas = Vec::new();
    collect_schemas(&document, &mut schemas);
    assert!(schemas.len() > 100, "{} schemas", schemas.len());
    for (pointer, schema) in schemas {
        if let Err(error) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{pointer}: {error}");
        }
    }
}

fn collect_schemas(value: &Value, found: &mut Vec<(String, Value)>) {
    fn walk(value: &Value, pointer: String, found: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let here = format!("{pointer}/{key}");
                    if key == "schema" {
                        found.push((here.clone(), child.clone()));
                    }
                    if pointer == "/components/schemas" {
                        found.push((here.clone(), child.clone()));
                    }
                    walk(child, here, found);
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    walk(child, format!("{pointer}/{index}"), found);
                }
            }
            _ => {}
        }
    }
    walk(value, String::new(), found);
}

/// `(METHOD, /path/{param})` of every arm of the router, read from its source: a route added
/// there without a place in the document fails here.
fn routes_of_the_router() -> BTreeSet<(String, String)> {
    // The `tollgate` crate of this workspace (`shared/` at the repository's root).
    let router = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .join("shared/src/router/routes.rs");
    let source = std::fs::read_to_string(&router)
        .unwrap_or_else(|error| panic!("{}: {error}", router.display()));
    let source = source.as_str();
    let body = &source[source
        .find("match segments.as_slice()")
        .expect("the route table")..];
    let mut routes = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in body.lines().map(str::trim) {
        if line.starts_with("_ =>") {
            break;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let (pattern, arm) = rest.split_once("] =>").expect("a route arm");
            let path: String = pattern
                .split(", ")
                .map(|segment| match segment.strip_prefix('"') {
                    Some(literal) => format!("/{}", literal.trim_end_matches('"')),
                    None => format!("/{{{segment}}}"),
                })
                .collect();
            // An arm without `on!` answers any method; it is documented as GET.
            if !arm.contains("on!") && !arm.trim().is_empty() && arm.trim() != "{" {
                routes.insert(("GET".to_owned(), path.clone()));
            }
            current = Some(path);
            collect_methods(arm, current.as_deref(), &mut routes);
            continue;
        }
        collect_methods(line, current.as_deref(), &mut routes);
    }
    routes
}

fn collect_methods(line: &str, path: Option<&str>, routes: &mut BTreeSet<(String, String)>) {
    let Some(path) = path else { return };
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        if line.contains(&format!("{method} =>")) {
            routes.insert((method.to_owned(), path.to_owned()));
        }
    }
}

fn routes_of_the_document() -> BTreeSet<(String, String)> {
    let document: Value = serde_json::from_str(DOCUMENT).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.insert((method.to_uppercase(), path.clone()));
        }
    }
    routes
}

#[test]
fn every_route_of_the_router_is_in_the_document_and_nothing_else() {
    let router = routes_of_the_router();
    let documented = routes_of_the_document();
    assert!(
        router.len() > 100,
        "{} routes read from the router",
        router.len()
    );
    let missing: Vec<_> = router.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&router).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "documented routes the router lacks: {extra:?}"
    );
}

#[test]
fn every_operation_documents_its_body_parameters_security_and_errors() {
    let document: Value = serde_json::from_str(DOCUMENT).unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let name = format!("{method} {path}");
            assert!(operation["security"].is_array(), "{name}: no security");
            let responses = operation["responses"].as_object().unwrap();
            // A browser navigation's success is a redirect.
            assert!(
                responses
                    .keys()
                    .any(|status| status.starts_with('2') || status.starts_with('3')),
                "{name}: no success answer"
            );
            assert!(
                responses.contains_key("413") && responses.contains_key("503"),
                "{name}"
            );
            for placeholder in path.split('/').filter(|segment| segment.starts_with('{')) {
                let parameter = placeholder.trim_matches(|c| c == '{' || c == '}');
                let declared = operation["parameters"].as_array().is_some_and(|list| {
                    list.iter()
                        .any(|p| p["name"] == parameter && p["in"] == "path")
                });
                assert!(declared, "{name}: path parameter {parameter} undeclared");
                assert!(responses.contains_key("404"), "{name}: no 404");
            }
            if operation["requestBody"].is_object() {
                for status in ["400", "415", "422"] {
                    assert!(responses.contains_key(status), "{name}: no {status}");
                }
            }
            // Stripe's signature is checked as part of the body: a bad one is a 400.
            let needs_credentials = operation["security"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_object)
                .any(|requirement| {
                    !requirement.is_empty() && !requirement.contains_key("stripeSignature")
                });
            if needs_credentials {
                assert!(responses.contains_key("401"), "{name}: secured without 401");
            }
        }
    }
}

#[tokio::test]
async fn the_server_serves_the_document_and_a_self_contained_reference_page() {
    let app = spawn_app().await;

    let response = app
        .request(reqwest::Method::GET, "openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, serde_json::from_str::<Value>(DOCUMENT).unwrap());

    let response = app
        .request(reqwest::Method::GET, "docs")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(
        response.headers()["content-security-policy"],
        "default-src 'none'; style-src 'unsafe-inline'"
    );
    let page = response.text().await.unwrap();
    for forbidden in ["<script", "<link", "<img", "src=", "://", "@import"] {
        assert!(!page.contains(forbidden), "the page holds {forbidden:?}");
    }
    for (path, item) in served["paths"].as_object().unwrap() {
        for operation in item.as_object().unwrap().values() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(
                page.contains(&format!("id=\"{id}\"")),
                "{path}: {id} not on the page"
            );
        }
    }

    let response = app
        .request(reqwest::Method::POST, "openapi.json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}
