//! The ports a request may use, bundled once per runtime.

use crate::{clock::Clock, config::Config, db::Db};

pub struct Env {
    pub db: Box<dyn Db>,
    pub clock: Box<dyn Clock>,
    pub config: Config,
}

impl Env {
    pub fn new(db: Box<dyn Db>, clock: Box<dyn Clock>, config: Config) -> Self {
        Self { db, clock, config }
    }

    /// Now, in Unix seconds: every timestamp Tollgate stores.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}
