//! Workers, bots, runner tokens and runners' health, and their isolation.

use reqwest::StatusCode;
use serde_json::json;
use tollgate::db::{Db, MIGRATIONS, Statement, migrate, split_statements};
use tollgate_server::db::LibsqlDb;
use tollgate_tests::{expect_error, expect_status, spawn_app};

use crate::support::{
    Runner, assert_audited, audit_entries, default_worker, free_tenant, job, queued, sdxl,
};

#[tokio::test]
async fn a_tenant_starts_with_a_default_worker_and_sees_the_shared_pool() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let body = expect_status(
        app.get("workers", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    let workers = body["data"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{body}");
    assert_eq!(workers[0]["default"], true);
    assert_eq!(workers[0]["shared"], false);
    assert_eq!(workers[1]["id"], "shared");
    assert_eq!(workers[1]["shared"], true);
    // The shared pool is visible, not the tenant's to change.
    expect_error(
        app.patch(
            "workers/shared",
            &owner.access_token,
            &json!({ "name": "mine" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn a_tenants_plan_override_raises_its_worker_limit() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let admin = app.platform_admin("ops-workers@tollgate.test").await;
    let raised = json!({ "plan": "FREE", "overrides": { "max_workers": 2 } });
    app.assign_plan(&admin, &owner, &raised).await;

    for name in ["Finance", "Support"] {
        let response = app
            .post("workers", &owner.access_token, &json!({ "name": name }))
            .await;
        expect_status(response, StatusCode::CREATED).await;
    }
    let third = app
        .post("workers", &owner.access_token, &json!({ "name": "Legal" }))
        .await;
    expect_error(third, StatusCode::FORBIDDEN, "plan_limit_exceeded").await;
}

#[tokio::test]
async fn dedicated_workers_are_limited_by_the_plan_and_changeable() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let finance = expect_status(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Finance", "gpu_type": "A100", "min_vram_mb": 40960, "max_concurrency": 2 }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(finance["gpu_type"], "A100");
    assert_eq!(finance["max_concurrency"], 2);
    // FREE allows one dedicated worker.
    let body = expect_error(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Support" }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "plan_limit_exceeded",
    )
    .await;
    assert_eq!(body["error"]["details"]["limit"], "max_workers");
    let id = finance["id"].as_str().unwrap();
    let changed = expect_status(
        app.patch(
            &format!("workers/{id}"),
            &owner.access_token,
            &json!({ "max_concurrency": null, "name": "Finance EU" }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(changed["name"], "Finance EU");
    assert_eq!(changed["max_concurrency"], serde_json::Value::Null);
    assert_eq!(changed["gpu_type"], "A100");
    expect_error(
        app.patch(
            &format!("workers/{id}"),
            &owner.access_token,
            &json!({ "min_vram_mb": -1 }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let member = app.add_user(&owner, "Mel", "member").await;
    expect_error(
        app.post("workers", &member.access_token, &json!({ "name": "Mine" }))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn another_tenants_workers_bots_and_tokens_are_404() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let other = free_tenant(&app, "globex").await;
    let worker = default_worker(&app, &owner).await;
    let bot = expect_status(
        app.post(
            "bots",
            &owner.access_token,
            &json!({ "name": "Portraits", "workflow": sdxl(512, 20) }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let bot_id = bot["id"].as_str().unwrap();
    for response in [
        app.get(&format!("workers/{worker}"), &other.access_token)
            .await,
        app.patch(
            &format!("workers/{worker}"),
            &other.access_token,
            &json!({ "name": "x" }),
        )
        .await,
        app.post(
            &format!("workers/{worker}/runner-tokens"),
            &other.access_token,
            &json!({ "name": "x" }),
        )
        .await,
        app.get(
            &format!("workers/{worker}/runner-tokens"),
            &other.access_token,
        )
        .await,
        app.get(&format!("bots/{bot_id}"), &other.access_token)
            .await,
        app.patch(
            &format!("bots/{bot_id}"),
            &other.access_token,
            &json!({ "name": "x" }),
        )
        .await,
        app.post("jobs", &other.access_token, &json!({ "bot_id": bot_id }))
            .await,
        app.post(
            "jobs",
            &other.access_token,
            &json!({ "workflow": sdxl(512, 20), "worker_id": worker }),
        )
        .await,
        app.post(
            "bots",
            &other.access_token,
            &json!({ "name": "b", "workflow": sdxl(512, 20), "worker_id": worker }),
        )
        .await,
    ] {
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let listed = expect_status(app.get("bots", &other.access_token).await, StatusCode::OK).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_job_runs_on_its_bots_worker_and_follows_the_bot_when_moved() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let default = default_worker(&app, &owner).await;
    let finance = expect_status(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Finance" }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bot = expect_status(
        app.post(
            "bots",
            &owner.access_token,
            &json!({ "name": "Invoices", "workflow": sdxl(512, 20), "worker_id": finance }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(bot["worker_id"], finance);
    let bot_id = bot["id"].as_str().unwrap();
    let job = queued(&app, &owner, json!({ "bot_id": bot_id })).await;
    assert_eq!(job["worker_id"], finance);
    assert_eq!(job["bot_id"], bot_id);
    let moved = expect_status(
        app.patch(
            &format!("bots/{bot_id}"),
            &owner.access_token,
            &json!({ "worker_id": default }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["worker_id"], default);
    let later = queued(&app, &owner, json!({ "bot_id": bot_id })).await;
    assert_eq!(later["worker_id"], default);
    // A runner of the Finance pool sees only Finance's job.
    let runner = Runner::on(&app, &owner, &finance, "gpu-fin").await;
    let claimed = runner.claim(&app, 24576).await.unwrap();
    assert_eq!(claimed["job_id"], job["id"]);
    assert!(runner.claim(&app, 24576).await.is_none());
    let filtered = expect_status(
        app.get(&format!("jobs?bot={bot_id}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 2);
    expect_error(
        app.post(
            "bots",
            &owner.access_token,
            &json!({ "name": "Bad", "workflow": { "1": {} } }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_workflow",
    )
    .await;
}

#[tokio::test]
async fn runner_tokens_authenticate_until_revoked_and_runners_go_stale() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    assert!(runner.token.starts_with("tgr_"));
    let stored = app
        .query("SELECT token_hash FROM runner_tokens", vec![])
        .await;
    assert_ne!(stored[0][0], runner.token.as_str(), "hashed at rest");
    let details = expect_status(
        app.get(&format!("workers/{worker}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(details["runners"][0]["host"], "gpu-1");
    assert_eq!(details["runners"][0]["vram_mb"], 24576);
    assert_eq!(details["runners"][0]["health"], "online");
    app.advance_clock(91);
    let details = expect_status(
        app.get(&format!("workers/{worker}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(details["runners"][0]["health"], "stale");
    expect_status(
        runner
            .post(&app, "runner/heartbeat", json!({ "host": "gpu-1" }))
            .await,
        StatusCode::OK,
    )
    .await;
    let details = expect_status(
        app.get(&format!("workers/{worker}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(details["runners"][0]["health"], "online");

    let tokens = expect_status(
        app.get(
            &format!("workers/{worker}/runner-tokens"),
            &owner.access_token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let token_id = tokens["data"][0]["id"].as_str().unwrap();
    assert!(tokens["data"][0].get("token").is_none());
    let response = app
        .delete(
            &format!("workers/{worker}/runner-tokens/{token_id}"),
            &owner.access_token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    expect_error(
        runner
            .post(&app, "runner/claim", json!({ "free_vram_mb": 1000 }))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // A user's session is no runner token.
    let response = app
        .request(reqwest::Method::POST, "runner/claim")
        .bearer_auth(&owner.access_token)
        .json(&json!({ "free_vram_mb": 1000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn runner_tokens_are_audited_when_created_and_revoked() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let worker = default_worker(&app, &owner).await;
    let path = format!("workers/{worker}/runner-tokens");
    let token = expect_status(
        app.post(&path, &owner.access_token, &json!({ "name": "gpu-1" }))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let token_path = format!("{path}/{}", token["id"].as_str().unwrap());

    let revoked = app.delete(&token_path, &owner.access_token).await;
    let again = app.delete(&token_path, &owner.access_token).await;

    expect_status(revoked, StatusCode::NO_CONTENT).await;
    expect_status(again, StatusCode::NO_CONTENT).await;
    let actions: Vec<String> = app
        .query(
            "SELECT action FROM audit_log WHERE tenant_id = ? AND action LIKE 'runner_token.%' ORDER BY seq",
            vec![owner.tenant_id.clone().into()],
        )
        .await
        .into_iter()
        .map(|row| row[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["runner_token.created", "runner_token.revoked"]);
}

#[tokio::test]
async fn worker_changes_are_audited_and_a_change_that_changes_nothing_is_not() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let other = free_tenant(&app, "globex").await;
    let finance = expect_status(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Finance", "gpu_type": "A100", "min_vram_mb": 40960 }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = finance["id"].as_str().unwrap();
    let path = format!("workers/{id}");
    // Refused by the plan (FREE: one dedicated worker): nothing to audit.
    expect_error(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Support" }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "plan_limit_exceeded",
    )
    .await;
    let change = json!({ "name": "Finance EU", "max_concurrency": 4 });
    expect_status(
        app.patch(&path, &owner.access_token, &change).await,
        StatusCode::OK,
    )
    .await;
    let before = expect_status(app.get(&path, &owner.access_token).await, StatusCode::OK).await;
    app.advance_clock(60);
    // The same settings again, and another tenant's attempt: no change, no entry.
    let same = expect_status(
        app.patch(&path, &owner.access_token, &change).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(same["updated_at"], before["updated_at"], "nothing written");
    expect_error(
        app.patch(&path, &other.access_token, &json!({ "name": "Mine" }))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let entries = audit_entries(&app, &owner, "worker.*").await;
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_audited(&entries[0], "worker.created", &owner, ("worker", id));
    assert_eq!(
        entries[0]["metadata"],
        json!({ "name": "Finance", "gpu_type": "A100", "min_vram_mb": 40960, "max_concurrency": null })
    );
    assert_audited(&entries[1], "worker.updated", &owner, ("worker", id));
    assert_eq!(
        entries[1]["metadata"],
        json!({ "name": "Finance EU", "max_concurrency": 4 })
    );
    assert!(audit_entries(&app, &other, "worker.*").await.is_empty());
}

#[tokio::test]
async fn bot_changes_are_audited_created_updated_moved_and_deleted() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let default = default_worker(&app, &owner).await;
    let finance = expect_status(
        app.post(
            "workers",
            &owner.access_token,
            &json!({ "name": "Finance" }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bot = expect_status(
        app.post(
            "bots",
            &owner.access_token,
            &json!({ "name": "Invoices", "workflow": sdxl(512, 20) }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = bot["id"].as_str().unwrap();
    let path = format!("bots/{id}");
    // Renamed and moved in one request: two entries.
    let moved = expect_status(
        app.patch(
            &path,
            &owner.access_token,
            &json!({ "name": "Invoices EU", "worker_id": finance }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(moved["worker_id"], finance);
    assert_eq!(moved["name"], "Invoices EU");
    // The same again: nothing changes, nothing is audited.
    expect_status(
        app.patch(
            &path,
            &owner.access_token,
            &json!({ "name": "Invoices EU", "worker_id": finance, "workflow": sdxl(512, 20) }),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    expect_status(
        app.patch(&path, &owner.access_token, &json!({ "worker_id": default }))
            .await,
        StatusCode::OK,
    )
    .await;
    let deleted = app.delete(&path, &owner.access_token).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let entries = audit_entries(&app, &owner, "bot.*").await;
    let actions: Vec<&str> = entries
        .iter()
        .map(|entry| entry["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "bot.created",
            "bot.updated",
            "bot.moved",
            "bot.moved",
            "bot.deleted"
        ]
    );
    for entry in &entries {
        assert_audited(
            entry,
            entry["action"].as_str().unwrap(),
            &owner,
            ("bot", id),
        );
    }
    assert_eq!(
        entries[0]["metadata"],
        json!({ "name": "Invoices", "worker_id": default })
    );
    assert_eq!(
        entries[1]["metadata"],
        json!({ "name": "Invoices EU", "workflow_changed": false })
    );
    assert_eq!(
        entries[2]["metadata"],
        json!({ "from_worker_id": default, "to_worker_id": finance })
    );
    assert_eq!(
        entries[3]["metadata"],
        json!({ "from_worker_id": finance, "to_worker_id": default })
    );
    assert_eq!(
        entries[4]["metadata"],
        json!({ "name": "Invoices EU", "worker_id": default })
    );
    let moves = audit_entries(&app, &owner, "bot.moved").await;
    assert_eq!(moves.len(), 2);
    // Sealed into the tenant's chain as they were written.
    let report = expect_status(
        app.get("audit-logs/verify", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(report["valid"], true, "{report:#}");
    let unsealed = app
        .query(
            "SELECT COUNT(*) FROM audit_log WHERE tenant_id = ? AND hash IS NULL",
            vec![owner.tenant_id.clone().into()],
        )
        .await;
    assert_eq!(unsealed[0][0], 0);
}

#[tokio::test]
async fn a_deleted_bot_is_gone_while_its_jobs_run_on_and_keep_its_id() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let other = free_tenant(&app, "globex").await;
    let worker = default_worker(&app, &owner).await;
    let bot = expect_status(
        app.post(
            "bots",
            &owner.access_token,
            &json!({ "name": "Portraits", "workflow": sdxl(512, 20) }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let bot_id = bot["id"].as_str().unwrap();
    let path = format!("bots/{bot_id}");
    let queued_job = queued(&app, &owner, json!({ "bot_id": bot_id })).await;
    let running_job = queued(&app, &owner, json!({ "bot_id": bot_id })).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    let claimed = runner.claim(&app, 24576).await.unwrap();
    assert_eq!(claimed["job_id"], queued_job["id"]);

    // Only its tenant's owners and admins may delete it.
    expect_error(
        app.delete(&path, &other.access_token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let member = app.add_user(&owner, "Mel", "member").await;
    expect_error(
        app.delete(&path, &member.access_token).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    expect_status(app.get(&path, &owner.access_token).await, StatusCode::OK).await;
    let admin = app.add_user(&owner, "Ada", "admin").await;
    let response = app.delete(&path, &admin.access_token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // Gone from the API, as an unknown bot is.
    for response in [
        app.get(&path, &owner.access_token).await,
        app.patch(&path, &owner.access_token, &json!({ "name": "Back" }))
            .await,
        app.delete(&path, &owner.access_token).await,
        app.post("jobs", &owner.access_token, &json!({ "bot_id": bot_id }))
            .await,
    ] {
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let listed = expect_status(app.get("bots", &owner.access_token).await, StatusCode::OK).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0, "{listed}");

    // Its jobs run on and keep its id.
    expect_status(
        runner.finish(&app, &claimed, "succeeded", 14).await,
        StatusCode::OK,
    )
    .await;
    let finished = job(&app, &owner, queued_job["id"].as_str().unwrap()).await;
    assert_eq!(finished["status"], "succeeded");
    assert_eq!(finished["bot_id"], bot_id);
    let next = runner.claim(&app, 24576).await.unwrap();
    assert_eq!(next["job_id"], running_job["id"]);
    assert_eq!(
        job(&app, &owner, running_job["id"].as_str().unwrap()).await["bot_id"],
        bot_id
    );
    let filtered = expect_status(
        app.get(&format!("jobs?bot={bot_id}"), &owner.access_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(filtered["data"].as_array().unwrap().len(), 2);

    let deletions = audit_entries(&app, &owner, "bot.deleted").await;
    assert_eq!(deletions.len(), 1, "{deletions:#?}");
    assert_audited(&deletions[0], "bot.deleted", &admin, ("bot", bot_id));
}

/// What `migrations/0001..=0006` define a tenant as, inserted the way a tenant of that
/// time was.
async fn insert_old_tenant(db: &dyn Db, id: &str, slug: &str) {
    db.execute(
        Statement::new(
            "INSERT INTO tenants (id, slug, name, plan_code, status, created_at, updated_at)
             VALUES (?, ?, ?, 'PRO', 'active', 1000, 1000)",
        )
        .bind(id)
        .bind(slug)
        .bind(slug),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn tenants_from_before_the_jobs_migration_get_one_default_worker_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let db = LibsqlDb::open(path.to_str().unwrap()).await.unwrap();
    // The schema as it was before GPU jobs: migrations 1 to 6, recorded as applied.
    db.execute(Statement::new(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    ))
    .await
    .unwrap();
    for migration in MIGRATIONS.iter().filter(|migration| migration.version <= 6) {
        let mut batch: Vec<Statement> = split_statements(migration.sql)
            .into_iter()
            .map(Statement::new)
            .collect();
        batch.push(
            Statement::new(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)",
            )
            .bind(migration.version)
            .bind(migration.name),
        );
        db.batch(batch).await.unwrap();
    }
    insert_old_tenant(&db, "tenant-old-1", "old-one").await;
    insert_old_tenant(&db, "tenant-old-2", "old-two").await;

    let applied = migrate(&db, 2000).await.unwrap();
    assert!(applied.contains(&7), "{applied:?}");

    for tenant in ["tenant-old-1", "tenant-old-2"] {
        let rows = db
            .execute(
                Statement::new(
                    "SELECT name, is_default, created_at FROM workers WHERE tenant_id = ?",
                )
                .bind(tenant),
            )
            .await
            .unwrap();
        assert_eq!(rows.rows.len(), 1, "{tenant}: {rows:?}");
        let row = rows.first().unwrap();
        assert_eq!(row.get::<String>("name").unwrap(), "default");
        assert_eq!(row.get::<i64>("is_default").unwrap(), 1);
        assert_eq!(row.get::<i64>("created_at").unwrap(), 1000);
    }
    // Migrating again changes nothing.
    assert!(migrate(&db, 3000).await.unwrap().is_empty());
    let defaults = db
        .execute(Statement::new(
            "SELECT COUNT(*) AS n FROM workers WHERE is_default = 1",
        ))
        .await
        .unwrap();
    assert_eq!(defaults.first().unwrap().get::<i64>("n").unwrap(), 2);
}

#[tokio::test]
async fn the_workers_list_shows_each_pools_queue_runners_and_usage_this_month() {
    let app = spawn_app().await;
    let owner = free_tenant(&app, "acme").await;
    let neighbour = free_tenant(&app, "globex").await;
    let worker = default_worker(&app, &owner).await;
    let runner = Runner::on(&app, &owner, &worker, "gpu-1").await;
    for _ in 0..3 {
        queued(&app, &owner, json!({ "workflow": sdxl(512, 20) })).await;
    }
    // A neighbour's job on its own pool is none of acme's business.
    queued(&app, &neighbour, json!({ "workflow": sdxl(512, 20) })).await;
    let claimed = runner.claim(&app, 24576).await.expect("a job");
    let finished = runner.finish(&app, &claimed, "succeeded", 12).await;
    expect_status(finished, StatusCode::OK).await;
    runner.claim(&app, 24576).await.expect("a second job");

    let body = expect_status(
        app.get("workers", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;

    let default = &body["data"][0];
    assert_eq!(default["id"], worker.as_str());
    assert_eq!(
        default["activity"],
        json!({
            "queued": 1,
            "running": 1,
            "runners_online": 1,
            "jobs_this_month": 3,
            "gpu_seconds_this_month": 12,
        })
    );
    assert_eq!(body["data"][1]["activity"]["queued"], 0);
    // A runner silent past the health window is no longer online.
    app.advance_clock(tollgate::jobs::workers::STALE_AFTER_SECONDS + 1);
    let later = expect_status(
        app.get("workers", &owner.access_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(later["data"][0]["activity"]["runners_online"], 0);
}
