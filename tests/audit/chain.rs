//! The hash chain: sequence numbers without gaps even under concurrency, a chain that
//! verifies after many actions, and tampering (made around the append-only triggers, on the
//! database file itself) reported at the entry it touched.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tollgate_tests::{PASSWORD, TestApp, TestUser, expect_error, expect_status, spawn_app};

use crate::support::{entries, stored, tamper, verify};

/// A handful of different audited actions by the owner: keys, users, logins.
async fn busy_tenant(app: &TestApp, slug: &str) -> TestUser {
    let owner = app.register(slug).await;
    for round in 0..3 {
        let key = app.create_api_key(&owner, &["users:read"]).await;
        let id = key["id"].as_str().unwrap();
        let renamed = json!({ "name": format!("key {round}") });
        expect_status(
            app.patch(&format!("api-keys/{id}"), &owner.access_token, &renamed)
                .await,
            StatusCode::OK,
        )
        .await;
        expect_status(
            app.delete(&format!("api-keys/{id}"), &owner.access_token)
                .await,
            StatusCode::NO_CONTENT,
        )
        .await;
        expect_status(
            app.login(slug, &owner.email, PASSWORD).await,
            StatusCode::OK,
        )
        .await;
        expect_error(
            app.login(slug, &owner.email, "wrong").await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    app.add_user(&owner, "ada", "member").await;
    owner
}

/// Every entry of the tenant, oldest first, through the API.
async fn chain_of(app: &TestApp, owner: &TestUser) -> Vec<Value> {
    let mut all = entries(app, owner, "").await;
    all.reverse();
    all
}

#[tokio::test]
async fn after_many_actions_the_chain_links_up_and_verifies() {
    let app = spawn_app().await;
    let owner = busy_tenant(&app, "acme").await;

    let chain = chain_of(&app, &owner).await;
    let report = verify(&app, &owner.access_token).await;

    let count = stored(&app, &owner.tenant_id).await;
    assert!(count >= 17, "{count}");
    assert_eq!(chain.len() as i64, count);
    for (index, entry) in chain.iter().enumerate() {
        assert_eq!(entry["sequence"], index as i64 + 1, "{entry:#}");
        let expected_previous = match index {
            0 => json!("0".repeat(64)),
            _ => chain[index - 1]["hash"].clone(),
        };
        assert_eq!(entry["previous_hash"], expected_previous, "{entry:#}");
        assert_eq!(entry["hash"].as_str().unwrap().len(), 64);
    }
    assert_eq!(report["valid"], true, "{report:#}");
    assert_eq!(report["entries_checked"], count);
    assert_eq!(report["entries_unsealed"], 0);
    assert_eq!(report["first_broken"], Value::Null);
    assert_eq!(report["head"]["sequence"], count);
    assert_eq!(report["head"]["hash"], chain.last().unwrap()["hash"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_actions_take_distinct_sequence_numbers_without_gaps() {
    let app = spawn_app().await;
    let owner = app.register("acme").await;

    let logins = join_all((0..40).map(|_| app.login("acme", &owner.email, PASSWORD))).await;

    for login in logins {
        expect_status(login, StatusCode::OK).await;
    }
    let sequences: Vec<i64> = app
        .query(
            "SELECT seq FROM audit_log WHERE tenant_id = ? ORDER BY seq",
            vec![owner.tenant_id.as_str().into()],
        )
        .await
        .into_iter()
        .map(|row| row[0].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=41).collect::<Vec<i64>>());
    let report = verify(&app, &owner.access_token).await;
    assert_eq!(
        (report["valid"].clone(), report["entries_checked"].clone()),
        (json!(true), json!(41))
    );
}

#[tokio::test]
async fn the_database_refuses_to_edit_or_delete_an_entry() {
    let app = spawn_app().await;
    let owner = busy_tenant(&app, "acme").await;

    let edit = tamper(
        &app,
        "UPDATE audit_log SET ip = '198.51.100.1' WHERE seq = 3",
    )
    .await;
    let reseal = tamper(&app, "UPDATE audit_log SET hash = NULL WHERE seq = 3").await;
    let delete = tamper(&app, "DELETE FROM audit_log WHERE seq = 3").await;

    assert!(edit.unwrap_err().contains("append-only"));
    assert!(reseal.unwrap_err().contains("sealed once"));
    assert!(delete.unwrap_err().contains("only by retention"));
    assert_eq!(verify(&app, &owner.access_token).await["valid"], true);
}

#[tokio::test]
async fn an_edited_entry_is_reported_by_verification() {
    let app = spawn_app().await;
    let owner = busy_tenant(&app, "acme").await;
    let globex = busy_tenant(&app, "globex").await;
    let target: Value = chain_of(&app, &owner).await[6].clone();

    tamper(&app, "DROP TRIGGER audit_log_content_is_immutable")
        .await
        .unwrap();
    let edited = tamper(
        &app,
        &format!(
            "UPDATE audit_log SET metadata = '{{\"name\":\"innocent\"}}' WHERE id = '{}'",
            target["id"].as_str().unwrap()
        ),
    )
    .await;

    assert_eq!(edited, Ok(1));
    let report = verify(&app, &owner.access_token).await;
    assert_eq!(report["valid"], false, "{report:#}");
    assert_eq!(report["entries_checked"], 6);
    let broken = &report["first_broken"];
    assert_eq!(broken["sequence"], 7);
    assert_eq!(broken["id"], target["id"]);
    assert_eq!(broken["action"], target["action"]);
    assert_eq!(broken["reason"], "hash_mismatch");
    assert_eq!(
        verify(&app, &globex.access_token).await["valid"],
        true,
        "another tenant's chain"
    );
    let admin = app.platform_admin("ops@tollgate.test").await;
    let by_admin = app
        .get(
            &format!("admin/tenants/{}/audit-logs/verify", owner.tenant_id),
            &admin,
        )
        .await;
    assert_eq!(
        expect_status(by_admin, StatusCode::OK).await["first_broken"],
        *broken
    );
}

#[tokio::test]
async fn a_removed_seal_is_reported_not_resealed() {
    let app = spawn_app().await;
    let owner = busy_tenant(&app, "acme").await;

    tamper(&app, "DROP TRIGGER audit_log_content_is_immutable")
        .await
        .unwrap();
    tamper(&app, "DROP TRIGGER audit_log_sealed_once")
        .await
        .unwrap();
    tamper(
        &app,
        "UPDATE audit_log SET ip = '198.51.100.1', hash = NULL, prev_hash = NULL WHERE seq = 4",
    )
    .await
    .unwrap();

    let broken = verify(&app, &owner.access_token).await["first_broken"].clone();
    assert_eq!(
        (broken["sequence"].clone(), broken["reason"].clone()),
        (json!(4), json!("hash_missing")),
        "an unsealed entry below the sealed head is not resealed: {broken:#}"
    );
}

#[tokio::test]
async fn a_deleted_entry_is_reported_missing() {
    let app = spawn_app().await;
    let owner = busy_tenant(&app, "acme").await;

    tamper(&app, "DROP TRIGGER audit_log_pruned_only")
        .await
        .unwrap();
    tamper(&app, "DELETE FROM audit_log WHERE seq = 5")
        .await
        .unwrap();
    let middle = verify(&app, &owner.access_token).await;

    assert_eq!(middle["valid"], false);
    assert_eq!(middle["entries_checked"], 4);
    assert_eq!(
        middle["first_broken"],
        json!({ "sequence": 5, "reason": "missing", "id": null, "action": null, "created_at": null, "stored_hash": null })
    );
}

#[tokio::test]
async fn a_truncated_tail_is_reported_against_the_sealed_head() {
    let app = spawn_app().await;
    let owner = busy_tenant(&app, "acme").await;
    let count = stored(&app, &owner.tenant_id).await;

    tamper(&app, "DROP TRIGGER audit_log_pruned_only")
        .await
        .unwrap();
    tamper(
        &app,
        &format!("DELETE FROM audit_log WHERE seq >= {}", count - 1),
    )
    .await
    .unwrap();
    let key = app.create_api_key(&owner, &["users:read"]).await;

    let report = verify(&app, &owner.access_token).await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_broken"]["sequence"], count - 1);
    assert_eq!(report["first_broken"]["reason"], "missing");
    let latest = entries(&app, &owner, "action=apikey.created").await[0].clone();
    assert_eq!(latest["target"]["id"], key["id"]);
    assert_eq!(
        latest["sequence"],
        count + 1,
        "numbering goes on after the sealed head"
    );
}
