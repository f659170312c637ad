//! The native server's [`Notifier`]: the requests of every worker thread share one
//! process, so a job queued on one thread wakes the claims of its worker waiting on any
//! thread, at once. Shutting the server down ends every wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;
use tollgate::notify::{Listener, Notifier};

#[derive(Clone)]
pub struct NativeNotifier(Arc<Shared>);

struct Shared {
    /// One counter per topic with listeners; a notification moves it.
    topics: Mutex<HashMap<String, watch::Sender<u64>>>,
    closed: watch::Sender<bool>,
}

impl NativeNotifier {
    pub fn new() -> Self {
        NativeNotifier(Arc::new(Shared {
            topics: Mutex::new(HashMap::new()),
            closed: watch::channel(false).0,
        }))
    }

    /// Ends every wait, now and from now on.
    pub fn close(&self) {
        self.0.closed.send_replace(true);
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        // A panic elsewhere cannot leave the map half-changed: every change is one call.
        self.0
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for NativeNotifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier for NativeNotifier {
    fn notify(&self, topic: &str) {
        if let Some(counter) = self.topics().get(topic) {
            counter.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn listen(&self, topic: &str) -> Option<Box<dyn Listener>> {
        let closed = self.0.closed.subscribe();
        if *closed.borrow() {
            return None;
        }
        let mut topics = self.topics();
        // Topics nobody listens to any more go, so the map holds only waiting workers.
        topics.retain(|_, counter| counter.receiver_count() > 0);
        let counter = topics
            .entry(topic.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Some(Box::new(NativeListener { counter, closed }))
    }
}

struct NativeListener {
    counter: watch::Receiver<u64>,
    closed: watch::Receiver<bool>,
}

#[async_trait(?Send)]
impl Listener for NativeListener {
    async fn wait(&mut self, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        let deadline = started + timeout;
        tokio::select! {
            notified = self.counter.changed() => {
                // The counter outlives its listeners; should it not, the wait runs its course.
                if notified.is_err() {
                    tokio::time::sleep_until(deadline).await;
                }
            }
            _ = self.closed.wait_for(|closed| *closed) => return None,
            _ = tokio::time::sleep_until(deadline) => {}
        }
        Some(started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notification_ends_the_waits_of_its_topic_only() {
        let notifier = NativeNotifier::new();
        let mut ours = notifier.listen("worker-a").unwrap();
        let mut theirs = notifier.listen("worker-b").unwrap();
        // Sent before the wait began: not lost.
        notifier.notify("worker-a");
        let waited = ours.wait(Duration::from_secs(30)).await.unwrap();
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        let waited = theirs.wait(Duration::from_millis(50)).await.unwrap();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        // Nobody listens to an unknown topic: nothing happens.
        notifier.notify("worker-c");
    }

    #[tokio::test]
    async fn closing_ends_every_wait_and_refuses_new_listeners() {
        let notifier = NativeNotifier::new();
        let mut listener = notifier.listen("worker-a").unwrap();
        let (waited, ()) = tokio::join!(listener.wait(Duration::from_secs(30)), async {
            notifier.close()
        });
        assert_eq!(waited, None);
        assert!(notifier.listen("worker-a").is_none());
    }
}
