//! `coffer dr`: assess against a Redis server of the test's own (stopped, started again) and a
//! files source, and the scenarios a config has.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{coffer_bare, private_state, run, tempdir, wait_until, Run};

fn start_redis(port: u16, dir: &Path) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    wait_until("the test's redis-server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    child
}

struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn write(&self, redis_port: u16, redis_rpo: &str) {
        let d = self.dir.path();
        std::fs::write(
            d.join("coffer.toml"),
            format!(
                "{}[[repository]]\nname = \"local\"\nurl = \"{d}/repo\"\npassword_file = \"{d}/pw\"\n\n\
                 [[source]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}\"\n\
                 rpo = \"{redis_rpo}\"\ntimeout = 3\n\n\
                 [[source]]\nname = \"etc\"\ntype = \"files\"\npaths = [\"{d}/data\"]\n\n\
                 [[scenario]]\nname = \"cache_failure\"\ndescription = \"Redis lost\"\nrto = \"5m\"\n\
                 steps = [ {{ run = [\"true\"] }}, {{ restore = \"cache\" }}, {{ wait_for = \"tcp://127.0.0.1:{redis_port}\" }} ]\n",
                private_state(d),
                d = d.display()
            ),
        )
        .unwrap();
    }

    fn coffer(&self, args: &[&str]) -> Command {
        let mut c = coffer_bare();
        c.arg("--config")
            .arg(self.dir.path().join("coffer.toml"))
            .args(args);
        c
    }

    fn assess(&self) -> (Run, serde_json::Value) {
        let r = run(&mut self.coffer(&["--json", "dr", "assess"]));
        let v: serde_json::Value = serde_json::from_str(&r.stdout_str())
            .unwrap_or_else(|e| panic!("assess JSON: {e}\n{}", r.describe()));
        (r, v)
    }
}

fn service<'a>(a: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    a["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {a}"))
}

/// Degraded while a server is down, critical while a backup is older than its RPO, healthy
/// once both are fixed; the exit code says which.
#[test]
fn assess_follows_server_and_backup_age() {
    let site = Site {
        dir: tempdir("coffer-dr-"),
    };
    let d = site.dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::create_dir_all(d.join("redis")).unwrap();
    std::fs::write(d.join("data/app.conf"), "x = 1\n").unwrap();
    std::fs::write(d.join("pw"), "dr-test-password\n").unwrap();
    let port = coffer_testkit::free_port();
    site.write(port, "1h");
    let mut redis = start_redis(port, &d.join("redis"));
    run(&mut site.coffer(&["init"])).ok();

    // Nothing backed up yet: critical, with the command that fixes it.
    let (r, a) = site.assess();
    assert_eq!(r.status.code().unwrap_or(-1), 5, "{}", r.describe());
    assert_eq!(a["overall_status"], "critical");
    let recs = a["recommendations"].to_string();
    assert!(recs.contains("backup --source cache"), "{recs}");
    assert_eq!(
        service(&a, "cache")["version"]
            .as_str()
            .map(|v| v.starts_with("Redis ")),
        Some(true)
    );
    assert_eq!(service(&a, "cache")["role"], "primary");

    run(&mut site.coffer(&["backup", "--source", "cache"])).ok();
    run(&mut site.coffer(&["backup", "--source", "etc"])).ok();
    let (r, a) = site.assess();
    assert_eq!(
        (r.status.code().unwrap_or(-1), a["overall_status"].as_str()),
        (0, Some("healthy")),
        "{a}"
    );
    // Healthy, with one reminder: nothing has been drilled yet.
    let recs = a["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert!(
        recs[0]
            .as_str()
            .unwrap()
            .contains("dr drill --scenario full_disaster"),
        "{recs:?}"
    );
    assert_eq!(service(&a, "cache")["rpo_seconds"], 3600);
    assert_eq!(service(&a, "etc")["rto_seconds"], 4 * 3600);
    assert!(a["repositories"][0]["snapshots"] == 2, "{a}");

    // The server stops: degraded, and the source is named.
    redis.kill().unwrap();
    redis.wait().unwrap();
    let (r, a) = site.assess();
    assert_eq!(
        (r.status.code().unwrap_or(-1), a["overall_status"].as_str()),
        (4, Some("degraded")),
        "{a}"
    );
    let cache = service(&a, "cache");
    assert_eq!(cache["status"], "degraded");
    assert_eq!(cache["checks"][0]["name"], "reachable");
    assert!(a["recommendations"][0]
        .as_str()
        .unwrap()
        .contains("\"cache\" does not answer"));
    let text = run(&mut site.coffer(&["dr", "assess"]))
        .expect_code(4)
        .stdout_str();
    assert!(
        text.contains("overall: degraded") && text.contains("degraded cache reachable"),
        "{text}"
    );

    // The newest backup is older than a 1s RPO: critical.
    site.write(port, "1s");
    std::thread::sleep(Duration::from_millis(2100));
    let (r, a) = site.assess();
    assert_eq!(
        (r.status.code().unwrap_or(-1), a["overall_status"].as_str()),
        (5, Some("critical")),
        "{a}"
    );
    assert_eq!(service(&a, "cache")["checks"][1]["status"], "critical");

    // Both fixed: healthy again.
    let mut redis = start_redis(port, &d.join("redis"));
    site.write(port, "1h");
    let (r, a) = site.assess();
    assert_eq!(
        (r.status.code().unwrap_or(-1), a["overall_status"].as_str()),
        (0, Some("healthy")),
        "{a}"
    );
    redis.kill().unwrap();
    redis.wait().unwrap();
}

