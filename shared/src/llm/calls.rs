//! One call through the gateway, whatever its endpoint (chat completions, embeddings):
//!
//! 1. [`resolve`] the model the body names for the caller's tenant and plan (404
//!    `model_not_found` otherwise), with its deployments and whether the caller's
//!    `llm_tokens` quota is already used up (429): one read batch.
//! 2. Hold the worst case ([`WorstCase`]) at the model's prices through the two-phase
//!    reservations, as a hold only the gateway moves (`Owner::LlmCall`): 402 before any
//!    provider is called when it does not fit.
//! 3. Call the deployments in order through the `Outbound` port, each attempt bounded by
//!    `TOLLGATE_LLM_TIMEOUT_SECONDS`; a 429, a 5xx, a timeout or a failed connection moves on
//!    to the next; a request the provider refuses as malformed goes back to the client.
//! 4. In one batch: settle the hold at the reported usage (no usage reported: the hold) or
//!    release it when no provider answered, count the tokens into `llm_tokens` up to the
//!    limits, and record the interaction. Every statement of the batch hangs on the
//!    interaction row, which is written only while the hold is still held, so nothing in it
//!    can apply twice.
//!
//! What differs between endpoints is only the wire: [`Wire`] builds one attempt's request
//! for a provider kind and reads its answer.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value as Json};

use super::{
    estimate::{self, WorstCase},
    interactions::{self, Endpoint, Interaction, Status},
    keys,
    models::{self, Model},
    providers::{Completion, Failure, Kind, Target},
};
use crate::{
    ApiError, Env,
    api::{Response, ok},
    auth::principal::{Credential, Principal},
    credits::{
        MAX_AMOUNT,
        reservations::{self, Hold, Owner},
        within_balance,
    },
    db::Row,
    error::ApiResult,
    ids::new_id,
    outbound::{OutboundError, Timeout},
    quota::{counters, metrics::Metric},
    sql,
};

/// The header that names the interaction a call was recorded as.
pub const INTERACTION_HEADER: &str = "x-tollgate-interaction-id";

/// One endpoint's wire: an attempt's request for a provider kind, and its answer read back
/// in OpenAI's shape.
pub(super) trait Wire {
    fn request(&self, kind: Kind, target: &Target<'_>) -> Result<http::Request<Bytes>, Failure>;
    fn response(&self, kind: Kind, response: &http::Response<Bytes>)
    -> Result<Completion, Failure>;
}

/// The model a call names, resolved for its caller, with its deployments.
pub(super) struct Resolved {
    pub model: Model,
    /// What the client wrote: the name or an alias.
    pub requested: String,
    pub routes: Vec<Route>,
}

/// Resolves the body's model for the caller: 404 when the caller may not use it, 429 when
/// the caller's `llm_tokens` quota is used up, 503 when it has no deployment.
pub(super) async fn resolve(
    env: &Env,
    principal: &Principal,
    body: &Map<String, Json>,
) -> ApiResult<Resolved> {
    let requested = models::requested_name(body)?.to_owned();
    let (tenant, user) = (&principal.tenant_id, &principal.user_id);
    let now = env.now();
    let read = env
        .db
        .batch(vec![
            models::resolve(tenant, &requested),
            models::deployments(tenant, &requested),
            counters::used_up(tenant, user, Metric::LlmTokens, now),
        ])
        .await?;
    let model = models::usable(&read[0])?.ok_or_else(|| models::not_found(&requested))?;
    if !read[2].is_empty() {
        return Err(counters::exceeded(env, tenant, user, Metric::LlmTokens, 1, now).await);
    }
    let routes = read[1]
        .iter()
        .map(|row| Route::from_row(&row))
        .collect::<ApiResult<Vec<_>>>()?;
    if routes.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            format!("the model `{}` has no deployment to call", model.name),
        ));
    }
    Ok(Resolved {
        model,
        requested,
        routes,
    })
}

