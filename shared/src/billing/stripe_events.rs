//! `POST /api/v1/webhooks/stripe`: verify, record by event id, apply.
//!
//! Which tenant an event concerns comes from `metadata.tenant_id` (set on the Checkout
//! Session, and on its subscription through `subscription_data.metadata`), from
//! `client_reference_id`, or from the Stripe customer a completed checkout linked to the
//! tenant. An event whose tenant cannot be found yet answers 409 without recording it:
//! Stripe retries, and by then the checkout that links the customer has usually arrived —
//! so the final state is right whatever order events come in.
//!
//! Ordering of plan changes: every subscription effect stores the event's `created` time
//! and applies only if it is not older than the one already applied.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::{
    ApiError, Env,
    api::{ApiRequest, Response, ok},
    audit::{self, Action, Actor, Target},
    billing::signature,
    credits::{
        accounts::{ensure_pool, pool_id},
        alerts,
        ledger::{Movement, apply},
    },
    db::Statement,
    error::ApiResult,
    ids::new_id,
    sql,
    tenancy::plans,
};

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Json,
}

/// The event types this endpoint acts on; others are acknowledged and ignored.
const HANDLED: &[&str] = &[
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "charge.refunded",
];

/// Subscription statuses that keep the paid plan.
const LIVE_STATUSES: &[&str] = &["active", "trialing", "past_due"];

fn text<'a>(object: &'a Json, pointer: &str) -> Option<&'a str> {
    object
        .pointer(pointer)
        .and_then(Json::as_str)
        .filter(|text| !text.is_empty())
}

/// The tenant an event's object names, directly or through its customer.
struct TenantRef {
    id: String,
    monthly_credits: i64,
}

async fn find_tenant(env: &Env, object: &Json) -> ApiResult<Option<TenantRef>> {
    let named = text(object, "/metadata/tenant_id")
        .or_else(|| text(object, "/client_reference_id"))
        .or_else(|| text(object, "/parent/subscription_details/metadata/tenant_id"))
        .or_else(|| text(object, "/subscription_details/metadata/tenant_id"));
    let customer = text(object, "/customer");
    if named.is_none() && customer.is_none() {
        return Ok(None);
    }
    let rows = env
        .db
        .execute(sql!(
            format!(
                "SELECT t.id, {credits} AS monthly_credits FROM tenants t
                 WHERE t.status != 'deleted' AND (t.id = ? OR t.stripe_customer_id = ?)
                 ORDER BY t.id = ? DESC LIMIT 1",
                credits = plans::MONTHLY_CREDITS_OF_T
            ),
            named,
            customer,
            named
        ))
        .await?;
    rows.first()
        .map(|row| {
            Ok(TenantRef {
                id: row.get("id")?,
                monthly_credits: row.get("monthly_credits")?,
            })
        })
        .transpose()
}

/// An outbox event for the tenant, written only when `written_now` finds the row this batch
/// wrote (the Stripe event, or the ledger movement).
fn outbox(
    tenant_id: &str,
    kind: &str,
    payload: Json,
    now: i64,
    written_now: &Statement,
) -> Statement {
    sql!(
        "INSERT INTO outbox_events (id, tenant_id, type, payload, created_at) VALUES (?, ?, ?, ?, ?)",
        new_id(),
        tenant_id,
        kind,
        payload.to_string(),
        now
    )
    .only_if_exists(written_now)
}

/// An audit entry by Stripe, written only when `written_now` finds the row this batch wrote.
fn audited(
    tenant_id: &str,
    action: Action,
    target: Target,
    metadata: Json,
    now: i64,
    written_now: &Statement,
) -> Statement {
    audit::entry(
        tenant_id,
        &Actor::system("stripe"),
        action,
        target,
        metadata,
        now,
    )
    .only_if_exists(written_now)
}

/// Finds the tenant only when this batch recorded the event and its subscription change
/// was the one applied (not skipped as older than what the tenant already has).
fn plan_applied(tenant_id: &str, event: &Event, fresh: &Statement) -> Statement {
    let mut query = Statement::new(format!(
        "SELECT 1 FROM tenants WHERE id = ? AND subscription_event_at = ? AND EXISTS ({})",
        fresh.sql
    ));
    query.params = vec![tenant_id.into(), event.created.into()];
    query.params.extend(fresh.params.iter().cloned());
    query
}

