//! The audit log as a file: a chain of HMAC-signed lines that verification walks, and every
//! way it can be damaged (an edited byte, a changed space, a garbage, inserted, removed or torn
//! line, a cut tail), concurrent appends, and the rules for where the key may live.

// A test fails by panicking: unwrap is how these say what they expect.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use coffer_audit::{
    check_key_location, verify, AuditError, AuditKey, AuditLog, Entry, Head, ProblemKind,
};

fn key() -> AuditKey {
    AuditKey::from_bytes([7; 32])
}

fn entry(i: u32) -> Entry {
    Entry::new(
        format!("user{i}"),
        "backup",
        format!("job/web-{i}"),
        "success",
    )
}

/// A log with `n` entries; returns its path and the head after each append.
fn log_with(dir: &Path, n: u32) -> (PathBuf, Vec<Head>) {
    let path = dir.join("log").join("audit.log");
    let log = AuditLog::open(&path, key()).unwrap();
    let heads = (1..=n).map(|i| log.append(&entry(i)).unwrap()).collect();
    (path, heads)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

fn kinds(path: &Path, expected: Option<&Head>) -> Vec<(u64, ProblemKind)> {
    verify(path, &key(), expected)
        .unwrap()
        .problems
        .iter()
        .map(|p| (p.line, p.kind))
        .collect()
}

#[test]
fn append_three_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (path, heads) = log_with(dir.path(), 3);
    assert_eq!(heads.iter().map(|h| h.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let report = verify(&path, &key(), Some(&heads[2])).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.lines, 3);
    assert_eq!(report.head.as_ref(), Some(&heads[2]));
    // An older recorded head is fine too: the log only grew since.
    assert!(verify(&path, &key(), Some(&heads[0])).unwrap().ok());
    let log = AuditLog::open(&path, key()).unwrap();
    assert_eq!(log.head().unwrap(), Some(heads[2].clone()));
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn line_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, key()).unwrap();
    let time = Utc.with_ymd_and_hms(2026, 11, 27, 6, 0, 0).unwrap()
        + chrono::Duration::nanoseconds(123_456_789);
    let mut e = Entry {
        time,
        actor: "admin".into(),
        action: "restore".into(),
        target: "job/web".into(),
        outcome: "success".into(),
        details: Some(serde_json::json!({"files": 12, "ratio": 0.1})),
    };
    let h1 = log.append(&e).unwrap();
    e.details = Some(serde_json::Value::Null);
    let h2 = log.append(&e).unwrap();
    let l = lines(&path);
    let zeros = "0".repeat(64);
    assert_eq!(
        l[0],
        format!(
            "{{\"seq\":1,\"time\":\"2026-11-27T06:00:00.123Z\",\"actor\":\"admin\",\
             \"action\":\"restore\",\"target\":\"job/web\",\"outcome\":\"success\",\
             \"details\":{{\"files\":12,\"ratio\":0.1}},\"prev\":\"{zeros}\",\"mac\":\"{}\"}}",
            h1.mac
        )
    );
    // `null` details are no details.
    assert!(l[1].starts_with("{\"seq\":2,"));
    assert!(!l[1].contains("details"));
    assert!(l[1].ends_with(&format!(
        ",\"prev\":\"{}\",\"mac\":\"{}\"}}",
        h1.mac, h2.mac
    )));
    assert!(verify(&path, &key(), Some(&h2)).unwrap().ok());
}

#[test]
fn edited_byte_is_bad_mac() {
    let dir = tempfile::tempdir().unwrap();
    let (path, heads) = log_with(dir.path(), 3);
    let mut l = lines(&path);
    l[1] = l[1].replace("\"user2\"", "\"user9\"");
    write_lines(&path, &l);
    assert_eq!(
        kinds(&path, Some(&heads[2])),
        [(2, ProblemKind::BadMac)],
        "one edit, one problem"
    );
}

#[test]
fn whitespace_change_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = log_with(dir.path(), 3);
    let mut l = lines(&path);
    l[1] = l[1].replacen(",\"time\"", ", \"time\"", 1);
    write_lines(&path, &l);
    assert_eq!(kinds(&path, None), [(2, ProblemKind::Malformed)]);
}

#[test]
fn garbage_line_is_malformed_and_reanchors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = log_with(dir.path(), 4);
    let mut l = lines(&path);
    l[1] = "not json".into();
    write_lines(&path, &l);
    assert_eq!(kinds(&path, None), [(2, ProblemKind::Malformed)]);
}

#[test]
fn inserted_line_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (path, heads) = log_with(dir.path(), 4);
    let mut l = lines(&path);
    l.insert(2, l[1].clone());
    write_lines(&path, &l);
    assert_eq!(
        kinds(&path, Some(&heads[3])),
        [(3, ProblemKind::BrokenChain), (3, ProblemKind::BadSequence)]
    );
}

