//! The restorer. It plans first (walk the snapshot, apply include/exclude), then fills the
//! files ([`fill`]: every data blob mapped to the offsets that need it) segment by segment on
//! several threads ([`packs`]): each pack is cut into segments of a few MiB, each blob is
//! decrypted, verified and written with `pwrite` to every place it belongs, so one large file
//! spread over a few packs is decoded and written in parallel like many small ones. Memory is
//! bounded by the number of threads times the segment size, whatever the file sizes.
//! All-zero blobs are skipped in fresh files, which keeps sparse files sparse. Owners, modes
//! and times are applied last, directories deepest first.
//!
//! Damage costs only what is damaged: a file whose data cannot all be read (a damaged or
//! missing blob, a truncated pack) or written (a full disk, after [`fill`] has retried what
//! did not fit) is removed, or kept as `NAME.damaged` with `keep_damaged`, and named in
//! [`RestoreResult::damaged`]; every other file is restored exactly and counted in
//! [`RestoreResult::files`]. Not guaranteed: an interrupted restore leaves partial files.

mod fill;
mod packs;
mod verify;

pub(crate) use packs::SEGMENT;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use coffer_repo::snapshot::Snapshot;
use coffer_repo::tree::{Node, NodeType};
use coffer_repo::{RepoError, Repository};

use crate::filter::PatternSet;
use crate::metadata;
use crate::progress::Progress;
use crate::walk::{walk_tree_salvaging, TreeEntry};

/// What to restore and where.
pub struct RestoreOptions {
    /// Destination directory.
    pub target: PathBuf,
    /// Only these paths (and what is below them).
    pub includes: PatternSet,
    /// Not these.
    pub excludes: PatternSet,
    /// Re-read restored files and check every blob's hash.
    pub verify: bool,
    /// Worker threads.
    pub threads: usize,
    /// Keep a file that could not be restored exactly as `NAME.damaged` (with what could be
    /// read) instead of removing it.
    pub keep_damaged: bool,
}

/// A restore that could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The target cannot be used.
    #[error("target {path}: {source}")]
    Target {
        /// Target directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Cancelled.
    #[error("interrupted")]
    Interrupted,
}

/// A file that could not be restored exactly.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DamagedFile {
    /// Where it belongs.
    pub path: PathBuf,
    /// Why: the blob and pack that could not be read, or the write that failed.
    pub reason: String,
    /// Where what could be read was kept (`keep_damaged`); `None`: removed.
    pub kept: Option<PathBuf>,
}

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct RestoreResult {
    /// Files restored exactly (damaged ones are not counted here but in `damaged`).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other nodes (links, devices, FIFOs).
    pub others: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Problems with single items (the rest was restored).
    pub errors: Vec<String>,
    /// Files re-read by `--verify`.
    pub verified_files: u64,
    /// `--include` patterns that matched nothing in the snapshot.
    pub unmatched_includes: Vec<String>,
    /// Files that could not be restored exactly.
    pub damaged: Vec<DamagedFile>,
}

impl RestoreResult {
    /// Everything asked for was restored exactly.
    pub fn complete(&self) -> bool {
        self.errors.is_empty() && self.damaged.is_empty()
    }
}

struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<(PathBuf, Node)>,
    others: Vec<(PathBuf, Node)>,
    links: Vec<(PathBuf, PathBuf, Node)>,
    /// Per include pattern: whether anything matched it.
    include_hits: Vec<bool>,
    /// Directories whose listing could not be loaded, with why.
    lost_dirs: Vec<(PathBuf, String)>,
}

fn included(e: &TreeEntry, opts: &RestoreOptions) -> (bool, bool) {
    // (restore this node, descend into it)
    if opts.excludes.matches_or_below(&e.path) {
        return (false, false);
    }
    if opts.includes.is_empty() || opts.includes.matches_or_below(&e.path) {
        return (true, true);
    }
    let dir = e.node.kind == NodeType::Dir;
    (false, dir && opts.includes.may_contain_match(&e.path))
}

