//! Fills an existing repository with a synthetic but valid backup for scale benchmarks
//! (`bench/scale.sh`): BLOBS small distinct data blobs, referenced by files of 1,000 blobs each
//! in directories of 100 files, and SNAPSHOTS snapshot files of that tree one hour apart. The
//! result passes `coffer check` and `restic check`, so that opening, checking and backing up
//! into a repository whose index holds ten million blobs can be measured without storing ten
//! terabytes.
//!
//! Usage: `synth_repo REPOSITORY PASSWORD BLOBS SNAPSHOTS [BLOBS_PER_PACK]`
//!
//! BLOBS_PER_PACK (default 16) sets the pack size so that packs hold as many blobs as a real
//! repository's: 16 MiB packs of 1 MiB chunks hold about 16, so ten million blobs make
//! 625,000 pack files, which is what listing and checking a 10 TB repository deals with.

use std::sync::Arc;

use chrono::{Duration, Utc};
use coffer_repo::backend::{FileType, Location};
use coffer_repo::pack::BlobType;
use coffer_repo::snapshot::Snapshot;
use coffer_repo::tree::{Node, NodeType, Tree};
use coffer_repo::{Id, Packer, Repository, DEFAULT_PACK_SIZE};

const BLOBS_PER_FILE: u64 = 1_000;
const FILES_PER_DIR: u64 = 100;

fn main() {
    if let Err(e) = run() {
        eprintln!("synth_repo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (repo, password, blobs, snapshots, per_pack): (_, _, _, _, usize) = match args.as_slice() {
        [r, p, b, s] => (r, p, b, s, 16),
        [r, p, b, s, n] => (r, p, b, s, n.parse()?),
        _ => {
            return Err(
                "usage: synth_repo REPOSITORY PASSWORD BLOBS SNAPSHOTS [BLOBS_PER_PACK]".into(),
            )
        }
    };
    let blobs: u64 = blobs.parse()?;
    let snapshots: u64 = snapshots.parse()?;
    let repo = Arc::new(Repository::open(&Location::parse(repo)?, password)?);
    repo.load_index()?;
    // A sealed blob here is about 90 bytes (48 of text, 16 of nonce, 16 of MAC, and more
    // when it does not compress).
    let pack_size = if per_pack == 0 {
        DEFAULT_PACK_SIZE
    } else {
        per_pack * 80
    };
    let packer = Packer::new(Arc::clone(&repo), pack_size, 2);
    let started = std::time::Instant::now();

    // A run-specific salt keeps a second run from deduplicating against the first.
    let salt: u64 = rand::random();
    let mut root = Tree::default();
    let mut dir = Tree::default();
    let mut file = Node::new(Vec::new(), NodeType::File);
    let mut content = Vec::with_capacity(BLOBS_PER_FILE as usize);
    for i in 0..blobs {
        let plain = format!("synthetic blob {salt:016x} {i:012}\n");
        let (id, _) = packer.save_blob(BlobType::Data, plain.as_bytes())?;
        content.push(id);
        file.size += plain.len() as u64;
        let last = i + 1 == blobs;
        if content.len() as u64 == BLOBS_PER_FILE || last {
            file.name = format!("file-{:03}", dir.nodes.len()).into_bytes();
            file.mode = 0o644;
            file.content = Some(std::mem::take(&mut content));
            dir.nodes.push(std::mem::replace(
                &mut file,
                Node::new(Vec::new(), NodeType::File),
            ));
        }
        if dir.nodes.len() as u64 == FILES_PER_DIR || (last && !dir.nodes.is_empty()) {
            let (tree, _) = packer.save_blob(BlobType::Tree, &dir.to_blob())?;
            let mut node = Node::new(
                format!("dir-{:06}", root.nodes.len()).into_bytes(),
                NodeType::Dir,
            );
            node.mode = 0o755 | coffer_repo::tree::gomode::DIR;
            node.subtree = Some(tree);
            root.nodes.push(node);
            dir = Tree::default();
        }
        if i % 1_000_000 == 999_999 {
            eprintln!("{} blobs in {:.1?}", i + 1, started.elapsed());
        }
    }
    let (root_id, _) = packer.save_blob(BlobType::Tree, &root.to_blob())?;
    let stats = packer.flush()?;

    let now = Utc::now().fixed_offset();
    for k in 0..snapshots {
        let snap = Snapshot {
            time: now - Duration::hours(k as i64),
            parent: None,
            tree: root_id,
            paths: vec!["/synthetic".into()],
            hostname: "synth".into(),
            username: "root".into(),
            uid: 0,
            gid: 0,
            excludes: vec![],
            tags: vec![],
            original: None,
            program_version: Some("coffer synth_repo".into()),
            summary: None,
            extra: Default::default(),
        };
        let _: Id = repo.save_json(FileType::Snapshot, &snap)?;
    }
    eprintln!(
        "{} data blobs in {} packs and {} index files, {snapshots} snapshots, {:.1?}",
        stats.data_blobs,
        stats.packs,
        stats.index_files,
        started.elapsed()
    );
    Ok(())
}
