//! The `Notifier` port: how a request that waits for work (a runner's long-poll claim)
//! learns that work may have come, without asking the database over and over.
//!
//! A runtime whose requests share one process (the native server) wakes the waiting
//! claims of a worker when a job is queued on it. A runtime without shared memory between
//! requests (an edge isolate) may still let a request sleep, and the claim then re-checks
//! the queue at an interval; one that cannot hold a request at all keeps [`NoNotifier`], and
//! the claim answers at once.

use std::time::Duration;

use async_trait::async_trait;

pub trait Notifier {
    /// Work for `topic` (a worker id) may be due now: ends the waits of its listeners.
    fn notify(&self, topic: &str);

    /// Starts listening for `topic`: a notification from now on ends the listener's next
    /// wait. `None` where this runtime cannot hold a request.
    fn listen(&self, topic: &str) -> Option<Box<dyn Listener>>;
}

#[async_trait(?Send)]
pub trait Listener {
    /// Until a notification (since `listen` or the previous wait) or `timeout`, whichever
    /// comes first: how long it waited. `None` when it can wait no more (the server is
    /// shutting down): the caller answers now.
    async fn wait(&mut self, timeout: Duration) -> Option<Duration>;
}

/// Nothing to notify and no way to wait.
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, _topic: &str) {}

    fn listen(&self, _topic: &str) -> Option<Box<dyn Listener>> {
        None
    }
}
