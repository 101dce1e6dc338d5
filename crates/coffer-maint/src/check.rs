//! Check: the first two of coffer's three verification levels (the third is
//! `restore --verify`).
//!
//! - **Structure** (always): every index file decrypts; every pack an index names exists with
//!   the size its entries imply; every snapshot decrypts; every tree of every snapshot loads
//!   (which also verifies its hash); every data blob a file needs is indexed, and the sizes
//!   add up. Packs no index names are reported as a hint, as restic does: they are what an
//!   interrupted backup leaves, and prune removes them.
//! - **Data** (`read_data`): download packs (all or a subset), check each pack's hash against
//!   its name, its header against the index, and decrypt, decompress and hash every blob.
//!
//! When something is damaged, the report names the damaged packs and blobs and, by walking
//! the snapshots again, every snapshot and file that depends on them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use coffer_repo::backend::FileType;
use coffer_repo::index::PackOrder;
use coffer_repo::pack::{header_start, open_blob, read_header_tail, BlobType, PackedBlob};
use coffer_repo::snapshot::{Snapshot, SnapshotWithId};
use coffer_repo::{Id, IdHasher, RepoError, Repository};
use parking_lot::Mutex;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{MaintError, Result};
use crate::progress::Progress;
use crate::util::header_size;
use crate::walk::walk_trees;

/// Which packs `--read-data-subset` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    /// Every pack.
    All,
    /// Group `n` of `t` (1-based), chosen from the pack id, so that running 1/t .. t/t on
    /// successive days reads everything once.
    Group {
        /// Which group.
        n: u32,
        /// Of how many.
        t: u32,
    },
    /// A random share of the packs.
    Percent(f64),
    /// Random packs up to about this many bytes.
    Bytes(u64),
}

impl Subset {
    /// Parses `n/t`, `x%` or a size like `500M`.
    pub fn parse(s: &str) -> Result<Subset> {
        let s = s.trim();
        let bad = |why: &str| {
            MaintError::Usage(format!(
                "invalid --read-data-subset {s:?}: {why} (use n/t such as 1/7, a percentage such as 10%, or a size such as 2G)"
            ))
        };
        if let Some((n, t)) = s.split_once('/') {
            let n: u32 = n.trim().parse().map_err(|_| bad("n is not a number"))?;
            let t: u32 = t.trim().parse().map_err(|_| bad("t is not a number"))?;
            if t == 0 || n == 0 || n > t {
                return Err(bad("n must be between 1 and t"));
            }
            return Ok(Subset::Group { n, t });
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad("not a percentage"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(bad("the percentage must be above 0 and at most 100"));
            }
            return Ok(Subset::Percent(p));
        }
        crate::prune::parse_size(s)
            .map(Subset::Bytes)
            .map_err(|_| bad("not a size"))
    }

    fn select(&self, mut packs: Vec<(Id, u64)>) -> Vec<(Id, u64)> {
        packs.sort();
        match *self {
            Subset::All => packs,
            Subset::Group { n, t } => packs
                .into_iter()
                .filter(|(id, _)| {
                    let v = u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
                    v % t == n - 1
                })
                .collect(),
            Subset::Percent(p) => {
                let k = ((packs.len() as f64 * p / 100.0).ceil() as usize).min(packs.len());
                packs.shuffle(&mut rand::thread_rng());
                packs.truncate(k);
                packs
            }
            Subset::Bytes(max) => {
                packs.shuffle(&mut rand::thread_rng());
                let mut total = 0;
                packs
                    .into_iter()
                    .take_while(|(_, size)| {
                        let go = total < max;
                        total += size;
                        go
                    })
                    .collect()
            }
        }
    }
}

/// Options of a check run.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Read pack data, and which packs.
    pub read_data: Option<Subset>,
    /// At most this many affected paths listed per snapshot (0: no limit).
    pub max_paths: usize,
}

/// One problem found.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// What kind: index, pack, snapshot, tree, blob, data.
    pub kind: &'static str,
    /// The file or object concerned.
    pub id: String,
    /// What is wrong.
    pub message: String,
}

