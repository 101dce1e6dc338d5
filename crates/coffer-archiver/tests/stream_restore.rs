//! The restore read path of one large file: the read-ahead stream ([`FileReader`], what
//! `pg_restore`, `mariadb` and `coffer dump` are fed from) and the segment-parallel restorer.
//! Both must give back exactly the bytes that were stored, in order, whatever the thread
//! count and read sizes; a damaged blob must end the stream with an error after exactly the
//! bytes before it; and a reader dropped half-way must not hang.

// A test fails by panicking: unwrap is how these say what they expect.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use coffer_archiver::filter::PatternSet;
use coffer_archiver::{
    backup, restore, BackupOptions, FileReader, Progress, RestoreOptions, StreamSource,
};
use coffer_repo::pack::BlobType;
use coffer_repo::tree::Node;
use coffer_repo::Repository;
use common::{new_repo, Noise};

/// Random bytes with a repeated stretch, so that one blob appears twice in the content.
fn random_sample() -> Vec<u8> {
    let mut noise = Noise(0x2545f4914f6cdd1d);
    let mut random = |n: usize| noise.bytes(n);
    let mut data = random(7 << 20);
    let again = data[2 << 20..5 << 20].to_vec();
    data.extend(again);
    data.extend(random(77_777));
    data
}

/// Rows of a dump: compresses so well that all of it fits in one pack.
fn compressible_sample() -> Vec<u8> {
    let mut data = Vec::new();
    let mut i = 0u64;
    while data.len() < 12 << 20 {
        data.extend(format!("{i}\t{}\t{}\t                    \n", i % 97, i * 7).as_bytes());
        i += 1;
    }
    data
}

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Arc<Repository>,
    node: Node,
    tree: coffer_repo::snapshot::Snapshot,
    root: std::path::PathBuf,
}

fn stored(data: &[u8]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = new_repo(dir.path());
    let opts = BackupOptions {
        streams: vec![StreamSource::reader(
            "big.dump",
            std::io::Cursor::new(data.to_vec()),
        )],
        ..Default::default()
    };
    let r = backup(
        Arc::clone(&repo),
        opts,
        Arc::new(Progress::default()),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let root = repo.load_tree(&r.snapshot.tree).unwrap();
    let node = root
        .nodes
        .into_iter()
        .find(|n| n.name == b"big.dump")
        .unwrap();
    Fixture {
        root: dir.path().to_path_buf(),
        _dir: dir,
        repo,
        node,
        tree: r.snapshot,
    }
}

/// Reads everything in reads of `step` bytes.
fn read_all(mut r: impl Read, step: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; step];
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn stream_gives_the_bytes_in_order_with_any_thread_count() {
    for data in [random_sample(), compressible_sample()] {
        let f = stored(&data);
        f.repo.load_index().unwrap();
        let blobs = f.node.content.as_ref().unwrap().len();
        assert!(blobs > 2, "the sample should make several chunks");
        for (threads, step) in [(1, 1 << 20), (3, 4093), (8, 333_333)] {
            let progress = Arc::new(Progress::default());
            let r = FileReader::with_threads(Arc::clone(&f.repo), &f.node, threads)
                .with_progress(Arc::clone(&progress), "big.dump");
            let got = read_all(r, step).unwrap();
            assert!(
                got == data,
                "{threads} threads, reads of {step}: bytes differ"
            );
            let p = progress.snapshot();
            assert_eq!(p.bytes_done, data.len() as u64);
            assert_eq!(p.total_bytes, data.len() as u64);
            assert_eq!(p.files_done, 1);
        }
        let mut out = Vec::new();
        coffer_archiver::copy_stream(FileReader::new(Arc::clone(&f.repo), &f.node), &mut out)
            .unwrap();
        assert!(out == data, "copy_stream: bytes differ");
    }
}

#[test]
fn one_large_file_restores_exactly() {
    for data in [random_sample(), compressible_sample()] {
        let f = stored(&data);
        let target = f.root.join("out");
        let opts = RestoreOptions {
            target: target.clone(),
            includes: PatternSet::new::<&str>(&[]).unwrap(),
            excludes: PatternSet::new::<&str>(&[]).unwrap(),
            verify: true,
            threads: 4,
            keep_damaged: false,
        };
        let r = restore(
            Arc::clone(&f.repo),
            &f.tree,
            &opts,
            Arc::new(Progress::default()),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        assert_eq!((r.files, r.damaged.len()), (1, 0), "{:?}", r.errors);
        assert_eq!(r.verified_files, 1);
        let got = std::fs::read(target.join("big.dump")).unwrap();
        assert!(got == data, "restored bytes differ");
    }
}

#[test]
fn a_damaged_blob_ends_the_stream_after_the_bytes_before_it() {
    let data = random_sample();
    let f = stored(&data);
    f.repo.load_index().unwrap();
    let content = f.node.content.clone().unwrap();
    // A blob in the middle, whose first use comes after several others.
    let k = content.len() / 2;
    let id = content[k];
    let first = content.iter().position(|c| *c == id).unwrap();
    let before: usize = content[..first]
        .iter()
        .map(|c| f.repo.load_blob(c, BlobType::Data).unwrap().len())
        .sum();
    let loc = f.repo.index().lookup(&id, BlobType::Data).unwrap();
    let pack = f
        .root
        .join("repo/data")
        .join(&loc.pack.to_hex()[..2])
        .join(loc.pack.to_hex());
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[loc.blob.offset as usize + 40] ^= 0x55;
    std::fs::write(&pack, bytes).unwrap();

    let mut r = FileReader::with_threads(Arc::clone(&f.repo), &f.node, 4);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let err = loop {
        match r.read(&mut buf) {
            Ok(0) => panic!("the stream ended without the damaged blob's error"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(got.len(), before, "bytes delivered before the damaged blob");
    assert!(got[..] == data[..before]);
    assert!(err.to_string().contains(&id.to_hex()[..8]), "{err}");
    assert!(r.read(&mut buf).is_err(), "the error stays");
}

#[test]
fn a_reader_dropped_half_way_stops_its_threads() {
    let data = random_sample();
    let f = stored(&data);
    f.repo.load_index().unwrap();
    for _ in 0..20 {
        let mut r = FileReader::with_threads(Arc::clone(&f.repo), &f.node, 4);
        let mut buf = vec![0u8; 100_000];
        r.read_exact(&mut buf).unwrap();
        assert!(buf[..] == data[..100_000]);
        drop(r);
    }
    // Never read at all: nothing was started.
    drop(FileReader::new(Arc::clone(&f.repo), &f.node));
}
