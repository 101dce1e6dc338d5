//! The run catalog: one row per job run (state, times, figures, errors, snapshots), the
//! paused flag of each job, in one SQLite file. The daemon, `coffer job run`, `coffer runs`
//! and `coffer status` share it; it survives restarts, and old runs are trimmed by age.
//!
//! States are the seeds' (QUEUED, RUNNING, SUCCESS, FAILED, WARNING, RETRY, PAUSED), stored
//! and printed in upper case. Run ids are `YYYYMMDD_HHMMSS-<job>` in UTC, so they sort by start
//! time; a second run of one job within the same second gets `.2`, `.3`, ...
//!
//! SQLite runs in WAL mode with a busy timeout, so a CLI reading the catalog while the daemon
//! writes waits instead of failing.

mod alerts;
mod audit;
mod forgotten;
mod meta;
mod run;
mod runs;
mod schema;

use std::path::{Path, PathBuf};

use rusqlite::Connection;

pub use alerts::{Ack, AlertRow, Matcher, Silence};
pub use audit::AuditEntry;
pub use forgotten::Forgotten;
pub use run::{
    CheckResult, CopyResult, RecoveryResult, Run, RunKind, SourceResult, Status, StepResult,
    VerifyResult,
};

/// A catalog error.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite failed.
    #[error("run catalog {path}: {source}")]
    Sqlite {
        /// The catalog file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The directory could not be created.
    #[error("run catalog {path}: {source}")]
    Io {
        /// The catalog file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The file was written by a newer coffer.
    #[error("run catalog {path} has schema version {found}; this coffer knows up to {known}: upgrade coffer")]
    Schema {
        /// The catalog file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
}

/// Result with [`CatalogError`].
pub type Result<T> = std::result::Result<T, CatalogError>;

/// The catalog.
pub struct Catalog {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA_VERSION: i64 = 5;

impl Catalog {
    /// Opens (creating if needed) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Catalog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| CatalogError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        let c = Catalog {
            conn,
            path: path.to_path_buf(),
        };
        c.migrate()?;
        Ok(c)
    }

    /// The default location: /var/lib/coffer/catalog.db for root, else under XDG_DATA_HOME.
    pub fn default_path() -> PathBuf {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/var/lib/coffer/catalog.db");
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("coffer/catalog.db")
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> CatalogError + '_ {
        move |source| CatalogError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn run(job: &str) -> Run {
        let mut r = Run::start(job, "local", "manual", 1);
        r.sources.push(SourceResult {
            source: "etc".into(),
            kind: "files".into(),
            status: "SUCCESS".into(),
            snapshot_id: Some("abc".into()),
            source_bytes: 1000,
            stored_bytes: 250,
            files: 3,
            ..Default::default()
        });
        r
    }

    #[test]
    fn runs_round_trip_and_ids_do_not_collide() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sub/catalog.db");
        let c = Catalog::open(&path).unwrap();
        let mut a = run("nightly");
        let mut b = run("nightly");
        b.started = a.started;
        let mut other = run("hourly");
        other.started = a.started;
        c.insert(&mut a).unwrap();
        c.insert(&mut b).unwrap();
        c.insert(&mut other).unwrap();
        assert_ne!(a.id, b.id);
        assert!(b.id.starts_with(&a.id) && b.id.ends_with(".2"), "{}", b.id);
        assert!(other.id.ends_with("-hourly"));
        a.finish(Status::Success);
        c.update(&a).unwrap();
        assert_eq!(a.compression_ratio, Some(4.0));
        assert_eq!(a.snapshot_ids, vec!["abc".to_string()]);
        drop(c);

        // Survives reopening.
        let c = Catalog::open(&path).unwrap();
        let got = c.get(&a.id).unwrap().unwrap();
        assert_eq!(got, a);
        assert_eq!(c.list(Some("nightly"), 10).unwrap().len(), 2);
        assert_eq!(c.list(None, 10).unwrap().len(), 3);
        assert_eq!(
            c.last("nightly", &[Status::Success]).unwrap().unwrap().id,
            a.id
        );
        // b was left RUNNING by a "crash".
        assert_eq!(c.fail_unfinished("daemon restarted").unwrap(), 2);
        let b2 = c.get(&b.id).unwrap().unwrap();
        assert_eq!(b2.status, Status::Failed);
        assert!(b2.errors.iter().any(|e| e.contains("restarted")));
        assert_eq!(c.consecutive_failures("nightly").unwrap(), 1);
        let json = serde_json::to_value(&b2).unwrap();
        assert_eq!(json["status"], "FAILED");

        c.set_meta("heartbeat", "x").unwrap();
        c.set_meta("heartbeat", "y").unwrap();
        assert_eq!(c.meta("heartbeat").unwrap().as_deref(), Some("y"));
        assert_eq!(c.meta("none").unwrap(), None);
        c.set_paused("nightly", true, "cli").unwrap();
        assert!(c.is_paused("nightly").unwrap());
        c.set_paused("nightly", false, "cli").unwrap();
        assert!(!c.is_paused("nightly").unwrap() && !c.is_paused("never").unwrap());
        assert_eq!(
            c.trim(Utc::now() + chrono::Duration::seconds(5)).unwrap(),
            3
        );
    }
}
