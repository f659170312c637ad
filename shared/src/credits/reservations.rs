//! Two-phase spending: reserve an estimate before the work, then settle the actual cost or
//! release the hold. Each step is one batch; the account CHECK refuses a reserve that does
//! not fit, and the reservation's status moves from `held` exactly once, so concurrent
//! settles and releases can never hold or charge twice.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, created, ok, unscoped_key},
    audit::{self, Action, Actor, Target},
    auth::{principal::Principal, rbac::Permission},
    clock::rfc3339,
    credits::{
        accounts::{ensure_pool, ensure_user, pool_id, user_account_id},
        alerts,
        ledger::apply,
        within_balance,
    },
    db::{Row, Statement},
    error::ApiResult,
    ids::new_id,
    sql,
};

/// A settle may charge at most this much over the estimate (rounded up); a larger actual
/// cost is charged at the bound, and never beyond what the accounts still hold, so a job
/// that ran long cannot drive a balance below zero.
pub const SETTLE_OVERAGE_PERCENT: i64 = 10;

const RESERVATION_COLUMNS: &str =
    "id, user_id, amount, status, actual, charged, reason, model, job_id, owner, idempotency_key,
     created_at, finished_at, refunded_at";

/// Who moves a hold: its caller through the reservation endpoints, or the work it pays
/// for (a job's hold is settled or released by the job's lifecycle alone, an LLM call's by
/// the gateway when the provider has answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Caller,
    Job,
    LlmCall,
}

impl Owner {
    const ALL: [Owner; 3] = [Owner::Caller, Owner::Job, Owner::LlmCall];

    fn as_str(self) -> &'static str {
        match self {
            Owner::Caller => "caller",
            Owner::Job => "job",
            Owner::LlmCall => "llm_call",
        }
    }

    /// The work, as a sentence names it.
    fn described(self) -> &'static str {
        match self {
            Owner::Caller => "its caller",
            Owner::Job => "a job",
            Owner::LlmCall => "an LLM call",
        }
    }
}

fn reservation_json(row: &Row<'_>) -> ApiResult<Json> {
    let user_id = row.get::<String>("user_id")?;
    let key = row.get::<String>("idempotency_key")?;
    Ok(json!({
        "id": row.get::<String>("id")?,
        "idempotency_key": unscoped_key(&user_id, &key),
        "user_id": user_id,
        "amount": row.get::<i64>("amount")?,
        "status": row.get::<String>("status")?,
        "actual": row.get::<Option<i64>>("actual")?,
        "charged": row.get::<Option<i64>>("charged")?,
        "reason": row.get::<Option<String>>("reason")?,
        "model": row.get::<Option<String>>("model")?,
        "job_id": row.get::<Option<String>>("job_id")?,
        "owner": row.get::<String>("owner")?,
        "created_at": rfc3339(row.get("created_at")?),
        "finished_at": row.get::<Option<i64>>("finished_at")?.map(rfc3339),
        "refunded_at": row.get::<Option<i64>>("refunded_at")?.map(rfc3339),
    }))
}

/// What a caller asks to hold.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub amount: i64,
    pub reason: Option<String>,
    pub model: Option<String>,
    pub job_id: Option<String>,
}

fn bounded_text(field: &str, text: &Option<String>) -> ApiResult<()> {
    if text.as_ref().is_some_and(|text| text.chars().count() > 200) {
        return Err(ApiError::invalid_field(
            field,
            "must be at most 200 characters",
        ));
    }
    Ok(())
}

/// The answer when a reserve does not fit, with what remains.
pub(crate) async fn insufficient(
    env: &Env,
    tenant_id: &str,
    user_id: &str,
    amount: i64,
) -> ApiResult<ApiError> {
    let rows = env
        .db
        .execute(sql!(
            "SELECT id, total - used - reserved AS remaining, blocked_at FROM credit_accounts WHERE id IN (?, ?)",
            pool_id(tenant_id),
            user_account_id(user_id)
        ))
        .await?;
    let remaining = |id: &str| -> ApiResult<Option<i64>> {
        Ok(
            match rows
                .iter()
                .find(|row| row.get::<String>("id").is_ok_and(|found| found == id))
            {
                Some(row) => row.get("remaining")?,
                None => None,
            },
        )
    };
    let blocked = rows.iter().any(|row| {
        row.get::<Option<i64>>("blocked_at")
            .is_ok_and(|at| at.is_some())
    });
    let (code, message) = if blocked {
        (
            "credits_blocked",
            "credits are used up; spending resumes once credits are added",
        )
    } else {
        (
            "insufficient_credits",
            "not enough credits for this reservation",
        )
    };
    Ok(
        ApiError::new(StatusCode::PAYMENT_REQUIRED, code, message).with_details(json!({
            "requested": amount,
            "remaining": {
                "tenant": remaining(&pool_id(tenant_id))?.unwrap_or(0),
                "user": remaining(&user_account_id(user_id))?,
            },
        })),
    )
}

