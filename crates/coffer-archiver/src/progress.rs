//! Counters a running backup or restore updates and a UI thread reads: items and bytes done,
//! totals found by the scanner (for an ETA), and the item in progress.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Shared progress counters.
#[derive(Default, Debug)]
pub struct Progress {
    /// Files finished.
    pub files_done: AtomicU64,
    /// Directories finished.
    pub dirs_done: AtomicU64,
    /// Bytes processed (read, or skipped as unchanged).
    pub bytes_done: AtomicU64,
    /// Files the scanner found.
    pub total_files: AtomicU64,
    /// Bytes the scanner found.
    pub total_bytes: AtomicU64,
    /// The scanner finished, so totals are final.
    pub scan_finished: AtomicBool,
    /// Items that could not be read.
    pub errors: AtomicU64,
    /// Item in progress.
    pub current: Mutex<String>,
}

impl Progress {
    /// Adds processed bytes.
    pub fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a finished file.
    pub fn file_done(&self) {
        self.files_done.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the item in progress.
    pub fn set_current(&self, s: &str) {
        let mut c = self.current.lock();
        c.clear();
        c.push_str(s);
    }

    /// Starts counting afresh (the next step of a recovery reuses the counters).
    pub fn reset(&self) {
        for c in [
            &self.files_done,
            &self.dirs_done,
            &self.bytes_done,
            &self.total_files,
            &self.total_bytes,
            &self.errors,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.scan_finished.store(false, Ordering::Relaxed);
        self.current.lock().clear();
    }

    /// A consistent-enough copy of the counters.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            files_done: self.files_done.load(Ordering::Relaxed),
            dirs_done: self.dirs_done.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            total_files: self.total_files.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            scan_finished: self.scan_finished.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            current: self.current.lock().clone(),
        }
    }
}

/// A copy of [`Progress`] at one moment.
#[derive(Clone, Debug, Default)]
pub struct ProgressSnapshot {
    /// Files finished.
    pub files_done: u64,
    /// Directories finished.
    pub dirs_done: u64,
    /// Bytes processed.
    pub bytes_done: u64,
    /// Files found.
    pub total_files: u64,
    /// Bytes found.
    pub total_bytes: u64,
    /// Totals are final.
    pub scan_finished: bool,
    /// Unreadable items.
    pub errors: u64,
    /// Item in progress.
    pub current: String,
}
