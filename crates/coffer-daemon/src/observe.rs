//! What the scheduler tells the rest of the daemon: a run is over. Metrics, the repository
//! figures and the alerting thread each implement [`RunObserver`]; the scheduler knows only
//! the trait, so none of them and the scheduler import each other.

use coffer_catalog::{Run, RunKind};

/// Told about every run a worker finishes.
pub trait RunObserver: Send + Sync {
    /// A run of `kind` is over and its catalog row is final: `run` is that row, or `None`
    /// when the run could not start (nothing was recorded). Called on the worker's thread:
    /// return quickly.
    fn run_finished(&self, kind: RunKind, run: Option<&Run>);
}
