//! The engine's error type. Each variant names the file, blob or location involved so that a
//! message read in a log at 3 a.m. says what to look at.

use crate::backend::{BackendError, FileType, LocationError};
use crate::id::Id;
use crate::pack::{BlobError, BlobType};

/// Everything the repository layer can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// No `config` at the location.
    #[error("no repository at {location}: it has no repository `config` file (the repository's own, not coffer.toml); create a repository with `coffer init`")]
    NotFound {
        /// The location given.
        location: String,
    },
    /// `init` on an existing repository.
    #[error("a repository already exists at {location}")]
    AlreadyExists {
        /// The location given.
        location: String,
    },
    /// No key file opens with the password.
    #[error("wrong password or no key found: none of the {keys} key files of {location} opens with this password (a damaged key file cannot be told from a wrong password: another key, if there is one, still opens the repository)")]
    WrongPassword {
        /// The location.
        location: String,
        /// How many key files were tried.
        keys: usize,
    },
    /// The repository is locked by someone else.
    #[error("repository {location} is locked{kind} by {holder}, which is still alive (or, on another host, refreshed its lock in the last 30 minutes): wait for it with `--retry-lock 30m`; `coffer unlock` removes only the locks of processes that are gone")]
    Locked {
        /// The location.
        location: String,
        /// " exclusively" or "".
        kind: &'static str,
        /// Who holds it.
        holder: String,
    },
    /// A bad location string.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// Storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A file failed to decrypt or parse.
    #[error("{kind} file {name}: {reason}")]
    File {
        /// File type.
        kind: FileType,
        /// File name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// A blob could not be read.
    #[error("{kind} blob {id} in pack {pack}: {source}")]
    Blob {
        /// Blob id.
        id: Id,
        /// Blob type.
        kind: BlobType,
        /// Pack id.
        pack: Id,
        /// Cause.
        #[source]
        source: Box<BlobError>,
    },
    /// A blob the caller needs is not indexed.
    #[error(
        "{kind} blob {id} is not in the index (the repository may be damaged: `coffer check` says what is missing, `coffer repair index` rebuilds the index from the packs)"
    )]
    BlobNotFound {
        /// Blob id.
        id: Id,
        /// Blob type.
        kind: BlobType,
    },
    /// A blob the caller needs is not indexed, and a damaged index file was skipped.
    #[error(
        "{kind} blob {id} is not in the index, and index file {index} is damaged and was skipped: `coffer repair index` rebuilds the index from the packs, then try again"
    )]
    BlobNotIndexed {
        /// Blob id.
        id: Id,
        /// Blob type.
        kind: BlobType,
        /// The (first) damaged index file, short id.
        index: String,
    },
    /// No snapshot matches.
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    /// Several snapshots match an id prefix.
    #[error("snapshot prefix {0:?} is ambiguous")]
    SnapshotAmbiguous(String),
    /// Something else that is inconsistent.
    #[error("{0}")]
    Invalid(String),
}

impl RepoError {
    pub(crate) fn file(kind: FileType, name: &str, reason: impl std::fmt::Display) -> RepoError {
        RepoError::File {
            kind,
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Result with [`RepoError`].
pub type Result<T, E = RepoError> = std::result::Result<T, E>;
