//! Repair, as restic 0.16+ defines it, so that what survives damage restores:
//!
//! - [`repair_index`] rebuilds the index from the packs themselves. By default every pack is
//!   read whole and every blob decrypted and hashed; blobs that fail are left out, and the
//!   good blobs of a damaged pack are copied into a new pack (restic's `repair packs`
//!   salvage), so the damaged pack ends up unreferenced and a later `check --read-data`
//!   passes. A pack whose header cannot be read (truncated, or bytes appended) is read where
//!   the old index puts its blobs, or scanned for them when the index is gone too: repair
//!   never drops a blob that still decrypts and hashes. `headers_only` is restic's fast mode: packs whose size matches the index keep
//!   their entries, the others are described from their headers.
//! - [`repair_snapshots`] rewrites each snapshot that needs data the index lacks: files with
//!   missing content are dropped, directories whose tree is lost become empty. The new
//!   snapshot records the old one as `original`; the old one is removed only with `forget`.
//!
//! Both run under an exclusive lock held by the caller and write before they delete.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use coffer_repo::backend::FileType;
use coffer_repo::index::IndexPack;
use coffer_repo::pack::{open_blob, parse_header, read_header, BlobType, PackedBlob};
use coffer_repo::pack_scan::scan_pack;
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::tree::{NodeType, Tree};
use coffer_repo::{DamagedSnapshot, Id, Packer, RepoError, Repository, DEFAULT_PACK_SIZE};
use parking_lot::Mutex;
use serde::Serialize;

use crate::error::{MaintError, Result};
use crate::progress::Progress;
use crate::util::{header_size, remove_files, write_index};

/// Options of `repair index`.
#[derive(Clone, Debug, Default)]
pub struct RepairIndexOptions {
    /// Trust size-matching index entries and read only headers (no blob verification).
    pub headers_only: bool,
    /// Report only.
    pub dry_run: bool,
}

/// What `repair index` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairIndexReport {
    /// Packs in storage.
    pub packs: u64,
    /// Packs read (whole or header).
    pub packs_read: u64,
    /// Blobs in the new index.
    pub blobs_indexed: u64,
    /// Blobs dropped because they failed to decrypt or hash.
    pub blobs_dropped: u64,
    /// Packs whose header could not be read (all their blobs are lost).
    pub unreadable_packs: Vec<Id>,
    /// Damaged packs whose good blobs were copied to new packs.
    pub salvaged_packs: Vec<Id>,
    /// Blobs of packs with an unreadable header, found where the old index put them.
    pub blobs_found_by_index: u64,
    /// Blobs of packs with an unreadable header and no index entries, found by scanning.
    pub blobs_found_by_scan: u64,
    /// Bytes a scan could not read past (damage hides where the next blob starts): the blobs
    /// there are lost, though not counted in `blobs_dropped`.
    pub bytes_unscanned: u64,
    /// New packs written by salvaging.
    pub packs_written: u64,
    /// Old index files replaced.
    pub index_files_replaced: u64,
    /// New index files.
    pub index_files_written: u64,
}

/// Where a damaged pack's blobs were found when its header could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FoundBy {
    Index,
    /// Scanned; this many bytes after the last blob found could not be read.
    Scan(u64),
}

enum PackOutcome {
    /// Index these entries for the pack as it is.
    Good(Vec<PackedBlob>),
    /// The pack is damaged; these blobs (with their sealed bytes) are good.
    Salvage(Vec<(PackedBlob, Vec<u8>)>, usize, Option<FoundBy>),
    /// Nothing can be read.
    Unreadable(String),
}

