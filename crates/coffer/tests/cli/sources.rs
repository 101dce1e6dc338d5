//! Sources declared in coffer.toml, against the real servers on this machine: PostgreSQL
//! logical round trips, failure paths (unreachable server, pg_dump killed mid-stream),
//! command and files sources, config errors.

use std::path::PathBuf;
use std::process::Command;

use crate::util::*;

const PG: &str = "postgresql://postgres@127.0.0.1:5432/";

pub(crate) fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
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
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {db} {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database name unique to this test process.
pub(crate) fn dbname(base: &str) -> String {
    format!("coffer_{base}_{}", std::process::id())
}

pub(crate) fn drop_db(db: &str) {
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
    );
}

/// Row counts and an md5 of every table's rows, in a stable order.
fn fingerprint(db: &str) -> String {
    let tables = psql(
        db,
        "SELECT string_agg(quote_ident(schemaname) || '.' || quote_ident(tablename), ' ' ORDER BY schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    );
    let mut out = Vec::new();
    for t in tables.split_whitespace() {
        let fp = psql(db, &format!("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM {t} x"));
        out.push(format!("{t}={fp}"));
    }
    out.push(format!(
        "view={}",
        psql(db, "SELECT * FROM sales_by_city ORDER BY 1 LIMIT 3")
    ));
    out.push(format!("function={}", psql(db, "SELECT greet('Zoë')")));
    out.join("\n")
}

fn make_app_db(db: &str) {
    drop_db(db);
    psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    psql(
        db,
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, city text);
         CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers(id), amount numeric(12,2), at timestamptz);
         CREATE TABLE notes (id int PRIMARY KEY, body text, data bytea, tags jsonb);
         INSERT INTO customers (name, city) SELECT 'Kunde ' || g, (ARRAY['Zürich','北京','São Paulo','Kraków'])[1 + g % 4] FROM generate_series(1, 2000) g;
         INSERT INTO orders (customer, amount, at) SELECT 1 + g % 2000, (g % 997) * 1.25, '2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 400000) g;
         INSERT INTO notes SELECT g, repeat('ünïcødé ✓ ', g % 50), decode(md5(g::text), 'hex'), jsonb_build_object('n', g, 'ok', g % 2 = 0) FROM generate_series(1, 3000) g;
         CREATE VIEW sales_by_city AS SELECT c.city, sum(o.amount) AS total FROM orders o JOIN customers c ON c.id = o.customer GROUP BY c.city;
         CREATE FUNCTION greet(who text) RETURNS text LANGUAGE sql AS $$ SELECT 'Grüß dich, ' || who $$;",
    );
}

pub(crate) struct Setup {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) repo: Repo,
}

/// A repository and a config file whose sources are given as TOML.
pub(crate) fn setup(prefix: &str, sources: &str) -> Setup {
    let tmp = tempdir(prefix);
    let dir = tmp.path().to_path_buf();
    let repo = Repo::local(&dir.join("repo"));
    repo.init();
    let config = dir.join("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "{}[[repository]]\nname = \"local\"\nurl = \"{}\"\npassword = \"${{COFFER_PASSWORD}}\"\n\n{sources}",
            crate::util::private_state(&dir),
            dir.join("repo").display()
        ),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        dir,
        config,
        repo,
    }
}

impl Setup {
    pub(crate) fn coffer<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = coffer_bare();
        c.arg("--config").arg(&self.config).args(args);
        c
    }
}

