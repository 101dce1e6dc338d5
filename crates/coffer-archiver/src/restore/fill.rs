//! Filling files with their data: every data blob of the chosen files is mapped to the
//! offsets that need it, packs are cut into segments and the segments restored on several
//! workers ([`super::packs`]).
//!
//! A disk that fills up costs only the files that do not fit. Segments of many files are
//! written at once, so when a large file fills the disk, small files whose turn came at the
//! same moment fail too. After the first pass, every file that failed for lack of space is
//! removed (giving its space back) and restored again on its own, smallest first, until one
//! still does not fit: the larger ones would not either.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use coffer_repo::pack::{BlobType, PackedBlob};
use coffer_repo::tree::Node;
use coffer_repo::{Id, Repository};

use super::packs::{self, FileSlot, Target, Work};
use crate::progress::Progress;

/// One slot per file of `files` (placed under `target` by `dest`), sized from the index. A
/// file with a blob the index does not know is damaged from the start.
pub(super) fn slots(
    repo: &Repository,
    files: &[(PathBuf, Node)],
    dest: impl Fn(&Path) -> PathBuf,
) -> Vec<FileSlot> {
    let idx = repo.index();
    files
        .iter()
        .map(|(p, node)| {
            let content = node.content.as_deref().unwrap_or_default();
            let mut size = 0u64;
            let mut missing = None;
            for id in content {
                match idx.lookup(id, BlobType::Data) {
                    Some(loc) => size += loc.blob.data_length() as u64,
                    None => {
                        missing = Some(format!("data blob {id} is not in the index"));
                        break;
                    }
                }
            }
            let blobs = if missing.is_some() { 0 } else { content.len() };
            let slot = FileSlot::new(dest(p), node.size.max(size), blobs);
            if let Some(m) = missing {
                slot.damaged(|| m);
            }
            slot
        })
        .collect()
}

/// Restores the data of files into their slots.
pub(super) struct Filler<'a> {
    pub repo: &'a Repository,
    pub files: &'a [(PathBuf, Node)],
    pub slots: &'a [FileSlot],
    pub progress: &'a Progress,
    pub threads: usize,
    pub cancel: &'a AtomicBool,
}

impl Filler<'_> {
    /// Restores every file that is not damaged already, then retries those that failed for
    /// lack of space.
    pub fn fill_all(&self) {
        self.fill((0..self.slots.len()).filter(|i| !self.slots[*i].is_damaged()));
        self.retry_out_of_space();
    }

    fn blobs(&self, file: usize) -> &[Id] {
        self.files[file].1.content.as_deref().unwrap_or_default()
    }

    /// Restores the data of the files `which`, a pack's blobs read once for all of them.
    fn fill(&self, which: impl Iterator<Item = usize>) {
        let mut wanted: HashMap<Id, Vec<Target>> = HashMap::new();
        let mut pack_order: Vec<Id> = Vec::new();
        let mut packs: HashMap<Id, Vec<PackedBlob>> = HashMap::new();
        {
            let idx = self.repo.index();
            for file in which {
                let mut offset = 0u64;
                for id in self.blobs(file) {
                    let Some(loc) = idx.lookup(id, BlobType::Data) else {
                        // `slots` found every blob: only a changed index gets here.
                        let slot = &self.slots[file];
                        slot.damaged(|| format!("data blob {id} is not in the index"));
                        slot.blob_done(self.progress);
                        continue;
                    };
                    let targets = wanted.entry(*id).or_default();
                    if targets.is_empty() {
                        packs
                            .entry(loc.pack)
                            .or_insert_with(|| {
                                pack_order.push(loc.pack);
                                Vec::new()
                            })
                            .push(loc.blob);
                    }
                    targets.push(Target { file, offset });
                    offset += loc.blob.data_length() as u64;
                }
            }
        }
        let units: Vec<(Id, Vec<PackedBlob>)> = pack_order
            .iter()
            .filter_map(|id| packs.remove(id).map(|b| (*id, b)))
            .flat_map(|(id, blobs)| packs::segments(blobs).into_iter().map(move |s| (id, s)))
            .collect();
        let work = Work {
            repo: self.repo,
            wanted: &wanted,
            slots: self.slots,
            progress: self.progress,
        };
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..self.threads.clamp(1, units.len().max(1)) {
                scope.spawn(|| loop {
                    if self.cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((pack, seg)) = units.get(i) else {
                        return;
                    };
                    for e in packs::restore_segment(&work, pack, seg) {
                        tracing::warn!("{e}");
                    }
                });
            }
        });
    }

    fn retry_out_of_space(&self) {
        let mut full: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.slots[*i].no_space.load(Ordering::Relaxed))
            .collect();
        if full.is_empty() {
            return;
        }
        // All of them first: any of them may be what filled the disk.
        for &i in &full {
            let slot = &self.slots[i];
            slot.handle.lock().take();
            let _ = std::fs::remove_file(&slot.path);
        }
        full.sort_by_key(|i| self.slots[*i].size);
        tracing::info!(
            files = full.len(),
            "the disk filled up: restoring the files that did not fit again, smallest first"
        );
        for i in full {
            if self.cancel.load(Ordering::Relaxed) {
                return;
            }
            let slot = &self.slots[i];
            let lost = slot.reset(self.blobs(i).len());
            self.progress.bytes_done.fetch_sub(
                lost.min(self.progress.bytes_done.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            self.fill(std::iter::once(i));
            if slot.no_space.load(Ordering::Relaxed) {
                slot.handle.lock().take();
                let _ = std::fs::remove_file(&slot.path);
                break;
            }
        }
    }
}