fn read_pack_header(repo: &Repository, pack: &Id, size: u64) -> Result<Vec<PackedBlob>, String> {
    let name = pack.to_hex();
    let tail = size.min(64 << 10);
    let buf = repo
        .backend()
        .read_range(FileType::Pack, &name, size - tail, tail)
        .map_err(|e| e.to_string())?;
    if buf.len() < 4 {
        return Err("pack is too short".into());
    }
    let hlen = u32::from_le_bytes(
        buf[buf.len() - 4..]
            .try_into()
            .expect("a slice of the last 4 bytes; buf has at least 4, checked above"),
    ) as u64;
    if hlen + 4 > size {
        return Err(format!("header length {hlen} exceeds the pack size"));
    }
    let enc = if hlen + 4 <= tail {
        buf[(tail - 4 - hlen) as usize..buf.len() - 4].to_vec()
    } else {
        repo.backend()
            .read_range(FileType::Pack, &name, size - 4 - hlen, hlen)
            .map_err(|e| e.to_string())?
            .to_vec()
    };
    let plain = repo.key().decrypt(&enc).map_err(|e| e.to_string())?;
    let blobs = parse_header(&plain).map_err(|e| e.to_string())?;
    if let Some(last) = blobs.last() {
        if last.offset as u64 + last.length as u64 != size - 4 - hlen {
            return Err("blobs do not end where the header starts".into());
        }
    }
    Ok(blobs)
}

/// Reads a pack whole and keeps every blob that decrypts and hashes. Where the blobs are is
/// taken from the pack's header; when that cannot be read (a truncated or appended pack),
/// from the old index's entries for the pack (`known`); when there are none either, from a
/// scan of the pack for objects that authenticate.
fn verify_pack(repo: &Repository, pack: &Id, known: &[PackedBlob]) -> PackOutcome {
    let bytes = match repo.backend().read(FileType::Pack, &pack.to_hex()) {
        Ok(b) => b,
        Err(e) => return PackOutcome::Unreadable(e.to_string()),
    };
    let (candidates, found_by) = match read_header(repo.key(), &bytes) {
        Ok(h) => (h, None),
        Err(e) if !known.is_empty() => {
            tracing::warn!(pack = %pack, "header unreadable ({e}): reading blobs where the old index puts them");
            (known.to_vec(), Some(FoundBy::Index))
        }
        Err(e) => {
            tracing::warn!(pack = %pack, "header unreadable ({e}) and no index entries: scanning the pack for blobs");
            let s = scan_pack(repo.key(), &bytes);
            if s.blobs.is_empty() {
                return PackOutcome::Unreadable(format!("{e}; a scan found no blob"));
            }
            if s.unread > 0 {
                tracing::warn!(pack = %pack, "the last {} bytes could not be read by the scan", s.unread);
            }
            (s.blobs, Some(FoundBy::Scan(s.unread)))
        }
    };
    let hash_ok = Id::hash(&bytes) == *pack;
    let mut good = Vec::new();
    let mut bad = 0;
    for b in &candidates {
        let enc = bytes.get(b.offset as usize..b.offset as usize + b.length as usize);
        match enc.map(|enc| open_blob(repo.key(), b, enc)) {
            Some(Ok(_)) => good.push(*b),
            Some(Err(e)) => {
                tracing::warn!(pack = %pack, blob = %b.id, error = %e, "dropping damaged blob");
                bad += 1;
            }
            None => {
                tracing::warn!(pack = %pack, blob = %b.id, "dropping blob past the end of the pack");
                bad += 1;
            }
        }
    }
    if bad == 0 && hash_ok && found_by.is_none() {
        return PackOutcome::Good(good);
    }
    let sealed = good
        .into_iter()
        .map(|b| {
            let enc = bytes[b.offset as usize..(b.offset + b.length) as usize].to_vec();
            (b, enc)
        })
        .collect();
    PackOutcome::Salvage(sealed, bad, found_by)
}

