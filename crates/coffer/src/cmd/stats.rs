//! `coffer stats`: sizes of snapshots (restic's four counting modes, same JSON field names and
//! figures) plus coffer's deduplication figure. Also owns what `diff` and `find` share with it:
//! choosing snapshots from arguments, and loading every tree below a set of roots once, in
//! parallel, into a compact in-memory form.
//!
//! Every mode loads each distinct tree once (a tree shared by many snapshots or directories is
//! read and parsed a single time); the per-snapshot figures are then computed in memory, with
//! per-tree totals memoized, so many snapshots of a 100k-file tree cost little more than one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use coffer_repo::pack::BlobType;
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::tree::{NodeType, Tree};
use coffer_repo::{Id, Repository};

use crate::cmd::SnapshotFilter;
use crate::global::GlobalOpts;
use crate::ui;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Size of the files as restored (each hard-linked inode once per snapshot)
    RestoreSize,
    /// Size of the files, each distinct content counted once
    FilesByContents,
    /// Blobs referenced by the snapshots, each counted once, with their stored size
    RawData,
    /// Distinct content blobs per file path
    BlobsPerFile,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::RestoreSize => "restore-size",
            Mode::FilesByContents => "files-by-contents",
            Mode::RawData => "raw-data",
            Mode::BlobsPerFile => "blobs-per-file",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots (id, id prefix or "latest"); default: every snapshot passing the filter
    pub snapshots: Vec<String>,
    /// Counting mode. raw-data also shows the deduplication ratio: restore size divided by the
    /// plaintext size of the distinct data blobs
    #[arg(long, value_enum, default_value = "restore-size")]
    pub mode: Mode,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// The position of the snapshot `spec` names among `all` ([`coffer_repo::snapshot::resolve`]).
pub(super) fn resolve(all: &[SnapshotWithId], spec: &str) -> anyhow::Result<usize> {
    let found = coffer_repo::snapshot::resolve(all, spec)?;
    Ok(all
        .iter()
        .position(|s| s.id == found.id)
        .expect("resolve returns one of `all`"))
}

/// The snapshots named by `specs` (all passing `filter` when none is given), oldest first and
/// without repeats. `latest` is the newest snapshot passing the filter.
pub(super) fn select_snapshots(
    repo: &Repository,
    specs: &[String],
    filter: &SnapshotFilter,
) -> anyhow::Result<Vec<SnapshotWithId>> {
    let all: Vec<SnapshotWithId> = repo
        .snapshots()?
        .into_iter()
        .filter(|s| filter.matches(&s.snap))
        .collect();
    if specs.is_empty() {
        return Ok(all);
    }
    let mut picked: Vec<usize> = Vec::new();
    for spec in specs {
        let i = resolve(&all, spec)?;
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked.sort_unstable();
    Ok(picked.into_iter().map(|i| all[i].clone()).collect())
}

/// One tree entry, reduced to what the inspection commands need.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// Raw name (empty unless names were asked for).
    pub name: Vec<u8>,
    pub kind: NodeType,
    pub subtree: Option<Id>,
    pub size: u64,
    pub links: u64,
    pub inode: u64,
    pub device_id: u64,
    /// Data blobs (empty unless contents were asked for).
    pub content: Vec<Id>,
}

/// What to keep of each node when loading trees.
#[derive(Clone, Copy)]
pub(super) struct Keep {
    pub names: bool,
    pub content: bool,
}

/// Loads every tree reachable from `roots`, each distinct tree once, level by level with the
/// repository's parallel reader.
pub(super) fn load_trees(
    repo: &Repository,
    roots: &[Id],
    keep: Keep,
) -> anyhow::Result<HashMap<Id, Vec<Entry>>> {
    let mut trees: HashMap<Id, Vec<Entry>> = HashMap::new();
    let mut frontier: Vec<Id> = Vec::new();
    let mut queued: HashSet<Id> = HashSet::new();
    for r in roots {
        if queued.insert(*r) {
            frontier.push(*r);
        }
    }
    while !frontier.is_empty() {
        let loaded =
            repo.parallel_map(&frontier, |id| repo.load_tree(id).map(|t| compact(t, keep)))?;
        let mut next = Vec::new();
        for (id, entries) in frontier.iter().zip(loaded) {
            for e in &entries {
                if let Some(st) = e.subtree.filter(|_| e.kind == NodeType::Dir) {
                    if queued.insert(st) {
                        next.push(st);
                    }
                }
            }
            trees.insert(*id, entries);
        }
        frontier = next;
    }
    Ok(trees)
}

