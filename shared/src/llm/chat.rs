//! `POST /v1/chat/completions`, non-streaming, in OpenAI's shape: the body is checked, its
//! worst case bounded ([`WorstCase::of`]), and the call run through [`calls`] with the
//! provider kinds' chat translations.

use bytes::Bytes;
use serde_json::{Map, Value as Json};

use super::{
    calls::{self, Wire},
    errors::invalid_param,
    estimate::WorstCase,
    interactions::Endpoint,
    models,
    providers::{ChatRequest, Completion, Failure, Kind, Target},
};
use crate::{
    Env,
    api::{ApiRequest, Response},
    auth::{principal::Principal, rbac::Permission},
    error::ApiResult,
};

/// `POST /v1/chat/completions`
pub async fn completions(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
) -> ApiResult<Response> {
    principal.require(Permission::LlmCall)?;
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
    if body.get("stream").and_then(Json::as_bool) == Some(true) {
        return Err(invalid_param(
            "stream",
            "this gateway answers chat completions whole; send the request without stream",
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
