//! `restore --verify`: every restored file is read back and each of its blobs hashed against
//! the snapshot, on several threads.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use coffer_repo::pack::BlobType;
use coffer_repo::tree::Node;
use coffer_repo::{Id, Repository};

/// Verifies `files` (path on disk, node); returns how many matched. Each mismatch goes to
/// `err`.
pub(super) fn verify(
    repo: &Repository,
    files: &[(std::path::PathBuf, &Node)],
    threads: usize,
    err: &(dyn Fn(String) + Sync),
) -> u64 {
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((d, node)) = files.get(i) else {
                    return;
                };
                match verify_file(repo, d, node) {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => err(format!("verify {}: {e}", d.display())),
                }
            });
        }
    });
    done.load(Ordering::Relaxed)
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
