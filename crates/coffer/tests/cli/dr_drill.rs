//! `coffer dr drill`: scenarios rehearsed against scratch instances. The test's own database,
//! redis-server and files are backed up; the drill restores them elsewhere, checks them, times
//! them, reports, and leaves nothing running or on disk, also when it fails or is killed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::sources::{dbname, drop_db, psql};
use crate::util::{coffer_bare, private_state, run, tempdir, wait_until};

struct Site {
    dir: tempfile::TempDir,
    db: String,
}

impl Site {
    /// A site with a PostgreSQL database of two tables (5000 and 77 rows) and a files
    /// source; `extra` is appended to the config.
    fn new(name: &str, extra: &str) -> Site {
        let dir = tempdir("coffer-drill-test-");
        let d = dir.path();
        let db = dbname(name);
        drop_db(&db);
        psql("postgres", &format!("CREATE DATABASE \"{db}\""));
        psql(
            &db,
            "CREATE TABLE orders(id int PRIMARY KEY, note text); \
             INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 5000) g; \
             CREATE TABLE items(x int); INSERT INTO items SELECT generate_series(1, 77)",
        );
        std::fs::create_dir_all(d.join("data/sub")).unwrap();
        std::fs::write(d.join("data/app.conf"), "x = 1\n").unwrap();
        std::fs::write(d.join("data/sub/blob"), vec![7u8; 300_000]).unwrap();
        std::fs::write(d.join("pw"), "drill-test-password\n").unwrap();
        // The scratch instances' parent: the postgres user must reach the cluster inside.
        std::fs::create_dir(d.join("tmp")).unwrap();
        for p in [d, &d.join("tmp")] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(
            d.join("coffer.toml"),
            format!(
                "{}[[repository]]\nname = \"local\"\nurl = \"{d}/repo\"\npassword_file = \"{d}/pw\"\n\n\
                 [dr]\nreports = \"{d}/reports\"\n\n\
                 [[source]]\nname = \"shop\"\ntype = \"postgres\"\nurl = \"postgresql://postgres@127.0.0.1:5432/\"\n\
                 databases = [\"{db}\"]\n\n\
                 [[source]]\nname = \"etc\"\ntype = \"files\"\npaths = [\"{d}/data\"]\n\n{extra}",
                private_state(d),
                d = d.display()
            ),
        )
        .unwrap();
        let site = Site { dir, db };
        run(&mut site.coffer(&["init"])).ok();
        site
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn coffer(&self, args: &[&str]) -> Command {
        let mut c = coffer_bare();
        c.env("TMPDIR", self.path().join("tmp"))
            .arg("--config")
            .arg(self.path().join("coffer.toml"))
            .args(args);
        c
    }

    /// What the drills left in their temporary directory.
    fn leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path().join("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    }

    fn drill_runs(&self) -> serde_json::Value {
        let r = run(&mut self.coffer(&["--json", "runs", "--kind", "drill"])).ok();
        serde_json::from_str(&r.stdout_str()).unwrap()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        drop_db(&self.db);
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn port_of(message: &str) -> Option<u16> {
    message
        .split("port ")
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `full_disaster` over PostgreSQL, Redis and files: each restored into a scratch instance in
/// that order, each checked, the report written, the run recorded, and nothing left behind.
#[test]
fn drill_of_a_full_disaster_passes_and_leaves_nothing() {
    let redis_port = coffer_testkit::free_port();
    let site = Site::new(
        "drill_full",
        &format!(
            "[[source]]\nname = \"cache\"\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}\"\ntimeout = 5\n"
        ),
    );
    let d = site.path();
    std::fs::create_dir(d.join("redis")).unwrap();
    let mut redis = Command::new("redis-server")
        .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(d.join("redis"))
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    wait_until("the test's redis-server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_ok()
    });
    for i in 0..300 {
        redis_cli(redis_port, &["SET", &format!("k{i}"), &format!("v{i}")]);
    }
    redis_cli(redis_port, &["-n", "2", "HSET", "h", "a", "1"]);
    for s in ["shop", "cache", "etc"] {
        run(&mut site.coffer(&["backup", "--source", s])).ok();
    }
    redis.kill().unwrap();
    redis.wait().unwrap();

    let r = run(&mut site.coffer(&["--json", "dr", "drill", "--scenario", "full_disaster"])).ok();
    let rep: serde_json::Value = serde_json::from_str(&r.stdout_str())
        .unwrap_or_else(|e| panic!("drill JSON: {e}\n{}", r.describe()));
    assert_eq!(rep["passed"], true, "{rep:#}");
    let steps: Vec<&str> = rep["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "restore shop (clean)",
            "check shop",
            "restore cache (clean)",
            "check cache",
            "restore etc (clean)",
            "check etc"
        ],
        "databases before caches before files"
    );
    let check = |name: &str| {
        rep["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"].as_str().unwrap().starts_with(name))
            .unwrap_or_else(|| panic!("no check {name} in {rep:#}"))
            .clone()
    };
    assert_eq!(check("pg_amcheck")["passed"], true);
    let rows = check("row counts");
    assert_eq!(rows["passed"], true);
    assert!(
        rows["detail"]
            .as_str()
            .unwrap()
            .contains("2 tables, 5077 rows"),
        "{rows}"
    );
    let keys = check("key counts");
    assert!(
        keys["detail"].as_str().unwrap().contains("db0 300, db2 1"),
        "{keys}"
    );
    assert_eq!(check("file hashes")["passed"], true);
    assert_eq!(check("redis-check-rdb")["passed"], true);
    assert_eq!(rep["rto_met"], true);
    assert_eq!(rep["rpo_met"], true);
    assert!(rep["rto_seconds"].as_f64().unwrap() > 0.0);

    // The report, as JSON and as a page, and the run in the catalog.
    let id = rep["id"].as_str().unwrap();
    assert!(id.ends_with("-drill-full_disaster"), "{id}");
    let html = std::fs::read_to_string(d.join(format!("reports/{id}.html"))).unwrap();
    assert!(html.contains("Passed: everything was restored"), "{html}");
    assert!(html.contains("pg_amcheck"));
    assert!(d.join(format!("reports/{id}.json")).is_file());
    let runs = site.drill_runs();
    assert_eq!(runs["runs"][0]["id"], id);
    assert_eq!(runs["runs"][0]["status"], "SUCCESS");
    assert_eq!(
        runs["runs"][0]["recovery"]["checks"]
            .as_array()
            .map(Vec::len),
        Some(6),
        "pg_amcheck, row counts, answers, key counts, redis-check-rdb, file hashes"
    );

    // Nothing left: no directory, no server on the scratch cluster's port.
    assert!(site.leftovers().is_empty(), "{:?}", site.leftovers());
    let pg_port = port_of(rep["steps"][0]["message"].as_str().unwrap()).expect("port");
    assert!(std::net::TcpStream::connect(("127.0.0.1", pg_port)).is_err());
}

/// A damaged pack fails the drill, which names the damaged blob and its pack; the run is
/// FAILED and the exit code 1; `dr assess` says the scenario is no longer proven, and
/// `alerts check` sends DrillFailed to a webhook.
#[test]
fn drill_over_a_damaged_pack_fails_and_names_it() {
    let recv = crate::alerts::Receiver::start();
    let site = Site::new(
        "drill_damaged",
        &format!(
            "[[scenario]]\nname = \"shop_drill\"\nrto = \"10m\"\nsteps = [ {{ restore = \"shop\" }}, {{ check = \"shop\", sql = \"SELECT count(*) = 5000 FROM orders\" }} ]\n\n\
             [[rule]]\nname = \"StorageThreshold\"\nenabled = false\n\n\
             [[channel]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"{}\"\n",
            recv.url("/hook")
        ),
    );
    run(&mut site.coffer(&["backup", "--source", "shop"])).ok();
    // Damage the biggest pack: the dump's data.
    let mut packs: Vec<PathBuf> = walk(&site.path().join("repo/data"));
    packs.sort_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0));
    let pack = packs.pop().expect("a pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();

    let r = run(&mut site.coffer(&["dr", "drill", "--scenario", "shop_drill"])).expect_code(1);
    let out = r.output();
    assert!(out.contains("step 1/2 FAILED"), "{out}");
    let name = pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(out.contains(&format!("in pack {name}")), "{out}");
    assert!(out.contains("damaged"), "{out}");
    let runs = site.drill_runs();
    assert_eq!(runs["runs"][0]["status"], "FAILED", "{runs}");
    assert!(site.leftovers().is_empty(), "{:?}", site.leftovers());

    let r = run(&mut site.coffer(&["--json", "dr", "assess"]));
    let a: serde_json::Value = serde_json::from_str(&r.stdout_str()).unwrap();
    let d = a["drills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["scenario"] == "shop_drill")
        .unwrap_or_else(|| panic!("{a:#}"));
    assert_eq!(d["status"], "degraded", "{d}");
    assert_eq!(d["last_drill"]["status"], "FAILED");
    assert!(a["recommendations"]
        .to_string()
        .contains("dr drill --scenario shop_drill"));

    run(&mut site.coffer(&["alerts", "check"])).ok();
    let got: Vec<serde_json::Value> = recv
        .requests("/hook")
        .iter()
        .flat_map(|q| q.json()["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == "DrillFailed")
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["labels"]["scenario"], "shop_drill");
    assert_eq!(got[0]["status"], "firing");
    assert!(
        got[0]["annotations"].to_string().contains(&name),
        "the alert names the damaged pack: {}",
        got[0]
    );
}

/// The daemon runs drills on their `drill_schedule` and on request (`POST
/// /api/scenarios/NAME/drill`), lists them in `/api/runs` and `/api/scenarios`, and exports
/// their outcome in `/metrics`.
#[test]
fn the_daemon_drills_on_schedule_and_on_request() {
    use crate::jobs::{http, json_get, Daemon, Lab};
    let lab = Lab::new(
        "[[rule]]\nname = \"StorageThreshold\"\nenabled = false\n\n\
         [[scenario]]\nname = \"files_now\"\nrto = \"5m\"\nsteps = [ { restore = \"files\" } ]\n\n\
         [[scenario]]\nname = \"files_often\"\nrto = \"5m\"\ndrill_schedule = \"*/2 * * * * *\"\nsteps = [ { restore = \"files\" } ]\n",
    );
    run(&mut lab.coffer(["backup", "--source", "files"])).ok();
    let port = coffer_testkit::free_port();
    let daemon = Daemon::start(&lab, port, "daemon.log");
    let (code, body) = http(port, "POST", "/api/scenarios/files_now/drill");
    assert_eq!(code, 202, "{body}");
    let (code, _) = http(port, "POST", "/api/scenarios/nope/drill");
    assert_eq!(code, 404);
    let done = |name: &str| {
        json_get(port, "/api/runs?kind=drill")["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["job"] == name && r["status"] == "SUCCESS")
    };
    wait_until("both drills", Duration::from_secs(120), || {
        done("files_now") && done("files_often")
    });
    let sc = json_get(port, "/api/scenarios");
    let now = sc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "files_now")
        .unwrap()
        .clone();
    assert_eq!(now["last_drill"]["status"], "SUCCESS", "{now}");
    assert_eq!(now["rto_target_seconds"], 300);
    let (_, metrics) = http(port, "GET", "/metrics");
    for line in [
        "coffer_drill_last_success{scenario=\"files_now\"} 1",
        "coffer_scenario_rto_target_seconds{scenario=\"files_now\"} 300",
    ] {
        assert!(metrics.contains(line), "no {line} in\n{metrics}");
    }
    assert!(metrics.contains("coffer_drill_last_rto_seconds{scenario=\"files_often\"}"));
    let st = daemon.stop();
    assert!(st.success(), "{st:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// SIGTERM during a drill stops its scratch cluster and the command it runs, removes their
/// directories, and records the drill as FAILED.
#[test]
fn drill_killed_with_sigterm_cleans_up() {
    let site = Site::new(
        "drill_sigterm",
        "[[scenario]]\nname = \"slow\"\nsteps = [ { restore = \"shop\" }, { run = [\"sleep\", \"120\"], drill = true } ]\n",
    );
    run(&mut site.coffer(&["backup", "--source", "shop"])).ok();
    let child = site
        .coffer(&["dr", "drill", "--scenario", "slow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("coffer");
    // The sleep runs once the cluster is up and restored.
    let sleeping = || {
        Command::new("pgrep")
            .args(["-P", &child.id().to_string(), "-x", "sleep"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    wait_until(
        "the drill's second step",
        Duration::from_secs(120),
        sleeping,
    );
    assert!(
        !site.leftovers().is_empty(),
        "the drill works in the test's TMPDIR"
    );
    // SAFETY: kill with our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{out:?}");
    assert!(site.leftovers().is_empty(), "{:?}", site.leftovers());
    let runs = site.drill_runs();
    assert_eq!(runs["runs"][0]["status"], "FAILED", "{runs}");
    assert!(
        runs["runs"][0]["errors"][0]
            .as_str()
            .unwrap()
            .contains("interrupted by SIGTERM"),
        "{runs}"
    );
    let sleepers = Command::new("pgrep")
        .args(["-f", "^sleep 120$"])
        .output()
        .unwrap();
    assert!(
        !sleepers.status.success(),
        "the drill's command is still running"
    );
}
