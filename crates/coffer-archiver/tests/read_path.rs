//! The backup read path reads straight into pooled chunk buffers and copies only what follows
//! a cut. Whatever sizes the reader returns, the chunks must be exactly those of the
//! reference chunker (restic's boundaries, hence deduplication with restic), and the stored
//! blobs must give the data back.

// A test fails by panicking: unwrap is how these say what they expect.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use coffer_archiver::{backup, BackupOptions, Progress, StreamSource};
use coffer_chunker::ChunkReader;
use coffer_repo::pack::BlobType;
use coffer_repo::{Id, Repository};
use common::{new_repo, Noise};

/// Returns reads of pseudo-random length, from 1 byte to 700 KiB.
struct Jagged {
    data: Arc<Vec<u8>>,
    pos: usize,
    state: u64,
}

impl Read for Jagged {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.state = self
            .state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let want = 1 + (self.state >> 33) as usize % (700 << 10);
        let n = want.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Random bytes with a long zero run (forces a cut at the maximum chunk size) and a
/// repeated stretch (the second copy's chunks are deduplicated, so their buffers go straight
/// back to the pool).
fn sample() -> Vec<u8> {
    let mut noise = Noise(0x9e3779b97f4a7c15);
    let mut random = |n: usize| noise.bytes(n);
    let mut data = random(13 << 20);
    data.extend(std::iter::repeat_n(0u8, 9 << 20));
    let again = data[..6 << 20].to_vec();
    data.extend(random(5 << 20));
    data.extend(again);
    data.extend(random(123_457));
    data
}

fn file_content(repo: &Repository, tree: &Id, name: &str) -> Vec<Id> {
    let t = repo.load_tree(tree).expect("root tree");
    let node = t
        .nodes
        .iter()
        .find(|n| n.name == name.as_bytes())
        .expect("stream file in the snapshot");
    node.content.clone().expect("file content")
}

#[test]
fn jagged_reads_give_reference_chunks_and_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = new_repo(dir.path());
    let data = Arc::new(sample());

    let want: Vec<Id> = ChunkReader::new(&data[..], repo.config().chunker_polynomial)
        .map(|c| Id::hash(&c.expect("chunk")))
        .collect();
    assert!(want.len() > 10, "sample should make many chunks");

    for round in 0..2u64 {
        let reader = Jagged {
            data: Arc::clone(&data),
            pos: 0,
            state: round + 7,
        };
        let opts = BackupOptions {
            streams: vec![StreamSource::reader("data.bin", reader)],
            ..Default::default()
        };
        let r = backup(
            Arc::clone(&repo),
            opts,
            Arc::new(Progress::default()),
            Arc::new(AtomicBool::new(false)),
        )
        .expect("backup");
        let got = file_content(&repo, &r.snapshot.tree, "data.bin");
        assert_eq!(got, want, "round {round}: chunk boundaries differ");
        if round == 1 {
            assert_eq!(
                r.summary.data_blobs, 0,
                "second round stores no new data blob"
            );
        }
    }

    let mut restored = Vec::with_capacity(data.len());
    for id in &want {
        restored.extend(repo.load_blob(id, BlobType::Data).expect("blob"));
    }
    assert!(restored == *data, "restored bytes differ");
}

/// A repository lock whose second look found a racing prune stops the backup at the commit:
/// the data was read and stored, but no snapshot refers to it. (The lock's own tests race a
/// real prune's lock; here the confirmation reports what such a race reports.)
#[test]
fn failed_lock_confirmation_leaves_no_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = new_repo(dir.path());
    let location = repo.backend().location().to_string();
    let opts = BackupOptions {
        streams: vec![StreamSource::reader(
            "data.bin",
            std::io::Cursor::new(Noise(3).bytes(3 << 20)),
        )],
        confirm: Some(Box::new(move || {
            Err(coffer_repo::RepoError::Locked {
                location: location.clone(),
                kind: " exclusively",
                holder: "a racing prune".into(),
            })
        })),
        ..Default::default()
    };
    let Err(err) = backup(
        Arc::clone(&repo),
        opts,
        Arc::new(Progress::default()),
        Arc::new(AtomicBool::new(false)),
    ) else {
        panic!("the backup must fail");
    };
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(repo.snapshots().unwrap().is_empty());
}
