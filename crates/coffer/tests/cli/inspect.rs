//! `coffer stats`, `diff` and `find`, checked against restic's answers on the same repository.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::util::*;

/// A tree with duplicate contents, hard links, symlinks, a fifo, a non-UTF-8 name, compressible
/// and incompressible data, and a subtree that later backups leave alone.
fn build(root: &Path) {
    write(&root.join("docs/readme.txt"), b"read me first\n");
    write(&root.join("docs/copy-of-readme.txt"), b"read me first\n");
    write(&root.join("docs/notes.TXT"), b"upper-case extension\n");
    std::os::unix::fs::symlink("readme.txt", root.join("docs/link")).unwrap();
    write_data_file(&root.join("data/random.bin"), (3 << 20) + 17, 11, false);
    std::fs::hard_link(
        root.join("data/random.bin"),
        root.join("data/random.hardlink"),
    )
    .unwrap();
    write_data_file(&root.join("data/text.log"), 2 << 20, 12, true);
    write_data_file(&root.join("data/dup.bin"), 1 << 20, 13, false);
    write_data_file(&root.join("data/again/dup2.bin"), 1 << 20, 13, false);
    write(&root.join(osname(b"names/caf\xe9.txt")), b"latin-1 name\n");
    write(&root.join("names/with space.conf"), b"x = 1\n");
    write(&root.join("deep/a/b/c/deep.log"), b"deep down\n");
    write(&root.join("deep/a/b/other.log"), b"also deep\n");
    write(&root.join("keep/static/one.txt"), b"never changes\n");
    write_data_file(&root.join("keep/static/blob.bin"), 700_000, 14, false);
    std::fs::create_dir_all(root.join("keep/empty")).unwrap();
    mkfifo(&root.join("keep/fifo"));
    for (i, p) in ["docs/readme.txt", "docs/notes.TXT", "data/text.log"]
        .iter()
        .enumerate()
    {
        set_times(&root.join(p), 1_600_000_000 + i as i64 * 60, 0);
    }
}