/// Holds `hold.amount` on the user's account and the tenant pool. Replaying the same key
/// returns the first reservation and moves nothing; the same key with another request is
/// a conflict.
pub async fn reserve(
    env: &Env,
    tenant_id: &str,
    user_id: &str,
    hold: &Hold,
    key: String,
) -> ApiResult<(bool, Json)> {
    super::bounded_amount("amount", hold.amount, 1)?;
    bounded_text("reason", &hold.reason)?;
    bounded_text("model", &hold.model)?;
    bounded_text("job_id", &hold.job_id)?;
    let now = env.now();
    let id = new_id();
    let mut statements =
        reserve_statements(tenant_id, user_id, hold, Owner::Caller, &key, &id, now);
    statements.push(sql!(
        format!("SELECT {RESERVATION_COLUMNS} FROM credit_reservations WHERE tenant_id = ? AND idempotency_key = ?"),
        tenant_id,
        &key
    ));
    let Some(results) = within_balance(env, statements).await? else {
        return Err(insufficient(env, tenant_id, user_id, hold.amount).await?);
    };
    let Some(row) = results.last().and_then(|rows| rows.first()) else {
        return Err(insufficient(env, tenant_id, user_id, hold.amount).await?);
    };
    let reservation = reservation_json(&row)?;
    let fresh = reservation["id"] == id.as_str();
    let same_request = reservation["user_id"] == user_id
        && reservation["amount"] == hold.amount
        && reservation["job_id"] == json!(hold.job_id);
    if !fresh && !same_request {
        return Err(ApiError::conflict(
            "idempotency_conflict",
            "this Idempotency-Key was used for a different reservation",
        )
        .with_details(json!({ "reservation_id": reservation["id"] })));
    }
    Ok((fresh, reservation))
}

/// The statements of a reserve (reservation `id` under `key`), for a caller that holds
/// credits in its own batch: a replayed key inserts nothing and moves nothing. Run the batch
/// through [`within_balance`]; a blocked account leaves no reservation row.
pub(crate) fn reserve_statements(
    tenant_id: &str,
    user_id: &str,
    hold: &Hold,
    owner: Owner,
    key: &str,
    id: &str,
    now: i64,
) -> Vec<Statement> {
    let (pool, account) = (pool_id(tenant_id), user_account_id(user_id));
    let ledger_ids = [new_id(), new_id()];
    let mut statements = vec![
        ensure_pool(tenant_id, now),
        ensure_user(tenant_id, user_id, now),
        sql!(
            "INSERT INTO credit_reservations (id, tenant_id, user_id, amount, status, reason, model, job_id,
                                              owner, idempotency_key, created_at)
             SELECT ?, ?, ?, ?, 'held', ?, ?, ?, ?, ?, ?
             WHERE NOT EXISTS (SELECT 1 FROM credit_accounts WHERE id IN (?, ?) AND blocked_at IS NOT NULL)
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
            id,
            tenant_id,
            user_id,
            hold.amount,
            hold.reason.clone(),
            hold.model.clone(),
            hold.job_id.clone(),
            owner.as_str(),
            key,
            now,
            &pool,
            &account
        ),
    ];
    for (ledger_id, account_id) in ledger_ids.iter().zip([&pool, &account]) {
        statements.push(Step::Reserve.ledger_row(ledger_id, account_id, id, now));
    }
    statements.push(apply(&[&ledger_ids[0], &ledger_ids[1]], now));
    statements
}

