use std::io::Write;
use std::path::Path;

use coffer_archiver::walk_tree;
use coffer_repo::tree::NodeType;

use crate::cmd::{open_snapshot, SnapshotFilter};
use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id (or prefix) or "latest"
    pub snapshot: String,
    /// Only list below these paths
    pub dirs: Vec<String>,
    /// Show mode, owner, size and time
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let (repo, snap) = open_snapshot(g, &a.snapshot, &a.filter)?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if g.json {
        let mut v = serde_json::to_value(&snap.snap)?;
        v["id"] = snap.id.to_hex().into();
        v["short_id"] = snap.id.short().into();
        v["struct_type"] = "snapshot".into();
        writeln!(out, "{v}")?;
    } else if !g.quiet {
        writeln!(
            out,
            "snapshot {} of {:?} at {}:",
            snap.id.short(),
            snap.snap.paths,
            snap.snap.time
        )?;
    }
    let dirs: Vec<&Path> = a.dirs.iter().map(Path::new).collect();
    walk_tree(&repo, &snap.snap.tree, Path::new("/"), &mut |e| {
        let shown = dirs.is_empty() || dirs.iter().any(|d| e.path.starts_with(d));
        let descend = dirs.is_empty()
            || dirs
                .iter()
                .any(|d| e.path.starts_with(d) || d.starts_with(&e.path));
        if shown {
            let r = if g.json {
                let n = &e.node;
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "name": n.name_lossy(),
                        "type": n.kind.as_str(),
                        "path": e.path.to_string_lossy(),
                        "uid": n.uid,
                        "gid": n.gid,
                        "size": if n.kind == NodeType::File { Some(n.size) } else { None },
                        "mode": n.mode,
                        "permissions": mode_string(n.mode),
                        "mtime": n.mtime,
                        "atime": n.atime,
                        "ctime": n.ctime,
                        "inode": n.inode,
                        "struct_type": "node",
                    })
                )
            } else if a.long {
                let n = &e.node;
                writeln!(
                    out,
                    "{} {:>8} {:>8} {:>12} {} {}{}",
                    mode_string(n.mode),
                    if n.user.is_empty() {
                        n.uid.to_string()
                    } else {
                        n.user.clone()
                    },
                    if n.group.is_empty() {
                        n.gid.to_string()
                    } else {
                        n.group.clone()
                    },
                    n.size,
                    n.mtime.format("%Y-%m-%d %H:%M:%S"),
                    e.path.display(),
                    if n.kind == NodeType::Symlink {
                        format!(" -> {}", String::from_utf8_lossy(&n.link_target))
                    } else {
                        String::new()
                    }
                )
            } else {
                writeln!(out, "{}", e.path.display())
            };
            r.map_err(|e| coffer_repo::RepoError::Invalid(format!("writing output: {e}")))?;
        }
        Ok(descend)
    })
    .map_err(|e| match e {
        coffer_repo::RepoError::Invalid(m) if m.contains("Broken pipe") => {
            anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        e => e.into(),
    })?;
    out.flush()?;
    Ok(0)
}

/// `drwxr-xr-x` from a Go file mode.
pub fn mode_string(mode: u32) -> String {
    use coffer_repo::tree::gomode::*;
    let t = if mode & DIR != 0 {
        'd'
    } else if mode & SYMLINK != 0 {
        'L'
    } else if mode & CHAR_DEVICE != 0 {
        'c'
    } else if mode & DEVICE != 0 {
        'D'
    } else if mode & NAMED_PIPE != 0 {
        'p'
    } else if mode & SOCKET != 0 {
        'S'
    } else {
        '-'
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}