/// Between the first and second backup: every kind of change `diff` reports.
fn change(root: &Path) {
    write(&root.join("docs/new.txt"), b"a new file\n"); // +
    write(&root.join("added/x.txt"), b"added x\n"); // + dir, + file
    write(&root.join("added/sub/y.txt"), b"added y\n");
    std::fs::remove_file(root.join("docs/notes.TXT")).unwrap(); // -
    std::fs::remove_dir_all(root.join("deep/a/b")).unwrap(); // - dir and its content
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("data/text.log"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"one more line\n").unwrap(); // M
    chmod(&root.join("docs/readme.txt"), 0o600); // U
    set_times(&root.join(osname(b"names/caf\xe9.txt")), 1_500_000_000, 0); // U
    std::fs::remove_file(root.join("docs/link")).unwrap();
    write(&root.join("docs/link"), b"no longer a symlink\n"); // T
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let r = run(cmd).ok();
    let out = r.stdout_str();
    if let Ok(v) = serde_json::from_str(&out) {
        return v;
    }
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{') || l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON in the output: {}", r.describe()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", r.describe()))
}

/// Two coffer backups and one restic backup of the same changing tree.
struct Fixture {
    _tmp: tempfile::TempDir,
    src: std::path::PathBuf,
    repo: Repo,
    /// Snapshot ids: coffer before the change, coffer after, restic after.
    ids: Vec<String>,
}

fn fixture(prefix: &str) -> Fixture {
    let tmp = tempdir(prefix);
    let src = tmp.path().join("src");
    build(&src);
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    repo.backup([src.to_str().unwrap()]);
    change(&src);
    repo.backup([src.to_str().unwrap()]);
    run(&mut repo.restic(["backup", "-q", src.to_str().unwrap()])).ok();
    let ids = repo.snapshot_ids();
    assert_eq!(ids.len(), 3);
    Fixture {
        _tmp: tmp,
        src,
        repo,
        ids,
    }
}

#[test]
fn stats_agree_with_restic() {
    let f = fixture("coffer-stats-");
    let selections: Vec<Vec<String>> = vec![
        vec![],
        vec!["latest".into()],
        vec![f.ids[0][..8].to_string()],
        vec![f.ids[0].clone(), f.ids[1].clone()],
    ];
    for sel in &selections {
        for (mode, fields) in [
            (
                "restore-size",
                &["total_size", "total_file_count", "snapshots_count"][..],
            ),
            (
                "raw-data",
                &["total_size", "total_blob_count", "snapshots_count"],
            ),
            (
                "files-by-contents",
                &["total_size", "total_file_count", "snapshots_count"],
            ),
            (
                "blobs-per-file",
                &[
                    "total_size",
                    "total_file_count",
                    "total_blob_count",
                    "snapshots_count",
                ],
            ),
        ] {
            let mut args = vec!["stats", "--json", "--mode", mode];
            args.extend(sel.iter().map(|s| s.as_str()));
            let ours = json(&mut f.repo.coffer(&args));
            let theirs = json(&mut f.repo.restic(&args));
            for k in fields {
                assert_eq!(
                    ours[k].as_u64().unwrap_or(0),
                    theirs[k].as_u64().unwrap_or(0),
                    "stats --mode {mode} {sel:?}: {k} differs\n coffer: {ours}\n restic: {theirs}"
                );
            }
        }
    }

    // The restore size of one snapshot is its files' size, hard links once.
    let one = json(&mut f.repo.coffer(["stats", "--json", &f.ids[0]]));
    assert_eq!(one["snapshots_count"], 1);
    let (_, bytes) = file_stats(&f.src);
    assert!(one["total_size"].as_u64().unwrap() > 0 && bytes > 0);

    // coffer's figures: compression and deduplication.
    let raw = json(&mut f.repo.coffer(["stats", "--json", "--mode", "raw-data"]));
    let stored = raw["total_size"].as_u64().unwrap();
    let uncompressed = raw["total_uncompressed_size"].as_u64().unwrap();
    assert!(uncompressed > stored, "text.log compresses: {raw}");
    let ratio = raw["compression_ratio"].as_f64().unwrap();
    assert!(ratio > 1.2, "compressed blobs shrink: {raw}");
    let saving = raw["compression_space_saving"].as_f64().unwrap();
    let expect = (1.0 - stored as f64 / uncompressed as f64) * 100.0;
    assert!((saving - expect).abs() < 1e-9, "{raw}");
    // Three snapshots of nearly the same data, duplicate files inside each.
    let dedup = raw["dedup_ratio"].as_f64().unwrap();
    assert!(dedup > 2.5, "dedup ratio over 3 snapshots: {raw}");
    let restore = json(&mut f.repo.coffer(["stats", "--json"]));
    assert_eq!(
        raw["restore_size"], restore["total_size"],
        "{raw} {restore}"
    );

    let text = run(&mut f.repo.coffer(["stats", "--mode", "raw-data"]))
        .ok()
        .stdout_str();
    for want in [
        "Stats in raw-data mode:",
        "Snapshots processed:  3",
        "Total Blob Count:",
        "Compression Ratio:",
        "Deduplication Ratio:",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let r = run(&mut f.repo.coffer(["stats", "no-such-snapshot"])).expect_code(1);
    assert!(r.stderr.contains("no-such-snapshot"), "{}", r.describe());
}

/// (path, modifier) of `diff --json` change messages, and the statistics message.
fn diff_json(cmd: &mut Command) -> (BTreeSet<(String, String)>, serde_json::Value) {
    let r = run(cmd).ok();
    let mut changes = BTreeSet::new();
    let mut stats = None;
    for v in r.json_lines() {
        match v["message_type"].as_str() {
            Some("change") => {
                changes.insert((
                    v["path"].as_str().unwrap().to_string(),
                    v["modifier"].as_str().unwrap().to_string(),
                ));
            }
            Some("statistics") => stats = Some(v),
            _ => {}
        }
    }
    (
        changes,
        stats.unwrap_or_else(|| panic!("no statistics message: {}", r.describe())),
    )
}

#[test]
fn diff_agrees_with_restic() {
    let f = fixture("coffer-diff-");
    let (a, b) = (&f.ids[0], &f.ids[1]);
    let s = f.src.to_str().unwrap().to_string();
    for metadata in [false, true] {
        let mut args = vec!["diff", "--json", a.as_str(), b.as_str()];
        if metadata {
            args.push("--metadata");
        }
        let (ours, our_stats) = diff_json(&mut f.repo.coffer(&args));
        let (theirs, their_stats) = diff_json(&mut f.repo.restic(&args));
        assert_eq!(ours, theirs, "diff --metadata={metadata}: changes differ");
        for side in ["added", "removed"] {
            for k in [
                "files",
                "dirs",
                "others",
                "data_blobs",
                "tree_blobs",
                "bytes",
            ] {
                assert_eq!(
                    our_stats[side][k], their_stats[side][k],
                    "{side}.{k}: coffer {our_stats} restic {their_stats}"
                );
            }
        }
        assert_eq!(our_stats["changed_files"], their_stats["changed_files"]);
        let has = |p: &str, m: &str| {
            ours.iter()
                .any(|(path, modifier)| *path == format!("{s}/{p}") && modifier.contains(m))
        };
        for (p, m) in [
            ("docs/new.txt", "+"),
            ("added/", "+"),
            ("added/sub/y.txt", "+"),
            ("docs/notes.TXT", "-"),
            ("deep/a/b/", "-"),
            ("deep/a/b/c/deep.log", "-"),
            ("data/text.log", "M"),
            ("docs/link", "T"),
        ] {
            assert!(has(p, m), "{m} {p} missing: {ours:?}");
        }
        assert_eq!(
            has("docs/readme.txt", "U"),
            metadata,
            "U only with --metadata: {ours:?}"
        );
        // Reading a directory updates its atime, so with --metadata even untouched
        // directories show as U; without it, nothing below them may appear.
        assert!(
            metadata || !ours.iter().any(|(p, _)| p.contains("/keep/")),
            "unchanged subtree reported: {ours:?}"
        );
    }

    // Text output: restic's layout, with the summary.
    let text = run(&mut f.repo.coffer(["diff", a, b])).ok().stdout_str();
    for want in [
        format!("comparing snapshot {} to {}:", &a[..8], &b[..8]),
        format!("+    {s}/docs/new.txt"),
        format!("-    {s}/deep/a/b/"),
        format!("M    {s}/data/text.log"),
        "Files:           3 new,     3 removed,     1 changed".to_string(),
        "Dirs:            2 new,     2 removed".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} missing from:\n{text}");
    }

    // A snapshot compared with itself, and subfolders with the ID:PATH syntax.
    let (same, st) = diff_json(&mut f.repo.coffer(["diff", "--json", b, b]));
    assert!(same.is_empty(), "{same:?}");
    assert_eq!(st["added"]["bytes"], 0);
    let (sub, _) = diff_json(&mut f.repo.coffer([
        "diff",
        "--json",
        &format!("{a}:{s}/docs"),
        &format!("{}:{s}/docs", &b[..8]),
    ]));
    let paths: BTreeSet<&str> = sub.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        BTreeSet::from(["/new.txt", "/notes.TXT", "/link"]),
        "{sub:?}"
    );
    let r = run(&mut f.repo.coffer(["diff", a, &format!("{b}:/no/such/dir")])).expect_code(1);
    assert!(r.stderr.contains("/no/such/dir"), "{}", r.describe());
}

