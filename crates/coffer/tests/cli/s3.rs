//! The full tree through an S3 repository (SeaweedFS on the loopback interface).

use std::time::Instant;

use crate::util::*;

#[test]
fn full_tree_round_trip_s3() {
    let tree = full_tree();
    let repo = Repo::s3("roundtrip");
    repo.init();
    let tmp = tempdir("coffer-s3-");

    let t = Instant::now();
    let s = repo.backup([tree.root.to_str().unwrap()]);
    eprintln!("s3: backup took {:?}: {s}", t.elapsed());
    assert_eq!(s["files_new"], tree.files, "files_new: {s}");
    assert_eq!(s["warnings"], 0, "warnings: {s}");

    let t = Instant::now();
    let target = tmp.path().join("restore");
    repo.restore_verified(&target);
    eprintln!("s3: restore --verify took {:?}", t.elapsed());
    assert_trees_equal(
        &tree.root,
        &restored_path(&target, &tree.root),
        Restorer::Coffer,
        "coffer restore from S3",
    );
    let sp = restored_path(&target, &tree.sparse);
    assert!(
        allocated(&sp) < 16 << 20,
        "{}: restored sparse file uses {} bytes on disk",
        sp.display(),
        allocated(&sp)
    );
    drop(std::fs::remove_dir_all(&target));

    let t = Instant::now();
    repo.restic_check(true);
    eprintln!("s3: restic check --read-data took {:?}", t.elapsed());

    let t = Instant::now();
    let rtarget = tmp.path().join("restic-restore");
    run(&mut repo.restic(["restore", "latest", "--target", rtarget.to_str().unwrap()])).ok();
    eprintln!("s3: restic restore took {:?}", t.elapsed());
    assert_trees_equal(
        &tree.root,
        &restored_path(&rtarget, &tree.root),
        Restorer::Restic014,
        "restic restore of a coffer snapshot from S3",
    );
}

/// The lifecycle commands on S3: forget + prune, check --read-data, repair, tag, stats.
#[test]
fn lifecycle_on_s3() {
    let tmp = tempdir("coffer-s3-life-");
    let repo = Repo::s3(&format!("life-{}", std::process::id()));
    repo.init();
    let src = tmp.path().join("src");
    for i in 0..3u64 {
        random_files(&src.join(format!("gen{i}")), 6 << 20, 2 << 20, 40 + i);
        if i > 0 {
            std::fs::remove_dir_all(src.join(format!("gen{}", i - 1))).unwrap();
        }
        repo.backup([&src]);
    }
    let r = run(&mut repo.coffer(["--json", "forget", "--keep-last", "1", "--prune"])).ok();
    assert!(r.stdout_str().contains("bytes_freed"), "{}", r.describe());
    assert_eq!(repo.snapshot_ids().len(), 1);
    let c = run(&mut repo.coffer(["--json", "check", "--read-data"])).ok();
    assert_eq!(c.summary()["ok"], true);
    assert_eq!(
        c.summary()["unreferenced_packs"].as_array().unwrap().len(),
        0
    );
    run(&mut repo.coffer(["repair", "index", "--headers-only"])).ok();
    run(&mut repo.coffer(["tag", "--add", "kept", "latest"])).ok();
    let st = run(&mut repo.coffer(["--json", "stats", "--mode", "raw-data"])).ok();
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("stats json");
    assert_eq!(v["snapshots_count"], 1, "{v}");
    repo.restic_check(true);
    let target = tmp.path().join("restore");
    repo.restore_verified(&target);
    assert_trees_equal(
        &src,
        &restored_path(&target, &src),
        Restorer::Coffer,
        "S3 after prune",
    );
}

/// The S3 secret key and the repository password appear in no output at any verbosity (a
/// credential provider's debug line printed the secret key whole).
#[test]
fn s3_secrets_never_reach_the_output() {
    let tmp = tempdir("coffer-s3-secret-");
    let repo = Repo::s3(&format!("secret-{}", std::process::id()));
    run(&mut repo.coffer(["-vv", "init"])).ok();
    let src = tmp.path().join("src");
    write(&src.join("a.txt"), b"a\n");
    for args in [
        vec!["-vv", "backup"],
        vec!["-vv", "--json", "backup"],
        vec!["-vv", "--json", "snapshots"],
        vec!["-vv", "check"],
    ] {
        let mut c = repo.coffer(&args);
        if args.contains(&"backup") {
            c.arg(&src);
        }
        let r = run(&mut c).ok();
        let out = r.output();
        assert!(
            out.contains("DEBUG") || args.contains(&"snapshots"),
            "no debug output at -vv: {}",
            r.describe()
        );
        for secret in [S3_SECRET, PASSWORD] {
            assert!(
                !out.contains(secret),
                "{args:?} printed {secret:?}: {}",
                r.describe()
            );
        }
    }
}
