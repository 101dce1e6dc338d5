//! `coffer diff A B`: what changed from snapshot A to snapshot B, as restic 0.17 prints it:
//! `+` added, `-` removed, `M` content modified, `T` type changed, `U` metadata only (with
//! `--metadata`), `?` content changed while every other field stayed the same (bit rot), then
//! counts of added and removed files, directories, other entries, blobs and bytes. `--json`
//! prints restic's `change` and `statistics` messages.
//!
//! Subtrees with the same id are identical and are not compared, so listing the changes costs
//! in proportion to what changed. The blob statistics then open those shared subtrees (each
//! once, stopping when nothing is left to account for), so a blob also referenced from an
//! unchanged directory is not counted as added or removed, exactly as restic counts.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use coffer_repo::pack::BlobType;
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::tree::{Node, NodeType};
use coffer_repo::{Id, Repository};

use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The earlier snapshot: id, id prefix or "latest", optionally ID:SUBFOLDER
    pub from: String,
    /// The later snapshot, same forms
    pub to: String,
    /// Also list entries whose metadata (mode, times, owner...) changed (U)
    #[arg(long)]
    pub metadata: bool,
}

/// restic's `DiffStat`.
#[derive(Default, serde::Serialize)]
struct DiffStat {
    files: u64,
    dirs: u64,
    others: u64,
    data_blobs: u64,
    tree_blobs: u64,
    bytes: u64,
}

