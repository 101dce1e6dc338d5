//! Damage costs only the damaged bytes: a restore from a damaged repository restores every
//! file it can exactly, names each file it cannot, leaves no wrong file behind that looks
//! right, and says "partial" (exit 3).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::util::*;

fn data_packs(repo: &Repo) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let data = repo.dir.as_ref().unwrap().join("data");
    for sub in std::fs::read_dir(&data).unwrap().flatten() {
        for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
            let name = f.file_name().to_str().unwrap().to_string();
            let r = run(&mut repo.coffer(["cat", "pack", &name])).ok();
            if !r.stdout_str().contains("\"tree\"") {
                v.push(f.path());
            }
        }
    }
    v.sort();
    v
}

/// Truncates a file to `len` bytes.
fn cut_to(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// The files a `--json` restore named as damaged, relative to the restored source root.
fn damaged_names(r: &Run) -> BTreeSet<String> {
    let s = r.summary();
    assert_eq!(
        s["files_damaged"].as_u64().unwrap() as usize,
        s["damaged"].as_array().unwrap().len(),
        "{s}"
    );
    s["damaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let p = d["path"].as_str().unwrap();
            p.rsplit('/').next().unwrap().to_string()
        })
        .collect()
}

/// Every source file is either restored byte for byte or named as damaged and absent (or,
/// with `kept`, present only as NAME.damaged); returns how many were restored exactly.
fn assert_exact_or_named(
    src: &Path,
    target: &Path,
    damaged: &BTreeSet<String>,
    kept: bool,
) -> usize {
    let got = restored_path(target, src);
    let mut exact = 0;
    for f in crate::prune::rel_files(src) {
        let name = f.rsplit('/').next().unwrap().to_string();
        let dst = got.join(&f);
        if damaged.contains(&name) {
            assert!(!dst.exists(), "{f} is named damaged but was left in place");
            let marked = got.join(format!("{f}.damaged"));
            assert_eq!(marked.exists(), kept, "{}", marked.display());
        } else {
            assert!(dst.exists(), "{f} is neither restored nor named damaged");
            assert!(
                first_difference(&src.join(&f), &dst).is_none(),
                "{f} was restored wrong without being named"
            );
            exact += 1;
        }
    }
    exact
}

fn restore_json(repo: &Repo, target: &Path, extra: &[&str]) -> Run {
    let mut c = repo.coffer(["--json", "restore", "latest", "--target"]);
    c.arg(target).args(extra);
    run(&mut c)
}

#[test]
fn truncated_pack_costs_only_its_files() {
    let tmp = tempdir("coffer-damage-trunc-");
    let base = tmp.path().join("repo");
    let repo = Repo::local(&base);
    repo.init();
    let src = tmp.path().join("src");
    random_files(&src, 40 << 20, 1 << 20, 300);
    repo.backup([&src]);
    let packs = data_packs(&repo);
    assert!(packs.len() >= 2, "{packs:?}");
    let victim_rel = packs[0].strip_prefix(&base).unwrap().to_path_buf();
    let len = std::fs::metadata(&packs[0]).unwrap().len();
    let total = crate::prune::rel_files(&src).len();

    for cut in [0, 1, 100, len / 2, len - 1] {
        let copy = tmp.path().join(format!("repo-{cut}"));
        copy_dir(&base, &copy);
        let damaged_repo = Repo::local(&copy);
        cut_to(&copy.join(&victim_rel), cut);
        let target = tmp.path().join(format!("restored-{cut}"));
        // Cutting only the header's last byte loses no blob: restore reads by the index.
        let header_only = cut == len - 1;
        let r =
            restore_json(&damaged_repo, &target, &[]).expect_code(if header_only { 0 } else { 3 });
        let damaged = damaged_names(&r);
        assert_eq!(
            damaged.is_empty(),
            header_only,
            "cut at {cut}: {}",
            r.describe()
        );
        let exact = assert_exact_or_named(&src, &target, &damaged, false);
        assert_eq!(exact + damaged.len(), total, "cut at {cut}");
        assert_eq!(r.summary()["files_restored"], exact as u64, "cut at {cut}");
        eprintln!(
            "cut at {cut} of {len}: {exact} exact, {} damaged",
            damaged.len()
        );
        // The text output names each damaged file and ends in a partial, not "Fatal".
        let t = tmp.path().join(format!("restored-text-{cut}"));
        let mut c = damaged_repo.coffer(["restore", "latest", "--target"]);
        let r = run(c.arg(&t));
        if !header_only {
            let r = r.expect_code(3);
            for name in &damaged {
                assert!(
                    r.stderr.contains(name.as_str()),
                    "{name} not named: {}",
                    r.describe()
                );
            }
            assert!(
                r.stderr.contains("could not be restored exactly"),
                "{}",
                r.describe()
            );
            assert!(!r.stderr.contains("Fatal"), "{}", r.describe());
        }
        std::fs::remove_dir_all(&copy).unwrap();
        std::fs::remove_dir_all(&target).unwrap();
        std::fs::remove_dir_all(&t).unwrap();
    }
}

