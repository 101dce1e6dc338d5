//! Copy snapshots from one repository into another (the 3-2-1 rule: a local repository copied
//! to S3). Only blobs the destination lacks are transferred; each is decrypted with the
//! source key, verified (decompressed and hashed), and re-encrypted with the destination key
//! without being recompressed. Blobs are fetched pack by pack, one ranged read per pack, so a
//! remote source is read in large requests.
//!
//! A snapshot already present in the destination (same tree, time, host and paths, or one
//! whose `original` is the source snapshot) is skipped, so repeating a copy is cheap and an
//! interrupted copy resumes: each snapshot is saved only after its packs and index are
//! stored. Deduplication between the two repositories needs the same chunker polynomial
//! (`init --copy-chunker-params`); without it copies are still correct, only larger.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use coffer_repo::pack::{BlobType, PackedBlob};
use coffer_repo::snapshot::{Snapshot, SnapshotWithId};
use coffer_repo::{Id, Packer, RepoError, Repository, DEFAULT_PACK_SIZE};
use serde::Serialize;

use crate::error::{MaintError, Result};
use crate::progress::Progress;
use crate::walk::walk_trees;

/// What a copy did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyReport {
    /// Snapshots copied: (source id, destination id).
    pub copied: Vec<(Id, Id)>,
    /// Source snapshots already in the destination.
    pub skipped: Vec<Id>,
    /// Blobs transferred.
    pub blobs_copied: u64,
    /// Plaintext bytes of the blobs transferred.
    pub bytes_copied: u64,
    /// Bytes stored in the destination.
    pub bytes_stored: u64,
    /// Blobs the destination already had.
    pub blobs_deduplicated: u64,
}

fn same_snapshot(a: &Snapshot, b: &Snapshot) -> bool {
    a.tree == b.tree && a.time == b.time && a.hostname == b.hostname && a.paths == b.paths
}

/// Copies `snaps` (from `src`) into `dst`. Both indexes must be loaded.
pub fn copy(
    src: &Repository,
    dst: &Arc<Repository>,
    snaps: &[SnapshotWithId],
    upload_threads: usize,
    progress: &Progress,
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    let existing = dst.snapshots()?;
    for s in snaps {
        if progress.cancelled() {
            return Err(MaintError::Interrupted);
        }
        let present = existing.iter().any(|d| {
            same_snapshot(&d.snap, &s.snap)
                || d.snap.original == Some(s.id)
                || (s.snap.original.is_some()
                    && d.snap.original == s.snap.original
                    && d.snap.tree == s.snap.tree)
        });
        if present {
            report.skipped.push(s.id);
            continue;
        }
        let new = copy_one(src, dst, s, upload_threads, progress, &mut report)?;
        report.copied.push((s.id, new));
    }
    Ok(report)
}

