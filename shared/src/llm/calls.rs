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

use std::future::Future;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value as Json};

use super::{
    estimate::{self, WorstCase},
    interactions::{self, Endpoint, Interaction, Status},
    keys,
    limits::{self, TokenWindows},
    models::{self, Model},
    policy::{self, Policy},
    providers::{Completion, Failure, Kind, Target, Usage},
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
    db::{DbError, Row},
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
    /// The request's text (`messages` or `input`, as JSON), when the tenant keeps it.
    pub kept_request: Option<String>,
    /// The per-minute token windows the call's tokens count into.
    pub token_windows: TokenWindows,
}

/// Resolves the body's model for the caller: 404 when the caller's plan or tenant gives no
/// such model, 403 when it is off the caller's allow-list ([`Policy`]), 429 when the
/// caller's `llm_tokens` quota is used up or a per-minute limit ([`limits`]) is reached, 503
/// when it has no deployment.
pub(super) async fn resolve(
    env: &Env,
    principal: &Principal,
    body: &Map<String, Json>,
) -> ApiResult<Resolved> {
    let requested = models::requested_name(body)?.to_owned();
    let (tenant, user) = (&principal.tenant_id, &principal.user_id);
    let now = env.now();
    let mut statements = vec![
        models::resolve(tenant, &requested),
        models::deployments(tenant, &requested),
        counters::used_up(tenant, user, Metric::LlmTokens, now),
        Policy::read(tenant, user.as_str()),
    ];
    let caller = limits::Caller {
        user: user.as_str(),
        key: match &principal.credential {
            Credential::ApiKey { key_id, .. } => Some(key_id.as_str()),
            Credential::Session { .. } => None,
        },
    };
    statements.extend(limits::arrival(&*env.rate_limiter, tenant, &caller, now));
    let read = env.db.batch(statements).await?;
    let model = models::usable(&read[0])?.ok_or_else(|| models::not_found(&requested))?;
    let policy = Policy::from_rows(&read[3])?;
    policy.check(&model.name, &requested)?;
    let token_windows = limits::admit(&*env.rate_limiter, &read[4..], tenant, &caller, now)?;
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
    let kept_request = policy
        .keeps_content
        .then(|| body.get("messages").or_else(|| body.get("input")))
        .flatten()
        .map(Json::to_string);
    Ok(Resolved {
        model,
        requested,
        routes,
        kept_request,
        token_windows,
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
    let outcome = call(env, &resolved.routes, wire, |kind, outgoing| async move {
        match env.outbound.send(outgoing).await {
            Ok(response) => wire
                .response(kind, &response)
                .map_err(|failure| (failure, false)),
            Err(error) => Err(failed_to_send(error)),
        }
    })
    .await;
    let call = Call {
        interaction_id: new_id(),
        principal,
        resolved,
        endpoint,
        reservation: reservation.as_deref(),
        hold,
        worst,
        latency_ms: elapsed_ms(started),
        first_token_ms: None,
    };
    let mut ending = outcome.ending(|completion| completion.usage);
    if let Outcome::Answered { answer, .. } = &outcome
        && resolved.kept_request.is_some()
    {
        ending.kept_response = answer.messages().map(|messages| messages.to_string());
    }
    call.record(env, ending).await?;
    call.answer(outcome)
}

/// Milliseconds since `started`.
pub(super) fn elapsed_ms(started: chrono::DateTime<chrono::Utc>) -> i64 {
    (chrono::Utc::now() - started).num_milliseconds().max(0)
}

/// The failure of an attempt whose request could not be sent, and whether it timed out.
pub(super) fn failed_to_send(error: OutboundError) -> (Failure, bool) {
    let timed_out = error == OutboundError::Timeout;
    (unavailable(error.to_string()), timed_out)
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
pub(super) enum Outcome<T> {
    /// An answer (a completion, or a stream that has begun), from `routes[route]`.
    Answered { answer: T, route: usize },
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

impl<T> Outcome<T> {
    /// How the call ended, for its settle and record, with the usage an answer reports.
    pub(super) fn ending(&self, usage: impl FnOnce(&T) -> Option<Usage>) -> Ending {
        match self {
            Outcome::Answered { answer, route } => Ending {
                route: *route,
                answered: true,
                usage: usage(answer),
                error: None,
                kept_response: None,
            },
            Outcome::Rejected { message, route, .. } => Ending {
                route: *route,
                answered: false,
                usage: None,
                error: Some(message.clone()),
                kept_response: None,
            },
            Outcome::Exhausted {
                failure: Failure::Unavailable { message, .. } | Failure::Rejected { message, .. },
                route,
                ..
            } => Ending {
                route: *route,
                answered: false,
                usage: None,
                error: Some(message.clone()),
                kept_response: None,
            },
        }
    }
}

/// How a call ended: which deployment, whether a provider answered (and so is paid), the
/// usage it reported, and what went wrong.
pub(super) struct Ending {
    pub route: usize,
    /// True when a provider answered, even in part: the call is charged its reported usage,
    /// or without one the hold. False: the hold is released.
    pub answered: bool,
    pub usage: Option<Usage>,
    pub error: Option<String>,
    /// The answer's messages (JSON), kept when the tenant keeps the text of calls.
    pub kept_response: Option<String>,
}

/// Holds `amount` for the call, owned by the gateway; `None` when the model is free.
pub(super) async fn hold_credits(
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

/// How old a call's hold must be before cron takes its call for lost: far past the longest
/// call (each deployment's wait for its answer, then a stream of at most
/// [`crate::outbound::STREAM_LIMIT`]).
pub const STALE_HOLD_SECONDS: i64 = 3_600;
/// Stale holds released per cron run; the next run carries on.
const STALE_HOLDS_PER_RUN: i64 = 500;

/// Releases the holds of calls that never finished (their server stopped mid-call, or the
/// settle's write failed): without a provider's count there is nothing to charge. Returns
/// how many were released.
pub async fn release_stale_holds(env: &Env) -> Result<u64, DbError> {
    let now = env.now();
    let stale = env
        .db
        .execute(sql!(
            "SELECT id, tenant_id, user_id FROM credit_reservations
             WHERE owner = 'llm_call' AND status = 'held' AND created_at < ?
             ORDER BY created_at LIMIT ?",
            now - STALE_HOLD_SECONDS,
            STALE_HOLDS_PER_RUN
        ))
        .await?;
    let mut statements = Vec::new();
    let mut transitions = Vec::new();
    for row in stale.iter() {
        let (id, tenant, user): (String, String, String) =
            (row.get("id")?, row.get("tenant_id")?, row.get("user_id")?);
        let guard = sql!("SELECT 1 FROM credit_reservations WHERE id = ?", &id);
        transitions.push(statements.len());
        statements.extend(reservations::finish_statements(
            &tenant, &user, &id, None, now, &guard,
        ));
    }
    if statements.is_empty() {
        return Ok(0);
    }
    let results = env.db.batch(statements).await?;
    Ok(transitions
        .into_iter()
        .map(|index| results[index].rows_affected)
        .sum())
}

/// Tries the deployments in order until one answers or refuses the request itself:
/// `attempt` sends one deployment's request and reads its answer, or says why there is
/// none and whether it timed out.
pub(super) async fn call<T, Attempt, Answer>(
    env: &Env,
    routes: &[Route],
    wire: &dyn Wire,
    mut attempt: Attempt,
) -> Outcome<T>
where
    Attempt: FnMut(Kind, http::Request<Bytes>) -> Answer,
    Answer: Future<Output = Result<T, (Failure, bool)>>,
{
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
        let outgoing = wire.request(kind, &target).map(|mut outgoing| {
            outgoing
                .extensions_mut()
                .insert(Timeout(env.config.llm_timeout));
            outgoing
        });
        let answered = match outgoing {
            Ok(outgoing) => attempt(kind, outgoing).await,
            Err(failure) => Err((failure, false)),
        };
        match answered {
            Ok(answer) => {
                return Outcome::Answered {
                    answer,
                    route: index,
                };
            }
            Err((Failure::Rejected { status, message }, _)) => {
                return Outcome::Rejected {
                    status,
                    message,
                    route: index,
                };
            }
            Err(failure) => last = failure,
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
pub(super) struct Call<'a> {
    /// The id its record will have, which the answer names.
    pub interaction_id: String,
    pub principal: &'a Principal,
    pub resolved: &'a Resolved,
    pub endpoint: Endpoint,
    pub reservation: Option<&'a str>,
    pub hold: i64,
    pub worst: WorstCase,
    pub latency_ms: i64,
    /// For a stream: when its first event came.
    pub first_token_ms: Option<i64>,
}

impl Call<'_> {
    /// Settles or releases the hold, counts the tokens and records the interaction in one
    /// batch.
    pub(super) async fn record(&self, env: &Env, ending: Ending) -> ApiResult<()> {
        let interaction_id = self.interaction_id.as_str();
        let charge = ending.answered.then(|| {
            ending.usage.map_or(self.hold, |usage| {
                estimate::cost(&usage, &self.resolved.model)
            })
        });
        // What a provider that reports no usage is counted for: the bound, as it is charged
        // the hold.
        let tokens = match ending.usage {
            Some(usage) => usage.prompt_tokens + usage.completion_tokens,
            None if ending.answered => self.worst.tokens(),
            None => 0,
        };
        let deployment = &self.resolved.routes[ending.route];
        let (tenant, user) = (&self.principal.tenant_id, &self.principal.user_id);
        let now = env.now();
        let record = Interaction {
            id: interaction_id,
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
            attempts: ending.route as i64 + 1,
            usage: ending.usage.unwrap_or_default(),
            cost: charge.unwrap_or(0),
            reservation_id: self.reservation,
            latency_ms: self.latency_ms,
            first_token_ms: self.first_token_ms,
            status: if ending.error.is_none() {
                Status::Succeeded
            } else {
                Status::Failed
            },
            error: ending.error.as_deref(),
            created_at: now,
        };
        let recorded = interactions::recorded(interaction_id);
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
                    statements.push(interactions::charged_from(interaction_id, reservation));
                }
            }
            None => statements.push(record.insert(None)),
        }
        statements.extend(self.resolved.token_windows.count(tokens, now, &recorded));
        if let Some(request) = &self.resolved.kept_request {
            statements.push(policy::keep_content(
                interaction_id,
                tenant,
                request,
                ending.kept_response.as_deref(),
                now,
                &recorded,
            ));
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
            Ok(_) => Ok(()),
            // Tokens already spent are settled whatever the counters say: they fill up to
            // their limit. Only a limit lowered below what was already used still refuses,
            // and then the call is settled without counting.
            Err(error) if counters::is_quota_exceeded(&error) => {
                env.db.batch(statements).await?;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// What the client hears of a whole call.
    fn answer(&self, outcome: Outcome<Completion>) -> ApiResult<Response> {
        match outcome {
            Outcome::Answered {
                answer: completion, ..
            } => {
                let mut body = completion.body;
                // Clients see the catalogue's name, not the provider's.
                body.insert(
                    "model".into(),
                    Json::from(self.resolved.model.name.as_str()),
                );
                let mut response = ok(&Json::Object(body));
                self.name_in(&mut response);
                Ok(response)
            }
            Outcome::Rejected { .. } | Outcome::Exhausted { .. } => Err(self.refusal(outcome)),
        }
    }

    /// Names the call's record in `response`.
    pub(super) fn name_in(&self, response: &mut Response) {
        if let Ok(value) = HeaderValue::from_str(&self.interaction_id) {
            response.headers_mut().insert(INTERACTION_HEADER, value);
        }
    }

    /// The error the client hears when no provider answered.
    pub(super) fn refusal<T>(&self, outcome: Outcome<T>) -> ApiError {
        match outcome {
            Outcome::Rejected {
                status, message, ..
            } => {
                let status = if status == 413 {
                    StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    StatusCode::BAD_REQUEST
                };
                ApiError::new(status, "provider_rejected_request", message)
            }
            Outcome::Exhausted {
                failure, timed_out, ..
            } => exhausted(&self.resolved.model.name, &failure, timed_out),
            Outcome::Answered { .. } => {
                ApiError::internal().caused_by("an answered call has no refusal")
            }
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