/// The statements that settle (`Some(actual)`) or release (`None`) reservation `id` of
/// `user_id`, for a caller's own batch, only when `guard` returns a row when they run. Each
/// is a no-op when the reservation is no longer held, so a retried batch moves nothing.
pub(crate) fn finish_statements(
    tenant: &str,
    user_id: &str,
    id: &str,
    actual: Option<i64>,
    now: i64,
    guard: &Statement,
) -> Vec<Statement> {
    let (pool, account) = (pool_id(tenant), user_account_id(user_id));
    let ledger_ids = [new_id(), new_id()];
    let (step, mut transition) = match actual {
        Some(actual) => (
            Step::Settle,
            sql!(
                format!(
                    "UPDATE credit_reservations SET status = 'settled', actual = ?, finished_at = ?,
                         charged = MIN(?, amount + (amount * {SETTLE_OVERAGE_PERCENT} + 99) / 100,
                                       amount + (SELECT MIN(total - used - reserved) FROM credit_accounts
                                                 WHERE id IN (?, ?) AND total IS NOT NULL))
                     WHERE id = ? AND tenant_id = ? AND status = 'held' AND EXISTS ({})",
                    guard.sql
                ),
                actual.max(0),
                now,
                actual.max(0),
                &pool,
                &account,
                id,
                tenant
            ),
        ),
        None => (
            Step::Release,
            sql!(
                format!(
                    "UPDATE credit_reservations SET status = 'released', finished_at = ?
                     WHERE id = ? AND tenant_id = ? AND status = 'held' AND EXISTS ({})",
                    guard.sql
                ),
                now,
                id,
                tenant
            ),
        ),
    };
    transition.params.extend(guard.params.iter().cloned());
    let mut statements = vec![transition];
    for (ledger_id, account_id) in ledger_ids.iter().zip([&pool, &account]) {
        statements.push(step.ledger_row(ledger_id, account_id, id, now));
    }
    statements.push(apply(&[&ledger_ids[0], &ledger_ids[1]], now));
    statements
}

/// The movements of a reservation's life.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    Reserve,
    Settle,
    Release,
    Refund,
}

impl Step {
    fn kind(self) -> &'static str {
        match self {
            Step::Reserve => "reserve",
            Step::Settle => "settle",
            Step::Release => "release",
            Step::Refund => "refund",
        }
    }

    /// The reservation state (over `r`) the movement needs.
    fn condition(self) -> &'static str {
        match self {
            Step::Reserve => "r.status = 'held'",
            Step::Settle => "r.status = 'settled'",
            Step::Release => "r.status = 'released'",
            Step::Refund => "r.status = 'settled' AND r.refunded_at IS NOT NULL",
        }
    }

    /// `(reserved_delta, used_delta)` as SQL over `r`.
    fn deltas(self) -> (&'static str, &'static str) {
        match self {
            Step::Reserve => ("r.amount", "0"),
            Step::Settle => ("-r.amount", "r.charged"),
            Step::Release => ("-r.amount", "0"),
            Step::Refund => ("0", "-r.charged"),
        }
    }

    /// A ledger row for `account_id` built from the reservation's own row, so it exists
    /// only when the reservation is in the state the movement needs. Its idempotency key is
    /// the reservation's key for a reserve and the reservation id for the steps after, so
    /// each step moves each account once.
    fn ledger_row(
        self,
        ledger_id: &str,
        account_id: &str,
        reservation_id: &str,
        now: i64,
    ) -> Statement {
        let (kind, condition) = (self.kind(), self.condition());
        let (reserved_delta, used_delta) = self.deltas();
        let key = if self == Step::Reserve {
            "r.idempotency_key"
        } else {
            "r.id"
        };
        sql!(
            format!(
                "INSERT INTO credit_ledger (id, tenant_id, account_id, kind, reserved_delta, used_delta, reason,
                                            actor_id, reservation_id, model, job_id, idempotency_key, created_at)
                 SELECT ?, r.tenant_id, ?, '{kind}', {reserved_delta}, {used_delta}, r.reason, r.user_id, r.id,
                        r.model, r.job_id, {key}, ?
                 FROM credit_reservations r WHERE r.id = ? AND {condition}
                 ON CONFLICT (account_id, kind, idempotency_key) DO NOTHING"
            ),
            ledger_id,
            account_id,
            now,
            reservation_id
        )
    }
}

/// Which reservations a caller may finish: its own, or with `CreditsManage` any of its
/// tenant's.
fn visible(principal: &Principal) -> Option<String> {
    match principal.require(Permission::CreditsManage) {
        Ok(()) => None,
        Err(_) => Some(principal.user_id.as_str().to_owned()),
    }
}

