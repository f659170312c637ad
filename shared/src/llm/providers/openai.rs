//! OpenAI's chat completions, spoken by OpenAI and every OpenAI-compatible server: the
//! client's body goes out as it came, with the deployment's model in `model`, to
//! `{base_url}/chat/completions` with the key as a bearer token; the answer comes back as
//! it is, its `usage` read for the bill.

use bytes::Bytes;
use serde_json::{Map, Value as Json};

use super::{ChatRequest, Completion, Failure, Provider, Target, Usage, failure};

pub struct OpenAi;

impl Provider for OpenAi {
    fn chat_request(
        &self,
        target: &Target<'_>,
        request: &ChatRequest,
    ) -> Result<http::Request<Bytes>, Failure> {
        let mut body = request.body.clone();
        body.insert("model".into(), Json::from(target.model));
        Ok(http::Request::builder()
            .method(http::Method::POST)
            .uri(format!(
                "{}/chat/completions",
                target.base_url.trim_end_matches('/')
            ))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", target.api_key),
            )
            .body(Bytes::from(Json::Object(body).to_string()))
            .expect("the base URL and key were checked when the key was saved"))
    }

    fn chat_response(
        &self,
        response: &http::Response<Bytes>,
        _: &ChatRequest,
    ) -> Result<Completion, Failure> {
        if !response.status().is_success() {
            return Err(failure(response));
        }
        let body = serde_json::from_slice::<Map<String, Json>>(response.body())
            .ok()
            .filter(|body| body.get("choices").is_some_and(Json::is_array))
            .ok_or_else(|| Failure::Unavailable {
                status: Some(response.status().as_u16()),
                message: "the provider's answer is not a chat completion".into(),
                retry_after: None,
            })?;
        let usage = body.get("usage").and_then(usage);
        Ok(Completion { body, usage })
    }
}

/// OpenAI's `usage`: `prompt_tokens` (cached ones included, counted again in
/// `prompt_tokens_details.cached_tokens`) and `completion_tokens` (reasoning included).
fn usage(usage: &Json) -> Option<Usage> {
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
