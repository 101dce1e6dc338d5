//! copy: local to S3 and back, deduplicated, and readable by restic.

use crate::util::*;

#[test]
fn copy_local_to_s3_and_back() {
    let tmp = tempdir("coffer-copy-");
    let local = Repo::local(&tmp.path().join("local"));
    local.init();
    let src = tmp.path().join("src");
    random_files(&src.join("data"), 24 << 20, 4 << 20, 3);
    write(&src.join("notes.txt"), b"first\n");
    local.backup([&src]);
    write(&src.join("notes.txt"), b"second\n");
    local.backup([&src]);

    let s3 = Repo::s3(&format!("copy-{}", std::process::id()));
    let from = |cmd: &mut std::process::Command, repo: &Repo| {
        cmd.args(["--from-repo", &repo.url])
            .env("COFFER_FROM_PASSWORD", PASSWORD);
    };
    let mut init = s3.coffer(["init", "--copy-chunker-params"]);
    from(&mut init, &local);
    run(&mut init).ok();

    let mut c = s3.coffer(["--json", "copy"]);
    from(&mut c, &local);
    let r = run(&mut c).ok();
    assert_eq!(
        r.summary()["copied"].as_array().unwrap().len(),
        2,
        "{}",
        r.describe()
    );
    // A second copy transfers nothing.
    let mut c = s3.coffer(["--json", "copy"]);
    from(&mut c, &local);
    let r = run(&mut c).ok();
    assert_eq!(r.summary()["skipped"].as_array().unwrap().len(), 2);
    assert_eq!(r.summary()["blobs_copied"], 0);

    // Same chunker parameters: backing the same tree up into the copy adds no file data.
    let b = s3.backup([&src]);
    assert!(
        b["data_added"].as_u64().unwrap() < 64 << 10,
        "backup after copy added {b}"
    );

    // restic reads the copy.
    s3.restic_check(true);
    let rt = tmp.path().join("restic-restore");
    run(&mut s3.restic(["restore", "latest", "--target", rt.to_str().unwrap()])).ok();
    assert_trees_equal(
        &src,
        &restored_path(&rt, &src),
        Restorer::Restic014,
        "restic restore of the S3 copy",
    );

    // And back into a new local repository, restored by coffer.
    let back = Repo::local(&tmp.path().join("back"));
    back.init();
    let mut c = back.coffer(["copy", "latest"]);
    from(&mut c, &s3);
    c.env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET);
    run(&mut c).ok();
    assert_eq!(back.snapshot_ids().len(), 1);
    let ct = tmp.path().join("coffer-restore");
    back.restore_verified(&ct);
    assert_trees_equal(
        &src,
        &restored_path(&ct, &src),
        Restorer::Coffer,
        "coffer restore of the copy of the copy",
    );
    back.restic_check(true);
}
