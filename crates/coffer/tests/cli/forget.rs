//! `coffer forget` and `coffer tag` on real repositories: a grandfather-father-son policy over
//! backups with fake times (dry run, then for real), grouping, keep-tag, forgetting by id, the
//! refusal to run without a policy, and tag changes; restic checks every repository after.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::util::*;

/// A snapshot as `snapshots --json` shows it.
struct Snap {
    id: String,
    /// The time in UTC, "YYYY-MM-DD HH:MM".
    utc: String,
    host: String,
    tags: Vec<String>,
    json: serde_json::Value,
}

fn utc(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("bad time {rfc3339:?}: {e}"))
        .with_timezone(&chrono::Utc)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn parse_snaps(r: &Run) -> Vec<Snap> {
    let v: serde_json::Value = serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("snapshots --json is not JSON ({e}): {}", r.describe()));
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| Snap {
            id: s["id"].as_str().expect("id").to_string(),
            utc: utc(s["time"].as_str().expect("time")),
            host: s["hostname"].as_str().unwrap_or_default().to_string(),
            tags: s["tags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| t.as_str().expect("tag").to_string())
                        .collect()
                })
                .unwrap_or_default(),
            json: s.clone(),
        })
        .collect()
}

fn snaps(repo: &Repo) -> Vec<Snap> {
    parse_snaps(&run(&mut repo.coffer(["snapshots", "--json"])).ok())
}

fn restic_snaps(repo: &Repo) -> Vec<Snap> {
    parse_snaps(&run(&mut repo.restic(["snapshots", "--json"])).ok())
}

fn times(list: &[Snap]) -> BTreeSet<String> {
    list.iter().map(|s| s.utc.clone()).collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn id_at<'a>(list: &'a [Snap], utc: &str) -> &'a str {
    &list
        .iter()
        .find(|s| s.utc == utc)
        .unwrap_or_else(|| panic!("no snapshot at {utc}"))
        .id
}

fn json_array(r: &Run) -> Vec<serde_json::Value> {
    let line = r
        .stdout_str()
        .lines()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON array in the output: {}", r.describe()))
        .to_string();
    match serde_json::from_str(&line) {
        Ok(serde_json::Value::Array(a)) => a,
        other => panic!("bad JSON ({other:?}): {}", r.describe()),
    }
}

fn utc_of_list(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| utc(s["time"].as_str().expect("time")))
        .collect()
}

/// A repository with a tiny source directory.
fn fixture(prefix: &str) -> (tempfile::TempDir, Repo, PathBuf) {
    let tmp = tempdir(prefix);
    let src = tmp.path().join("src");
    write(&src.join("a.txt"), b"retention test\n");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    (tmp, repo, src)
}

fn backup_at(repo: &Repo, src: &std::path::Path, time: &str, extra: &[&str]) {
    let mut args = vec![src.to_str().expect("utf-8 path"), "--time", time];
    args.extend_from_slice(extra);
    repo.backup(args);
}

/// Backups at each time, five at once: they take shared locks, and most of a tiny backup's
/// time is waiting (the lock protocol's pause), so this keeps the test to a few seconds.
fn backups_at(repo: &Repo, src: &std::path::Path, times: &[&str]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..5 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(t) = times.get(i) else { break };
                backup_at(repo, src, t, &[]);
            });
        }
    });
}

/// Backups of one host and path, oldest first. The newest is 00:30 on Monday 29 January in
/// +02:00 (22:30 on Sunday the 28th in UTC): its own day and ISO week.
const GFS_TIMES: [&str; 25] = [
    "2023-05-10T10:00:00Z",
    "2023-05-20T10:00:00Z",
    "2023-06-15T10:00:00Z",
    "2023-07-15T10:00:00Z",
    "2023-08-15T10:00:00Z",
    "2023-09-15T10:00:00Z",
    "2023-10-15T10:00:00Z",
    "2023-11-15T10:00:00Z",
    "2023-12-15T10:00:00Z",
    "2024-01-01T10:00:00Z",
    "2024-01-01T22:00:00Z",
    "2024-01-03T10:00:00Z",
    "2024-01-08T10:00:00Z",
    "2024-01-10T10:00:00Z",
    "2024-01-15T10:00:00Z",
    "2024-01-17T10:00:00Z",
    "2024-01-20T10:00:00Z",
    "2024-01-22T10:00:00Z",
    "2024-01-23T10:00:00Z",
    "2024-01-24T10:00:00Z",
    "2024-01-25T10:00:00Z",
    "2024-01-26T10:00:00Z",
    "2024-01-27T10:00:00Z",
    "2024-01-28T10:00:00Z",
    "2024-01-29T00:30:00+02:00",
];

