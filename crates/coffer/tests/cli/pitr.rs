//! PostgreSQL physical backups and point-in-time recovery, end to end against a scratch
//! cluster this test creates (`initdb`, `pg_ctl` on a free port) whose `archive_command` is
//! `coffer wal-push`. Everything PostgreSQL runs, and coffer with it, runs as the postgres
//! user, as in production.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{run, tempdir, wait_until};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The directory holding initdb, pg_ctl and pgbench: the one coffer's scratch clusters use.
fn pg_bin() -> PathBuf {
    coffer_sources::postgres::scratch::server_bin(None)
        .expect("PostgreSQL server binaries (initdb, pg_ctl, pgbench): run scripts/test-deps")
}

/// A scratch directory owned by postgres holding the repository, config, coffer binary and
/// clusters.
struct Lab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    bin: PathBuf,
    coffer: PathBuf,
    clusters: Vec<PathBuf>,
    pg_password: Option<String>,
}

impl Lab {
    fn new() -> Lab {
        let tmp = tempdir("coffer-pitr-");
        let dir = tmp.path().to_path_buf();
        crate::util::chmod(&dir, 0o755);
        // A copy of the binary the postgres user can run whatever the build directory's mode.
        let coffer = dir.join("coffer");
        std::fs::copy(env!("CARGO_BIN_EXE_coffer"), &coffer).expect("copying coffer");
        std::fs::write(dir.join("password"), crate::util::PASSWORD).unwrap();
        crate::util::chmod(&dir.join("password"), 0o600);
        std::fs::write(
            dir.join("coffer.toml"),
            format!(
                r#"{state}[[repository]]
name = "local"
url = "{d}/repo"
password_file = "{d}/password"

[[source]]
name = "pg-phys"
type = "postgres"
mode = "physical"
url = "postgresql://postgres@127.0.0.1:${{PITR_PORT}}/postgres"
bin_dir = "{bin}"
"#,
                d = dir.display(),
                bin = pg_bin().display(),
                state = crate::util::private_state(&dir),
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("cache")).unwrap();
        let lab = Lab {
            _tmp: tmp,
            bin: pg_bin(),
            coffer,
            dir,
            clusters: Vec::new(),
            pg_password: None,
        };
        lab.chown();
        lab
    }

    fn chown(&self) {
        let out = run(Command::new("id").args(["-u", "postgres"])).ok();
        let uid: u32 = out.stdout_str().trim().parse().expect("uid of postgres");
        let out = run(Command::new("id").args(["-g", "postgres"])).ok();
        let gid: u32 = out.stdout_str().trim().parse().expect("gid of postgres");
        crate::util::chown_r(&self.dir, uid, gid);
    }

    /// `prog` run as the postgres user with a clean environment.
    fn as_postgres(&self, prog: &Path, port: u16) -> Command {
        let mut c = Command::new("setpriv");
        c.env_clear()
            .env("PATH", PATH)
            .env("HOME", &self.dir)
            .env("LANG", "C.UTF-8")
            .env("COFFER_CACHE_DIR", self.dir.join("cache"))
            .env("PITR_PORT", port.to_string())
            .current_dir(&self.dir)
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--clear-groups",
                "--",
            ])
            .arg(prog);
        c
    }

    fn coffer(&self, port: u16) -> Command {
        let mut c = self.as_postgres(&self.coffer, port);
        c.arg("--config").arg(self.dir.join("coffer.toml"));
        c
    }

    fn pg(&self, tool: &str, port: u16) -> Command {
        self.as_postgres(&self.bin.join(tool), port)
    }

    /// A new cluster archiving into the repository, started on `port`.
    fn cluster(&mut self, name: &str, port: u16) -> PathBuf {
        self.cluster_with(name, port, None)
    }

    /// A new cluster; with a password, TCP connections need it (scram-sha-256) and nothing is
    /// archived.
    fn cluster_with(&mut self, name: &str, port: u16, password: Option<&str>) -> PathBuf {
        let data = self.dir.join(name);
        let mut initdb = self.pg("initdb", port);
        initdb.args(["-U", "postgres", "-D"]).arg(&data);
        match password {
            None => {
                initdb.args(["-A", "trust"]);
            }
            Some(pw) => {
                let f = self.dir.join("pg-password");
                std::fs::write(&f, pw).unwrap();
                self.chown();
                initdb
                    .args([
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "--pwfile",
                    ])
                    .arg(&f);
                self.pg_password = Some(pw.to_string());
            }
        }
        run(&mut initdb).ok();
        let archive = match password {
            None => format!(
                "archive_mode = on\narchive_command = '{c} --config {d}/coffer.toml wal-push --source pg-phys %p'\n",
                d = self.dir.display(),
                c = self.coffer.display()
            ),
            Some(_) => String::new(),
        };
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\n\
             {archive}max_wal_size = '64MB'\nfsync = off\n",
            d = self.dir.display(),
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        self.start(&data, port);
        data
    }

    fn start(&mut self, data: &Path, port: u16) {
        run(self
            .pg("pg_ctl", port)
            .args(["-w", "-t", "60", "-o", &format!("-p {port}"), "-l"])
            .arg(data.with_extension("log"))
            .arg("-D")
            .arg(data)
            .arg("start"))
        .ok();
        self.clusters.push(data.to_path_buf());
    }

    fn psql(&self, port: u16, sql: &str) -> String {
        let mut c = Command::new("psql");
        if let Some(pw) = &self.pg_password {
            c.env("PGPASSWORD", pw);
        }
        let r = run(c
            .env("PGCONNECT_TIMEOUT", "10")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &port.to_string(), "-d", "postgres", "-c", sql]))
        .ok();
        r.stdout_str().trim().to_string()
    }

    /// Forces a segment switch and waits until it is archived.
    fn archive_now(&self, port: u16) -> String {
        let seg = self.psql(port, "SELECT pg_walfile_name(pg_switch_wal())");
        wait_until(&format!("{seg} archived"), Duration::from_secs(60), || {
            let last = self.psql(
                port,
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            );
            last.len() >= 24 && last[..24] >= *seg.as_str()
        });
        seg
    }
}