/// The `plan.changed` event and its audit entry, written only when this event's plan change
/// was the one applied. `change` is the event's payload; the audit entry keeps it with the
/// Stripe event's id in place of its source.
fn plan_changed(
    tenant_id: &str,
    event: &Event,
    fresh: &Statement,
    change: Json,
    now: i64,
) -> [Statement; 2] {
    let applied = plan_applied(tenant_id, event, fresh);
    let mut metadata = change.clone();
    if let Some(fields) = metadata.as_object_mut() {
        fields.remove("source");
        fields.insert("stripe_event".into(), json!(event.id));
    }
    [
        outbox(tenant_id, "plan.changed", change, now, &applied),
        audited(
            tenant_id,
            Action::PlanChanged,
            Target::new("tenant", tenant_id),
            metadata,
            now,
            &applied,
        ),
    ]
}

/// Moves the tenant to `plan` unless a newer subscription event already decided.
fn change_plan(
    tenant_id: &str,
    plan: &str,
    subscription: Option<&str>,
    created: i64,
    now: i64,
) -> Statement {
    sql!(
        "UPDATE tenants SET plan_code = ?, stripe_subscription_id = ?, subscription_event_at = ?, updated_at = ?
         WHERE id = ? AND (subscription_event_at IS NULL OR subscription_event_at <= ?)",
        plan,
        subscription,
        created,
        now,
        tenant_id,
        created
    )
}

/// A pool movement keyed by a Stripe object id, so the same purchase or grant never lands
/// twice, whichever event carries it; with the query that finds its ledger row only when
/// this batch wrote it.
fn pool_credit(
    tenant_id: &str,
    kind: &'static str,
    amount: i64,
    reason: &str,
    key: String,
    now: i64,
) -> (Vec<Statement>, Statement) {
    let movement = Movement {
        id: new_id(),
        tenant_id,
        account_id: pool_id(tenant_id),
        kind,
        total_delta: amount,
        used_delta: 0,
        reserved_delta: 0,
        reason: Some(reason.to_owned()),
        actor_id: Some("stripe".into()),
        idempotency_key: key,
        now,
    };
    let mut statements = vec![
        ensure_pool(tenant_id, now),
        movement.record(),
        apply(&[&movement.id], now),
    ];
    statements.extend(alerts::resolve(&[pool_id(tenant_id)], now));
    let moved = sql!("SELECT 1 FROM credit_ledger WHERE id = ?", &movement.id);
    (statements, moved)
}

/// Where a Checkout Session's payment stands. A session paid by a delayed method (bank
/// debits, vouchers) completes unpaid and is settled later by an async payment event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Payment {
    Paid,
    Pending,
    Failed,
}

impl Payment {
    fn of(event: &Event) -> Self {
        if event.kind == "checkout.session.async_payment_failed" {
            return Payment::Failed;
        }
        match text(&event.data.object, "/payment_status") {
            Some("paid" | "no_payment_required") => Payment::Paid,
            _ => Payment::Pending,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Payment::Paid => "paid",
            Payment::Pending => "pending",
            Payment::Failed => "failed",
        }
    }
}

