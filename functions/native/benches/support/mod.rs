//! What the benches share: an `Env` over the embedded database, a runtime per thread, a
//! tenant made through the domain as the admin CLI makes one, and percentiles.

use std::time::Duration;

use tollgate::{
    Env,
    auth::password::Password,
    clock::SystemClock,
    config::Config,
    outbound::NoOutbound,
    tenancy::{
        Email, Slug,
        tenants::{self, CreatedTenant},
    },
};
use tollgate_server::db::LibsqlDb;

/// The owner's password of [`create_tenant`]'s tenants.
pub const PASSWORD: &str = "correct horse battery staple";

/// The defaults with a JWT secret: what the server needs to start.
pub fn config() -> Config {
    Config::from_lookup(|name| {
        (name == "TOLLGATE_JWT_SECRET").then(|| "bench-secret-bench-secret-bench-secret-01".into())
    })
    .expect("the bench configuration is valid")
}

pub fn env(db: &LibsqlDb) -> Env {
    Env::new(
        Box::new(db.clone()),
        Box::new(SystemClock),
        Box::new(NoOutbound),
        config(),
    )
}

/// One single-threaded runtime: each bench thread stands for one server worker.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// A tenant `slug` on `plan`, with its owner.
pub async fn create_tenant(env: &Env, slug: &str, plan: &'static str) -> CreatedTenant {
    let tenant = tenants::NewTenant {
        slug: Slug::parse("slug", slug).unwrap(),
        name: "Bench".into(),
        plan,
        owner_email: Email::parse("email", &format!("owner@{slug}.bench")).unwrap(),
        owner_name: "Owner".into(),
        owner_password: Password::parse("password", PASSWORD.into()).unwrap(),
    };
    tenants::create(env, &tenant).await.unwrap()
}
