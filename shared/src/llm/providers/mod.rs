//! Provider kinds: each one module behind [`Provider`], which only translates a chat
//! completion to its wire format and back. Sending, timeouts, fallbacks, money, quotas and
//! records are the gateway's ([`super::chat`]), written once above every kind.

pub mod anthropic;
pub mod openai;

use bytes::Bytes;
use serde_json::{Map, Value as Json};

use crate::{ApiError, error::ApiResult};

/// The wire formats a provider key may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// OpenAI's chat completions: OpenAI, Azure OpenAI, vLLM, Ollama, OpenRouter, Groq,
    /// Together and the rest of the OpenAI-compatible servers.
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::OpenAi, Kind::Anthropic];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OpenAi => "openai",
            Kind::Anthropic => "anthropic",
        }
    }

    pub fn parse(field: &str, text: &str) -> ApiResult<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| ApiError::invalid_field(field, "must be openai or anthropic"))
    }

    /// The API base a key of this kind calls when it names none.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Kind::OpenAi => "https://api.openai.com/v1",
            Kind::Anthropic => "https://api.anthropic.com",
        }
    }

    /// The translator for this kind.
    pub fn provider(self) -> &'static dyn Provider {
        match self {
            Kind::OpenAi => &openai::OpenAi,
            Kind::Anthropic => &anthropic::Anthropic,
        }
    }

    /// The embeddings translator of this kind, when it serves embeddings (Anthropic's API
    /// has none).
    pub fn embedder(self) -> Option<&'static dyn Embedder> {
        match self {
            Kind::OpenAi => Some(&openai::OpenAi),
            Kind::Anthropic => None,
        }
    }
}

/// Where one attempt goes: a deployment and the opened key of its provider account.
pub struct Target<'a> {
    pub base_url: &'a str,
    pub api_key: &'a str,
    /// The provider's name of the model.
    pub model: &'a str,
}

/// A chat completion request in OpenAI's shape, as the client sent it (fields the gateway
/// does not know included, so OpenAI-compatible providers receive them as they are).
pub struct ChatRequest {
    pub body: Map<String, Json>,
    /// The model's most output tokens, for wire formats that must name a maximum.
    pub max_output_tokens: i64,
    /// Now, in Unix seconds, for answers that must carry their creation time.
    pub now: i64,
}

/// Tokens as the provider counted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Every prompt token, the cached ones included.
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The prompt tokens served from the provider's prompt cache.
    pub cached_tokens: i64,
}

/// A provider's answer, in the shape OpenAI answers the endpoint with.
pub struct Completion {
    pub body: Map<String, Json>,
    /// `None` when the provider reported none: the call is charged its hold.
    pub usage: Option<Usage>,
}

impl Completion {
    /// The answer's messages, one per choice, in OpenAI's shape; `None` for an answer
    /// without choices (embeddings).
    pub fn messages(&self) -> Option<Json> {
        let choices = self.body.get("choices")?.as_array()?;
        Some(Json::Array(
            choices
                .iter()
                .map(|choice| choice.get("message").cloned().unwrap_or(Json::Null))
                .collect(),
        ))
    }
}

/// Why an attempt brought no completion.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The provider refused the request itself (400, 413, 422): another deployment of the
    /// same model would too, so the client hears it (with this status) and no fallback runs.
    Rejected { status: u16, message: String },
    /// Anything else the provider answered: rate limited (with its `Retry-After`, in
    /// seconds), failing, refusing the key, or answering what cannot be read. The next
    /// deployment is tried.
    Unavailable {
        status: Option<u16>,
        message: String,
        retry_after: Option<u64>,
    },
}

/// A provider kind: chat completions to its wire and back.
pub trait Provider {
    /// The HTTP request of one attempt at `target`; [`Failure::Rejected`] when the request
    /// asks for what this wire format cannot express.
    fn chat_request(
        &self,
        target: &Target<'_>,
        request: &ChatRequest,
    ) -> Result<http::Request<Bytes>, Failure>;

    /// The completion in the provider's answer to `request`, or why there is none.
    fn chat_response(
        &self,
        response: &http::Response<Bytes>,
        request: &ChatRequest,
    ) -> Result<Completion, Failure>;

    /// A reader of the stream this kind answers a `stream: true` request with, as OpenAI's
    /// chunks.
    fn stream_events(&self, request: &ChatRequest) -> Box<dyn StreamEvents>;
}

/// A provider's stream of server-sent events read as OpenAI's: the data of each event in,
/// the data of the events to pass on out (`chat.completion.chunk` objects, a last chunk
/// with empty `choices` and the `usage`, then `[DONE]`; an `{"error"}` object when the
/// provider reports a failure mid-stream).
pub trait StreamEvents {
    fn translate(&mut self, data: &str) -> Vec<String>;
}

/// A provider kind that serves embeddings: `POST /v1/embeddings` to its wire and back.
pub trait Embedder {
    /// The HTTP request of one attempt at `target` with the client's body.
    fn embeddings_request(
        &self,
        target: &Target<'_>,
        body: &Map<String, Json>,
    ) -> Result<http::Request<Bytes>, Failure>;

    /// The embeddings in the provider's answer, or why there are none.
    fn embeddings_response(&self, response: &http::Response<Bytes>) -> Result<Completion, Failure>;
}

/// How an answer that is not a success is taken: the message comes from the provider's
/// error body (`{"error":{"message"}}` for OpenAI and Anthropic alike) or its status.
pub fn failure(response: &http::Response<Bytes>) -> Failure {
    let status = response.status().as_u16();
    let message = serde_json::from_slice::<Json>(response.body())
        .ok()
        .and_then(|body| {
            body.pointer("/error/message")
                .and_then(Json::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("the provider answered {status}"));
    let message: String = message.chars().take(500).collect();
    match status {
        400 | 413 | 422 => Failure::Rejected { status, message },
        _ => Failure::Unavailable {
            status: Some(status),
            message,
            retry_after: response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse().ok()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, retry_after: Option<&str>) -> http::Response<Bytes> {
        let mut builder = http::Response::builder().status(status);
        if let Some(seconds) = retry_after {
            builder = builder.header("retry-after", seconds);
        }
        builder.body(Bytes::from(body.to_owned())).unwrap()
    }

    #[test]
    fn a_refused_request_is_the_clients_and_is_not_retried_elsewhere() {
        let failure = failure(&answer(
            400,
            r#"{"error":{"message":"bad tools","type":"invalid_request_error"}}"#,
            None,
        ));
        assert_eq!(
            failure,
            Failure::Rejected {
                status: 400,
                message: "bad tools".into()
            }
        );
    }

    #[test]
    fn rate_limits_and_server_errors_fall_back_with_the_retry_after() {
        let limited = failure(&answer(429, "{}", Some("7")));
        assert_eq!(
            limited,
            Failure::Unavailable {
                status: Some(429),
                message: "the provider answered 429".into(),
                retry_after: Some(7),
            }
        );
        assert!(matches!(
            failure(&answer(503, "down", None)),
            Failure::Unavailable {
                status: Some(503),
                ..
            }
        ));
    }
}