/// A pack whose data is damaged.
#[derive(Clone, Debug, Serialize)]
pub struct DamagedPack {
    /// The pack.
    pub pack: Id,
    /// What is wrong with it.
    pub reason: String,
    /// Blobs in it that cannot be read (every blob the index names when the header is bad).
    pub blobs: Vec<Id>,
}

/// A snapshot that depends on damaged or missing data.
#[derive(Clone, Debug, Serialize)]
pub struct AffectedSnapshot {
    /// The snapshot.
    pub snapshot: Id,
    /// When it was taken.
    pub time: String,
    /// Its paths.
    pub paths: Vec<String>,
    /// How many files and directories are affected.
    pub affected: u64,
    /// The affected paths (up to the limit).
    pub files: Vec<String>,
}

/// What check found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckReport {
    /// Index files read.
    pub index_files: u64,
    /// Packs the index names.
    pub packs: u64,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Trees loaded.
    pub trees: u64,
    /// Packs read with read-data.
    pub packs_read: u64,
    /// Bytes read with read-data.
    pub bytes_read: u64,
    /// Blobs decrypted and hashed with read-data.
    pub blobs_read: u64,
    /// Errors.
    pub errors: Vec<Problem>,
    /// Packs in storage that no index names (not an error).
    pub unreferenced_packs: Vec<Id>,
    /// Damaged packs found by read-data.
    pub damaged_packs: Vec<DamagedPack>,
    /// Snapshots that depend on damaged or missing data.
    pub affected_snapshots: Vec<AffectedSnapshot>,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    fn error(&mut self, kind: &'static str, id: impl ToString, message: impl ToString) {
        let p = Problem {
            kind,
            id: id.to_string(),
            message: message.to_string(),
        };
        tracing::debug!(kind = p.kind, id = %p.id, "{}", p.message);
        self.errors.push(p);
    }
}