/// What `--keep-daily 7 --keep-weekly 4 --keep-monthly 12` keeps of GFS_TIMES, derived by
/// hand: days 29 (local) and 28..23 January; ISO weeks 5 and 4 (already kept), 3 (the 20th),
/// 2 (the 10th); months January 2024 (kept) and December .. May 2023 (the 20th), and the oldest
/// snapshot, kept because the monthly rule has count left.
const GFS_KEPT: [&str; 18] = [
    "2024-01-28 22:30",
    "2024-01-28 10:00",
    "2024-01-27 10:00",
    "2024-01-26 10:00",
    "2024-01-25 10:00",
    "2024-01-24 10:00",
    "2024-01-23 10:00",
    "2024-01-20 10:00",
    "2024-01-10 10:00",
    "2023-12-15 10:00",
    "2023-11-15 10:00",
    "2023-10-15 10:00",
    "2023-09-15 10:00",
    "2023-08-15 10:00",
    "2023-07-15 10:00",
    "2023-06-15 10:00",
    "2023-05-20 10:00",
    "2023-05-10 10:00",
];

#[test]
fn forget_grandfather_father_son() {
    let (_tmp, repo, src) = fixture("coffer-forget-gfs-");
    backups_at(&repo, &src, &GFS_TIMES);
    let before = snaps(&repo);
    assert_eq!(before.len(), 25);
    let all: BTreeSet<String> = GFS_TIMES.iter().map(|t| utc(t)).collect();
    let kept = set(&GFS_KEPT);
    let removed: BTreeSet<String> = all.difference(&kept).cloned().collect();
    assert_eq!(removed.len(), 7);
    let policy = [
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
    ];

    // Dry run with JSON: restic's ForgetGroup array, nothing deleted, no lock taken.
    let mut args = vec!["forget", "--json", "--dry-run"];
    args.extend(policy);
    let r = run(&mut repo.coffer(&args)).ok();
    let groups = json_array(&r);
    assert_eq!(groups.len(), 1, "{}", r.describe());
    let g = &groups[0];
    assert_eq!(g["host"], before[0].json["hostname"]);
    assert_eq!(
        g["paths"],
        serde_json::json!([src.to_str().expect("utf-8 path")])
    );
    assert!(g["tags"].is_null(), "{g}");
    assert_eq!(utc_of_list(&g["keep"]), kept);
    assert_eq!(utc_of_list(&g["remove"]), removed);
    assert!(g["keep"][0]["id"].is_string() && g["keep"][0]["short_id"].is_string());
    let reasons = g["reasons"].as_array().expect("reasons");
    assert_eq!(reasons.len(), kept.len());
    let matches = |at: &str| -> Vec<String> {
        reasons
            .iter()
            .find(|r| utc(r["snapshot"]["time"].as_str().expect("time")) == at)
            .unwrap_or_else(|| panic!("no reason for {at}"))["matches"]
            .as_array()
            .expect("matches")
            .iter()
            .map(|m| m.as_str().expect("match").to_string())
            .collect()
    };
    assert_eq!(
        matches("2024-01-28 22:30"),
        ["daily snapshot", "weekly snapshot", "monthly snapshot"]
    );
    assert_eq!(
        matches("2024-01-28 10:00"),
        ["daily snapshot", "weekly snapshot"]
    );
    assert_eq!(matches("2024-01-10 10:00"), ["weekly snapshot"]);
    assert_eq!(matches("2023-12-15 10:00"), ["monthly snapshot"]);
    assert_eq!(matches("2023-05-10 10:00"), ["oldest monthly snapshot"]);
    assert_eq!(snaps(&repo).len(), 25, "a dry run removed snapshots");
    assert_eq!(repo.count_files("locks"), 0);

    // The text form of the dry run.
    let mut args = vec!["forget", "-n"];
    args.extend(policy);
    let out = run(&mut repo.coffer(&args)).ok().stdout_str();
    for want in [
        "Applying policy: keep 7 daily, 4 weekly, 12 monthly snapshots",
        "keep 18 snapshots:",
        "remove 7 snapshots:",
        "oldest monthly snapshot",
        "would remove 7 snapshots (dry run)",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert_eq!(snaps(&repo).len(), 25);

    // For real.
    let mut args = vec!["forget"];
    args.extend(policy);
    let out = run(&mut repo.coffer(&args)).ok().stdout_str();
    assert!(out.contains("removed 7 snapshots"), "{out}");
    assert_eq!(times(&snaps(&repo)), kept);
    assert_eq!(times(&restic_snaps(&repo)), kept);
    assert_eq!(repo.count_files("locks"), 0);
    repo.restic_check(false);

    // Applying the same policy again removes nothing more.
    let mut args = vec!["forget", "--json"];
    args.extend(policy);
    let r = run(&mut repo.coffer(&args)).ok();
    assert_eq!(utc_of_list(&json_array(&r)[0]["remove"]), BTreeSet::new());
    assert_eq!(snaps(&repo).len(), 18);
}

#[test]
fn forget_groups_tags_and_ids() {
    let (_tmp, repo, src) = fixture("coffer-forget-groups-");
    backup_at(
        &repo,
        &src,
        "2024-03-01T12:00:00Z",
        &["--host", "alpha", "--tag", "keep"],
    );
    backup_at(&repo, &src, "2024-03-02T12:00:00Z", &["--host", "alpha"]);
    backup_at(&repo, &src, "2024-03-03T12:00:00Z", &["--host", "alpha"]);
    backup_at(&repo, &src, "2024-03-01T13:00:00Z", &["--host", "beta"]);
    backup_at(&repo, &src, "2024-03-02T13:00:00Z", &["--host", "beta"]);
    backup_at(&repo, &src, "2024-03-03T13:00:00Z", &["--host", "beta"]);

    // --host limits forget to one host.
    run(&mut repo.coffer(["forget", "--host", "beta", "--keep-last", "2"])).ok();
    let now = snaps(&repo);
    assert_eq!(
        times(&now),
        set(&[
            "2024-03-01 12:00",
            "2024-03-02 12:00",
            "2024-03-03 12:00",
            "2024-03-02 13:00",
            "2024-03-03 13:00"
        ])
    );

    // One group for everything: only the newest of all survives (dry run).
    let r = run(&mut repo.coffer([
        "forget",
        "--json",
        "-n",
        "--keep-last",
        "1",
        "--group-by",
        "",
    ]))
    .ok();
    let groups = json_array(&r);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["host"], "");
    assert!(groups[0]["paths"].is_null());
    assert_eq!(utc_of_list(&groups[0]["keep"]), set(&["2024-03-03 13:00"]));
    assert_eq!(groups[0]["remove"].as_array().map(|a| a.len()), Some(4));

    // Per host and paths (the default) with a tag rule: each host keeps its newest, alpha
    // also the tagged one.
    let r = run(&mut repo.coffer(["forget", "--json", "-l", "1", "--keep-tag", "keep"])).ok();
    let groups = json_array(&r);
    let hosts: Vec<&str> = groups
        .iter()
        .map(|g| g["host"].as_str().expect("host"))
        .collect();
    assert_eq!(hosts, ["alpha", "beta"]);
    assert_eq!(
        utc_of_list(&groups[0]["keep"]),
        set(&["2024-03-03 12:00", "2024-03-01 12:00"])
    );
    assert_eq!(
        groups[0]["reasons"][1]["matches"],
        serde_json::json!(["has tags [keep]"])
    );
    assert_eq!(
        utc_of_list(&groups[0]["remove"]),
        set(&["2024-03-02 12:00"])
    );
    assert_eq!(
        utc_of_list(&groups[1]["remove"]),
        set(&["2024-03-02 13:00"])
    );
    let now = snaps(&repo);
    assert_eq!(
        times(&now),
        set(&["2024-03-01 12:00", "2024-03-03 12:00", "2024-03-03 13:00"])
    );

    // Group by tags: the tagged snapshot is a group of its own.
    let r = run(&mut repo.coffer(["forget", "--json", "-n", "-l", "1", "-g", "tags"])).ok();
    let groups = json_array(&r);
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["tags"], serde_json::json!([]));
    assert_eq!(groups[1]["tags"], serde_json::json!(["keep"]));
    assert_eq!(groups[0]["host"], "");

    // By id: a unique prefix, and "latest" among the filtered snapshots.
    let tagged = id_at(&now, "2024-03-01 12:00").to_string();
    let r = run(&mut repo.coffer(["forget", &tagged[..10]])).ok();
    assert!(
        r.stdout_str().contains("removed 1 snapshots"),
        "{}",
        r.describe()
    );
    run(&mut repo.coffer(["forget", "latest", "--host", "alpha"])).ok();
    assert_eq!(times(&snaps(&repo)), set(&["2024-03-03 13:00"]));

    // An id that matches nothing changes nothing, even with a good one beside it.
    let last = snaps(&repo)[0].id.clone();
    let r = run(&mut repo.coffer(["forget", &last, "0000dead"])).expect_code(1);
    assert!(
        r.stderr.contains("no snapshot matches \"0000dead\""),
        "{}",
        r.describe()
    );
    assert_eq!(snaps(&repo).len(), 1);
    assert_eq!(repo.count_files("locks"), 0);
    repo.restic_check(false);
}

