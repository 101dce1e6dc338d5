//! Failures: each ends with the documented exit code, a message that says what happened, and
//! a repository that is still valid.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coffer_repo::backend::{FileType, Location};
use coffer_repo::lock::LockFile;
use coffer_repo::Repository;

use crate::util::*;

fn small_tree(root: &Path) {
    write(&root.join("a.txt"), b"alpha\n");
    write(&root.join("dir/b.txt"), b"beta\n");
}

#[test]
fn wrong_password_exits_12() {
    let tmp = tempdir("coffer-pw-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    for args in [&["snapshots"][..], &["backup", "/etc/hostname"]] {
        let r = run(repo.coffer(args).env("COFFER_PASSWORD", "not the password")).expect_code(12);
        assert!(
            r.output().to_lowercase().contains("wrong password"),
            "the message should say wrong password: {}",
            r.describe()
        );
    }
    // A password file wins over COFFER_PASSWORD and is trimmed like restic's.
    let pwfile = tmp.path().join("pw");
    std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
    run(repo
        .coffer(["snapshots"])
        .env("COFFER_PASSWORD", "not the password")
        .arg("--password-file")
        .arg(&pwfile))
    .ok();
}

#[test]
fn missing_repository_exits_10() {
    let tmp = tempdir("coffer-missing-");
    let repo = Repo::local(&tmp.path().join("nothing-here"));
    let r = run(&mut repo.coffer(["snapshots"])).expect_code(10);
    assert!(
        r.output().contains("nothing-here"),
        "the message should name the location: {}",
        r.describe()
    );
    std::fs::create_dir_all(tmp.path().join("src")).unwrap();
    run(&mut repo.coffer(["backup", tmp.path().join("src").to_str().unwrap()])).expect_code(10);
}

fn write_lock(repo: &Repo, pid: i64, exclusive: bool) {
    let r = Repository::open(&Location::parse(&repo.url).unwrap(), PASSWORD)
        .expect("opening the repository in-process");
    let lock = LockFile {
        time: chrono::Local::now().fixed_offset(),
        exclusive,
        hostname: coffer_repo::sysinfo::hostname(),
        username: "locktest".into(),
        pid,
        uid: 0,
        gid: 0,
    };
    r.save_json(FileType::Lock, &lock)
        .expect("writing a lock file");
}

#[test]
fn live_lock_exits_11_and_unlock_keeps_it() {
    let tmp = tempdir("coffer-lock-");
    let src = tmp.path().join("src");
    small_tree(&src);
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();

    // A lock of a dead process is stale: it neither blocks a backup nor survives unlock.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id() as i64;
    dead.wait().unwrap();
    write_lock(&repo, dead_pid, true);
    repo.backup([src.to_str().unwrap()]);
    assert_eq!(
        repo.count_files("locks"),
        1,
        "the stale lock should still be there"
    );
    let r = run(&mut repo.coffer(["--json", "unlock"])).ok();
    assert_eq!(
        r.json_lines().first().map(|v| v["removed"].clone()),
        Some(1.into()),
        "unlock should remove the stale lock: {}",
        r.describe()
    );
    assert_eq!(repo.count_files("locks"), 0, "stale lock left after unlock");

    // A live exclusive lock (held by this test process) blocks a backup with exit 11.
    let pid = std::process::id();
    write_lock(&repo, pid as i64, true);
    let r = run(&mut repo.coffer(["backup", src.to_str().unwrap()])).expect_code(11);
    let out = r.output();
    assert!(
        out.contains(&format!("PID {pid}")) && out.contains(&coffer_repo::sysinfo::hostname()),
        "the message should name the holder (PID {pid} on {}): {}",
        coffer_repo::sysinfo::hostname(),
        r.describe()
    );
    assert!(
        out.contains("locked exclusively by") && out.contains("--retry-lock"),
        "the message should say locked, and to wait for a live holder: {}",
        r.describe()
    );
    // Durations on the command line need a unit; a week is one.
    let r = run(&mut repo.coffer(["--retry-lock", "2", "snapshots"])).expect_code(2);
    assert!(r.stderr.contains("has no unit"), "{}", r.describe());
    run(&mut repo.coffer(["--retry-lock", "1w", "--json", "snapshots"])).ok();
    assert_eq!(
        repo.snapshot_ids().len(),
        1,
        "a blocked backup made a snapshot"
    );
    let target = src.with_file_name("restore");
    run(&mut repo.coffer(["restore", "latest", "--target", target.to_str().unwrap()]))
        .expect_code(11);

    // unlock leaves a live lock alone; --remove-all removes it.
    run(&mut repo.coffer(["unlock"])).ok();
    assert_eq!(
        repo.count_files("locks"),
        1,
        "coffer unlock removed a live lock"
    );
    run(&mut repo.coffer(["unlock", "--remove-all"])).ok();
    assert_eq!(
        repo.count_files("locks"),
        0,
        "unlock --remove-all left a lock"
    );
    repo.backup([src.to_str().unwrap()]);
    assert_eq!(repo.snapshot_ids().len(), 2);
    assert_eq!(repo.count_files("locks"), 0, "backup left its lock behind");

    // A live shared lock (another backup) does not block a backup.
    write_lock(&repo, pid as i64, false);
    repo.backup([src.to_str().unwrap()]);
    assert_eq!(repo.snapshot_ids().len(), 3);
    assert_eq!(
        repo.count_files("locks"),
        1,
        "the other backup's lock should remain"
    );
}

