//! Working on repositories that restic made, and restic reading what coffer adds.

use std::path::Path;

use crate::util::*;

/// A tree of about 32 MB with a few kinds of entries.
fn compat_tree(root: &Path) -> u64 {
    for (i, size) in [(1u64 << 20) + 3, 3 << 20, 8 << 20, (9 << 20) + 1234]
        .iter()
        .enumerate()
    {
        std::fs::create_dir_all(root.join("data")).unwrap();
        write_data_file(
            &root.join(format!("data/blob-{i}.bin")),
            *size,
            7000 + i as u64,
            i % 2 == 1,
        );
    }
    write_data_file(
        &root.join("data/nested/deeper/log.txt"),
        10 << 20,
        7100,
        true,
    );
    write(
        &root.join("etc/app.conf"),
        b"listen = 127.0.0.1:8080\nworkers = 4\n",
    );
    write(&root.join("etc/empty"), b"");
    chmod(&root.join("etc/app.conf"), 0o640);
    lchown(&root.join("etc/app.conf"), 1000, 1000);
    std::os::unix::fs::symlink("etc/app.conf", root.join("current.conf")).unwrap();
    // (No symlink with a non-UTF-8 target: restic 0.14 cannot store one.)
    write(&root.join(osname(b"name-\xe9-latin1")), b"latin1 name\n");
    std::fs::create_dir_all(root.join("var/empty")).unwrap();
    let mut all = Vec::new();
    walk(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_times(
            p,
            1_600_000_000 + i as i64 * 1000,
            100_000_001 * (i as i64 % 9) + 17,
        );
    }
    file_stats(root).1
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn restic_repository_restored_and_deduplicated_by_coffer() {
    let tmp = tempdir("coffer-compat-");
    let src = tmp.path().join("src");
    let tree_bytes = compat_tree(&src);
    let (files, _) = file_stats(&src);
    let repo = Repo::local(&tmp.path().join("repo"));
    run(&mut repo.restic(["init"])).ok();
    run(&mut repo.restic(["backup", src.to_str().unwrap()])).ok();

    // coffer restores restic's snapshot exactly.
    let target = tmp.path().join("restore");
    repo.restore_verified(&target);
    assert_trees_equal(
        &src,
        &restored_path(&target, &src),
        Restorer::Coffer,
        "coffer restore of a restic snapshot",
    );

    // restic's snapshot serves as the parent: nothing is read again.
    let s = repo.backup([src.to_str().unwrap()]);
    assert_eq!(
        (s["files_new"].as_u64(), s["files_changed"].as_u64()),
        (Some(0), Some(0)),
        "coffer did not use restic's snapshot as the parent: {s}"
    );
    assert_eq!(s["files_unmodified"], files, "files_unmodified: {s}");

    // Read everything again: restic's chunks are found, so almost nothing new is stored.
    let before = dir_bytes(&tmp.path().join("repo/data"));
    let s = repo.backup(["--force", src.to_str().unwrap()]);
    let after = dir_bytes(&tmp.path().join("repo/data"));
    assert_eq!(
        s["files_new"].as_u64().unwrap() + s["files_changed"].as_u64().unwrap(),
        files
    );
    let packed = s["data_added_packed"].as_u64().unwrap();
    assert!(
        packed * 100 < tree_bytes,
        "coffer --force backup stored {packed} new bytes for a {tree_bytes} byte tree restic had already stored: {s}"
    );
    assert!(
        (after - before) * 100 < tree_bytes,
        "data/ grew by {} bytes for a {tree_bytes} byte tree restic had already stored",
        after - before
    );

    repo.restic_check(true);
    let ids = run(&mut repo.restic(["snapshots", "--json"])).ok();
    let list: serde_json::Value = serde_json::from_slice(&ids.stdout).unwrap();
    assert_eq!(
        list.as_array().map(|a| a.len()),
        Some(3),
        "restic should list its own and coffer's two snapshots: {list}"
    );
}

#[test]
fn stdin_stream_read_back_by_coffer_and_restic() {
    let tmp = tempdir("coffer-stdin-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let mut data = Vec::new();
    let mut rng = Rng::new(99);
    for i in 0..40_000 {
        data.extend_from_slice(
            format!(
                "INSERT INTO t VALUES ({i}, '{:016x}', 'row {i}');\n",
                rng.next_u64()
            )
            .as_bytes(),
        );
    }
    data.extend_from_slice(&rng.bytes(1 << 20));
    let mut c = repo.coffer(["--json", "backup", "--stdin", "--stdin-filename", "db.sql"]);
    let r = run_with_input(&mut c, Some(&data)).ok();
    assert_eq!(r.summary()["files_new"], 1, "{}", r.describe());

    let d = run(&mut repo.coffer(["dump", "latest", "/db.sql"])).ok();
    assert!(
        d.stdout == data,
        "coffer dump latest /db.sql returned {} bytes, expected the {} bytes given on stdin",
        d.stdout.len(),
        data.len()
    );
    let d = run(&mut repo.restic(["dump", "latest", "/db.sql"])).ok();
    assert!(
        d.stdout == data,
        "restic dump latest /db.sql returned {} bytes, expected the {} bytes given on stdin",
        d.stdout.len(),
        data.len()
    );

    // An empty stream is an empty file, not an error.
    let mut c = repo.coffer(["backup", "--stdin", "--stdin-filename", "empty.sql"]);
    run_with_input(&mut c, Some(b"")).ok();
    let d = run(&mut repo.coffer(["dump", "latest", "/empty.sql"])).ok();
    assert!(
        d.stdout.is_empty(),
        "coffer dump of an empty stream: {} bytes",
        d.stdout.len()
    );
    let d = run(&mut repo.restic(["dump", "latest", "/empty.sql"])).ok();
    assert!(
        d.stdout.is_empty(),
        "restic dump of an empty stream: {} bytes",
        d.stdout.len()
    );
    repo.restic_check(true);
}
