//! `GET /auth/verify`: forward authentication for a reverse proxy guarding other services.

use reqwest::{Method, RequestBuilder, Response, StatusCode, header::HeaderValue};
use tollgate_tests::{TestApp, expect_error, expect_status, spawn_app};

use crate::support::header;

/// The subrequest a proxy sends for a client's `method` on `uri`.
fn check(app: &TestApp, method: &str, uri: &str) -> RequestBuilder {
    app.request(Method::GET, "auth/verify")
        .header("x-forwarded-method", method)
        .header("x-forwarded-uri", uri)
}

async fn send(request: RequestBuilder) -> Response {
    request.send().await.unwrap()
}

/// Asserts a 200 and returns the identity headers the proxy passes on.
async fn expect_allowed(response: Response) -> [String; 4] {
    let found = [
        "x-tollgate-tenant-id",
        "x-tollgate-user-id",
        "x-tollgate-role",
        "x-tollgate-scopes",
    ]
    .map(|name| header(&response, name).unwrap_or_else(|| panic!("no {name} header")));
    expect_status(response, StatusCode::OK).await;
    found
}

#[tokio::test]
async fn a_session_passes_with_headers_naming_tenant_user_role_and_scopes() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let response = send(check(&app, "POST", "/api/v1/jobs").bearer_auth(&owner.access_token)).await;

    let [tenant, user, role, scopes] = expect_allowed(response).await;
    assert_eq!(tenant, owner.tenant_id);
    assert_eq!(user, owner.user_id);
    assert_eq!(role, "owner");
    assert_eq!(scopes, "*");
}

#[tokio::test]
async fn an_api_key_passes_as_a_bearer_token_or_in_x_api_key() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["jobs:read"]).await;
    let secret = key["key"].as_str().unwrap();

    let as_bearer = send(check(&app, "GET", "/api/v1/jobs").bearer_auth(secret)).await;
    let as_header = send(check(&app, "GET", "/api/v1/jobs").header("x-api-key", secret)).await;

    for response in [as_bearer, as_header] {
        assert_eq!(
            header(&response, "x-tollgate-api-key-id").as_deref(),
            key["id"].as_str()
        );
        let [tenant, user, role, scopes] = expect_allowed(response).await;
        assert_eq!(tenant, owner.tenant_id);
        assert_eq!(user, owner.user_id);
        assert_eq!(role, "owner");
        assert_eq!(scopes, "jobs:read");
    }
}

#[tokio::test]
async fn a_request_without_credentials_answers_401_with_a_challenge() {
    let app = spawn_app().await;

    let response = send(check(&app, "GET", "/api/v1/jobs")).await;

    assert!(header(&response, "www-authenticate").is_some());
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_revoked_or_unknown_credential_answers_401_with_a_challenge() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    let secret = key["key"].as_str().unwrap();
    let revoked = app
        .delete(
            &format!("api-keys/{}", key["id"].as_str().unwrap()),
            &owner.access_token,
        )
        .await;
    assert!(revoked.status().is_success(), "{}", revoked.status());

    for credential in [secret, "tg_unknown", "not-a-token"] {
        let response = send(check(&app, "GET", "/api/v1/jobs").bearer_auth(credential)).await;
        assert!(header(&response, "www-authenticate").is_some());
        expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

#[tokio::test]
async fn a_read_only_key_may_read_but_not_write_the_resource() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["jobs:read"]).await;
    let secret = key["key"].as_str().unwrap();

    let write = send(check(&app, "POST", "/api/v1/jobs").bearer_auth(secret)).await;
    let read = send(check(&app, "GET", "/api/v1/jobs").bearer_auth(secret)).await;

    let error = expect_error(write, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(error["error"]["details"]["required_scope"], "jobs:write");
    expect_allowed(read).await;
}

#[tokio::test]
async fn a_key_scoped_to_one_resource_may_not_touch_another() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["jobs:*"]).await;
    let secret = key["key"].as_str().unwrap();

    let other = send(check(&app, "GET", "/api/v1/llm/chat?model=x").bearer_auth(secret)).await;
    let own = send(check(&app, "DELETE", "/api/v1/jobs/42").bearer_auth(secret)).await;

    expect_error(other, StatusCode::FORBIDDEN, "insufficient_scope").await;
    expect_allowed(own).await;
}

#[tokio::test]
async fn a_viewer_session_may_read_but_not_write() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let viewer = app.add_user(&owner, "vera", "viewer").await;

    let write = send(check(&app, "POST", "/api/v1/jobs").bearer_auth(&viewer.access_token)).await;
    let read = send(check(&app, "GET", "/api/v1/jobs").bearer_auth(&viewer.access_token)).await;

    expect_error(write, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let [_, user, role, scopes] = expect_allowed(read).await;
    assert_eq!(user, viewer.user_id);
    assert_eq!(role, "viewer");
    assert_eq!(scopes, "*:read");
}

#[tokio::test]
async fn the_proxy_may_send_its_subrequest_with_the_method_it_guards() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["jobs:read"]).await;
    let secret = key["key"].as_str().unwrap();

    // nginx `auth_request` forwards the original method and names the URI in X-Original-URI.
    let write = send(
        app.request(Method::POST, "auth/verify")
            .header("x-original-uri", "/api/v1/jobs")
            .bearer_auth(secret),
    )
    .await;
    let read = send(
        app.request(Method::GET, "auth/verify")
            .header("x-original-method", "GET")
            .header("x-original-uri", "/api/v1/jobs")
            .bearer_auth(secret),
    )
    .await;

    expect_error(write, StatusCode::FORBIDDEN, "insufficient_scope").await;
    expect_allowed(read).await;
}