#[test]
fn unreadable_file_exits_3_and_is_left_out() {
    let tmp = tempdir("coffer-unreadable-");
    chmod(tmp.path(), 0o755);
    let work = tmp.path().join("work");
    let src = work.join("src");
    write(&src.join("ok.txt"), b"readable\n");
    write(&src.join("sub/also.txt"), b"also readable\n");
    let secret = src.join("sub/secret.bin");
    write(&secret, b"nobody may read this\n");
    let closed = src.join("closed");
    write(
        &closed.join("inner.txt"),
        b"in a directory nobody may list\n",
    );
    std::fs::create_dir_all(work.join("repo")).unwrap();
    chown_r(&work, 65534, 65534);
    chmod(&secret, 0o000);
    chmod(&closed, 0o000);
    let repo = Repo::local(&work.join("repo"));

    run(coffer_as_nobody(&work).args(["-r", &repo.url, "init"])).ok();
    let r = run(coffer_as_nobody(&work).args(["-r", &repo.url, "backup", src.to_str().unwrap()]))
        .expect_code(3);
    assert!(
        r.output().contains(secret.to_str().unwrap()),
        "the warning should name {}: {}",
        secret.display(),
        r.describe()
    );
    assert!(
        r.output().contains(closed.to_str().unwrap()),
        "the warning should name the unreadable directory {}: {}",
        closed.display(),
        r.describe()
    );
    let ids = repo.snapshot_ids();
    assert_eq!(ids.len(), 1, "exit 3 means the snapshot was saved: {ids:?}");
    let ls = run(&mut repo.coffer(["ls", "latest"])).ok().stdout_str();
    let has = |p: &Path| ls.lines().any(|l| l == p.to_str().unwrap());
    assert!(
        has(&src.join("ok.txt")),
        "ok.txt missing from the snapshot:\n{ls}"
    );
    assert!(
        has(&src.join("sub/also.txt")),
        "sub/also.txt missing:\n{ls}"
    );
    assert!(
        !has(&secret),
        "the unreadable file is in the snapshot:\n{ls}"
    );
    assert!(
        !has(&closed.join("inner.txt")),
        "a file of the unlistable directory is in the snapshot:\n{ls}"
    );
    // An unreadable file is a warning, not a new file.
    let r = run(coffer_as_nobody(&work).args([
        "-r",
        &repo.url,
        "--json",
        "backup",
        src.to_str().unwrap(),
    ]))
    .expect_code(3);
    let s = r.summary();
    assert_eq!(s["files_new"], 0, "{s}");
    assert_eq!(s["files_unmodified"], 2, "{s}");
    repo.restic_check(false);
}

/// A file written to while it is read is stored (as restic does) but named in a warning, and
/// the backup exits 3: its copy may mix old and new content.
#[test]
fn a_file_changing_while_read_is_a_warning() {
    let tmp = tempdir("coffer-changing-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let src = tmp.path().join("src");
    write(&src.join("quiet.txt"), b"quiet\n");
    let busy = src.join("busy.log");
    write_data_file(&busy, 96 << 20, 5, false);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (busy, stop) = (busy.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&busy)
                .unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"another log line\n").unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let r = run(&mut repo.coffer(["--json", "backup", src.to_str().unwrap()]));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let r = r.expect_code(3);
    assert!(
        r.output().contains("busy.log") && r.output().contains("changed while it was read"),
        "{}",
        r.describe()
    );
    assert!(!r.output().contains("quiet.txt:"), "{}", r.describe());
    assert_eq!(repo.snapshot_ids().len(), 1, "the snapshot is kept");
}