/// Built-in scenarios for every config; a declared one replaces the built-in of its name;
/// mistakes in steps are config errors that name the step.
#[test]
fn scenarios_built_in_and_declared() {
    let site = Site {
        dir: tempdir("coffer-dr-"),
    };
    site.write(6390, "1h");
    let r = run(&mut site.coffer(&["--json", "dr", "scenarios"])).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout_str()).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cache_failure",
            "etc_failure",
            "redis_failure",
            "full_disaster"
        ]
    );
    let cache = &v[0];
    assert_eq!(cache["builtin"], false);
    assert_eq!(cache["rto_seconds"], 300);
    assert_eq!(cache["steps"][2], "wait for tcp://127.0.0.1:6390");
    // Databases before caches before files.
    let full = &v[3];
    assert_eq!(full["steps"][0], "restore cache (clean)");
    assert_eq!(full["steps"][2], "restore etc (clean)");
    let text = run(&mut site.coffer(&["dr", "scenarios"]))
        .ok()
        .stdout_str();
    assert!(
        text.contains("full_disaster (built in)  RTO 2h, RPO 4h"),
        "{text}"
    );

    let cfg = site.dir.path().join("coffer.toml");
    let mut t = std::fs::read_to_string(&cfg).unwrap();
    t.push_str("\n[[scenario]]\nname = \"bad\"\nsteps = [ { restore = \"cahce\" } ]\n");
    std::fs::write(&cfg, t).unwrap();
    let r = run(&mut site.coffer(&["dr", "scenarios"])).expect_code(1);
    assert!(
        r.output().contains(
            "scenario \"bad\", step 1: no [[source]] is named \"cahce\" (did you mean `cache`?)"
        ),
        "{}",
        r.describe()
    );
}