/// (snapshot id, path) of `find --json` matches.
fn find_json(cmd: &mut Command) -> BTreeSet<(String, String)> {
    let v = json(cmd);
    let mut out = BTreeSet::new();
    for snap in v.as_array().unwrap_or_else(|| panic!("not an array: {v}")) {
        let id = snap["snapshot"].as_str().unwrap().to_string();
        let matches = snap["matches"].as_array().unwrap();
        assert_eq!(snap["hits"].as_u64(), Some(matches.len() as u64), "{v}");
        for m in matches {
            out.insert((id.clone(), m["path"].as_str().unwrap().to_string()));
        }
    }
    out
}

#[test]
fn find_agrees_with_restic() {
    let f = fixture("coffer-find-");
    let s = f.src.to_str().unwrap().to_string();
    let abs = format!("{s}/data/*");
    let patterns: Vec<Vec<&str>> = vec![
        vec!["*.txt"],
        vec!["-i", "*.txt"],
        vec!["deep"],
        vec![&abs],
        vec!["**/b/*.log"],
        vec!["*.bin", "with space.conf"],
        vec!["caf?.txt"],
        vec!["-s", &f.ids[1][..8], "docs/*"],
        vec!["no-match-anywhere"],
    ];
    for p in &patterns {
        let mut args = vec!["find", "--json"];
        args.extend(p.iter().copied());
        let ours = find_json(&mut f.repo.coffer(&args));
        let theirs = find_json(&mut f.repo.restic(&args));
        assert_eq!(ours, theirs, "find {p:?}");
        if p[0] != "no-match-anywhere" {
            assert!(!ours.is_empty(), "find {p:?} found nothing");
        }
    }

    // Text output: each snapshot's matches with size and time.
    let text = run(&mut f.repo.coffer(["find", "readme.txt"]))
        .ok()
        .stdout_str();
    assert!(
        text.contains(&format!(
            "Found matching entries in snapshot {}",
            &f.ids[0][..8]
        )),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.ends_with(&format!("{s}/docs/readme.txt")))
        .unwrap_or_else(|| panic!("no readme line in:\n{text}"));
    assert!(
        line.trim_start().starts_with("14 2020-09-13"),
        "size and mtime: {line}"
    );

    // --blob: where a data blob is used (a small file is one blob named by its SHA-256).
    let sum = run(Command::new("sha256sum").arg(f.src.join("keep/static/one.txt"))).ok();
    let blob = sum.stdout_str()[..64].to_string();
    let v = json(&mut f.repo.coffer(["find", "--json", "--blob", &blob[..12]]));
    let hits: BTreeSet<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(h["id"], blob.as_str(), "{v}");
            assert_eq!(h["object_type"], "blob", "{v}");
            (
                h["snapshot"].as_str().unwrap().to_string(),
                h["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = f
        .ids
        .iter()
        .map(|id| (id.clone(), format!("{s}/keep/static/one.txt")))
        .collect();
    assert_eq!(hits, want);
    // --tree: the root tree of a snapshot is found at "/".
    let snap = json(&mut f.repo.coffer(["cat", "snapshot", &f.ids[0]]));
    let root = snap["tree"].as_str().unwrap();
    let v = json(&mut f.repo.coffer(["find", "--json", "--tree", root]));
    assert_eq!(v[0]["path"], "/", "{v}");
    assert_eq!(v[0]["snapshot"], f.ids[0].as_str(), "{v}");
    let r = run(&mut f.repo.coffer(["find", "--blob", "not-hex"])).expect_code(1);
    assert!(r.stderr.contains("not-hex"), "{}", r.describe());
}