fn compact(t: Tree, keep: Keep) -> Vec<Entry> {
    t.nodes
        .into_iter()
        .map(|n| Entry {
            name: if keep.names { n.name } else { Vec::new() },
            content: if keep.content {
                n.content.unwrap_or_default()
            } else {
                Vec::new()
            },
            kind: n.kind,
            subtree: n.subtree,
            size: n.size,
            links: n.links,
            inode: n.inode,
            device_id: n.device_id,
        })
        .collect()
}

/// restore-size totals of one tree, memoized by tree id.
struct TreeSum {
    /// Nodes below the tree (all levels), as restic's walker visits them.
    nodes: u64,
    /// Sizes counted whatever else the snapshot holds.
    plain: u64,
    /// (inode, device, size) of this tree's own hard-linked nodes, counted once per snapshot.
    linked: Vec<(u64, u64, u64)>,
    /// Subtrees that hold hard-linked nodes somewhere below.
    linked_children: Vec<Arc<TreeSum>>,
}

fn tree_sum(
    id: &Id,
    trees: &HashMap<Id, Vec<Entry>>,
    memo: &mut HashMap<Id, Arc<TreeSum>>,
) -> anyhow::Result<Arc<TreeSum>> {
    if let Some(s) = memo.get(id) {
        return Ok(Arc::clone(s));
    }
    let entries = trees
        .get(id)
        .with_context(|| format!("tree {id} was not loaded"))?;
    let mut s = TreeSum {
        nodes: 0,
        plain: 0,
        linked: Vec::new(),
        linked_children: Vec::new(),
    };
    for e in entries {
        s.nodes += 1;
        // restic counts directories and single-link files as they are, and hard-linked
        // inodes once per snapshot (inode 0 means unknown: always counted).
        if e.links == 1 || e.kind == NodeType::Dir || e.inode == 0 {
            s.plain += e.size;
        } else {
            s.linked.push((e.inode, e.device_id, e.size));
        }
        if let Some(st) = e.subtree.filter(|_| e.kind == NodeType::Dir) {
            let child = tree_sum(&st, trees, memo)?;
            s.nodes += child.nodes;
            s.plain += child.plain;
            if !child.linked.is_empty() || !child.linked_children.is_empty() {
                s.linked_children.push(child);
            }
        }
    }
    let s = Arc::new(s);
    memo.insert(*id, Arc::clone(&s));
    Ok(s)
}

fn linked_size(s: &TreeSum, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let mut size = 0;
    for &(inode, dev, sz) in &s.linked {
        if seen.insert((inode, dev)) {
            size += sz;
        }
    }
    for c in &s.linked_children {
        size += linked_size(c, seen);
    }
    size
}

/// (node count, restore size) over `snaps`, as restic's restore-size mode counts them.
fn restore_size(
    snaps: &[SnapshotWithId],
    trees: &HashMap<Id, Vec<Entry>>,
) -> anyhow::Result<(u64, u64)> {
    let mut memo = HashMap::new();
    let (mut count, mut size) = (0, 0);
    for s in snaps {
        let sum = tree_sum(&s.snap.tree, trees, &mut memo)?;
        count += sum.nodes;
        size += sum.plain + linked_size(&sum, &mut HashSet::new());
    }
    Ok((count, size))
}

#[derive(Default, Debug)]
struct RawData {
    blobs: u64,
    stored: u64,
    /// restic's "uncompressed size": plaintext plus the per-blob crypto overhead.
    uncompressed: u64,
    compressed_stored: u64,
    compressed_uncompressed: u64,
    /// Plaintext bytes of the distinct data blobs (the deduplicated file content).
    unique_data: u64,
}