impl Lab {
    /// `pg restore` to the end of the archive into `name`, started and promoted; its port.
    fn restore_latest_and_start(&mut self, port: u16, name: &str) -> u16 {
        let dir = self.dir.join(name);
        run(self
            .coffer(port)
            .args(["pg", "restore", "--source", "pg-phys", "--target"])
            .arg(&dir))
        .ok();
        let new_port = coffer_testkit::free_port();
        self.start(&dir, new_port);
        wait_until(
            &format!("the restore in {name} to promote"),
            Duration::from_secs(120),
            || self.psql(new_port, "SELECT pg_is_in_recovery()") == "f",
        );
        new_port
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &self.clusters {
            let _ = self
                .pg("pg_ctl", 0)
                .args(["-m", "immediate", "-D"])
                .arg(d)
                .arg("stop")
                .output();
        }
    }
}

fn ids(s: &str) -> Vec<i64> {
    s.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn log_of(data: &Path) -> String {
    std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
}

#[test]
fn postgres_point_in_time_recovery() {
    let mut lab = Lab::new();
    let port = coffer_testkit::free_port();
    let data = lab.cluster("primary", port);
    run(lab.coffer(port).arg("init")).ok();

    // Some volume first, then the base backup.
    run(lab
        .pg("pgbench", port)
        .args(["-i", "-q", "-s", "2", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &port.to_string(), "postgres"]))
    .ok();
    lab.psql(
        port,
        "CREATE TABLE ticks (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), note text)",
    );
    let b = run(lab
        .coffer(port)
        .args(["--json", "backup", "--source", "pg-phys"]))
    .ok();
    let base1 = b.summary()["snapshot_id"].as_str().unwrap().to_string();

    // Rows stamped with their commit-time clock, one transaction each, with pgbench traffic in
    // between so that the window spans several segments.
    let insert = |from: i64, to: i64| {
        for i in from..to {
            lab.psql(
                port,
                &format!("INSERT INTO ticks (id, note) VALUES ({i}, 'row {i} ✓')"),
            );
        }
    };
    let pgbench = |secs: &str| {
        run(lab
            .pg("pgbench", port)
            .args([
                "-n",
                "-T",
                secs,
                "-c",
                "2",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &port.to_string(), "postgres"]))
        .ok();
    };
    insert(1, 40);
    pgbench("2");
    lab.archive_now(port);
    insert(40, 60);
    std::thread::sleep(Duration::from_millis(1200));
    let target = lab.psql(port, "SELECT clock_timestamp()");
    std::thread::sleep(Duration::from_millis(1200));
    insert(60, 100);
    pgbench("2");
    lab.archive_now(port);
    let expected = ids(&lab.psql(
        port,
        &format!("SELECT id FROM ticks WHERE at <= '{target}' ORDER BY id"),
    ));
    assert_eq!(expected, (1..60).collect::<Vec<_>>(), "target {target}");
    let accounts = lab.psql(port, "SELECT count(*), sum(abalance) FROM pgbench_accounts");

    // Archive commands: a segment pushed again is fine, a different one under its name is not,
    // nor a renamed one; a missing one is exit 1.
    let seg_dir = data.join("pg_wal");
    let archived: Vec<String> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24)
        .collect();
    assert!(!archived.is_empty());
    let fetched = lab.dir.join("fetched");
    let pushed = {
        let st = run(lab
            .coffer(port)
            .args(["--json", "snapshots", "--tag", "wal"]))
        .ok();
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["coffer"]["wal"]["name"].as_str().map(str::to_string))
            .filter(|n| n.len() == 24)
            .max()
            .unwrap()
    };
    run(lab
        .coffer(port)
        .args(["wal-fetch", "--source", "pg-phys", &pushed])
        .arg(&fetched))
    .ok();
    let fetched_seg = lab.dir.join("work").join(&pushed);
    std::fs::create_dir_all(fetched_seg.parent().unwrap()).unwrap();
    std::fs::rename(&fetched, &fetched_seg).unwrap();
    lab.chown();
    let again = run(lab
        .coffer(port)
        .args(["wal-push", "--source", "pg-phys"])
        .arg(&fetched_seg))
    .ok();
    assert!(
        again.stderr.contains("already archived"),
        "{}",
        again.describe()
    );
    let mut bytes = std::fs::read(&fetched_seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&fetched_seg, &bytes).unwrap();
    let conflict = run(lab
        .coffer(port)
        .args(["wal-push", "--source", "pg-phys"])
        .arg(&fetched_seg));
    assert!(!conflict.status.success(), "{}", conflict.describe());
    assert!(
        conflict
            .stderr
            .contains("different file of that name is already archived"),
        "{}",
        conflict.describe()
    );
    let renamed = lab.dir.join("work").join("0000000100000000000000FE");
    std::fs::rename(&fetched_seg, &renamed).unwrap();
    let wrong = run(lab
        .coffer(port)
        .args(["wal-push", "--source", "pg-phys"])
        .arg(&renamed));
    assert!(
        !wrong.status.success() && wrong.stderr.contains("renamed"),
        "{}",
        wrong.describe()
    );
    let missing = run(lab
        .coffer(port)
        .args([
            "wal-fetch",
            "--source",
            "pg-phys",
            "0000000100000000000000FD",
        ])
        .arg(lab.dir.join("nope")))
    .expect_code(1);
    assert!(
        missing.stderr.contains("not in the archive"),
        "{}",
        missing.describe()
    );

    // Prefetch: a miss fetches the next segments into pg_wal/.coffer-prefetch/<system id>,
    // checked; the next request is served from there, byte for byte what a plain fetch
    // gives; a file the archive lacks empties the spool.
    let (segs, sysid) = {
        let st = run(lab
            .coffer(port)
            .args(["--json", "snapshots", "--tag", "wal"]))
        .ok();
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        let mut segs: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["coffer"]["wal"]["name"].as_str().map(str::to_string))
            .filter(|n| n.len() == 24)
            .collect();
        segs.sort();
        segs.dedup();
        let sysid = v[0]["coffer"]["system_identifier"]
            .as_str()
            .unwrap()
            .to_string();
        (segs, sysid)
    };
    assert!(segs.len() >= 3, "{segs:?}");
    let wal = lab.dir.join("prefetch-test/pg_wal");
    std::fs::create_dir_all(&wal).unwrap();
    lab.chown();
    let fetch = |name: &str, extra: &[&str]| {
        let r = run(lab
            .coffer(port)
            .args([
                "--json",
                "wal-fetch",
                "--source",
                "pg-phys",
                "--system-id",
                &sysid,
            ])
            .args(extra)
            .arg(name)
            .arg(wal.join("RECOVERYXLOG")));
        let out = r.stdout_str();
        (r.status.code(), out)
    };
    let (code, out) = fetch(&segs[0], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("\"prefetched\""), "{out}");
    let spool = wal.join(".coffer-prefetch").join(&sysid);
    assert!(
        spool.join(&segs[1]).is_file(),
        "nothing prefetched into {}",
        spool.display()
    );
    let (code, out) = fetch(&segs[1], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"prefetched\":true"), "{out}");
    let from_spool = std::fs::read(wal.join("RECOVERYXLOG")).unwrap();
    let (code, _) = fetch(&segs[1], &["--prefetch", "0"]);
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read(wal.join("RECOVERYXLOG")).unwrap(), from_spool);
    let (code, _) = fetch("0000000100000000000000FD", &[]);
    assert_eq!(code, Some(1));
    assert!(
        !wal.join(".coffer-prefetch").exists(),
        "the spool outlived the end of the archive"
    );

    // Point-in-time restore into a new cluster.
    let restored = lab.dir.join("restored");
    let r = run(lab
        .coffer(port)
        .args([
            "--json",
            "pg",
            "restore",
            "--source",
            "pg-phys",
            "--target-time",
            &target,
        ])
        .arg("--target")
        .arg(&restored))
    .ok();
    let s = r.summary();
    assert_eq!(
        s["snapshot_id"].as_str().unwrap(),
        base1,
        "{}",
        r.describe()
    );
    assert_eq!(s["checks"]["manifest_verified"], true, "{}", r.describe());
    let port2 = coffer_testkit::free_port();
    lab.start(&restored, port2);
    wait_until(
        "the restored cluster to promote",
        Duration::from_secs(120),
        || lab.psql(port2, "SELECT pg_is_in_recovery()") == "f",
    );
    let got = ids(&lab.psql(port2, "SELECT id FROM ticks ORDER BY id"));
    assert_eq!(
        got,
        expected,
        "rows after PITR; log:\n{}",
        log_of(&restored)
    );
    assert_eq!(
        lab.psql(port2, "SELECT note FROM ticks WHERE id = 59"),
        "row 59 ✓"
    );
    assert!(log_of(&restored).contains("recovery stopping before commit"));
    // pgbench ran before and after the target: its accounts are at some state in between,
    // but every one of them is there.
    assert_eq!(
        lab.psql(port2, "SELECT count(*) FROM pgbench_accounts"),
        accounts.split('|').next().unwrap()
    );
    // The restored cluster does not archive into the source it came from.
    assert_eq!(lab.psql(port2, "SHOW archive_mode"), "off");

    // A restore to the latest point has every row.
    let port3 = lab.restore_latest_and_start(port, "latest");
    assert_eq!(lab.psql(port3, "SELECT count(*) FROM ticks"), "99");

    // Retention: a second base backup, then keep only it. WAL before its start goes, WAL
    // after stays, and the repository stays valid for restic.
    run(lab.coffer(port).args(["backup", "--source", "pg-phys"])).ok();
    lab.archive_now(port);
    let f = run(lab.coffer(port).args([
        "--json",
        "forget",
        "--keep-last",
        "1",
        "--tag",
        "basebackup",
        "--dry-run",
    ]))
    .ok();
    let groups: serde_json::Value = serde_json::from_slice(&f.stdout).unwrap();
    let wal = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["tags"] == serde_json::json!(["wal"]));
    // `--tag basebackup` selects base backups only: the WAL is left alone.
    assert!(wal.is_none(), "{}", f.describe());
    let f = run(lab.coffer(port).args([
        "--json",
        "forget",
        "--keep-last",
        "1",
        "--group-by",
        "tags",
        "--prune",
    ]))
    .ok();
    let groups: serde_json::Value =
        serde_json::from_slice(f.stdout_str().lines().next().unwrap_or("[]").as_bytes()).unwrap();
    let wal = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["tags"] == serde_json::json!(["wal"]))
        .expect("a WAL group");
    let start = wal["chains"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    for s in wal["remove"].as_array().unwrap() {
        assert!(s["coffer"]["log_position"].as_str().unwrap() < start.as_str());
    }
    for s in wal["keep"].as_array().unwrap() {
        if let Some(p) = s["coffer"]["log_position"].as_str() {
            assert!(p >= start.as_str(), "{p} kept though before {start}");
        }
    }
    assert!(!wal["remove"].as_array().unwrap().is_empty());
    let port4 = lab.restore_latest_and_start(port, "latest2");
    assert_eq!(lab.psql(port4, "SELECT count(*) FROM ticks"), "99");
    let repo = crate::util::Repo::local(&lab.dir.join("repo"));
    repo.restic_check(true).ok();
    // The forgotten base backup cannot be asked for any more.
    let gone = run(lab
        .coffer(port)
        .args(["pg", "restore", "--source", "pg-phys", &base1, "--target"])
        .arg(lab.dir.join("never")));
    assert!(!gone.status.success(), "{}", gone.describe());
}