#[test]
fn postgres_logical_round_trip() {
    let db = dbname("app");
    let restored = dbname("app_restored");
    let role = format!("coffer_role_{}", std::process::id());
    make_app_db(&db);
    drop_db(&restored);
    psql(
        "postgres",
        &format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"),
    );
    psql(&db, &format!("ALTER TABLE notes OWNER TO {role}"));
    let s = setup(
        "coffer-pg-",
        &format!("[[source]]\nname = \"pg-main\"\ntype = \"postgres\"\nurl = \"{PG}\"\ndatabases = [\"{db}\"]\n"),
    );
    let want = fingerprint(&db);

    let r = run(&mut s.coffer(["--json", "backup", "--source", "pg-main"])).ok();
    let sum = r.summary();
    assert_eq!(sum["files_new"], 3, "{sum}");
    let snaps = run(&mut s.repo.coffer(["snapshots", "--json"])).ok();
    let v: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    let snap = &v[0];
    assert!(
        snap["tags"].to_string().contains("source:pg-main"),
        "{snap}"
    );
    let manifest = &snap["coffer"];
    assert_eq!(manifest["type"], "postgres");
    assert!(
        manifest["server_version"]
            .as_str()
            .unwrap()
            .starts_with("15"),
        "{manifest}"
    );
    assert_eq!(manifest["databases"][0]["name"], db.as_str());
    assert!(
        manifest["duration_seconds"].as_f64().is_some(),
        "{manifest}"
    );

    // Into a new database: roles that already exist (postgres, ours) are kept, not errors.
    let r = run(&mut s.coffer([
        "--json",
        "restore",
        "--source",
        "pg-main",
        "latest",
        "--to-database",
        &restored,
    ]))
    .ok();
    assert_eq!(r.summary()["checks"]["tables"], 3, "{}", r.describe());
    assert_eq!(fingerprint(&restored), want);
    assert_eq!(
        psql(
            &restored,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'notes'"
        ),
        role
    );

    // Into an existing database: refused without --clean, replaced with it.
    run(&mut s.coffer(["restore", "--source", "pg-main", "--to-database", &restored]))
        .expect_code(1);
    psql(
        &restored,
        "DELETE FROM orders WHERE id % 2 = 0; INSERT INTO customers (name) VALUES ('extra')",
    );
    run(&mut s.coffer([
        "restore",
        "--source",
        "pg-main",
        "--to-database",
        &restored,
        "--clean",
    ]))
    .ok();
    assert_eq!(fingerprint(&restored), want);

    // A second backup of unchanged data stores almost nothing: the dump is uncompressed and
    // deduplicates.
    let r2 = run(&mut s.coffer(["--json", "backup", "--source", "pg-main"])).ok();
    let added = r2.summary()["data_added"].as_u64().unwrap();
    let total = r2.summary()["total_bytes_processed"].as_u64().unwrap();
    // Only the chunks around the dump's header (timestamps) change.
    assert!(
        added * 2 < total,
        "second dump added {added} of {total} bytes"
    );

    // The file-shaped restore gives pg_restore-able files.
    let out = s.dir.join("files");
    run(&mut s.coffer([
        "restore",
        "--source",
        "pg-main",
        "--target",
        out.to_str().unwrap(),
    ]))
    .ok();
    assert!(out.join(format!("{db}.dump")).metadata().unwrap().len() > 100_000);
    assert!(std::fs::read_to_string(out.join("globals.sql"))
        .unwrap()
        .contains(&role));
    s.repo.restic_check(true);
    drop_db(&db);
    drop_db(&restored);
    psql("postgres", &format!("DROP ROLE IF EXISTS {role}"));
}

#[test]
fn postgres_failures_leave_no_snapshot() {
    // Unreachable server.
    let s = setup(
        "coffer-pg-fail-",
        "[[source]]\nname = \"down\"\ntype = \"postgres\"\nurl = \"postgresql://postgres@127.0.0.1:1/\"\n",
    );
    let r = run(&mut s.coffer(["backup", "--source", "down"])).expect_code(1);
    assert!(
        r.output().contains("127.0.0.1") && r.output().contains("down"),
        "{}",
        r.describe()
    );
    assert_eq!(s.repo.count_files("snapshots"), 0);

    // pg_dump killed mid-stream: a wrapper starts the real one and kills it after a moment.
    let db = dbname("big");
    drop_db(&db);
    psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    psql(&db, "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 1500000) g");
    let bin = s.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["psql", "pg_dumpall", "pg_restore"] {
        std::os::unix::fs::symlink(format!("/usr/bin/{tool}"), bin.join(tool)).unwrap();
    }
    write(
        &bin.join("pg_dump"),
        b"#!/bin/sh\n/usr/bin/pg_dump \"$@\" &\npid=$!\nsleep 0.5\nkill -9 $pid\nwait $pid\nexit $?\n",
    );
    chmod(&bin.join("pg_dump"), 0o755);
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).unwrap()
            + &format!(
                "\n[[source]]\nname = \"killed\"\ntype = \"postgres\"\nurl = \"{PG}\"\ndatabases = [\"{db}\"]\nbin_dir = \"{}\"\n",
                bin.display()
            ),
    )
    .unwrap();
    let r = run(&mut s.coffer(["backup", "--source", "killed"])).expect_code(1);
    assert!(
        r.output().contains("pg_dump") && r.output().contains("137"),
        "{}",
        r.describe()
    );
    assert_eq!(
        s.repo.count_files("snapshots"),
        0,
        "a killed dump must not become a snapshot"
    );
    run(&mut s.repo.coffer(["unlock"])).ok();
    s.repo.restic_check(false);
    drop_db(&db);

    // A database that does not exist is named.
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).unwrap()
            + &format!("\n[[source]]\nname = \"nodb\"\ntype = \"postgres\"\nurl = \"{PG}\"\ndatabases = [\"no_such_db_x\"]\n"),
    )
    .unwrap();
    let r = run(&mut s.coffer(["backup", "--source", "nodb"])).expect_code(1);
    assert!(r.output().contains("no_such_db_x"), "{}", r.describe());
}