/// Rebuilds the index from the packs in storage.
pub fn repair_index(
    repo: &Arc<Repository>,
    opts: &RepairIndexOptions,
    progress: &Progress,
) -> Result<RepairIndexReport> {
    let mut report = RepairIndexReport::default();
    progress.phase("listing packs", 0, 0);
    let old_index = repo.backend().list_ids(FileType::Index)?;
    let mut stored: Vec<(Id, u64)> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|f| f.name.parse::<Id>().ok().map(|id| (id, f.size)))
        .collect();
    stored.sort();
    report.packs = stored.len() as u64;

    // What the current index says: trusted in headers-only mode, and where to look for the
    // blobs of a pack whose header is unreadable.
    let mut known: HashMap<Id, Vec<PackedBlob>> = HashMap::new();
    for (id, e) in repo.load_index_tolerant()? {
        tracing::warn!(index = %id, error = %e, "ignoring unreadable index file");
    }
    for loc in repo.index().iter() {
        known.entry(loc.pack).or_default().push(loc.blob);
    }
    for blobs in known.values_mut() {
        blobs.sort_by_key(|b| b.offset);
        blobs.dedup_by_key(|b| b.offset);
    }
    let known_of = |pack: &Id| known.get(pack).map(Vec::as_slice).unwrap_or_default();

    let total: u64 = stored.iter().map(|(_, s)| s).sum();
    progress.phase("reading packs", stored.len() as u64, total);
    let outcomes = repo.parallel_map(&stored, |(pack, size)| {
        if progress.cancelled() {
            return Err(RepoError::Invalid("interrupted".into()));
        }
        let out = if opts.headers_only {
            match known.get(pack) {
                Some(b)
                    if b.iter().map(|x| x.length as u64).sum::<u64>() + header_size(b) == *size =>
                {
                    PackOutcome::Good(b.clone())
                }
                // A header that cannot be read sends the pack to a full read.
                _ => match read_pack_header(repo, pack, *size) {
                    Ok(h) => PackOutcome::Good(h),
                    Err(_) => verify_pack(repo, pack, known_of(pack)),
                },
            }
        } else {
            verify_pack(repo, pack, known_of(pack))
        };
        progress.add(1, *size);
        Ok(out)
    });
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(RepoError::Invalid(m)) if m == "interrupted" => return Err(MaintError::Interrupted),
        Err(e) => return Err(e.into()),
    };
    report.packs_read = stored.len() as u64;

    let mut packs: Vec<IndexPack> = Vec::new();
    let mut salvage: Vec<(PackedBlob, Vec<u8>)> = Vec::new();
    let mut indexed: HashSet<(Id, BlobType)> = HashSet::new();
    for ((pack, _), out) in stored.iter().zip(outcomes) {
        match out {
            PackOutcome::Good(blobs) => {
                report.blobs_indexed += blobs.len() as u64;
                indexed.extend(blobs.iter().map(|b| (b.id, b.kind)));
                packs.push(IndexPack::new(*pack, &blobs));
            }
            PackOutcome::Salvage(good, bad, found_by) => {
                report.blobs_dropped += bad as u64;
                match found_by {
                    Some(FoundBy::Index) => report.blobs_found_by_index += good.len() as u64,
                    Some(FoundBy::Scan(unread)) => {
                        report.blobs_found_by_scan += good.len() as u64;
                        report.bytes_unscanned += unread;
                    }
                    None => {}
                }
                report.salvaged_packs.push(*pack);
                salvage.extend(good);
            }
            PackOutcome::Unreadable(why) => {
                tracing::warn!(pack = %pack, "pack cannot be read, its blobs are lost: {why}");
                report.unreadable_packs.push(*pack);
            }
        }
    }
    if opts.dry_run {
        report.blobs_indexed += salvage.len() as u64;
        return Ok(report);
    }

    // Salvaged blobs go into new packs; their index files come from the packer.
    if !salvage.is_empty() {
        progress.phase("salvaging blobs", salvage.len() as u64, 0);
        let packer = Packer::new(Arc::clone(repo), DEFAULT_PACK_SIZE, 2);
        for (b, enc) in &salvage {
            if indexed.insert((b.id, b.kind)) {
                let plain_len = b
                    .uncompressed_length
                    .map(|n| n as usize)
                    .unwrap_or(enc.len() - 32);
                packer.add_sealed(b.id, b.kind, enc, plain_len, b.uncompressed_length)?;
                report.blobs_indexed += 1;
            }
            progress.add(1, 0);
        }
        let ps = packer.flush()?;
        report.packs_written = ps.packs;
        report.index_files_written += ps.index_files;
    }
    progress.phase("writing index", 0, 0);
    let written = write_index(repo, packs, &old_index)?;
    report.index_files_written += written.len() as u64;
    // The packer's index files (if any) are new too: keep them.
    remove_files(repo, FileType::Index, &old_index, progress)?;
    report.index_files_replaced = old_index.len() as u64;
    repo.reset_index();
    Ok(report)
}

