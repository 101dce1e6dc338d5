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
    /// Concurrent pack uploads.
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
            excludes: PatternSet::new::<&str>(&[]).expect("empty pattern set"),
            one_file_system: false,
            tags: Vec::new(),
            host: coffer_repo::sysinfo::hostname(),
            parent: None,
            time: None,
            scan: true,
            read_threads: 2,
            seal_threads: cpus,
            upload_threads: 2,
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

#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unmodified: AtomicU64,
    bytes: AtomicU64,
    files: AtomicU64,
}

/// Directory entries one walker task examines before the rest may be taken by another.
const WALK_BATCH: usize = 64;

type ContentResult = Result<(Vec<Id>, u64), String>;
type TreeResult = Result<Id, String>;

enum Pending {
    Done,
    /// A file being read; `changed`: the parent snapshot has it (counted once it is read).
    Content {
        rx: Receiver<ContentResult>,
        changed: bool,
    },
    Subtree {
        rx: Receiver<TreeResult>,
        parent: Option<Id>,
    },
}

struct PendingNode {
    node: Node,
    pending: Pending,
    path: String,
}

struct DirJob {
    nodes: Vec<PendingNode>,
    reply: Sender<TreeResult>,
}

struct FileJob {
    path: PathBuf,
    reply: Sender<ContentResult>,
}

/// A chunk to hash and, unless the repository has it, seal; its id goes back to the reader
/// as its position in the content.
struct SealJob {
    data: ChunkBuf,
    slot: usize,
    ids: Sender<(usize, Id)>,
}

/// Buffers that held a chunk larger than this are freed rather than pooled, so a pooled
/// buffer keeps at most this much (plus one read) resident.
const POOLED_RESIDENT: usize = 4 << 20;

/// Bytes read from a file per call.
const READ_SIZE: usize = 256 << 10;

/// A chunk's bytes in a buffer big enough for any chunk plus one read.
struct ChunkBuf {
    buf: Vec<u8>,
    len: usize,
}

impl ChunkBuf {
    fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Chunk buffers handed back by sealers and readers. Freshly allocated buffers are mapped and
/// faulted in page by page for every chunk (with fresh pack buffers, 1.2 million page faults
/// and about 3 of the 23 CPU-seconds of a 4.8 GB first backup); pooled ones stay mapped. Only
/// what a buffer has held stays resident: buffers that held a chunk over
/// [`POOLED_RESIDENT`] are freed, and the pool keeps a few buffers beyond one per thread.
struct BufPool {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

impl BufPool {
    fn new(keep: usize) -> BufPool {
        let (tx, rx) = bounded(keep);
        BufPool { tx, rx }
    }

    fn take(&self) -> ChunkBuf {
        let buf = self
            .rx
            .try_recv()
            .unwrap_or_else(|_| vec![0u8; coffer_chunker::MAX_SIZE + READ_SIZE]);
        ChunkBuf { buf, len: 0 }
    }

    fn give(&self, b: ChunkBuf) {
        if b.len <= POOLED_RESIDENT {
            let _ = self.tx.try_send(b.buf);
        }
    }
}

struct Ctx {
    repo: Arc<Repository>,
    packer: Arc<Packer>,
    names: Names,
    excludes: PatternSet,
    one_file_system: bool,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
    warnings: Mutex<Vec<String>>,
    error: Mutex<Option<String>>,
    counters: Counters,
    chunker: Chunker,
    bufs: BufPool,
}

impl Ctx {
    fn warn(&self, msg: String) {
        tracing::warn!("{msg}");
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.warnings.lock().push(msg);
    }

