//! The write path for blobs: [`Packer`] deduplicates against the index and against blobs in
//! flight, gathers sealed blobs into data and tree packs of at least 16 MiB, uploads finished
//! packs on a few threads, and writes index files for what is durable. In a local repository
//! a pack goes to its file blob by blob ([`Spool`]) and is only synced and renamed at the
//! end; for remote storage it is built in memory and uploaded whole. Crash ordering: a blob
//! is indexed only after its pack is stored, and an index file is written only for stored
//! packs, so an interrupted run leaves at worst unreferenced packs, which `restic check`
//! reports as harmless and `prune` removes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::backend::{FileType, Spool};
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{IndexFile, IndexPack};
use crate::pack::{BlobType, PackWriter, PackedBlob, Sealer};
use crate::repository::Repository;

/// Target pack size (restic's default is 16 MiB).
pub const DEFAULT_PACK_SIZE: usize = 16 << 20;
// restic writes a new index file after this many blobs or this long.
const INDEX_MAX_BLOBS: usize = 50_000;
const INDEX_MAX_AGE: Duration = Duration::from_secs(5 * 60);

/// What a [`Packer`] stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackerStats {
    /// New data blobs.
    pub data_blobs: u64,
    /// New tree blobs.
    pub tree_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub data_added: u64,
    /// Stored bytes of new blobs (compressed and encrypted).
    pub data_added_packed: u64,
    /// Packs uploaded.
    pub packs: u64,
    /// Index files written.
    pub index_files: u64,
}

/// A finished pack's bytes: in memory with their id, or in a file not yet named.
enum Body {
    Memory { bytes: Vec<u8>, id: Id },
    Spooled(Spool),
}

struct Upload {
    body: Body,
    blobs: Vec<PackedBlob>,
}

/// The pack being filled for one blob type.
#[derive(Default)]
struct OpenPack {
    w: PackWriter,
    spool: Option<Spool>,
}

struct PendingIndex {
    file: IndexFile,
    blobs: usize,
    since: Instant,
}

/// Pack buffers kept for reuse: a fresh 16 MiB buffer costs 4096 page faults as it fills.
/// One idle buffer is enough for the open pack to take when an upload finishes; each more
/// would add 16-24 MiB to peak memory.
type Spare = Arc<Mutex<Vec<Vec<u8>>>>;
const SPARE_PACKS: usize = 1;

/// A pack's bytes on their way to storage; dropping it returns the buffer to the pool.
struct Recycled {
    buf: Vec<u8>,
    pool: Spare,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let mut pool = self.pool.lock();
        if pool.len() < SPARE_PACKS {
            pool.push(std::mem::take(&mut self.buf));
        }
    }
}

struct Shared {
    repo: Arc<Repository>,
    spare: Spare,
    pending: Mutex<HashSet<(Id, BlobType)>>,
    index: Mutex<PendingIndex>,
    error: Mutex<Option<RepoError>>,
    packs: AtomicU64,
    index_files: AtomicU64,
    uploaded_bytes: AtomicU64,
}

impl Shared {
    fn fail(&self, e: RepoError) {
        let mut g = self.error.lock();
        if g.is_none() {
            *g = Some(e);
        }
    }

    fn stored(&self, up: Upload) -> Result<()> {
        let (id, n) = match up.body {
            Body::Memory { bytes, id } => {
                let n = bytes.len() as u64;
                // The buffer comes back to the pool when the backend lets go of it.
                let bytes = bytes::Bytes::from_owner(Recycled {
                    buf: bytes,
                    pool: Arc::clone(&self.spare),
                });
                self.repo
                    .backend()
                    .write(FileType::Pack, &id.to_hex(), bytes)?;
                (id, n)
            }
            Body::Spooled(spool) => self.repo.backend().commit(spool)?,
        };
        let up_blobs = up.blobs;
        self.uploaded_bytes.fetch_add(n, Ordering::Relaxed);
        self.packs.fetch_add(1, Ordering::Relaxed);
        {
            // Index first, then forget the pending entry: a lookup holding `pending` never
            // misses a blob in between.
            let mut pending = self.pending.lock();
            self.repo.index_add_pack(id, &up_blobs);
            for b in &up_blobs {
                pending.remove(&(b.id, b.kind));
            }
        }
        let full = {
            let mut idx = self.index.lock();
            idx.file.packs.push(IndexPack::new(id, &up_blobs));
            idx.blobs += up_blobs.len();
            if idx.blobs >= INDEX_MAX_BLOBS || idx.since.elapsed() >= INDEX_MAX_AGE {
                Some(take_index(&mut idx))
            } else {
                None
            }
        };
        if let Some(f) = full {
            self.write_index(&f)?;
        }
        Ok(())
    }

