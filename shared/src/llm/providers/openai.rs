//! OpenAI's chat completions and embeddings, spoken by OpenAI and every OpenAI-compatible
//! server: the client's body goes out as it came, with the deployment's model in `model`,
//! to `{base_url}/chat/completions` or `{base_url}/embeddings` with the key as a bearer
//! token; the answer comes back as it is, its `usage` read for the bill.

use bytes::Bytes;
use serde_json::{Map, Value as Json};

use super::{
    ChatRequest, Completion, Embedder, Failure, Provider, StreamEvents, Target, Usage, failure,
};

pub struct OpenAi;

impl Provider for OpenAi {
    fn chat_request(
        &self,
        target: &Target<'_>,
        request: &ChatRequest,
    ) -> Result<http::Request<Bytes>, Failure> {
        let mut body = request.body.clone();
        // The hold paid for the model's most output per choice; a request that names no
        // maximum gets that one, so a provider that would write more stops where the hold
        // ends. OpenAI's own API reads `max_completion_tokens` (its reasoning models refuse
        // `max_tokens`); the compatible servers read `max_tokens`.
        if ["max_completion_tokens", "max_tokens"]
            .iter()
            .all(|field| body.get(*field).is_none_or(Json::is_null))
        {
            let field = if is_openai(target.base_url) {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            body.insert(field.into(), Json::from(request.max_output_tokens));
        }
        Ok(post(target, "chat/completions", body))
    }

    fn chat_response(
        &self,
        response: &http::Response<Bytes>,
        _: &ChatRequest,
    ) -> Result<Completion, Failure> {
        let body = answer(response, "choices", "a chat completion")?;
        let usage = body.get("usage").and_then(usage);
        Ok(Completion { body, usage })
    }

    fn stream_events(&self, _: &ChatRequest) -> Box<dyn StreamEvents> {
        Box::new(AsWritten)
    }
}

/// OpenAI's stream is already in OpenAI's shape.
struct AsWritten;

impl StreamEvents for AsWritten {
    fn translate(&mut self, data: &str) -> Vec<String> {
        vec![data.to_owned()]
    }
}

impl Embedder for OpenAi {
    fn embeddings_request(
        &self,
        target: &Target<'_>,
        body: &Map<String, Json>,
    ) -> Result<http::Request<Bytes>, Failure> {
        Ok(post(target, "embeddings", body.clone()))
    }

    fn embeddings_response(&self, response: &http::Response<Bytes>) -> Result<Completion, Failure> {
        let body = answer(response, "data", "a list of embeddings")?;
        // Embeddings write no tokens: `usage` is `prompt_tokens` and `total_tokens`.
        let usage = body
            .get("usage")
            .and_then(|usage| usage.get("prompt_tokens"))
            .and_then(Json::as_i64)
            .map(|prompt_tokens| Usage {
                prompt_tokens: prompt_tokens.max(0),
                ..Usage::default()
            });
        Ok(Completion { body, usage })
    }
}

/// `POST {base_url}/{path}` with the client's body, the deployment's model in `model`, and
/// the account's key as a bearer token.
fn post(target: &Target<'_>, path: &str, mut body: Map<String, Json>) -> http::Request<Bytes> {
    body.insert("model".into(), Json::from(target.model));
    http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("{}/{path}", target.base_url.trim_end_matches('/')))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", target.api_key),
        )
        .body(Bytes::from(Json::Object(body).to_string()))
        .expect("the base URL and key were checked when the key was saved")
}

/// A successful answer's JSON object, when it has the array `field` its endpoint answers
/// with; anything else (an error, a proxy's page) is a failure of this deployment.
fn answer(
    response: &http::Response<Bytes>,
    field: &str,
    what: &str,
) -> Result<Map<String, Json>, Failure> {
    if !response.status().is_success() {
        return Err(failure(response));
    }
    serde_json::from_slice::<Map<String, Json>>(response.body())
        .ok()
        .filter(|body| body.get(field).is_some_and(Json::is_array))
        .ok_or_else(|| Failure::Unavailable {
            status: Some(response.status().as_u16()),
            message: format!("the provider's answer is not {what}"),
            retry_after: None,
        })
}

