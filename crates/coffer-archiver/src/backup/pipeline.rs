//! What the pipeline's stages share: the context (repository, packer, counters, buffer
//! pool, cancellation), the work items passed between stages, and the rules for reading a
//! file (no atime, unchanged since the parent).

use super::*;

#[derive(Default)]
pub(super) struct Counters {
    pub(super) files_new: AtomicU64,
    pub(super) files_changed: AtomicU64,
    pub(super) files_unmodified: AtomicU64,
    pub(super) dirs_new: AtomicU64,
    pub(super) dirs_changed: AtomicU64,
    pub(super) dirs_unmodified: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) files: AtomicU64,
}

/// Directory entries one walker task examines before the rest may be taken by another.
pub(super) const WALK_BATCH: usize = 64;

pub(super) type ContentResult = Result<(Vec<Id>, u64), String>;
pub(super) type TreeResult = Result<Id, String>;

pub(super) enum Pending {
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

pub(super) struct PendingNode {
    pub(super) node: Node,
    pub(super) pending: Pending,
    pub(super) path: String,
}

pub(super) struct DirJob {
    pub(super) nodes: Vec<PendingNode>,
    pub(super) reply: Sender<TreeResult>,
}

pub(super) struct FileJob {
    pub(super) path: PathBuf,
    pub(super) reply: Sender<ContentResult>,
}

/// A chunk to hash and, unless the repository has it, seal; its id goes back to the reader
/// as its position in the content.
pub(super) struct SealJob {
    pub(super) data: ChunkBuf,
    pub(super) slot: usize,
    pub(super) ids: Sender<(usize, Id)>,
}

/// Buffers that held a chunk larger than this are freed rather than pooled, so a pooled
/// buffer keeps at most this much (plus one read) resident.
pub(super) const POOLED_RESIDENT: usize = 4 << 20;

/// Bytes read from a file per call.
pub(super) const READ_SIZE: usize = 256 << 10;

/// A chunk's bytes in a buffer big enough for any chunk plus one read.
pub(super) struct ChunkBuf {
    pub(super) buf: Vec<u8>,
    pub(super) len: usize,
}

impl ChunkBuf {
    pub(super) fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Chunk buffers handed back by sealers and readers. Freshly allocated buffers are mapped and
/// faulted in page by page for every chunk (with fresh pack buffers, 1.2 million page faults
/// and about 3 of the 23 CPU-seconds of a 4.8 GB first backup); pooled ones stay mapped. Only
/// what a buffer has held stays resident: buffers that held a chunk over
/// [`POOLED_RESIDENT`] are freed, and the pool keeps a few buffers beyond one per thread.
pub(super) struct BufPool {
    pub(super) tx: Sender<Vec<u8>>,
    pub(super) rx: Receiver<Vec<u8>>,
}

impl BufPool {
    pub(super) fn new(keep: usize) -> BufPool {
        let (tx, rx) = bounded(keep);
        BufPool { tx, rx }
    }

    pub(super) fn take(&self) -> ChunkBuf {
        let buf = self
            .rx
            .try_recv()
            .unwrap_or_else(|_| vec![0u8; coffer_chunker::MAX_SIZE + READ_SIZE]);
        ChunkBuf { buf, len: 0 }
    }

    pub(super) fn give(&self, b: ChunkBuf) {
        if b.len <= POOLED_RESIDENT {
            let _ = self.tx.try_send(b.buf);
        }
    }
}

pub(super) struct Ctx {
    pub(super) repo: Arc<Repository>,
    pub(super) packer: Arc<Packer>,
    pub(super) names: Names,
    pub(super) excludes: PatternSet,
    pub(super) one_file_system: bool,
    pub(super) progress: Arc<Progress>,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) warnings: Mutex<Vec<String>>,
    pub(super) error: Mutex<Option<String>>,
    pub(super) counters: Counters,
    pub(super) chunker: Chunker,
    pub(super) bufs: BufPool,
}

impl Ctx {
    pub(super) fn warn(&self, msg: String) {
        tracing::warn!("{msg}");
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.warnings.lock().push(msg);
    }

    pub(super) fn fail(&self, msg: String) {
        let mut e = self.error.lock();
        if e.is_none() {
            *e = Some(msg);
        }
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub(super) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Chunks a stream; new chunks go to the sealers. Returns content ids and bytes read.
    /// Data is read straight into pooled chunk buffers; only the bytes after a cut are
    /// copied, into the next chunk's buffer.
    pub(super) fn read_stream(&self, r: &mut dyn Read, seal: &Sender<SealJob>) -> ContentResult {
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

    pub(super) fn emit(
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

pub(super) fn open_noatime(path: &Path) -> std::io::Result<std::fs::File> {
    // O_NOATIME keeps backups from touching access times; it needs ownership or root.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
}

pub(super) fn unchanged(old: &Node, md: &std::fs::Metadata, new: &Node) -> bool {
    old.kind == NodeType::File
        && old.mtime == new.mtime
        && old.ctime == new.ctime
        && old.size == md.size()
        && old.inode == md.ino()
}