#[test]
fn one_flipped_byte_costs_one_file() {
    let tmp = tempdir("coffer-damage-flip-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let src = tmp.path().join("src");
    random_files(&src.join("sub"), 30 << 20, 1 << 20, 400);
    write(&src.join("small.txt"), b"small\n");
    repo.backup([&src]);
    let pack = data_packs(&repo).into_iter().next().unwrap();
    flip_byte(&pack, std::fs::metadata(&pack).unwrap().len() / 3);
    let total = crate::prune::rel_files(&src).len();

    let target = tmp.path().join("restored");
    let r = restore_json(&repo, &target, &[]).expect_code(3);
    let damaged = damaged_names(&r);
    assert_eq!(damaged.len(), 1, "one blob, one file: {}", r.describe());
    let exact = assert_exact_or_named(&src, &target, &damaged, false);
    assert_eq!(exact, total - 1);
    assert_eq!(r.summary()["files_restored"], exact as u64);

    // --keep-damaged keeps what could be read next to the exact files, under a marked name.
    let kept = tmp.path().join("kept");
    let r = restore_json(&repo, &kept, &["--keep-damaged"]).expect_code(3);
    assert_eq!(damaged_names(&r), damaged);
    assert_exact_or_named(&src, &kept, &damaged, true);
    let d = &r.summary()["damaged"][0];
    assert!(d["kept"].as_str().unwrap().ends_with(".damaged"), "{d}");

    // restic restores the same files from the same damaged copy: so must we.
    let rt = tmp.path().join("restic");
    let rr = run(repo.restic(["restore", "latest", "--target"]).arg(&rt));
    let restic_exact = crate::prune::rel_files(&src)
        .iter()
        .filter(|f| {
            let p = restored_path(&rt, &src).join(f);
            p.exists() && first_difference(&src.join(f), &p).is_none()
        })
        .count();
    assert!(
        exact >= restic_exact,
        "restic restored {restic_exact} exactly, coffer {exact}: {}",
        rr.describe()
    );
}

#[test]
fn a_full_disk_during_restore_leaves_no_complete_looking_file() {
    let tmp = tempdir("coffer-damage-full-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let src = tmp.path().join("src");
    write_data_file(&src.join("big.bin"), 30 << 20, 77, false);
    write(&src.join("small.txt"), b"small\n");
    // Small files whose blobs share packs with big.bin's: written while the disk fills,
    // they fail too, and must be restored once big.bin has given its space back.
    for i in 0..40 {
        write_data_file(&src.join(format!("s/{i:02}.bin")), 64 << 10, i, false);
    }
    repo.backup([&src]);
    let mnt = Tmpfs::mount(&tmp.path().join("mnt"), "12m");
    let target = mnt.0.join("t");
    let r = restore_json(&repo, &target, &[]);
    assert_eq!(r.status.code(), Some(3), "{}", r.describe());
    let s = r.summary();
    let got = restored_path(&target, &src);
    assert!(
        !got.join("big.bin").exists(),
        "{}",
        list_files(&target).join("\n")
    );
    assert!(
        s["damaged"].to_string().contains("big.bin") || s["errors"].as_u64().unwrap() > 0,
        "{s}"
    );
    assert_eq!(
        s["files_restored"], 41,
        "every file but big.bin is exact: {s}"
    );
    assert!(first_difference(&src.join("small.txt"), &got.join("small.txt")).is_none());
    for i in 0..40 {
        let f = format!("s/{i:02}.bin");
        assert!(
            first_difference(&src.join(&f), &got.join(&f)).is_none(),
            "{f}"
        );
    }
}

fn flip_byte(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x01]).unwrap();
}

