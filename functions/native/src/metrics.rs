//! `GET /metrics`: what operators and autoscalers watch, in Prometheus' text format
//! (OpenMetrics), the same figures the benches print. Off unless `TOLLGATE_METRICS_TOKEN` is
//! set; a scrape then carries it as a bearer token.
//!
//! - `tollgate_http_requests_total{method,route,status}` and
//!   `tollgate_http_request_duration_seconds{method,route}`: every request the server
//!   answered, by route (ids and names in the path folded to `{id}`), from its head to its
//!   answer (a stream: to its head);
//! - `tollgate_db_seconds{kind}`: each read or write (a statement or a batch) from the moment
//!   a request hands it to the database until the answer, waiting for the writer included;
//! - read from the database at each scrape: `tollgate_queue_depth{worker_id}` (jobs queued),
//!   `tollgate_jobs_running`, `tollgate_runners_online` (seen in the last 90 s),
//!   `tollgate_webhook_backlog` (deliveries still due) and `tollgate_outbox_backlog` (events
//!   not yet fanned out).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use subtle::ConstantTimeEq;
use tollgate::{
    ApiError, Env,
    db::{Db, DbError, Rows, Statement},
};

/// A runner not heard from for longer is not counted online (its heartbeat comes every 30 s).
const ONLINE_WITHIN_SECONDS: i64 = 90;
/// Routes beyond this many distinct labels are counted as `other`, so a scanner probing
/// random paths cannot grow the registry without bound.
const MAX_ROUTES: usize = 256;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker_id: String,
}

/// The server's metrics, shared by its worker threads.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    database: Family<DbLabels, Histogram>,
    queue_depth: Family<WorkerLabels, Gauge>,
    jobs_running: Gauge,
    runners_online: Gauge,
    webhook_backlog: Gauge,
    outbox_backlog: Gauge,
    routes: Mutex<HashSet<String>>,
}

fn seconds_histogram() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tollgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by method, route and status",
            requests.clone(),
        );
        let durations =
            Family::<RouteLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's head to its answer",
            durations.clone(),
        );
        let database =
            Family::<DbLabels, Histogram>::new_with_constructor(seconds_histogram as fn() -> _);
        registry.register(
            "db_seconds",
            "Time from a statement or batch handed to the database to its answer, waiting for the writer included",
            database.clone(),
        );
        let queue_depth = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Jobs queued, by worker pool",
            queue_depth.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let jobs_running = gauge(&mut registry, "jobs_running", "Jobs leased to a runner");
        let runners_online = gauge(
            &mut registry,
            "runners_online",
            "Runners heard from in the last 90 seconds",
        );
        let webhook_backlog = gauge(
            &mut registry,
            "webhook_backlog",
            "Webhook deliveries still due",
        );
        let outbox_backlog = gauge(
            &mut registry,
            "outbox_backlog",
            "Events not yet fanned out to webhook endpoints",
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                durations,
                database,
                queue_depth,
                jobs_running,
                runners_online,
                webhook_backlog,
                outbox_backlog,
                routes: Mutex::new(HashSet::new()),
            }),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn observe_request(&self, method: &str, path: &str, status: u16, elapsed: Duration) {
        let route = self.route(path);
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.clone(),
                status,
            })
            .inc();
        self.inner
            .durations
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The route label of `path`: its segments, each one that names something (an id, a
    /// model, a slug) folded to `{id}`; `other` once [`MAX_ROUTES`] labels are in use.
    fn route(&self, path: &str) -> String {
        let route = route_of(path);
        let mut routes = self
            .inner
            .routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if routes.contains(&route) {
            return route;
        }
        if routes.len() >= MAX_ROUTES {
            return "other".into();
        }
        routes.insert(route.clone());
        route
    }

    /// `db` with each of its reads and writes timed.
    pub fn timed(&self, db: Box<dyn Db>) -> Box<dyn Db> {
        Box::new(TimedDb {
            inner: db,
            metrics: self.clone(),
        })
    }

    fn observe_database(&self, kind: &'static str, elapsed: Duration) {
        self.inner
            .database
            .get_or_create(&DbLabels { kind })
            .observe(elapsed.as_secs_f64());
    }

    /// Answers `GET /metrics` when the token matches: the registry, with the gauges read
    /// from the database now.
    pub async fn answer(
        &self,
        env: &Env,
        token: Option<&str>,
        authorization: Option<&str>,
    ) -> http::Response<Bytes> {
        let Some(token) = token else {
            return ApiError::not_found("route").into_response();
        };
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
            return ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the metrics token is missing or wrong",
            )
            .into_response();
        }
        if let Err(error) = self.read_gauges(env).await {
            return ApiError::from(error).into_response();
        }
        let mut text = String::new();
        if encode(&mut text, &self.inner.registry).is_err() {
            return ApiError::internal()
                .caused_by("the metrics could not be encoded")
                .into_response();
        }
        http::Response::builder()
            .header(
                http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(Bytes::from(text))
            .expect("static response parts are valid")
    }

    async fn read_gauges(&self, env: &Env) -> Result<(), DbError> {
        let now = env.now();
        let read = env
            .db
            .batch(vec![
                Statement::new(
                    "SELECT worker_id, COUNT(*) AS queued FROM jobs WHERE status = 'queued'
                     GROUP BY worker_id",
                ),
                Statement::new("SELECT COUNT(*) AS running FROM jobs WHERE status = 'running'"),
                Statement::new("SELECT COUNT(*) AS online FROM runners WHERE last_seen_at >= ?")
                    .bind(now - ONLINE_WITHIN_SECONDS),
                Statement::new(
                    "SELECT COUNT(*) AS due FROM webhook_deliveries WHERE status = 'pending'",
                ),
                Statement::new(
                    "SELECT COUNT(*) AS pending FROM outbox_events WHERE delivered_at IS NULL",
                ),
            ])
            .await?;
        let inner = &self.inner;
        inner.queue_depth.clear();
        for row in read[0].iter() {
            inner
                .queue_depth
                .get_or_create(&WorkerLabels {
                    worker_id: row.get("worker_id")?,
                })
                .set(row.get("queued")?);
        }
        let count = |rows: &Rows, column: &str| -> Result<i64, DbError> {
            rows.first().map_or(Ok(0), |row| row.get(column))
        };
        inner.jobs_running.set(count(&read[1], "running")?);
        inner.runners_online.set(count(&read[2], "online")?);
        inner.webhook_backlog.set(count(&read[3], "due")?);
        inner.outbox_backlog.set(count(&read[4], "pending")?);
        Ok(())
    }
}