fn plan(repo: &Repository, snap: &Snapshot, opts: &RestoreOptions) -> Result<Plan, RepoError> {
    let mut p = Plan {
        dirs: Vec::new(),
        files: Vec::new(),
        others: Vec::new(),
        links: Vec::new(),
        include_hits: vec![false; opts.includes.patterns().len()],
        lost_dirs: Vec::new(),
    };
    let mut lost_dirs = Vec::new();
    let mut pending_dirs: Vec<(PathBuf, Node)> = Vec::new();
    let mut seen_inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut lost = |path: &Path, e: RepoError| {
        lost_dirs.push((path.to_path_buf(), e.to_string()));
        Ok(())
    };
    walk_tree_salvaging(
        repo,
        &snap.tree,
        Path::new("/"),
        &mut |e| {
            let (take, descend) = included(e, opts);
            if take && p.include_hits.contains(&false) {
                for i in opts.includes.matching(&e.path) {
                    p.include_hits[i] = true;
                }
            }
            // Directories on the way to an included item are created too.
            pending_dirs.retain(|(d, _)| e.path.starts_with(d));
            if !take {
                if descend {
                    pending_dirs.push((e.path.clone(), e.node.clone()));
                }
                return Ok(descend);
            }
            for d in pending_dirs.drain(..) {
                if !p.dirs.iter().any(|(x, _)| *x == d.0) {
                    p.dirs.push(d);
                }
            }
            match e.node.kind {
                NodeType::Dir => p.dirs.push((e.path.clone(), e.node.clone())),
                NodeType::File => {
                    let key = (e.node.device_id, e.node.inode);
                    if e.node.links > 1 && e.node.inode != 0 {
                        if let Some(first) = seen_inodes.get(&key) {
                            p.links
                                .push((e.path.clone(), first.clone(), e.node.clone()));
                            return Ok(true);
                        }
                        seen_inodes.insert(key, e.path.clone());
                    }
                    p.files.push((e.path.clone(), e.node.clone()));
                }
                _ => p.others.push((e.path.clone(), e.node.clone())),
            }
            Ok(true)
        },
        &mut lost,
    )?;
    p.lost_dirs = lost_dirs;
    Ok(p)
}

fn dest(target: &Path, inner: &Path) -> PathBuf {
    target.join(inner.strip_prefix("/").unwrap_or(inner))
}