async fn fetch(env: &Env, principal: &Principal, id: &str) -> ApiResult<Json> {
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT {RESERVATION_COLUMNS} FROM credit_reservations
                 WHERE id = ? AND tenant_id = ? AND (? IS NULL OR user_id = ?)"
            ),
            id,
            &principal.tenant_id,
            visible(principal),
            visible(principal)
        ))
        .await?;
    rows.first()
        .map(|row| reservation_json(&row))
        .ok_or_else(|| ApiError::not_found("reservation"))?
}

/// A hold that belongs to work (a job, an LLM call) is refused to the reservation
/// endpoints: only the work's own lifecycle settles or releases it, so the work can never
/// run unpaid.
fn moved_by_caller(reservation: &Json) -> ApiResult<()> {
    if reservation["owner"] == Owner::Caller.as_str() {
        return Ok(());
    }
    let work = Owner::ALL
        .into_iter()
        .find(|owner| reservation["owner"] == owner.as_str())
        .map_or("work", Owner::described);
    Err(ApiError::conflict(
        "reservation_owned_by_work",
        format!(
            "this hold belongs to {work}; it is settled when the work finishes and released when it is cancelled or fails"
        ),
    )
    .with_details(json!({ "owner": reservation["owner"], "job_id": reservation["job_id"] })))
}

/// Settles the tenant's held reservation `id` at `actual` (charged within the overage
/// bound); the same settle again is a replay, anything else on a finished reservation a
/// conflict.
pub async fn settle(env: &Env, tenant: &str, id: &str, actual: i64) -> ApiResult<Json> {
    super::bounded_amount("actual", actual, 0)?;
    advance(env, tenant, id, Step::Settle, Some(actual), None).await
}

/// Releases the tenant's held reservation `id`.
pub async fn release(env: &Env, tenant: &str, id: &str) -> ApiResult<Json> {
    advance(env, tenant, id, Step::Release, None, None).await
}

/// Gives back what a settled reservation charged (a failed job, a goodwill credit), once.
/// Audited as Tollgate's own refund; [`refund_as`] names the actor.
pub async fn refund(env: &Env, tenant: &str, id: &str) -> ApiResult<Json> {
    refund_as(env, &Actor::system("credits"), tenant, id).await
}

/// [`refund`] by `actor`: the `credits.refunded` entry is written with the refund, once.
pub async fn refund_as(env: &Env, actor: &Actor, tenant: &str, id: &str) -> ApiResult<Json> {
    let json = advance(env, tenant, id, Step::Refund, None, Some(actor)).await?;
    audit::try_seal(env, tenant).await;
    Ok(json)
}