    fn fail(&self, msg: String) {
        let mut e = self.error.lock();
        if e.is_none() {
            *e = Some(msg);
        }
        self.cancel.store(true, Ordering::Relaxed);
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Chunks a stream; new chunks go to the sealers. Returns content ids and bytes read.
    /// Data is read straight into pooled chunk buffers; only the bytes after a cut are
    /// copied, into the next chunk's buffer.
    fn read_stream(&self, r: &mut dyn Read, seal: &Sender<SealJob>) -> ContentResult {
        let mut chunker = self.chunker.clone();
        chunker.reset();
        let (ids_tx, ids_rx) = unbounded();
        let mut count = 0usize;
        let mut total = 0u64;
        let mut cur = self.bufs.take();
        loop {
            if self.cancelled() {
                return Err("interrupted".into());
            }
            // A chunk is cut at MAX_SIZE at the latest, so a read always has READ_SIZE room.
            let start = cur.len;
            let n = match r.read(&mut cur.buf[start..start + READ_SIZE]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read error after {total} bytes: {e}")),
            };
            total += n as u64;
            self.progress.add_bytes(n as u64);
            cur.len += n;
            let mut scanned = start;
            while let Some(cut) = chunker.next_boundary(&cur.buf[scanned..cur.len]) {
                let end = scanned + cut;
                let mut next = self.bufs.take();
                next.len = cur.len - end;
                next.buf[..next.len].copy_from_slice(&cur.buf[end..cur.len]);
                cur.len = end;
                self.emit(std::mem::replace(&mut cur, next), &mut count, &ids_tx, seal)?;
                scanned = 0;
            }
        }
        if cur.len > 0 {
            self.emit(cur, &mut count, &ids_tx, seal)?;
        } else {
            self.bufs.give(cur);
        }
        drop(ids_tx);
        let mut ids = vec![Id::default(); count];
        for _ in 0..count {
            // Every job holds a sender: the channel closes early only if jobs were dropped
            // unhashed, which sealers do once the backup has failed.
            let (slot, id) = ids_rx
                .recv()
                .map_err(|_| "interrupted: the backup failed elsewhere".to_string())?;
            ids[slot] = id;
        }
        Ok((ids, total))
    }

    fn emit(
        &self,
        chunk: ChunkBuf,
        count: &mut usize,
        ids: &Sender<(usize, Id)>,
        seal: &Sender<SealJob>,
    ) -> Result<(), String> {
        seal.send(SealJob {
            data: chunk,
            slot: *count,
            ids: ids.clone(),
        })
        .map_err(|_| "sealer threads stopped".to_string())?;
        *count += 1;
        Ok(())
    }
}

fn open_noatime(path: &Path) -> std::io::Result<std::fs::File> {
    // O_NOATIME keeps backups from touching access times; it needs ownership or root.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
}

fn unchanged(old: &Node, md: &std::fs::Metadata, new: &Node) -> bool {
    old.kind == NodeType::File
        && old.mtime == new.mtime
        && old.ctime == new.ctime
        && old.size == md.size()
        && old.inode == md.ino()
}

/// A tree of backup targets and the directories above them.
#[derive(Default)]
struct VDir {
    children: BTreeMap<Vec<u8>, VEntry>,
}

enum VEntry {
    Target(PathBuf),
    Dir(PathBuf, VDir),
}

fn normalize(paths: &[PathBuf]) -> Result<Vec<PathBuf>, BackupError> {
    let cwd = std::env::current_dir().map_err(|e| BackupError::Target {
        path: ".".into(),
        source: e,
    })?;
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        let abs = if p.is_absolute() {
            p.clone()
        } else {
            cwd.join(p)
        };
        // Lexical clean-up of `.` and `..` (not following symlinks, as restic does).
        let mut clean = PathBuf::from("/");
        for c in abs.components() {
            match c {
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                std::path::Component::Normal(n) => clean.push(n),
                _ => {}
            }
        }
        if let Err(e) = std::fs::symlink_metadata(&clean) {
            return Err(BackupError::Target {
                path: p.clone(),
                source: e,
            });
        }
        out.push(clean);
    }
    out.sort();
    out.dedup();
    // A target inside another target is already covered.
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    Ok(out)
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
        walker.stream_root(streams, &seal_tx, &mut stream_error)
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

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("spawning a backup thread")
}

/// Why a file's stored copy may mix old and new content: it was written to while it was
/// read (size, mtime or ctime moved, or fewer or more bytes came than it had). The copy is
/// kept, as restic keeps it, but the backup says so and does not end as a clean success.
fn changed_while_read(
    before: &std::fs::Metadata,
    after: Option<&std::fs::Metadata>,
    read: u64,
) -> Option<String> {
    let after = after?;
    let stamp = |m: &std::fs::Metadata| (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
    if after.len() != before.len() || read != before.len() {
        return Some(format!(
            "changed while it was read (size {} bytes when opened, {} bytes read, {} bytes now): \
             the stored copy may mix old and new content; back it up again",
            before.len(),
            read,
            after.len()
        ));
    }
    if stamp(after) != stamp(before) {
        return Some(
            "changed while it was read (its modification time moved): the stored copy may \
             mix old and new content; back it up again"
                .into(),
        );
    }
    None
}

fn sealer(ctx: Arc<Ctx>, rx: Receiver<SealJob>) {
    let mut sealer = Sealer::new(ctx.repo.compression());
    for job in rx {
        if ctx.error.lock().is_some() {
            continue;
        }
        let id = Id::hash(job.data.data());
        let _ = job.ids.send((job.slot, id));
        if !ctx.packer.reserve(&id, BlobType::Data) {
            ctx.bufs.give(job.data);
            continue;
        }
        let (payload, unc) = sealer.compress(job.data.data());
        if let Err(e) = ctx
            .packer
            .add_compressed(id, BlobType::Data, payload, job.data.len, unc)
        {
            ctx.fail(e.to_string());
        }
        ctx.bufs.give(job.data);
    }
}

fn reader(ctx: Arc<Ctx>, rx: Receiver<FileJob>, seal: Sender<SealJob>) {
    for job in rx {
        let r = if ctx.cancelled() {
            Err("interrupted".into())
        } else {
            ctx.progress.set_current(&job.path.to_string_lossy());
            match open_noatime(&job.path) {
                Ok(mut f) => {
                    let before = f.metadata().ok();
                    let r = ctx.read_stream(&mut f, &seal);
                    if let (Ok((_, n)), Some(before)) = (&r, &before) {
                        let after = f.metadata().ok();
                        if let Some(why) = changed_while_read(before, after.as_ref(), *n) {
                            ctx.warn(format!("{}: {why}", job.path.display()));
                        }
                    }
                    r
                }
                Err(e) => Err(e.to_string()),
            }
        };
        if let Ok((_, n)) = &r {
            ctx.counters.bytes.fetch_add(*n, Ordering::Relaxed);
        }
        ctx.counters.files.fetch_add(1, Ordering::Relaxed);
        ctx.progress.file_done();
        let _ = job.reply.send(r);
    }
}

fn tree_saver(ctx: Arc<Ctx>, rx: Receiver<DirJob>) {
    for job in rx {
        let mut tree = Tree::default();
        for p in job.nodes {
            let PendingNode {
                mut node,
                pending,
                path,
            } = p;
            match pending {
                Pending::Done => {}
                Pending::Content { rx, changed } => match rx.recv() {
                    Ok(Ok((ids, size))) => {
                        // Counted once read: a file that could not be read is a warning,
                        // not a new file.
                        let c = &ctx.counters;
                        match changed {
                            true => c.files_changed.fetch_add(1, Ordering::Relaxed),
                            false => c.files_new.fetch_add(1, Ordering::Relaxed),
                        };
                        node.content = Some(ids);
                        node.size = size;
                    }
                    Ok(Err(e)) => {
                        if !ctx.cancelled() {
                            ctx.warn(format!("{path}: {e}"));
                        }
                        continue;
                    }
                    Err(_) => continue,
                },
                Pending::Subtree { rx, parent } => match rx.recv() {
                    Ok(Ok(id)) => {
                        let c = &ctx.counters;
                        match parent {
                            None => c.dirs_new.fetch_add(1, Ordering::Relaxed),
                            Some(p) if p == id => c.dirs_unmodified.fetch_add(1, Ordering::Relaxed),
                            Some(_) => c.dirs_changed.fetch_add(1, Ordering::Relaxed),
                        };
                        node.subtree = Some(id);
                    }
                    Ok(Err(e)) => {
                        if !ctx.cancelled() {
                            ctx.warn(format!("{path}: {e}"));
                        }
                        continue;
                    }
                    Err(_) => continue,
                },
            }
            tree.nodes.push(node);
        }
        ctx.progress.dirs_done.fetch_add(1, Ordering::Relaxed);
        let r = ctx
            .packer
            .save_blob(BlobType::Tree, &tree.to_blob())
            .map(|(id, _)| id)
            .map_err(|e| {
                ctx.fail(e.to_string());
                e.to_string()
            });
        let _ = job.reply.send(r);
    }
}

struct Walker<'a> {
    ctx: &'a Ctx,
    files: Sender<FileJob>,
    dirs: Sender<DirJob>,
}

impl Walker<'_> {
    fn dir_job(&self, nodes: Vec<PendingNode>) -> Receiver<TreeResult> {
        let (tx, rx) = bounded(1);
        if self
            .dirs
            .send(DirJob {
                nodes,
                reply: tx.clone(),
            })
            .is_err()
        {
            let _ = tx.send(Err("tree saver stopped".into()));
        }
        rx
    }