/// Options of `repair snapshots`.
#[derive(Clone, Debug, Default)]
pub struct RepairSnapshotsOptions {
    /// Remove the damaged originals once their repaired versions are saved.
    pub forget: bool,
    /// Report only.
    pub dry_run: bool,
    /// Tag added to repaired snapshots.
    pub tag: Option<String>,
}

/// One snapshot's repair.
#[derive(Clone, Debug, Serialize)]
pub struct RepairedSnapshot {
    /// The damaged snapshot.
    pub snapshot: Id,
    /// Its repaired version (None in a dry run, or when nothing of it could be saved).
    pub new_snapshot: Option<Id>,
    /// Files dropped because their data is lost.
    pub dropped_files: Vec<String>,
    /// Directories emptied because their tree is lost.
    pub emptied_dirs: Vec<String>,
    /// Whether the original was removed.
    pub forgotten: bool,
}

/// What `repair snapshots` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepairSnapshotsReport {
    /// Snapshots looked at.
    pub snapshots: u64,
    /// Snapshots that needed repair.
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshot files that cannot be read (nothing of them can be saved).
    pub unreadable: Vec<DamagedSnapshot>,
    /// Whether those were removed (`forget`, not a dry run).
    pub unreadable_removed: bool,
}

/// A rewritten tree: its new id, and the dropped files and emptied directories below it.
type Rewritten = (Id, Vec<String>, Vec<String>);

struct Rewriter<'a> {
    repo: &'a Repository,
    packer: Option<&'a Packer>,
    // Tree id -> rewritten id (same id when unchanged), with what was dropped below it.
    memo: Mutex<HashMap<Id, Rewritten>>,
    empty_tree: Mutex<Option<Id>>,
}

impl Rewriter<'_> {
    fn save_tree(&self, t: &Tree) -> Result<Id> {
        let blob = t.to_blob();
        match self.packer {
            Some(p) => Ok(p.save_blob(BlobType::Tree, &blob)?.0),
            None => Ok(Id::hash(&blob)),
        }
    }

    fn empty(&self) -> Result<Id> {
        let mut e = self.empty_tree.lock();
        if let Some(id) = *e {
            return Ok(id);
        }
        let id = self.save_tree(&Tree::default())?;
        *e = Some(id);
        Ok(id)
    }

    /// Rewrites a tree; returns its new id and the dropped file and emptied directory paths
    /// below it (relative, starting with `/`), or None when the tree itself is lost.
    fn rewrite(&self, id: &Id) -> Result<Option<Rewritten>> {
        if let Some(r) = self.memo.lock().get(id) {
            return Ok(Some(r.clone()));
        }
        let mut t = match self.repo.load_tree(id) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(tree = %id, error = %e, "tree lost");
                return Ok(None);
            }
        };
        let idx_has = |b: &Id| self.repo.index().has(b, BlobType::Data);
        let mut dropped = Vec::new();
        let mut emptied = Vec::new();
        let mut changed = false;
        let mut nodes = Vec::with_capacity(t.nodes.len());
        for mut n in std::mem::take(&mut t.nodes) {
            let name = n.name_lossy();
            if n.kind == NodeType::File {
                if let Some(c) = &n.content {
                    if !c.iter().all(idx_has) {
                        dropped.push(format!("/{name}"));
                        changed = true;
                        continue;
                    }
                }
            }
            if let Some(sub) = n.subtree {
                match self.rewrite(&sub)? {
                    Some((new, d, e)) => {
                        dropped.extend(d.into_iter().map(|p| format!("/{name}{p}")));
                        emptied.extend(e.into_iter().map(|p| format!("/{name}{p}")));
                        if new != sub {
                            n.subtree = Some(new);
                            changed = true;
                        }
                    }
                    None => {
                        tracing::warn!(
                            "directory {name}: tree lost, replaced with an empty directory"
                        );
                        emptied.push(format!("/{name}/"));
                        n.subtree = Some(self.empty()?);
                        changed = true;
                    }
                }
            }
            nodes.push(n);
        }
        t.nodes = nodes;
        let new = if changed { self.save_tree(&t)? } else { *id };
        let r = (new, dropped, emptied);
        self.memo.lock().insert(*id, r.clone());
        Ok(Some(r))
    }
}