#[test]
fn forget_refuses_without_a_policy() {
    let (_tmp, repo, src) = fixture("coffer-forget-nopolicy-");
    backup_at(&repo, &src, "2024-01-01T10:00:00Z", &[]);
    backup_at(&repo, &src, "2024-01-02T10:00:00Z", &[]);

    let r = run(&mut repo.coffer(["forget"])).expect_code(1);
    for opt in [
        "--keep-last",
        "--keep-daily",
        "--keep-weekly",
        "--keep-monthly",
        "--keep-yearly",
        "--keep-within",
        "--keep-tag",
    ] {
        assert!(r.stderr.contains(opt), "{opt} not named: {}", r.describe());
    }
    // Zero counts are no policy either.
    run(&mut repo.coffer(["forget", "--keep-daily", "0"])).expect_code(1);

    let first = snaps(&repo)[0].id.clone();
    let r = run(&mut repo.coffer(["forget", "--keep-last", "1", &first])).expect_code(1);
    assert!(r.stderr.contains("not both"), "{}", r.describe());

    for bad in [
        &["--keep-daily", "-2"][..],
        &["--keep-daily", "many"],
        &["--keep-within", "2x"],
        &["--keep-within", "-1d"],
        &["--group-by", "colour"],
    ] {
        let mut args = vec!["forget"];
        args.extend_from_slice(bad);
        let r = run(&mut repo.coffer(&args));
        assert!(!r.status.success(), "{bad:?} accepted: {}", r.describe());
        assert!(!r.stderr.contains("panicked"), "{}", r.describe());
    }
    assert_eq!(snaps(&repo).len(), 2);

    // -1 and "unlimited" are no limit.
    for n in ["-1", "unlimited"] {
        let r = run(&mut repo.coffer(["forget", "--json", "-n", "--keep-daily", n])).ok();
        assert_eq!(
            json_array(&r)[0]["keep"].as_array().map(|a| a.len()),
            Some(2)
        );
    }
    assert_eq!(repo.count_files("locks"), 0);
}

