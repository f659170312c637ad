//! `POST /auth/refresh`: rotation, the grace window, reuse detection, expiry.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{me, post_raw, refresh, suspend, tokens};

/// The default grace window in which a rotated refresh token still answers its successor.
const GRACE_SECONDS: i64 = 10;
const REFRESH_TOKEN_TTL: i64 = 30 * 24 * 3600;

#[tokio::test]
async fn a_refresh_rotates_to_a_new_pair_and_the_new_refresh_token_works() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.advance_clock(60);

    let response = refresh(&app, &owner.refresh_token).await;

    let body = expect_status(response, StatusCode::OK).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let (access_token, refresh_token) = tokens(&body);
    assert_ne!(access_token, owner.access_token);
    assert_ne!(refresh_token, owner.refresh_token);
    expect_status(me(&app, &access_token).await, StatusCode::OK).await;
    let next = expect_status(refresh(&app, &refresh_token).await, StatusCode::OK).await;
    assert_ne!(tokens(&next).1, refresh_token);
}

#[tokio::test]
async fn a_rotated_token_presented_again_within_the_grace_window_answers_the_same_pair() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let first = expect_status(refresh(&app, &owner.refresh_token).await, StatusCode::OK).await;
    app.advance_clock(GRACE_SECONDS / 2);

    let response = refresh(&app, &owner.refresh_token).await;

    let again = expect_status(response, StatusCode::OK).await;
    assert_eq!(tokens(&again), tokens(&first));
    expect_status(refresh(&app, &tokens(&first).1).await, StatusCode::OK).await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_all_answer_the_same_pair() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let responses = join_all((0..8).map(|_| refresh(&app, &owner.refresh_token))).await;

    let mut pairs = Vec::new();
    for response in responses {
        pairs.push(tokens(&expect_status(response, StatusCode::OK).await));
    }
    assert!(
        pairs.iter().all(|pair| *pair == pairs[0]),
        "the pairs differ: {pairs:?}"
    );
    let family = app
        .query(
            "SELECT COUNT(*) FROM refresh_tokens WHERE session_id =
                 (SELECT session_id FROM refresh_tokens WHERE rotated_at IS NOT NULL)",
            vec![],
        )
        .await;
    assert_eq!(family[0][0], 2, "one token and its one successor");
    expect_status(me(&app, &pairs[0].0).await, StatusCode::OK).await;
}

#[tokio::test]
async fn a_rotated_refresh_token_reused_after_the_grace_window_revokes_the_whole_family() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let rotated = expect_status(refresh(&app, &owner.refresh_token).await, StatusCode::OK).await;
    let (newest_access, newest_refresh) = tokens(&rotated);
    app.advance_clock(GRACE_SECONDS + 1);

    let response = refresh(&app, &owner.refresh_token).await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    expect_error(
        refresh(&app, &newest_refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    for access_token in [&newest_access, &owner.access_token] {
        expect_error(
            me(&app, access_token).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
}

#[tokio::test]
async fn reuse_detection_revokes_only_the_family_of_the_reused_token() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let other_session = tokens(
        &expect_status(
            app.login("acme", &owner.email, &owner.password).await,
            StatusCode::OK,
        )
        .await,
    );
    expect_status(refresh(&app, &owner.refresh_token).await, StatusCode::OK).await;
    app.advance_clock(GRACE_SECONDS + 1);

    let response = refresh(&app, &owner.refresh_token).await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    expect_status(me(&app, &other_session.0).await, StatusCode::OK).await;
    expect_status(refresh(&app, &other_session.1).await, StatusCode::OK).await;
}

#[tokio::test]
async fn an_expired_refresh_token_answers_401() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.advance_clock(REFRESH_TOKEN_TTL + 1);

    let response = refresh(&app, &owner.refresh_token).await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

#[tokio::test]
async fn a_refresh_token_still_works_just_before_it_expires() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.advance_clock(REFRESH_TOKEN_TTL - 1);

    let response = refresh(&app, &owner.refresh_token).await;

    expect_status(response, StatusCode::OK).await;
}

#[tokio::test]
async fn an_expired_access_token_is_renewed_by_a_refresh() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    app.advance_clock(901);
    expect_error(
        me(&app, &owner.access_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;

    let response = refresh(&app, &owner.refresh_token).await;

    let (access_token, _) = tokens(&expect_status(response, StatusCode::OK).await);
    expect_status(me(&app, &access_token).await, StatusCode::OK).await;
}

#[tokio::test]
async fn a_garbage_refresh_token_answers_401() {
    let app = spawn_app().await;
    app.register("acme").await;

    for token in ["garbage", "rt_garbage", "", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
        let response = refresh(&app, token).await;
        expect_error(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    }
}

#[tokio::test]
async fn an_access_token_is_not_a_refresh_token() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = refresh(&app, &owner.access_token).await;

    expect_error(response, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
}

#[tokio::test]
async fn a_refresh_for_a_suspended_tenant_answers_403() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    suspend(&app, &owner.tenant_id).await;

    let response = refresh(&app, &owner.refresh_token).await;

    expect_error(response, StatusCode::FORBIDDEN, "tenant_suspended").await;
}

#[tokio::test]
async fn a_refresh_refused_for_suspension_does_not_use_up_the_token() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    suspend(&app, &owner.tenant_id).await;
    expect_error(
        refresh(&app, &owner.refresh_token).await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    let admin = app.platform_admin("ops2@platform.test").await;
    let response = app
        .post(
            &format!("admin/tenants/{}/reactivate", owner.tenant_id),
            &admin,
            &json!({}),
        )
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;
    app.advance_clock(GRACE_SECONDS + 1);

    let response = refresh(&app, &owner.refresh_token).await;

    let (access_token, _) = tokens(&expect_status(response, StatusCode::OK).await);
    expect_status(me(&app, &access_token).await, StatusCode::OK).await;
}

#[tokio::test]
async fn a_refresh_body_of_the_wrong_shape_answers_422() {
    let app = spawn_app().await;

    for body in [
        json!({}),
        json!({ "refresh_token": 42 }),
        json!({ "token": "rt_x" }),
    ] {
        let response = app.post_public("auth/refresh", &body).await;
        expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
}

#[tokio::test]
async fn a_refresh_body_that_is_not_json_answers_400() {
    let app = spawn_app().await;

    for body in ["rt_abc", ""] {
        let response = post_raw(&app, "auth/refresh", body).await;
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
    }
}
