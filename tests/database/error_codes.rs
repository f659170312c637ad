//! sqld names a failed statement by SQLite's primary result code (`SQLITE_CONSTRAINT`),
//! other Hrana servers by the extended one (`SQLITE_CONSTRAINT_UNIQUE`): a broken rule
//! answers the same either way.

use reqwest::StatusCode;
use serde_json::json;
use tollgate_tests::{
    PASSWORD, expect_error,
    hrana_server::{ErrorCodes, HranaSettings},
};

use crate::support::app_over_hrana;

#[tokio::test]
async fn a_taken_slug_is_a_conflict_whichever_code_the_database_names() {
    for error_codes in [ErrorCodes::Primary, ErrorCodes::Extended] {
        let app = app_over_hrana(HranaSettings {
            error_codes,
            ..HranaSettings::default()
        })
        .await;
        app.register("acme").await;

        let again = app
            .post_public(
                "auth/register",
                &json!({
                    "tenant_name": "Acme Again",
                    "tenant_slug": "acme",
                    "email": "other@acme.test",
                    "password": PASSWORD,
                    "name": "Other",
                }),
            )
            .await;

        expect_error(again, StatusCode::CONFLICT, "slug_taken").await;
    }
}