/// Runs the checks. Does not change the repository. The caller holds a non-exclusive lock.
pub fn check(repo: &Repository, opts: &CheckOptions, progress: &Progress) -> Result<CheckReport> {
    let mut report = CheckReport::default();

    progress.phase("loading index", 0, 0);
    for (id, e) in repo.load_index_tolerant()? {
        report.error("index", id, format!("cannot be loaded: {e}"));
    }
    report.index_files = repo.backend().list_ids(FileType::Index)?.len() as u64;

    progress.phase("checking packs", 0, 0);
    let stored: HashMap<Id, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|f| f.name.parse::<Id>().ok().map(|id| (id, f.size)))
        .collect();
    // Index entries per pack, each blob position once (a pack may be named by two index
    // files after an interrupted prune; that is fine).
    let order = repo.index().by_pack();
    report.packs = order.len() as u64;
    let mut missing_packs: HashSet<Id> = HashSet::new();
    // Blobs that storage no longer holds: all of a missing pack's, and those past the end of
    // a truncated one. What they cost is mapped to snapshots and files below.
    let mut lost: Vec<(Id, PackedBlob)> = Vec::new();
    for k in 0..order.len() {
        let pack = &order.pack(k);
        let blobs = repo.index().pack_blobs(&order, k);
        let want = blobs.iter().map(|b| b.length as u64).sum::<u64>() + header_size(&blobs);
        match stored.get(pack) {
            None => {
                missing_packs.insert(*pack);
                lost.extend(blobs.iter().map(|b| (*pack, *b)));
                report.error(
                    "pack",
                    pack,
                    format!(
                        "named by the index but missing from storage: {} (its snapshots and files are listed as affected)",
                        blob_counts(&blobs)
                    ),
                );
            }
            Some(&size) if size != want => {
                let cut: Vec<PackedBlob> = blobs
                    .iter()
                    .filter(|b| b.offset as u64 + b.length as u64 > size)
                    .copied()
                    .collect();
                let what = if size < want && !cut.is_empty() {
                    format!("truncated: {} past its end", blob_counts(&cut))
                } else {
                    "its blobs are all within it, but its header is not where the index implies"
                        .to_string()
                };
                lost.extend(cut.iter().map(|b| (*pack, *b)));
                report.error(
                    "pack",
                    pack,
                    format!(
                        "size {size} does not match the {want} bytes its index entries imply ({what})"
                    ),
                );
            }
            Some(_) => {}
        }
    }
    let mut unreferenced: Vec<Id> = stored
        .keys()
        .filter(|p| order.find(p).is_none())
        .copied()
        .collect();
    unreferenced.sort();
    report.unreferenced_packs = unreferenced;

    progress.phase("checking snapshots and trees", 0, 0);
    let snap_ids = repo.backend().list_ids(FileType::Snapshot)?;
    let loaded = repo.parallel_map(&snap_ids, |id| {
        Ok(repo.load_json::<Snapshot>(FileType::Snapshot, id))
    })?;
    let mut snaps = Vec::new();
    for (id, r) in snap_ids.iter().zip(loaded) {
        match r {
            Ok(snap) => snaps.push(SnapshotWithId { id: *id, snap }),
            Err(e) => report.error("snapshot", id, format!("cannot be loaded: {e}")),
        }
    }
    snaps.sort_by_key(|a| a.snap.time);
    report.snapshots = snaps.len() as u64;
    let mut missing_data: HashSet<Id> = HashSet::new();
    let mut size_errors = Vec::new();
    let mut trees = 0u64;
    let (_, failures) = {
        let idx = repo.index();
        walk_trees(repo, &snaps, &|| progress.cancelled(), |tree, t| {
            trees += 1;
            progress.add(1, 0);
            for n in &t.nodes {
                let Some(content) = &n.content else { continue };
                let mut sum = 0u64;
                for id in content {
                    match idx.lookup(id, BlobType::Data) {
                        Some(loc) => {
                            sum += loc
                                .blob
                                .uncompressed_length
                                .map(u64::from)
                                .unwrap_or(loc.blob.length as u64 - 32)
                        }
                        None => {
                            missing_data.insert(*id);
                        }
                    }
                }
                if content.iter().all(|id| idx.has(id, BlobType::Data)) && sum != n.size {
                    size_errors.push((*tree, n.name_lossy(), n.size, sum));
                }
            }
        })?
    };
    report.trees = trees;
    let mut bad_trees: HashSet<Id> = HashSet::new();
    for f in &failures {
        bad_trees.insert(f.tree);
        report.error(
            "tree",
            f.tree,
            format!("needed by snapshot {}: {}", f.snapshot, f.cause),
        );
    }
    let mut missing_sorted: Vec<_> = missing_data.iter().collect();
    missing_sorted.sort();
    for id in missing_sorted {
        report.error("blob", id, "data blob used by a file is not in any index");
    }
    for (tree, name, size, sum) in size_errors {
        report.error(
            "tree",
            tree,
            format!("file {name:?}: size {size} differs from the sum of its blobs ({sum})"),
        );
    }

    let mut damaged_data = missing_data;
    for (pack, b) in &lost {
        // Lost unless another pack that storage holds whole has a copy.
        let elsewhere =
            repo.index().lookup_all(&b.id, b.kind).iter().any(|l| {
                l.pack != *pack && !lost.iter().any(|(p, x)| *p == l.pack && x.id == b.id)
            });
        if !elsewhere {
            match b.kind {
                BlobType::Tree => bad_trees.insert(b.id),
                BlobType::Data => damaged_data.insert(b.id),
            };
        }
    }
    if let Some(subset) = opts.read_data {
        let candidates: Vec<(Id, u64)> = (0..order.len())
            .map(|k| order.pack(k))
            .filter(|p| !missing_packs.contains(p))
            .map(|p| (p, stored[&p]))
            .collect();
        let chosen = subset.select(candidates);
        let total: u64 = chosen.iter().map(|(_, s)| s).sum();
        progress.phase("reading packs", chosen.len() as u64, total);
        let damaged = read_packs(repo, &chosen, &order, &mut report, progress)?;
        for d in damaged {
            for b in &d.blobs {
                // Which type the damaged blob had decides where it hurts.
                let is_tree = order.find(&d.pack).is_some_and(|k| {
                    repo.index()
                        .pack_blobs(&order, k)
                        .iter()
                        .any(|pb| pb.id == *b && pb.kind == BlobType::Tree)
                });
                if is_tree {
                    // Only lost if no other copy exists.
                    if repo.index().lookup_all(b, BlobType::Tree).len() <= 1 {
                        bad_trees.insert(*b);
                    }
                } else if repo.index().lookup_all(b, BlobType::Data).len() <= 1 {
                    damaged_data.insert(*b);
                }
            }
            report.error("data", d.pack, &d.reason);
            report.damaged_packs.push(d);
        }
    }

    if !damaged_data.is_empty() || !bad_trees.is_empty() {
        progress.phase("finding affected snapshots", snaps.len() as u64, 0);
        report.affected_snapshots = affected(
            repo,
            &snaps,
            &damaged_data,
            &bad_trees,
            opts.max_paths,
            progress,
        )?;
    }
    Ok(report)
}