fn raw_data(repo: &Repository, trees: &HashMap<Id, Vec<Entry>>) -> anyhow::Result<RawData> {
    let mut data: HashSet<Id> = HashSet::new();
    for entries in trees.values() {
        for e in entries.iter().filter(|e| e.kind == NodeType::File) {
            data.extend(e.content.iter().copied());
        }
    }
    let v2 = repo.config().version >= 2;
    let idx = repo.index();
    let mut r = RawData::default();
    let handles = trees
        .keys()
        .map(|id| (id, BlobType::Tree))
        .chain(data.iter().map(|id| (id, BlobType::Data)));
    for (id, kind) in handles {
        let loc = idx.lookup(id, kind).with_context(|| {
            format!("{kind} blob {id} is referenced but not in the index (run `coffer check`)")
        })?;
        let b = loc.blob;
        r.blobs += 1;
        r.stored += b.length as u64;
        let plain = b.data_length() as u64;
        if kind == BlobType::Data {
            r.unique_data += plain;
        }
        if v2 {
            let ct = plain + coffer_repo::crypto::OVERHEAD as u64;
            r.uncompressed += ct;
            if b.uncompressed_length.is_some() {
                r.compressed_stored += b.length as u64;
                r.compressed_uncompressed += ct;
            }
        }
    }
    Ok(r)
}

/// files-by-contents: each distinct content list once, over every node (restic counts
/// directories and other content-less nodes as one "file" with empty content).
fn files_by_contents(trees: &HashMap<Id, Vec<Entry>>) -> (u64, u64) {
    let mut seen: HashSet<Id> = HashSet::new();
    let (mut count, mut size) = (0, 0);
    for entries in trees.values() {
        for e in entries {
            if seen.insert(content_key(&e.content)) {
                count += 1;
                size += e.size;
            }
        }
    }
    (count, size)
}

fn content_key(content: &[Id]) -> Id {
    let mut b = Vec::with_capacity(content.len() * 32);
    for c in content {
        b.extend_from_slice(&c.0);
    }
    Id::hash(&b)
}