#[test]
fn command_and_files_sources() {
    let tmp = tempdir("coffer-cmd-");
    let out = tmp.path().join("restored.txt");
    let tree = tmp.path().join("tree");
    random_files(&tree.join("a"), 3 << 20, 1 << 20, 5);
    write(&tree.join("conf/app.conf"), b"key = value\n");
    let s = setup(
        "coffer-cmd-repo-",
        &format!(
            "[[source]]\nname = \"defs\"\ntype = \"command\"\ncommand = [\"sh\", \"-c\", \"seq 1 100000\"]\nrestore_command = [\"sh\", \"-c\", \"cat > {}\"]\nfilename = \"defs.txt\"\n\n\
             [[source]]\nname = \"broken\"\ntype = \"command\"\ncommand = [\"sh\", \"-c\", \"echo partial; echo oops >&2; exit 3\"]\n\n\
             [[source]]\nname = \"tree\"\ntype = \"files\"\npaths = [\"{}\"]\nexclude = [\"*.tmp\"]\n",
            out.display(),
            tree.display()
        ),
    );
    run(&mut s.coffer(["backup", "--source", "defs"])).ok();
    run(&mut s.coffer(["restore", "--source", "defs"])).ok();
    let want: String = (1..=100000).map(|i| format!("{i}\n")).collect();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), want);

    let r = run(&mut s.coffer(["backup", "--source", "broken"])).expect_code(1);
    assert!(
        r.output().contains("status 3") && r.output().contains("oops"),
        "{}",
        r.describe()
    );

    write(&tree.join("skip.tmp"), b"x");
    run(&mut s.coffer(["backup", "--source", "tree"])).ok();
    let target = s.dir.join("tree-restore");
    let r = run(&mut s.coffer([
        "--json",
        "restore",
        "--source",
        "tree",
        "--target",
        target.to_str().unwrap(),
    ]))
    .ok();
    // The files source counts what it restores: the last status line has every byte.
    let last = r
        .json_lines()
        .into_iter()
        .rfind(|v| v["message_type"] == "status")
        .unwrap_or_else(|| panic!("no status line: {}", r.describe()));
    assert!(
        last["bytes_restored"].as_u64().unwrap_or(0) >= 3 << 20,
        "{last}"
    );
    let got = restored_path(&target, &tree);
    assert!(!got.join("skip.tmp").exists());
    for sub in ["a", "conf"] {
        assert_trees_equal(
            &tree.join(sub),
            &got.join(sub),
            Restorer::Coffer,
            "files source",
        );
    }

    let l = run(&mut s.coffer(["--json", "sources"])).ok();
    let v: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap();
    let names: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["defs", "broken", "tree"]);
    assert!(
        v[0]["last_snapshot"].is_string() && v[1]["last_snapshot"].is_null(),
        "{v}"
    );
    s.repo.restic_check(true);
}

#[test]
fn config_errors_name_file_line_and_key() {
    let s = setup(
        "coffer-cfg-",
        "[[source]]\nname = \"pg\"\ntype = \"postgres\"\nurl = \"postgresql://x@127.0.0.1/\"\ndatabse = [\"app\"]\n",
    );
    let r = run(&mut s.coffer(["backup", "--source", "pg"])).expect_code(1);
    let o = r.output();
    let text = std::fs::read_to_string(&s.config).unwrap();
    let line = text.lines().position(|l| l.starts_with("databse")).unwrap() + 1;
    assert!(
        // The misspelt key's own line, with the key it was meant to be.
        o.contains("coffer.toml")
            && o.contains(&format!("line {line}:"))
            && o.contains("`databse` (did you mean `databases`?)"),
        "{o}"
    );

    let r = run(&mut s.coffer(["backup", "--source", "nope"])).expect_code(1);
    assert!(r.output().contains("nope"), "{}", r.describe());

    std::fs::write(
        &s.config,
        "[[repository]]\nname = \"l\"\nurl = \"${COFFER_NOT_SET_ANYWHERE}\"\n",
    )
    .unwrap();
    let r = run(&mut s.coffer(["sources"])).expect_code(1);
    let o = r.output();
    assert!(
        o.contains("COFFER_NOT_SET_ANYWHERE") && o.contains("line 3"),
        "{o}"
    );
}

