//! Small write-side helpers shared by prune, repair and copy: writing a complete set of index
//! files, and deleting many files at once.

use coffer_repo::backend::FileType;
use coffer_repo::index::{IndexFile, IndexPack};
use coffer_repo::pack::PackedBlob;
use coffer_repo::{Id, Repository};

use crate::error::Result;
use crate::progress::Progress;

// restic starts a new index file after this many blobs; so do we.
const BLOBS_PER_INDEX_FILE: usize = 50_000;

/// Writes `packs` as index files of at most 50,000 blobs each, every file naming
/// `supersedes` (the index files it replaces). Returns the ids written.
pub fn write_index(
    repo: &Repository,
    packs: impl IntoIterator<Item = IndexPack>,
    supersedes: &[Id],
) -> Result<Vec<Id>> {
    let mut written = Vec::new();
    let mut file = IndexFile {
        supersedes: supersedes.to_vec(),
        packs: Vec::new(),
    };
    let mut blobs = 0;
    for p in packs {
        blobs += p.blobs.len();
        file.packs.push(p);
        if blobs >= BLOBS_PER_INDEX_FILE {
            written.push(repo.save_json(FileType::Index, &file)?);
            file.packs.clear();
            blobs = 0;
        }
    }
    if !file.packs.is_empty() {
        written.push(repo.save_json(FileType::Index, &file)?);
    }
    Ok(written)
}

/// Deletes files of one type (and their cached copies), several at a time. A file that is
/// already gone counts as deleted, so an interrupted run can simply be repeated.
pub fn remove_files(repo: &Repository, t: FileType, ids: &[Id], progress: &Progress) -> Result<()> {
    repo.parallel_map(ids, |id| {
        let name = id.to_hex();
        match repo.backend().remove(t, &name) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(c) = repo.cache() {
            c.remove(t, &name);
        }
        progress.add(1, 0);
        Ok(())
    })?;
    Ok(())
}

// Header bytes of a pack: encrypted entries (37 or 41 bytes each) plus the 4-byte length.
pub(crate) fn header_size(blobs: &[PackedBlob]) -> u64 {
    let entries: u64 = blobs
        .iter()
        .map(|b| {
            if b.uncompressed_length.is_some() {
                41
            } else {
                37
            }
        })
        .sum();
    entries + 32 + 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_repo::pack::BlobType;

    #[test]
    fn header_size_matches_format() {
        let b = PackedBlob {
            id: Id::hash(b"x"),
            kind: BlobType::Data,
            offset: 0,
            length: 10,
            uncompressed_length: None,
        };
        assert_eq!(header_size(&[b]), 37 + 32 + 4);
    }
}
