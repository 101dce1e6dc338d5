//! coffer's repository engine: restic repository format version 2, implemented in Rust.
//!
//! A repository is a set of files named by the SHA-256 of their contents (restic's
//! `doc/design.rst` is the specification):
//!
//! - `config`: format version, repository id and chunker polynomial, encrypted.
//! - `keys/`: key files wrapping the master key with a password ([`keyfile`]).
//! - `data/xx/`: packs of encrypted, optionally zstd-compressed blobs ([`pack`]).
//! - `index/`: which pack holds each blob ([`index`]).
//! - `snapshots/`: one JSON file per backup naming its root [`tree::Tree`].
//! - `locks/`: restic-compatible lock files ([`lock`]).
//!
//! Main types: [`Repository`] (open, read files and blobs, list snapshots), [`Packer`] (the
//! write path for blobs), [`backend::Backend`] (local disk and S3 through OpenDAL).
//!
//! ## Invariants that keep a repository valid
//! - Write order is packs, then the index files naming them, then the snapshot. Readers go the
//!   other way. A process killed at any point leaves only unreferenced packs, never a snapshot
//!   that refers to missing data.
//! - Every file is written whole: a temporary file that is synced and renamed on local disk, a
//!   single PUT on S3.
//! - Writers hold a non-exclusive lock in `locks/` for as long as they add packs, so an
//!   exclusive operation (restic's or coffer's prune) waits for them.
//!
//! ```no_run
//! use coffer_repo::{backend::Location, Repository};
//! let repo = Repository::open(&Location::parse("/srv/backup").unwrap(), "secret").unwrap();
//! repo.load_index().unwrap();
//! for s in repo.snapshots().unwrap() {
//!     println!("{} {}", s.id.short(), s.snap.time);
//! }
//! ```

pub mod backend;
mod cache;
pub mod config;
pub mod crypto;
mod error;
mod goquote;
mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod pack_scan;
mod packer;
mod repository;
pub mod snapshot;
pub mod sysinfo;
pub mod tree;

pub use cache::Cache;
pub use coffer_chunker::Pol;
pub use error::{RepoError, Result};
pub use id::{Id, IdHasher, ParseIdError};
pub use packer::{Packer, PackerStats, DEFAULT_PACK_SIZE};
pub use repository::{DamagedSnapshot, InitOptions, Repository};
