//! The ports a request may use, bundled once per runtime.

use crate::{
    clock::Clock,
    config::Config,
    db::Db,
    notify::{NoNotifier, Notifier},
    outbound::Outbound,
    rate_limit::{DatabaseRateLimiter, RateLimiter},
};

pub struct Env {
    pub db: Box<dyn Db>,
    pub clock: Box<dyn Clock>,
    /// HTTP out: tenant webhooks, payment and model providers.
    pub outbound: Box<dyn Outbound>,
    /// Wakes long-polling claims when a job is queued ([`NoNotifier`] unless the runtime
    /// brings one: see [`Env::with_notifier`]).
    pub notifier: Box<dyn Notifier>,
    /// Counts the per-minute hits of authenticated callers ([`DatabaseRateLimiter`] unless
    /// the runtime brings one: see [`Env::with_rate_limiter`]).
    pub rate_limiter: Box<dyn RateLimiter>,
    pub config: Config,
}

impl Env {
    pub fn new(
        db: Box<dyn Db>,
        clock: Box<dyn Clock>,
        outbound: Box<dyn Outbound>,
        config: Config,
    ) -> Self {
        Self {
            db,
            clock,
            outbound,
            notifier: Box::new(NoNotifier),
            rate_limiter: Box::new(DatabaseRateLimiter),
            config,
        }
    }

    /// This `Env` with `notifier` in place of [`NoNotifier`].
    pub fn with_notifier(mut self, notifier: Box<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// This `Env` with `rate_limiter` in place of [`DatabaseRateLimiter`].
    pub fn with_rate_limiter(mut self, rate_limiter: Box<dyn RateLimiter>) -> Self {
        self.rate_limiter = rate_limiter;
        self
    }

    /// Now, in Unix seconds: every timestamp Tollgate stores.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}
