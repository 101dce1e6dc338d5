//! The restorer. It plans first (walk the snapshot, apply include/exclude, map every data blob
//! to the file offsets that need it), then restores pack by pack on several threads: each pack
//! is read once (one ranged request covering the blobs needed), each blob is decrypted,
//! verified and written with `pwrite` to every place it belongs. Memory is bounded by the
//! number of threads times the pack size, whatever the file sizes. All-zero blobs are skipped
//! in fresh files, which keeps sparse files sparse. Owners, modes and times are applied last,
//! directories deepest first. Not guaranteed: an interrupted restore leaves partial files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use coffer_repo::pack::{open_blob, BlobType, PackedBlob};
use coffer_repo::snapshot::Snapshot;
use coffer_repo::tree::{Node, NodeType};
use coffer_repo::{Id, RepoError, Repository};

use crate::filter::PatternSet;
use crate::metadata;
use crate::progress::Progress;
use crate::walk::{walk_tree, TreeEntry};

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

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct RestoreResult {
    /// Files restored.
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
}

struct FileSlot {
    path: PathBuf,
    size: u64,
    remaining: AtomicUsize,
    handle: Mutex<Option<Arc<File>>>,
}

struct Target {
    file: usize,
    offset: u64,
}

struct Plan {
    dirs: Vec<(PathBuf, Node)>,
    files: Vec<(PathBuf, Node)>,
    others: Vec<(PathBuf, Node)>,
    links: Vec<(PathBuf, PathBuf, Node)>,
    /// Per include pattern: whether anything matched it.
    include_hits: Vec<bool>,
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
    };
    let mut pending_dirs: Vec<(PathBuf, Node)> = Vec::new();
    let mut seen_inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk_tree(repo, &snap.tree, Path::new("/"), &mut |e| {
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
    })?;
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

    // Map blobs to where they go.
    let mut slots = Vec::with_capacity(plan.files.len());
    let mut wanted: HashMap<Id, Vec<Target>> = HashMap::new();
    let mut pack_order: Vec<Id> = Vec::new();
    let mut packs: HashMap<Id, Vec<PackedBlob>> = HashMap::new();
    {
        let idx = repo.index();
        for (p, node) in &plan.files {
            let file = slots.len();
            let content = node.content.clone().unwrap_or_default();
            let mut offset = 0u64;
            let mut ok = true;
            for id in &content {
                let Some(loc) = idx.lookup(id, BlobType::Data) else {
                    err(format!(
                        "{}: data blob {id} is missing from the index",
                        p.display()
                    ));
                    ok = false;
                    break;
                };
                let targets = wanted.entry(*id).or_default();
                if targets.is_empty() {
                    let list = packs.entry(loc.pack).or_insert_with(|| {
                        pack_order.push(loc.pack);
                        Vec::new()
                    });
                    list.push(loc.blob);
                }
                targets.push(Target { file, offset });
                offset += loc.blob.data_length() as u64;
            }
            if !ok {
                for id in &content {
                    if let Some(t) = wanted.get_mut(id) {
                        t.retain(|t| t.file != file);
                    }
                }
            }
            slots.push(FileSlot {
                path: dest(&opts.target, p),
                size: node.size.max(offset),
                remaining: AtomicUsize::new(if ok { content.len() } else { 0 }),
                handle: Mutex::new(None),
            });
        }
    }
    progress
        .total_files
        .store(slots.len() as u64, Ordering::Relaxed);
    progress
        .total_bytes
        .store(slots.iter().map(|s| s.size).sum::<u64>(), Ordering::Relaxed);
    progress.scan_finished.store(true, Ordering::Relaxed);

    // Empty files have no blobs: create them now.
    for s in &slots {
        if s.remaining.load(Ordering::Relaxed) == 0 {
            if let Err(e) = File::create(&s.path) {
                err(format!("{}: {e}", s.path.display()));
            }
            progress.file_done();
        }
    }

    let next = AtomicUsize::new(0);
    let bytes = AtomicU64::new(0);
    let threads = opts.threads.max(1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(pack) = pack_order.get(i) else {
                    return;
                };
                let blobs = &packs[pack];
                if let Err(e) = restore_pack(&repo, pack, blobs, &wanted, &slots, &progress, &bytes)
                {
                    err(e);
                }
            });
        }
    });
    if cancel.load(Ordering::Relaxed) {
        return Err(RestoreError::Interrupted);
    }
    result.files = slots.len() as u64;
    result.bytes = bytes.load(Ordering::Relaxed);

    // Links and special files.
    for (p, first, _) in &plan.links {
        let d = dest(&opts.target, p);
        let _ = std::fs::remove_file(&d);
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
    for (p, n) in plan.files.iter().chain(plan.others.iter()) {
        apply(p, n);
    }
    for (p, _, n) in &plan.links {
        apply(p, n);
    }
    let mut dirs: Vec<&(PathBuf, Node)> = plan.dirs.iter().collect();
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, n) in dirs {
        apply(p, n);
    }

    if opts.verify {
        result.verified_files = verify(&repo, &plan, opts, threads, &err)?;
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

fn open_slot(slot: &FileSlot) -> Result<Arc<File>, String> {
    let mut h = slot.handle.lock();
    if let Some(f) = h.as_ref() {
        return Ok(Arc::clone(f));
    }
    let _ = std::fs::remove_file(&slot.path);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&slot.path)
        .and_then(|f| f.set_len(slot.size).map(|_| f))
        .map_err(|e| format!("{}: {e}", slot.path.display()))?;
    let f = Arc::new(f);
    *h = Some(Arc::clone(&f));
    Ok(f)
}