/// A path's route: `/api/v1/jobs/3f2a…/cancel` → `/api/v1/jobs/{id}/cancel`. A segment that
/// reads as an id (eight characters or more with a digit, or longer than 24) is folded, and
/// so is a model's name after `/v1/models/` (names are the tenants' own).
fn route_of(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/v1/models/")
        && !rest.is_empty()
    {
        return "/v1/models/{model}".into();
    }
    let mut route = String::new();
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        route.push('/');
        let id = segment.len() > 24
            || (segment.len() >= 8 && segment.bytes().any(|byte| byte.is_ascii_digit()));
        route.push_str(if id { "{id}" } else { segment });
    }
    if route.is_empty() {
        route.push('/');
    }
    route
}

/// The database port with every read and write timed into [`Metrics`].
struct TimedDb {
    inner: Box<dyn Db>,
    metrics: Metrics,
}

fn kind_of(sql: &str) -> &'static str {
    if crate::db::is_read(sql) {
        "read"
    } else {
        "write"
    }
}

#[async_trait(?Send)]
impl Db for TimedDb {
    async fn execute(&self, statement: Statement) -> Result<Rows, DbError> {
        let kind = kind_of(&statement.sql);
        let started = Instant::now();
        let result = self.inner.execute(statement).await;
        self.metrics.observe_database(kind, started.elapsed());
        result
    }

    async fn batch(&self, statements: Vec<Statement>) -> Result<Vec<Rows>, DbError> {
        let kind = if statements
            .iter()
            .all(|statement| kind_of(&statement.sql) == "read")
        {
            "read"
        } else {
            "write"
        };
        let started = Instant::now();
        let result = self.inner.batch(statements).await;
        self.metrics.observe_database(kind, started.elapsed());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_models_in_a_path_are_folded_and_words_kept() {
        assert_eq!(
            route_of("/api/v1/jobs/0192f3a4b5c6d7e8f9a0b1c2d3e4f5a6/cancel"),
            "/api/v1/jobs/{id}/cancel"
        );
        assert_eq!(
            route_of("/v1/models/meta-llama/Llama-3.1-8B"),
            "/v1/models/{model}"
        );
        assert_eq!(route_of("/v1/chat/completions"), "/v1/chat/completions");
        assert_eq!(route_of("/api/v1/openapi.json"), "/api/v1/openapi.json");
        assert_eq!(route_of("/"), "/");
    }

    #[test]
    fn past_the_cap_a_new_route_is_other() {
        let metrics = Metrics::default();
        for index in 0..MAX_ROUTES {
            let path = format!("/{}", "x".repeat(index % 24 + 1)) + &"/y".repeat(index / 24);
            metrics.route(&path);
        }
        assert_eq!(metrics.route("/something/new"), "other");
        assert_eq!(
            metrics.route("/x"),
            "/x",
            "a route already in use keeps its label"
        );
    }
}