/// Bad input names what is wrong.
#[test]
fn bad_locations_and_numbers_say_what_is_wrong() {
    let tmp = tempdir("coffer-badinput-");
    let file = tmp.path().join("regfile");
    write(&file, b"not a repository\n");
    let r = run(&mut Repo::local(&file).coffer(["snapshots"])).expect_code(1);
    assert!(
        r.stderr.contains("is a file, not a repository directory"),
        "{}",
        r.describe()
    );
    for (url, says) in [
        (
            "s3:ftp://host/bucket",
            "ftp:// is not an S3 endpoint scheme",
        ),
        ("s3:http://[::1", "without its closing ']'"),
    ] {
        let r = run(&mut Repo::url(url).coffer(["snapshots"])).expect_code(1);
        assert!(r.stderr.contains(says), "{url}: {}", r.describe());
        assert!(
            !r.stderr.contains("missing bucket"),
            "{url}: {}",
            r.describe()
        );
    }
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let r = run(&mut repo.coffer(["forget", "--keep-last", "99999999999"])).expect_code(2);
    assert!(r.stderr.contains("too large"), "{}", r.describe());
    let src = tmp.path().join("src");
    write(&src.join("a"), b"a\n");
    let mut c = repo.coffer(["backup", "--compression", "-7"]);
    run(c.arg(&src)).ok();
    // Usage errors exit 2.
    run(&mut repo.coffer(["backup", "--no-such-option"])).expect_code(2);
}

