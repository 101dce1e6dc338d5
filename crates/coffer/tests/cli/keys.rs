//! `coffer key list | add | remove | passwd`: the refusals that keep a repository openable, and
//! key files that restic opens (and the other way round).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    let p = dir.join(name);
    // A trailing newline, as editors write it: both tools trim it.
    std::fs::write(&p, format!("{password}\n")).expect("writing a password file");
    p
}

/// `coffer --password-file FILE ARGS` (the file wins over the test's COFFER_PASSWORD).
fn coffer_pw(repo: &Repo, pwfile: &Path, args: &[&str]) -> Command {
    let mut c = repo.coffer(args);
    c.arg("--password-file").arg(pwfile);
    c
}

/// `restic -p FILE ARGS` without the test's default password.
fn restic_pw(repo: &Repo, pwfile: &Path, args: &[&str]) -> Command {
    let mut c = repo.restic(args);
    c.env_remove("RESTIC_PASSWORD").arg("-p").arg(pwfile);
    c
}

fn key_list(cmd: &mut Command) -> Vec<serde_json::Value> {
    let r = run(cmd).ok();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("key list --json is not JSON ({e}): {}", r.describe()));
    v.as_array()
        .unwrap_or_else(|| panic!("key list --json is not an array: {v}"))
        .clone()
}

fn current(keys: &[serde_json::Value]) -> String {
    let cur: Vec<&serde_json::Value> = keys.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(cur.len(), 1, "exactly one key should be current: {keys:?}");
    cur[0]["id"].as_str().expect("key id").to_string()
}

fn small_source(root: &Path) {
    write(&root.join("etc/app.conf"), b"port = 8080\n");
    write(&root.join("var/data.bin"), &Rng::new(3).bytes(200_000));
}

#[test]
fn key_add_list_remove_with_restic_interop() {
    let tmp = tempdir("coffer-keys-");
    let src = tmp.path().join("src");
    small_source(&src);
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    repo.backup([src.to_str().unwrap()]);

    let keys = key_list(&mut repo.coffer(["key", "list", "--json"]));
    assert_eq!(keys.len(), 1, "{keys:?}");
    let first = current(&keys);
    for field in ["id", "userName", "hostName", "created"] {
        assert!(keys[0][field].is_string(), "{field} missing: {keys:?}");
    }
    assert_eq!(first.len(), 64);

    // Add a key with labels; the original stays the current one.
    let pw2 = password_file(tmp.path(), "pw2", "second password");
    let r = run(&mut repo.coffer([
        "key",
        "add",
        "--new-password-file",
        pw2.to_str().unwrap(),
        "--user",
        "alice",
        "--host",
        "backup-box",
    ]))
    .ok();
    let keys = key_list(&mut repo.coffer(["key", "list", "--json"]));
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(current(&keys), first);
    let added = keys
        .iter()
        .find(|k| k["id"] != first.as_str())
        .expect("the new key");
    let second = added["id"].as_str().unwrap().to_string();
    assert_eq!(added["userName"], "alice", "{keys:?}");
    assert_eq!(added["hostName"], "backup-box", "{keys:?}");
    assert!(
        r.stdout_str().contains(&second),
        "add should print the new id: {}",
        r.describe()
    );

    // Both tools open the repository with the new password, and restic sees both keys.
    let snaps = run(&mut restic_pw(&repo, &pw2, &["snapshots", "--json"])).ok();
    let list: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{list}");
    let restic_keys = run(&mut restic_pw(&repo, &pw2, &["key", "list"]))
        .ok()
        .stdout_str();
    assert!(
        restic_keys.contains(&format!("*{}", &second[..8]))
            && restic_keys.contains(&first[..8])
            && restic_keys.contains("alice"),
        "restic key list: {restic_keys}"
    );
    let keys = key_list(&mut coffer_pw(&repo, &pw2, &["key", "list", "--json"]));
    assert_eq!(current(&keys), second, "opened with the second password");
    let text = run(&mut coffer_pw(&repo, &pw2, &["key", "list"]))
        .ok()
        .stdout_str();
    assert!(
        text.contains(&format!("*{}", &second[..8])) && text.contains(&format!(" {}", &first[..8])),
        "the text list marks the key in use: {text}"
    );

    // The key in use cannot be removed, by full id or prefix.
    for id in [first.as_str(), &first[..6]] {
        let r = run(&mut repo.coffer(["key", "remove", id])).expect_code(1);
        assert!(
            r.stderr
                .contains("cannot remove the key in use; open the repository with another key"),
            "{}",
            r.describe()
        );
    }
    let r = run(&mut repo.coffer(["key", "remove", "0000000000"])).expect_code(1);
    assert!(r.stderr.contains("no key"), "{}", r.describe());
    assert_eq!(
        repo.count_files("keys"),
        2,
        "a refused remove deleted a key"
    );

    // Opened with the second key, the first one can go (by prefix).
    let r = run(&mut coffer_pw(&repo, &pw2, &["key", "remove", &first[..8]])).ok();
    assert!(r.stdout_str().contains(&first), "{}", r.describe());
    let keys = key_list(&mut coffer_pw(&repo, &pw2, &["key", "list", "--json"]));
    assert_eq!(keys.len(), 1, "{keys:?}");
    run(&mut repo.coffer(["snapshots"])).expect_code(12);
    let r = run(&mut repo.restic(["snapshots"]));
    assert!(
        !r.status.success(),
        "restic still opens a removed key: {}",
        r.describe()
    );

    // The last key is the one in use: removing it is refused, the repository stays usable.
    let r = run(&mut coffer_pw(&repo, &pw2, &["key", "remove", &second])).expect_code(1);
    assert!(
        r.stderr.contains("cannot remove the key in use"),
        "{}",
        r.describe()
    );
    assert_eq!(repo.count_files("keys"), 1);
    let r = run(&mut restic_pw(&repo, &pw2, &["check"])).ok();
    assert!(
        r.stdout_str().contains("no errors were found"),
        "{}",
        r.describe()
    );
    // The short-lived lock files of add and remove are gone.
    assert_eq!(repo.count_files("locks"), 0);
}