/// Rewrites snapshots that need data the index lacks.
pub fn repair_snapshots(
    repo: &Arc<Repository>,
    snaps: &[SnapshotWithId],
    unreadable: &[DamagedSnapshot],
    opts: &RepairSnapshotsOptions,
    progress: &Progress,
) -> Result<RepairSnapshotsReport> {
    let mut report = RepairSnapshotsReport {
        snapshots: (snaps.len() + unreadable.len()) as u64,
        unreadable: unreadable.to_vec(),
        ..Default::default()
    };
    let packer = (!opts.dry_run).then(|| Packer::new(Arc::clone(repo), DEFAULT_PACK_SIZE, 1));
    let rw = Rewriter {
        repo,
        packer: packer.as_ref(),
        memo: Mutex::new(HashMap::new()),
        empty_tree: Mutex::new(None),
    };
    progress.phase("checking snapshots", snaps.len() as u64, 0);
    let mut pending = Vec::new();
    for s in snaps {
        if progress.cancelled() {
            return Err(MaintError::Interrupted);
        }
        progress.add(1, 0);
        let (new_root, dropped, emptied) = match rw.rewrite(&s.snap.tree)? {
            Some(r) => r,
            None => {
                tracing::warn!(snapshot = %s.id, "root tree lost: nothing of this snapshot can be saved");
                (rw.empty()?, Vec::new(), vec!["/".to_string()])
            }
        };
        if new_root == s.snap.tree {
            continue;
        }
        pending.push((s, new_root, dropped, emptied));
    }
    // Trees first, then snapshots, then (with forget) the originals.
    if let Some(p) = &packer {
        p.flush()?;
    }
    for (s, new_root, dropped, emptied) in pending {
        let root_lost = emptied.first().is_some_and(|p| p == "/");
        let mut new_snapshot = None;
        let mut forgotten = false;
        if !opts.dry_run {
            if !root_lost {
                let mut snap = s.snap.clone();
                snap.tree = new_root;
                snap.original = Some(s.snap.original.unwrap_or(s.id));
                if let Some(t) = &opts.tag {
                    if !snap.tags.contains(t) {
                        snap.tags.push(t.clone());
                    }
                }
                new_snapshot = Some(repo.save_snapshot(&snap)?);
            }
            if opts.forget {
                repo.remove_snapshots(&[s.id])?;
                forgotten = true;
            }
        }
        report.repaired.push(RepairedSnapshot {
            snapshot: s.id,
            new_snapshot,
            dropped_files: dropped,
            emptied_dirs: emptied,
            forgotten,
        });
    }
    // A snapshot file that does not decrypt or parse holds nothing to save: what it referred
    // to is unknown, and it blocks prune until it is gone.
    if opts.forget && !opts.dry_run && !unreadable.is_empty() {
        let ids: Vec<Id> = unreadable.iter().map(|d| d.id).collect();
        repo.remove_snapshots(&ids)?;
        report.unreadable_removed = true;
    }
    Ok(report)
}
