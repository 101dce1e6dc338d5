//! coffer's repository maintenance, the operations that keep a repository small and prove it
//! sound, all on top of `coffer-repo` and all leaving a repository that stock restic accepts:
//!
//! - [`retention`]: which snapshots a keep policy (`--keep-daily 7 ...`) keeps, and why.
//! - [`forget`]: the retention plan for groups of snapshots and WAL, and its execution.
//! - [`chains`]: which archived log files (WAL) the remaining base backups still need.
//! - [`prune`]: delete unreferenced packs, repack partly used ones, rewrite the index.
//! - [`check`]: structure checks and reading back pack data (all or a subset).
//! - [`repair`]: rebuild the index from pack headers; rewrite snapshots around lost data.
//! - [`copy`]: copy snapshots between repositories, deduplicating against the destination.
//! - [`walk`]: which blobs the snapshots use (shared by the above).
//!
//! ## Concurrency
//! Operations that delete (prune, repair, forget) run under an exclusive restic lock, so
//! neither a coffer nor a restic backup can be writing at the same time; callers take the lock
//! (the CLI waits for it with `--retry-lock`). Each operation writes before it deletes, so a
//! process killed at any point leaves a valid repository.

pub mod chains;
pub mod check;
pub mod copy;
mod error;
pub mod forget;
mod progress;
pub mod prune;
pub mod repair;
pub mod retention;
mod util;
pub mod walk;

pub use error::{MaintError, Result};
pub use progress::{Progress, ProgressView};