fn restore_pack(
    repo: &Repository,
    pack: &Id,
    blobs: &[PackedBlob],
    wanted: &HashMap<Id, Vec<Target>>,
    slots: &[FileSlot],
    progress: &Progress,
    bytes: &AtomicU64,
) -> Result<(), String> {
    let mut blobs = blobs.to_vec();
    blobs.sort_by_key(|b| b.offset);
    // Read the pack in segments of at most SEGMENT bytes (one blob may exceed it) rather
    // than whole: each worker then holds a few MiB instead of a 16+ MiB pack, which is most
    // of a restore's memory, at the cost of a few more requests per pack.
    let mut i = 0;
    while i < blobs.len() {
        let start = blobs[i].offset as u64;
        let mut j = i + 1;
        while j < blobs.len() && blobs[j].offset as u64 + blobs[j].length as u64 - start <= SEGMENT
        {
            j += 1;
        }
        let seg = &blobs[i..j];
        i = j;
        let end = seg
            .iter()
            .map(|b| b.offset as u64 + b.length as u64)
            .max()
            .unwrap_or(start);
        let data = repo
            .read_pack_range(pack, start, end - start)
            .map_err(|e| format!("pack {pack}: {e}"))?;
        for b in seg {
            restore_blob(repo, pack, b, &data, start, wanted, slots, progress, bytes)?;
        }
    }
    Ok(())
}

/// The most a worker reads from a pack at once.
const SEGMENT: u64 = 4 << 20;

/// Decrypts one blob of a segment read from `pack` at `start` and writes it everywhere it
/// belongs.
#[allow(clippy::too_many_arguments)]
fn restore_blob(
    repo: &Repository,
    pack: &Id,
    b: &PackedBlob,
    data: &[u8],
    start: u64,
    wanted: &HashMap<Id, Vec<Target>>,
    slots: &[FileSlot],
    progress: &Progress,
    bytes: &AtomicU64,
) -> Result<(), String> {
    {
        let lo = (b.offset as u64 - start) as usize;
        let enc = &data[lo..lo + b.length as usize];
        let plain = match open_blob(repo.key(), b, enc) {
            Ok(p) => p,
            // A damaged copy: try any other pack that holds the blob.
            Err(e) => repo.load_blob(&b.id, BlobType::Data).map_err(|e2| {
                format!(
                    "data blob {} in pack {pack}: {e}; no good copy elsewhere: {e2}",
                    b.id
                )
            })?,
        };
        let zero = plain.iter().all(|&x| x == 0);
        for t in wanted.get(&b.id).map(|v| v.as_slice()).unwrap_or(&[]) {
            let slot = &slots[t.file];
            let f = open_slot(slot)?;
            // set_len left a hole there already: skipping keeps sparse files sparse.
            if !zero {
                f.write_all_at(&plain, t.offset)
                    .map_err(|e| format!("{}: {e}", slot.path.display()))?;
            }
            bytes.fetch_add(plain.len() as u64, Ordering::Relaxed);
            progress.add_bytes(plain.len() as u64);
            if slot.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                slot.handle.lock().take();
                progress.file_done();
            }
        }
    }
    Ok(())
}

fn verify(
    repo: &Repository,
    plan: &Plan,
    opts: &RestoreOptions,
    threads: usize,
    err: &(dyn Fn(String) + Sync),
) -> Result<u64, RestoreError> {
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((p, node)) = plan.files.get(i) else {
                    return;
                };
                let d = dest(&opts.target, p);
                match verify_file(repo, &d, node) {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => err(format!("verify {}: {e}", d.display())),
                }
            });
        }
    });
    Ok(done.load(Ordering::Relaxed))
}

fn verify_file(repo: &Repository, path: &Path, node: &Node) -> Result<(), String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let idx = repo.index();
    let mut buf = Vec::new();
    let mut total = 0u64;
    for id in node.content.as_deref().unwrap_or(&[]) {
        let len = idx
            .lookup(id, BlobType::Data)
            .ok_or_else(|| format!("blob {id} not in index"))?
            .blob
            .data_length() as usize;
        buf.resize(len, 0);
        f.read_exact(&mut buf)
            .map_err(|e| format!("reading at {total}: {e}"))?;
        if Id::hash(&buf) != *id {
            return Err(format!(
                "content at offset {total} does not match blob {id}"
            ));
        }
        total += len as u64;
    }
    let actual = f.metadata().map_err(|e| e.to_string())?.len();
    if actual != total {
        return Err(format!("size is {actual}, expected {total}"));
    }
    Ok(())
}
