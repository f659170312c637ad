//! Rate limits: attempts at the password doors per client address and per account, and the
//! plan's requests per minute per signed-in caller.

use reqwest::{Response, StatusCode};
use serde_json::json;
use tollgate_tests::{
    PASSWORD, TestApp, TestUser, expect_error, expect_status, spawn_app, spawn_app_with,
};

use crate::support::{header, login_from, me, number_header};

const WRONG_PASSWORD: &str = "not the password at all";

/// Asserts a 429 that tells the client when to come back.
async fn expect_rate_limited(response: Response, limit: i64) {
    let retry_after = number_header(&response, "retry-after");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(number_header(&response, "ratelimit-limit"), limit);
    assert_eq!(number_header(&response, "ratelimit-remaining"), 0);
    assert_eq!(number_header(&response, "ratelimit-reset"), retry_after);
    let error = expect_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(error["error"]["details"]["limit"], limit);
    assert_eq!(
        error["error"]["details"]["retry_after_seconds"],
        retry_after
    );
}

/// Has a platform admin cap the tenant's requests per minute.
async fn cap_requests_per_minute(app: &TestApp, user: &TestUser, requests_per_minute: i64) {
    let admin = app.platform_admin("ops@platform.test").await;
    let capped =
        json!({ "plan": "FREE", "overrides": { "requests_per_minute": requests_per_minute } });
    app.assign_plan(&admin, user, &capped).await;
}

#[tokio::test]
async fn logins_past_the_limit_from_one_address_answer_429_while_other_addresses_pass() {
    let app = spawn_app_with(|config| config.auth_attempts_per_ip = 3).await;
    let owner = app.register("acme").await;
    for _ in 0..3 {
        let response = login_from(&app, "203.0.113.7", &owner, PASSWORD).await;
        expect_status(response, StatusCode::OK).await;
    }

    let fourth = login_from(&app, "203.0.113.7", &owner, PASSWORD).await;
    let elsewhere = login_from(&app, "198.51.100.9", &owner, PASSWORD).await;

    expect_rate_limited(fourth, 3).await;
    expect_status(elsewhere, StatusCode::OK).await;
}

#[tokio::test]
async fn wrong_passwords_count_against_the_limit_too() {
    let app = spawn_app_with(|config| config.auth_attempts_per_ip = 3).await;
    let owner = app.register("acme").await;
    for _ in 0..3 {
        let response = login_from(&app, "203.0.113.7", &owner, WRONG_PASSWORD).await;
        expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }

    let response = login_from(&app, "203.0.113.7", &owner, PASSWORD).await;

    expect_rate_limited(response, 3).await;
}

#[tokio::test]
async fn guesses_at_one_account_spread_over_addresses_are_limited_per_account() {
    let app = spawn_app_with(|config| config.auth_attempts_per_account = 3).await;
    let owner = app.register("acme").await;
    let other = app.add_user(&owner, "mia", "member").await;
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let response = login_from(&app, ip, &owner, WRONG_PASSWORD).await;
        expect_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }

    let owner_again = login_from(&app, "203.0.113.4", &owner, PASSWORD).await;
    let other_account = login_from(&app, "203.0.113.4", &other, PASSWORD).await;

    expect_rate_limited(owner_again, 3).await;
    expect_status(other_account, StatusCode::OK).await;
}

#[tokio::test]
async fn the_attempt_window_resets_after_a_minute() {
    let app = spawn_app_with(|config| config.auth_attempts_per_ip = 3).await;
    let owner = app.register("acme").await;
    for _ in 0..3 {
        login_from(&app, "203.0.113.7", &owner, WRONG_PASSWORD).await;
    }
    expect_rate_limited(login_from(&app, "203.0.113.7", &owner, PASSWORD).await, 3).await;

    app.advance_clock(60);
    let response = login_from(&app, "203.0.113.7", &owner, PASSWORD).await;

    expect_status(response, StatusCode::OK).await;
}

#[tokio::test]
async fn password_recovery_is_limited_per_address() {
    let app = spawn_app_with(|config| config.auth_attempts_per_ip = 3).await;
    app.register("acme").await;
    let forgot = || {
        app.request(reqwest::Method::POST, "auth/forgot-password")
            .header("x-forwarded-for", "203.0.113.7")
            .json(&json!({ "tenant": "acme", "email": "nobody@acme.test" }))
            .send()
    };
    for _ in 0..3 {
        expect_status(forgot().await.unwrap(), StatusCode::ACCEPTED).await;
    }

    let response = forgot().await.unwrap();

    expect_rate_limited(response, 3).await;
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let app = spawn_app_with(|config| config.auth_attempts_per_ip = 3).await;
    let register = |slug: &str| {
        app.request(reqwest::Method::POST, "auth/register")
            .header("x-forwarded-for", "203.0.113.7")
            .json(&json!({
                "tenant_name": "T",
                "tenant_slug": slug,
                "email": format!("owner@{slug}.test"),
                "password": PASSWORD,
                "name": "O",
            }))
            .send()
    };
    for slug in ["alpha", "bravo", "charlie"] {
        expect_status(register(slug).await.unwrap(), StatusCode::CREATED).await;
    }

    let response = register("delta").await.unwrap();

    expect_rate_limited(response, 3).await;
    let tenants = app
        .query("SELECT COUNT(*) FROM tenants WHERE slug = 'delta'", vec![])
        .await;
    assert_eq!(tenants[0][0], 0);
}

