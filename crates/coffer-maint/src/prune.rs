//! Prune: remove the data no snapshot uses. Restic's algorithm (restic 0.12+ `prune`), in
//! three steps:
//!
//! 1. **Plan.** Find the blobs the snapshots use ([`crate::walk`]), then sort every pack into
//!    keep (all blobs used), remove (none used), or repack candidate (some used). Candidates
//!    are repacked, most wasteful first, until the unused space left is under `max_unused`
//!    and within `max_repack_bytes`. Packs in storage that no index names are removed; packs
//!    an index names but storage lacks are dropped from the index if nothing uses them.
//! 2. **Write.** Copy the used blobs of repacked packs into new packs (verified, not
//!    recompressed: the sealed bytes move as they are), then write a new index naming every
//!    kept and new pack, then delete the old index files.
//! 3. **Delete** the removed and repacked packs.
//!
//! Every step writes before it deletes, so a process killed anywhere leaves a valid
//! repository (at worst with extra index entries or unreferenced packs, which the next prune
//! removes). The caller holds an exclusive lock for the whole run, which is what makes
//! deleting "unreferenced" packs safe: no backup can be writing one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use coffer_repo::backend::FileType;
use coffer_repo::index::{IndexBlob, IndexPack};
use coffer_repo::lock::LockGuard;
use coffer_repo::pack::{open_blob, BlobType, PackedBlob};
use coffer_repo::{Id, Packer, RepoError, Repository, DEFAULT_PACK_SIZE};
use parking_lot::Mutex;
use serde::Serialize;

use crate::error::{MaintError, Result};
use crate::progress::Progress;
use crate::util::{remove_files, write_index};
use crate::walk::used_blobs;

/// How much unused space may stay in the repository after prune.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxUnused {
    /// A percentage of the used size (restic's default is 5%).
    Percent(f64),
    /// An absolute number of bytes.
    Bytes(u64),
    /// Never repack for space (only fully unused packs go).
    Unlimited,
}

impl MaxUnused {
    /// Parses `5%`, `0`, `200M`, `1G` or `unlimited`.
    pub fn parse(s: &str) -> Result<MaxUnused> {
        let s = s.trim();
        if s == "unlimited" {
            return Ok(MaxUnused::Unlimited);
        }
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| MaintError::Usage(format!("invalid percentage {s:?}")))?;
            if !(0.0..100.0).contains(&v) {
                return Err(MaintError::Usage(format!(
                    "max-unused {s} must be at least 0% and below 100%"
                )));
            }
            return Ok(MaxUnused::Percent(v));
        }
        parse_size(s).map(MaxUnused::Bytes)
    }

    fn limit(&self, used: u64) -> u64 {
        match *self {
            // As restic: unused may be p% of the repository after prune, so of used+unused.
            MaxUnused::Percent(p) => (p / (100.0 - p) * used as f64) as u64,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Unlimited => u64::MAX,
        }
    }
}

/// Parses a size (see [`coffer_config::units::parse_size`]).
pub fn parse_size(s: &str) -> Result<u64> {
    coffer_config::units::parse_size(s).map_err(MaintError::Usage)
}

/// Options of a prune run.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Unused space allowed to remain.
    pub max_unused: MaxUnused,
    /// Upper bound of bytes to repack (`None`: no bound).
    pub max_repack_bytes: Option<u64>,
    /// Plan and report only.
    pub dry_run: bool,
    /// Packs uploaded at once while repacking.
    pub upload_threads: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: MaxUnused::Percent(5.0),
            max_repack_bytes: None,
            dry_run: false,
            upload_threads: 2,
        }
    }
}

/// Counts and sizes of one class of blobs or packs.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Amount {
    /// How many.
    pub count: u64,
    /// Bytes as stored.
    pub bytes: u64,
}

impl Amount {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// What prune found and did; serialized for `--json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneStats {
    /// Snapshots whose data is kept.
    pub snapshots: u64,
    /// Blobs used by snapshots.
    pub used_blobs: Amount,
    /// Extra copies of used blobs.
    pub duplicate_blobs: Amount,
    /// Blobs no snapshot uses.
    pub unused_blobs: Amount,
    /// Packs kept as they are.
    pub keep_packs: Amount,
    /// Packs whose used blobs are copied into new packs.
    pub repack_packs: Amount,
    /// Packs deleted because nothing in them is used.
    pub remove_packs: Amount,
    /// Packs in storage that no index names (left by interrupted runs).
    pub unreferenced_packs: Amount,
    /// Packs an index names that storage lacks (dropped from the index).
    pub missing_packs: u64,
    /// Used blobs copied by repacking.
    pub repacked_blobs: Amount,
    /// Unused bytes that stay (in kept packs).
    pub unused_after: u64,
    /// Pack bytes before.
    pub total_before: u64,
    /// Pack bytes after (estimate in a dry run).
    pub total_after: u64,
    /// Bytes freed (`total_before - total_after`).
    pub bytes_freed: u64,
    /// New packs written.
    pub packs_written: u64,
    /// Index files written.
    pub index_files_written: u64,
    /// Index files deleted.
    pub index_files_deleted: u64,
    /// True when nothing was changed (dry run).
    pub dry_run: bool,
}