#[tokio::test]
async fn a_suspended_tenants_credentials_are_refused_with_403() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["*"]).await;
    crate::support::suspend(&app, &owner.tenant_id).await;

    for credential in [owner.access_token.as_str(), key["key"].as_str().unwrap()] {
        let response = send(check(&app, "GET", "/api/v1/jobs").bearer_auth(credential)).await;
        expect_error(response, StatusCode::FORBIDDEN, "tenant_suspended").await;
    }
}

/// The subrequest nginx sends with the shipped configuration's header names, for a raw URI
/// that need not be text.
fn check_raw(app: &TestApp, method: &str, uri: &[u8]) -> RequestBuilder {
    app.request(Method::GET, "auth/verify")
        .header("x-forwarded-method", method)
        .header("x-forwarded-uri", HeaderValue::from_bytes(uri).unwrap())
}

#[tokio::test]
async fn a_key_scoped_to_one_prefix_cannot_climb_to_another_through_dot_segments() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["comfy:write"]).await;
    let secret = key["key"].as_str().unwrap();

    for uri in [
        "/comfy/../llm/v1/chat",
        "/comfy/%2e%2e/llm/v1/chat",
        "/comfy/%2E%2E/llm/v1/chat",
        "/comfy/.%2e/llm/v1/chat",
        "/comfy//../llm/v1/chat",
        "/comfy/x%3F/../../llm/v1/chat",
        "//llm/v1/chat",
    ] {
        let response = send(check(&app, "POST", uri).bearer_auth(secret)).await;
        let error = expect_error(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
        assert_eq!(
            error["error"]["details"]["required_scope"], "llm:write",
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_key_scoped_to_one_prefix_still_reaches_its_own_paths_however_written() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["comfy:write"]).await;
    let secret = key["key"].as_str().unwrap();

    for uri in [
        "/comfy/prompt",
        "/comfy/./prompt",
        "/comfy/history/../prompt",
        "/%63omfy/prompt",
        "/comfy/view?filename=a%2Fb.png&subfolder=../x",
        "/llm/../comfy/prompt",
    ] {
        let response = send(check(&app, "POST", uri).bearer_auth(secret)).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn a_forwarded_uri_that_proxies_may_read_differently_is_refused_with_403() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["comfy:write"]).await;
    let secret = key["key"].as_str().unwrap();

    for (uri, reason) in [
        (&b"/comfy/..%2fllm/v1/chat"[..], "encoded_slash"),
        (b"/comfy%2F..%2Fllm/v1/chat", "encoded_slash"),
        (b"/comfy/..%5cllm/v1/chat", "backslash"),
        (b"/comfy/..\\llm/v1/chat", "backslash"),
        (b"/comfy/prompt%00.png", "control_character"),
        (b"/comfy/../../llm/v1/chat", "above_root"),
        (b"/comfy/%zz", "invalid_percent_encoding"),
        (b"/comfy/%ff", "not_utf8"),
        (b"http://evil.test/llm/v1/chat", "not_a_path"),
    ] {
        let response = send(check_raw(&app, "POST", uri).bearer_auth(secret)).await;
        let error = expect_error(response, StatusCode::FORBIDDEN, "invalid_forwarded_uri").await;
        assert_eq!(
            error["error"]["details"]["reason"],
            reason,
            "{}",
            String::from_utf8_lossy(uri)
        );
    }
}

#[tokio::test]
async fn a_forwarded_uri_that_is_not_ascii_is_checked_all_the_same() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["comfy:write"]).await;
    let secret = key["key"].as_str().unwrap();

    // nginx passes the client's raw bytes on in $request_uri.
    let other = send(check_raw(&app, "GET", "/llm/é".as_bytes()).bearer_auth(secret)).await;
    let own = send(check_raw(&app, "GET", "/comfy/é".as_bytes()).bearer_auth(secret)).await;

    expect_error(other, StatusCode::FORBIDDEN, "insufficient_scope").await;
    expect_status(own, StatusCode::OK).await;
}

#[tokio::test]
async fn the_resource_is_the_segment_as_written_not_case_folded() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["comfy:write"]).await;
    let secret = key["key"].as_str().unwrap();

    // Proxies route /COMFY/ elsewhere than /comfy/.
    let response = send(check(&app, "GET", "/COMFY/history").bearer_auth(secret)).await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_client_cannot_choose_what_is_checked_by_sending_the_other_header_name() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let key = app.create_api_key(&owner, &["comfy:read"]).await;
    let secret = key["key"].as_str().unwrap();
    // The proxy sets the X-Original-* pair; the client adds an X-Forwarded-* one.
    let guarded = |method: &str, uri: &str| {
        app.request(Method::GET, "auth/verify")
            .header("x-original-method", method)
            .header("x-original-uri", uri)
            .bearer_auth(secret)
    };

    let other_uri =
        send(guarded("GET", "/llm/v1/models").header("x-forwarded-uri", "/comfy/history")).await;
    let other_method =
        send(guarded("POST", "/comfy/prompt").header("x-forwarded-method", "GET")).await;
    let same_values = send(
        guarded("GET", "/comfy/history")
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/comfy/history"),
    )
    .await;

    for response in [other_uri, other_method] {
        expect_error(
            response,
            StatusCode::FORBIDDEN,
            "conflicting_forwarded_headers",
        )
        .await;
    }
    expect_allowed(same_values).await;
}
