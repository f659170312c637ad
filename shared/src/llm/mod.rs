//! The LLM gateway: OpenAI's API under `/v1/`, in front of the providers, paid from the
//! same ledger as everything else.
//!
//! - [`keys`]: provider accounts, the platform's and the tenants' own (bring your own key),
//!   their API keys sealed at rest (`crate::secrets`) and never shown again;
//! - [`models`]: the catalogue, global rows overridden or extended by a tenant's rows (the
//!   tenant's row of a name wins, as with plans), each with its deployments in fallback
//!   order, its limits and its prices in credits per million tokens;
//! - [`policy`]: what a tenant decides on top of them: the models its users see, each
//!   user's allow-list, and whether (and how long) the text of calls is kept;
//! - [`limits`]: the per-minute limits of calls and tokens, the tenant's and each user's;
//! - [`calls`]: one call of any endpoint — resolve the model for the caller's tenant and
//!   plan, hold the worst case ([`estimate`]) through the two-phase reservations, call the
//!   deployments in order through the `Outbound` port ([`providers`]: one module per wire
//!   format), then settle the reported usage, count the tokens and record the call
//!   ([`interactions`]) in one batch;
//! - [`chat`]: `POST /v1/chat/completions`, and [`embeddings`]: `POST /v1/embeddings`, each
//!   checking its body, bounding its worst case and naming its wire;
//! - [`stream`]: a chat completion with `stream: true`, its events passed on as the provider
//!   writes them and the call settled when the provider is done;
//! - [`errors`]: every `/v1/` error in OpenAI's shape, so the SDKs raise their own classes.

pub mod calls;
pub mod chat;
pub mod embeddings;
pub mod errors;
pub mod estimate;
pub mod interactions;
pub mod keys;
pub mod limits;
pub mod models;
pub mod policy;
pub mod providers;
pub mod stream;

use std::rc::Rc;

use http::{Method, StatusCode};
use serde_json::{Map, Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Reply, Response},
    audit::{self, Action, Actor, Target},
    auth::{principal, principal::Principal, rbac::Permission},
    db::Statement,
    error::ApiResult,
    ids::TenantId,
    tenancy::admin,
};

/// Who changes the catalogue or the provider keys, and whose rows: a platform admin the
/// global ones, a tenant's owner or admin the tenant's.
pub(crate) struct Editor {
    tenant: Option<TenantId>,
    actor: Actor,
}

impl Editor {
    /// A platform admin, or 401/403.
    pub(crate) async fn platform(env: &Env, request: &ApiRequest) -> ApiResult<Self> {
        let admin_id = admin::authenticate(env, request).await?;
        Ok(Editor {
            tenant: None,
            actor: Actor::platform_admin(&admin_id, request.client()),
        })
    }

    /// A tenant's owner or admin (scope `llm:write` for an API key), or 403.
    pub(crate) fn tenant(principal: &Principal) -> ApiResult<Self> {
        principal.require(Permission::LlmManage)?;
        Ok(Editor {
            tenant: Some(principal.tenant_id.clone()),
            actor: Actor::of(principal),
        })
    }

    /// The `tenant_id` of the rows this editor owns: `None` for the global ones.
    pub(crate) fn tenant_id(&self) -> Option<&str> {
        self.tenant.as_ref().map(TenantId::as_str)
    }

    /// The audit statement of a change, for the change's own batch: the tenant's chain, or
    /// the platform's log.
    pub(crate) fn audit(
        &self,
        action: Action,
        target: Target,
        metadata: Json,
        now: i64,
    ) -> Statement {
        match &self.tenant {
            Some(tenant) => {
                audit::entry(tenant.as_str(), &self.actor, action, target, metadata, now)
            }
            None => audit::platform_entry(&self.actor, action, target, metadata, now),
        }
    }

    /// Seals the tenant's new audit entries (the platform's log is not chained).
    pub(crate) async fn seal(&self, env: &Env) {
        if let Some(tenant) = &self.tenant {
            audit::try_seal(env, tenant.as_str()).await;
        }
    }
}

/// Whose row it is, as the API shows it.
pub(crate) fn owner_of(tenant_id: Option<&str>) -> &'static str {
    match tenant_id {
        Some(_) => "tenant",
        None => "platform",
    }
}

/// As [`route`], on a runtime that streams: a chat completion with `stream: true` is
/// answered as server-sent events.
pub async fn serve(env: Rc<Env>, request: &ApiRequest, path: &str) -> Reply {
    let streamed = request.method == Method::POST
        && segments(path) == ["chat", "completions"]
        && request
            .json::<Map<String, Json>>()
            .is_ok_and(|body| chat::streams(&body));
    if !streamed {
        return Reply::Whole(route(&env, request, path).await);
    }
    let answer = async {
        let principal = principal::authenticate(&env, request).await?;
        chat::streamed(env.clone(), request, principal).await
    };
    match answer.await {
        Ok(reply) => reply,
        Err(error) => Reply::Whole(errors::response(error)),
    }
}

fn segments(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .collect()
}

/// Serves `/v1/{path}`: OpenAI's routes, every answer (errors included) in OpenAI's shape.
pub async fn route(env: &Env, request: &ApiRequest, path: &str) -> Response {
    match dispatch(env, request, path).await {
        Ok(response) => response,
        Err(error) => errors::response(error),
    }
}

async fn dispatch(env: &Env, request: &ApiRequest, path: &str) -> ApiResult<Response> {
    let method = &request.method;
    let allowed = match segments(path).as_slice() {
        ["chat", "completions"] if method == Method::POST => {
            let principal = principal::authenticate(env, request).await?;
            let mut response = chat::completions(env, request, &principal).await?;
            principal.rate.apply(&mut response);
            return Ok(response);
        }
        ["chat", "completions"] => "POST",
        ["embeddings"] if method == Method::POST => {
            let principal = principal::authenticate(env, request).await?;
            let mut response = embeddings::create(env, request, &principal).await?;
            principal.rate.apply(&mut response);
            return Ok(response);
        }
        ["embeddings"] => "POST",
        ["models", rest @ ..] if method == Method::GET => {
            let principal = principal::authenticate(env, request).await?;
            let mut response = match rest {
                [] => policy::list_usable(env, &principal).await?,
                // Model names may hold slashes (`meta-llama/Llama-3.1-8B-Instruct`).
                name => policy::get_usable(env, &principal, &name.join("/")).await?,
            };
            principal.rate.apply(&mut response);
            return Ok(response);
        }
        ["models", ..] => "GET",
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_url",
                format!("no route for {} {}", request.method, request.path),
            ));
        }
    };
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route answers {allowed}"),
    )
    .with_details(json!({ "allowed": [allowed] }))
    .with_header(http::header::ALLOW, allowed))
}
