use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use coffer_archiver::{copy_stream, find_node, FileReader};
use coffer_repo::tree::NodeType;

use crate::cmd::{open_snapshot, SnapshotFilter};
use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id (or prefix) or "latest"
    pub snapshot: String,
    /// Path of the file inside the snapshot
    pub path: String,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let (repo, snap) = open_snapshot(g, &a.snapshot, &a.filter)?;
    let Some(node) = find_node(&repo, &snap.snap.tree, Path::new(&a.path))? else {
        bail!("{} not found in snapshot {}", a.path, snap.id.short());
    };
    if node.kind != NodeType::File {
        bail!("{} is a {}, not a file", a.path, node.kind.as_str());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // The same read-ahead pipeline as restores into pg_restore: bounded memory, in order.
    let reader = FileReader::new(repo, &node);
    copy_stream(reader, &mut out)
        .with_context(|| format!("{} from snapshot {}", a.path, snap.id.short()))?;
    out.flush()?;
    Ok(0)
}
