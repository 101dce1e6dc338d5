//! `coffer tag`: add, remove or replace snapshot tags, as restic does. A snapshot file is
//! named by its content, so a changed snapshot is a new file: it is saved first, recording in
//! `original` the id of the first version, and only then is the old file removed (a crash in
//! between leaves both, never neither). Runs under an exclusive lock.

use anyhow::bail;
use coffer_repo::snapshot::{Snapshot, SnapshotWithId};

use crate::cmd::forget::{remove_snapshot_files, resolve};
use crate::cmd::SnapshotFilter;
use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to change (ids, unique id prefixes or "latest"); default: every snapshot
    /// that passes --host/--tag/--path
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Add these tags (repeatable, or comma-separated)
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub add: Vec<String>,
    /// Remove these tags (repeatable, or comma-separated)
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub remove: Vec<String>,
    /// Replace all tags with these (repeatable, or comma-separated; --set "" removes all)
    #[arg(long, value_name = "TAG", value_delimiter = ',')]
    pub set: Option<Vec<String>>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

fn clean(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        if !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    }
    out
}

/// The snapshot with its tags changed, or None if the tags stay as they are.
fn retag(
    snap: &Snapshot,
    set: Option<&[String]>,
    add: &[String],
    remove: &[String],
) -> Option<Snapshot> {
    let mut tags = snap.tags.clone();
    match set {
        Some(set) => tags = set.to_vec(),
        None => {
            for t in add {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            tags.retain(|t| !remove.contains(t));
        }
    }
    if tags == snap.tags {
        return None;
    }
    let mut new = snap.clone();
    new.tags = tags;
    Some(new)
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let add = clean(&a.add);
    let remove = clean(&a.remove);
    let set = a.set.as_deref().map(clean);
    if set.is_some() && (!add.is_empty() || !remove.is_empty()) {
        bail!("--set replaces all tags and cannot be combined with --add or --remove");
    }
    if set.is_none() && add.is_empty() && remove.is_empty() {
        bail!("nothing to do: use --add, --remove or --set (--set \"\" removes all tags)");
    }

    let repo = g.open()?;
    let lock = g.lock(&repo, true)?;
    let snaps: Vec<SnapshotWithId> = repo
        .snapshots()?
        .into_iter()
        .filter(|s| a.filter.matches(&s.snap))
        .collect();
    let targets: Vec<&SnapshotWithId> = if a.snapshots.is_empty() {
        snaps.iter().collect()
    } else {
        resolve(&snaps, &a.snapshots)?
    };

    let mut changed = 0usize;
    for old in targets {
        let Some(mut new) = retag(&old.snap, set.as_deref(), &add, &remove) else {
            continue;
        };
        if new.original.is_none() {
            new.original = Some(old.id);
        }
        let id = repo.save_snapshot(&new)?;
        // Encryption makes every file unique, but never delete the file just written.
        if id != old.id {
            remove_snapshot_files(&repo, &[old.id], &lock)?;
        }
        changed += 1;
        if g.json {
            println!(
                "{}",
                serde_json::json!({
                    "message_type": "changed",
                    "old_snapshot_id": old.id.to_hex(),
                    "new_snapshot_id": id.to_hex(),
                })
            );
        } else if !g.quiet {
            println!(
                "snapshot {} saved as {} (tags: {})",
                old.id.short(),
                id.short(),
                new.tags.join(",")
            );
        }
    }
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "summary", "changed_snapshots": changed})
        );
    } else if !g.quiet {
        println!("modified tags on {changed} snapshots");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(tags: &[&str]) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "time": "2024-01-01T10:00:00Z",
            "tree": coffer_repo::Id::default(),
            "paths": ["/srv"],
            "tags": tags,
        }))
        .expect("snapshot")
    }

    fn v(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tag_changes() {
        let s = snap(&["a", "b"]);
        let r = |set: Option<&[&str]>, add: &[&str], rm: &[&str]| {
            let set = set.map(v);
            retag(&s, set.as_deref(), &v(add), &v(rm)).map(|n| n.tags)
        };
        assert_eq!(r(None, &["c"], &[]), Some(v(&["a", "b", "c"])));
        assert_eq!(r(None, &["a"], &[]), None);
        assert_eq!(r(None, &[], &["a"]), Some(v(&["b"])));
        assert_eq!(r(None, &[], &["x"]), None);
        assert_eq!(r(None, &["c"], &["a"]), Some(v(&["b", "c"])));
        assert_eq!(r(Some(&["x"]), &[], &[]), Some(v(&["x"])));
        assert_eq!(r(Some(&[]), &[], &[]), Some(v(&[])));
        assert_eq!(r(Some(&["a", "b"]), &[], &[]), None);
        assert_eq!(clean(&v(&["", " x", "x", "y"])), v(&["x", "y"]));
    }
}