#[test]
fn key_passwd_replaces_the_current_key() {
    let tmp = tempdir("coffer-passwd-");
    let src = tmp.path().join("src");
    small_source(&src);
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    repo.backup([src.to_str().unwrap()]);
    let before = current(&key_list(&mut repo.coffer(["key", "list", "--json"])));

    let newpw = password_file(tmp.path(), "new", "a brand new password");
    let r = run(&mut repo.coffer([
        "key",
        "passwd",
        "--new-password-file",
        newpw.to_str().unwrap(),
    ]))
    .ok();
    assert!(r.stdout_str().contains(&before), "{}", r.describe());

    // Only the new key is left; the old password is now wrong for both tools.
    let keys = key_list(&mut coffer_pw(&repo, &newpw, &["key", "list", "--json"]));
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_ne!(current(&keys), before);
    let r = run(&mut repo.coffer(["snapshots"])).expect_code(12);
    assert!(r.stderr.contains("wrong password"), "{}", r.describe());
    let r = run(&mut repo.restic(["snapshots"]));
    assert!(
        !r.status.success(),
        "old password still works: {}",
        r.describe()
    );

    // The new password opens everything, in restic too.
    let snaps = run(&mut restic_pw(&repo, &newpw, &["snapshots", "--json"])).ok();
    let list: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{list}");
    let target = tmp.path().join("restore");
    run(&mut restic_pw(
        &repo,
        &newpw,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    ))
    .ok();
    assert_trees_equal(
        &src,
        &restored_path(&target, &src),
        Restorer::Restic014,
        "restic restore with the new key",
    );
    run(&mut coffer_pw(&repo, &newpw, &["ls", "latest"])).ok();
    let r = run(&mut restic_pw(&repo, &newpw, &["check"])).ok();
    assert!(
        r.stdout_str().contains("no errors were found"),
        "{}",
        r.describe()
    );
}

#[test]
fn restic_keys_are_listed_and_open_coffer() {
    let tmp = tempdir("coffer-restickey-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    // A key restic writes (its own scrypt cost, its own JSON layout) opens with coffer.
    let pw = password_file(tmp.path(), "restic-pw", "restic made this one");
    run(&mut repo.restic([
        "key",
        "add",
        "--new-password-file",
        pw.to_str().unwrap(),
        "--user",
        "rusty",
        "--host",
        "golang",
    ]))
    .ok();
    let keys = key_list(&mut coffer_pw(&repo, &pw, &["key", "list", "--json"]));
    assert_eq!(keys.len(), 2, "{keys:?}");
    let cur = keys.iter().find(|k| k["current"] == true).unwrap();
    assert_eq!(
        (cur["userName"].as_str(), cur["hostName"].as_str()),
        (Some("rusty"), Some("golang")),
        "{keys:?}"
    );
    // coffer removes the key it does not use (restic's), leaving its own.
    let theirs = cur["id"].as_str().unwrap().to_string();
    run(&mut repo.coffer(["key", "remove", &theirs])).ok();
    assert_eq!(repo.count_files("keys"), 1);
    let r = run(&mut restic_pw(&repo, &pw, &["snapshots"]));
    assert!(!r.status.success(), "{}", r.describe());
}

#[test]
fn key_add_without_a_password_source_fails_cleanly() {
    let tmp = tempdir("coffer-keynopw-");
    let repo = Repo::local(&tmp.path().join("repo"));
    repo.init();
    // No --new-password-file and no terminal (stdin is /dev/null): say what to do instead.
    let r = run(&mut repo.coffer(["key", "add"])).expect_code(1);
    assert!(r.stderr.contains("--new-password-file"), "{}", r.describe());
    let empty = password_file(tmp.path(), "empty", "  ");
    let r = run(&mut repo.coffer([
        "key",
        "passwd",
        "--new-password-file",
        empty.to_str().unwrap(),
    ]))
    .expect_code(1);
    assert!(r.stderr.contains("empty"), "{}", r.describe());
    let missing = tmp.path().join("no-such-file");
    let r = run(&mut repo.coffer([
        "key",
        "add",
        "--new-password-file",
        missing.to_str().unwrap(),
    ]))
    .expect_code(1);
    assert!(r.stderr.contains("no-such-file"), "{}", r.describe());
    assert_eq!(repo.count_files("keys"), 1, "a failed add left a key file");
    run(&mut repo.coffer(["snapshots"])).ok();
}