/// Whether `base_url` is OpenAI's own API.
fn is_openai(base_url: &str) -> bool {
    base_url
        .parse::<http::Uri>()
        .is_ok_and(|uri| uri.host() == Some("api.openai.com"))
}

/// OpenAI's `usage`: `prompt_tokens` (cached ones included, counted again in
/// `prompt_tokens_details.cached_tokens`) and `completion_tokens` (reasoning included).
pub(in crate::llm) fn usage(usage: &Json) -> Option<Usage> {
    let count = |pointer: &str| usage.pointer(pointer).and_then(Json::as_i64);
    let prompt_tokens = count("/prompt_tokens")?.max(0);
    Some(Usage {
        prompt_tokens,
        completion_tokens: count("/completion_tokens")?.max(0),
        cached_tokens: count("/prompt_tokens_details/cached_tokens")
            .unwrap_or(0)
            .clamp(0, prompt_tokens),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn target() -> Target<'static> {
        Target {
            base_url: "http://127.0.0.1:9/v1/",
            api_key: "sk-test",
            model: "gpt-4o-2024-08-06",
        }
    }

    #[test]
    fn the_clients_fields_go_out_with_the_deployments_model() {
        let body = json!({
            "model": "acme-chat", "messages": [{"role": "user", "content": "hi"}],
            "user": "u-1", "seed": 7, "vendor_extension": {"x": 1},
        });
        let request = ChatRequest {
            body: body.as_object().unwrap().clone(),
            max_output_tokens: 4_096,
            now: 0,
        };
        let out = OpenAi.chat_request(&target(), &request).unwrap();
        assert_eq!(out.uri(), "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(out.headers()["authorization"], "Bearer sk-test");
        let sent: Json = serde_json::from_slice(out.body()).unwrap();
        assert_eq!(sent["model"], "gpt-4o-2024-08-06");
        assert_eq!(sent["user"], "u-1");
        assert_eq!(sent["vendor_extension"], json!({"x": 1}));
    }

    #[test]
    fn a_request_without_a_maximum_gets_the_models_maximum_in_the_field_the_server_reads() {
        let request = ChatRequest {
            body: json!({"model": "m", "messages": []})
                .as_object()
                .unwrap()
                .clone(),
            max_output_tokens: 4_096,
            now: 0,
        };
        let compatible = OpenAi.chat_request(&target(), &request).unwrap();
        let sent: Json = serde_json::from_slice(compatible.body()).unwrap();
        assert_eq!(sent["max_tokens"], 4_096);
        assert!(sent.get("max_completion_tokens").is_none());

        let openai = Target {
            base_url: "https://api.openai.com/v1",
            ..target()
        };
        let out = OpenAi.chat_request(&openai, &request).unwrap();
        let sent: Json = serde_json::from_slice(out.body()).unwrap();
        assert_eq!(sent["max_completion_tokens"], 4_096);
        assert!(sent.get("max_tokens").is_none());

        let named = ChatRequest {
            body: json!({"model": "m", "messages": [], "max_tokens": 10})
                .as_object()
                .unwrap()
                .clone(),
            ..request
        };
        let out = OpenAi.chat_request(&openai, &named).unwrap();
        let sent: Json = serde_json::from_slice(out.body()).unwrap();
        assert_eq!(sent["max_tokens"], 10);
        assert!(sent.get("max_completion_tokens").is_none());
    }

    #[test]
    fn usage_counts_cached_tokens_within_the_prompt() {
        let usage = usage(&json!({
            "prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100},
        }))
        .unwrap();
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 120,
                completion_tokens: 30,
                cached_tokens: 100
            }
        );
        assert_eq!(super::usage(&json!({"total_tokens": 3})), None);
    }

    #[test]
    fn a_success_that_is_no_completion_falls_back() {
        let response = http::Response::builder()
            .status(200)
            .body(Bytes::from_static(b"<html>proxy error</html>"))
            .unwrap();
        let request = ChatRequest {
            body: Map::new(),
            max_output_tokens: 1,
            now: 0,
        };
        assert!(matches!(
            OpenAi.chat_response(&response, &request),
            Err(Failure::Unavailable { .. })
        ));
    }
}
