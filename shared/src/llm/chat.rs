//! `POST /v1/chat/completions` in OpenAI's shape: the body is checked, its worst case
//! bounded ([`WorstCase::of`]), and the call run through [`calls`] with the provider
//! kinds' chat translations, answered whole or, with `stream: true` on a runtime that
//! streams, as server-sent events ([`stream`]).

use std::rc::Rc;

use bytes::Bytes;
use serde_json::{Map, Value as Json};

use super::{
    calls::{self, Wire},
    errors::invalid_param,
    estimate::WorstCase,
    interactions::Endpoint,
    models,
    providers::{ChatRequest, Completion, Failure, Kind, Target},
    stream,
};
use crate::{
    Env,
    api::{ApiRequest, Reply, Response},
    auth::{principal::Principal, rbac::Permission},
    error::ApiResult,
};

/// `POST /v1/chat/completions`, answered whole.
pub async fn completions(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    principal.require(Permission::LlmCall)?;
    let body = checked_body(request)?;
    if streams(&body) {
        return Err(invalid_param(
            "stream",
            "this runtime answers chat completions whole; send the request without stream",
        ));
    }
    let resolved = calls::resolve(env, principal, &body).await?;
    let worst = WorstCase::of(&body, &resolved.model)?;
    let chat = ChatRequest {
        body,
        max_output_tokens: resolved.model.max_output_tokens,
        now: env.now(),
    };
    calls::run(env, principal, &resolved, Endpoint::Chat, worst, &chat).await
}

/// `POST /v1/chat/completions` with `stream: true`, answered as server-sent events
/// ([`stream`]) in OpenAI's shape, whatever the kind of the deployment that answers.
pub async fn streamed(
    env: Rc<Env>,
    request: &ApiRequest,
    principal: Principal,
) -> ApiResult<Reply> {
    principal.require(Permission::LlmCall)?;
    let mut body = checked_body(request)?;
    let resolved = calls::resolve(&env, &principal, &body).await?;
    let worst = WorstCase::of(&body, &resolved.model)?;
    let client_wants_usage = body
        .get("stream_options")
        .and_then(|options| options.get("include_usage"))
        .and_then(Json::as_bool)
        == Some(true);
    let mut options = match body.remove("stream_options") {
        Some(Json::Object(options)) => options,
        _ => Map::new(),
    };
    options.insert("include_usage".into(), Json::Bool(true));
    body.insert("stream_options".into(), Json::Object(options));
    let chat = ChatRequest {
        body,
        max_output_tokens: resolved.model.max_output_tokens,
        now: env.now(),
    };
    stream::run(env, principal, resolved, worst, chat, client_wants_usage).await
}

/// Whether a chat completion request asks for a stream.
pub fn streams(body: &Map<String, Json>) -> bool {
    body.get("stream").and_then(Json::as_bool) == Some(true)
}

/// The request's body, with a model named and messages to send, or 400.
fn checked_body(request: &ApiRequest) -> ApiResult<Map<String, Json>> {
    let body: Map<String, Json> = request.json()?;
    models::requested_name(&body)?;
    if !body
        .get("messages")
        .and_then(Json::as_array)
        .is_some_and(|messages| !messages.is_empty() && messages.iter().all(Json::is_object))
    {
        return Err(invalid_param(
            "messages",
            "messages must be a non-empty array of message objects",
        ));
    }
    Ok(body)
}

impl Wire for ChatRequest {
    fn request(&self, kind: Kind, target: &Target<'_>) -> Result<http::Request<Bytes>, Failure> {
        kind.provider().chat_request(target, self)
    }

    fn response(
        &self,
        kind: Kind,
        response: &http::Response<Bytes>,
    ) -> Result<Completion, Failure> {
        kind.provider().chat_response(response, self)
    }
}
