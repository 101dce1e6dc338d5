//! What the rest of the daemon reads of the scheduler: the queue as the API shows it and the
//! scheduling thread's heartbeat. A leaf, so that metrics, alerting and the API read the
//! scheduler's state without depending on the scheduler.

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

/// What the API shows of the queue.
#[derive(serde::Serialize, Debug, Clone, Default, PartialEq)]
pub struct QueueView {
    /// Jobs waiting for a worker, in the order they will run.
    pub queued: Vec<String>,
    /// Jobs running now.
    pub running: Vec<String>,
    /// Jobs whose verify waits for a worker.
    pub verify_queued: Vec<String>,
    /// Jobs whose verify runs now.
    pub verify_running: Vec<String>,
    /// Scenarios whose drill waits for a worker.
    pub drill_queued: Vec<String>,
    /// Scenarios whose drill runs now.
    pub drill_running: Vec<String>,
    /// The scheduler's last tick.
    pub heartbeat: Option<DateTime<Utc>>,
}

/// The scheduling thread's last tick, in memory: `SchedulerDown` fires when it stalls while
/// the process lives.
#[derive(Default)]
pub struct Heartbeat(Mutex<Option<DateTime<Utc>>>);

impl Heartbeat {
    /// The scheduler ticked at `at`.
    pub fn beat(&self, at: DateTime<Utc>) {
        *self.0.lock() = Some(at);
    }

    /// The last tick, if any.
    pub fn last(&self) -> Option<DateTime<Utc>> {
        *self.0.lock()
    }
}