#[test]
fn removed_line_breaks_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (path, heads) = log_with(dir.path(), 4);
    let mut l = lines(&path);
    l.remove(1);
    write_lines(&path, &l);
    assert_eq!(
        kinds(&path, Some(&heads[3])),
        [(2, ProblemKind::BrokenChain), (2, ProblemKind::BadSequence)]
    );
    // Removing the first line is caught too.
    let mut l = lines(&path);
    l.remove(0);
    write_lines(&path, &l);
    let k = kinds(&path, None);
    assert_eq!(k[0], (1, ProblemKind::BrokenChain));
}

#[test]
fn cut_tail_needs_the_expected_head() {
    let dir = tempfile::tempdir().unwrap();
    let (path, heads) = log_with(dir.path(), 3);
    let mut l = lines(&path);
    l.pop();
    write_lines(&path, &l);
    // The shorter chain is valid on its own: that is why the head is kept elsewhere.
    assert!(verify(&path, &key(), None).unwrap().ok());
    let report = verify(&path, &key(), Some(&heads[2])).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::Truncated);
    assert!(
        report.problems[0].message.contains("last 1 line(s)"),
        "{}",
        report.problems[0]
    );

    // Cut and appended to again (by someone holding the key, or by coffer itself): the
    // line at the recorded seq now has another MAC.
    let log = AuditLog::open(&path, key()).unwrap();
    log.append(&entry(99)).unwrap();
    log.append(&entry(100)).unwrap();
    assert!(verify(&path, &key(), None).unwrap().ok());
    assert_eq!(kinds(&path, Some(&heads[2])), [(3, ProblemKind::Truncated)]);
}

#[test]
fn empty_or_missing_log() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.log");
    let head = Head {
        seq: 1,
        mac: "ab".repeat(32),
    };
    let r = verify(&missing, &key(), None).unwrap();
    assert!(r.ok());
    assert_eq!((r.lines, r.head), (0, None));
    assert_eq!(kinds(&missing, Some(&head)), [(1, ProblemKind::Truncated)]);

    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, key()).unwrap();
    assert_eq!(log.head().unwrap(), None);
    assert!(verify(&path, &key(), None).unwrap().ok());
    assert_eq!(kinds(&path, Some(&head)), [(1, ProblemKind::Truncated)]);
}

#[test]
fn wrong_key_is_bad_mac_at_line_1() {
    let dir = tempfile::tempdir().unwrap();
    let (path, heads) = log_with(dir.path(), 300);
    let other = AuditKey::from_bytes([8; 32]);
    let report = verify(&path, &other, Some(&heads[299])).unwrap();
    let k: Vec<_> = report.problems.iter().map(|p| (p.line, p.kind)).collect();
    assert_eq!(k, [(1, ProblemKind::BadMac)], "{:?}", report.problems);
    assert_eq!(report.omitted, 0);
    assert!(report.problems[0].message.contains("wrong key"));
    assert!(!report.ok());
}

#[test]
fn many_problems_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = log_with(dir.path(), 300);
    let l: Vec<String> = lines(&path)
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            if i % 2 == 0 {
                l.replace("\"success\"", "\"failed\"")
            } else {
                l
            }
        })
        .collect();
    write_lines(&path, &l);
    let report = verify(&path, &key(), None).unwrap();
    assert_eq!(report.problems.len(), coffer_audit::MAX_PROBLEMS);
    assert_eq!(report.omitted, 50);
    assert!(report
        .problems
        .iter()
        .all(|p| p.kind == ProblemKind::BadMac));
}

#[test]
fn append_refuses_an_edited_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (path, heads) = log_with(dir.path(), 3);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"user3\"", "\"mallory\"");
    write_lines(&path, &l);
    let log = AuditLog::open(&path, key()).unwrap();
    let err = log.append(&entry(4)).unwrap_err();
    assert!(
        matches!(err, AuditError::Broken { line: Some(3), .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    assert!(matches!(log.head(), Err(AuditError::Broken { .. })));
    assert_eq!(lines(&path).len(), 3, "nothing appended");
    assert_eq!(kinds(&path, Some(&heads[2]))[0], (3, ProblemKind::BadMac));
    // With the wrong key, appending is refused too.
    let other = AuditLog::open(&path, AuditKey::from_bytes([9; 32])).unwrap();
    assert!(matches!(
        other.append(&entry(5)),
        Err(AuditError::Broken { .. })
    ));
}

#[test]
fn torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, heads) = log_with(dir.path(), 2);
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":3,\"time\":\"2026-").unwrap();
    drop(f);
    assert_eq!(kinds(&path, Some(&heads[1])), [(3, ProblemKind::TornWrite)]);
    let log = AuditLog::open(&path, key()).unwrap();
    let err = log.append(&entry(3)).unwrap_err();
    assert!(matches!(err, AuditError::Broken { line: None, .. }));
    assert!(err.to_string().contains("coffer audit verify"), "{err}");
}

