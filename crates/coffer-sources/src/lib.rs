//! Backup sources: each kind of thing coffer backs up (a PostgreSQL server, a Redis instance, a
//! directory tree, the output of a command) is one module implementing [`Source`], registered
//! in [`build`]. Adding a source touches its module and one line here.
//!
//! A source turns into a [`BackupPlan`]: paths to walk, or streams that become files at the
//! root of one snapshot (a dump per database, say), plus a [`Manifest`] it fills while the
//! streams run (server version, sizes, positions). The snapshot is written only if every
//! stream's producer reports success. A restore gets the snapshot back as [`SnapshotFiles`] and
//! streams what it needs into the server's own tools.

pub mod command;
pub mod files;
pub mod kafka;
mod manifest;
pub mod mariadb;
pub mod postgres;
mod probe;
pub mod redis;
pub mod row_counts;
pub mod scratch;
mod util;

use std::path::PathBuf;
use std::sync::Arc;

use coffer_archiver::{FileReader, Progress, StreamSource};
use coffer_config::{Config, ConfigError, SourceEntry};
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::tree::{Node, NodeType, Tree};
use coffer_repo::Repository;

pub use manifest::Manifest;
pub use probe::Probe;

/// Why a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The settings are wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server could not be reached or refused.
    #[error("{source_name}: {message}")]
    Server {
        /// The source.
        source_name: String,
        /// What happened.
        message: String,
    },
    /// A tool (pg_dump, pg_restore, mariadb, redis-server) failed.
    #[error("{source_name}: {message}")]
    Tool {
        /// The source.
        source_name: String,
        /// What happened.
        message: String,
    },
    /// The snapshot does not hold what the restore needs.
    #[error("{0}")]
    Snapshot(String),
    /// Wrong restore options.
    #[error("{0}")]
    Usage(String),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] coffer_repo::RepoError),
    /// Writing a snapshot failed.
    #[error(transparent)]
    Backup(#[from] coffer_archiver::BackupError),
    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A WAL file was refused on its way into or out of the archive.
    #[error("{0}")]
    Wal(String),
    /// What a restore reads back differs from what it restored.
    #[error("{0}")]
    Verify(String),
}

/// What a backup of a source reads.
pub enum BackupPlan {
    /// Walk these paths.
    Paths {
        /// Absolute paths.
        paths: Vec<PathBuf>,
        /// Exclude patterns.
        exclude: Vec<String>,
    },
    /// Read these streams into one snapshot.
    Streams(Vec<StreamSource>),
    /// Read these streams and put these files of the previous snapshot next to them unread
    /// (an incremental source, see [`Source::backup_on`]).
    Incremental {
        /// What is new.
        streams: Vec<StreamSource>,
        /// Root files of the previous snapshot, kept as they are.
        carried: Vec<Node>,
    },
}

/// Restore settings common to all sources; each source uses what applies to it.
#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    /// Write files into this directory instead of loading a server.
    pub target: Option<PathBuf>,
    /// Load into this database (logical database restores).
    pub to_database: Option<String>,
    /// Which dumped database to restore, when several were dumped.
    pub database: Option<String>,
    /// Drop and recreate objects that exist.
    pub clean: bool,
    /// Start a scratch server from the backup and check it (Redis).
    pub scratch: bool,
    /// Parallel restore jobs (PostgreSQL logical: `pg_restore --jobs`, from a temporary file).
    pub jobs: Option<usize>,
    /// Load into this running server instead of the source's files (Redis: a `redis://` URL).
    pub to_url: Option<String>,
    /// Produce into these brokers instead of the source's own (Kafka, `host:port`).
    pub to_brokers: Option<Vec<String>>,
    /// Restore only these topics (Kafka; empty: every topic in the snapshot).
    pub topics: Vec<String>,
    /// Restore topic FROM as TO (Kafka).
    pub renames: Vec<(String, String)>,
    /// Leave consumer-group offsets alone (Kafka).
    pub no_groups: bool,
    /// Add to topics that already hold records (Kafka).
    pub append: bool,
    /// Only records with a timestamp at or after this (Kafka, milliseconds since 1970).
    pub from_time: Option<i64>,
    /// Only records with a timestamp before this (Kafka, milliseconds since 1970).
    pub to_time: Option<i64>,
    /// Do not add the `coffer.offset` header (the record's original offset) to restored
    /// records (Kafka).
    pub no_offset_header: bool,
    /// With `target`, write the files as the snapshot stores them instead of converting them
    /// (Kafka: the segment files instead of JSON lines).
    pub segments: bool,
    /// Read back what was restored and compare it with what the snapshot holds (Kafka: every
    /// record's count and digest per partition, and where each group resumes).
    pub verify: bool,
}

/// What a restore did, for the CLI to print.
#[derive(Debug, Default, serde::Serialize)]
pub struct RestoreReport {
    /// One line per step.
    pub steps: Vec<String>,
    /// Figures (rows, keys, bytes) checked after the restore.
    pub checks: serde_json::Map<String, serde_json::Value>,
}

/// The files of one snapshot (its root directory), readable as streams.
pub struct SnapshotFiles {
    /// The repository, with its index loaded.
    pub repo: Arc<Repository>,
    /// The snapshot.
    pub snapshot: SnapshotWithId,
    /// The root tree.
    pub root: Tree,
    /// Where readers count what they deliver (a restore's progress display).
    pub progress: Arc<Progress>,
}

impl SnapshotFiles {
    /// Loads the root tree of `snapshot`.
    pub fn open(
        repo: Arc<Repository>,
        snapshot: SnapshotWithId,
    ) -> Result<SnapshotFiles, SourceError> {
        let root = repo.load_tree(&snapshot.snap.tree)?;
        Ok(SnapshotFiles {
            repo,
            snapshot,
            root,
            progress: Arc::default(),
        })
    }

