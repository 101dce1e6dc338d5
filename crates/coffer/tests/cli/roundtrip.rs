//! Local repository round trips: every kind of entry comes back as it was, restic reads what
//! coffer wrote, an unchanged tree is not read again, and the path patterns work.

use std::fs::File;
use std::process::Stdio;
use std::time::Instant;

use crate::util::*;

#[test]
fn full_tree_round_trip_local() {
    let tree = full_tree();
    let tmp = tempdir("coffer-roundtrip-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();

    // First backup.
    let t = Instant::now();
    let src = tree.root.to_str().expect("UTF-8 root");
    let s1 = repo.backup([src]);
    eprintln!("roundtrip: backup took {:?}: {s1}", t.elapsed());
    assert_eq!(s1["files_new"], tree.files, "files_new of the first backup");
    assert_eq!(s1["warnings"], 0, "warnings of the first backup");
    let big = tree.bytes - SPARSE_SIZE;
    let packed = s1["data_added_packed"].as_u64().expect("data_added_packed");
    let added = s1["data_added"].as_u64().expect("data_added");
    assert!(
        packed < added,
        "compression had no effect: data_added {added}, data_added_packed {packed}"
    );
    assert!(
        added < big + (8 << 20),
        "data_added {added} is more than the non-sparse content ({big}) plus the zero chunk"
    );

    // Restore with --verify and compare everything.
    let t = Instant::now();
    let target = tmp.path().join("restore");
    let sum = repo.restore_verified(&target);
    eprintln!("roundtrip: restore --verify took {:?}", t.elapsed());
    assert_eq!(
        sum["files_verified"], sum["files_restored"],
        "--verify did not check every restored file: {sum}"
    );
    let restored = restored_path(&target, &tree.root);
    assert_trees_equal(
        &tree.root,
        &restored,
        Restorer::Coffer,
        "coffer restore of a local repository",
    );

    // Sparse files stay sparse.
    let sp = restored_path(&target, &tree.sparse);
    assert!(
        allocated(&tree.sparse) < 16 << 20,
        "test setup: the source sparse file is not sparse on this file system"
    );
    assert!(
        allocated(&sp) < 16 << 20,
        "{}: restored sparse file uses {} bytes on disk for a {} byte file",
        sp.display(),
        allocated(&sp),
        SPARSE_SIZE
    );
    drop(std::fs::remove_dir_all(&target));

    // dump streams one file.
    let dumped = tmp.path().join("dumped");
    let mut c = repo.coffer(["dump", "latest", tree.big.to_str().unwrap()]);
    c.stdout(File::create(&dumped).expect("dump output"))
        .stderr(Stdio::piped());
    let out = c.output().expect("running dump");
    assert!(
        out.status.success(),
        "coffer dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(d) = first_difference(&tree.big, &dumped) {
        panic!("coffer dump of {}: {d}", tree.big.display());
    }
    drop(std::fs::remove_file(&dumped));
    let small = run(&mut repo.coffer(["dump", "latest", tree.medium.to_str().unwrap()])).ok();
    assert!(
        small.stdout == std::fs::read(&tree.medium).unwrap(),
        "coffer dump of {} returned different bytes",
        tree.medium.display()
    );

    // restic accepts the repository and restores the same tree.
    let t = Instant::now();
    repo.restic_check(true);
    eprintln!("roundtrip: restic check --read-data took {:?}", t.elapsed());
    let t = Instant::now();
    let rtarget = tmp.path().join("restic-restore");
    run(&mut repo.restic(["restore", "latest", "--target", rtarget.to_str().unwrap()])).ok();
    eprintln!("roundtrip: restic restore took {:?}", t.elapsed());
    assert_trees_equal(
        &tree.root,
        &restored_path(&rtarget, &tree.root),
        Restorer::Restic014,
        "restic restore of a coffer snapshot",
    );
    drop(std::fs::remove_dir_all(&rtarget));

    // An unchanged tree is not read again.
    let t = Instant::now();
    let s2 = repo.backup([src]);
    eprintln!("roundtrip: second backup took {:?}: {s2}", t.elapsed());
    assert_eq!(s2["files_new"], 0, "second backup: files_new: {s2}");
    assert_eq!(s2["files_changed"], 0, "second backup: files_changed: {s2}");
    assert_eq!(
        s2["files_unmodified"], tree.files,
        "second backup: files_unmodified should be every file: {s2}"
    );
    assert_eq!(s2["data_blobs"], 0, "second backup stored data blobs: {s2}");
    let added2 = s2["data_added"].as_u64().unwrap();
    assert!(
        added2 < 256 << 10,
        "second backup of an unchanged tree added {added2} bytes: {s2}"
    );
    let ids = repo.snapshot_ids();
    assert_eq!(ids.len(), 2, "two snapshots expected: {ids:?}");
}

/// The patterns of `backup --exclude/--exclude-file` and `restore --include/--exclude`.
#[test]
fn exclude_and_include_patterns() {
    let tmp = tempdir("coffer-patterns-");
    let src = tmp.path().join("src");
    for (p, d) in [
        ("keep.txt", "keep"),
        ("app.log", "log"),
        ("cache/tmp/x.bin", "tmp"),
        ("cache/keep/y.txt", "y"),
        ("sub/deep/z.log", "zlog"),
        ("sub/deep/z.txt", "ztxt"),
        ("sub/other.dat", "dat"),
        ("secret/key.pem", "pem"),
    ] {
        write(&src.join(p), d.as_bytes());
    }
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let exfile = tmp.path().join("excludes");
    std::fs::write(&exfile, "# comment\n\nsecret\n").unwrap();
    let abs_tmp = format!("{}/cache/tmp", src.display());
    repo.backup([
        "--exclude",
        "*.log",
        "--exclude",
        &abs_tmp,
        "--exclude-file",
        exfile.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    let ls = run(&mut repo.coffer(["ls", "latest"])).ok().stdout_str();
    let has = |rel: &str| {
        let want = format!("{}/{rel}", src.display());
        ls.lines().any(|l| l == want)
    };
    for kept in [
        "keep.txt",
        "cache",
        "cache/keep/y.txt",
        "sub/deep/z.txt",
        "sub/other.dat",
    ] {
        assert!(has(kept), "{kept} should be in the snapshot; ls:\n{ls}");
    }
    for gone in [
        "app.log",
        "sub/deep/z.log",
        "cache/tmp",
        "cache/tmp/x.bin",
        "secret",
    ] {
        assert!(!has(gone), "{gone} should have been excluded; ls:\n{ls}");
    }

    // restore --include: only that subtree (and the directories above it).
    let t1 = tmp.path().join("r1");
    let inc = format!("{}/sub", src.display());
    run(&mut repo.coffer([
        "restore",
        "latest",
        "--target",
        t1.to_str().unwrap(),
        "--include",
        &inc,
    ]))
    .ok();
    let r1 = restored_path(&t1, &src);
    assert_eq!(
        std::fs::read(r1.join("sub/deep/z.txt")).ok(),
        Some(b"ztxt".to_vec()),
        "--include {inc}: sub/deep/z.txt not restored"
    );
    assert!(
        r1.join("sub/other.dat").exists(),
        "--include {inc}: sub/other.dat missing"
    );
    assert!(
        !r1.join("keep.txt").exists(),
        "--include {inc}: keep.txt restored"
    );
    assert!(
        !r1.join("cache").exists(),
        "--include {inc}: cache restored"
    );

    // restore --exclude: everything but the matches.
    let t2 = tmp.path().join("r2");
    run(&mut repo.coffer([
        "restore",
        "latest",
        "--target",
        t2.to_str().unwrap(),
        "--exclude",
        "*.txt",
    ]))
    .ok();
    let r2 = restored_path(&t2, &src);
    assert!(
        !r2.join("keep.txt").exists(),
        "--exclude *.txt: keep.txt restored"
    );
    assert!(
        !r2.join("sub/deep/z.txt").exists(),
        "--exclude *.txt: sub/deep/z.txt restored"
    );
    assert!(
        !r2.join("cache/keep/y.txt").exists(),
        "--exclude *.txt: cache/keep/y.txt restored"
    );
    assert_eq!(
        std::fs::read(r2.join("sub/other.dat")).ok(),
        Some(b"dat".to_vec()),
        "--exclude *.txt: sub/other.dat missing"
    );

    // The pattern file's comment and blank line were skipped and its pattern applied.
    assert!(
        !r2.join("secret").exists(),
        "--exclude-file pattern `secret` was not applied"
    );
}

/// `--one-file-system` keeps a mount point as an empty directory.
#[test]
fn one_file_system_keeps_mount_points_empty() {
    let tmp = tempdir("coffer-xdev-");
    let src = tmp.path().join("src");
    write(&src.join("top.txt"), b"top\n");
    let mnt = Tmpfs::mount(&src.join("mounted"), "4m");
    write(&mnt.0.join("inside.txt"), b"on another file system\n");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let listing = |args: &[&str]| {
        repo.backup(args);
        run(&mut repo.coffer(["ls", "latest"])).ok().stdout_str()
    };
    let p = |rel: &str| format!("{}/{rel}", src.display());
    let ls = listing(&["--one-file-system", src.to_str().unwrap()]);
    assert!(
        ls.lines().any(|l| l == p("top.txt")),
        "top.txt missing:\n{ls}"
    );
    assert!(
        ls.lines().any(|l| l == p("mounted")),
        "the mount point itself is missing:\n{ls}"
    );
    assert!(
        !ls.lines().any(|l| l == p("mounted/inside.txt")),
        "--one-file-system crossed into the tmpfs:\n{ls}"
    );
    let ls = listing(&[src.to_str().unwrap()]);
    assert!(
        ls.lines().any(|l| l == p("mounted/inside.txt")),
        "without --one-file-system the tmpfs content should be backed up:\n{ls}"
    );
}

/// Tags, host and time given on the command line end up in the snapshot, for both tools.
#[test]
fn tags_host_and_time_are_recorded() {
    let tmp = tempdir("coffer-meta-");
    let src = tmp.path().join("src");
    write(&src.join("f.txt"), b"f\n");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    repo.backup([
        "--tag",
        "daily,db",
        "--tag",
        "extra",
        "--host",
        "otherhost",
        "--time",
        "2021-02-03 04:05:06",
        src.to_str().unwrap(),
    ]);
    for (tool, out) in [
        (
            "coffer",
            run(&mut repo.coffer(["snapshots", "--json"])).ok(),
        ),
        (
            "restic",
            run(&mut repo.restic(["snapshots", "--json"])).ok(),
        ),
    ] {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = &v[0];
        assert_eq!(
            s["hostname"], "otherhost",
            "{tool} snapshots: hostname: {v}"
        );
        assert_eq!(
            s["tags"],
            serde_json::json!(["daily", "db", "extra"]),
            "{tool} snapshots: tags: {v}"
        );
        assert!(
            s["time"]
                .as_str()
                .unwrap_or("")
                .starts_with("2021-02-03T04:05:06"),
            "{tool} snapshots: time: {v}"
        );
        assert_eq!(
            s["paths"],
            serde_json::json!([src.to_str().unwrap()]),
            "{tool} snapshots: paths: {v}"
        );
    }
    let only = |args: &[&str]| {
        let r = run(repo.coffer(["snapshots", "--json"]).args(args)).ok();
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        v.as_array().map(|a| a.len()).unwrap_or(0)
    };
    assert_eq!(only(&["--host", "otherhost"]), 1, "--host filter");
    assert_eq!(only(&["--host", "nothost"]), 0, "--host filter");
    assert_eq!(only(&["--tag", "db"]), 1, "--tag filter");
    assert_eq!(only(&["--tag", "weekly"]), 0, "--tag filter");
}

/// A file rewritten with the same size and its old mtime put back is still noticed (its ctime
/// changed), read again, and restored with the new content.
#[test]
fn changed_file_with_same_size_and_mtime_is_read_again() {
    let tmp = tempdir("coffer-change-");
    let src = tmp.path().join("src");
    let f = src.join("db/table.dat");
    write(&f, &Rng::new(1).bytes(300_000));
    write(&src.join("other.txt"), b"unchanged\n");
    set_times(&f, 1_500_000_000, 123_456_789);
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    repo.backup([src.to_str().unwrap()]);

    std::thread::sleep(std::time::Duration::from_millis(20));
    let new = Rng::new(2).bytes(300_000);
    std::fs::write(&f, &new).unwrap();
    set_times(&f, 1_500_000_000, 123_456_789);
    let s = repo.backup([src.to_str().unwrap()]);
    assert_eq!(
        s["files_changed"], 1,
        "the rewritten file was not read again: {s}"
    );
    assert_eq!(s["files_unmodified"], 1, "{s}");

    let target = tmp.path().join("restore");
    run(&mut repo.coffer(["restore", "latest", "--target", target.to_str().unwrap()])).ok();
    assert!(
        std::fs::read(restored_path(&target, &f)).unwrap() == new,
        "the restored file has the old content"
    );
}