#[test]
fn postgres_password_auth_and_parallel_restore() {
    let mut lab = Lab::new();
    let port = coffer_testkit::free_port();
    lab.cluster_with("secured", port, Some("s3cret pw"));
    run(lab.coffer(port).arg("init")).ok();
    let toml = lab.dir.join("coffer.toml");
    let mut cfg = std::fs::read_to_string(&toml).unwrap();
    for (name, pw) in [("wrong-pw", "nope"), ("right-pw", "s3cret%20pw")] {
        cfg.push_str(&format!(
            "\n[[source]]\nname = \"{name}\"\ntype = \"postgres\"\n\
             url = \"postgresql://postgres:{pw}@127.0.0.1:${{PITR_PORT}}/postgres\"\ndatabases = [\"app\"]\n"
        ));
    }
    std::fs::write(&toml, cfg).unwrap();
    lab.chown();
    lab.psql(port, "CREATE DATABASE app");
    let app = |db: &str, sql: &str| {
        let r = run(Command::new("psql")
            .env("PGPASSWORD", "s3cret pw")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &port.to_string(), "-d", db, "-c", sql]))
        .ok();
        r.stdout_str().trim().to_string()
    };
    app(
        "app",
        "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE u (id int, w text); \
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 50000) g; \
         INSERT INTO u SELECT g, 'ü' || g FROM generate_series(1, 20000) g",
    );
    let sum =
        "SELECT (SELECT count(*) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM t) || '/' || \
               (SELECT count(*) || ':' || md5(string_agg(w, ',' ORDER BY id)) FROM u)";

    // A wrong password: a clear error, exit 1, no snapshot, a valid repository.
    let r = run(lab.coffer(port).args(["backup", "--source", "wrong-pw"])).expect_code(1);
    assert!(
        r.stderr.contains("password authentication failed") && r.stderr.contains("wrong-pw"),
        "{}",
        r.describe()
    );
    assert!(
        !r.stderr.contains("nope"),
        "the password leaked: {}",
        r.describe()
    );
    let snaps = run(lab.coffer(port).args(["--json", "snapshots"])).ok();
    assert_eq!(snaps.stdout_str().trim(), "[]");

    // The right one (percent-encoded in the URL), then a parallel restore through a temporary
    // file.
    run(lab.coffer(port).args(["backup", "--source", "right-pw"])).ok();
    let r = run(lab.coffer(port).args([
        "--json",
        "restore",
        "--source",
        "right-pw",
        "--to-database",
        "app_copy",
        "--jobs",
        "2",
    ]))
    .ok();
    let steps = r.summary()["steps"].to_string();
    assert!(steps.contains("pg_restore --jobs 2"), "{}", r.describe());
    assert_eq!(app("app_copy", sum), app("app", sum));
    crate::util::Repo::local(&lab.dir.join("repo"))
        .restic_check(true)
        .ok();
}

