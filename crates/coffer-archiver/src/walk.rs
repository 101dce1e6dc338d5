//! Walking a snapshot's trees: depth-first, in name order, yielding each node with its path
//! inside the snapshot (`/home/user/file`). Used by `ls`, `find`, `dump` and the restorer.

use std::path::{Path, PathBuf};

use coffer_repo::tree::{Node, NodeType, Tree};
use coffer_repo::{Id, RepoError, Repository};

use crate::metadata::os_name;

/// One node with its path inside the snapshot.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// Absolute path inside the snapshot.
    pub path: PathBuf,
    /// The node.
    pub node: Node,
}

/// Visits every node below `tree` in pre-order; `visit` returns false to skip a directory's
/// contents.
pub fn walk_tree(
    repo: &Repository,
    tree: &Id,
    prefix: &Path,
    visit: &mut dyn FnMut(&TreeEntry) -> Result<bool, RepoError>,
) -> Result<(), RepoError> {
    walk_tree_salvaging(repo, tree, prefix, visit, &mut |_, e| Err(e))
}

/// Like [`walk_tree`], but a directory whose listing cannot be loaded (a damaged or missing
/// tree blob) is handed to `lost`, which may return `Ok` to go on with the rest of the
/// snapshot. The root tree must load.
pub fn walk_tree_salvaging(
    repo: &Repository,
    tree: &Id,
    prefix: &Path,
    visit: &mut dyn FnMut(&TreeEntry) -> Result<bool, RepoError>,
    lost: &mut dyn FnMut(&Path, RepoError) -> Result<(), RepoError>,
) -> Result<(), RepoError> {
    walk(repo, repo.load_tree(tree)?, prefix, visit, lost)
}

fn walk(
    repo: &Repository,
    t: Tree,
    prefix: &Path,
    visit: &mut dyn FnMut(&TreeEntry) -> Result<bool, RepoError>,
    lost: &mut dyn FnMut(&Path, RepoError) -> Result<(), RepoError>,
) -> Result<(), RepoError> {
    for node in t.nodes {
        let path = prefix.join(os_name(&node.name));
        let subtree = node.subtree;
        let is_dir = node.kind == NodeType::Dir;
        let e = TreeEntry { path, node };
        let descend = visit(&e)?;
        if is_dir && descend {
            if let Some(st) = subtree {
                match repo.load_tree(&st) {
                    Ok(sub) => walk(repo, sub, &e.path, visit, lost)?,
                    Err(err) => lost(&e.path, err)?,
                }
            }
        }
    }
    Ok(())
}

/// The node at `path` inside the snapshot rooted at `tree`.
pub fn find_node(repo: &Repository, tree: &Id, path: &Path) -> Result<Option<Node>, RepoError> {
    let mut current = *tree;
    let comps: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for (i, c) in comps.iter().enumerate() {
        use std::os::unix::ffi::OsStrExt;
        let t = repo.load_tree(&current)?;
        let Some(n) = t.find(c.as_bytes()) else {
            return Ok(None);
        };
        if i + 1 == comps.len() {
            return Ok(Some(n.clone()));
        }
        match n.subtree {
            Some(st) if n.kind == NodeType::Dir => current = st,
            _ => return Ok(None),
        }
    }
    Ok(None)
}