/// `3 data blobs, 1 tree blob`.
fn blob_counts(blobs: &[PackedBlob]) -> String {
    let data = blobs.iter().filter(|b| b.kind == BlobType::Data).count();
    let trees = blobs.len() - data;
    let n = |k: usize, what: &str| format!("{k} {what} blob{}", if k == 1 { "" } else { "s" });
    match (data, trees) {
        (d, 0) => n(d, "data"),
        (0, t) => n(t, "tree"),
        (d, t) => format!("{}, {}", n(d, "data"), n(t, "tree")),
    }
}

struct PackResult {
    bytes: u64,
    blobs: u64,
    damage: Option<DamagedPack>,
}

fn read_packs(
    repo: &Repository,
    chosen: &[(Id, u64)],
    order: &PackOrder,
    report: &mut CheckReport,
    progress: &Progress,
) -> Result<Vec<DamagedPack>> {
    let results = repo.parallel_map(chosen, |(pack, size)| {
        if progress.cancelled() {
            return Err(RepoError::Invalid("interrupted".into()));
        }
        let indexed = order
            .find(pack)
            .map(|k| repo.index().pack_blobs(order, k))
            .unwrap_or_default();
        let r = check_pack(repo, pack, *size, &indexed);
        progress.add(1, r.bytes);
        Ok(r)
    });
    let results = match results {
        Ok(r) => r,
        Err(RepoError::Invalid(m)) if m == "interrupted" => return Err(MaintError::Interrupted),
        Err(e) => return Err(e.into()),
    };
    let mut damaged = Vec::new();
    for r in results {
        report.packs_read += 1;
        report.bytes_read += r.bytes;
        report.blobs_read += r.blobs;
        damaged.extend(r.damage);
    }
    Ok(damaged)
}

/// The most of one pack held at once: packs are read in segments of whole blobs, so a check
/// holds a few MiB per thread however large the packs are.
const SEGMENT: u64 = 4 << 20;