/// `recover --scenario database_failure` on a database the test drops: the dry run changes
/// nothing, the recovery brings every row back and is recorded; a failing check stops the
/// recovery there and says how to continue.
#[test]
fn recover_a_dropped_database() {
    use crate::sources::{dbname, drop_db, psql};
    let fingerprint = |db: &str| {
        psql(
            db,
            "SELECT count(*) || ':' || md5(string_agg(id || note, '|' ORDER BY id)) FROM orders",
        )
    };
    let dir = tempdir("coffer-dr-recover-");
    let d = dir.path();
    let db = dbname("dr_recover");
    drop_db(&db);
    psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    psql(
        &db,
        "CREATE TABLE orders(id int PRIMARY KEY, note text); \
         INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
    );
    let before = fingerprint(&db);
    std::fs::write(d.join("pw"), "dr-test-password\n").unwrap();
    std::fs::write(
        d.join("coffer.toml"),
        format!(
            "{}[[repository]]\nname = \"local\"\nurl = \"{d}/repo\"\npassword_file = \"{d}/pw\"\n\n\
             [[source]]\nname = \"shop\"\ntype = \"postgres\"\nurl = \"postgresql://postgres@127.0.0.1:5432/\"\n\
             databases = [\"{db}\"]\n\n\
             [[scenario]]\nname = \"database_failure\"\ndescription = \"shop lost\"\nrto = \"10m\"\nsteps = [\n\
             {{ run = [\"true\"] }},\n\
             {{ restore = \"shop\", database = \"{db}\", clean = true }},\n\
             {{ check = \"shop\", database = \"{db}\", sql = \"SELECT count(*) = 5000 FROM orders\" }},\n\
             {{ wait_for = \"tcp://127.0.0.1:5432\", timeout = \"10s\" }},\n]\n\n\
             [[scenario]]\nname = \"bad_check\"\nsteps = [\n\
             {{ restore = \"shop\", database = \"{db}\", clean = true }},\n\
             {{ check = \"shop\", database = \"{db}\", sql = \"SELECT count(*) = 1 FROM orders\" }},\n\
             {{ run = [\"true\"] }},\n]\n",
            private_state(d),
            d = d.display()
        ),
    )
    .unwrap();
    let coffer = |args: &[&str]| {
        let mut c = coffer_bare();
        c.arg("--config").arg(d.join("coffer.toml")).args(args);
        c
    };
    run(&mut coffer(&["init"])).ok();
    run(&mut coffer(&["backup", "--source", "shop"])).ok();
    drop_db(&db);
    let snaps_before = crate::util::count_files(&d.join("repo/snapshots"));

    // The dry run names the snapshot and changes nothing.
    let r = run(&mut coffer(&[
        "--json",
        "dr",
        "recover",
        "--scenario",
        "database_failure",
        "--dry-run",
    ]))
    .ok();
    let plan: serde_json::Value = serde_json::from_str(&r.stdout_str()).unwrap();
    assert_eq!(
        plan["steps"][1]["snapshot"]["repository"], "local",
        "{plan}"
    );
    assert_eq!(plan["rpo_met"], true);
    assert_eq!(
        psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'")
        ),
        "0"
    );
    assert_eq!(
        crate::util::count_files(&d.join("repo/snapshots")),
        snaps_before
    );
    // Without a terminal and without --yes nothing happens either.
    let r = run(&mut coffer(&[
        "dr",
        "recover",
        "--scenario",
        "database_failure",
    ]))
    .expect_code(1);
    assert!(r.output().contains("--yes"), "{}", r.describe());

    let r = run(&mut coffer(&[
        "dr",
        "recover",
        "--scenario",
        "database_failure",
        "--yes",
    ]))
    .ok();
    assert!(
        r.stdout_str().contains("step 4/4 SUCCESS"),
        "{}",
        r.describe()
    );
    assert_eq!(fingerprint(&db), before);
    let runs = run(&mut coffer(&["--json", "runs", "--kind", "recover"])).ok();
    let v: serde_json::Value = serde_json::from_str(&runs.stdout_str()).unwrap();
    let rec = &v["runs"][0];
    assert_eq!(rec["status"], "SUCCESS", "{v}");
    assert_eq!(rec["recovery"]["steps"].as_array().map(Vec::len), Some(4));
    assert!(rec["recovery"]["rto_seconds"].as_f64().unwrap() > 0.0);

    // A failing check stops the recovery at that step.
    let r = run(&mut coffer(&[
        "dr",
        "recover",
        "--scenario",
        "bad_check",
        "--yes",
    ]))
    .expect_code(1);
    let out = r.output();
    assert!(out.contains("step 2/3 FAILED"), "{out}");
    assert!(!out.contains("step 3/3"), "{out}");
    assert!(out.contains("--from-step 2"), "{out}");
    drop_db(&db);
}