    /// Counts what readers deliver in `progress` (a restore's display), instead of nowhere.
    pub fn with_progress(mut self, progress: Arc<Progress>) -> SnapshotFiles {
        self.progress = progress;
        self
    }

    /// Names of the files at the root.
    pub fn names(&self) -> Vec<String> {
        self.root
            .nodes
            .iter()
            .filter(|n| n.kind == NodeType::File)
            .map(|n| n.name_lossy())
            .collect()
    }

    /// The node of a root file.
    pub fn node(&self, name: &str) -> Result<&Node, SourceError> {
        // Trees are sorted by name: a Kafka snapshot looks up thousands of segments here.
        self.root
            .find(name.as_bytes())
            .filter(|n| n.kind == NodeType::File)
            .ok_or_else(|| {
                SourceError::Snapshot(format!(
                    "snapshot {} has no file {name:?} (it holds: {})",
                    self.snapshot.id.short(),
                    self.names().join(", ")
                ))
            })
    }

    /// A reader over a root file.
    pub fn reader(&self, name: &str) -> Result<FileReader, SourceError> {
        Ok(FileReader::new(Arc::clone(&self.repo), self.node(name)?)
            .with_progress(Arc::clone(&self.progress), name))
    }

    /// A reader over a root file with `threads` reading ahead: less memory when several
    /// files are read at once.
    pub fn reader_with_threads(
        &self,
        name: &str,
        threads: usize,
    ) -> Result<FileReader, SourceError> {
        Ok(
            FileReader::with_threads(Arc::clone(&self.repo), self.node(name)?, threads)
                .with_progress(Arc::clone(&self.progress), name),
        )
    }

    /// The manifest the backup wrote, if any.
    pub fn manifest(&self) -> Option<serde_json::Value> {
        self.snapshot.snap.extra.get("coffer").cloned()
    }
}

/// One kind of source.
pub trait Source: Send + Sync {
    /// The configured name.
    fn name(&self) -> &str;
    /// The type as written in the config (`postgres`, `redis`, ...).
    fn kind(&self) -> &'static str;
    /// Prepares a backup: connects, checks, and returns what to read. `manifest` is stored in
    /// the snapshot once every stream has succeeded.
    fn backup(&self, manifest: &Manifest) -> Result<BackupPlan, SourceError>;
    /// Whether a backup builds on the source's newest snapshot ([`Source::backup_on`]), so
    /// that the caller finds that snapshot before it starts.
    fn incremental(&self) -> bool {
        false
    }
    /// A backup that reads only what changed since `previous` (the source's newest snapshot
    /// in the repository, `None` for the first or a `--force` backup) and keeps the rest of
    /// it by reference. Every snapshot still restores on its own.
    fn backup_on(
        &self,
        manifest: &Manifest,
        previous: Option<&SnapshotFiles>,
    ) -> Result<BackupPlan, SourceError> {
        let _ = previous;
        self.backup(manifest)
    }
    /// Restores from a snapshot this source made.
    fn restore(
        &self,
        files: &SnapshotFiles,
        req: &RestoreRequest,
    ) -> Result<RestoreReport, SourceError>;
    /// Settings worth showing in `coffer sources` (no secrets).
    fn describe(&self) -> String;
    /// Tags besides `source:NAME` and `type:KIND` that its snapshots carry.
    fn extra_tags(&self) -> Vec<String> {
        Vec::new()
    }
    /// Runs a query on the source's server (SQL sources) and returns its rows as text: the
    /// checks of a recovery. Other types refuse.
    fn run_sql(&self, database: Option<&str>, sql: &str) -> Result<Vec<Vec<String>>, SourceError> {
        let _ = (database, sql);
        Err(SourceError::Usage(format!(
            "source {:?} ({}) cannot run SQL checks",
            self.name(),
            self.kind()
        )))
    }
    /// Connects and asks the server who it is (`dr assess`); an error says why it cannot be
    /// reached. The default has nothing to ask.
    fn probe(&self) -> Result<Probe, SourceError> {
        Ok(Probe::default())
    }
}

/// Builds the source a `[[source]]` entry declares; errors name the file, line and key.
pub fn build(cfg: &Config, entry: &SourceEntry) -> Result<Box<dyn Source>, SourceError> {
    const TYPES: [&str; 6] = ["postgres", "mariadb", "redis", "kafka", "files", "command"];
    Ok(match entry.kind.as_str() {
        "postgres" => postgres::build(&entry.name, cfg.source_settings(entry)?)?,
        "mariadb" | "mysql" => Box::new(mariadb::Mariadb::new(
            &entry.name,
            cfg.source_settings(entry)?,
        )?),
        "redis" => Box::new(redis::Redis::new(&entry.name, cfg.source_settings(entry)?)?),
        "kafka" => Box::new(kafka::Kafka::new(&entry.name, cfg.source_settings(entry)?)?),
        "files" => Box::new(files::Files::new(&entry.name, cfg.source_settings(entry)?)?),
        "command" => Box::new(command::CommandSource::new(
            &entry.name,
            cfg.source_settings(entry)?,
        )?),
        other => {
            return Err(SourceError::Config(cfg.source_error(
                entry,
                format!(
                    "unknown type {other:?}{} (known: {})",
                    coffer_config::suggest::did_you_mean(other, TYPES),
                    TYPES.join(", ")
                ),
            )))
        }
    })
}

/// Snapshot tags that mark a source's snapshots.
pub fn source_tags(name: &str, kind: &str) -> Vec<String> {
    vec![format!("source:{name}"), format!("type:{kind}")]
}