/// Restores `snap` into `opts.target`.
pub fn restore(
    repo: Arc<Repository>,
    snap: &Snapshot,
    opts: &RestoreOptions,
    progress: Arc<Progress>,
    cancel: Arc<AtomicBool>,
) -> Result<RestoreResult, RestoreError> {
    repo.load_index()?;
    std::fs::create_dir_all(&opts.target).map_err(|source| RestoreError::Target {
        path: opts.target.clone(),
        source,
    })?;
    let plan = plan(&repo, snap, opts)?;
    let errors = Mutex::new(Vec::<String>::new());
    let err = |m: String| {
        tracing::warn!("{m}");
        errors.lock().push(m);
    };
    let mut result = RestoreResult::default();

    for (p, _) in &plan.dirs {
        let d = dest(&opts.target, p);
        if let Err(e) = std::fs::create_dir_all(&d) {
            err(format!("{}: {e}", d.display()));
        }
    }
    result.dirs = plan.dirs.len() as u64;

    let slots = fill::slots(&repo, &plan.files, |p| dest(&opts.target, p));
    progress
        .total_files
        .store(slots.len() as u64, Ordering::Relaxed);
    progress
        .total_bytes
        .store(slots.iter().map(|s| s.size).sum::<u64>(), Ordering::Relaxed);
    progress.scan_finished.store(true, Ordering::Relaxed);

    // Empty files have no blobs: create them now.
    for s in &slots {
        if s.remaining.load(Ordering::Relaxed) == 0 && !s.is_damaged() {
            if let Err(e) = File::create(&s.path) {
                s.damaged(|| e.to_string());
            }
            progress.file_done();
        }
    }

    let threads = opts.threads.max(1);
    fill::Filler {
        repo: &repo,
        files: &plan.files,
        slots: &slots,
        progress: &progress,
        threads,
        cancel: &cancel,
    }
    .fill_all();
    if cancel.load(Ordering::Relaxed) {
        return Err(RestoreError::Interrupted);
    }
    result.bytes = slots
        .iter()
        .map(|s| s.written.load(Ordering::Relaxed))
        .sum();

    // What could not be restored exactly is not left looking complete.
    let mut good = vec![true; slots.len()];
    for (i, slot) in slots.iter().enumerate() {
        slot.handle.lock().take();
        let Some(reason) = slot.damage.lock().clone() else {
            continue;
        };
        good[i] = false;
        result
            .damaged
            .push(set_aside(&slot.path, slot.size, reason, opts.keep_damaged));
    }
    result.files = good.iter().filter(|g| **g).count() as u64;
    for (p, why) in &plan.lost_dirs {
        result.damaged.push(DamagedFile {
            path: dest(&opts.target, p),
            reason: format!(
                "this directory's listing could not be read, so nothing in it was restored: {why}"
            ),
            kept: None,
        });
    }
    let by_path: HashMap<&Path, usize> = plan
        .files
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (p.as_path(), i))
        .collect();

    // Links and special files.
    for (p, first, _) in &plan.links {
        let d = dest(&opts.target, p);
        let _ = std::fs::remove_file(&d);
        if by_path.get(first.as_path()).is_some_and(|i| !good[*i]) {
            result.damaged.push(DamagedFile {
                path: d,
                reason: format!("a hard link to {}, which is damaged", first.display()),
                kept: None,
            });
            continue;
        }
        if let Err(e) = std::fs::hard_link(dest(&opts.target, first), &d) {
            err(format!("{}: hard link: {e}", d.display()));
        }
    }
    for (p, node) in &plan.others {
        let d = dest(&opts.target, p);
        let _ = std::fs::remove_file(&d);
        let r = match node.kind {
            NodeType::Symlink => {
                std::os::unix::fs::symlink(metadata::os_name(&node.link_target), &d)
            }
            _ => metadata::mknod(&d, node),
        };
        match r {
            Ok(()) => result.others += 1,
            Err(e) => err(format!("{}: {e}", d.display())),
        }
    }

    let as_root = metadata::is_root();
    let apply = |p: &Path, n: &Node| {
        let d = dest(&opts.target, p);
        if let Err(e) = metadata::apply(&d, n, as_root) {
            err(format!("{}: setting metadata: {e}", d.display()));
        }
    };
    for ((p, n), ok) in plan.files.iter().zip(&good) {
        if *ok {
            apply(p, n);
        }
    }
    for (p, n) in &plan.others {
        apply(p, n);
    }
    for (p, first, n) in &plan.links {
        if by_path.get(first.as_path()).is_none_or(|i| good[*i]) {
            apply(p, n);
        }
    }
    let mut dirs: Vec<&(PathBuf, Node)> = plan.dirs.iter().collect();
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, n) in dirs {
        apply(p, n);
    }

    if opts.verify {
        let files: Vec<(PathBuf, &Node)> = plan
            .files
            .iter()
            .zip(&good)
            .filter(|(_, ok)| **ok)
            .map(|((p, n), _)| (dest(&opts.target, p), n))
            .collect();
        result.verified_files = verify::verify(&repo, &files, threads, &err);
    }
    result.errors = errors.into_inner();
    result.unmatched_includes = opts
        .includes
        .patterns()
        .iter()
        .zip(&plan.include_hits)
        .filter(|(_, hit)| !**hit)
        .map(|(p, _)| p.clone())
        .collect();
    Ok(result)
}

/// Removes a file that is not exact, or keeps it beside as `NAME.damaged`: at its full size,
/// with what could be read in place and holes where blobs were lost (a file none of whose
/// blobs could be read was never created, and is created empty of data here).
fn set_aside(path: &Path, size: u64, reason: String, keep: bool) -> DamagedFile {
    tracing::warn!(path = %path.display(), "not restored exactly: {reason}");
    let mut kept = None;
    if keep {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".damaged");
        let to = path.with_file_name(name);
        let grown = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .and_then(|f| match f.metadata()?.len() < size {
                true => f.set_len(size),
                false => Ok(()),
            });
        if grown.is_ok() && std::fs::rename(path, &to).is_ok() {
            kept = Some(to);
        }
    }
    if kept.is_none() {
        let _ = std::fs::remove_file(path);
    }
    DamagedFile {
        path: path.to_path_buf(),
        reason,
        kept,
    }
}
