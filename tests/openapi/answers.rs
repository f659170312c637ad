//! A walk through the whole API, as a tenant, its users, a runner and the operator use it,
//! with every answer held against the document.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tollgate_tests::{PASSWORD, sdxl, spawn_app};

use crate::checker::{Checker, call};

fn text(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

#[tokio::test]
async fn real_answers_across_the_api_match_the_document() {
    let app = spawn_app().await;
    let mut api = Checker::new(&app);
    use Method as M;
    use StatusCode as S;

    api.expect(call(M::GET, "/health"), S::OK).await;
    api.expect(call(M::GET, "/plans"), S::OK).await;
    let registered = api
        .expect(
            call(M::POST, "/auth/register").json(json!({
                "tenant_name": "Acme Inc.",
                "tenant_slug": "acme",
                "email": "owner@acme.test",
                "password": PASSWORD,
                "name": "Owner",
            })),
            S::CREATED,
        )
        .await;
    let tenant = text(&registered["tenant"]["id"]);
    let owner_id = text(&registered["user"]["id"]);
    let login = api
        .expect(
            call(M::POST, "/auth/login").json(json!({
                "tenant": "acme", "email": "owner@acme.test", "password": PASSWORD,
            })),
            S::OK,
        )
        .await;
    let refreshed = api
        .expect(
            call(M::POST, "/auth/refresh").json(json!({ "refresh_token": login["refresh_token"] })),
            S::OK,
        )
        .await;
    let owner = text(&refreshed["access_token"]);
    api.expect(call(M::GET, "/auth/me").by(&owner), S::OK).await;
    api.expect(
        call(M::GET, "/auth/verify")
            .by(&owner)
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Uri", "/comfy/history"),
        S::OK,
    )
    .await;

    // The operator: a plan with room, and credits.
    let admin = {
        app.platform_admin("ops@platform.test").await;
        let signed_in = api
            .expect(
                call(M::POST, "/admin/login")
                    .json(json!({ "email": "ops@platform.test", "password": PASSWORD })),
                S::OK,
            )
            .await;
        text(&signed_in["access_token"])
    };
    api.expect(
        call(M::PUT, "/admin/tenants/{id}/plan").at(&[&tenant]).by(&admin).json(json!({
            "plan": "PRO",
            "overrides": { "requests_per_minute": 1_000_000, "max_workers": 5, "max_vram_mb": null },
        })),
        S::NO_CONTENT,
    )
    .await;
    api.expect(
        call(M::POST, "/admin/tenants/{id}/credits/grants")
            .at(&[&tenant])
            .by(&admin)
            .json(json!({ "amount": 1000, "reason": "welcome" })),
        S::CREATED,
    )
    .await;
    api.expect(
        call(M::POST, "/admin/tenants/{id}/credits/adjustments")
            .at(&[&tenant])
            .by(&admin)
            .json(json!({ "amount": -10, "reason": "correction" })),
        S::CREATED,
    )
    .await;
    api.expect(
        call(M::PUT, "/admin/tenants/{id}/quota")
            .at(&[&tenant])
            .by(&admin)
            .json(json!({ "metric": "jobs", "period": "day", "limit": 100 })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::PUT, "/admin/plans/{code}/stripe-price")
            .at(&["PRO"])
            .by(&admin)
            .json(json!({ "price_id": "price_pro" })),
        S::NO_CONTENT,
    )
    .await;
    api.expect(call(M::GET, "/admin/tenants").by(&admin), S::OK)
        .await;
    api.expect(call(M::GET, "/admin/emails").by(&admin), S::OK)
        .await;

    // The tenant and its people.
    api.expect(call(M::GET, "/tenant").by(&owner), S::OK).await;
    api.expect(
        call(M::PUT, "/tenant")
            .by(&owner)
            .json(json!({ "name": "Acme Renamed" })),
        S::OK,
    )
    .await;
    let member = api
        .expect(
            call(M::POST, "/users").by(&owner).json(json!({
                "email": "ada@acme.test", "name": "Ada", "password": PASSWORD, "role": "member",
            })),
            S::CREATED,
        )
        .await;
    let member_id = text(&member["id"]);
    api.expect(call(M::GET, "/users").by(&owner), S::OK).await;
    api.expect(
        call(M::GET, "/users/{id}").at(&[&member_id]).by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::PUT, "/users/{id}")
            .at(&[&member_id])
            .by(&owner)
            .json(json!({ "name": "Ada L." })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::PUT, "/users/{id}/role")
            .at(&[&member_id])
            .by(&owner)
            .json(json!({ "role": "admin" })),
        S::OK,
    )
    .await;
    let invited = api
        .expect(
            call(M::POST, "/invitations")
                .by(&owner)
                .json(json!({ "email": "bob@acme.test", "role": "member" })),
            S::CREATED,
        )
        .await;
    api.expect(call(M::GET, "/invitations").by(&owner), S::OK)
        .await;
    let token = app.mailed_token("bob@acme.test", "invitation").await;
    api.expect(
        call(M::POST, "/invitations/accept")
            .json(json!({ "token": token, "name": "Bob", "password": PASSWORD })),
        S::CREATED,
    )
    .await;
    let revocable = api
        .expect(
            call(M::POST, "/invitations")
                .by(&owner)
                .json(json!({ "email": "eve@acme.test", "role": "viewer" })),
            S::CREATED,
        )
        .await;
    api.expect(
        call(M::DELETE, "/invitations/{id}")
            .at(&[&text(&revocable["id"])])
            .by(&owner),
        S::NO_CONTENT,
    )
    .await;
    api.expect(
        call(M::DELETE, "/invitations/{id}")
            .at(&[&text(&invited["id"])])
            .by(&owner),
        S::NOT_FOUND,
    )
    .await;

    // API keys.
    let key = api
        .expect(
            call(M::POST, "/api-keys")
                .by(&owner)
                .json(json!({ "name": "ci", "scopes": ["*"] })),
            S::CREATED,
        )
        .await;
    let key_id = text(&key["id"]);
    api.expect(call(M::GET, "/auth/me").by(&text(&key["key"])), S::OK)
        .await;
    api.expect(call(M::GET, "/api-keys").by(&owner), S::OK)
        .await;
    api.expect(
        call(M::GET, "/api-keys/{id}").at(&[&key_id]).by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::PATCH, "/api-keys/{id}")
            .at(&[&key_id])
            .by(&owner)
            .json(json!({ "name": "ci-2" })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::DELETE, "/api-keys/{id}").at(&[&key_id]).by(&owner),
        S::NO_CONTENT,
    )
    .await;

    // Credits.
    api.expect(call(M::GET, "/credits").by(&owner), S::OK).await;
    api.expect(
        call(M::PUT, "/credits/settings").by(&owner).json(json!({
            "alert_thresholds": [50, 90],
            "auto_topup": { "enabled": false, "threshold": 0, "amount": 0, "max_per_month": 0 },
        })),
        S::OK,
    )
    .await;
    let hold = api
        .expect(
            call(M::POST, "/credits/reservations")
                .by(&owner)
                .json(json!({ "amount": 5 })),
            S::CREATED,
        )
        .await;
    let hold_id = text(&hold["id"]);
    api.expect(
        call(M::GET, "/credits/reservations/{id}")
            .at(&[&hold_id])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/credits/reservations/{id}/settle")
            .at(&[&hold_id])
            .by(&owner)
            .json(json!({ "actual": 4 })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/credits/reservations/{id}/refund")
            .at(&[&hold_id])
            .by(&owner),
        S::OK,
    )
    .await;
    let second = api
        .expect(
            call(M::POST, "/credits/reservations")
                .by(&owner)
                .header("Idempotency-Key", "hold-2")
                .json(json!({ "amount": 3, "reason": "try" })),
            S::CREATED,
        )
        .await;
    api.expect(
        call(M::POST, "/credits/reservations/{id}/release")
            .at(&[&text(&second["id"])])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/credits/reservations")
            .by(&owner)
            .json(json!({ "amount": 1_000_000 })),
        S::PAYMENT_REQUIRED,
    )
    .await;
    api.expect(call(M::GET, "/credits/ledger").by(&owner), S::OK)
        .await;
    api.expect(call(M::GET, "/credits/alerts").by(&owner), S::OK)
        .await;
    api.expect(
        call(M::PUT, "/users/{id}/credits/allowance")
            .at(&[&member_id])
            .by(&owner)
            .json(json!({ "allowance": 50 })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/users/{id}/credits/grants")
            .at(&[&member_id])
            .by(&owner)
            .json(json!({ "amount": 10, "reason": "bonus", "idempotency_key": "bonus-1" })),
        S::CREATED,
    )
    .await;
    api.expect(
        call(M::PUT, "/users/{id}/credits/settings")
            .at(&[&member_id])
            .by(&owner)
            .json(json!({ "alert_thresholds": [80] })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::GET, "/users/{id}/credits")
            .at(&[&member_id])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::GET, "/users/{id}/credits/ledger")
            .at(&[&member_id])
            .by(&owner),
        S::OK,
    )
    .await;

    // Usage and quotas.
    for expected in [S::CREATED, S::OK] {
        api.expect(
            call(M::POST, "/usage/events")
                .by(&owner)
                .header("Idempotency-Key", "event-1")
                .json(json!({ "metric": "llm_tokens", "amount": 100 })),
            expected,
        )
        .await;
    }
    api.expect(call(M::GET, "/usage").by(&owner), S::OK).await;
    api.expect(
        call(M::GET, "/usage").query("scope", "tenant").by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::GET, "/users/{id}/usage")
            .at(&[&owner_id])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::PUT, "/users/{id}/quota")
            .at(&[&member_id])
            .by(&owner)
            .json(json!({ "metric": "jobs", "period": "day", "limit": 10 })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/plan-limits/check").by(&owner).json(json!({
            "width": 512, "height": 512, "batch_size": 1, "estimated_vram_mb": 8000,
        })),
        S::OK,
    )
    .await;

    // Jobs, workers, bots and a runner.
    let workers = api.expect(call(M::GET, "/workers").by(&owner), S::OK).await;
    let default_worker = workers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|worker| worker["default"] == true)
        .map(|worker| text(&worker["id"]))
        .expect("a default worker");
    let dedicated = api
        .expect(
            call(M::POST, "/workers")
                .by(&owner)
                .json(json!({ "name": "dedicated", "gpu_type": "L4" })),
            S::CREATED,
        )
        .await;
    let dedicated_id = text(&dedicated["id"]);
    api.expect(
        call(M::PATCH, "/workers/{id}")
            .at(&[&dedicated_id])
            .by(&owner)
            .json(json!({ "name": "renamed", "max_concurrency": null })),
        S::OK,
    )
    .await;
    let runner_token = api
        .expect(
            call(M::POST, "/workers/{id}/runner-tokens")
                .at(&[&default_worker])
                .by(&owner)
                .json(json!({ "name": "gpu-1" })),
            S::CREATED,
        )
        .await;
    let runner = text(&runner_token["token"]);
    api.expect(
        call(M::GET, "/workers/{id}/runner-tokens")
            .at(&[&default_worker])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/runner/heartbeat").by(&runner).json(
            json!({ "host": "gpu-1", "gpu": "RTX 4090", "vram_mb": 24576, "version": "0.1.0" }),
        ),
        S::OK,
    )
    .await;
    api.expect(
        call(M::GET, "/workers/{id}")
            .at(&[&default_worker])
            .by(&owner),
        S::OK,
    )
    .await;
    let bot = api
        .expect(
            call(M::POST, "/bots")
                .by(&owner)
                .json(json!({ "name": "portraits", "workflow": sdxl(512, 20) })),
            S::CREATED,
        )
        .await;
    let bot_id = text(&bot["id"]);
    api.expect(call(M::GET, "/bots").by(&owner), S::OK).await;
    api.expect(call(M::GET, "/bots/{id}").at(&[&bot_id]).by(&owner), S::OK)
        .await;
    api.expect(
        call(M::PATCH, "/bots/{id}")
            .at(&[&bot_id])
            .by(&owner)
            .json(json!({ "name": "faces" })),
        S::OK,
    )
    .await;
    let job = api
        .expect(
            call(M::POST, "/jobs")
                .by(&owner)
                .header("Idempotency-Key", "job-1")
                .json(json!({ "workflow": sdxl(512, 20), "priority": 2 })),
            S::CREATED,
        )
        .await;
    let job_id = text(&job["id"]);
    api.expect(call(M::GET, "/jobs").by(&owner), S::OK).await;
    api.expect(call(M::GET, "/jobs/{id}").at(&[&job_id]).by(&owner), S::OK)
        .await;
    let claimed = api
        .expect(
            call(M::POST, "/runner/claim")
                .by(&runner)
                .json(json!({ "free_vram_mb": 24576 })),
            S::OK,
        )
        .await;
    let lease = json!({ "lease_id": claimed["lease_id"] });
    api.expect(
        call(M::POST, "/runner/jobs/{id}/renew")
            .at(&[&job_id])
            .by(&runner)
            .json(lease.clone()),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/runner/jobs/{id}/progress")
            .at(&[&job_id])
            .by(&runner)
            .json(json!({
                "lease_id": claimed["lease_id"], "progress": 50, "current_node": "3",
            })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/runner/jobs/{id}/finish")
            .at(&[&job_id])
            .by(&runner)
            .json(json!({
                "lease_id": claimed["lease_id"],
                "status": "succeeded",
                "outputs": [{ "filename": "out_00001_.png", "type": "output" }],
                "gpu_seconds": 4,
                "peak_vram_mb": 7000,
            })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/runner/claim")
            .by(&runner)
            .json(json!({ "free_vram_mb": 24576 })),
        S::NO_CONTENT,
    )
    .await;
    let failing = api
        .expect(
            call(M::POST, "/jobs")
                .by(&owner)
                .json(json!({ "bot_id": bot_id })),
            S::CREATED,
        )
        .await;
    let failing_claim = api
        .expect(
            call(M::POST, "/runner/claim")
                .by(&runner)
                .json(json!({ "free_vram_mb": 24576 })),
            S::OK,
        )
        .await;
    api.expect(
        call(M::POST, "/runner/jobs/{id}/fail")
            .at(&[&text(&failing["id"])])
            .by(&runner)
            .json(json!({ "lease_id": failing_claim["lease_id"], "error": "CUDA out of memory" })),
        S::OK,
    )
    .await;
    let cancelled = api
        .expect(
            call(M::POST, "/jobs")
                .by(&owner)
                .json(json!({ "workflow": sdxl(512, 10) })),
            S::CREATED,
        )
        .await;
    api.expect(
        call(M::POST, "/jobs/{id}/cancel")
            .at(&[&text(&cancelled["id"])])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::DELETE, "/workers/{id}/runner-tokens/{token}")
            .at(&[&default_worker, &text(&runner_token["id"])])
            .by(&owner),
        S::NO_CONTENT,
    )
    .await;
    api.expect(
        call(M::DELETE, "/bots/{id}").at(&[&bot_id]).by(&owner),
        S::NO_CONTENT,
    )
    .await;
    api.expect(
        call(M::POST, "/admin/workers/{id}/runner-tokens")
            .at(&["no-such-pool"])
            .by(&admin)
            .json(json!({ "name": "shared-1" })),
        S::NOT_FOUND,
    )
    .await;

    // Webhooks: the receiver is a closed loopback port, so attempts fail and are logged.
    api.expect(call(M::GET, "/webhooks/event-types").by(&owner), S::OK)
        .await;
    let endpoint = api
        .expect(
            call(M::POST, "/webhooks/endpoints").by(&owner).json(json!({
                "url": "http://127.0.0.1:9/hooks", "event_types": ["job.*"],
            })),
            S::CREATED,
        )
        .await;
    let endpoint_id = text(&endpoint["id"]);
    api.expect(call(M::GET, "/webhooks/endpoints").by(&owner), S::OK)
        .await;
    api.expect(
        call(M::PATCH, "/webhooks/endpoints/{id}")
            .at(&[&endpoint_id])
            .by(&owner)
            .json(json!({ "description": "jobs", "event_types": ["*"] })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/webhooks/endpoints/{id}/rotate-secret")
            .at(&[&endpoint_id])
            .by(&owner),
        S::OK,
    )
    .await;
    let delivery = api
        .expect(
            call(M::POST, "/webhooks/endpoints/{id}/test")
                .at(&[&endpoint_id])
                .by(&owner),
            S::OK,
        )
        .await;
    let delivery_id = text(&delivery["id"]);
    api.expect(
        call(M::GET, "/webhooks/endpoints/{id}/deliveries")
            .at(&[&endpoint_id])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::GET, "/webhooks/deliveries/{id}")
            .at(&[&delivery_id])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/webhooks/deliveries/{id}/redeliver")
            .at(&[&delivery_id])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::GET, "/webhooks/endpoints/{id}")
            .at(&[&endpoint_id])
            .by(&owner),
        S::OK,
    )
    .await;
    api.expect(
        call(M::DELETE, "/webhooks/endpoints/{id}")
            .at(&[&endpoint_id])
            .by(&owner),
        S::NO_CONTENT,
    )
    .await;

    // Audit, reports and the operator's views of them.
    api.expect(call(M::GET, "/audit-logs").by(&owner), S::OK)
        .await;
    api.expect(call(M::GET, "/audit-logs/verify").by(&owner), S::OK)
        .await;
    api.expect(
        call(M::GET, "/admin/tenants/{id}/audit-logs")
            .at(&[&tenant])
            .by(&admin),
        S::OK,
    )
    .await;
    api.expect(
        call(M::GET, "/admin/tenants/{id}/audit-logs/verify")
            .at(&[&tenant])
            .by(&admin),
        S::OK,
    )
    .await;
    api.expect(call(M::GET, "/reports").by(&owner), S::OK).await;
    api.expect(
        call(M::GET, "/reports/{id}").at(&["nope"]).by(&owner),
        S::NOT_FOUND,
    )
    .await;

    // Billing without Stripe configured, and the endpoints that need a secret.
    for (template, body) in [
        (
            "/billing/checkout",
            Some(json!({ "kind": "credits", "credits": 100 })),
        ),
        ("/billing/portal", None),
    ] {
        let mut sent = call(M::POST, template).by(&owner);
        if let Some(body) = body {
            sent = sent.json(body);
        }
        let (status, body) = api.send(sent).await;
        assert!(
            status.is_client_error() || status == S::SERVICE_UNAVAILABLE,
            "{template}: {body}"
        );
    }
    let (status, _) = api.send(call(M::GET, "/billing/invoices").by(&owner)).await;
    assert!(status.is_client_error() || status == S::SERVICE_UNAVAILABLE);
    api.expect(
        call(M::POST, "/webhooks/stripe").json(json!({
            "id": "evt_1", "type": "invoice.paid", "created": 1, "data": { "object": {} },
        })),
        S::NOT_FOUND,
    )
    .await;
    api.expect(call(M::POST, "/cron/run").by("anything"), S::NOT_FOUND)
        .await;

    // Errors in the one shape.
    api.expect(call(M::GET, "/auth/me"), S::UNAUTHORIZED).await;
    api.expect(
        call(M::GET, "/users/{id}").at(&["nobody"]).by(&owner),
        S::NOT_FOUND,
    )
    .await;
    api.expect(
        call(M::GET, "/jobs").query("limit", "0").by(&owner),
        S::BAD_REQUEST,
    )
    .await;
    api.expect(
        call(M::POST, "/users").by(&owner).json(json!({})),
        S::UNPROCESSABLE_ENTITY,
    )
    .await;
    api.expect(
        call(M::POST, "/users")
            .by(&owner)
            .header("content-type", "text/plain"),
        S::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;

    // Password recovery, verification, sign-out and the ends of things.
    api.expect(
        call(M::POST, "/auth/forgot-password")
            .json(json!({ "email": "ada@acme.test", "tenant": "acme" })),
        S::ACCEPTED,
    )
    .await;
    let reset = app.mailed_token("ada@acme.test", "password_reset").await;
    api.expect(
        call(M::POST, "/auth/reset-password")
            .json(json!({ "token": reset, "password": "another horse battery staple" })),
        S::OK,
    )
    .await;
    let verify = app.mailed_token("owner@acme.test", "verify_email").await;
    api.expect(
        call(M::POST, "/auth/verify-email").json(json!({ "token": verify })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::POST, "/auth/change-password")
            .by(&owner)
            .json(json!({
                "current_password": PASSWORD, "new_password": "a third horse battery staple",
            })),
        S::OK,
    )
    .await;
    api.expect(
        call(M::DELETE, "/users/{id}").at(&[&member_id]).by(&owner),
        S::NO_CONTENT,
    )
    .await;
    api.expect(
        call(M::POST, "/admin/tenants/{id}/suspend")
            .at(&[&tenant])
            .by(&admin),
        S::NO_CONTENT,
    )
    .await;
    api.expect(call(M::GET, "/tenant").by(&owner), S::FORBIDDEN)
        .await;
    api.expect(
        call(M::POST, "/admin/tenants/{id}/reactivate")
            .at(&[&tenant])
            .by(&admin),
        S::NO_CONTENT,
    )
    .await;
    api.expect(call(M::POST, "/auth/logout").by(&owner), S::NO_CONTENT)
        .await;
    api.expect(call(M::GET, "/auth/me").by(&owner), S::UNAUTHORIZED)
        .await;

    assert!(
        api.covered.len() > 110,
        "{} answers checked",
        api.covered.len()
    );
}
