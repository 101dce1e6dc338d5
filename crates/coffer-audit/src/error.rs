use std::path::PathBuf;

/// An audit log or audit key error. Every message names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file (or directory) concerned.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file is unusable: bad content, or readable by group or others.
    #[error("audit key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The end of the log does not verify (edited, or torn by a crash), so nothing is
    /// appended to it: appending would bless a tampered tail.
    #[error("audit log {path}{}: {message}; run `coffer audit verify`", line_suffix(*.line))]
    Broken {
        /// The log file.
        path: PathBuf,
        /// The offending line's `seq` as written in it (its line number in an intact log), or
        /// `None` when the line could not be read.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// The key file is in the same directory as the log.
    #[error(
        "audit key {key} is in the same directory as the audit log {log}: the key must live \
         elsewhere (e.g. /etc/coffer/audit.key) so that whoever can edit the log cannot \
         recompute the chain"
    )]
    KeyLocation {
        /// The log file.
        log: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// An entry cannot be written as a line that reads back identically (should not happen;
    /// see [`crate::Entry`]).
    #[error("audit log {path}: cannot encode entry: {message}")]
    Encode {
        /// The log file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn line_suffix(line: Option<u64>) -> String {
    match line {
        Some(n) => format!(", line {n}"),
        None => String::new(),
    }
}

impl AuditError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