/// What a Checkout Session buys: a plan (subscription mode) or credits (payment mode).
#[derive(Clone, Copy)]
enum Purchase {
    Plan(&'static str),
    Credits(i64),
}

/// A Checkout Session's effect: the plan or the credits it buys once it is paid, whichever
/// of `checkout.session.completed` (paid at once) or `…async_payment_succeeded` says so,
/// and a notice to the tenant when a delayed payment fails. Credits are granted under the
/// session's id, so a session never grants twice whatever order its events come in.
fn checkout(
    event: &Event,
    tenant_id: &str,
    fresh: &Statement,
    now: i64,
) -> ApiResult<Vec<Statement>> {
    let object = &event.data.object;
    let mut statements = Vec::new();
    if let Some(customer) = text(object, "/customer") {
        statements.push(sql!(
            "UPDATE tenants SET stripe_customer_id = COALESCE(stripe_customer_id, ?) WHERE id = ?",
            customer,
            tenant_id
        ));
    }
    let session = text(object, "/id").unwrap_or(&event.id);
    let payment = Payment::of(event);
    let purchase = match text(object, "/mode") {
        Some("subscription") => Purchase::Plan(plans::parse_code(
            "metadata.plan",
            text(object, "/metadata/plan").unwrap_or_default(),
        )?),
        _ => Purchase::Credits(
            text(object, "/metadata/credits")
                .and_then(|credits| credits.parse::<i64>().ok())
                .filter(|credits| *credits > 0)
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "metadata.credits",
                        "a credit purchase names its credits",
                    )
                })?,
        ),
    };
    if let Purchase::Credits(credits) = purchase {
        // Pending becomes paid or failed once; a late `completed` changes neither.
        statements.push(sql!(
            "INSERT INTO credit_purchases (checkout_session_id, tenant_id, payment_intent, credits, status, created_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (checkout_session_id) DO UPDATE SET
                 status = excluded.status,
                 payment_intent = COALESCE(credit_purchases.payment_intent, excluded.payment_intent)
             WHERE credit_purchases.status = 'pending' AND credit_purchases.tenant_id = excluded.tenant_id",
            session,
            tenant_id,
            text(object, "/payment_intent"),
            credits,
            payment.as_str(),
            now
        ));
    }
    match (payment, purchase) {
        (Payment::Pending, _) => {}
        (Payment::Paid, Purchase::Plan(plan)) => {
            statements.push(change_plan(
                tenant_id,
                plan,
                text(object, "/subscription"),
                event.created,
                now,
            ));
            statements.extend(plan_changed(
                tenant_id,
                event,
                fresh,
                json!({ "plan": plan, "source": "checkout" }),
                now,
            ));
        }
        (Payment::Paid, Purchase::Credits(credits)) => {
            let (purchase, bought) = pool_credit(
                tenant_id,
                "purchase",
                credits,
                "stripe checkout",
                format!("checkout:{session}"),
                now,
            );
            statements.extend(purchase);
            statements.push(outbox(
                tenant_id,
                "credits.purchased",
                json!({ "credits": credits, "checkout_session": session }),
                now,
                &bought,
            ));
            statements.push(audited(
                tenant_id,
                Action::CreditsPurchased,
                Target::new("checkout_session", session),
                json!({ "credits": credits, "stripe_event": event.id }),
                now,
                &bought,
            ));
        }
        (Payment::Failed, purchase) => {
            let details = match purchase {
                Purchase::Plan(plan) => json!({ "checkout_session": session, "plan": plan }),
                Purchase::Credits(credits) => {
                    json!({ "checkout_session": session, "credits": credits })
                }
            };
            statements.push(outbox(
                tenant_id,
                "billing.payment_failed",
                details.clone(),
                now,
                fresh,
            ));
            let mut metadata = details;
            metadata["stripe_event"] = json!(event.id);
            statements.push(audited(
                tenant_id,
                Action::BillingPaymentFailed,
                Target::new("checkout_session", session),
                metadata,
                now,
                fresh,
            ));
        }
    }
    Ok(statements)
}