    fn write_index(&self, f: &IndexFile) -> Result<()> {
        if f.packs.is_empty() {
            return Ok(());
        }
        self.repo.save_json(FileType::Index, f)?;
        self.index_files.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn take_index(idx: &mut PendingIndex) -> IndexFile {
    idx.blobs = 0;
    idx.since = Instant::now();
    std::mem::take(&mut idx.file)
}

/// Packs and uploads blobs for one writer (a backup, a copy, a WAL push).
pub struct Packer {
    shared: Arc<Shared>,
    open: [Mutex<OpenPack>; 2],
    pack_size: usize,
    tx: Mutex<Option<Sender<Upload>>>,
    uploaders: Mutex<Vec<std::thread::JoinHandle<()>>>,
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    data_added: AtomicU64,
    data_added_packed: AtomicU64,
    sealer: Mutex<Sealer>,
}

fn slot(kind: BlobType) -> usize {
    match kind {
        BlobType::Data => 0,
        BlobType::Tree => 1,
    }
}

impl Packer {
    /// A packer writing into `repo`; `upload_threads` packs are stored concurrently.
    pub fn new(repo: Arc<Repository>, pack_size: usize, upload_threads: usize) -> Packer {
        let upload_threads = upload_threads.max(1);
        // Temporary files older than a stale lock belong to writers that died.
        repo.backend().sweep_temporary(crate::lock::STALE_AFTER);
        let shared_compression = repo.compression();
        let shared = Arc::new(Shared {
            repo,
            spare: Arc::new(Mutex::new(Vec::new())),
            pending: Mutex::new(HashSet::new()),
            index: Mutex::new(PendingIndex {
                file: IndexFile::default(),
                blobs: 0,
                since: Instant::now(),
            }),
            error: Mutex::new(None),
            packs: AtomicU64::new(0),
            index_files: AtomicU64::new(0),
            uploaded_bytes: AtomicU64::new(0),
        });
        // A rendezvous: a finished pack waits in its sealer until an upload thread is free,
        // so at most `upload_threads` finished packs are held in memory.
        let (tx, rx): (Sender<Upload>, Receiver<Upload>) = bounded(0);
        let uploaders = (0..upload_threads)
            .map(|i| {
                let rx = rx.clone();
                let sh = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("coffer-upload-{i}"))
                    .spawn(move || {
                        for up in rx {
                            if sh.error.lock().is_some() {
                                continue;
                            }
                            if let Err(e) = sh.stored(up) {
                                sh.fail(e);
                            }
                        }
                    })
                    .expect("spawning an upload thread")
            })
            .collect();
        Packer {
            shared,
            open: [
                Mutex::new(OpenPack::default()),
                Mutex::new(OpenPack::default()),
            ],
            pack_size,
            tx: Mutex::new(Some(tx)),
            uploaders: Mutex::new(uploaders),
            data_blobs: AtomicU64::new(0),
            tree_blobs: AtomicU64::new(0),
            data_added: AtomicU64::new(0),
            data_added_packed: AtomicU64::new(0),
            sealer: Mutex::new(Sealer::new(shared_compression)),
        }
    }

    /// The repository written to.
    pub fn repo(&self) -> &Arc<Repository> {
        &self.shared.repo
    }

    /// Returns true if the caller must store this blob: it is neither indexed nor in flight.
    /// A true answer reserves it, so concurrent callers with the same blob get false.
    pub fn reserve(&self, id: &Id, kind: BlobType) -> bool {
        let mut pending = self.shared.pending.lock();
        if pending.contains(&(*id, kind)) || self.shared.repo.index().has(id, kind) {
            return false;
        }
        pending.insert((*id, kind));
        true
    }

    /// The first upload error, if any.
    pub fn check(&self) -> Result<()> {
        match self.shared.error.lock().as_ref() {
            Some(e) => Err(RepoError::Invalid(format!("storing packs failed: {e}"))),
            None => Ok(()),
        }
    }

    /// Adds a blob sealed by the caller (after a true [`Packer::reserve`]).
    pub fn add_sealed(
        &self,
        id: Id,
        kind: BlobType,
        sealed: &[u8],
        plain_len: usize,
        uncompressed: Option<u32>,
    ) -> Result<()> {
        self.add_with(kind, plain_len, |w| {
            w.add_sealed(id, kind, sealed, uncompressed);
            sealed.len()
        })
    }

    /// Adds a blob the caller compressed (or not) with [`Sealer::compress`], after a true
    /// [`Packer::reserve`]; it is encrypted straight into the pack.
    pub fn add_compressed(
        &self,
        id: Id,
        kind: BlobType,
        payload: &[u8],
        plain_len: usize,
        uncompressed: Option<u32>,
    ) -> Result<()> {
        let key = self.shared.repo.key();
        self.add_with(kind, plain_len, |w| {
            w.add_encrypted(key, id, kind, payload, uncompressed).length as usize
        })
    }

    /// Runs `add` on the open pack of `kind` (`add` returns the bytes it stored) and sends
    /// the pack off when it is full.
    fn add_with(
        &self,
        kind: BlobType,
        plain_len: usize,
        add: impl FnOnce(&mut PackWriter) -> usize,
    ) -> Result<()> {
        self.check()?;
        let (stored, full) = {
            let mut open = self.open[slot(kind)].lock();
            let OpenPack { w, spool } = &mut *open;
            if w.is_empty() && spool.is_none() {
                match self.shared.repo.backend().spool() {
                    Some(s) => *spool = Some(s?),
                    None => {
                        let spare = self.shared.spare.lock().pop();
                        *w = match spare {
                            Some(buf) => PackWriter::with_buffer(buf),
                            None => PackWriter::with_capacity(self.pack_size + (9 << 20)),
                        };
                    }
                }
            }
            let stored = add(w);
            if let Some(s) = spool.as_mut() {
                w.take_pending(|b| s.append(b))?;
            }
            (
                stored,
                (w.len() >= self.pack_size).then(|| std::mem::take(&mut *open)),
            )
        };
        match kind {
            BlobType::Data => self.data_blobs.fetch_add(1, Ordering::Relaxed),
            BlobType::Tree => self.tree_blobs.fetch_add(1, Ordering::Relaxed),
        };
        self.data_added
            .fetch_add(plain_len as u64, Ordering::Relaxed);
        self.data_added_packed
            .fetch_add(stored as u64, Ordering::Relaxed);
        if let Some(w) = full {
            self.send(w)?;
        }
        Ok(())
    }

    fn send(&self, open: OpenPack) -> Result<()> {
        if open.w.is_empty() {
            return Ok(());
        }
        let key = self.shared.repo.key();
        let up = match open.spool {
            Some(mut spool) => {
                let (tail, blobs) = open.w.finish_pending(key);
                spool.append(&tail)?;
                Upload {
                    body: Body::Spooled(spool),
                    blobs,
                }
            }
            None => {
                let (bytes, id, blobs) = open.w.finish(key);
                Upload {
                    body: Body::Memory { bytes, id },
                    blobs,
                }
            }
        };
        let tx = self.tx.lock().clone();
        match tx {
            Some(tx) => tx
                .send(up)
                .map_err(|_| RepoError::Invalid("upload threads stopped".into()))?,
            None => return Err(RepoError::Invalid("packer already flushed".into())),
        }
        self.check()
    }

    /// Hashes, deduplicates, seals and adds a blob; returns its id and whether it was new.
    pub fn save_blob(&self, kind: BlobType, plain: &[u8]) -> Result<(Id, bool)> {
        let id = Id::hash(plain);
        if !self.reserve(&id, kind) {
            return Ok((id, false));
        }
        let mut sealer = self.sealer.lock();
        let (payload, unc) = sealer.compress(plain);
        self.add_compressed(id, kind, payload, plain.len(), unc)?;
        Ok((id, true))
    }

    /// Stores the open packs, waits for every upload, and writes the last index file.
    /// After this the repository holds everything added, and a snapshot may refer to it.
    pub fn flush(&self) -> Result<PackerStats> {
        for s in &self.open {
            let w = std::mem::take(&mut *s.lock());
            self.send(w)?;
        }
        drop(self.tx.lock().take());
        for t in self.uploaders.lock().drain(..) {
            let _ = t.join();
        }
        self.check()?;
        let rest = take_index(&mut self.shared.index.lock());
        self.shared.write_index(&rest)?;
        Ok(self.stats())
    }

    /// Counters so far.
    pub fn stats(&self) -> PackerStats {
        PackerStats {
            data_blobs: self.data_blobs.load(Ordering::Relaxed),
            tree_blobs: self.tree_blobs.load(Ordering::Relaxed),
            data_added: self.data_added.load(Ordering::Relaxed),
            data_added_packed: self.data_added_packed.load(Ordering::Relaxed),
            packs: self.shared.packs.load(Ordering::Relaxed),
            index_files: self.shared.index_files.load(Ordering::Relaxed),
        }
    }

    /// Bytes of packs stored so far.
    pub fn uploaded_bytes(&self) -> u64 {
        self.shared.uploaded_bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Packer {
    fn drop(&mut self) {
        // An unflushed packer (error path) stops its threads; what it had not stored is lost,
        // which is fine because no index or snapshot refers to it.
        drop(self.tx.lock().take());
        for t in self.uploaders.lock().drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::backend::{Location, LOCAL_TMP_DIR};
    use crate::repository::InitOptions;

    fn repo(dir: &std::path::Path) -> Arc<Repository> {
        let opts = InitOptions {
            kdf_n: 1 << 10,
            ..Default::default()
        };
        let loc = Location::parse(dir.to_str().unwrap()).unwrap();
        Arc::new(Repository::init(&loc, "pw", &opts).unwrap())
    }

    fn temporary(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.join(LOCAL_TMP_DIR))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    fn blob(i: u32) -> Vec<u8> {
        // Incompressible (xorshift), so that packs fill at the size of their blobs.
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(i + 1);
        (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn spooled_packs_are_named_by_their_bytes_and_hold_every_blob() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let repo = repo(&root);
        let packer = Packer::new(Arc::clone(&repo), 1 << 20, 2);
        let mut ids = Vec::new();
        for i in 0..13 {
            let (id, new) = packer.save_blob(BlobType::Data, &blob(i)).unwrap();
            assert!(new);
            ids.push(id);
        }
        packer.save_blob(BlobType::Tree, b"{\"nodes\":[]}").unwrap();
        let stats = packer.flush().unwrap();
        // 13 blobs of ~300 kB in packs of at least 1 MiB: 3 full data packs of 4 blobs, one
        // with the last blob, and one tree pack.
        assert_eq!(stats.packs, 5);
        assert!(temporary(&root).is_empty(), "{:?}", temporary(&root));
        for id in repo.backend().list_ids(FileType::Pack).unwrap() {
            let bytes = repo.backend().read(FileType::Pack, &id.to_hex()).unwrap();
            assert_eq!(
                Id::hash(&bytes),
                id,
                "a pack's name is the hash of its bytes"
            );
        }
        let reopened =
            Repository::open(&Location::parse(root.to_str().unwrap()).unwrap(), "pw").unwrap();
        reopened.load_index().unwrap();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                reopened.load_blob(id, BlobType::Data).unwrap(),
                blob(i as u32)
            );
        }
    }

    #[test]
    fn an_abandoned_packer_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let repo = repo(&root);
        let packer = Packer::new(Arc::clone(&repo), 16 << 20, 1);
        packer.save_blob(BlobType::Data, &blob(1)).unwrap();
        assert_eq!(temporary(&root).len(), 1, "the open pack is spooled");
        // A spool in use survives the sweep of another writer, whatever its age.
        repo.backend().sweep_temporary(Duration::ZERO);
        assert_eq!(temporary(&root).len(), 1);
        drop(packer);
        assert!(temporary(&root).is_empty());
        assert!(repo.backend().list_ids(FileType::Pack).unwrap().is_empty());
    }
}