/// Reads a pack of `size` bytes (its listed size) in segments: each is added to the pack's
/// hash while its blobs are decrypted, decompressed and hashed on every core.
fn check_pack(repo: &Repository, pack: &Id, size: u64, indexed: &[PackedBlob]) -> PackResult {
    let blobs: Vec<&PackedBlob> = indexed.iter().collect();
    let mut results: Vec<Option<Result<(), String>>> = vec![None; blobs.len()];
    let blobs_end = blobs
        .iter()
        .map(|b| b.offset as u64 + b.length as u64)
        .filter(|e| *e <= size)
        .max()
        .unwrap_or(0);
    let mut hasher = IdHasher::default();
    let mut tail = Vec::new();
    let mut stray = Vec::new();
    let (mut start, mut i, mut read) = (0u64, 0usize, 0u64);
    let mut failure = None;
    while start < size {
        // Whole blobs from `start`, up to SEGMENT (one larger blob alone); a blob that
        // overlaps another or passes the end is checked on its own below.
        let mut members = Vec::new();
        let mut end = start;
        while let Some(b) = blobs.get(i) {
            let (bo, be) = (b.offset as u64, b.offset as u64 + b.length as u64);
            if bo < end.max(start) || be > size {
                stray.push(i);
                i += 1;
                continue;
            }
            if be - start > SEGMENT && (!members.is_empty() || bo > start) {
                break;
            }
            members.push(i);
            end = be;
            i += 1;
        }
        if members.is_empty() {
            let next = blobs.get(i).map(|b| b.offset as u64).unwrap_or(size);
            end = next.min(start + SEGMENT).min(size).max(start + 1);
        }
        let data = match repo.read_pack_range(pack, start, end - start) {
            Ok(d) => d,
            Err(e) => {
                failure = Some(format!("cannot be read from offset {start}: {e}"));
                break;
            }
        };
        read += data.len() as u64;
        let opened = rayon::join(
            || hasher.update(&data),
            || {
                members
                    .par_iter()
                    .map(|&m| {
                        let b = blobs[m];
                        let lo = (b.offset as u64 - start) as usize;
                        match data.get(lo..lo + b.length as usize) {
                            Some(enc) => open_blob(repo.key(), b, enc)
                                .map(|_| ())
                                .map_err(|e| e.to_string()),
                            None => Err("beyond the end of the pack".to_string()),
                        }
                    })
                    .collect::<Vec<_>>()
            },
        )
        .1;
        for (m, r) in members.iter().zip(opened) {
            results[*m] = Some(r);
        }
        if end > blobs_end {
            let from = blobs_end.saturating_sub(start) as usize;
            tail.extend_from_slice(data.get(from..).unwrap_or_default());
        }
        if (data.len() as u64) < end - start {
            // Shorter than listed: nothing more to read.
            break;
        }
        start = end;
    }
    stray.extend(i..blobs.len());
    let mut reasons = Vec::new();
    if let Some(f) = &failure {
        reasons.push(f.clone());
    } else {
        let actual = hasher.finish();
        if read < size {
            reasons.push(format!("only {read} of its {size} bytes could be read"));
        } else if actual != *pack {
            reasons.push(format!("content hash is {actual}, not its name"));
        }
    }
    for m in stray {
        if results[m].is_some() {
            continue;
        }
        let b = blobs[m];
        results[m] = Some(if failure.is_some() {
            Err("not read".to_string())
        } else {
            repo.read_pack_range(pack, b.offset as u64, b.length as u64)
                .map_err(|e| e.to_string())
                .and_then(|enc| match enc.len() == b.length as usize {
                    true => open_blob(repo.key(), b, &enc)
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    false => Err("beyond the end of the pack".to_string()),
                })
        });
    }
    let header = match &failure {
        Some(_) => None,
        None => match header_of(repo, pack, &tail, size.min(read)) {
            Ok(h) => Some(h),
            Err(e) => {
                reasons.push(format!("header cannot be read: {e}"));
                None
            }
        },
    };
    if let Some(h) = &header {
        let in_header: HashMap<u32, &PackedBlob> = h.iter().map(|b| (b.offset, b)).collect();
        for b in &blobs {
            if in_header.get(&b.offset).is_none_or(|hb| hb != b) {
                reasons.push(format!(
                    "blob {} is in the index but not in the pack header",
                    b.id
                ));
            }
        }
    }
    // Blobs are checked from the index entries, which is what restores rely on.
    let mut bad = Vec::new();
    for (b, r) in blobs.iter().zip(results) {
        if let Some(Err(e)) = r {
            bad.push(b.id);
            if bad.len() <= 3 && failure.is_none() {
                reasons.push(format!("{} blob {}: {e}", b.kind, b.id));
            }
        }
    }
    if bad.len() > 3 && failure.is_none() {
        reasons.push(format!("{} more damaged blobs", bad.len() - 3));
    }
    if header.is_none() {
        bad = blobs.iter().map(|b| b.id).collect();
    }
    PackResult {
        bytes: read,
        blobs: blobs.len() as u64,
        damage: (!reasons.is_empty()).then(|| DamagedPack {
            pack: *pack,
            reason: reasons.join("; "),
            blobs: bad,
        }),
    }
}

