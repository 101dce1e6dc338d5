//! The restorer's data path: each pack is cut into segments that workers take in turn (so
//! that even one pack's blobs are decoded on several threads); each segment is read with one
//! request, each blob decrypted, verified and written with `pwrite` to every file offset that
//! needs it.
//!
//! Damage costs only the damaged bytes: a blob that cannot be read (short read of a
//! truncated pack, a flipped byte, a pack that is gone) is tried from any other pack that
//! holds it, and otherwise marks only the files that need it as damaged; every other blob
//! of the same pack and segment is still restored. A write that fails (a full disk) marks
//! its file damaged the same way, and one that failed for lack of space is flagged so that
//! [`super::fill`] can try it again once the space is freed. Nothing here panics on what
//! storage returns.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use coffer_repo::pack::{open_blob, BlobType, PackedBlob};
use coffer_repo::{Id, Repository};

use crate::progress::Progress;

/// One file being restored.
pub(super) struct FileSlot {
    pub path: PathBuf,
    pub size: u64,
    /// Blobs still to be written (or given up on).
    pub remaining: AtomicUsize,
    pub handle: Mutex<Option<Arc<File>>>,
    /// Why the file cannot be restored exactly (the first reason found).
    pub damage: Mutex<Option<String>>,
    /// A write failed because the disk (or the quota) was full: worth another try once
    /// other files have given their space back.
    pub no_space: AtomicBool,
    /// Bytes written into the file so far.
    pub written: AtomicU64,
}

impl FileSlot {
    pub fn new(path: PathBuf, size: u64, blobs: usize) -> FileSlot {
        FileSlot {
            path,
            size,
            remaining: AtomicUsize::new(blobs),
            handle: Mutex::new(None),
            damage: Mutex::new(None),
            no_space: AtomicBool::new(false),
            written: AtomicU64::new(0),
        }
    }

    /// Forgets a failed attempt (closing and removing what it wrote) so that the file's
    /// `blobs` can be restored again; returns the bytes the attempt had written.
    pub fn reset(&self, blobs: usize) -> u64 {
        self.handle.lock().take();
        let _ = std::fs::remove_file(&self.path);
        *self.damage.lock() = None;
        self.no_space.store(false, Ordering::Relaxed);
        self.remaining.store(blobs, Ordering::Relaxed);
        self.written.swap(0, Ordering::Relaxed)
    }

    fn write_failed(&self, offset: u64, e: &io::Error) {
        if matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ) {
            self.no_space.store(true, Ordering::Relaxed);
        }
        self.damaged(|| format!("writing at offset {offset}: {e}"));
    }

    /// Records why the file is not exact (the first reason wins).
    pub fn damaged(&self, why: impl FnOnce() -> String) {
        let mut d = self.damage.lock();
        if d.is_none() {
            *d = Some(why());
        }
    }

    pub fn is_damaged(&self) -> bool {
        self.damage.lock().is_some()
    }

    fn open(&self) -> io::Result<Arc<File>> {
        let mut h = self.handle.lock();
        if let Some(f) = h.as_ref() {
            return Ok(Arc::clone(f));
        }
        let _ = std::fs::remove_file(&self.path);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
            .and_then(|f| f.set_len(self.size).map(|_| f))?;
        let f = Arc::new(f);
        *h = Some(Arc::clone(&f));
        Ok(f)
    }

    /// One blob of this file is done (written or given up on).
    pub fn blob_done(&self, progress: &Progress) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.handle.lock().take();
            if !self.is_damaged() {
                progress.file_done();
            }
        }
    }
}

/// Where a blob goes: a file and an offset in it.
pub(super) struct Target {
    pub file: usize,
    pub offset: u64,
}

/// What the workers share.
pub(super) struct Work<'a> {
    pub repo: &'a Repository,
    pub wanted: &'a HashMap<Id, Vec<Target>>,
    pub slots: &'a [FileSlot],
    pub progress: &'a Progress,
}

