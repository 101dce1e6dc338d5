//! The backup pipeline. Stages run concurrently, connected by bounded channels so memory stays
//! bounded whatever the input:
//!
//! ```text
//! walkers (a pool) --FileJob--> readers (read, chunk) --SealJob--> sealers (SHA-256, dedup
//!    |                              ^                                  lookup, zstd, encrypt,
//!    |                              '---------- content ids -----------  pack)
//!    '--DirJob (post-order)--> tree saver <-- content ids of each file
//!                              (waits per node, saves tree blobs)
//! ```
//!
//! Only chunking is sequential within one file or stream; hashing, compression and encryption
//! of its chunks run on every sealer, so one large dump is not held to one core's SHA-256.
//!
//! Paths are walked by a pool of their own (stat calls and parent-tree decoding are all the
//! work an unchanged tree has); streams (a dump, stdin) are read by the calling thread, which
//! hands their chunks to the sealers. A detached scanner sizes the input for the ETA.
//!
//! Packs are uploaded by the [`Packer`]'s threads. The snapshot is written only after the root
//! tree is saved and the packer has flushed every pack and index file, and only if no stage
//! failed: an interrupted or failed backup leaves no snapshot.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use chrono::{DateTime, FixedOffset, Local};
use coffer_chunker::Chunker;
use coffer_repo::pack::{BlobType, Sealer};
use coffer_repo::snapshot::{Snapshot, SnapshotSummary, SnapshotWithId};
use coffer_repo::tree::{Node, NodeType, Tree};
use coffer_repo::{Id, Packer, RepoError, Repository, DEFAULT_PACK_SIZE};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use rayon::prelude::*;

use crate::filter::PatternSet;
use crate::metadata::{node_from_metadata, Names};
use crate::progress::Progress;
use crate::stream::StreamSource;

mod pipeline;
mod stages;
mod targets;
mod walker;

use pipeline::*;
use stages::*;
use targets::*;
use walker::*;

/// Adds fields to a snapshot's JSON just before it is saved.
pub type Finalize = Box<dyn FnOnce(&mut serde_json::Map<String, serde_json::Value>) + Send>;

/// Called just before the snapshot is saved; an error stops the backup without one (a
/// deferred repository lock's second look, [`coffer_repo::lock::LockGuard::confirm`]).
pub type Confirm = Box<dyn FnOnce() -> Result<(), RepoError> + Send>;

/// What to back up and how.
pub struct BackupOptions {
    /// Files and directories (made absolute).
    pub paths: Vec<PathBuf>,
    /// Streams instead of paths: each becomes one file at the root of the snapshot, read one
    /// after the other (a database source dumps several databases in one snapshot).
    pub streams: Vec<StreamSource>,
    /// Files of an earlier snapshot put next to the streams as they are, without being read
    /// again (a Kafka partition's older records: immutable, so only what came after them is
    /// a stream). Each must have every blob in the index, or the backup fails.
    pub carried: Vec<Node>,
    /// Exclude patterns.
    pub excludes: PatternSet,
    /// Do not cross into other file systems.
    pub one_file_system: bool,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Host name recorded.
    pub host: String,
    /// Snapshot to compare against (unchanged files are not read).
    pub parent: Option<SnapshotWithId>,
    /// Snapshot time (default: now).
    pub time: Option<DateTime<FixedOffset>>,
    /// Count what is to be done beforehand, for an ETA; off when no one watches progress
    /// (the count is a second walk of the whole tree).
    pub scan: bool,
    /// Concurrent file readers.
    pub read_threads: usize,
    /// Concurrent compress+encrypt workers.
    pub seal_threads: usize,
    /// Concurrent pack uploads (at least 4 to a remote repository).
    pub upload_threads: usize,
    /// Extra fields stored in the snapshot JSON (restic ignores them).
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// Called with `extra` just before the snapshot is saved, when everything else succeeded:
    /// a source adds what it learnt while its streams ran (positions reached, sizes).
    pub finalize: Option<Finalize>,
    /// Must pass before the snapshot is saved.
    pub confirm: Option<Confirm>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        BackupOptions {
            paths: Vec::new(),
            streams: Vec::new(),
            carried: Vec::new(),
            excludes: PatternSet::new::<&str>(&[]).expect("empty pattern set"),
            one_file_system: false,
            tags: Vec::new(),
            host: coffer_repo::sysinfo::hostname(),
            parent: None,
            time: None,
            scan: true,
            read_threads: 2,
            seal_threads: cpus,
            // A local write of a pack takes ~15 ms against ~75 ms to fill one at the
            // sealers' pace: one writer keeps up, and each more holds another 16-24 MiB pack.
            upload_threads: 1,
            extra: serde_json::Map::new(),
            finalize: None,
            confirm: None,
        }
    }
}

