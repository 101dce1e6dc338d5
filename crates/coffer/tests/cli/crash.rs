//! kill -9 in the middle of a backup: no snapshot, a repository restic still accepts, and the
//! next backup works.

use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn kill_9_during_backup_at_three_moments() {
    let data = big_random();
    let tmp = tempdir("coffer-crash-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    // 400 MiB of incompressible data is about 25 packs of 16 MiB: kill early, midway, late.
    for (round, new_packs) in [2usize, 10, 19].into_iter().enumerate() {
        let before = repo.count_files("data");
        let logs = tmp.path().join(format!("logs-{round}"));
        std::fs::create_dir_all(&logs).unwrap();
        let t = Instant::now();
        let mut p = Spawned::start(&mut repo.coffer(["backup", data.to_str().unwrap()]), &logs);
        wait_until(
            &format!("{new_packs} new packs in data/"),
            Duration::from_secs(180),
            || {
                if let Some(st) = p.try_wait() {
                    panic!(
                        "round {round}: backup ended ({st}) before {new_packs} new packs were written"
                    );
                }
                repo.count_files("data") >= before + new_packs
            },
        );
        p.signal(libc::SIGKILL);
        let r = p.wait(Duration::from_secs(30));
        assert_eq!(
            r.status.code(),
            None,
            "round {round}: backup was not killed: {}",
            r.describe()
        );
        eprintln!(
            "crash round {round}: killed after {:?} with {} packs in data/",
            t.elapsed(),
            repo.count_files("data")
        );
        assert_eq!(
            repo.count_files("snapshots"),
            0,
            "round {round}: a killed backup left a snapshot"
        );
        // The killed process's lock stays behind, as with restic. coffer ignores it (its pid
        // is dead) and `coffer unlock` removes it; restic 0.14 wants it gone before check.
        assert!(
            repo.count_files("locks") >= 1,
            "round {round}: the killed backup's lock file is gone?"
        );
        let u = run(&mut repo.coffer(["--json", "unlock"])).ok();
        assert_eq!(
            repo.count_files("locks"),
            0,
            "round {round}: coffer unlock did not remove the dead process's lock: {}",
            u.describe()
        );
        repo.restic_check(false);
    }

    let s = repo.backup([data.to_str().unwrap()]);
    assert_eq!(s["files_new"], 8, "backup after the crashes: {s}");
    assert_eq!(repo.snapshot_ids().len(), 1);
    repo.restic_check(false);
    let target = tmp.path().join("restore");
    run(&mut repo.coffer(["restore", "latest", "--target", target.to_str().unwrap()])).ok();
    assert_trees_equal(
        data,
        &restored_path(&target, data),
        Restorer::Coffer,
        "restore after interrupted backups",
    );
}