/// A plan, computed without changing anything.
pub struct PrunePlan {
    /// The figures.
    pub stats: PruneStats,
    keep: HashSet<Id>,
    repack: Vec<Id>,
    remove: Vec<Id>,
    unreferenced: Vec<Id>,
    /// Used blobs to copy when repacking, by pack.
    copy: HashMap<Id, Vec<PackedBlob>>,
    old_index: Vec<Id>,
    changes_index: bool,
}

struct PackUse {
    used: Amount,
    unused: Amount,
    size: u64,
}

/// Computes what to delete and repack. Needs the index loaded.
pub fn plan(repo: &Repository, opts: &PruneOptions, progress: &Progress) -> Result<PrunePlan> {
    let mut stats = PruneStats {
        dry_run: opts.dry_run,
        ..PruneStats::default()
    };
    // Packs a damaged index file lists would look like leftovers of interrupted backups, and
    // be deleted with the data they hold.
    repo.load_index()?;
    if let Some((id, why)) = repo.damaged_index_files().first() {
        return Err(MaintError::Damaged(format!(
            "index file {} cannot be read ({why}), so prune cannot know which packs are in use; \
             run `coffer repair index` first",
            id.short()
        )));
    }
    progress.phase("listing packs", 0, 0);
    let old_index = repo.backend().list_ids(FileType::Index)?;
    let stored: HashMap<Id, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|f| f.name.parse::<Id>().ok().map(|id| (id, f.size)))
        .collect();
    stats.total_before = stored.values().sum();

    progress.phase("finding used blobs", 0, 0);
    let (snaps, damaged) = repo.snapshots_and_damage()?;
    // A damaged snapshot file may refer to any pack: pruning now could delete its data.
    if let Some(d) = damaged.first() {
        return Err(MaintError::Damaged(format!(
            "{} snapshot file(s) cannot be read (snapshot {}: {}), so prune cannot know which data they use; \
             remove them first with `coffer repair snapshots --forget` (or `coffer forget {}`)",
            damaged.len(),
            d.id.short(),
            d.reason,
            d.id.short()
        )));
    }
    stats.snapshots = snaps.len() as u64;
    let used = used_blobs(repo, &snaps, &|| progress.cancelled())?;

    progress.phase("planning", 0, 0);
    let idx = repo.index();
    let mut missing_used = Vec::new();
    for (set, kind) in [(&used.trees, BlobType::Tree), (&used.data, BlobType::Data)] {
        for id in set.iter() {
            if !idx.has(id, kind) {
                missing_used.push((*id, kind));
            }
        }
    }
    if !missing_used.is_empty() {
        let (id, kind) = missing_used[0];
        return Err(MaintError::Damaged(format!(
            "{} blob(s) used by snapshots are not in any index (first: {kind} blob {id}); prune \
             stops so that nothing more is lost: run `coffer check --read-data`, then \
             `coffer repair index` and `coffer repair snapshots`",
            missing_used.len()
        )));
    }

    // First pass: which copy of each used blob is the one we keep. A copy in a pack that
    // holds nothing unused is preferred, so that duplicates do not force repacks.
    let mut per_pack: HashMap<Id, Vec<PackedBlob>> = HashMap::new();
    for loc in idx.iter() {
        per_pack.entry(loc.pack).or_default().push(loc.blob);
    }
    let is_used = |b: &PackedBlob| match b.kind {
        BlobType::Tree => used.trees.contains(&b.id),
        BlobType::Data => used.data.contains(&b.id),
    };
    let mut chosen: HashMap<(Id, BlobType), Id> = HashMap::new();
    let mut clean_first: Vec<(&Id, &Vec<PackedBlob>)> = per_pack.iter().collect();
    clean_first.sort_by_key(|(id, blobs)| (blobs.iter().filter(|b| !is_used(b)).count(), **id));
    for (pack, blobs) in &clean_first {
        if !stored.contains_key(pack) {
            continue;
        }
        for b in blobs.iter() {
            if is_used(b) {
                chosen.entry((b.id, b.kind)).or_insert(**pack);
            }
        }
    }
    for (set, kind) in [(&used.trees, BlobType::Tree), (&used.data, BlobType::Data)] {
        if let Some(id) = set.iter().find(|id| !chosen.contains_key(&(**id, kind))) {
            return Err(MaintError::Damaged(format!(
                "{kind} blob {id} is used, but every pack holding it is missing from storage; \
                 run `coffer repair index`, then `coffer repair snapshots`"
            )));
        }
    }

    // Second pass: classify packs.
    let mut usage: Vec<(Id, PackUse)> = Vec::new();
    let mut keep = HashSet::new();
    let mut remove = Vec::new();
    for (pack, blobs) in &per_pack {
        let Some(&size) = stored.get(pack) else {
            stats.missing_packs += 1;
            continue;
        };
        let mut u = PackUse {
            used: Amount::default(),
            unused: Amount::default(),
            size,
        };
        for b in blobs {
            let len = b.length as u64;
            if is_used(b) && chosen.get(&(b.id, b.kind)) == Some(pack) {
                u.used.add(len);
                stats.used_blobs.add(len);
            } else if is_used(b) {
                u.unused.add(len);
                stats.duplicate_blobs.add(len);
            } else {
                u.unused.add(len);
                stats.unused_blobs.add(len);
            }
        }
        if u.used.count == 0 {
            stats.remove_packs.add(size);
            remove.push(*pack);
        } else if u.unused.count == 0 {
            stats.keep_packs.add(size);
            keep.insert(*pack);
        } else {
            usage.push((*pack, u));
        }
    }
    // A stored pack whose size disagrees with its index entries is suspect; keep it as it is
    // (check reports it) rather than repacking from it.
    let mut unreferenced = Vec::new();
    for (pack, size) in &stored {
        if !per_pack.contains_key(pack) {
            stats.unreferenced_packs.add(*size);
            unreferenced.push(*pack);
        }
    }

    // Repack the most wasteful candidates until the unused space left is small enough.
    usage.sort_by(|a, b| {
        let ra = a.1.unused.bytes as f64 / a.1.size.max(1) as f64;
        let rb = b.1.unused.bytes as f64 / b.1.size.max(1) as f64;
        rb.total_cmp(&ra).then(a.0.cmp(&b.0))
    });
    let mut unused_left: u64 = usage.iter().map(|(_, u)| u.unused.bytes).sum();
    let limit = opts.max_unused.limit(stats.used_blobs.bytes);
    let mut repack_bytes = 0u64;
    let mut repack = Vec::new();
    let mut copy: HashMap<Id, Vec<PackedBlob>> = HashMap::new();
    for (pack, u) in usage {
        let within_budget = opts
            .max_repack_bytes
            .is_none_or(|max| repack_bytes + u.size <= max);
        if unused_left > limit && within_budget {
            unused_left -= u.unused.bytes;
            repack_bytes += u.size;
            stats.repack_packs.add(u.size);
            stats.repacked_blobs.count += u.used.count;
            stats.repacked_blobs.bytes += u.used.bytes;
            let blobs = per_pack[&pack]
                .iter()
                .filter(|b| is_used(b) && chosen.get(&(b.id, b.kind)) == Some(&pack))
                .copied()
                .collect();
            copy.insert(pack, blobs);
            repack.push(pack);
        } else {
            stats.keep_packs.add(u.size);
            keep.insert(pack);
        }
    }
    stats.unused_after = unused_left;
    // Estimate: repacked blobs move into new packs with their own headers.
    let new_packs_bytes = stats.repacked_blobs.bytes
        + stats.repacked_blobs.count * 41
        + stats
            .repacked_blobs
            .bytes
            .div_ceil(DEFAULT_PACK_SIZE as u64)
            * 36;
    stats.total_after = stats.keep_packs.bytes + new_packs_bytes;
    stats.bytes_freed = stats.total_before.saturating_sub(stats.total_after);
    let changes_index = !repack.is_empty() || !remove.is_empty() || stats.missing_packs > 0;
    drop(idx);
    Ok(PrunePlan {
        stats,
        keep,
        repack,
        remove,
        unreferenced,
        copy,
        old_index,
        changes_index,
    })
}

