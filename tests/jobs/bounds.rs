//! Numbers a client sends with a job are checked against their bounds without wrapping.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{expect_error, spawn_app};

use crate::support::{free_tenant, pool, sdxl, submit};

#[tokio::test]
async fn a_priority_at_either_end_of_64_bits_is_refused_not_wrapped() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;

    for priority in [i64::MIN, i64::MIN + 1, i64::MAX, 11, -11] {
        let body = json!({ "workflow": sdxl(512, 20), "priority": priority });
        let response = submit(&app, &owner, &body, None).await;

        let error = expect_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(error["error"]["details"]["field"], "priority", "{priority}");
    }
    assert_eq!(pool(&app, &owner).await.2, 0, "nothing was held");
}
