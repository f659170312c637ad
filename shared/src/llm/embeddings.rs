//! `POST /v1/embeddings`, in OpenAI's shape: the input is checked and bounded
//! ([`WorstCase::of_embeddings`]), and the call run through [`calls`] on the deployments
//! whose provider kind serves embeddings.

use bytes::Bytes;
use serde_json::{Map, Value as Json};

use super::{
    calls::{self, Wire},
    errors::invalid_param,
    estimate::WorstCase,
    interactions::Endpoint,
    models,
    providers::{Completion, Failure, Kind, Target},
};
use crate::{
    Env,
    api::{ApiRequest, Response},
    auth::{principal::Principal, rbac::Permission},
    error::ApiResult,
};

/// An embeddings request as the client sent it (`encoding_format`, `dimensions`, `user` and
/// fields the gateway does not know pass through).
struct EmbeddingsRequest {
    body: Map<String, Json>,
}

/// `POST /v1/embeddings`
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::LlmCall)?;
    let body: Map<String, Json> = request.json()?;
    models::requested_name(&body)?;
    let mut resolved = calls::resolve(env, principal, &body).await?;
    let worst = WorstCase::of_embeddings(&body, &resolved.model)?;
    // A deployment on a kind without embeddings (Anthropic) is no fallback for them.
    resolved.routes.retain(|route| {
        Kind::parse("kind", &route.kind).is_ok_and(|kind| kind.embedder().is_some())
    });
    if resolved.routes.is_empty() {
        return Err(invalid_param(
            "model",
            format!(
                "the model `{}` serves no embeddings: none of its providers has them",
                resolved.model.name
            ),
        ));
    }
    let embeddings = EmbeddingsRequest { body };
    calls::run(
        env,
        principal,
        &resolved,
        Endpoint::Embeddings,
        worst,
        &embeddings,
    )
    .await
}

impl Wire for EmbeddingsRequest {
    fn request(&self, kind: Kind, target: &Target<'_>) -> Result<http::Request<Bytes>, Failure> {
        embedder(kind)?.embeddings_request(target, &self.body)
    }

    fn response(
        &self,
        kind: Kind,
        response: &http::Response<Bytes>,
    ) -> Result<Completion, Failure> {
        embedder(kind)?.embeddings_response(response)
    }
}

/// The kind's embeddings translator; [`create`] keeps only deployments that have one.
fn embedder(kind: Kind) -> Result<&'static dyn super::providers::Embedder, Failure> {
    kind.embedder().ok_or_else(|| Failure::Unavailable {
        status: None,
        message: format!("{} serves no embeddings", kind.as_str()),
        retry_after: None,
    })
}