#[tokio::test]
async fn authenticated_responses_count_down_the_plans_requests_per_minute() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    cap_requests_per_minute(&app, &owner, 5).await;

    let mut remaining = Vec::new();
    for _ in 0..5 {
        let response = me(&app, &owner.access_token).await;
        assert_eq!(number_header(&response, "ratelimit-limit"), 5);
        let reset = number_header(&response, "ratelimit-reset");
        assert!((1..=60).contains(&reset), "RateLimit-Reset {reset}");
        remaining.push(number_header(&response, "ratelimit-remaining"));
        expect_status(response, StatusCode::OK).await;
    }

    assert_eq!(remaining, [4, 3, 2, 1, 0]);
}

#[tokio::test]
async fn the_request_past_the_plans_limit_answers_429_until_the_window_resets() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    cap_requests_per_minute(&app, &owner, 5).await;
    for _ in 0..5 {
        expect_status(me(&app, &owner.access_token).await, StatusCode::OK).await;
    }

    let sixth = me(&app, &owner.access_token).await;

    expect_rate_limited(sixth, 5).await;
    app.advance_clock(60);
    expect_status(me(&app, &owner.access_token).await, StatusCode::OK).await;
}

#[tokio::test]
async fn the_plans_limit_counts_each_user_on_its_own() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "mia", "member").await;
    cap_requests_per_minute(&app, &owner, 5).await;
    // Adding the member was a request of the owner's: start from a fresh window.
    app.advance_clock(60);
    for _ in 0..5 {
        expect_status(me(&app, &owner.access_token).await, StatusCode::OK).await;
    }

    let owner_sixth = me(&app, &owner.access_token).await;
    let member_first = me(&app, &member.access_token).await;

    expect_rate_limited(owner_sixth, 5).await;
    assert_eq!(
        header(&member_first, "ratelimit-remaining").as_deref(),
        Some("4")
    );
    expect_status(member_first, StatusCode::OK).await;
}

#[tokio::test]
async fn an_api_key_is_limited_by_the_plan_as_well() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    let secret = key["key"].as_str().unwrap();
    cap_requests_per_minute(&app, &owner, 5).await;
    for _ in 0..5 {
        expect_status(me(&app, secret).await, StatusCode::OK).await;
    }

    let response = me(&app, secret).await;

    expect_rate_limited(response, 5).await;
}

#[tokio::test]
async fn a_forged_leftmost_forwarded_for_entry_does_not_escape_the_per_address_limit() {
    let app = spawn_app_with(|config| config.auth_attempts_per_ip = 3).await;
    let owner = app.register("acme").await;
    // The client writes anything on the left; the one trusted proxy appends what it saw.
    let forged = |n: u8| format!("198.51.100.{n}, 203.0.113.7");
    for n in 1..=3 {
        login_from(&app, &forged(n), &owner, WRONG_PASSWORD).await;
    }

    let forged_again = login_from(&app, &forged(4), &owner, PASSWORD).await;
    let other_client = login_from(&app, "198.51.100.4, 203.0.113.8", &owner, PASSWORD).await;

    expect_rate_limited(forged_again, 3).await;
    expect_status(other_client, StatusCode::OK).await;
}

#[tokio::test]
async fn with_two_trusted_hops_the_address_the_outer_proxy_appended_counts() {
    let app = spawn_app_with(|config| {
        config.auth_attempts_per_ip = 3;
        config.trusted_proxy_hops = Some(2);
    })
    .await;
    let owner = app.register("acme").await;
    // client's words, then the outer proxy's (the client), then the inner proxy's (the outer one)
    let through_both = |n: u8| format!("198.51.100.{n}, 203.0.113.7, 10.0.0.2");
    for n in 1..=3 {
        login_from(&app, &through_both(n), &owner, WRONG_PASSWORD).await;
    }

    let again = login_from(&app, &through_both(4), &owner, PASSWORD).await;
    // Fewer entries than hops: the inner proxy alone wrote it, so its entry is the client.
    let inner_proxy_only = login_from(&app, "203.0.113.7", &owner, PASSWORD).await;
    let other_client =
        login_from(&app, "203.0.113.7, 203.0.113.8, 10.0.0.2", &owner, PASSWORD).await;

    expect_rate_limited(again, 3).await;
    expect_rate_limited(inner_proxy_only, 3).await;
    expect_status(other_client, StatusCode::OK).await;
}