fn maria(db: Option<&str>, sql: &str) -> String {
    let mut c = Command::new("mariadb");
    c.args([
        "-uroot",
        "-h127.0.0.1",
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
        "-e",
        sql,
    ]);
    if let Some(db) = db {
        c.arg(db);
    }
    let out = c.output().expect("mariadb");
    assert!(
        out.status.success(),
        "mariadb {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn maria_fingerprint(db: &str) -> String {
    let mut out = Vec::new();
    for t in ["customers", "orders", "blobs"] {
        out.push(maria(Some(db), &format!("SELECT COUNT(*) FROM {t}")));
        out.push(
            maria(Some(db), &format!("CHECKSUM TABLE {t} EXTENDED"))
                .split('\t')
                .nth(1)
                .unwrap_or("")
                .to_string(),
        );
    }
    out.push(maria(Some(db), "SELECT * FROM city_totals ORDER BY city"));
    out.push(maria(Some(db), "SELECT greet('Zoë')"));
    out.push(maria(
        Some(db),
        "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = DATABASE()",
    ));
    out.join("\n")
}

/// `dr drill --scenario NAME` as JSON.
fn drill(s: &Setup, scenario: &str) -> serde_json::Value {
    let r = run(&mut s.coffer(["--json", "dr", "drill", "--scenario", scenario]));
    serde_json::from_slice(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{}", r.describe()))
}

/// The first check of a drill report whose name starts with `name`.
fn drill_check(rep: &serde_json::Value, name: &str) -> serde_json::Value {
    rep["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"].as_str().unwrap_or("").starts_with(name))
        .unwrap_or_else(|| panic!("no check {name} in {rep:#}"))
        .clone()
}

#[test]
fn mariadb_logical_round_trip() {
    let db = dbname("shop");
    let restored = dbname("shop_restored");
    maria(None, &format!("DROP DATABASE IF EXISTS {db}; DROP DATABASE IF EXISTS {restored}; CREATE DATABASE {db} CHARACTER SET utf8mb4"));
    maria(
        Some(&db),
        "CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, city VARCHAR(50)) ENGINE=InnoDB;
         CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer INT, amount DECIMAL(12,2), at DATETIME(6), FOREIGN KEY (customer) REFERENCES customers(id)) ENGINE=InnoDB;
         CREATE TABLE blobs (id INT PRIMARY KEY, body MEDIUMTEXT, data LONGBLOB) ENGINE=InnoDB;
         INSERT INTO customers (name, city) SELECT CONCAT('Kunde ', seq), ELT(1 + seq % 4, 'Zürich', '北京', 'São Paulo', 'Kraków') FROM seq_1_to_2000;
         INSERT INTO orders (customer, amount, at) SELECT 1 + seq % 2000, (seq % 997) * 1.25, TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE FROM seq_1_to_30000;
         INSERT INTO blobs SELECT seq, REPEAT('ünïcødé ✓ ', seq % 50), UNHEX(MD5(seq)) FROM seq_1_to_2000;
         CREATE VIEW city_totals AS SELECT c.city, SUM(o.amount) AS total FROM orders o JOIN customers c ON c.id = o.customer GROUP BY c.city;
         CREATE FUNCTION greet(who VARCHAR(50)) RETURNS VARCHAR(100) DETERMINISTIC RETURN CONCAT('Grüß dich, ', who);
         CREATE TRIGGER name_trim BEFORE INSERT ON customers FOR EACH ROW SET NEW.name = TRIM(NEW.name);",
    );
    let s = setup(
        "coffer-maria-",
        &format!("[[source]]\nname = \"maria\"\ntype = \"mariadb\"\nurl = \"mariadb://root@127.0.0.1:3306/\"\ndatabases = [\"{db}\"]\n"),
    );
    let want = maria_fingerprint(&db);
    let r = run(&mut s.coffer(["--json", "backup", "--source", "maria"])).ok();
    assert_eq!(r.summary()["files_new"], 3, "{}", r.describe());
    let r = run(&mut s.coffer([
        "--json",
        "restore",
        "--source",
        "maria",
        "--to-database",
        &restored,
    ]))
    .ok();
    assert_eq!(r.summary()["checks"]["tables"], 3, "{}", r.describe());
    assert_eq!(maria_fingerprint(&restored), want);
    // A drill: a scratch server, every table checked, rows as the dump recorded them.
    let rep = drill(&s, "maria_failure");
    assert_eq!(rep["passed"], true, "{rep:#}");
    let rows = drill_check(&rep, "row counts");
    assert_eq!(
        rows["detail"], "3 tables, 34000 rows, as in the backup",
        "{rows}"
    );
    assert_eq!(drill_check(&rep, "mariadb-check")["passed"], true);
    // Existing database: refused without --clean, replaced with it.
    run(&mut s.coffer(["restore", "--source", "maria", "--to-database", &restored])).expect_code(1);
    maria(Some(&restored), "DELETE FROM orders WHERE id % 3 = 0");
    run(&mut s.coffer([
        "restore",
        "--source",
        "maria",
        "--to-database",
        &restored,
        "--clean",
    ]))
    .ok();
    assert_eq!(maria_fingerprint(&restored), want);
    s.repo.restic_check(true);
    maria(
        None,
        &format!("DROP DATABASE IF EXISTS {db}; DROP DATABASE IF EXISTS {restored}"),
    );
}