/// Moves a reservation one step (settle, release or refund) with its ledger rows, in one
/// batch. A step that already happened is a replay; a step the state forbids, a conflict.
/// With an `actor`, the step is audited in the batch when its pool ledger row is new.
async fn advance(
    env: &Env,
    tenant: &str,
    id: &str,
    step: Step,
    actual: Option<i64>,
    actor: Option<&Actor>,
) -> ApiResult<Json> {
    let read = sql!(
        format!(
            "SELECT {RESERVATION_COLUMNS} FROM credit_reservations WHERE id = ? AND tenant_id = ?"
        ),
        id,
        tenant
    );
    let current = env.db.execute(read.clone()).await?;
    let user_id: String = current
        .first()
        .ok_or_else(|| ApiError::not_found("reservation"))?
        .get("user_id")?;
    let now = env.now();
    let (pool, account) = (pool_id(tenant), user_account_id(&user_id));
    let ledger_ids = [new_id(), new_id()];
    let transition = match step {
        Step::Settle => sql!(
            format!(
                "UPDATE credit_reservations SET status = 'settled', actual = ?, finished_at = ?,
                     charged = MIN(?, amount + (amount * {SETTLE_OVERAGE_PERCENT} + 99) / 100,
                                   amount + (SELECT MIN(total - used - reserved) FROM credit_accounts
                                             WHERE id IN (?, ?) AND total IS NOT NULL))
                 WHERE id = ? AND tenant_id = ? AND status = 'held'"
            ),
            actual,
            now,
            actual,
            &pool,
            &account,
            id,
            tenant
        ),
        Step::Release => sql!(
            "UPDATE credit_reservations SET status = 'released', finished_at = ?
             WHERE id = ? AND tenant_id = ? AND status = 'held'",
            now,
            id,
            tenant
        ),
        Step::Refund | Step::Reserve => sql!(
            "UPDATE credit_reservations SET refunded_at = ?
             WHERE id = ? AND tenant_id = ? AND status = 'settled' AND refunded_at IS NULL",
            now,
            id,
            tenant
        ),
    };
    let mut statements = vec![transition];
    for (ledger_id, account_id) in ledger_ids.iter().zip([&pool, &account]) {
        statements.push(step.ledger_row(ledger_id, account_id, id, now));
    }
    statements.push(apply(&[&ledger_ids[0], &ledger_ids[1]], now));
    let touched = [pool, account];
    if step == Step::Refund {
        statements.extend(alerts::resolve(&touched, now));
    }
    if let Some(actor) = actor {
        statements.push(
            audit::entry(
                tenant,
                actor,
                Action::CreditsRefunded,
                Target::new("reservation", id),
                json!({ "user_id": user_id }),
                now,
            )
            .only_if_exists(&sql!(
                "SELECT 1 FROM credit_ledger WHERE id = ?",
                &ledger_ids[0]
            )),
        );
    }
    statements.push(read);
    let results = env.db.batch(statements).await?;
    let row = results
        .last()
        .and_then(|rows| rows.first())
        .ok_or_else(|| ApiError::not_found("reservation"))?;
    let after = reservation_json(&row)?;
    if results[0].rows_affected == 0 && !already_done(step, &after, actual) {
        return Err(ApiError::conflict(
            "reservation_finished",
            format!(
                "the reservation is {}{}",
                after["status"].as_str().unwrap_or("finished"),
                if after["refunded_at"].is_null() {
                    ""
                } else {
                    " and refunded"
                }
            ),
        )
        .with_details(json!({ "reservation": after })));
    }
    Ok(after)
}

/// Whether a step that changed nothing had already happened just so (a replay).
fn already_done(step: Step, reservation: &Json, actual: Option<i64>) -> bool {
    match step {
        Step::Settle => {
            reservation["status"] == "settled" && reservation["actual"] == json!(actual)
        }
        Step::Release => reservation["status"] == "released",
        Step::Refund => !reservation["refunded_at"].is_null(),
        Step::Reserve => false,
    }
}

/// `POST /api/v1/credits/reservations` with an optional `Idempotency-Key` header.
pub async fn create(env: &Env, request: &ApiRequest, principal: &Principal) -> ApiResult<Response> {
    principal.require(Permission::CreditsSpend)?;
    let hold: Hold = request.json()?;
    let key = request
        .idempotency_key(principal.user_id.as_str())?
        .unwrap_or_else(new_id);
    let (fresh, reservation) = reserve(
        env,
        principal.tenant_id.as_str(),
        principal.user_id.as_str(),
        &hold,
        key,
    )
    .await?;
    Ok(if fresh {
        created(&reservation)
    } else {
        ok(&reservation)
    })
}

/// `GET /api/v1/credits/reservations/{id}`
pub async fn get(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::CreditsRead)?;
    Ok(ok(&fetch(env, principal, id).await?))
}

#[derive(Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct Settle {
    actual: i64,
}

/// `POST /api/v1/credits/reservations/{id}/settle` `{"actual": n}`
pub async fn post_settle(
    env: &Env,
    request: &ApiRequest,
    principal: &Principal,
    id: &str,
) -> ApiResult<Response> {
    principal.require(Permission::CreditsSpend)?;
    let body: Settle = request.json()?;
    moved_by_caller(&fetch(env, principal, id).await?)?;
    Ok(ok(&settle(
        env,
        principal.tenant_id.as_str(),
        id,
        body.actual,
    )
    .await?))
}

/// `POST /api/v1/credits/reservations/{id}/release`
pub async fn post_release(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::CreditsSpend)?;
    moved_by_caller(&fetch(env, principal, id).await?)?;
    Ok(ok(&release(env, principal.tenant_id.as_str(), id).await?))
}

/// `POST /api/v1/credits/reservations/{id}/refund` (tenant admin)
pub async fn post_refund(env: &Env, principal: &Principal, id: &str) -> ApiResult<Response> {
    principal.require(Permission::CreditsManage)?;
    let actor = Actor::of(principal);
    Ok(ok(&refund_as(
        env,
        &actor,
        principal.tenant_id.as_str(),
        id,
    )
    .await?))
}