/// `dr drill` of a physical source: the base backup in a scratch cluster with the archived
/// WAL replayed to `--at` (the row stamps before it are there, none after), or to the end of
/// the archive when it reaches less than five minutes past the base backup; pg_amcheck over
/// every database; nothing left running.
#[test]
fn drill_of_a_physical_source_replays_to_the_chosen_point() {
    let mut lab = Lab::new();
    let port = coffer_testkit::free_port();
    lab.cluster("primary", port);
    run(lab.coffer(port).arg("init")).ok();
    lab.psql(
        port,
        "CREATE TABLE ticks (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
    run(lab.coffer(port).args(["backup", "--source", "pg-phys"])).ok();
    for i in 1..30 {
        lab.psql(port, &format!("INSERT INTO ticks (id) VALUES ({i})"));
    }
    lab.archive_now(port);
    std::thread::sleep(Duration::from_millis(1200));
    let target = lab.psql(
        port,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(1200));
    for i in 30..50 {
        lab.psql(port, &format!("INSERT INTO ticks (id) VALUES ({i})"));
    }
    lab.archive_now(port);
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(lab.dir.join("coffer.toml"))
        .unwrap();
    std::io::Write::write_all(
        &mut conf,
        b"\n[[scenario]]\nname = \"to_point\"\nrto = \"10m\"\nsteps = [ { restore = \"pg-phys\" }, \
          { check = \"pg-phys\", database = \"postgres\", sql = \"SELECT count(*) = 29 AND max(id) = 29 FROM ticks\" } ]\n\n\
          [[scenario]]\nname = \"to_end\"\nrto = \"10m\"\nsteps = [ { restore = \"pg-phys\" }, \
          { check = \"pg-phys\", database = \"postgres\", sql = \"SELECT count(*) = 49 FROM ticks\" } ]\n",
    )
    .unwrap();
    drop(conf);

    for (scenario, at) in [("to_point", Some(target.as_str())), ("to_end", None)] {
        let mut c = lab.coffer(port);
        c.args(["--json", "dr", "drill", "--scenario", scenario]);
        if let Some(t) = at {
            c.args(["--at", t]);
        }
        let r = run(&mut c);
        let rep: serde_json::Value = serde_json::from_str(&r.stdout_str())
            .unwrap_or_else(|e| panic!("{scenario}: {e}\n{}", r.describe()));
        assert_eq!(rep["passed"], true, "{scenario}: {rep:#}\n{}", r.describe());
        let checks = rep["checks"].as_array().unwrap();
        assert!(
            checks
                .iter()
                .any(|c| c["check"] == "pg_amcheck postgres" && c["passed"] == true),
            "{checks:?}"
        );
        let restore = rep["steps"][0]["message"].as_str().unwrap();
        assert!(restore.contains("WAL replayed and promoted"), "{restore}");
        // The archive reaches less than five minutes past the base backup: all of it.
        assert_eq!(
            restore.contains("target: the end of the archived WAL"),
            at.is_none(),
            "{restore}"
        );
        let p: u16 = restore
            .split("port ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .expect("port");
        assert!(std::net::TcpStream::connect(("127.0.0.1", p)).is_err());
        assert_eq!(rep["rpo_met"], true, "{rep:#}");
    }
}
