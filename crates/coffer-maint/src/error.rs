//! The maintenance layer's error type.

use coffer_repo::{Id, RepoError};

/// Why a maintenance operation stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaintError {
    /// The repository layer failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The repository is damaged in a way that makes the operation unsafe.
    #[error("{0}")]
    Damaged(String),
    /// A tree of a snapshot could not be loaded.
    #[error("tree {tree} of snapshot {snapshot} cannot be loaded: {cause}")]
    Tree {
        /// Snapshot that needs it.
        snapshot: Id,
        /// The tree.
        tree: Id,
        /// Why.
        cause: String,
    },
    /// Stopped by the caller (a signal).
    #[error("interrupted")]
    Interrupted,
    /// Bad options.
    #[error("{0}")]
    Usage(String),
}

/// Result with [`MaintError`].
pub type Result<T, E = MaintError> = std::result::Result<T, E>;

impl From<coffer_repo::backend::BackendError> for MaintError {
    fn from(e: coffer_repo::backend::BackendError) -> Self {
        MaintError::Repo(e.into())
    }
}