#[test]
fn long_lines_are_read_back_across_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path, key()).unwrap();
    for size in [10, 8000, 8192, 20_000, 70_000, 5] {
        let e = entry(1).with_details(serde_json::json!({ "blob": "x".repeat(size) }));
        let head = log.append(&e).unwrap();
        assert_eq!(log.head().unwrap(), Some(head));
    }
    let report = verify(&path, &key(), log.head().unwrap().as_ref()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.lines, 6);
}

#[test]
fn concurrent_appends_make_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // Two instances (as two processes would have) and one shared between threads.
    let shared = Arc::new(AuditLog::open(&path, key()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                let own = AuditLog::open(&path, key()).unwrap();
                let log = if t < 2 { &own } else { &*shared };
                for i in 0..100 {
                    log.append(&entry(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let head = shared.head().unwrap().unwrap();
    assert_eq!(head.seq, 400);
    let report = verify(&path, &key(), Some(&head)).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.lines, 400);
}

#[test]
fn key_file_is_created_0600_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("etc").join("coffer").join("audit.key");
    let k1 = AuditKey::load_or_create(&key_path).unwrap();
    let meta = fs::metadata(&key_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = fs::read_to_string(&key_path).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n'));
    assert_eq!(format!("{k1:?}"), "AuditKey(<redacted>)");
    assert!(!format!("{k1:?}").contains(&text[..16]));
    // No temporary file left behind.
    assert_eq!(fs::read_dir(key_path.parent().unwrap()).unwrap().count(), 1);

    // Reading it back gives the same key.
    let k2 = AuditKey::load_or_create(&key_path).unwrap();
    let log_path = dir.path().join("log").join("audit.log");
    let head = AuditLog::open(&log_path, k1)
        .unwrap()
        .append(&entry(1))
        .unwrap();
    assert!(verify(&log_path, &k2, Some(&head)).unwrap().ok());
}

#[test]
fn key_file_readable_by_others_or_bad_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("audit.key");
    fs::write(&key_path, format!("{}\n", "ab".repeat(32))).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = AuditKey::load_or_create(&key_path).unwrap_err();
    assert!(matches!(err, AuditError::Key { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&key_path.display().to_string()), "{msg}");
    assert!(msg.contains("0644"), "{msg}");

    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    AuditKey::load_or_create(&key_path).unwrap();
    // Without the newline is fine.
    fs::write(&key_path, "ab".repeat(32)).unwrap();
    AuditKey::load_or_create(&key_path).unwrap();

    for bad in [
        "",
        "abcd\n",
        &"zz".repeat(32),
        &format!("{}\n\n", "ab".repeat(32)),
    ] {
        fs::write(&key_path, bad).unwrap();
        let err = AuditKey::load_or_create(&key_path).unwrap_err();
        assert!(matches!(err, AuditError::Key { .. }), "{bad:?}: {err:?}");
        assert!(err.to_string().contains(&key_path.display().to_string()));
    }
}

#[test]
fn key_location() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("var")).unwrap();
    fs::create_dir_all(d.join("etc")).unwrap();
    let log = d.join("var").join("audit.log");
    let err = check_key_location(&log, &d.join("var").join("audit.key")).unwrap_err();
    assert!(matches!(err, AuditError::KeyLocation { .. }));
    let msg = err.to_string();
    assert!(msg.contains("must live elsewhere"), "{msg}");
    assert!(msg.contains(&log.display().to_string()), "{msg}");
    // Spelled differently.
    assert!(check_key_location(&log, &d.join("etc/../var/./audit.key")).is_err());
    // Through a symbolic link.
    std::os::unix::fs::symlink(d.join("var"), d.join("link")).unwrap();
    assert!(check_key_location(&log, &d.join("link").join("audit.key")).is_err());
    // Directories that do not exist yet.
    let new_log = d.join("new").join("sub").join("audit.log");
    assert!(check_key_location(&new_log, &d.join("new/sub/audit.key")).is_err());
    assert!(check_key_location(&new_log, &d.join("link/../new/sub/k")).is_err());

    check_key_location(&log, &d.join("etc").join("audit.key")).unwrap();
    check_key_location(&new_log, &d.join("new").join("audit.key")).unwrap();
    check_key_location(&new_log, &d.join("other/sub/audit.key")).unwrap();
}