/// The statements of one event's effect.
fn effects(
    event: &Event,
    tenant: &TenantRef,
    fresh: &Statement,
    now: i64,
    grace_seconds: i64,
) -> ApiResult<Vec<Statement>> {
    let object = &event.data.object;
    let tenant_id = tenant.id.as_str();
    let mut statements = Vec::new();
    match event.kind.as_str() {
        "checkout.session.completed"
        | "checkout.session.async_payment_succeeded"
        | "checkout.session.async_payment_failed" => {
            statements.extend(checkout(event, tenant_id, fresh, now)?);
        }
        "invoice.paid" => {
            let invoice = text(object, "/id").unwrap_or(&event.id);
            let for_subscription = text(object, "/subscription").is_some()
                || text(object, "/parent/subscription_details/subscription").is_some();
            statements.push(sql!(
                "UPDATE tenants SET billing_status = 'ok', grace_until = NULL WHERE id = ?",
                tenant_id
            ));
            if for_subscription && tenant.monthly_credits > 0 {
                let (grant, granted) = pool_credit(
                    tenant_id,
                    "grant",
                    tenant.monthly_credits,
                    "plan monthly credits",
                    format!("invoice:{invoice}"),
                    now,
                );
                statements.extend(grant);
                statements.push(outbox(
                    tenant_id,
                    "credits.granted",
                    json!({ "credits": tenant.monthly_credits, "invoice": invoice }),
                    now,
                    &granted,
                ));
                statements.push(audited(
                    tenant_id,
                    Action::CreditsGranted,
                    Target::new("invoice", invoice),
                    json!({ "credits": tenant.monthly_credits, "stripe_event": event.id }),
                    now,
                    &granted,
                ));
            }
        }
        "invoice.payment_failed" => {
            statements.push(sql!(
                "UPDATE tenants SET billing_status = 'past_due', grace_until = COALESCE(grace_until, ?) WHERE id = ?",
                now + grace_seconds,
                tenant_id
            ));
            statements.push(outbox(
                tenant_id,
                "billing.payment_failed",
                json!({ "invoice": text(object, "/id") }),
                now,
                fresh,
            ));
        }
        "customer.subscription.updated" | "customer.subscription.deleted" => {
            let status = text(object, "/status").unwrap_or_default();
            let live = event.kind.ends_with("updated") && LIVE_STATUSES.contains(&status);
            let subscription = text(object, "/id");
            // The plan a live subscription pays for: its metadata, else its price's plan; an
            // ended one falls back to FREE.
            let plan = match (live, text(object, "/metadata/plan")) {
                (true, Some(plan)) => sql!("SELECT ?", plans::parse_code("metadata.plan", plan)?),
                (true, None) => sql!(
                    "SELECT code FROM plans WHERE tenant_id IS NULL AND stripe_price_id = ?",
                    text(object, "/items/data/0/price/id")
                ),
                (false, _) => sql!("SELECT 'FREE'"),
            };
            let mut update = Statement::new(format!(
                "UPDATE tenants SET plan_code = COALESCE(({}), plan_code),
                     stripe_subscription_id = ?, subscription_event_at = ?, updated_at = ?
                 WHERE id = ? AND (subscription_event_at IS NULL OR subscription_event_at <= ?)",
                plan.sql
            ));
            update.params = plan.params;
            statements.push(
                update
                    .bind(if live { subscription } else { None })
                    .bind(event.created)
                    .bind(now)
                    .bind(tenant_id)
                    .bind(event.created),
            );
            statements.extend(plan_changed(
                tenant_id,
                event,
                fresh,
                json!({ "subscription_status": status, "source": event.kind }),
                now,
            ));
        }
        "charge.refunded" => {
            let charge = text(object, "/id").unwrap_or(&event.id);
            let amount = object
                .pointer("/amount")
                .and_then(Json::as_i64)
                .unwrap_or(0);
            let refunded = object
                .pointer("/amount_refunded")
                .and_then(Json::as_i64)
                .unwrap_or(0);
            let payment_intent = text(object, "/payment_intent");
            if amount > 0 && refunded > 0 && payment_intent.is_some() {
                statements.extend(claw_back(
                    tenant_id,
                    payment_intent,
                    charge,
                    amount,
                    refunded,
                    now,
                ));
                statements.push(outbox(
                    tenant_id,
                    "credits.refunded",
                    json!({ "charge": charge, "amount_refunded": refunded }),
                    now,
                    fresh,
                ));
                statements.push(audited(
                    tenant_id,
                    Action::CreditsRefunded,
                    Target::new("charge", charge),
                    json!({ "amount_refunded": refunded, "stripe_event": event.id }),
                    now,
                    fresh,
                ));
            }
        }
        _ => {}
    }
    Ok(statements)
}

