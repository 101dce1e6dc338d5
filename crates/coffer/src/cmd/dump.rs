use std::io::Write;
use std::path::Path;

use anyhow::bail;
use coffer_archiver::find_node;
use coffer_repo::pack::BlobType;
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
    // Blob by blob: memory stays at one chunk whatever the file size.
    for id in node.content.as_deref().unwrap_or(&[]) {
        let data = repo.load_blob(id, BlobType::Data)?;
        out.write_all(&data)?;
    }
    out.flush()?;
    Ok(0)
}