impl DiffStat {
    fn add(&mut self, n: &Node) {
        match n.kind {
            NodeType::File => self.files += 1,
            NodeType::Dir => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

type Blobs = HashSet<(Id, BlobType)>;

fn add_blobs(set: &mut Blobs, n: &Node) {
    match n.kind {
        NodeType::File => {
            for c in n.content.iter().flatten() {
                set.insert((*c, BlobType::Data));
            }
        }
        NodeType::Dir => {
            if let Some(st) = n.subtree {
                set.insert((st, BlobType::Tree));
            }
        }
        _ => {}
    }
}

struct Differ<'a, W: Write> {
    repo: &'a Repository,
    out: W,
    json: bool,
    quiet: bool,
    metadata: bool,
    changed_files: u64,
    added: DiffStat,
    removed: DiffStat,
    before: Blobs,
    after: Blobs,
    /// Identical subtrees that were skipped; their blobs are in both snapshots.
    common: Vec<Id>,
}

fn join(prefix: &[u8], name: &[u8], dir: bool) -> Vec<u8> {
    let mut p = prefix.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    if dir {
        p.push(b'/');
    }
    p
}

impl<W: Write> Differ<'_, W> {
    fn change(&mut self, path: &[u8], modifier: &str) -> anyhow::Result<()> {
        if self.quiet {
            return Ok(());
        }
        if self.json {
            let v = serde_json::json!({
                "message_type": "change",
                "path": String::from_utf8_lossy(path),
                "modifier": modifier,
            });
            writeln!(self.out, "{v}")?;
        } else {
            // Names need not be UTF-8: print them as stored, like restic.
            write!(self.out, "{modifier:<5}")?;
            self.out.write_all(path)?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Lists everything below an added (`+`) or removed (`-`) directory.
    fn print_dir(&mut self, modifier: &str, prefix: &[u8], tree: &Id) -> anyhow::Result<()> {
        let t = self.repo.load_tree(tree)?;
        for n in &t.nodes {
            self.only(prefix, n, modifier)?;
        }
        Ok(())
    }

    fn diff_tree(&mut self, prefix: &[u8], a: &Id, b: &Id) -> anyhow::Result<()> {
        let mut ta = self.repo.load_tree(a)?.nodes;
        let mut tb = self.repo.load_tree(b)?.nodes;
        // Trees are stored sorted by name; sorting again costs nothing then and keeps the merge
        // correct for trees written by clients that did not.
        ta.sort_by(|x, y| x.name.cmp(&y.name));
        tb.sort_by(|x, y| x.name.cmp(&y.name));
        let (mut i, mut j) = (0, 0);
        while i < ta.len() || j < tb.len() {
            let order = match (ta.get(i), tb.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Equal => {
                    self.both(prefix, &ta[i], &tb[j])?;
                    i += 1;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    self.only(prefix, &ta[i], "-")?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.only(prefix, &tb[j], "+")?;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Lists an entry that only one side has (`+` added, `-` removed), and everything below it.
    fn only(&mut self, prefix: &[u8], n: &Node, modifier: &str) -> anyhow::Result<()> {
        let is_dir = n.kind == NodeType::Dir;
        let path = join(prefix, &n.name, is_dir);
        self.change(&path, modifier)?;
        let (stat, blobs) = if modifier == "+" {
            (&mut self.added, &mut self.after)
        } else {
            (&mut self.removed, &mut self.before)
        };
        stat.add(n);
        add_blobs(blobs, n);
        if let Some(st) = n.subtree.filter(|_| is_dir) {
            self.print_dir(modifier, &path, &st)?;
        }
        Ok(())
    }

    fn both(&mut self, prefix: &[u8], a: &Node, b: &Node) -> anyhow::Result<()> {
        add_blobs(&mut self.before, a);
        add_blobs(&mut self.after, b);
        let path = join(prefix, &b.name, b.kind == NodeType::Dir);
        let mut modifier = String::new();
        if a.kind != b.kind {
            modifier.push('T');
        }
        let content = |n: &Node| n.content.clone().unwrap_or_default();
        if a.kind == NodeType::File && b.kind == NodeType::File && content(a) != content(b) {
            modifier.push('M');
            self.changed_files += 1;
            let (mut a0, mut b0) = (a.clone(), b.clone());
            a0.content = None;
            b0.content = None;
            // New content under identical metadata (size, mtime, ctime, inode): the file
            // changed without any write the backup could see, or the storage decayed.
            if a0 == b0 {
                modifier.push('?');
            }
        } else if self.metadata && a != b {
            modifier.push('U');
        }
        if !modifier.is_empty() {
            self.change(&path, &modifier)?;
        }
        if a.kind == NodeType::Dir && b.kind == NodeType::Dir {
            match (a.subtree, b.subtree) {
                // The same id means the same content all the way down: no changes to list.
                // Its blobs still count as present in both (see `drop_common`).
                (Some(x), Some(y)) if x == y => self.common.push(x),
                (Some(x), Some(y)) => self.diff_tree(&path, &x, &y)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Splits `ID:SUBFOLDER`, resolves the snapshot and finds the subfolder's tree.
fn resolve_tree(
    repo: &Repository,
    all: &[SnapshotWithId],
    spec: &str,
) -> anyhow::Result<(SnapshotWithId, Id)> {
    let (id, sub) = match spec.split_once(':') {
        Some((id, sub)) => (id, Some(sub)),
        None => (spec, None),
    };
    let snap = all[super::stats::resolve(all, id)?].clone();
    let tree = match sub.filter(|s| !s.is_empty() && *s != "/") {
        None => snap.snap.tree,
        Some(sub) => match coffer_archiver::find_node(repo, &snap.snap.tree, Path::new(sub))? {
            Some(n) if n.kind == NodeType::Dir => n
                .subtree
                .with_context(|| format!("{sub} in snapshot {} has no tree", snap.id.short()))?,
            Some(_) => bail!("{sub} in snapshot {} is not a directory", snap.id.short()),
            None => bail!("{sub} does not exist in snapshot {}", snap.id.short()),
        },
    };
    Ok((snap, tree))
}

/// Removes from `added` and `removed` every blob that an identical (skipped) subtree also
/// references, as restic does. Each shared tree is opened at most once, and the walk stops as
/// soon as no candidate is left.
fn drop_common(
    repo: &Repository,
    common: Vec<Id>,
    added: &mut Blobs,
    removed: &mut Blobs,
) -> anyhow::Result<()> {
    let mut seen: HashSet<Id> = HashSet::new();
    let mut stack = common;
    while let Some(t) = stack.pop() {
        if added.is_empty() && removed.is_empty() {
            break;
        }
        if !seen.insert(t) {
            continue;
        }
        added.remove(&(t, BlobType::Tree));
        removed.remove(&(t, BlobType::Tree));
        for n in &repo.load_tree(&t)?.nodes {
            for c in n.content.iter().flatten() {
                added.remove(&(*c, BlobType::Data));
                removed.remove(&(*c, BlobType::Data));
            }
            if let Some(st) = n.subtree {
                stack.push(st);
            }
        }
    }
    Ok(())
}

/// Counts the blobs of `set` and their plaintext bytes into `stat`.
fn count_blobs(repo: &Repository, set: &Blobs, stat: &mut DiffStat) {
    let idx = repo.index();
    for (id, kind) in set {
        match kind {
            BlobType::Data => stat.data_blobs += 1,
            BlobType::Tree => stat.tree_blobs += 1,
        }
        match idx.lookup(id, *kind) {
            Some(loc) => stat.bytes += loc.blob.data_length() as u64,
            None => eprintln!("warning: {kind} blob {id} is not in the index; its size is not counted (run `coffer check`)"),
        }
    }
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let repo = g.open()?;
    repo.load_index()?;
    let all = repo.snapshots()?;
    let (sa, ta) = resolve_tree(&repo, &all, &a.from)?;
    let (sb, tb) = resolve_tree(&repo, &all, &a.to)?;
    let stdout = std::io::stdout();
    let mut d = Differ {
        repo: &repo,
        out: std::io::BufWriter::new(stdout.lock()),
        json: g.json,
        quiet: g.quiet,
        metadata: a.metadata,
        changed_files: 0,
        added: DiffStat::default(),
        removed: DiffStat::default(),
        before: Blobs::new(),
        after: Blobs::new(),
        common: Vec::new(),
    };
    if !g.json && !g.quiet {
        writeln!(
            d.out,
            "comparing snapshot {} to {}:\n",
            sa.id.short(),
            sb.id.short()
        )?;
    }
    d.before.insert((ta, BlobType::Tree));
    d.after.insert((tb, BlobType::Tree));
    if ta != tb {
        d.diff_tree(b"/", &ta, &tb)?;
    }
    let mut removed: Blobs = d.before.difference(&d.after).copied().collect();
    let mut added: Blobs = d.after.difference(&d.before).copied().collect();
    drop_common(
        &repo,
        std::mem::take(&mut d.common),
        &mut added,
        &mut removed,
    )?;
    count_blobs(&repo, &removed, &mut d.removed);
    count_blobs(&repo, &added, &mut d.added);
    if g.json {
        let v = serde_json::json!({
            "message_type": "statistics",
            "source_snapshot": a.from,
            "target_snapshot": a.to,
            "changed_files": d.changed_files,
            "added": d.added,
            "removed": d.removed,
        });
        writeln!(d.out, "{v}")?;
    } else {
        let (ad, rm) = (&d.added, &d.removed);
        let mut o = d.out;
        writeln!(o)?;
        writeln!(
            o,
            "Files:       {:5} new, {:5} removed, {:5} changed",
            ad.files, rm.files, d.changed_files
        )?;
        writeln!(o, "Dirs:        {:5} new, {:5} removed", ad.dirs, rm.dirs)?;
        writeln!(
            o,
            "Others:      {:5} new, {:5} removed",
            ad.others, rm.others
        )?;
        writeln!(
            o,
            "Data Blobs:  {:5} new, {:5} removed",
            ad.data_blobs, rm.data_blobs
        )?;
        writeln!(
            o,
            "Tree Blobs:  {:5} new, {:5} removed",
            ad.tree_blobs, rm.tree_blobs
        )?;
        writeln!(o, "  Added:   {}", crate::ui::bytes(ad.bytes))?;
        writeln!(o, "  Removed: {}", crate::ui::bytes(rm.bytes))?;
        o.flush()?;
        return Ok(0);
    }
    d.out.flush()?;
    Ok(0)
}