/// blobs-per-file: for each distinct content (first occurrence, snapshots oldest first), the
/// distinct blobs per path and their plaintext size.
fn blobs_per_file(
    repo: &Repository,
    snaps: &[SnapshotWithId],
    trees: &HashMap<Id, Vec<Entry>>,
) -> anyhow::Result<(u64, u64, u64)> {
    struct St<'a> {
        repo: &'a Repository,
        trees: &'a HashMap<Id, Vec<Entry>>,
        contents: HashSet<Id>,
        paths: HashMap<Vec<u8>, HashSet<Id>>,
        files: u64,
        blobs: u64,
        size: u64,
    }
    fn walk(st: &mut St, tree: &Id, prefix: &[u8]) -> anyhow::Result<()> {
        let trees = st.trees;
        let entries = trees
            .get(tree)
            .with_context(|| format!("tree {tree} was not loaded"))?;
        for e in entries {
            let mut path = prefix.to_vec();
            path.push(b'/');
            path.extend_from_slice(&e.name);
            if st.contents.insert(content_key(&e.content)) && !e.content.is_empty() {
                let known = st.paths.contains_key(&path);
                let blobs = st.paths.entry(path.clone()).or_default();
                if !known {
                    st.files += 1;
                }
                for b in &e.content {
                    if blobs.insert(*b) {
                        let loc = st
                            .repo
                            .index()
                            .lookup(b, BlobType::Data)
                            .with_context(|| format!("data blob {b} is not in the index"))?;
                        st.size += loc.blob.data_length() as u64;
                        st.blobs += 1;
                    }
                }
            }
            if let Some(sub) = e.subtree.filter(|_| e.kind == NodeType::Dir) {
                walk(st, &sub, &path)?;
            }
        }
        Ok(())
    }
    let mut st = St {
        repo,
        trees,
        contents: HashSet::new(),
        paths: HashMap::new(),
        files: 0,
        blobs: 0,
        size: 0,
    };
    for s in snaps {
        walk(&mut st, &s.snap.tree, b"")?;
    }
    Ok((st.files, st.blobs, st.size))
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let repo = g.open()?;
    repo.load_index()?;
    let snaps = select_snapshots(&repo, &a.snapshots, &a.filter)?;
    let roots: Vec<Id> = snaps.iter().map(|s| s.snap.tree).collect();
    let keep = Keep {
        names: a.mode == Mode::BlobsPerFile,
        content: a.mode != Mode::RestoreSize,
    };
    let trees = load_trees(&repo, &roots, keep)?;

    // restic omits zero counters (Go's omitempty); so do we, for identical JSON.
    let mut out = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        out.insert(k.to_string(), v);
    };
    let mut raw = None;
    match a.mode {
        Mode::RestoreSize => {
            let (count, size) = restore_size(&snaps, &trees)?;
            put("total_size", size.into());
            put("total_file_count", count.into());
        }
        Mode::FilesByContents => {
            let (count, size) = files_by_contents(&trees);
            put("total_size", size.into());
            put("total_file_count", count.into());
        }
        Mode::BlobsPerFile => {
            let (files, blobs, size) = blobs_per_file(&repo, &snaps, &trees)?;
            put("total_size", size.into());
            put("total_file_count", files.into());
            put("total_blob_count", blobs.into());
        }
        Mode::RawData => {
            let r = raw_data(&repo, &trees)?;
            let (_, restore) = restore_size(&snaps, &trees)?;
            put("total_size", r.stored.into());
            if r.uncompressed > 0 {
                put("total_uncompressed_size", r.uncompressed.into());
                if r.compressed_stored > 0 {
                    put(
                        "compression_ratio",
                        (r.compressed_uncompressed as f64 / r.compressed_stored as f64).into(),
                    );
                }
                let progress = r.compressed_uncompressed as f64 / r.uncompressed as f64 * 100.0;
                if progress > 0.0 {
                    put("compression_progress", progress.into());
                }
                let saving = (1.0 - r.stored as f64 / r.uncompressed as f64) * 100.0;
                if saving != 0.0 {
                    put("compression_space_saving", saving.into());
                }
            }
            put("total_blob_count", r.blobs.into());
            put("restore_size", restore.into());
            if r.unique_data > 0 {
                put(
                    "dedup_ratio",
                    (restore as f64 / r.unique_data as f64).into(),
                );
            }
            raw = Some((r, restore));
        }
    }
    put("snapshots_count", snaps.len().into());
    out.retain(|_, v| v.as_u64() != Some(0) || v.is_f64());
    out.entry("total_size").or_insert(0.into());
    out.entry("snapshots_count").or_insert(0.into());

    if g.json {
        println!("{}", serde_json::Value::Object(out));
        return Ok(0);
    }
    let num = |k: &str| out.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let float = |k: &str| out.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
    // restic's layout: labels right-aligned on the colon.
    let line = |label: &str, value: String| println!("{label:>24}:  {value}");
    println!("Stats in {} mode:", a.mode.name());
    line("Snapshots processed", snaps.len().to_string());
    if num("total_blob_count") > 0 {
        line("Total Blob Count", num("total_blob_count").to_string());
    }
    if num("total_file_count") > 0 {
        line("Total File Count", num("total_file_count").to_string());
    }
    if num("total_uncompressed_size") > 0 {
        line(
            "Total Uncompressed Size",
            ui::bytes(num("total_uncompressed_size")),
        );
    }
    line("Total Size", ui::bytes(num("total_size")));
    // restic's three figures measure different things; each line says over what, so that a
    // ratio of 1.30x beside a saving of 0.09% (little of the data compresses) reads right.
    if float("compression_progress") > 0.0 {
        line(
            "Compression Progress",
            format!(
                "{:.2}% of the data is stored compressed (the rest did not shrink)",
                float("compression_progress")
            ),
        );
    }
    if float("compression_ratio") > 0.0 {
        line(
            "Compression Ratio",
            format!(
                "{:.2}x, over the compressed part only",
                float("compression_ratio")
            ),
        );
    }
    if float("compression_space_saving") != 0.0 {
        line(
            "Compression Space Saving",
            format!(
                "{:.2}% of all data, compressed or not",
                float("compression_space_saving")
            ),
        );
    }
    if let Some((r, restore)) = raw {
        line("Restore Size", ui::bytes(restore));
        line("Unique Data (plaintext)", ui::bytes(r.unique_data));
        if r.unique_data > 0 {
            line(
                "Deduplication Ratio",
                format!("{:.2}x", restore as f64 / r.unique_data as f64),
            );
        }
    }
    Ok(0)
}
