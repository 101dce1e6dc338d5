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