/// Why a backup produced no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A backup target does not exist or cannot be read.
    #[error("{path}: {source}")]
    Target {
        /// The path given.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The stream source failed.
    #[error("stream {name:?}: {message}")]
    Stream {
        /// File name in the snapshot.
        name: String,
        /// What happened.
        message: String,
    },
    /// Cancelled (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
    /// Bad options.
    #[error("{0}")]
    Usage(String),
}

/// A finished backup.
#[derive(Debug, Clone)]
pub struct BackupResult {
    /// The new snapshot's id.
    pub snapshot_id: Id,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Statistics.
    pub summary: SnapshotSummary,
    /// Items that could not be read and were left out.
    pub warnings: Vec<String>,
}

/// Runs a backup and writes its snapshot.
pub fn backup(
    repo: Arc<Repository>,
    mut opts: BackupOptions,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
) -> Result<BackupResult, BackupError> {
    let start = Local::now().fixed_offset();
    repo.load_index()?;
    let targets = if !opts.streams.is_empty() {
        if !opts.paths.is_empty() {
            return Err(BackupError::Usage("a stream backup takes no paths".into()));
        }
        Vec::new()
    } else {
        if opts.paths.is_empty() {
            return Err(BackupError::Usage(
                "nothing to back up: give at least one path".into(),
            ));
        }
        normalize(&opts.paths)?
    };
    let snapshot_paths: Vec<String> = match opts.streams.is_empty() {
        false => opts
            .streams
            .iter()
            .map(|s| format!("/{}", s.filename))
            .chain(opts.carried.iter().map(|n| format!("/{}", n.name_lossy())))
            .collect(),
        true => targets
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    };
    let upload_threads = if repo.backend().location().is_local() {
        opts.upload_threads
    } else {
        opts.upload_threads.max(4)
    };
    let packer = Arc::new(Packer::new(
        Arc::clone(&repo),
        DEFAULT_PACK_SIZE,
        upload_threads,
    ));
    let ctx = Arc::new(Ctx {
        chunker: Chunker::new(repo.config().chunker_polynomial),
        repo: Arc::clone(&repo),
        packer: Arc::clone(&packer),
        names: Names::default(),
        excludes: opts.excludes.clone(),
        one_file_system: opts.one_file_system,
        progress: Arc::clone(&progress),
        cancel: Arc::clone(&cancel),
        warnings: Mutex::new(Vec::new()),
        error: Mutex::new(None),
        counters: Counters::default(),
        bufs: BufPool::new(opts.read_threads.max(1) + opts.seal_threads.max(1) + 2),
    });

    let (seal_tx, seal_rx) = bounded::<SealJob>(opts.seal_threads.max(1) * 2);
    let (file_tx, file_rx) = bounded::<FileJob>(64);
    let (dir_tx, dir_rx) = unbounded::<DirJob>();

    let mut threads = Vec::new();
    for i in 0..opts.seal_threads.max(1) {
        let rx = seal_rx.clone();
        let ctx = Arc::clone(&ctx);
        threads.push(spawn(format!("coffer-seal-{i}"), move || sealer(ctx, rx)));
    }
    drop(seal_rx);
    for i in 0..opts.read_threads.max(1) {
        let rx = file_rx.clone();
        let seal = seal_tx.clone();
        let ctx = Arc::clone(&ctx);
        threads.push(spawn(format!("coffer-read-{i}"), move || {
            reader(ctx, rx, seal)
        }));
    }
    drop(file_rx);
    let tree_ctx = Arc::clone(&ctx);
    let tree_thread = spawn("coffer-trees".into(), move || tree_saver(tree_ctx, dir_rx));
    if opts.scan && !targets.is_empty() {
        let scan_targets = targets.clone();
        let ctx = Arc::clone(&ctx);
        // Detached: the scanner only feeds the ETA and must not delay the end of the backup.
        let _ = std::thread::Builder::new()
            .name("coffer-scan".into())
            .spawn(move || scan(&ctx, &scan_targets));
    }

    let walker = Walker {
        ctx: &ctx,
        files: file_tx,
        dirs: dir_tx,
    };
    let parent_tree = opts
        .parent
        .as_ref()
        .and_then(|p| repo.load_tree(&p.snap.tree).ok());
    let mut stream_error = None;
    let streams = std::mem::take(&mut opts.streams);
    let root = if !streams.is_empty() {
        let carried = std::mem::take(&mut opts.carried);
        walker.stream_root(streams, carried, &seal_tx, &mut stream_error)
    } else {
        // Walking is stat calls and parent-tree decoding: on an unchanged tree it is all the
        // work there is, so it gets a pool of its own (idle while readers and sealers work).
        match rayon::ThreadPoolBuilder::new()
            .num_threads(opts.read_threads.max(2))
            .thread_name(|i| format!("coffer-walk-{i}"))
            .build()
        {
            Ok(pool) => pool.install(|| walker.root(&targets, parent_tree.as_ref())),
            Err(e) => Err(format!("starting the walker threads: {e}")),
        }
    };
    drop(walker);
    drop(seal_tx);
    let root_id = root.and_then(|rx| {
        rx.recv()
            .unwrap_or_else(|_| Err("tree saver stopped".into()))
    });
    let _ = tree_thread.join();
    for t in threads {
        let _ = t.join();
    }
    if let Some((name, message)) = stream_error {
        return Err(BackupError::Stream { name, message });
    }
    if cancel.load(Ordering::Relaxed) && ctx.error.lock().is_none() {
        return Err(BackupError::Interrupted);
    }
    if let Some(e) = ctx.error.lock().take() {
        packer.check()?;
        return Err(BackupError::Repo(RepoError::Invalid(e)));
    }
    let root_id = root_id.map_err(|e| BackupError::Repo(RepoError::Invalid(e)))?;
    let stats = packer.flush()?;

    let c = &ctx.counters;
    let summary = SnapshotSummary {
        backup_start: Some(start),
        backup_end: Some(Local::now().fixed_offset()),
        files_new: c.files_new.load(Ordering::Relaxed),
        files_changed: c.files_changed.load(Ordering::Relaxed),
        files_unmodified: c.files_unmodified.load(Ordering::Relaxed),
        dirs_new: c.dirs_new.load(Ordering::Relaxed),
        dirs_changed: c.dirs_changed.load(Ordering::Relaxed),
        dirs_unmodified: c.dirs_unmodified.load(Ordering::Relaxed),
        data_blobs: stats.data_blobs,
        tree_blobs: stats.tree_blobs,
        data_added: stats.data_added,
        data_added_packed: stats.data_added_packed,
        total_files_processed: c.files.load(Ordering::Relaxed),
        total_bytes_processed: c.bytes.load(Ordering::Relaxed),
    };
    let (uid, gid) = coffer_repo::sysinfo::uid_gid();
    let snapshot = Snapshot {
        time: opts.time.unwrap_or(start),
        parent: opts.parent.as_ref().map(|p| p.id),
        tree: root_id,
        paths: snapshot_paths,
        hostname: opts.host.clone(),
        username: coffer_repo::sysinfo::username(),
        uid,
        gid,
        excludes: opts.excludes.patterns().to_vec(),
        tags: opts.tags.clone(),
        original: None,
        program_version: Some(format!("coffer {}", env!("CARGO_PKG_VERSION"))),
        summary: Some(summary.clone()),
        extra: opts.extra.clone(),
    };
    let mut snapshot = snapshot;
    if let Some(f) = opts.finalize.take() {
        f(&mut snapshot.extra);
    }
    if let Some(c) = opts.confirm.take() {
        c()?;
    }
    let snapshot_id = repo.save_snapshot(&snapshot)?;
    let warnings = std::mem::take(&mut *ctx.warnings.lock());
    Ok(BackupResult {
        snapshot_id,
        snapshot,
        summary,
        warnings,
    })
}