fn maria_at(port: u16, db: Option<&str>, sql: &str) -> String {
    let mut c = Command::new("mariadb");
    c.args([
        "-uroot",
        "-h127.0.0.1",
        &format!("-P{port}"),
        "--protocol=tcp",
        "--connect-timeout=5",
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
        "-e",
        sql,
    ]);
    if let Some(db) = db {
        c.arg(db);
    }
    let out = c.output().expect("mariadb");
    assert!(
        out.status.success(),
        "mariadb -P{port} {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// [`maria_fingerprint`]'s figures, from the server on `port`.
fn maria_fingerprint_at(port: u16, db: &str) -> String {
    let q = |sql: &str| maria_at(port, Some(db), sql);
    let mut out = Vec::new();
    for t in ["customers", "orders", "blobs"] {
        out.push(q(&format!("SELECT COUNT(*) FROM {t}")));
        out.push(
            q(&format!("CHECKSUM TABLE {t} EXTENDED"))
                .split('\t')
                .nth(1)
                .unwrap_or("")
                .to_string(),
        );
    }
    out.push(q("SELECT * FROM city_totals ORDER BY city"));
    out.push(q("SELECT greet('Zoë')"));
    out.push(q(
        "SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = DATABASE()",
    ));
    out.push(q(
        "SELECT GROUP_CONCAT(name ORDER BY id SEPARATOR '|') FROM customers WHERE id <= 8",
    ));
    out.join("\n")
}

/// A throwaway mariadbd on a restored data directory; killed on drop, so that a failing
/// test does not leave it running.
struct ScratchMaria {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl ScratchMaria {
    fn start(datadir: &std::path::Path, run_dir: &std::path::Path) -> ScratchMaria {
        std::fs::create_dir_all(run_dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = run_dir.join("error.log");
        let child = Command::new("mariadbd")
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!(
                "--socket={}",
                run_dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                run_dir.join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--tmpdir={}", run_dir.display()))
            .args([
                "--skip-networking=0",
                &format!("--port={port}"),
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        let mut s = ScratchMaria { child, port, log };
        let started = std::time::Instant::now();
        loop {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("scratch mariadbd exited with {st}: {}", s.log_text());
            }
            let up = Command::new("mariadb")
                .args([
                    "-uroot",
                    "-h127.0.0.1",
                    "--protocol=tcp",
                    "--connect-timeout=1",
                ])
                .arg(format!("-P{port}"))
                .args(["-e", "SELECT 1"])
                .output()
                .is_ok_and(|o| o.status.success());
            if up {
                return s;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(90),
                "scratch mariadbd not answering after 90 s: {}",
                s.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Shuts the server down cleanly (SIGTERM) and waits for it.
    fn stop(mut self) {
        // SAFETY: kill with the pid of a child we have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = std::time::Instant::now();
        while let Ok(None) = self.child.try_wait() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "scratch mariadbd still running 60 s after SIGTERM: {}",
                self.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for ScratchMaria {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn mariadb_physical_round_trip() {
    let db = dbname("phys");
    maria(
        None,
        &format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET utf8mb4"),
    );
    maria(
        Some(&db),
        "CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, city VARCHAR(50)) ENGINE=InnoDB;
         CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer INT, amount DECIMAL(12,2), at DATETIME(6), FOREIGN KEY (customer) REFERENCES customers(id)) ENGINE=InnoDB;
         CREATE TABLE blobs (id INT PRIMARY KEY, body MEDIUMTEXT, data LONGBLOB) ENGINE=InnoDB;
         INSERT INTO customers (name, city) SELECT CONCAT(ELT(1 + seq % 4, 'Jürgen ', 'Zoë ', '李 ', 'Łukasz '), seq), ELT(1 + seq % 4, 'Zürich', '北京', 'São Paulo', 'Kraków') FROM seq_1_to_2000;
         INSERT INTO orders (customer, amount, at) SELECT 1 + seq % 2000, (seq % 997) * 1.25, TIMESTAMP('2024-01-01') + INTERVAL seq MINUTE FROM seq_1_to_30000;
         INSERT INTO blobs SELECT seq, REPEAT('ünïcødé ✓ ', seq % 50), UNHEX(MD5(seq)) FROM seq_1_to_2000;
         CREATE VIEW city_totals AS SELECT c.city, SUM(o.amount) AS total FROM orders o JOIN customers c ON c.id = o.customer GROUP BY c.city;
         CREATE FUNCTION greet(who VARCHAR(50)) RETURNS VARCHAR(100) DETERMINISTIC RETURN CONCAT('Grüß dich, ', who);
         CREATE TRIGGER name_trim BEFORE INSERT ON customers FOR EACH ROW SET NEW.name = TRIM(NEW.name);",
    );
    let want = maria_fingerprint_at(3306, &db);
    let s = setup(
        "coffer-maria-phys-",
        "[[source]]\nname = \"maria-phys\"\ntype = \"mariadb\"\nurl = \"mariadb://root@127.0.0.1:3306/\"\nmode = \"physical\"\n",
    );
    let l = run(&mut s.coffer(["--json", "sources"])).ok();
    let v: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap();
    assert!(v[0]["target"].as_str().unwrap().contains("physical"), "{v}");

    let r = run(&mut s.coffer(["--json", "backup", "--source", "maria-phys"])).ok();
    assert_eq!(r.summary()["files_new"], 2, "{}", r.describe());
    let snaps = run(&mut s.repo.coffer(["snapshots", "--json"])).ok();
    let v: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    let m = &v[0]["coffer"];
    assert_eq!(m["mode"], "physical", "{m}");
    assert!(
        m["server_version"].as_str().unwrap().contains("MariaDB"),
        "{m}"
    );
    let lsn = m["innodb_checkpoint_lsn"].as_u64().expect("checkpoint LSN");
    // A drill serves the prepared copy from a scratch mariadbd and checks every database.
    let rep = drill(&s, "maria-phys_failure");
    assert_eq!(rep["passed"], true, "{rep:#}");
    let mine = drill_check(&rep, &format!("mariadb-check {db}"));
    assert_eq!(mine["passed"], true, "{mine}");
    assert!(m["size_bytes"].as_u64().unwrap() > 1 << 20, "{m}");
    assert!(m["duration_seconds"].as_f64().is_some(), "{m}");
    assert!(m.get("binlog").is_some(), "{m}");
    assert!(
        m["databases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["name"] == db.as_str()),
        "{m}"
    );

    // No --target: refused, naming the option and showing the command.
    let r = run(&mut s.coffer(["restore", "--source", "maria-phys"])).expect_code(1);
    assert!(
        r.output().contains("--target DIR")
            && r.output().contains("coffer restore --source maria-phys"),
        "{}",
        r.describe()
    );
    // A non-empty target: refused, and left as it was.
    let busy = s.dir.join("busy");
    write(&busy.join("keep.txt"), b"mine");
    let r = run(&mut s.coffer([
        "restore",
        "--source",
        "maria-phys",
        "--target",
        busy.to_str().unwrap(),
    ]))
    .expect_code(1);
    assert!(r.output().contains("not empty"), "{}", r.describe());
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    assert_eq!(std::fs::read(busy.join("keep.txt")).unwrap(), b"mine");

    let data = s.dir.join("restored-datadir");
    let r = run(&mut s.coffer([
        "--json",
        "restore",
        "--source",
        "maria-phys",
        "--target",
        data.to_str().unwrap(),
    ]))
    .ok();
    let sum = r.summary();
    assert_eq!(sum["checks"]["backup_type"], "log-applied", "{sum}");
    assert_eq!(sum["checks"]["innodb_checkpoint_lsn"], lsn, "{sum}");
    assert!(
        sum["steps"].to_string().contains("chown -R mysql:mysql"),
        "{sum}"
    );
    assert!(data.join(&db).is_dir(), "{sum}");

    let server = ScratchMaria::start(&data, &s.dir.join("run"));
    assert_eq!(maria_fingerprint_at(server.port, &db), want);
    server.stop();

    // mariadb-backup failing after some output: the backup fails and no snapshot is made.
    let bin = s.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink("/usr/bin/mariadb", bin.join("mariadb")).unwrap();
    write(
        &bin.join("mariadb-backup"),
        b"#!/bin/sh\necho partial-xbstream\necho 'simulated copy failure' >&2\nexit 2\n",
    );
    chmod(&bin.join("mariadb-backup"), 0o755);
    std::fs::write(
        &s.config,
        std::fs::read_to_string(&s.config).unwrap()
            + &format!(
                "\n[[source]]\nname = \"maria-broken\"\ntype = \"mariadb\"\nurl = \"mariadb://root@127.0.0.1:3306/\"\nmode = \"physical\"\nbin_dir = \"{}\"\n",
                bin.display()
            ),
    )
    .unwrap();
    let r = run(&mut s.coffer(["backup", "--source", "maria-broken"])).expect_code(1);
    assert!(
        r.output().contains("mariadb-backup") && r.output().contains("simulated copy failure"),
        "{}",
        r.describe()
    );
    assert_eq!(s.repo.count_files("snapshots"), 1);
    run(&mut s.repo.coffer(["unlock"])).ok();
    s.repo.restic_check(true);
    maria(None, &format!("DROP DATABASE IF EXISTS {db}"));
}

fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379"])
        .args(args)
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn redis_backup_and_restores() {
    // db 12 is this test's own; the source backs up the whole instance.
    redis_cli(&["-n", "12", "FLUSHDB"]);
    for i in 0..500 {
        redis_cli(&["-n", "12", "SET", &format!("k{i}"), &format!("välue {i}")]);
    }
    redis_cli(&["-n", "12", "RPUSH", "list", "a", "b", "c"]);
    redis_cli(&["-n", "12", "HSET", "hash", "f", "v"]);
    let s = setup(
        "coffer-redis-",
        "[[source]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/\"\n",
    );
    let r = run(&mut s.coffer(["--json", "backup", "--source", "cache"])).ok();
    assert_eq!(r.summary()["files_new"], 1, "{}", r.describe());
    // The seconds a diskless sync waits are explained, not silent.
    let delay = redis_cli(&["CONFIG", "GET", "repl-diskless-sync-delay"]);
    if !delay.trim().ends_with("\n0") {
        assert!(
            r.stderr.contains("waits repl-diskless-sync-delay"),
            "{}",
            r.describe()
        );
    }
    let snaps = run(&mut s.repo.coffer(["snapshots", "--json"])).ok();
    let v: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    let m = &v[0]["coffer"];
    assert!(
        m["redis_version"].is_string() && m["rdb_crc64"].is_string(),
        "{m}"
    );
    assert_eq!(m["keys"]["db12"], 502, "{m}");

    let r = run(&mut s.coffer(["--json", "restore", "--source", "cache", "--scratch"])).ok();
    let checks = &r.summary()["checks"];
    assert!(checks.to_string().contains("502"), "{checks}");
    // Progress as status lines, the last one with the final counts.
    let status: Vec<_> = r
        .json_lines()
        .into_iter()
        .filter(|v| v["message_type"] == "status")
        .collect();
    let last = status.last().expect("restore --json prints status lines");
    assert!(last["total_bytes"].as_u64().unwrap() > 0, "{last}");
    assert_eq!(last["bytes_restored"], last["total_bytes"], "{last}");
    assert_eq!(last["files_restored"], 1, "{last}");

    let dir = s.dir.join("rdb");
    run(&mut s.coffer([
        "restore",
        "--source",
        "cache",
        "--target",
        dir.to_str().unwrap(),
    ]))
    .ok();
    let check = Command::new("redis-check-rdb")
        .arg(dir.join("dump.rdb"))
        .output()
        .expect("redis-check-rdb");
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("RDB looks OK"),
        "{check:?}"
    );

    // Into a running server: a redis-server of this test's own, empty, then not empty.
    let port = coffer_testkit::free_port();
    let data = s.dir.join("target-redis");
    std::fs::create_dir_all(&data).unwrap();
    let mut server = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    let on = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    crate::util::wait_until(
        "the target redis-server",
        std::time::Duration::from_secs(20),
        || on(&["PING"]) == "PONG",
    );
    redis_cli(&["-n", "12", "SET", "ttl-key", "soon", "EX", "3600"]);
    run(&mut s.coffer(["backup", "--source", "cache"])).ok();
    let url = format!("redis://127.0.0.1:{port}/");
    let r = run(&mut s.coffer(["--json", "restore", "--source", "cache", "--to-url", &url])).ok();
    let checks = &r.summary()["checks"];
    let total: u64 = checks["target_keys"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(checks["keys_loaded"].as_u64(), Some(total), "{checks}");
    assert_eq!(on(&["-n", "12", "DBSIZE"]), "503", "{}", r.describe());
    assert_eq!(on(&["-n", "12", "GET", "k7"]), "välue 7");
    assert_eq!(on(&["-n", "12", "LRANGE", "list", "0", "-1"]), "a\nb\nc");
    assert_eq!(on(&["-n", "12", "HGET", "hash", "f"]), "v");
    let ttl: i64 = on(&["-n", "12", "TTL", "ttl-key"]).parse().unwrap();
    assert!((3000..=3600).contains(&ttl), "ttl {ttl}");
    // Not empty now: refused without a change, then replaced with --clean.
    on(&["-n", "3", "SET", "stray", "1"]);
    let r = run(&mut s.coffer(["restore", "--source", "cache", "--to-url", &url])).expect_code(1);
    assert!(
        r.stderr.contains("is not empty") && r.stderr.contains("--clean"),
        "{}",
        r.describe()
    );
    assert_eq!(
        on(&["-n", "3", "GET", "stray"]),
        "1",
        "a refused restore changed the target"
    );
    run(&mut s.coffer(["restore", "--source", "cache", "--to-url", &url, "--clean"])).ok();
    assert_eq!(
        on(&["-n", "3", "GET", "stray"]),
        "",
        "--clean empties the target first"
    );
    assert_eq!(on(&["-n", "12", "DBSIZE"]), "503");
    let _ = server.kill();
    let _ = server.wait();

    redis_cli(&["-n", "12", "FLUSHDB"]);
    s.repo.restic_check(true);
}

/// Every process command line on this machine, sampled until `child` ends.
fn watch_cmdlines(child: &mut std::process::Child) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    while child.try_wait().unwrap().is_none() {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
                if !b.is_empty() {
                    seen.insert(String::from_utf8_lossy(&b).replace('\0', " "));
                }
            }
        }
    }
    seen.into_iter().collect()
}

/// The PostgreSQL password reaches pg_dump, pg_dumpall, psql and pg_restore through their
/// environment, never their command lines (which every local user can read in /proc), and no
/// log line or JSON output at any verbosity shows it.
#[test]
fn postgres_password_stays_off_command_lines_and_logs() {
    const SECRET: &str = "Pw-Secret-4711";
    let db = dbname("pwleak");
    let restored = dbname("pwleak_restored");
    make_app_db(&db);
    drop_db(&restored);
    // The server trusts 127.0.0.1, so any password connects: what matters is where it goes.
    let url = format!("postgresql://postgres:{SECRET}@127.0.0.1:5432/");
    let s = setup(
        "coffer-pg-secret-",
        &format!("[[source]]\nname = \"pg\"\ntype = \"postgres\"\nurl = \"{url}\"\ndatabases = [\"{db}\"]\n"),
    );
    let logs = s.dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let check = |args: &[&str], tool: &str| {
        let mut c = s.coffer(args);
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let cmdlines = watch_cmdlines(&mut child);
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        assert!(
            cmdlines.iter().any(|c| c.contains(tool)),
            "{tool} was never seen running: {cmdlines:?}"
        );
        let leaks: Vec<_> = cmdlines.iter().filter(|c| c.contains(SECRET)).collect();
        assert!(leaks.is_empty(), "password on a command line: {leaks:?}");
        assert!(
            !text.contains(SECRET),
            "{args:?} printed the password: {text}"
        );
    };
    check(&["-vv", "--json", "backup", "--source", "pg"], "pg_dump");
    check(&["-vv", "backup", "--source", "pg"], "pg_dumpall");
    check(
        &[
            "-vv",
            "restore",
            "--source",
            "pg",
            "--to-database",
            &restored,
        ],
        "pg_restore",
    );
    assert_eq!(fingerprint(&restored), fingerprint(&db));
    drop_db(&db);
    drop_db(&restored);
}