/// The most one unit of work spans, encrypted (one read) or plain (what it decodes to).
/// Bounding the plain size too keeps a pack of highly compressible data (a 500 MB dump of
/// repetitive rows fits in one 7 MB pack) from becoming one thread's work.
pub(crate) const SEGMENT: u64 = 4 << 20;

/// Cuts the `blobs` of one pack into segments of at most [`SEGMENT`] bytes (one blob may
/// exceed it), each read with one request and restored by one worker.
pub(super) fn segments(mut blobs: Vec<PackedBlob>) -> Vec<Vec<PackedBlob>> {
    blobs.sort_by_key(|b| b.offset);
    let mut out: Vec<Vec<PackedBlob>> = Vec::new();
    let (mut start, mut plain) = (0u64, 0u64);
    for b in blobs {
        let end = b.offset as u64 + b.length as u64;
        let size = b.data_length() as u64;
        match out.last_mut() {
            Some(seg) if end - start <= SEGMENT && plain + size <= SEGMENT => {
                plain += size;
                seg.push(b);
            }
            _ => {
                start = b.offset as u64;
                plain = size;
                out.push(vec![b]);
            }
        }
    }
    out
}

/// Restores one segment of `pack` (blobs sorted by offset); returns one message per blob
/// that could not be restored.
pub(super) fn restore_segment(w: &Work<'_>, pack: &Id, seg: &[PackedBlob]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(first) = seg.first() else {
        return problems;
    };
    let start = first.offset as u64;
    let end = seg
        .iter()
        .map(|b| b.offset as u64 + b.length as u64)
        .max()
        .unwrap_or(start);
    let data = w.repo.read_pack_range(pack, start, end - start);
    for b in seg {
        let enc = match &data {
            Ok(d) => {
                let lo = (b.offset as u64 - start) as usize;
                d.get(lo..lo + b.length as usize).ok_or_else(|| {
                    format!(
                        "the pack ends before the blob does (truncated: {} of the {} bytes \
                         from offset {start} are there)",
                        d.len(),
                        end - start
                    )
                })
            }
            Err(e) => Err(e.to_string()),
        };
        let plain = enc.and_then(|enc| open_blob(w.repo.key(), b, enc).map_err(|e| e.to_string()));
        let plain = match plain {
            Ok(p) => Ok(p),
            // A damaged or missing copy: any other pack that holds the blob will do.
            Err(e) => w
                .repo
                .load_blob(&b.id, BlobType::Data)
                .map_err(|_| format!("data blob {} in pack {pack}: {e}", b.id)),
        };
        match plain {
            Ok(p) => write_blob(w, b, &p),
            Err(e) => {
                for t in targets(w, &b.id) {
                    let slot = &w.slots[t.file];
                    slot.damaged(|| e.clone());
                    slot.blob_done(w.progress);
                }
                problems.push(e);
            }
        }
    }
    problems
}

fn targets<'a>(w: &Work<'a>, id: &Id) -> &'a [Target] {
    w.wanted.get(id).map(|v| v.as_slice()).unwrap_or(&[])
}

/// Writes one verified blob everywhere it belongs. A failed write damages only its file.
fn write_blob(w: &Work<'_>, b: &PackedBlob, plain: &[u8]) {
    let zero = plain.iter().all(|&x| x == 0);
    for t in targets(w, &b.id) {
        let slot = &w.slots[t.file];
        if !slot.is_damaged() {
            let written = slot.open().and_then(|f| {
                // set_len left a hole there already: skipping keeps sparse files sparse.
                if zero {
                    Ok(())
                } else {
                    f.write_all_at(plain, t.offset)
                }
            });
            match written {
                Ok(()) => {
                    let n = plain.len() as u64;
                    slot.written.fetch_add(n, Ordering::Relaxed);
                    w.progress.add_bytes(n);
                }
                Err(e) => slot.write_failed(t.offset, &e),
            }
        }
        slot.blob_done(w.progress);
    }
}
