//! prune: frees space without losing what kept snapshots need; safe beside running backups;
//! and a prune killed at any moment leaves a repository that still restores everything.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

/// Deletes snapshot files directly, which is all `forget` does to a repository.
fn drop_snapshots(repo: &Repo, ids: &[String]) {
    let dir = repo
        .dir
        .as_ref()
        .expect("local repository")
        .join("snapshots");
    for id in ids {
        std::fs::remove_file(dir.join(id)).expect("removing a snapshot file");
    }
}

fn cp_a(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

/// Files below `dir`, as paths relative to it, sorted.
pub fn rel_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `coffer --json restore ID --target TARGET --verify`, which must succeed with no errors.
fn restore_id_verified(repo: &Repo, id: &str, target: &Path) {
    let r = run(&mut repo.coffer([
        "--json".as_ref(),
        "restore".as_ref(),
        id.as_ref(),
        "--target".as_ref(),
        target.as_os_str(),
        "--verify".as_ref(),
    ]))
    .ok();
    assert_eq!(
        r.summary()["errors"],
        0,
        "restore of {id}: {}",
        r.describe()
    );
}

/// Restores snapshot `id` and compares file contents with `expected` (a copy of the backed-up
/// directory `src` at the time).
pub fn restore_matches(repo: &Repo, id: &str, src: &Path, expected: &Path, scratch: &Path) {
    let target = scratch.join(format!("restore-{id}"));
    restore_id_verified(repo, id, &target);
    let got = restored_path(&target, src);
    let want_files = rel_files(expected);
    assert_eq!(rel_files(&got), want_files, "files of snapshot {id}");
    for f in &want_files {
        if let Some(d) = first_difference(&expected.join(f), &got.join(f)) {
            panic!("snapshot {id}: {f} differs after prune: {d}");
        }
    }
    std::fs::remove_dir_all(&target).expect("cleaning up a restore");
}

/// Four generations of a directory; returns the copies of each state.
fn generations(
    tmp: &Path,
    repo: &Repo,
    src: &Path,
    gens: usize,
    mib: u64,
) -> Vec<std::path::PathBuf> {
    let mut states = Vec::new();
    for i in 0..gens {
        random_files(
            &src.join(format!("gen{i}")),
            mib << 20,
            3 << 20,
            1000 + i as u64,
        );
        if i >= 2 {
            std::fs::remove_dir_all(src.join(format!("gen{}", i - 2))).unwrap();
        }
        write(
            &src.join("counter.txt"),
            format!("generation {i}\n").as_bytes(),
        );
        repo.backup([src]);
        let state = tmp.join(format!("state{i}"));
        cp_a(src, &state);
        states.push(state);
    }
    states
}

#[test]
fn prune_frees_space_and_keeps_what_snapshots_need() {
    let tmp = tempdir("coffer-prune-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let src = tmp.path().join("src");
    let states = generations(tmp.path(), &repo, &src, 4, 12);
    let ids = repo.snapshot_ids();
    assert_eq!(ids.len(), 4);
    drop_snapshots(&repo, &[ids[0].clone(), ids[2].clone()]);
    let before = dir_bytes(&repo.dir.clone().unwrap().join("data"));

    // A dry run changes nothing.
    let listing = list_files(repo.dir.as_ref().unwrap());
    let dry = run(&mut repo.coffer(["--json", "prune", "--dry-run"])).ok();
    assert_eq!(dry.summary()["dry_run"], true);
    assert!(dry.summary()["bytes_freed"].as_u64().unwrap() > 0);
    assert_eq!(list_files(repo.dir.as_ref().unwrap()), listing);

    let r = run(&mut repo.coffer(["--json", "prune", "--max-unused", "0%"])).ok();
    let s = r.summary();
    eprintln!("prune summary: {s}");
    let after = dir_bytes(&repo.dir.clone().unwrap().join("data"));
    assert!(
        s["remove_packs"]["count"].as_u64().unwrap() + s["repack_packs"]["count"].as_u64().unwrap()
            > 0
    );
    assert_eq!(s["unused_after"], 0, "max-unused 0% leaves nothing unused");
    assert_eq!(s["bytes_freed"].as_u64().unwrap(), before - after);
    // Snapshot 1 holds gen0+gen1 and snapshot 3 gen2+gen3: only the dropped snapshots'
    // counter files and trees are unused, so prune repacks the packs that hold them.
    assert!(after < before, "prune freed nothing: {before} -> {after}");

    repo.restic_check(true);
    let chk = run(&mut repo.coffer(["--json", "check", "--read-data"])).ok();
    assert_eq!(chk.summary()["ok"], true, "{}", chk.describe());
    assert_eq!(
        chk.summary()["unreferenced_packs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    for (i, id) in ids.iter().enumerate() {
        if i == 1 || i == 3 {
            restore_matches(&repo, id, &src, &states[i], tmp.path());
        }
    }
    // Nothing left to do: a second prune changes nothing.
    let again = run(&mut repo.coffer(["--json", "prune", "--max-unused", "0%"])).ok();
    assert_eq!(again.summary()["bytes_freed"], 0);
    assert_eq!(again.summary()["packs_written"], 0);
}

#[test]
fn prune_while_backups_run() {
    let tmp = tempdir("coffer-prune-conc-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let src = tmp.path().join("src");
    random_files(&src.join("base"), 6 << 20, 2 << 20, 7);
    repo.backup([&src]);
    const ROUNDS: usize = 20;

    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let backups = {
        let repo = repo.clone();
        let src = src.clone();
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            for i in 0..ROUNDS {
                // Each round replaces a file, so older snapshots hold data newer ones do not.
                write_data_file(&src.join("changing.bin"), 3 << 20, 5000 + i as u64, false);
                write(
                    &src.join(format!("small-{i}.txt")),
                    format!("round {i}\n").as_bytes(),
                );
                run(&mut repo.coffer([
                    "--retry-lock",
                    "5m",
                    "backup",
                    "-q",
                    src.to_str().unwrap(),
                ]))
                .ok();
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    let mut pruned = 0;
    for round in 0..ROUNDS {
        // Keep pace with the backups, so that each prune has something to remove; the prune
        // still overlaps the next backup.
        wait_until("a backup to finish", Duration::from_secs(300), || {
            done.load(std::sync::atomic::Ordering::SeqCst) > round
        });
        // Forget all but the newest two snapshots, then prune, as `forget --keep-last 2 --prune`.
        let ids = repo.snapshot_ids();
        if ids.len() > 2 {
            drop_snapshots(&repo, &ids[..ids.len() - 2]);
        }
        let r = run(&mut repo.coffer([
            "--json",
            "--retry-lock",
            "5m",
            "prune",
            "--max-unused",
            "0%",
        ]))
        .ok();
        pruned += r.summary()["bytes_freed"].as_u64().unwrap();
    }
    backups.join().expect("backup thread");
    eprintln!("prune while backing up: {pruned} bytes freed over {ROUNDS} rounds");
    assert!(pruned > 0);

    // Every snapshot that remains restores, verified, and the newest one is the source.
    for id in repo.snapshot_ids() {
        let target = tmp.path().join(format!("r-{id}"));
        restore_id_verified(&repo, &id, &target);
        std::fs::remove_dir_all(&target).unwrap();
    }
    let last = tmp.path().join("last");
    repo.restore_verified(&last);
    assert_trees_equal(
        &src,
        &restored_path(&last, &src),
        Restorer::Coffer,
        "latest after prunes",
    );
    repo.restic_check(true);
}

#[test]
fn kill_9_during_prune_at_ten_moments() {
    let tmp = tempdir("coffer-prune-kill-");
    let template = Repo::local(&tmp.path().join("template"));
    template.init();
    let src = tmp.path().join("src");
    let states = generations(tmp.path(), &template, &src, 4, 24);
    let ids = template.snapshot_ids();
    drop_snapshots(&template, &[ids[0].clone(), ids[2].clone()]);

    let fresh = |name: &str| {
        let dir = tmp.path().join(name);
        cp_a(template.dir.as_ref().unwrap(), &dir);
        Repo::local(&dir)
    };
    // How long an uninterrupted prune takes, to spread the kills over it. The shortest of three
    // runs: the first one pays for cold caches, and a span longer than the rounds' prunes puts
    // the late kills after the prune has exited.
    let span = (0..3)
        .map(|i| {
            let full = fresh(&format!("full{i}"));
            let t = Instant::now();
            run(&mut full.coffer(["prune", "--max-unused", "0%"])).ok();
            let span = t.elapsed();
            std::fs::remove_dir_all(full.dir.as_ref().unwrap()).unwrap();
            span
        })
        .min()
        .unwrap();
    eprintln!("an uninterrupted prune takes {span:?}");

    let mut killed_midway = 0;
    for k in 0..10u32 {
        let repo = fresh(&format!("round{k}"));
        let logs = tmp.path().join(format!("logs{k}"));
        std::fs::create_dir_all(&logs).unwrap();
        let mut p = Spawned::start(&mut repo.coffer(["prune", "--max-unused", "0%"]), &logs);
        std::thread::sleep(span * k / 12 + Duration::from_millis(3 * k as u64));
        // An exited child is reaped by try_wait and can no longer be signalled.
        if p.try_wait().is_none() {
            killed_midway += 1;
            p.signal(libc::SIGKILL);
        }
        let _ = p.wait(Duration::from_secs(30));
        // The dead prune's exclusive lock is stale (its pid is gone), so this needs no unlock.
        let chk = run(&mut repo.coffer(["--json", "check", "--read-data"]));
        assert!(
            chk.status.success(),
            "round {k}: check after kill -9 of prune failed: {}",
            chk.describe()
        );
        restore_matches(&repo, &ids[3], &src, &states[3], tmp.path());
        // Finishing the job leaves a clean repository.
        run(&mut repo.coffer(["prune", "--max-unused", "0%"])).ok();
        run(&mut repo.coffer(["unlock"])).ok();
        if k % 3 == 0 {
            restore_matches(&repo, &ids[1], &src, &states[1], tmp.path());
            repo.restic_check(true);
        }
        std::fs::remove_dir_all(repo.dir.as_ref().unwrap()).unwrap();
    }
    eprintln!("{killed_midway} of 10 kills hit a running prune");
    assert!(
        killed_midway >= 7,
        "only {killed_midway} kills hit a running prune"
    );
}
