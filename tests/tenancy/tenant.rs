use reqwest::StatusCode;
use tollgate_tests::{expect_status, spawn_app};

#[tokio::test]
async fn the_owner_reads_its_tenant_with_the_plan_in_force() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let tenant = expect_status(app.get("tenant", &owner.access_token).await, StatusCode::OK).await;

    assert_eq!(tenant["id"], owner.tenant_id.as_str());
    assert_eq!(tenant["plan"], "FREE");
    assert_eq!(tenant["plan_limits"]["requests_per_minute"], 60);
}
