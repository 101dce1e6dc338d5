//! Progress of a maintenance operation, shared with whoever displays it: the current phase
//! ("loading index", "reading packs") and counters of items and bytes within it. Updated with
//! relaxed atomics from worker threads; the CLI polls it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

/// Counters for one operation.
#[derive(Default)]
pub struct Progress {
    phase: Mutex<String>,
    /// Items done in this phase.
    pub done: AtomicU64,
    /// Items expected in this phase (0 when unknown).
    pub total: AtomicU64,
    /// Bytes done in this phase.
    pub bytes: AtomicU64,
    /// Bytes expected in this phase (0 when unknown).
    pub total_bytes: AtomicU64,
    cancel: AtomicBool,
}

/// A copy of the counters.
#[derive(Clone, Debug, Default)]
pub struct ProgressView {
    /// Current phase.
    pub phase: String,
    /// Items done.
    pub done: u64,
    /// Items expected.
    pub total: u64,
    /// Bytes done.
    pub bytes: u64,
    /// Bytes expected.
    pub total_bytes: u64,
}

impl Progress {
    /// Starts a phase and resets the counters.
    pub fn phase(&self, name: &str, total: u64, total_bytes: u64) {
        *self.phase.lock() = name.to_string();
        self.done.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.total_bytes.store(total_bytes, Ordering::Relaxed);
        tracing::info!(phase = name, total, "maintenance phase");
    }

    /// Counts one item of `bytes` bytes.
    pub fn add(&self, items: u64, bytes: u64) {
        self.done.fetch_add(items, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A consistent-enough copy for display.
    pub fn view(&self) -> ProgressView {
        ProgressView {
            phase: self.phase.lock().clone(),
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
        }
    }

    /// Asks the operation to stop at the next safe point.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether [`Progress::cancel`] was called.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}
