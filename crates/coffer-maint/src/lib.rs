//! coffer's repository maintenance, the operations that keep a repository small and prove it
//! sound, all on top of `coffer-repo` and all leaving a repository that stock restic accepts:
//!
//! - [`retention`]: which snapshots a keep policy (`--keep-daily 7 ...`) keeps, and why.
//! - [`prune`]: delete unreferenced packs, repack partly used ones, rewrite the index.
//! - [`check`]: structure checks and reading back pack data (all or a subset).
//! - [`repair`]: rebuild the index from pack headers; rewrite snapshots around lost data.
//! - [`copy`]: copy snapshots between repositories, deduplicating against the destination.

pub mod check;
pub mod copy;
pub mod prune;
pub mod repair;
pub mod retention;