fn copy_one(
    src: &Repository,
    dst: &Arc<Repository>,
    s: &SnapshotWithId,
    upload_threads: usize,
    progress: &Progress,
    report: &mut CopyReport,
) -> Result<Id> {
    progress.phase(&format!("snapshot {}: finding blobs", s.id.short()), 0, 0);
    // Which blobs the destination lacks, grouped by the source pack that holds them.
    let mut need: HashMap<Id, Vec<PackedBlob>> = HashMap::new();
    let mut wanted: HashSet<(Id, BlobType)> = HashSet::new();
    let mut missing: Option<(Id, BlobType)> = None;
    {
        let sidx = src.index();
        let didx = dst.index();
        let mut want = |id: Id, kind: BlobType| {
            if !wanted.insert((id, kind)) {
                return;
            }
            if didx.has(&id, kind) {
                report.blobs_deduplicated += 1;
                return;
            }
            match sidx.lookup(&id, kind) {
                Some(loc) => need.entry(loc.pack).or_default().push(loc.blob),
                None => missing = missing.or(Some((id, kind))),
            }
        };
        let (_, failures) = walk_trees(
            src,
            std::slice::from_ref(s),
            &|| progress.cancelled(),
            |id, t| {
                want(*id, BlobType::Tree);
                for n in &t.nodes {
                    for c in n.content.iter().flatten() {
                        want(*c, BlobType::Data);
                    }
                }
            },
        )?;
        if let Some(f) = failures.first() {
            return Err(MaintError::Tree {
                snapshot: s.id,
                tree: f.tree,
                cause: format!(
                    "{}; the snapshot was not copied (run `coffer check` on the source)",
                    f.cause
                ),
            });
        }
    }
    if let Some((id, kind)) = missing {
        return Err(MaintError::Damaged(format!(
            "snapshot {} needs {kind} blob {id}, which the source index lacks; not copied (run `coffer check` on the source)",
            s.id
        )));
    }

    let mut packs: Vec<(Id, Vec<PackedBlob>)> = need.into_iter().collect();
    packs.sort_by_key(|(id, _)| *id);
    let total: u64 = packs
        .iter()
        .flat_map(|(_, b)| b.iter())
        .map(|b| b.length as u64)
        .sum();
    progress.phase(
        &format!("snapshot {}: copying", s.id.short()),
        packs.len() as u64,
        total,
    );
    let packer = Packer::new(Arc::clone(dst), DEFAULT_PACK_SIZE, upload_threads);
    let counts = src.parallel_map(&packs, |(pack, blobs)| {
        if progress.cancelled() {
            return Err(RepoError::Invalid("interrupted".into()));
        }
        let start = blobs.iter().map(|b| b.offset).min().unwrap_or(0) as u64;
        let end = blobs
            .iter()
            .map(|b| b.offset as u64 + b.length as u64)
            .max()
            .unwrap_or(0);
        let span = src.read_pack_range(pack, start, end - start)?;
        let mut n = (0u64, 0u64);
        for b in blobs {
            let lo = (b.offset as u64 - start) as usize;
            let enc = &span[lo..lo + b.length as usize];
            let fail = |e: String| {
                RepoError::Invalid(format!(
                    "{} blob {} in source pack {pack}: {e}",
                    b.kind, b.id
                ))
            };
            let inner = src.key().decrypt(enc).map_err(|e| fail(e.to_string()))?;
            let plain_len = match b.uncompressed_length {
                Some(len) => {
                    let p = coffer_repo::pack::decompress(&inner, len as usize)
                        .map_err(|e| fail(e.to_string()))?;
                    check_hash(&p, &b.id).map_err(fail)?;
                    p.len()
                }
                None => {
                    check_hash(&inner, &b.id).map_err(fail)?;
                    inner.len()
                }
            };
            if !packer.reserve(&b.id, b.kind) {
                continue;
            }
            let sealed = dst.key().encrypt(&inner);
            packer.add_sealed(b.id, b.kind, &sealed, plain_len, b.uncompressed_length)?;
            n.0 += 1;
            n.1 += plain_len as u64;
        }
        progress.add(1, end - start);
        Ok(n)
    });
    let counts = match counts {
        Ok(c) => c,
        Err(RepoError::Invalid(m)) if m == "interrupted" => return Err(MaintError::Interrupted),
        Err(e) => return Err(e.into()),
    };
    let stats = packer.flush()?;
    for (b, bytes) in counts {
        report.blobs_copied += b;
        report.bytes_copied += bytes;
    }
    report.bytes_stored += stats.data_added_packed;
    let mut snap = s.snap.clone();
    snap.original = Some(s.snap.original.unwrap_or(s.id));
    Ok(dst.save_snapshot(&snap)?)
}

fn check_hash(plain: &[u8], id: &Id) -> Result<(), String> {
    let actual = Id::hash(plain);
    if actual != *id {
        return Err(format!("hash mismatch (got {actual})"));
    }
    Ok(())
}