#[test]
fn forget_then_prune() {
    let (_tmp, repo, src) = fixture("coffer-forget-prune-");
    backup_at(&repo, &src, "2024-01-01T10:00:00Z", &[]);
    write(&src.join("b.txt"), b"only in the newer snapshot\n");
    backup_at(&repo, &src, "2024-01-02T10:00:00Z", &[]);
    let r = run(&mut repo.coffer(["forget", "--keep-last", "1", "--prune"]));
    // The snapshot is gone before prune runs, whatever prune then does, and the forget lock
    // was released for it.
    assert_eq!(
        times(&snaps(&repo)),
        set(&["2024-01-02 10:00"]),
        "{}",
        r.describe()
    );
    assert!(
        r.stdout_str().contains("removed 1 snapshots"),
        "{}",
        r.describe()
    );
    assert_eq!(repo.count_files("locks"), 0);
    if r.status.success() {
        repo.restic_check(true);
    }
}

#[test]
fn tag_add_remove_set() {
    let (_tmp, repo, src) = fixture("coffer-tag-");
    backup_at(&repo, &src, "2024-01-01T10:00:00Z", &["--tag", "nightly"]);
    backup_at(&repo, &src, "2024-01-02T10:00:00Z", &[]);
    backup_at(&repo, &src, "2024-01-03T10:00:00Z", &["--host", "other"]);
    let first = snaps(&repo);
    let id1 = id_at(&first, "2024-01-01 10:00").to_string();
    let id2 = id_at(&first, "2024-01-02 10:00").to_string();

    let r = run(&mut repo.coffer(["tag", "--add", "x,y", "--add", "nightly", &id1[..8]])).ok();
    assert!(
        r.stdout_str().contains("modified tags on 1 snapshots"),
        "{}",
        r.describe()
    );
    let now = snaps(&repo);
    assert!(
        !now.iter().any(|s| s.id == id1),
        "the old snapshot file is still there"
    );
    let s1 = now
        .iter()
        .find(|s| s.utc == "2024-01-01 10:00")
        .expect("snapshot 1");
    assert_eq!(s1.tags, ["nightly", "x", "y"]);
    assert_eq!(s1.json["original"], id1.as_str());
    let new1 = s1.id.clone();

    // Remove and add at once; the original stays the first version's id.
    let r = run(&mut repo.coffer(["--json", "tag", "--remove", "x", "--add", "z", &new1])).ok();
    let lines = r.json_lines();
    assert_eq!(lines[0]["message_type"], "changed");
    assert_eq!(lines[0]["old_snapshot_id"], new1.as_str());
    assert_eq!(
        lines.last().map(|l| l["changed_snapshots"].clone()),
        Some(1.into())
    );
    let theirs = restic_snaps(&repo);
    let s1 = theirs
        .iter()
        .find(|s| s.utc == "2024-01-01 10:00")
        .expect("snapshot 1 in restic");
    assert_eq!(s1.tags, ["nightly", "y", "z"]);
    assert_eq!(s1.json["original"], id1.as_str());

    // A change that changes nothing rewrites nothing.
    let r = run(&mut repo.coffer(["tag", "--add", "z", &s1.id])).ok();
    assert!(
        r.stdout_str().contains("modified tags on 0 snapshots"),
        "{}",
        r.describe()
    );

    // --set on every snapshot passing the filter (host of the first two).
    let host = first
        .iter()
        .find(|s| s.id == id2)
        .map(|s| s.host.clone())
        .expect("host");
    let r = run(&mut repo.coffer(["tag", "--set", "prod", "--host", &host])).ok();
    assert!(
        r.stdout_str().contains("modified tags on 2 snapshots"),
        "{}",
        r.describe()
    );
    let theirs = restic_snaps(&repo);
    let tags_at = |list: &[Snap], at: &str| -> Vec<String> {
        list.iter()
            .find(|s| s.utc == at)
            .map(|s| s.tags.clone())
            .unwrap_or_else(|| panic!("no snapshot at {at}"))
    };
    assert_eq!(tags_at(&theirs, "2024-01-01 10:00"), ["prod"]);
    assert_eq!(tags_at(&theirs, "2024-01-02 10:00"), ["prod"]);
    assert!(tags_at(&theirs, "2024-01-03 10:00").is_empty());
    let s2 = theirs
        .iter()
        .find(|s| s.utc == "2024-01-02 10:00")
        .expect("snapshot 2");
    assert_eq!(s2.json["original"], id2.as_str());

    // --tag filters; --set "" clears.
    run(&mut repo.coffer(["tag", "--set", "", "--tag", "prod"])).ok();
    let theirs = restic_snaps(&repo);
    assert!(theirs.iter().all(|s| s.tags.is_empty()), "tags left");
    assert_eq!(theirs.len(), 3);

    // Usage errors.
    let r = run(&mut repo.coffer(["tag", "latest"])).expect_code(1);
    assert!(
        r.stderr.contains("--add, --remove or --set"),
        "{}",
        r.describe()
    );
    let r = run(&mut repo.coffer(["tag", "--set", "a", "--add", "b"])).expect_code(1);
    assert!(r.stderr.contains("cannot be combined"), "{}", r.describe());
    run(&mut repo.coffer(["tag", "--add", "a", "ffffffffff"])).expect_code(1);

    assert_eq!(repo.count_files("locks"), 0);
    assert_eq!(repo.count_files("snapshots"), 3);
    repo.restic_check(false);
}
