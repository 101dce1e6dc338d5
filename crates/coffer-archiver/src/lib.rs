//! coffer's archiver: the backup pipeline that turns files and streams into snapshots, and the
//! restorer that turns snapshots back into files.
//!
//! - [`backup()`] walks paths (or reads one [`StreamSource`]), chunks with the repository's
//!   Rabin polynomial, deduplicates, compresses, encrypts and packs in parallel, and writes a
//!   snapshot only when everything it refers to is stored.
//! - [`restore()`] recreates a snapshot's files pack by pack with several threads, never holding
//!   a whole file in memory, then applies owners, modes and times, and can re-read and hash what
//!   it wrote.
//! - [`filter::PatternSet`] implements restic's include/exclude patterns.
//!
//! ```no_run
//! use std::sync::{Arc, atomic::AtomicBool};
//! use coffer_archiver::{backup, BackupOptions, Progress};
//! # fn run(repo: Arc<coffer_repo::Repository>) -> Result<(), Box<dyn std::error::Error>> {
//! let opts = BackupOptions { paths: vec!["/etc".into()], ..Default::default() };
//! let r = backup(repo, opts, Arc::new(Progress::default()), Arc::new(AtomicBool::new(false)))?;
//! println!("snapshot {} saved", r.snapshot_id.short());
//! # Ok(()) }
//! ```

mod backup;
pub mod filter;
pub mod metadata;
mod progress;
mod reader;
mod restore;
mod stream;
mod walk;

pub use backup::{backup, BackupError, BackupOptions, BackupResult, Finalize};
pub use progress::{Progress, ProgressSnapshot};
pub use reader::{copy_stream, FileReader};
pub use restore::{restore, DamagedFile, RestoreError, RestoreOptions, RestoreResult};
pub use stream::{lazy as lazy_stream, StreamSource};
pub use walk::{find_node, walk_tree, TreeEntry};