/// The pack's header, from the bytes read after its last indexed blob, or read on its own
/// when those do not hold all of it (an index that lacks the pack's last blobs).
fn header_of(
    repo: &Repository,
    pack: &Id,
    tail: &[u8],
    len: u64,
) -> Result<Vec<PackedBlob>, String> {
    let read = |from: u64| {
        repo.read_pack_range(pack, from, len - from)
            .map_err(|e| e.to_string())
    };
    let fetched;
    let last = match tail.len() >= 4 {
        true => &tail[tail.len() - 4..],
        false => {
            fetched = read(len.saturating_sub(4))?;
            &fetched[..]
        }
    };
    let last4 =
        <[u8; 4]>::try_from(last).map_err(|_| format!("pack of {len} bytes is too short"))?;
    let start = header_start(last4, len).map_err(|e| e.to_string())?;
    if start >= len - tail.len() as u64 {
        return read_header_tail(repo.key(), tail, len).map_err(|e| e.to_string());
    }
    read_header_tail(repo.key(), &read(start)?, len).map_err(|e| e.to_string())
}

/// For each tree, the relative paths below it that are affected (None: nothing is).
type Memo = HashMap<Id, Option<Arc<Vec<String>>>>;

fn affected(
    repo: &Repository,
    snaps: &[SnapshotWithId],
    damaged_data: &HashSet<Id>,
    bad_trees: &HashSet<Id>,
    max_paths: usize,
    progress: &Progress,
) -> Result<Vec<AffectedSnapshot>> {
    let memo = Mutex::new(Memo::new());
    let mut out = Vec::new();
    for s in snaps {
        progress.add(1, 0);
        let hits = if bad_trees.contains(&s.snap.tree) {
            Some(Arc::new(vec!["/".to_string()]))
        } else {
            tree_hits(repo, &s.snap.tree, damaged_data, bad_trees, &memo)?
        };
        if let Some(h) = hits {
            let limit = if max_paths == 0 { h.len() } else { max_paths };
            out.push(AffectedSnapshot {
                snapshot: s.id,
                time: s.snap.time.to_rfc3339(),
                paths: s.snap.paths.clone(),
                affected: h.len() as u64,
                files: h.iter().take(limit).cloned().collect(),
            });
        }
    }
    Ok(out)
}

fn tree_hits(
    repo: &Repository,
    tree: &Id,
    damaged: &HashSet<Id>,
    bad_trees: &HashSet<Id>,
    memo: &Mutex<Memo>,
) -> Result<Option<Arc<Vec<String>>>> {
    if let Some(m) = memo.lock().get(tree) {
        return Ok(m.clone());
    }
    let t = repo.load_tree(tree)?;
    let mut hits = Vec::new();
    for n in &t.nodes {
        let name = n.name_lossy();
        if let Some(c) = &n.content {
            if c.iter().any(|id| damaged.contains(id)) {
                hits.push(format!("/{name}"));
            }
        }
        if let Some(sub) = &n.subtree {
            if bad_trees.contains(sub) {
                hits.push(format!("/{name}/"));
            } else if let Some(h) = tree_hits(repo, sub, damaged, bad_trees, memo)? {
                hits.extend(h.iter().map(|p| format!("/{name}{p}")));
            }
        }
    }
    let r = (!hits.is_empty()).then(|| Arc::new(hits));
    memo.lock().insert(*tree, r.clone());
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets() {
        assert_eq!(Subset::parse("1/7").unwrap(), Subset::Group { n: 1, t: 7 });
        assert_eq!(Subset::parse("10%").unwrap(), Subset::Percent(10.0));
        assert_eq!(Subset::parse("1G").unwrap(), Subset::Bytes(1 << 30));
        assert!(Subset::parse("0/7").is_err());
        assert!(Subset::parse("8/7").is_err());
        assert!(Subset::parse("0%").is_err());
        let packs: Vec<(Id, u64)> = (0..1000u32)
            .map(|i| (Id::hash(&i.to_le_bytes()), 10))
            .collect();
        // The groups of n/t partition the packs.
        let mut all = HashSet::new();
        for n in 1..=5 {
            for (id, _) in (Subset::Group { n, t: 5 }).select(packs.clone()) {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 1000);
        assert_eq!(Subset::Percent(10.0).select(packs.clone()).len(), 100);
        assert_eq!(Subset::Bytes(95).select(packs).len(), 10);
    }
}