/// Holds the worst case, calls the deployments, settles and records the call, and answers.
pub(super) async fn run(
    env: &Env,
    principal: &Principal,
    resolved: &Resolved,
    endpoint: Endpoint,
    worst: WorstCase,
    wire: &dyn Wire,
) -> ApiResult<Response> {
    let hold = worst.credits(&resolved.model);
    let reservation = hold_credits(env, principal, &resolved.model, hold, env.now()).await?;
    let started = chrono::Utc::now();
    let outcome = call(env, &resolved.routes, wire).await;
    let latency_ms = (chrono::Utc::now() - started).num_milliseconds().max(0);
    let call = Call {
        principal,
        resolved,
        endpoint,
        reservation: reservation.as_deref(),
        hold,
        worst,
        latency_ms,
    };
    call.finish(env, outcome).await
}

/// One deployment of the resolved model, with its provider account.
pub(super) struct Route {
    pub kind: String,
    provider_key_id: String,
    deployment_model: String,
    base_url: String,
    api_key_sealed: String,
}

impl Route {
    fn from_row(row: &Row<'_>) -> ApiResult<Self> {
        Ok(Route {
            provider_key_id: row.get("provider_key_id")?,
            deployment_model: row.get("deployment_model")?,
            kind: row.get("kind")?,
            base_url: row.get("base_url")?,
            api_key_sealed: row.get("api_key_sealed")?,
        })
    }
}

/// How the deployments answered.
enum Outcome {
    /// A completion, from `routes[route]`.
    Answered {
        completion: Completion,
        route: usize,
    },
    /// `routes[route]` refused the request itself.
    Rejected {
        status: u16,
        message: String,
        route: usize,
    },
    /// None answered; the last one failed so.
    Exhausted {
        failure: Failure,
        timed_out: bool,
        route: usize,
    },
}

/// Holds `amount` for the call, owned by the gateway; `None` when the model is free.
async fn hold_credits(
    env: &Env,
    principal: &Principal,
    model: &Model,
    amount: i64,
    now: i64,
) -> ApiResult<Option<String>> {
    let (tenant, user) = (principal.tenant_id.as_str(), principal.user_id.as_str());
    if amount == 0 {
        return Ok(None);
    }
    if amount > MAX_AMOUNT {
        return Err(reservations::insufficient(env, tenant, user, amount).await?);
    }
    let id = new_id();
    let hold = Hold {
        amount,
        reason: Some("llm".into()),
        model: Some(model.name.clone()),
        job_id: None,
    };
    let mut statements = reservations::reserve_statements(
        tenant,
        user,
        &hold,
        Owner::LlmCall,
        &format!("llm:{id}"),
        &id,
        now,
    );
    statements.push(sql!("SELECT 1 FROM credit_reservations WHERE id = ?", &id));
    match within_balance(env, statements).await? {
        Some(results) if results.last().is_some_and(|rows| !rows.is_empty()) => Ok(Some(id)),
        // Refused by an account's balance, or no row written because an account is blocked.
        _ => Err(reservations::insufficient(env, tenant, user, amount).await?),
    }
}

