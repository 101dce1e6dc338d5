//! Why the daemon could not start or stopped.

use coffer_catalog::CatalogError;

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The listen address is unusable.
    #[error("listen address {addr}: {message}")]
    Listen {
        /// The address.
        addr: String,
        /// What is wrong.
        message: String,
    },
    /// A token could not be read.
    #[error("[[server.token]] {name:?}: {message}")]
    Token {
        /// The token's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The metrics could not be set up.
    #[error("setting up /metrics: {0}")]
    Metrics(prometheus::Error),
    /// The alert rules or channels could not be set up.
    #[error("alerting: {0}")]
    Alerting(String),
    /// The async runtime could not start.
    #[error("starting the HTTP server: {0}")]
    Runtime(std::io::Error),
}
