//! check finds damage and names what depends on it; repair saves the rest.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::util::*;

fn packs(repo: &Repo) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    let data = repo.dir.as_ref().unwrap().join("data");
    for sub in std::fs::read_dir(&data).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            v.push(f.path());
        }
    }
    v.sort();
    v
}

/// Whether a pack holds tree blobs (from `coffer cat pack`).
fn is_tree_pack(repo: &Repo, pack: &Path) -> bool {
    let name = pack.file_name().unwrap().to_str().unwrap();
    let r = run(&mut repo.coffer(["cat", "pack", name])).ok();
    r.stdout_str().contains("\"tree\"")
}

fn flip(pack: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new().write(true).open(pack).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[0xde, 0xad, 0xbe, 0xef]).unwrap();
}

#[test]
fn corruption_is_found_named_and_repaired() {
    let tmp = tempdir("coffer-check-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let src = tmp.path().join("src");
    random_files(&src.join("big"), 72 << 20, 3 << 20, 11);
    repo.backup([&src]);
    random_files(&src.join("more"), 20 << 20, 4 << 20, 99);
    repo.backup([&src]);
    // Packs damaged below are chosen among these, so that the small files of the third backup
    // (in packs of their own) always survive.
    let early = packs(&repo);
    for i in 0..50 {
        write(
            &src.join("small").join(format!("f{i}.txt")),
            format!("small file {i}\n").repeat(100).as_bytes(),
        );
    }
    repo.backup([&src]);
    run(&mut repo.coffer(["check", "--read-data"])).ok();

    // Subsets: the two halves read every pack once.
    let mut read = 0;
    for part in ["1/2", "2/2"] {
        let r = run(&mut repo.coffer(["--json", "check", "--read-data-subset", part])).ok();
        read += r.summary()["packs_read"].as_u64().unwrap();
    }
    let all = packs(&repo);
    assert_eq!(read as usize, all.len());

    // Damage three data packs (a few bytes each) and delete a fourth.
    let data_packs: Vec<_> = early
        .iter()
        .filter(|p| !is_tree_pack(&repo, p))
        .cloned()
        .collect();
    assert!(
        data_packs.len() >= 5,
        "want at least 5 data packs, got {}",
        data_packs.len()
    );
    let flipped = &data_packs[..3];
    for (i, p) in flipped.iter().enumerate() {
        flip(p, 1000 + 300_000 * i as u64);
    }
    let deleted = &data_packs[3];
    std::fs::remove_file(deleted).unwrap();
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();

    // Structure alone finds the missing pack.
    let r = run(&mut repo.coffer(["check"])).expect_code(1);
    assert!(r.output().contains(&name(deleted)), "{}", r.describe());

    let r = run(&mut repo.coffer(["--json", "check", "--read-data"])).expect_code(1);
    let s = r.summary();
    let damaged: Vec<String> = s["damaged_packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pack"].as_str().unwrap().to_string())
        .collect();
    for p in flipped {
        assert!(
            damaged.contains(&name(p)),
            "pack {} not reported: {s}",
            name(p)
        );
    }
    let errors = s["errors"].to_string();
    assert!(
        errors.contains(&name(deleted)),
        "missing pack not reported: {errors}"
    );
    let affected = s["affected_snapshots"].as_array().unwrap();
    assert_eq!(
        affected.len(),
        3,
        "every snapshot depends on damaged data: {s}"
    );
    for a in affected {
        assert!(a["affected"].as_u64().unwrap() >= 1);
        let f = a["files"][0].as_str().unwrap();
        assert!(f.contains("/big/random-"), "affected file {f}");
    }

    // Repair: rebuild the index from what can be read, then rewrite the snapshots.
    run(&mut repo.coffer(["--json", "repair", "index"])).ok();
    let rs = run(&mut repo.coffer(["--json", "repair", "snapshots", "--forget"])).ok();
    let repaired = rs.summary()["repaired"].as_array().unwrap().clone();
    assert_eq!(repaired.len(), 3, "{}", rs.describe());
    let dropped: Vec<String> = repaired[2]["dropped_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!dropped.is_empty());
    run(&mut repo.coffer(["check", "--read-data"])).ok();
    repo.restic_check(true);

    // What survives restores, byte for byte; what was dropped is absent.
    let target = tmp.path().join("restored");
    repo.restore_verified(&target);
    let got = restored_path(&target, &src);
    let mut compared = 0;
    for f in crate::prune::rel_files(&src) {
        let lost = dropped.iter().any(|d| d.ends_with(&format!("/{f}")));
        assert_eq!(got.join(&f).exists(), !lost, "{f}: lost={lost}");
        if !lost {
            assert!(
                first_difference(&src.join(&f), &got.join(&f)).is_none(),
                "{f} differs"
            );
            compared += 1;
        }
    }
    eprintln!(
        "{} files dropped, {compared} restored intact",
        dropped.len()
    );
    assert!(compared >= 50);
    // prune removes the salvaged packs' damaged originals.
    run(&mut repo.coffer(["prune"])).ok();
    repo.restic_check(true);
}

#[test]
fn check_names_what_a_missing_or_truncated_pack_costs() {
    let tmp = tempdir("coffer-check-missing-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let src = tmp.path().join("src");
    random_files(&src, 60 << 20, 3 << 20, 21);
    repo.backup([&src]);
    let data_packs: Vec<_> = packs(&repo)
        .into_iter()
        .filter(|p| !is_tree_pack(&repo, p))
        .collect();
    assert!(data_packs.len() >= 2, "{data_packs:?}");
    let gone = &data_packs[0];
    let gone_name = gone.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::remove_file(gone).unwrap();
    // Without --read-data: structure alone names the pack, the snapshot and the files.
    let r = run(&mut repo.coffer(["check"])).expect_code(1);
    assert!(
        r.stderr.contains(&gone_name)
            && r.stderr.contains("missing from storage: ")
            && r.stderr.contains("data blobs")
            && r.stderr.contains("depends on damaged or missing data"),
        "{}",
        r.describe()
    );
    let r = run(&mut repo.coffer(["--json", "check"])).expect_code(1);
    let s = r.summary();
    let affected = s["affected_snapshots"].as_array().unwrap();
    assert_eq!(affected.len(), 1, "{s:#}");
    let files = affected[0]["files"].as_array().unwrap();
    assert!(!files.is_empty(), "{s:#}");
    for f in files {
        let name = f.as_str().unwrap().rsplit('/').next().unwrap().to_string();
        assert!(src.join(&name).is_file(), "{name} is not a source file");
    }

    // A truncated pack: the blobs past the cut are named as lost.
    let cut = &data_packs[1];
    let len = std::fs::metadata(cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(cut)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let r = run(&mut repo.coffer(["check"])).expect_code(1);
    assert!(r.stderr.contains("truncated: "), "{}", r.describe());
    let r = run(&mut repo.coffer(["--json", "check"])).expect_code(1);
    let n: u64 = r.summary()["affected_snapshots"][0]["affected"]
        .as_u64()
        .unwrap();
    assert!(
        n as usize > files.len(),
        "the truncated pack adds files: {n}"
    );
}
