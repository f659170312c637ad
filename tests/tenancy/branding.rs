//! A reseller's brand: owners and admins set a display name, a logo and an accent colour
//! with `PUT tenant`; the console wears it when reached at the tenant's subdomain or custom
//! domain, and only there (before sign-in), and after sign-in for the tenant's people.

use reqwest::{StatusCode, header};
use serde_json::json;
use tollgate_tests::{TestApp, TestUser, expect_error, expect_status, spawn_app};

const LOGO: &str = "data:image/png;base64,iVBORw0KGgo=";

async fn brand(app: &TestApp, owner: &TestUser) {
    let response = app
        .put(
            "tenant",
            &owner.access_token,
            &json!({ "branding": {
                "display_name": "Pixel Forge",
                "logo_url": LOGO,
                "accent_color": "#0B5D1E",
            } }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;
}

/// The console page at `path`, asked for at `host`.
async fn console_page(app: &TestApp, host: &str, path: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!("{}/console{path}", app.base_url))
        .header(header::HOST, host)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn the_owner_sets_the_brand_and_reads_it_back() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    brand(&app, &owner).await;

    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(
        tenant["branding"],
        json!({ "display_name": "Pixel Forge", "logo_url": LOGO, "accent_color": "#0b5d1e" })
    );
    assert_eq!(tenant["name"], "acme Inc.", "the tenant's own name stays");

    // `null` goes back to Tollgate's look.
    let response = app
        .put("tenant", &owner.access_token, &json!({ "branding": null }))
        .await;
    let cleared = expect_status(response, StatusCode::OK).await;
    assert_eq!(
        cleared["branding"],
        json!({ "display_name": null, "logo_url": null, "accent_color": null })
    );
}

#[tokio::test]
async fn an_unreadable_accent_or_a_script_logo_is_refused_and_nothing_changes() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    brand(&app, &owner).await;

    let response = app
        .put(
            "tenant",
            &owner.access_token,
            &json!({ "name": "Renamed", "branding": { "display_name": "Sunny", "accent_color": "#ffeb3b" } }),
        )
        .await;
    let error = expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(error["error"]["details"]["field"], "branding.accent_color");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("contrast"),
        "{error}"
    );
    let response = app
        .put(
            "tenant",
            &owner.access_token,
            &json!({ "branding": { "logo_url": "javascript:alert(1)" } }),
        )
        .await;
    expect_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(tenant["name"], "acme Inc.");
    assert_eq!(tenant["branding"]["display_name"], "Pixel Forge");
}

#[tokio::test]
async fn a_member_cannot_change_the_brand() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    let member = app.add_user(&owner, "max", "member").await;

    let response = app
        .put(
            "tenant",
            &member.access_token,
            &json!({ "branding": { "display_name": "Mine now" } }),
        )
        .await;

    expect_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn the_sign_in_page_at_the_tenants_subdomain_wears_its_brand_and_names_the_tenant() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    brand(&app, &owner).await;

    let page = console_page(&app, "acme.tollgate.test", "/sign-in").await;

    assert!(
        page.contains("<title>Sign in · Pixel Forge</title>"),
        "{page}"
    );
    assert!(page.contains("--accent:#0b5d1e"));
    assert!(page.contains(&format!("<img class=\"logo\" src=\"{LOGO}\"")));
    assert!(
        !page.contains("name=\"tenant\""),
        "the domain names the organisation: {page}"
    );
}

#[tokio::test]
async fn the_platforms_own_host_and_another_tenants_subdomain_keep_their_own_look() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    brand(&app, &owner).await;
    app.register("globex").await;

    let platform = console_page(&app, "127.0.0.1", "/sign-in").await;
    let neighbour = console_page(&app, "globex.tollgate.test", "/forgot-password").await;

    assert!(platform.contains("<title>Sign in · Tollgate</title>"));
    assert!(platform.contains("--accent:#1d4ed8"));
    assert!(platform.contains("name=\"tenant\""));
    assert!(!neighbour.contains("Pixel Forge") && !neighbour.contains("#0b5d1e"));
    assert!(neighbour.contains("<title>Forgot your password? · globex Inc.</title>"));
}

#[tokio::test]
async fn a_custom_domain_set_by_the_owner_brings_the_brand_too() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    brand(&app, &owner).await;
    let response = app
        .put(
            "tenant",
            &owner.access_token,
            &json!({ "custom_domain": "studio.pixelforge.example" }),
        )
        .await;
    expect_status(response, StatusCode::OK).await;

    let page = console_page(&app, "studio.pixelforge.example", "/sign-up").await;

    assert!(page.contains("<span id=\"brand-name\">Pixel Forge</span>"));
}

#[tokio::test]
async fn a_suspended_tenants_domain_shows_no_brand() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;
    brand(&app, &owner).await;
    let admin = app.platform_admin("ops@tollgate.test").await;
    let response = app
        .post(
            &format!("admin/tenants/{}/suspend", owner.tenant_id),
            &admin,
            &json!({}),
        )
        .await;
    expect_status(response, StatusCode::NO_CONTENT).await;

    let page = console_page(&app, "acme.tollgate.test", "/sign-in").await;

    assert!(!page.contains("Pixel Forge"));
}