    fn root(
        &self,
        targets: &[PathBuf],
        parent: Option<&Tree>,
    ) -> Result<Receiver<TreeResult>, String> {
        if targets.iter().any(|t| t == Path::new("/")) {
            return Ok(self.walk_dir(Path::new("/"), parent, None));
        }
        let mut root = VDir::default();
        for t in targets {
            let comps: Vec<&[u8]> = t
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.as_bytes()),
                    _ => None,
                })
                .collect();
            let mut dir = &mut root;
            let mut prefix = PathBuf::from("/");
            for (i, c) in comps.iter().enumerate() {
                prefix.push(crate::metadata::os_name(c));
                if i + 1 == comps.len() {
                    dir.children.insert(c.to_vec(), VEntry::Target(t.clone()));
                    break;
                }
                let e = dir
                    .children
                    .entry(c.to_vec())
                    .or_insert_with(|| VEntry::Dir(prefix.clone(), VDir::default()));
                dir = match e {
                    VEntry::Dir(_, d) => d,
                    VEntry::Target(_) => break,
                };
            }
        }
        Ok(self.walk_virtual(&root, parent))
    }

    fn walk_virtual(&self, dir: &VDir, parent: Option<&Tree>) -> Receiver<TreeResult> {
        let mut nodes = Vec::new();
        for (name, e) in &dir.children {
            let path = match e {
                VEntry::Target(p) | VEntry::Dir(p, _) => p,
            };
            let md = match std::fs::symlink_metadata(path) {
                Ok(m) => m,
                Err(e) => {
                    self.ctx.warn(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            match e {
                VEntry::Target(p) => {
                    if let Some(n) = self.entry(name, p, &md, parent, md.dev()) {
                        nodes.push(n);
                    }
                }
                VEntry::Dir(p, sub) => {
                    let node = match node_from_metadata(name, p, &md, &self.ctx.names) {
                        Ok(n) => n,
                        Err(e) => {
                            self.ctx.warn(format!("{}: {e}", p.display()));
                            continue;
                        }
                    };
                    let old = parent.and_then(|t| t.find(name)).and_then(|n| n.subtree);
                    let old_tree = old.and_then(|id| self.ctx.repo.load_tree(&id).ok());
                    let rx = self.walk_virtual(sub, old_tree.as_ref());
                    nodes.push(PendingNode {
                        node,
                        pending: Pending::Subtree { rx, parent: old },
                        path: p.to_string_lossy().into_owned(),
                    });
                }
            }
        }
        self.dir_job(nodes)
    }

    /// One directory entry; None when excluded or unreadable.
    fn entry(
        &self,
        name: &[u8],
        path: &Path,
        md: &std::fs::Metadata,
        parent: Option<&Tree>,
        dev: u64,
    ) -> Option<PendingNode> {
        if self.ctx.excludes.matches(path) {
            return None;
        }
        let shown = path.to_string_lossy().into_owned();
        let mut node = match node_from_metadata(name, path, md, &self.ctx.names) {
            Ok(n) => n,
            Err(e) => {
                self.ctx.warn(format!("{shown}: {e}"));
                return None;
            }
        };
        let old = parent.and_then(|t| t.find(name));
        let c = &self.ctx.counters;
        let pending = match node.kind {
            NodeType::File => {
                if let Some(o) = old.filter(|o| unchanged(o, md, &node)) {
                    let content = o.content.clone().unwrap_or_default();
                    let idx = self.ctx.repo.index();
                    if content.iter().all(|id| idx.has(id, BlobType::Data)) {
                        drop(idx);
                        node.content = Some(content);
                        c.files_unmodified.fetch_add(1, Ordering::Relaxed);
                        c.files.fetch_add(1, Ordering::Relaxed);
                        c.bytes.fetch_add(node.size, Ordering::Relaxed);
                        self.ctx.progress.add_bytes(node.size);
                        self.ctx.progress.file_done();
                        return Some(PendingNode {
                            node,
                            pending: Pending::Done,
                            path: shown,
                        });
                    }
                }
                let (tx, rx) = bounded(1);
                let job = FileJob {
                    path: path.to_path_buf(),
                    reply: tx,
                };
                if self.files.send(job).is_err() {
                    return None;
                }
                Pending::Content {
                    rx,
                    changed: old.is_some(),
                }
            }
            NodeType::Dir => {
                let old_id = old
                    .filter(|o| o.kind == NodeType::Dir)
                    .and_then(|o| o.subtree);
                let rx = if self.ctx.one_file_system && md.dev() != dev {
                    // A mount point: keep the empty directory, not what is mounted there.
                    self.dir_job(Vec::new())
                } else {
                    let old_tree = old_id.and_then(|id| self.ctx.repo.load_tree(&id).ok());
                    self.walk_dir(path, old_tree.as_ref(), Some(dev))
                };
                Pending::Subtree { rx, parent: old_id }
            }
            _ => Pending::Done,
        };
        Some(PendingNode {
            node,
            pending,
            path: shown,
        })
    }

    fn walk_dir(
        &self,
        path: &Path,
        parent: Option<&Tree>,
        dev: Option<u64>,
    ) -> Receiver<TreeResult> {
        let dev = dev.unwrap_or_else(|| {
            std::fs::symlink_metadata(path)
                .map(|m| m.dev())
                .unwrap_or(0)
        });
        let mut entries: Vec<(Vec<u8>, PathBuf)> = match std::fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some((e.file_name().as_bytes().to_vec(), e.path())),
                    Err(err) => {
                        self.ctx.warn(format!("{}: {err}", path.display()));
                        None
                    }
                })
                .collect(),
            Err(e) => {
                self.ctx.warn(format!("{}: {e}", path.display()));
                Vec::new()
            }
        };
        entries.sort();
        // Entries (and the subdirectories under them) are examined on the walker pool; the
        // collected order is the sorted order, and this directory's job is queued only after
        // every descendant's, so the tree saver never waits for a job behind it.
        let nodes: Vec<PendingNode> = entries
            .into_par_iter()
            .with_max_len(WALK_BATCH)
            .filter_map(|(name, p)| {
                if self.ctx.cancelled() {
                    return None;
                }
                let md = match std::fs::symlink_metadata(&p) {
                    Ok(m) => m,
                    Err(e) => {
                        self.ctx.warn(format!("{}: {e}", p.display()));
                        return None;
                    }
                };
                self.entry(&name, &p, &md, parent, dev)
            })
            .collect();
        self.dir_job(nodes)
    }

    fn stream_root(
        &self,
        streams: Vec<StreamSource>,
        seal: &Sender<SealJob>,
        failed: &mut Option<(String, String)>,
    ) -> Result<Receiver<TreeResult>, String> {
        let mut names = std::collections::HashSet::new();
        for s in &streams {
            let f = &s.filename;
            if f.is_empty() || f.contains('/') || f == "." || f == ".." {
                return Err(format!(
                    "invalid stream file name {f:?}: use a plain file name"
                ));
            }
            if !names.insert(f.clone()) {
                return Err(format!("two streams are both called {f:?}"));
            }
        }
        let (uid, gid) = coffer_repo::sysinfo::uid_gid();
        let mut nodes = Vec::new();
        for stream in streams {
            let StreamSource {
                filename,
                mut reader,
                finish,
            } = stream;
            self.ctx.progress.set_current(&filename);
            let now = Local::now();
            let mut node = Node::new(filename.as_bytes().to_vec(), NodeType::File);
            node.mode = 0o644;
            node.mtime = now.fixed_offset();
            node.atime = node.mtime;
            node.ctime = node.mtime;
            node.uid = uid;
            node.gid = gid;
            node.user = coffer_repo::sysinfo::username();
            node.links = 1;
            let read = self.ctx.read_stream(&mut *reader, seal);
            drop(reader);
            // The producer's verdict comes first: a dump that died mid-stream is the error
            // to report, not the short read it caused.
            if let Err(message) = finish() {
                *failed = Some((filename, message));
                return Err("stream failed".into());
            }
            let (ids, size) = read?;
            let c = &self.ctx.counters;
            c.files_new.fetch_add(1, Ordering::Relaxed);
            c.files.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(size, Ordering::Relaxed);
            node.content = Some(ids);
            node.size = size;
            self.ctx.progress.file_done();
            nodes.push(PendingNode {
                node,
                pending: Pending::Done,
                path: filename,
            });
        }
        nodes.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        Ok(self.dir_job(nodes))
    }
}

/// Counts files and bytes below the targets for the progress ETA.
fn scan(ctx: &Ctx, targets: &[PathBuf]) {
    let mut stack: Vec<PathBuf> = targets.to_vec();
    while let Some(p) = stack.pop() {
        if ctx.cancelled() {
            return;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if ctx.excludes.matches(&p) {
            continue;
        }
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if md.is_file() {
            ctx.progress.total_files.fetch_add(1, Ordering::Relaxed);
            ctx.progress
                .total_bytes
                .fetch_add(md.size(), Ordering::Relaxed);
        }
    }
    ctx.progress.scan_finished.store(true, Ordering::Relaxed);
}