#[test]
fn unreachable_s3_endpoint_exits_1() {
    let t = Instant::now();
    let repo = Repo::url("s3:http://127.0.0.1:1/bkt/x");
    for args in [&["snapshots"][..], &["backup", "/etc/hostname"]] {
        let mut c = repo.coffer(args);
        c.env("COFFER_BACKEND_RETRIES", "1");
        let r = run(&mut c).expect_code(1);
        assert!(
            r.output().contains("127.0.0.1:1"),
            "the message should name the endpoint: {}",
            r.describe()
        );
        assert!(
            r.output().to_lowercase().contains("connection refused"),
            "the message should say the connection was refused: {}",
            r.describe()
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "giving up on an unreachable endpoint took {:?}",
        t.elapsed()
    );
}

#[test]
fn full_disk_fails_without_snapshot() {
    let tmp = tempdir("coffer-full-");
    let src = tmp.path().join("src");
    random_files(&src, 60_000_000, 20_000_000, 8000);
    let mnt = Tmpfs::mount(&tmp.path().join("mnt"), "20m");
    let repo = Repo::local(&mnt.0.join("repo"));
    repo.init();

    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let r = Spawned::start(&mut repo.coffer(["backup", src.to_str().unwrap()]), &logs)
        .wait(Duration::from_secs(120));
    assert!(
        !r.status.success(),
        "backup of 60 MB into 20 MiB succeeded?! {}",
        r.describe()
    );
    assert!(
        r.output().to_lowercase().contains("no space"),
        "the message should mention no space: {}",
        r.describe()
    );
    assert_eq!(
        repo.count_files("snapshots"),
        0,
        "a failed backup left a snapshot"
    );
    assert_eq!(
        repo.count_files("locks"),
        0,
        "a failed backup left its lock"
    );

    mnt.resize("200m");
    repo.restic_check(false);
    let s = repo.backup([src.to_str().unwrap()]);
    assert_eq!(s["files_new"], 3, "backup after freeing space: {s}");
    repo.restic_check(false);
}

#[test]
fn stdin_from_command_failures_make_no_snapshot() {
    let tmp = tempdir("coffer-cmd-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let backup = |script: &str| {
        let mut c = repo.coffer([
            "backup",
            "--stdin-from-command",
            "--stdin-filename",
            "dump.sql",
            "--",
            "sh",
            "-c",
            script,
        ]);
        let logs = tmp.path().join(format!("logs-{}", script.len()));
        std::fs::create_dir_all(&logs).unwrap();
        Spawned::start(&mut c, &logs).wait(Duration::from_secs(60))
    };

    backup("printf 'hello from a command'").ok();
    let d = run(&mut repo.coffer(["dump", "latest", "/dump.sql"])).ok();
    assert_eq!(d.stdout_str(), "hello from a command");

    let r = backup("echo partial; exit 3").expect_code(1);
    assert!(
        r.output().contains("status 3"),
        "the message should give the command's exit status 3: {}",
        r.describe()
    );
    assert_eq!(
        repo.snapshot_ids().len(),
        1,
        "a failed command made a snapshot"
    );

    let r = backup("echo partial; kill -9 $$").expect_code(1);
    assert!(
        r.output().contains("signal 9"),
        "the message should say the command was killed by signal 9: {}",
        r.describe()
    );
    assert_eq!(
        repo.snapshot_ids().len(),
        1,
        "a killed command made a snapshot"
    );

    let r = backup("exec /nonexistent/pg_dump").expect_code(1);
    assert!(
        r.output().contains("status 127"),
        "the message should give the shell's exit status 127: {}",
        r.describe()
    );
    let mut c = repo.coffer([
        "backup",
        "--stdin-from-command",
        "--",
        "/nonexistent/pg_dump",
        "mydb",
    ]);
    let r = run(&mut c).expect_code(1);
    assert!(
        r.output().contains("/nonexistent/pg_dump"),
        "the message should name the command that could not start: {}",
        r.describe()
    );
    assert_eq!(
        repo.snapshot_ids().len(),
        1,
        "a missing command made a snapshot"
    );
    repo.restic_check(false);
}

#[test]
fn sigint_exits_130_without_snapshot() {
    let data = big_random();
    let tmp = tempdir("coffer-sigint-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let mut p = Spawned::start(
        &mut repo.coffer(["backup", data.to_str().unwrap()]),
        tmp.path(),
    );
    wait_until("two packs in data/", Duration::from_secs(120), || {
        assert!(
            p.try_wait().is_none(),
            "backup ended before it could be interrupted"
        );
        repo.count_files("data") >= 2
    });
    p.signal(libc::SIGINT);
    let r = p.wait(Duration::from_secs(60)).expect_code(130);
    assert_eq!(
        repo.count_files("snapshots"),
        0,
        "an interrupted backup made a snapshot: {}",
        r.describe()
    );
    assert_eq!(
        repo.count_files("locks"),
        0,
        "an interrupted backup left its lock: {}",
        r.describe()
    );
    repo.restic_check(false);
}

/// A write that fails must not leave its temporary file behind: on a full disk that file holds
/// the very space the user needs back, and nothing ever removes it later.
#[test]
fn failed_write_leaves_no_temporary_file() {
    let tmp = tempdir("coffer-tmpleft-");
    let src = tmp.path().join("src");
    random_files(&src, 12 << 20, 12 << 20, 8100);
    let mnt = Tmpfs::mount(&tmp.path().join("mnt"), "4m");
    let repo = Repo::local(&mnt.0.join("repo"));
    repo.init();
    let mut c = repo.coffer(["backup", src.to_str().unwrap()]);
    c.env("COFFER_BACKEND_RETRIES", "0");
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let r = Spawned::start(&mut c, &logs).wait(Duration::from_secs(120));
    assert!(
        !r.status.success(),
        "backup of 12 MiB into 4 MiB succeeded: {}",
        r.describe()
    );
    let left = list_files(&mnt.0.join("repo/.coffer-tmp"));
    assert!(
        left.is_empty(),
        "the failed backup left temporary files that fill the disk: {left:?}\n{}",
        r.describe()
    );
}

#[test]
fn restore_that_matches_nothing_exits_3_and_says_why() {
    let tmp = tempdir("coffer-nomatch-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let src = tmp.path().join("etc");
    small_tree(&src);
    repo.backup([&src]);
    // After a stdin backup, `latest` is the dump, which has no /.../etc/dir.
    run_with_input(
        &mut repo.coffer(["backup", "--stdin", "--stdin-filename", "app.dump"]),
        Some(b"dump"),
    )
    .ok();
    let include = src.join("dir").to_string_lossy().into_owned();
    let target = tmp.path().join("out");
    let r = run(repo
        .coffer(["restore", "latest", "--include", &include, "--target"])
        .arg(&target))
    .expect_code(3);
    assert!(
        r.stderr.contains("nothing restored")
            && r.stderr.contains("/app.dump")
            && r.stderr.contains("--path")
            && !r.stderr.contains("Fatal"),
        "{}",
        r.describe()
    );
    // Chosen by path, the same include restores; a second include that matches nothing is
    // named and makes the exit code 3 unless --partial.
    let path = src.to_string_lossy().into_owned();
    let r = run(repo
        .coffer(["restore", "latest", "--path", &path, "--include", &include])
        .args(["--include", "/nope", "--target"])
        .arg(&target))
    .expect_code(3);
    assert!(
        r.stderr.contains("--include /nope matched nothing"),
        "{}",
        r.describe()
    );
    assert!(restored_path(&target, &src).join("dir/b.txt").is_file());
    run(repo
        .coffer([
            "restore",
            "latest",
            "--path",
            &path,
            "--include",
            &include,
            "--partial",
        ])
        .args(["--include", "/nope", "--target"])
        .arg(&target))
    .ok();
}
