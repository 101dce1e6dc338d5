//! Jobs run from the command line against real sources (files, PostgreSQL, commands): states
//! and retries in the run catalog, max_runtime, pause, retention, restoring a whole run, and
//! config errors reported all at once.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{coffer_bare, random_files, run, tempdir, Repo};

pub(crate) struct Lab {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) repo: Repo,
}

impl Lab {
    pub(crate) fn new(jobs: &str) -> Lab {
        Lab::with_server("", jobs)
    }

    /// A lab whose `[server]` table also holds `server` lines.
    pub(crate) fn with_server(server: &str, jobs: &str) -> Lab {
        let tmp = tempdir("coffer-jobs-");
        let dir = tmp.path().to_path_buf();
        let repo = Repo::local(&dir.join("repo"));
        repo.init();
        random_files(&dir.join("data"), 3 << 20, 64 << 10, 7);
        let config = dir.join("coffer.toml");
        std::fs::write(
            &config,
            format!(
                r#"[server]
catalog = "{d}/catalog.db"
{server}

[[repository]]
name = "local"
url = "{d}/repo"
password = "${{COFFER_PASSWORD}}"

[[source]]
name = "files"
type = "files"
paths = ["{d}/data"]

[[source]]
name = "pg"
type = "postgres"
url = "postgresql://postgres@127.0.0.1:5432/"
databases = ["postgres"]

[[source]]
name = "broken"
type = "command"
command = ["sh", "-c", "echo half; exit 3"]

[[source]]
name = "slow"
type = "command"
command = ["sh", "-c", "echo start; exec sleep 60"]

{audit}
{jobs}"#,
                d = dir.display(),
                // A test that is about the audit key says where it goes itself.
                audit = if jobs.contains("[audit]") {
                    String::new()
                } else {
                    format!("[audit]\nkey_file = \"{}/keys/audit.key\"\n", dir.display())
                },
            ),
        )
        .unwrap();
        Lab {
            _tmp: tmp,
            dir,
            config,
            repo,
        }
    }

    pub(crate) fn coffer<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = coffer_bare();
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    pub(crate) fn runs(&self, job: &str) -> Vec<serde_json::Value> {
        let r = run(&mut self.coffer(["--json", "runs", "--job", job])).ok();
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        v["runs"].as_array().unwrap().clone()
    }