/// One damaged snapshot file is reported and skipped by every command, blocks only prune
/// (which could not know what it refers to), and `repair snapshots --forget` or
/// `forget ID` removes it.
#[test]
fn a_damaged_snapshot_file_blocks_nothing_but_prune() {
    let tmp = tempdir("coffer-damage-snap-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    let src = tmp.path().join("src");
    for i in 0..3 {
        write(
            &src.join(format!("f{i}.txt")),
            format!("version {i}\n").as_bytes(),
        );
        repo.backup([&src]);
    }
    let ids = repo.snapshot_ids();
    assert_eq!(ids.len(), 3);
    let snapdir = repo.dir.as_ref().unwrap().join("snapshots");
    flip_byte(&snapdir.join(&ids[1]), 40);
    flip_byte(&snapdir.join(&ids[2]), 40);
    let short = |id: &str| id[..8].to_string();

    // Listing, restore of an intact snapshot and backup go on, each naming the damaged files.
    let r = run(&mut repo.coffer(["snapshots", "--json"])).ok();
    let listed: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{}", r.describe());
    assert!(
        r.stderr.contains(&ids[1]) && r.stderr.contains("damaged"),
        "{}",
        r.describe()
    );
    let target = tmp.path().join("restored");
    let mut c = repo.coffer(["restore", &ids[0], "--target"]);
    run(c.arg(&target)).ok();
    assert!(restored_path(&target, &src).join("f0.txt").is_file());
    repo.backup([&src]);
    // prune refuses: the damaged files may refer to any pack.
    let r = run(&mut repo.coffer(["prune"])).expect_code(1);
    assert!(
        r.stderr.contains("repair snapshots --forget"),
        "{}",
        r.describe()
    );

    // forget ID removes one; repair snapshots shows then removes the other.
    let r = run(&mut repo.coffer(["forget", &short(&ids[1])])).ok();
    assert!(
        r.stdout_str().contains("damaged snapshot file"),
        "{}",
        r.describe()
    );
    assert!(!snapdir.join(&ids[1]).exists());
    let r = run(&mut repo.coffer(["repair", "snapshots", "--forget", "--dry-run"])).ok();
    assert!(r.stdout_str().contains(&short(&ids[2])), "{}", r.describe());
    assert!(snapdir.join(&ids[2]).exists(), "a dry run removed it");
    let r = run(&mut repo.coffer(["--json", "repair", "snapshots", "--forget"])).ok();
    assert_eq!(r.summary()["unreadable_removed"], true, "{}", r.describe());
    assert!(!snapdir.join(&ids[2]).exists());

    let r = run(&mut repo.coffer(["snapshots"])).ok();
    assert!(!r.stderr.contains("damaged"), "{}", r.describe());
    run(&mut repo.coffer(["prune"])).ok();
    run(&mut repo.coffer(["check", "--read-data"])).ok();
    repo.restic_check(true);
}

fn index_files(repo: &Repo) -> Vec<PathBuf> {
    std::fs::read_dir(repo.dir.as_ref().unwrap().join("index"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// The names of the source files a restore of `latest` brings back exactly (exit 0 or 3).
fn exact_after_restore(repo: &Repo, src: &Path, target: &Path) -> BTreeSet<String> {
    let r = restore_json(repo, target, &[]);
    assert!(matches!(r.status.code(), Some(0 | 3)), "{}", r.describe());
    let got = restored_path(target, src);
    crate::prune::rel_files(src)
        .into_iter()
        .filter(|f| got.join(f).exists() && first_difference(&src.join(f), &got.join(f)).is_none())
        .collect()
}

/// Repair salvages every blob that decrypts and hashes: a pack with bytes appended (its
/// header unreadable) is read by the old index's offsets, or scanned when the index is gone
/// too; a truncated pack gives up only the blobs past the cut. After `repair index` and
/// `repair snapshots --forget`, exactly the files that restored before the repair restore,
/// and restic accepts the repository.
#[test]
fn repair_never_loses_what_it_can_read() {
    let tmp = tempdir("coffer-damage-repair-");
    let base = tmp.path().join("repo");
    let repo = Repo::local(&base);
    repo.init();
    let src = tmp.path().join("src");
    random_files(&src, 40 << 20, 1 << 20, 500);
    repo.backup([&src]);
    let victim = data_packs(&repo)[0]
        .strip_prefix(&base)
        .unwrap()
        .to_path_buf();
    let all: BTreeSet<String> = crate::prune::rel_files(&src).into_iter().collect();

    for (case, drop_index) in [
        ("appended", false),
        ("appended-no-index", true),
        ("truncated", false),
        ("truncated-no-index", true),
    ] {
        let dir = tmp.path().join(case);
        copy_dir(&base, &dir);
        let r = Repo::local(&dir);
        let pack = dir.join(&victim);
        if case.starts_with("appended") {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&pack)
                .unwrap();
            f.write_all(&[0x5a; 100]).unwrap();
        } else {
            cut_to(&pack, std::fs::metadata(&pack).unwrap().len() / 2);
        }
        // What a restore gets before any repair (with the index intact) is the bar.
        let before = exact_after_restore(&r, &src, &tmp.path().join(format!("{case}-before")));
        if case.starts_with("appended") {
            assert_eq!(
                before, all,
                "{case}: an appended pack restores whole by the index"
            );
        } else {
            assert!(before.len() < all.len(), "{case}");
        }
        run(&mut r.coffer(["check", "--read-data"])).expect_code(1);
        if drop_index {
            for f in index_files(&r) {
                std::fs::remove_file(f).unwrap();
            }
        }

        // A dry run changes nothing.
        let listing = |r: &Repo| {
            (
                crate::prune::rel_files(r.dir.as_ref().unwrap()),
                index_files(r).len(),
            )
        };
        let untouched = listing(&r);
        run(&mut r.coffer(["repair", "index", "--dry-run"])).ok();
        assert_eq!(listing(&r), untouched, "{case}: --dry-run wrote");

        let ri = run(&mut r.coffer(["--json", "repair", "index"])).ok();
        let s = ri.summary();
        let by = if drop_index {
            "blobs_found_by_scan"
        } else {
            "blobs_found_by_index"
        };
        assert!(s[by].as_u64().unwrap() > 0, "{case}: {s}");
        if case.starts_with("appended") {
            assert_eq!(s["blobs_dropped"], 0, "{case}: {s}");
        }
        if case == "truncated-no-index" {
            // What lies past the cut is lost, and the text says to repair the snapshots.
            assert!(s["bytes_unscanned"].as_u64().unwrap() > 0, "{s}");
        }
        let rs = run(&mut r.coffer(["--json", "repair", "snapshots", "--forget"])).ok();
        let repaired = rs.summary()["repaired"].as_array().unwrap().len();
        assert_eq!(
            repaired > 0,
            case.starts_with("truncated"),
            "{case}: {}",
            rs.describe()
        );

        let after = exact_after_restore(&r, &src, &tmp.path().join(format!("{case}-after")));
        assert_eq!(
            after, before,
            "{case}: repair lost readable files or kept unreadable ones"
        );
        run(&mut r.coffer(["prune"])).ok();
        run(&mut r.coffer(["check", "--read-data"])).ok();
        r.restic_check(true);
        eprintln!("{case}: {} of {} files kept, {s}", after.len(), all.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// The damage corpus: one flipped byte, a cut in half and a deletion of each kind of
/// repository file. No command panics; a restore restores every file it can exactly and
/// names the rest; where the repository can be repaired (index, snapshot, pack damage),
/// `repair index`, `repair snapshots --forget` and `prune` leave a repository that coffer
/// and restic check clean and that restores exactly what it still holds. Without its config
/// or its only key nothing can be read, and every command says so.
#[test]
fn damage_corpus() {
    let tmp = tempdir("coffer-damage-corpus-");
    let base = tmp.path().join("repo");
    let repo = Repo::local(&base);
    repo.init();
    let src = tmp.path().join("src");
    random_files(&src.join("big"), 36 << 20, 1 << 20, 700);
    for i in 0..30 {
        write(
            &src.join(format!("etc/d{}/f{i}.conf", i % 5)),
            format!("setting = {i}\n").repeat(20).as_bytes(),
        );
    }
    repo.backup([&src]);
    // A second snapshot of the same files: `latest` skipping a damaged one restores the same.
    repo.backup([&src, &PathBuf::from("--force")]);
    let all: BTreeSet<String> = crate::prune::rel_files(&src).into_iter().collect();

    let one = |sub: &str| -> PathBuf {
        let mut v = crate::prune::rel_files(&base.join(sub));
        v.sort();
        base.join(sub)
            .join(&v[0])
            .strip_prefix(&base)
            .unwrap()
            .to_path_buf()
    };
    let packs = crate::prune::rel_files(&base.join("data"));
    let (mut tree_pack, mut data_pack) = (None, None);
    for p in &packs {
        let name = p.rsplit('/').next().unwrap();
        let r = run(&mut repo.coffer(["cat", "pack", name])).ok();
        let slot = match r.stdout_str().contains("\"tree\"") {
            true => &mut tree_pack,
            false => &mut data_pack,
        };
        slot.get_or_insert_with(|| PathBuf::from("data").join(p));
    }
    let kinds: Vec<(&str, PathBuf)> = vec![
        ("config", PathBuf::from("config")),
        ("key", one("keys")),
        ("index", one("index")),
        ("snapshot", one("snapshots")),
        ("data pack", data_pack.unwrap()),
        ("tree pack", tree_pack.unwrap()),
    ];
    let mut table = Vec::new();
    for (kind, rel) in &kinds {
        for damage in ["flip", "cut", "delete"] {
            let case = format!("{kind} {damage}");
            let dir = tmp.path().join(case.replace(' ', "-"));
            copy_dir(&base, &dir);
            let r = Repo::local(&dir);
            let f = dir.join(rel);
            match damage {
                "flip" => flip_byte(&f, std::fs::metadata(&f).unwrap().len() / 2),
                "cut" => cut_to(&f, std::fs::metadata(&f).unwrap().len() / 2),
                _ => std::fs::remove_file(&f).unwrap(),
            }
            let no_panic = |run: &Run| {
                assert!(
                    run.status.code().is_some_and(|c| c != 101) && !run.stderr.contains("panicked"),
                    "{case}: {}",
                    run.describe()
                );
            };
            let target = dir.with_extension("restored");
            let rr = restore_json(&r, &target, &[]);
            no_panic(&rr);
            let unreadable = *kind == "config" || *kind == "key";
            let exact = if unreadable {
                // Nothing can be decrypted: a clear error, not a guess.
                assert!(
                    matches!(rr.status.code(), Some(1 | 10 | 12)),
                    "{case}: {}",
                    rr.describe()
                );
                0
            } else if *kind == "index" && rr.status.code() == Some(1) {
                // The damaged index file listed the root tree: the way on is said.
                assert!(
                    rr.stderr.contains("`coffer repair index`"),
                    "{case}: {}",
                    rr.describe()
                );
                0
            } else if *kind == "tree pack" && rr.status.code() == Some(1) {
                // The root tree itself is lost: nothing below it can be found.
                assert!(rr.stderr.contains("tree"), "{case}: {}", rr.describe());
                0
            } else {
                assert!(
                    matches!(rr.status.code(), Some(0 | 3)),
                    "{case}: {}",
                    rr.describe()
                );
                let damaged = damaged_names(&rr);
                let got = restored_path(&target, &src);
                let mut exact = 0;
                for f in &all {
                    let p = got.join(f);
                    if p.exists() {
                        assert!(
                            first_difference(&src.join(f), &p).is_none(),
                            "{case}: {f} restored wrong"
                        );
                        exact += 1;
                    } else if rr.status.code() == Some(0) {
                        panic!(
                            "{case}: {f} missing after a restore that exited 0: {}",
                            rr.describe()
                        );
                    }
                }
                let _ = damaged;
                exact
            };
            for args in [
                &["snapshots"][..],
                &["check", "--read-data"][..],
                &["ls", "latest"][..],
            ] {
                no_panic(&run(&mut r.coffer(args)));
            }
            let mut repaired = "-".to_string();
            if !unreadable {
                for args in [
                    &["repair", "index"][..],
                    &["repair", "snapshots", "--forget"][..],
                    &["prune"][..],
                ] {
                    let x = run(&mut r.coffer(args));
                    no_panic(&x);
                    assert!(x.status.success(), "{case}: {}", x.describe());
                }
                run(&mut r.coffer(["check", "--read-data"])).ok();
                r.restic_check(true);
                let t2 = dir.with_extension("after");
                let after = match r.snapshot_ids().is_empty() {
                    // Both snapshots lost their root tree: repair removed them.
                    true => BTreeSet::new(),
                    false => exact_after_restore(&r, &src, &t2),
                };
                assert!(
                    after.len() >= exact,
                    "{case}: repair lost files ({} < {exact})",
                    after.len()
                );
                repaired = format!("{} after repair", after.len());
            }
            table.push(format!(
                "{case:<20} restore exit {:?}, {exact}/{} exact, {repaired}",
                rr.status.code(),
                all.len()
            ));
            std::fs::remove_dir_all(&dir).unwrap();
            let _ = std::fs::remove_dir_all(&target);
        }
    }
    eprintln!("{}", table.join("\n"));
}
