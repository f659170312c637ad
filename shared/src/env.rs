//! The ports a request may use, bundled once per runtime.

use crate::{clock::Clock, config::Config, db::Db, outbound::Outbound};

pub struct Env {
    pub db: Box<dyn Db>,
    pub clock: Box<dyn Clock>,
    /// HTTP out: tenant webhooks, payment and model providers.
    pub outbound: Box<dyn Outbound>,
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
            config,
        }
    }

    /// Now, in Unix seconds: every timestamp Tollgate stores.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}
