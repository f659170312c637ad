//! Calls the server and holds every answer against the document: its status must be one the
//! operation documents, and its body must match that answer's schema.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tollgate::router::openapi::DOCUMENT;
use tollgate_tests::TestApp;

pub struct Checker<'a> {
    app: &'a TestApp,
    document: Value,
    /// `(method, path, status)` of every answer checked, to tell what the walk covered.
    pub covered: BTreeSet<(String, String, u16)>,
}

/// What a call sends.
pub struct Call<'b> {
    pub method: Method,
    /// The documented path, with `{placeholders}`.
    pub template: &'b str,
    pub params: Vec<String>,
    pub credential: Option<String>,
    pub body: Option<Value>,
    pub headers: Vec<(&'b str, String)>,
    pub query: Vec<(&'b str, String)>,
}

pub fn call<'b>(method: Method, template: &'b str) -> Call<'b> {
    Call {
        method,
        template,
        params: Vec::new(),
        credential: None,
        body: None,
        headers: Vec::new(),
        query: Vec::new(),
    }
}

impl<'b> Call<'b> {
    pub fn at(mut self, params: &[&str]) -> Self {
        self.params = params.iter().map(|param| (*param).to_owned()).collect();
        self
    }

    pub fn by(mut self, credential: &str) -> Self {
        self.credential = Some(credential.to_owned());
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn header(mut self, name: &'b str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn query(mut self, name: &'b str, value: &str) -> Self {
        self.query.push((name, value.to_owned()));
        self
    }
}

impl<'a> Checker<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Checker {
            app,
            document: serde_json::from_str(DOCUMENT).unwrap(),
            covered: BTreeSet::new(),
        }
    }

    /// Sends the call, checks the answer against the document, asserts its status, and
    /// returns its JSON body (`null` when empty).
    pub async fn expect(&mut self, call: Call<'_>, status: StatusCode) -> Value {
        let (actual, body) = self.send(call).await;
        assert_eq!(actual, status, "unexpected status; body: {body}");
        body
    }

    /// Sends the call and checks the answer against the document, whatever its status.
    pub async fn send(&mut self, call: Call<'_>) -> (StatusCode, Value) {
        let mut params = call.params.iter();
        let path: String = call
            .template
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    params
                        .next()
                        .expect("a value for every placeholder")
                        .clone()
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let mut request = self
            .app
            .request(call.method.clone(), &path)
            .query(&call.query);
        if let Some(credential) = &call.credential {
            request = request.bearer_auth(credential);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let method = call.method.as_str().to_lowercase();
        let body = self.check(
            &method,
            call.template,
            status,
            content_type.as_deref(),
            &text,
        );
        self.covered
            .insert((method, call.template.to_owned(), status.as_u16()));
        (status, body)
    }

    fn check(
        &self,
        method: &str,
        template: &str,
        status: StatusCode,
        content_type: Option<&str>,
        text: &str,
    ) -> Value {
        let name = format!("{} {template} → {status}", method.to_uppercase());
        let operation = &self.document["paths"][template][method];
        assert!(
            operation.is_object(),
            "{name}: no such operation in the document"
        );
        let mut answer = &operation["responses"][status.as_str()];
        assert!(
            answer.is_object(),
            "{name}: the document does not list this status; body: {text}"
        );
        if let Some(reference) = answer["$ref"].as_str() {
            let pointer = reference.trim_start_matches('#');
            answer = self
                .document
                .pointer(pointer)
                .expect("the reference resolves");
        }
        let Some(schema) = answer["content"]["application/json"].get("schema") else {
            assert!(
                text.is_empty(),
                "{name}: a body where none is documented: {text}"
            );
            return Value::Null;
        };
        assert_eq!(content_type, Some("application/json"), "{name}");
        let body: Value = serde_json::from_str(text)
            .unwrap_or_else(|error| panic!("{name}: not JSON ({error}): {text}"));
        let rooted = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.document["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::draft202012::new(&rooted)
            .unwrap_or_else(|error| panic!("{name}: the schema does not compile: {error}"));
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: the answer breaks the document:\n{}\nbody: {body}",
            errors.join("\n")
        );
        body
    }
}
