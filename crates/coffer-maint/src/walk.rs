//! Reachability: which tree and data blobs the snapshots of a repository use. Trees are
//! loaded level by level, each tree once however many snapshots share it, several at a time
//! (the repository's `parallel_map`), so a walk of many similar snapshots costs about as much
//! as a walk of one.

use std::collections::HashSet;

use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::tree::Tree;
use coffer_repo::{Id, RepoError, Repository};

use crate::error::{MaintError, Result};

/// Blobs referenced by a set of snapshots.
#[derive(Default, Debug)]
pub struct UsedBlobs {
    /// Tree blobs (roots included).
    pub trees: HashSet<Id>,
    /// Data blobs of file contents.
    pub data: HashSet<Id>,
}

/// A tree that could not be loaded, and the first snapshot found to need it.
#[derive(Debug, Clone)]
pub struct TreeFailure {
    /// The tree.
    pub tree: Id,
    /// A snapshot whose walk reached it.
    pub snapshot: Id,
    /// The error.
    pub cause: String,
}

/// Walks every tree reachable from `snaps`, calling `visit` on each loaded tree once. Trees
/// that fail to load are returned, not fatal: `check` reports them, other callers refuse to go
/// on. `cancel` is polled between levels.
pub fn walk_trees(
    repo: &Repository,
    snaps: &[SnapshotWithId],
    cancel: &dyn Fn() -> bool,
    mut visit: impl FnMut(&Id, &Tree),
) -> Result<(HashSet<Id>, Vec<TreeFailure>)> {
    let mut seen: HashSet<Id> = HashSet::new();
    let mut failures = Vec::new();
    // Each frontier entry remembers one snapshot that reaches it, for error messages.
    let mut frontier: Vec<(Id, Id)> = Vec::new();
    for s in snaps {
        if seen.insert(s.snap.tree) {
            frontier.push((s.snap.tree, s.id));
        }
    }
    while !frontier.is_empty() {
        if cancel() {
            return Err(MaintError::Interrupted);
        }
        let loaded = repo.parallel_map(&frontier, |(tree, _)| {
            Ok::<_, RepoError>(repo.load_tree(tree).map_err(|e| e.to_string()))
        })?;
        let mut next = Vec::new();
        for ((tree, snap), r) in frontier.iter().zip(loaded) {
            match r {
                Ok(t) => {
                    for n in &t.nodes {
                        if let Some(sub) = n.subtree {
                            if seen.insert(sub) {
                                next.push((sub, *snap));
                            }
                        }
                    }
                    visit(tree, &t);
                }
                Err(cause) => failures.push(TreeFailure {
                    tree: *tree,
                    snapshot: *snap,
                    cause,
                }),
            }
        }
        frontier = next;
    }
    Ok((seen, failures))
}

/// The blobs `snaps` use. Fails if any tree cannot be loaded: callers that delete data must
/// not act on a partial picture.
pub fn used_blobs(
    repo: &Repository,
    snaps: &[SnapshotWithId],
    cancel: &dyn Fn() -> bool,
) -> Result<UsedBlobs> {
    let mut data = HashSet::new();
    let (trees, failures) = walk_trees(repo, snaps, cancel, |_, t| {
        for n in &t.nodes {
            if let Some(c) = &n.content {
                data.extend(c.iter().copied());
            }
        }
    })?;
    if let Some(f) = failures.first() {
        return Err(MaintError::Tree {
            snapshot: f.snapshot,
            tree: f.tree,
            cause: format!(
                "{} ({} tree(s) unreadable in all; run `coffer check`, then `coffer repair`)",
                f.cause,
                failures.len()
            ),
        });
    }
    Ok(UsedBlobs { trees, data })
}