/// Takes back the share of a purchase's credits that a refund returned (cumulative over
/// partial refunds), as far as they are unspent; spent credits are not taken twice.
fn claw_back(
    tenant_id: &str,
    payment_intent: Option<&str>,
    charge: &str,
    amount: i64,
    refunded: i64,
    now: i64,
) -> Vec<Statement> {
    let ledger_id = new_id();
    let pool = pool_id(tenant_id);
    let owed = "(SELECT credits * ? / ? - clawed_back FROM credit_purchases
                 WHERE tenant_id = ? AND payment_intent = ? AND status = 'paid')";
    vec![
        sql!(
            format!(
                "INSERT INTO credit_ledger (id, tenant_id, account_id, kind, total_delta, reason, actor_id, idempotency_key, created_at)
                 SELECT ?, ?, a.id, 'refund', -MIN({owed}, a.total - a.used - a.reserved), 'stripe refund', 'stripe', ?, ?
                 FROM credit_accounts a WHERE a.id = ? AND {owed} > 0
                 ON CONFLICT (account_id, kind, idempotency_key) DO NOTHING"
            ),
            &ledger_id,
            tenant_id,
            refunded,
            amount,
            tenant_id,
            payment_intent,
            format!("charge:{charge}:{refunded}"),
            now,
            &pool,
            refunded,
            amount,
            tenant_id,
            payment_intent
        ),
        apply(&[&ledger_id], now),
        sql!(
            "UPDATE credit_purchases SET clawed_back = credits * ? / ?
             WHERE tenant_id = ? AND payment_intent = ? AND status = 'paid' AND clawed_back < credits * ? / ?",
            refunded,
            amount,
            tenant_id,
            payment_intent,
            refunded,
            amount
        ),
    ]
}

/// `POST /api/v1/webhooks/stripe`
pub async fn receive(env: &Env, request: &ApiRequest) -> ApiResult<Response> {
    let secret = env
        .config
        .stripe_webhook_secret
        .as_deref()
        .ok_or_else(|| ApiError::not_found("Stripe webhook endpoint"))?;
    let now = env.now();
    signature::verify(
        request.header("stripe-signature"),
        &request.body,
        secret,
        now,
    )
    .map_err(|error| ApiError::bad_request("invalid_signature", error.message()))?;
    let event: Event = serde_json::from_slice(&request.body).map_err(|error| {
        ApiError::bad_request("invalid_event", format!("not a Stripe event: {error}"))
    })?;
    if !HANDLED.contains(&event.kind.as_str()) {
        return Ok(ok(&json!({ "received": true, "handled": false })));
    }
    let tenant = find_tenant(env, &event.data.object).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "tenant_not_linked",
            "no tenant is linked to this event yet; Stripe will retry",
        )
    })?;
    let batch = new_id();
    let fresh = sql!(
        "SELECT 1 FROM stripe_events WHERE id = ? AND batch_id = ?",
        &event.id,
        &batch
    );
    let mut statements = vec![sql!(
        "INSERT INTO stripe_events (id, type, created, tenant_id, batch_id, received_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO NOTHING",
        &event.id,
        &event.kind,
        event.created,
        &tenant.id,
        &batch,
        now
    )];
    statements.extend(effects(
        &event,
        &tenant,
        &fresh,
        now,
        env.config.billing_grace_seconds,
    )?);
    let results = env.db.batch(statements).await?;
    let applied = results[0].rows_affected == 1;
    Ok(ok(
        &json!({ "received": true, "handled": true, "duplicate": !applied }),
    ))
}

/// Cron: tenants whose grace after a failed payment has run out move to FREE, each with a
/// `plan.changed` event. Both statements select the same rows inside one batch.
pub fn downgrade_lapsed(now: i64) -> [Statement; 2] {
    let lapsed = "billing_status = 'past_due' AND grace_until IS NOT NULL AND grace_until <= ?";
    [
        sql!(
            format!(
                "INSERT INTO outbox_events (id, tenant_id, type, payload, created_at)
                 SELECT lower(hex(randomblob(16))), id, 'plan.changed',
                        json_object('plan', 'FREE', 'source', 'payment_grace_expired'), ?
                 FROM tenants WHERE {lapsed}"
            ),
            now,
            now
        ),
        sql!(
            format!(
                "UPDATE tenants SET plan_code = 'FREE', billing_status = 'downgraded', grace_until = NULL,
                     stripe_subscription_id = NULL, updated_at = ?
                 WHERE {lapsed}"
            ),
            now,
            now
        ),
    ]
}