/// Tries the deployments in order until one answers or refuses the request itself.
async fn call(env: &Env, routes: &[Route], wire: &dyn Wire) -> Outcome {
    let mut last = (
        Failure::Unavailable {
            status: None,
            message: "no deployment was tried".into(),
            retry_after: None,
        },
        false,
    );
    for (index, route) in routes.iter().enumerate() {
        let kind = match Kind::parse("kind", &route.kind) {
            Ok(kind) => kind,
            Err(_) => {
                last = (
                    unavailable(format!("unknown provider kind {}", route.kind)),
                    false,
                );
                continue;
            }
        };
        let api_key = match keys::open(
            &env.config.secrets,
            &route.provider_key_id,
            &route.api_key_sealed,
        ) {
            Ok(key) => key,
            Err(reason) => {
                last = (unavailable(reason), false);
                continue;
            }
        };
        let target = Target {
            base_url: &route.base_url,
            api_key: &api_key,
            model: &route.deployment_model,
        };
        let mut outgoing = match wire.request(kind, &target) {
            Ok(outgoing) => outgoing,
            Err(Failure::Rejected { status, message }) => {
                return Outcome::Rejected {
                    status,
                    message,
                    route: index,
                };
            }
            Err(failure) => {
                last = (failure, false);
                continue;
            }
        };
        outgoing
            .extensions_mut()
            .insert(Timeout(env.config.llm_timeout));
        let answered = match env.outbound.send(outgoing).await {
            Ok(response) => wire.response(kind, &response),
            Err(error) => {
                let timed_out = error == OutboundError::Timeout;
                last = (unavailable(error.to_string()), timed_out);
                continue;
            }
        };
        match answered {
            Ok(completion) => {
                return Outcome::Answered {
                    completion,
                    route: index,
                };
            }
            Err(Failure::Rejected { status, message }) => {
                return Outcome::Rejected {
                    status,
                    message,
                    route: index,
                };
            }
            Err(failure) => last = (failure, false),
        }
    }
    Outcome::Exhausted {
        failure: last.0,
        timed_out: last.1,
        route: routes.len() - 1,
    }
}

fn unavailable(message: String) -> Failure {
    Failure::Unavailable {
        status: None,
        message,
        retry_after: None,
    }
}

/// A call whose providers have answered (or not), to settle and record.
struct Call<'a> {
    principal: &'a Principal,
    resolved: &'a Resolved,
    endpoint: Endpoint,
    reservation: Option<&'a str>,
    hold: i64,
    worst: WorstCase,
    latency_ms: i64,
}

impl Call<'_> {
    /// Settles or releases the hold, counts the tokens and records the interaction in one
    /// batch, then answers the client.
    async fn finish(&self, env: &Env, outcome: Outcome) -> ApiResult<Response> {
        let interaction_id = new_id();
        let (route, usage, charge, error) = match &outcome {
            Outcome::Answered { completion, route } => {
                let charge = completion.usage.map_or(self.hold, |usage| {
                    estimate::cost(&usage, &self.resolved.model)
                });
                (*route, completion.usage, Some(charge), None)
            }
            Outcome::Rejected { message, route, .. } => (*route, None, None, Some(message.clone())),
            Outcome::Exhausted { failure, route, .. } => {
                let message = match failure {
                    Failure::Unavailable { message, .. } | Failure::Rejected { message, .. } => {
                        message.clone()
                    }
                };
                (*route, None, None, Some(message))
            }
        };
        // What a provider that reports no usage is counted for: the bound, as it is charged
        // the hold.
        let tokens = match (&outcome, usage) {
            (_, Some(usage)) => usage.prompt_tokens + usage.completion_tokens,
            (Outcome::Answered { .. }, None) => self.worst.tokens(),
            _ => 0,
        };
        let deployment = &self.resolved.routes[route];
        let (tenant, user) = (&self.principal.tenant_id, &self.principal.user_id);
        let now = env.now();
        let record = Interaction {
            id: &interaction_id,
            tenant_id: tenant.as_str(),
            user_id: user.as_str(),
            api_key_id: match &self.principal.credential {
                Credential::ApiKey { key_id, .. } => Some(key_id),
                Credential::Session { .. } => None,
            },
            endpoint: self.endpoint,
            model: &self.resolved.model.name,
            requested_model: &self.resolved.requested,
            provider_key_id: Some(&deployment.provider_key_id),
            deployment_model: Some(&deployment.deployment_model),
            attempts: route as i64 + 1,
            usage: usage.unwrap_or_default(),
            cost: charge.unwrap_or(0),
            reservation_id: self.reservation,
            latency_ms: self.latency_ms,
            status: match outcome {
                Outcome::Answered { .. } => Status::Succeeded,
                _ => Status::Failed,
            },
            error: error.as_deref(),
            created_at: now,
        };
        let recorded = interactions::recorded(&interaction_id);
        let mut statements = Vec::new();
        match self.reservation {
            Some(reservation) => {
                let held = sql!(
                    "SELECT 1 FROM credit_reservations WHERE id = ? AND status = 'held'",
                    reservation
                );
                statements.push(record.insert(Some(&held)));
                statements.extend(reservations::finish_statements(
                    tenant.as_str(),
                    user.as_str(),
                    reservation,
                    charge,
                    now,
                    &recorded,
                ));
                if charge.is_some() {
                    statements.push(interactions::charged_from(&interaction_id, reservation));
                }
            }
            None => statements.push(record.insert(None)),
        }
        let mut counted = statements.clone();
        if tokens > 0 {
            counted.extend(counters::increment_to_limit(
                tenant,
                user,
                Metric::LlmTokens,
                tokens.min(counters::MAX_AMOUNT),
                now,
                Some(&recorded),
            ));
        }
        match env.db.batch(counted).await {
            Ok(_) => {}
            // Tokens already spent are settled whatever the counters say: they fill up to
            // their limit. Only a limit lowered below what was already used still refuses,
            // and then the call is settled without counting.
            Err(error) if counters::is_quota_exceeded(&error) => {
                env.db.batch(statements).await?;
            }
            Err(error) => return Err(error.into()),
        }
        self.answer(outcome, &interaction_id)
    }

    /// What the client hears.
    fn answer(&self, outcome: Outcome, interaction_id: &str) -> ApiResult<Response> {
        match outcome {
            Outcome::Answered { completion, .. } => {
                let mut body = completion.body;
                // Clients see the catalogue's name, not the provider's.
                body.insert(
                    "model".into(),
                    Json::from(self.resolved.model.name.as_str()),
                );
                let mut response = ok(&Json::Object(body));
                if let Ok(value) = HeaderValue::from_str(interaction_id) {
                    response.headers_mut().insert(INTERACTION_HEADER, value);
                }
                Ok(response)
            }
            Outcome::Rejected {
                status, message, ..
            } => {
                let status = if status == 413 {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                Err(ApiError::new(status, "provider_rejected_request", message))
            }
            Outcome::Exhausted {
                failure, timed_out, ..
            } => Err(exhausted(&self.resolved.model.name, &failure, timed_out)),
        }
    }
}