    pub(crate) fn snapshots_tagged(&self, tag: &str) -> Vec<serde_json::Value> {
        let r = run(&mut self.repo.coffer(["--json", "snapshots", "--tag", tag])).ok();
        serde_json::from_slice::<serde_json::Value>(&r.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// The states a `job run --json` went through.
fn states_of(r: &crate::util::Run) -> Vec<String> {
    r.json_lines()
        .iter()
        .filter(|v| v["message_type"] == "status")
        .map(|v| v["status"].as_str().unwrap().to_string())
        .collect()
}

const JOBS: &str = r#"
[[job]]
name = "nightly"
sources = ["files", "pg"]
schedule = "0 2 * * *"
timezone = "Asia/Shanghai"
rpo = "26h"
retention = { last = 2 }

[[job]]
name = "flaky"
sources = ["files", "broken"]
schedule = "*/10 * * * * *"
retries = 2
retry_delay = "1s"

[[job]]
name = "stuck"
sources = ["slow"]
schedule = "0 3 * * *"
max_runtime = "2s"
retries = 0
"#;

#[test]
fn jobs_run_retry_pause_timeout_retention_and_restore() {
    let lab = Lab::new(JOBS);
    let check = run(&mut lab.coffer(["--json", "config", "check"])).ok();
    assert_eq!(check.summary()["valid"], true, "{}", check.describe());

    // A good run: both sources, snapshots tagged with the run id.
    let r = run(&mut lab.coffer(["--json", "job", "run", "nightly"])).ok();
    let s = r.summary();
    assert_eq!(s["status"], "SUCCESS", "{}", r.describe());
    let id = s["id"].as_str().unwrap().to_string();
    assert!(
        id.ends_with("-nightly") && id.len() == "20261127_005206-nightly".len(),
        "{id}"
    );
    assert_eq!(s["snapshot_ids"].as_array().unwrap().len(), 2);
    assert!(s["source_bytes"].as_u64().unwrap() > 3 << 20);
    assert_eq!(lab.snapshots_tagged(&format!("run:{id}")).len(), 2);
    let states = states_of(&r);
    assert_eq!(states, ["RUNNING", "SUCCESS"]);

    // The whole run restores, each source into its own directory.
    let out = lab.dir.join("restored");
    run(lab.coffer(["restore", "--run", &id, "--target"]).arg(&out)).ok();
    crate::util::assert_trees_equal(
        &lab.dir.join("data"),
        &crate::util::restored_path(&out.join("files"), &lab.dir.join("data")),
        crate::util::Restorer::Coffer,
        "a run restored with --run",
    );
    assert!(out.join("pg/postgres.dump").is_file());

    // Retention keeps the last two runs' snapshots of each source.
    std::thread::sleep(Duration::from_millis(1100));
    run(&mut lab.coffer(["job", "run", "nightly"])).ok();
    std::thread::sleep(Duration::from_millis(1100));
    run(&mut lab.coffer(["job", "run", "nightly"])).ok();
    assert_eq!(lab.snapshots_tagged("source:files").len(), 2);
    assert_eq!(lab.snapshots_tagged("source:pg").len(), 2);
    assert!(lab.snapshots_tagged(&format!("run:{id}")).is_empty());
    assert_eq!(lab.runs("nightly").len(), 3);
    lab.repo.restic_check(true).ok();

    // A failing source: RETRY, then FAILED after the retries; the good source is not redone.
    let r = run(&mut lab.coffer(["--json", "job", "run", "flaky"])).expect_code(1);
    let s = r.summary();
    assert_eq!(s["status"], "FAILED");
    assert_eq!(s["attempt"], 3);
    let states = states_of(&r);
    assert_eq!(
        states,
        ["RUNNING", "RETRY", "RUNNING", "RETRY", "RUNNING", "FAILED"]
    );
    assert!(
        s["errors"].to_string().contains("exited with status 3"),
        "{}",
        r.describe()
    );
    let flaky_snaps = lab.snapshots_tagged("job:flaky");
    assert_eq!(
        flaky_snaps.len(),
        1,
        "only the files source made a snapshot"
    );

    // max_runtime cancels a stuck run.
    let t = Instant::now();
    let r = run(&mut lab.coffer(["--json", "job", "run", "stuck"])).expect_code(1);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    let s = r.summary();
    assert_eq!(s["status"], "FAILED");
    assert!(
        s["errors"].to_string().contains("max_runtime of 2s"),
        "{}",
        r.describe()
    );
    assert!(lab.snapshots_tagged("job:stuck").is_empty());

    // A paused job does not run.
    run(&mut lab.coffer(["job", "pause", "nightly"])).ok();
    let r = run(&mut lab.coffer(["--json", "job", "run", "nightly"])).ok();
    assert_eq!(r.summary()["status"], "PAUSED");
    assert_eq!(lab.snapshots_tagged("source:files").len(), 2 + 1);
    run(&mut lab.coffer(["job", "resume", "nightly"])).ok();

    // Status and runs agree with what happened.
    let st = run(&mut lab.coffer(["--json", "status"])).ok();
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let job = |n: &str| {
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(job("nightly")["status"], "PAUSED");
    assert_eq!(job("nightly")["paused"], false);
    assert!(job("nightly")["last_success"].is_string());
    assert_eq!(job("nightly")["rpo_seconds"], 26 * 3600);
    assert_eq!(job("nightly")["overdue"], false);
    assert!(job("nightly")["next_run"].is_string());
    assert_eq!(job("flaky")["consecutive_failures"], 1);
    assert_eq!(lab.runs("nightly")[0]["status"], "PAUSED");
    let runs = lab.runs("nightly");
    assert!(runs
        .windows(2)
        .all(|w| w[0]["id"].as_str() > w[1]["id"].as_str()));

    // The text a person reads: local times with "ago" / "in", the job's own time zone for
    // its next run, age against the RPO; a failed run's error in `runs`.
    let st = run(&mut lab.coffer(["status"])).ok().stdout_str();
    assert!(
        st.contains("AGE / RPO") && st.contains(" ago)") && st.contains("CST (in "),
        "{st}"
    );
    assert!(!st.contains("T00:") && !st.contains("+00:00"), "{st}");
    let runs_text = run(&mut lab.coffer(["runs", "--job", "flaky"]))
        .ok()
        .stdout_str();
    assert!(runs_text.contains("exited with status 3"), "{runs_text}");
    // In Chinese when the locale says so (the catalogs' completeness is a unit test).
    let zh = run(lab.coffer(["status"]).env("LANG", "zh_CN.UTF-8"))
        .ok()
        .stdout_str();
    assert!(
        zh.contains("作业") && zh.contains("前)") && zh.contains("后)"),
        "{zh}"
    );
    let zh = run(lab
        .coffer(["runs", "--job", "flaky"])
        .env("LC_ALL", "zh_CN.UTF-8"))
    .ok()
    .stdout_str();
    assert!(zh.contains("开始时间"), "{zh}");

    // Unknown job: a clear error naming the known ones.
    let r = run(&mut lab.coffer(["job", "run", "nope"])).expect_code(1);
    assert!(
        r.stderr.contains("nope") && r.stderr.contains("nightly"),
        "{}",
        r.describe()
    );
}

#[test]
fn a_jobs_retention_removes_only_the_snapshots_that_job_made() {
    let lab = Lab::new(
        r#"
[[job]]
name = "nightly"
sources = ["files"]
schedule = "0 2 * * *"
retention = { daily = 7, weekly = 4, monthly = 12 }

[[job]]
name = "quick"
sources = ["files"]
schedule = "*/5 * * * *"
retention = { last = 3 }
"#,
    );
    // config check says what each job keeps of the shared source.
    let r = run(&mut lab.coffer(["--json", "config", "check"])).ok();
    let w = r.summary()["warnings"].to_string();
    assert!(
        w.contains("nightly") && w.contains("keeps last 3") && w.contains("daily 7"),
        "{}",
        r.describe()
    );
    let r = run(&mut lab.coffer(["config", "check"])).ok();
    assert!(
        r.stderr.contains("warning: source \"files\""),
        "{}",
        r.describe()
    );

    let nightly = run(&mut lab.coffer(["--json", "job", "run", "nightly"])).ok();
    let nightly = nightly.summary()["snapshot_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let by_hand = run(&mut lab.coffer(["--json", "backup", "--source", "files"])).ok();
    let by_hand = by_hand.summary()["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..4 {
        run(&mut lab.coffer(["job", "run", "quick"])).ok();
    }
    let ids = |tag: &str| -> Vec<String> {
        lab.snapshots_tagged(tag)
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("job:quick").len(), 3, "quick keeps its last three");
    let all = ids("source:files");
    assert!(
        all.contains(&nightly),
        "nightly's snapshot was removed by quick's retention: {all:?}"
    );
    assert!(
        all.contains(&by_hand),
        "a hand-made snapshot was removed by quick's retention: {all:?}"
    );
    assert_eq!(all.len(), 5, "{all:?}");
    lab.repo.restic_check(false).ok();
}

#[test]
fn restore_of_a_run_names_what_is_missing_and_does_not_exit_0() {
    let lab = Lab::new(
        r#"
[[job]]
name = "nightly"
sources = ["files", "pg"]
schedule = "0 2 * * *"

[[job]]
name = "quick"
sources = ["files"]
schedule = "*/5 * * * *"
retention = { last = 1 }
"#,
    );
    let r = run(&mut lab.coffer(["--json", "job", "run", "nightly"])).ok();
    let id = r.summary()["id"].as_str().unwrap().to_string();
    let files_snap = lab
        .snapshots_tagged(&format!("run:{id}"))
        .iter()
        .find(|s| s["tags"].to_string().contains("source:files"))
        .map(|s| s["id"].as_str().unwrap().to_string())
        .unwrap();
    run(&mut lab.coffer(["forget", &files_snap])).ok();

    // The whole run: pg comes back, files is named with the reason, exit 3.
    let out = lab.dir.join("whole");
    let r = run(lab.coffer(["restore", "--run", &id, "--target"]).arg(&out)).expect_code(3);
    assert!(
        r.stderr.contains("source files: not restored")
            && r.stderr.contains("removed by coffer forget")
            && r.stderr.contains("restored 1 of 2 sources"),
        "{}",
        r.describe()
    );
    assert!(out.join("pg/postgres.dump").is_file());
    let r = run(lab
        .coffer(["--json", "restore", "--run", &id, "--partial", "--target"])
        .arg(&out))
    .ok();
    let s = r.summary();
    assert_eq!(s["partial"], true, "{}", r.describe());
    assert_eq!(s["missing"][0]["source"], "files");

    // One source of the run: the run was asked for, so the error is about the run.
    let r = run(&mut lab.coffer([
        "restore",
        "--run",
        &id,
        "--source",
        "files",
        "--target",
        "/nonexistent",
    ]))
    .expect_code(1);
    assert!(
        r.stderr
            .contains(&format!("run {id} has no snapshot of source \"files\""))
            && !r.stderr.contains("latest"),
        "{}",
        r.describe()
    );
    let r = run(&mut lab.coffer(["restore", "--run", &id, "--source", "broken"])).expect_code(1);
    assert!(
        r.stderr
            .contains("did not back up source \"broken\" (its sources: files, pg)"),
        "{}",
        r.describe()
    );

    // A snapshot removed by a job's retention says which job and run removed it.
    let first = run(&mut lab.coffer(["--json", "job", "run", "quick"])).ok();
    let first = first.summary()["id"].as_str().unwrap().to_string();
    let second = run(&mut lab.coffer(["--json", "job", "run", "quick"])).ok();
    let second = second.summary()["id"].as_str().unwrap().to_string();
    let r = run(lab
        .coffer(["restore", "--run", &first, "--target"])
        .arg(lab.dir.join("q")))
    .expect_code(1);
    assert!(
        r.stderr
            .contains(&format!("removed by retention of job quick (run {second})")),
        "{}",
        r.describe()
    );

    // An include that matches nothing: a warning and exit 3, not 0 with nothing restored.
    let r = run(lab
        .coffer([
            "restore",
            "--run",
            &second,
            "--include",
            "/no/such/path",
            "--target",
        ])
        .arg(lab.dir.join("inc")))
    .expect_code(3);
    assert!(
        r.stderr.contains("--include /no/such/path matched nothing"),
        "{}",
        r.describe()
    );
}

#[test]
fn config_check_reports_every_error() {
    let lab = Lab::new(
        r#"
[[source]]
name = "typo"
type = "postgres"
url = "postgresql://postgres@127.0.0.1:5432/"
databses = ["app"]

[[job]]
name = "a"
sources = ["files", "ghost"]
schedule = "0 99 * * *"
timezone = "Nowhere/City"
max_runtime = "forever"

[[job]]
name = "b"
sources = []
schedule = "* *"
copy_to = ["offsite"]
retention = { dayly = 3 }
"#,
    );
    let r = run(&mut lab.coffer(["config", "check"])).expect_code(1);
    for want in [
        "ghost",
        "`schedule`",
        "Nowhere/City",
        "lists no source",
        "2 fields",
        "offsite",
        "dayly",
        "coffer.toml",
        "key `max_runtime`: invalid duration \"forever\"",
        "unknown key `databses` (did you mean `databases`?)",
    ] {
        assert!(
            r.stderr.contains(want),
            "{want:?} missing: {}",
            r.describe()
        );
    }
    // The misspelt key is reported at its own line, not at the entry's.
    let text = std::fs::read_to_string(&lab.config).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("databses"))
        .unwrap()
        + 1;
    assert!(
        r.stderr.contains(&format!("line {line}: source \"typo\"")),
        "{}",
        r.describe()
    );
    // --json on failure too: one error per entry, every one of them.
    let r = run(&mut lab.coffer(["--json", "config", "check"])).expect_code(1);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert!(v["errors"].as_array().unwrap().len() >= 9, "{v:#}");
}

/// A minimal HTTP/1.1 request; returns the status code and the body.
pub(crate) fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    http_as(port, method, path, None)
}

/// The same, with a bearer token; the body starts with the response headers' last line
/// stripped (headers are returned as part of the body only by [`http_raw`]).
pub(crate) fn http_as(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let (code, raw) = http_raw(port, method, path, token);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The status code and the whole response (headers and body).
pub(crate) fn http_raw(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}

pub(crate) fn json_get(port: u16, path: &str) -> serde_json::Value {
    let (code, body) = http(port, "GET", path);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

pub(crate) struct Daemon(std::process::Child);

impl Daemon {
    pub(crate) fn start(lab: &Lab, port: u16, log: &str) -> Daemon {
        let log = std::fs::File::create(lab.dir.join(log)).unwrap();
        let child = lab
            .coffer(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon::from_child(child, port)
    }

    /// Waits for a started `coffer serve` to answer on `port`.
    pub(crate) fn from_child(child: std::process::Child, port: u16) -> Daemon {
        let mut d = Daemon(child);
        crate::util::wait_until("the daemon to answer", Duration::from_secs(20), || {
            if let Ok(Some(st)) = d.0.try_wait() {
                panic!("the daemon exited with {st:?} before answering");
            }
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        d
    }

    /// SIGKILL: the daemon dies without a word, as on a host crash.
    pub(crate) fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, and the exit status.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn count(v: &serde_json::Value, status: &str) -> usize {
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == status)
        .count()
}

#[test]
fn daemon_schedules_runs_pauses_and_catches_up_after_downtime() {
    let lab = Lab::new(
        r#"
[[job]]
name = "fast"
sources = ["files"]
schedule = "*/2 * * * * *"

[[job]]
name = "db"
sources = ["pg"]
schedule = "*/3 * * * * *"
priority = 5
"#,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Daemon::start(&lab, port, "serve-1.log");
    assert_eq!(http(port, "GET", "/-/healthy").0, 200);
    crate::util::wait_until(
        "two scheduled runs of each job",
        Duration::from_secs(60),
        || {
            count(&json_get(port, "/api/runs?job=fast"), "SUCCESS") >= 2
                && count(&json_get(port, "/api/runs?job=db"), "SUCCESS") >= 2
        },
    );
    let st = json_get(port, "/api/status");
    assert!(st["scheduler"]["heartbeat"].is_string(), "{st}");
    let db = st["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "db")
        .unwrap()
        .clone();
    assert!(
        db["last_success"].is_string() && db["next_run"].is_string(),
        "{db}"
    );

    // /metrics: what promtool accepts, with the counters the runs above made.
    let (code, text) = http(port, "GET", "/metrics");
    assert_eq!(code, 200);
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert!(value("coffer_job_runs_total{backup_job=\"fast\",status=\"SUCCESS\"}") >= 2.0);
    assert_eq!(
        value("coffer_job_runs_total{backup_job=\"db\",status=\"FAILED\"}"),
        0.0
    );
    assert!(value("coffer_job_source_bytes_total{backup_job=\"fast\"}") > 3e6);
    assert!(value("coffer_job_last_success_timestamp_seconds{backup_job=\"db\"}") > 1.7e9);
    assert!(value("coffer_scheduler_heartbeat_timestamp_seconds") > 1.7e9);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test-deps installs it)");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    scraped_by_prometheus(&lab, port);

    // The catalog the CLI reads agrees with the API.
    let api_ids: Vec<String> = json_get(port, "/api/runs?job=fast&limit=100")["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let cli_ids: Vec<String> = lab
        .runs("fast")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        api_ids[..cli_ids.len().min(api_ids.len()).min(2)],
        cli_ids[..2]
    );
    for r in &lab.runs("fast") {
        if r["status"] == "SUCCESS" {
            let id = r["id"].as_str().unwrap();
            assert_eq!(lab.snapshots_tagged(&format!("run:{id}")).len(), 1);
            assert_eq!(r["trigger"], "schedule");
        }
    }

    // Paused: the schedule records PAUSED runs and makes no snapshot.
    assert_eq!(http(port, "POST", "/api/jobs/fast/pause").0, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let before = lab.snapshots_tagged("job:fast").len();
    std::thread::sleep(Duration::from_millis(4500));
    assert_eq!(lab.snapshots_tagged("job:fast").len(), before);
    assert!(count(&json_get(port, "/api/runs?job=fast"), "PAUSED") >= 1);
    assert_eq!(json_get(port, "/api/jobs/fast")["paused"], true);

    // API errors.
    assert_eq!(http(port, "POST", "/api/jobs/nope/run").0, 404);
    assert_eq!(http(port, "GET", "/api/runs?job=nope").0, 404);
    assert_eq!(http(port, "GET", "/api/jobs/nope").0, 404);

    let st = d.stop();
    assert!(st.success(), "exit status {st:?}");

    // Down for a while: the missed schedule of "db" runs once at start, as a misfire.
    std::thread::sleep(Duration::from_secs(4));
    let d = Daemon::start(&lab, port, "serve-2.log");
    crate::util::wait_until("a misfire run", Duration::from_secs(60), || {
        json_get(port, "/api/runs?job=db")["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["trigger"] == "misfire" && r["status"] == "SUCCESS")
    });
    assert!(d.stop().success());
    lab.repo.restic_check(false).ok();
}

/// A real Prometheus scrapes the daemon and can query its series.
fn scraped_by_prometheus(lab: &Lab, port: u16) {
    let prom_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = lab.dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: coffer\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(lab.dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            lab.dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian package; scripts/test-deps installs it)");
    let _guard = Daemon(child);
    crate::util::wait_until(
        "Prometheus to scrape coffer",
        Duration::from_secs(60),
        || {
            if std::net::TcpStream::connect(("127.0.0.1", prom_port)).is_err() {
                return false;
            }
            let (code, body) = http(
            prom_port,
            "GET",
            "/api/v1/query?query=coffer_job_runs_total%7Bbackup_job%3D%22fast%22%2Cstatus%3D%22SUCCESS%22%7D",
        );
            code == 200
                && serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["data"]["result"].as_array().map(|a| !a.is_empty()))
                    .unwrap_or(false)
        },
    );
    // The target is healthy, and the scrape job's own label did not collide with ours.
    let (_, body) = http(
        prom_port,
        "GET",
        "/api/v1/query?query=up%7Bjob%3D%22coffer%22%7D",
    );
    assert!(body.contains("\"1\"]"), "up: {body}");
}

#[test]
fn storage_guard_pauses_a_full_repository_and_resumes_when_space_returns() {
    let lab = Lab::new("");
    let mnt = lab.dir.join("small");
    let fs = crate::util::Tmpfs::mount(&mnt, "64M");
    let small = Repo::local(&mnt.join("repo"));
    small.init();
    let mut cfg = std::fs::read_to_string(&lab.config).unwrap();
    cfg.push_str(&format!(
        "\n[[repository]]\nname = \"small\"\nurl = \"{}\"\npassword = \"${{COFFER_PASSWORD}}\"\n\n\
         [[job]]\nname = \"onsmall\"\nsources = [\"files\"]\nrepository = \"small\"\nschedule = \"0 2 * * *\"\n",
        mnt.join("repo").display()
    ));
    // Two repositories now: every source and job names its own.
    cfg = cfg.replace(
        "type = \"files\"\n",
        "type = \"files\"\nrepository = \"local\"\n",
    );
    cfg = cfg.replace(
        "type = \"postgres\"\n",
        "type = \"postgres\"\nrepository = \"local\"\n",
    );
    cfg = cfg.replace(
        "type = \"command\"\n",
        "type = \"command\"\nrepository = \"local\"\n",
    );
    std::fs::write(&lab.config, cfg).unwrap();
    run(&mut lab.coffer(["config", "check"])).ok();

    // 96% full: PAUSED, nothing written.
    let filler = mnt.join("filler");
    let used_by_repo = crate::util::dir_bytes(&mnt.join("repo"));
    let fill = (64u64 << 20) * 96 / 100 - used_by_repo;
    std::fs::write(&filler, vec![7u8; fill as usize]).unwrap();
    let r = run(&mut lab.coffer(["--json", "job", "run", "onsmall"])).ok();
    let s = r.summary();
    assert_eq!(s["status"], "PAUSED", "{}", r.describe());
    assert!(
        s["errors"].to_string().contains("critical threshold"),
        "{}",
        r.describe()
    );
    assert!(small.snapshot_ids().is_empty());

    // Space freed: it runs, into the same repository.
    std::fs::remove_file(&filler).unwrap();
    let r = run(&mut lab.coffer(["--json", "job", "run", "onsmall"])).ok();
    assert_eq!(r.summary()["status"], "SUCCESS", "{}", r.describe());
    assert_eq!(small.snapshot_ids().len(), 1);

    // Between high (85%) and critical: it runs, with the level as a warning on the run.
    let used = crate::util::dir_bytes(&mnt.join("repo"));
    std::fs::write(
        &filler,
        vec![7u8; ((64u64 << 20) * 88 / 100 - used) as usize],
    )
    .unwrap();
    let r = run(&mut lab.coffer(["--json", "job", "run", "onsmall"])).ok();
    let s = r.summary();
    assert_eq!(s["status"], "SUCCESS", "{}", r.describe());
    assert!(
        s["warnings"]
            .to_string()
            .contains("above the high threshold"),
        "{}",
        r.describe()
    );
    small.restic_check(false).ok();
    drop(fs);
}