/// Carries out a plan. `lock` is the exclusive lock the caller holds; it is checked before
/// anything is deleted.
pub fn execute(
    repo: &Arc<Repository>,
    mut plan: PrunePlan,
    opts: &PruneOptions,
    lock: &LockGuard,
    progress: &Progress,
) -> Result<PruneStats> {
    if opts.dry_run {
        return Ok(plan.stats);
    }
    let mut new_index_files = 0u64;
    if !plan.repack.is_empty() {
        let packer = Packer::new(Arc::clone(repo), DEFAULT_PACK_SIZE, opts.upload_threads);
        progress.phase(
            "repacking",
            plan.repack.len() as u64,
            plan.stats.repack_packs.bytes,
        );
        let copied: Mutex<HashSet<(Id, BlobType)>> = Mutex::new(HashSet::new());
        repo.parallel_map(&plan.repack, |pack| {
            if progress.cancelled() {
                return Err(RepoError::Invalid("interrupted".into()));
            }
            let bytes = repo.backend().read(FileType::Pack, &pack.to_hex())?;
            for b in &plan.copy[pack] {
                if !copied.lock().insert((b.id, b.kind)) {
                    continue;
                }
                let enc = bytes
                    .get(b.offset as usize..(b.offset + b.length) as usize)
                    .ok_or_else(|| {
                        RepoError::Invalid(format!(
                            "pack {pack} is shorter than its index says; nothing was deleted: \
                             run `coffer check --read-data`"
                        ))
                    })?;
                // Verify before trusting: a damaged blob must not be copied as good.
                let plain = open_blob(repo.key(), b, enc).map_err(|e| RepoError::Blob {
                    id: b.id,
                    kind: b.kind,
                    pack: *pack,
                    source: Box::new(e),
                })?;
                packer.add_sealed(b.id, b.kind, enc, plain.len(), b.uncompressed_length)?;
            }
            progress.add(1, bytes.len() as u64);
            Ok(())
        })
        .map_err(|e| match e {
            RepoError::Invalid(m) if m == "interrupted" => MaintError::Interrupted,
            e => e.into(),
        })?;
        let ps = packer.flush()?;
        plan.stats.packs_written = ps.packs;
        new_index_files += ps.index_files;
    }

    if plan.changes_index {
        progress.phase("writing index", 0, 0);
        lock.verify()?;
        let idx = repo.index();
        let mut packs: Vec<IndexPack> = Vec::new();
        let mut pos: HashMap<Id, usize> = HashMap::new();
        let mut seen: HashSet<(Id, Id, u32)> = HashSet::new();
        for loc in idx.iter() {
            if !plan.keep.contains(&loc.pack)
                || !seen.insert((loc.pack, loc.blob.id, loc.blob.offset))
            {
                continue;
            }
            let i = *pos.entry(loc.pack).or_insert_with(|| {
                packs.push(IndexPack {
                    id: loc.pack,
                    blobs: Vec::new(),
                });
                packs.len() - 1
            });
            packs[i].blobs.push(IndexBlob {
                id: loc.blob.id,
                kind: loc.blob.kind,
                offset: loc.blob.offset,
                length: loc.blob.length,
                uncompressed_length: loc.blob.uncompressed_length,
            });
        }
        drop(idx);
        let written = write_index(repo, packs, &plan.old_index)?;
        new_index_files += written.len() as u64;
        progress.phase("deleting old index files", plan.old_index.len() as u64, 0);
        remove_files(repo, FileType::Index, &plan.old_index, progress)?;
        plan.stats.index_files_deleted = plan.old_index.len() as u64;
    }
    plan.stats.index_files_written = new_index_files;

    let mut doomed = plan.remove;
    doomed.extend(plan.repack);
    doomed.extend(plan.unreferenced);
    if !doomed.is_empty() {
        lock.verify()?;
        progress.phase("deleting packs", doomed.len() as u64, 0);
        remove_files(repo, FileType::Pack, &doomed, progress)?;
    }
    plan.stats.total_after = repo
        .backend()
        .list(FileType::Pack)?
        .iter()
        .map(|f| f.size)
        .sum();
    plan.stats.bytes_freed = plan
        .stats
        .total_before
        .saturating_sub(plan.stats.total_after);
    Ok(plan.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_limits() {
        assert_eq!(parse_size("16M").unwrap(), 16 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("200").unwrap(), 200);
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        assert!(parse_size("5X").is_err());
        assert_eq!(MaxUnused::parse("5%").unwrap(), MaxUnused::Percent(5.0));
        assert_eq!(MaxUnused::parse("unlimited").unwrap(), MaxUnused::Unlimited);
        assert_eq!(MaxUnused::parse("1M").unwrap(), MaxUnused::Bytes(1 << 20));
        assert!(MaxUnused::parse("100%").is_err());
        // 5% of the total after prune: 5/95 of what is used.
        assert_eq!(MaxUnused::Percent(5.0).limit(950), 50);
        assert_eq!(MaxUnused::Percent(0.0).limit(950), 0);
    }
}
