//! The command line: serve (the default), migrate, and the operator's admin commands.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand};
use tollgate::{
    Env,
    api::Page,
    auth::password::Password,
    clock::{Clock, SystemClock},
    config::Config,
    outbound::NoOutbound,
    tenancy::{Email, Slug, admin, parse_display_name, plans, tenants},
};

use crate::{
    database::Database,
    server::{self, ConnectionLimits, ServerClock, ServerSettings},
};

#[derive(Parser)]
#[command(
    name = "tollgate-server",
    version,
    about = "Tollgate: the gate in front of paid AI workloads"
)]
pub struct Cli {
    /// The database: a file path (`file:` prefix allowed), `:memory:`, or a remote libSQL
    /// (`libsql://…` as Turso prints it, or a sqld's `http(s)://…`) reached over Hrana HTTP.
    #[arg(
        long,
        env = "TOLLGATE_DATABASE_URL",
        default_value = "tollgate.db",
        global = true
    )]
    pub database: String,
    /// The auth token of a remote libSQL database.
    #[arg(
        long,
        env = "TOLLGATE_DATABASE_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub database_token: Option<String>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long, env = "TOLLGATE_LOG", default_value = "info", global = true)]
    pub log_level: String,
    /// The HS256 secret for access tokens (32+ characters). Without it a throwaway secret is
    /// generated and every token dies with the process.
    #[arg(
        long,
        env = "TOLLGATE_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<String>,
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Operator commands.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Args)]
pub struct ServeArgs {
    #[arg(
        long,
        env = "TOLLGATE_ADDRESS",
        default_value = "127.0.0.1:8787",
        global = true
    )]
    pub address: SocketAddr,
    /// Worker threads (default: one per core).
    #[arg(long, env = "TOLLGATE_THREADS", global = true)]
    pub threads: Option<usize>,
    /// Seconds between cron runs.
    #[arg(
        long,
        env = "TOLLGATE_CRON_INTERVAL",
        default_value_t = 60,
        global = true
    )]
    pub cron_interval: u64,
    /// Seconds a client has to send a request's headers (and an idle kept-alive connection
    /// stays open); fractions allowed.
    #[arg(long, env = "TOLLGATE_HEADER_READ_TIMEOUT", default_value = "10", value_parser = seconds, global = true)]
    pub header_read_timeout: Duration,
    /// Seconds a client has to send a request's body, after its headers; later, the request
    /// is answered 408 and the connection closed. Fractions allowed.
    #[arg(long, env = "TOLLGATE_BODY_READ_TIMEOUT", default_value = "30", value_parser = seconds, global = true)]
    pub body_read_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog. Keep it
    /// below the open-files limit (`ulimit -n`).
    #[arg(
        long,
        env = "TOLLGATE_MAX_CONNECTIONS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub max_connections: u64,
}

/// A positive number of seconds, fractions allowed.
fn seconds(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create a platform admin (signs in at /api/v1/admin/login).
    CreatePlatformAdmin {
        #[arg(long)]
        email: String,
        #[arg(long, env = "TOLLGATE_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Create a tenant with its owner.
    CreateTenant {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "FREE")]
        plan: String,
        #[arg(long)]
        owner_email: String,
        #[arg(long, default_value = "Owner")]
        owner_name: String,
        #[arg(long, env = "TOLLGATE_OWNER_PASSWORD", hide_env_values = true)]
        owner_password: String,
    },
    /// List tenants, newest first.
    ListTenants {
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Suspend a tenant (by id or slug): its users and keys are refused until reinstated.
    SuspendTenant { tenant: String },
    /// Reinstate a suspended tenant.
    ReactivateTenant { tenant: String },
}

impl Cli {
    /// The shared configuration: `TOLLGATE_*` variables, with the secret flag on top.
    pub fn config(&self) -> Result<Config, tollgate::config::ConfigError> {
        let secret = self.jwt_secret.clone();
        Config::from_lookup(move |name| match name {
            "TOLLGATE_JWT_SECRET" => secret.clone(),
            _ => std::env::var(name).ok(),
        })
    }
}

pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Runs the chosen command to completion.
pub fn run(cli: Cli) -> CliResult {
    let config = cli.config()?;
    let url = cli.database.trim().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let database = runtime.block_on(server::open_database_url(
        &url,
        cli.database_token.clone(),
        SystemClock.now(),
    ))?;
    match cli.command {
        None | Some(Command::Serve) => serve(cli.serve, config, database, &runtime),
        Some(Command::Migrate) => {
            println!("{}: schema is current", redacted(&url));
            Ok(())
        }
        Some(Command::Admin(command)) => {
            // Admin commands send nothing over HTTP; webhook events they cause go out with
            // the server's next cron run.
            let env = Env::new(
                database.port(),
                Box::new(SystemClock),
                Box::new(NoOutbound),
                config,
            );
            runtime.block_on(admin(&env, command))
        }
    }
}

fn serve(
    args: ServeArgs,
    config: Config,
    database: Database,
    runtime: &tokio::runtime::Runtime,
) -> CliResult {
    if config.jwt_secret_generated {
        tracing::warn!(
            "NO TOLLGATE_JWT_SECRET IS SET: a throwaway secret was generated. Every token dies with this \
             process and no second instance can verify them. Set TOLLGATE_JWT_SECRET in production."
        );
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let server = server::start(
        ServerSettings {
            address: args.address,
            threads,
            cron_interval: Duration::from_secs(args.cron_interval.max(1)),
            config,
            clock: ServerClock::System,
            connections: ConnectionLimits {
                header_read_timeout: args.header_read_timeout,
                body_read_timeout: args.body_read_timeout,
                max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            },
        },
        database,
    )?;
    runtime.block_on(shutdown_signal());
    tracing::info!("shutting down: finishing requests in flight");
    server.shutdown();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be watched");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

async fn admin(env: &Env, command: AdminCommand) -> CliResult {
    match command {
        AdminCommand::CreatePlatformAdmin { email, password } => {
            let email = Email::parse("email", &email)?;
            let password = Password::parse("password", password)?;
            let id = admin::create_platform_admin(env, &email, &password).await?;
            println!("platform admin {email} created ({id})");
        }
        AdminCommand::CreateTenant {
            slug,
            name,
            plan,
            owner_email,
            owner_name,
            owner_password,
        } => {
            let tenant = tenants::NewTenant {
                slug: Slug::parse("slug", &slug)?,
                name: parse_display_name("name", &name)?,
                plan: plans::parse_code("plan", &plan)?,
                owner_email: Email::parse("owner_email", &owner_email)?,
                owner_name: parse_display_name("owner_name", &owner_name)?,
                owner_password: Password::parse("owner_password", owner_password)?,
            };
            let created = tenants::create(env, &tenant).await?;
            println!(
                "tenant {} created ({}), owner {} ({})",
                tenant.slug.as_str(),
                created.tenant_id,
                tenant.owner_email,
                created.owner_id
            );
        }
        AdminCommand::ListTenants { limit } => {
            let page = Page {
                limit: limit.clamp(1, 100),
                offset: 0,
            };
            let listing = admin::tenants(env, page, None).await?;
            println!(
                "{:<40} {:<10} {:<11} {:>5}  ID",
                "SLUG", "STATUS", "PLAN", "USERS"
            );
            for tenant in listing["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:<10} {:<11} {:>5}  {}",
                    tenant["slug"].as_str().unwrap_or_default(),
                    tenant["status"].as_str().unwrap_or_default(),
                    tenant["plan"].as_str().unwrap_or_default(),
                    tenant["users"],
                    tenant["id"].as_str().unwrap_or_default()
                );
            }
        }
        AdminCommand::SuspendTenant { tenant } => {
            admin::set_status(env, &tenant, "suspended").await?;
            println!("tenant {tenant} suspended");
        }
        AdminCommand::ReactivateTenant { tenant } => {
            admin::set_status(env, &tenant, "active").await?;
            println!("tenant {tenant} reactivated");
        }
    }
    Ok(())
}

/// The URL without anything that could be a credential in its query (`?authToken=`).
fn redacted(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}