/// The answer when no deployment answered: 504 when the last one timed out, 429 (with the
/// provider's `Retry-After`) when it was rate limited, else 502. The provider's own words
/// stay in the interaction record: they may name the account's key.
fn exhausted(model: &str, failure: &Failure, timed_out: bool) -> ApiError {
    let (status, retry_after) = match failure {
        Failure::Unavailable {
            status,
            retry_after,
            ..
        } => (*status, *retry_after),
        Failure::Rejected { status, .. } => (Some(*status), None),
    };
    if timed_out {
        return ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "provider_timeout",
            format!("no provider of `{model}` answered in time"),
        );
    }
    if status == Some(429) {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "provider_rate_limited",
            format!("every provider of `{model}` is rate limited; retry later"),
        )
        .with_header(http::header::RETRY_AFTER, retry_after.unwrap_or(1));
    }
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "provider_error",
        match status {
            Some(status) => {
                format!("no provider of `{model}` answered; the last one said {status}")
            }
            None => format!("no provider of `{model}` could be reached"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_504_a_rate_limit_429_with_retry_after_anything_else_502() {
        let timeout = exhausted("m", &unavailable("late".into()), true);
        assert_eq!(timeout.status, StatusCode::GATEWAY_TIMEOUT);
        let limited = Failure::Unavailable {
            status: Some(429),
            message: "slow down".into(),
            retry_after: Some(20),
        };
        let error = exhausted("m", &limited, false);
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            error
                .headers
                .iter()
                .any(|(name, value)| name == http::header::RETRY_AFTER && value == "20")
        );
        let failing = Failure::Unavailable {
            status: Some(500),
            message: "Incorrect API key provided: sk-...abcd".into(),
            retry_after: None,
        };
        let error = exhausted("m", &failing, false);
        assert_eq!(error.status, StatusCode::BAD_GATEWAY);
        assert!(!error.message.contains("sk-"), "{}", error.message);
    }
}
