//! The alert lifecycle end to end: a real daemon runs real jobs, evaluates the rules and
//! delivers to HTTP receivers on loopback; acks go through the API, silences through the
//! CLI, and the dead-man's switch is checked by `coffer alerts check` after the scheduler
//! is killed. Assertions are on what the receivers got, not on internal state.

use std::time::{Duration, Instant};

use serde_json::Value;

use coffer_testkit::{alertmanager, amtool_query, free_port};

use crate::alerts::Receiver;
use crate::jobs::{http, json_get, Daemon, Lab};
use crate::util::{run, wait_until};

/// Every alert (alertname, status, severity, backup_job) a receiver path got, in order.
fn received(r: &Receiver, path: &str) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for req in r.requests(path) {
        let v = req.json();
        for a in v["alerts"].as_array().cloned().unwrap_or_default() {
            out.push((
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["status"].as_str().unwrap_or("").to_string(),
                a["labels"]["severity"].as_str().unwrap_or("").to_string(),
                a["labels"]["backup_job"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

fn count(r: &Receiver, path: &str, name: &str, status: &str, severity: &str) -> usize {
    received(r, path)
        .iter()
        .filter(|a| a.0 == name && a.1 == status && (severity.is_empty() || a.2 == severity))
        .count()
}

fn wait_for(r: &Receiver, path: &str, name: &str, status: &str, severity: &str, n: usize) {
    wait_until(
        &format!("{path} to get {n} x {status} {name} {severity}"),
        Duration::from_secs(60),
        || count(r, path, name, status, severity) >= n,
    );
}

fn run_job(port: u16, lab: &Lab, job: &str, before: usize) {
    let (code, body) = http(port, "POST", &format!("/api/jobs/{job}/run"));
    assert_eq!(code, 202, "{body}");
    wait_until(
        &format!("run {} of {job} to end", before + 1),
        Duration::from_secs(60),
        || {
            lab.runs(job)
                .iter()
                .filter(|r| {
                    r["status"] != "RUNNING" && r["status"] != "QUEUED" && r["status"] != "RETRY"
                })
                .count()
                > before
        },
    );
}

fn alert_id(port: u16, name: &str) -> String {
    let v = json_get(port, "/api/alerts?state=firing");
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == name)
        .unwrap_or_else(|| panic!("no firing {name} in {v:#}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Holds for `d`: the receiver gets no further firing `name`.
fn quiet_for(r: &Receiver, path: &str, name: &str, d: Duration, why: &str) {
    let before = count(r, path, name, "firing", "");
    std::thread::sleep(d);
    assert_eq!(
        count(r, path, name, "firing", ""),
        before,
        "{why}: {:#?}",
        received(r, path)
    );
}

#[test]
fn failure_escalation_repeat_silence_ack_and_resolve() {
    let recv = Receiver::start();
    let dead = free_port();
    let flag_dir = crate::util::tempdir("coffer-alert-flag-");
    let flag = flag_dir.path().join("fail");
    std::fs::write(&flag, "1").unwrap();
    let lab = Lab::new(&format!(
        r#"
[[source]]
name = "flaky-src"
type = "command"
command = ["sh", "-c", "if test -e {flag}; then echo 'No space left on device' >&2; exit 3; fi; echo data"]

# The host's own disk level is not what these tests are about.
[[rule]]
name = "StorageThreshold"
enabled = false

[alerting]
group_interval = "1s"
evaluation_interval = "1s"
repeat_interval = {{ critical = "2s", high = "2s" }}

[[channel]]
name = "hook"
type = "webhook"
url = "{hook}"

[[channel]]
name = "pager"
type = "webhook"
url = "{pager}"
min_severity = "critical"

[[channel]]
name = "hook-zh"
type = "webhook"
url = "{hook_zh}"
language = "zh-CN"

[[channel]]
name = "dead"
type = "webhook"
url = "http://127.0.0.1:{dead}/x"
min_severity = "critical"

[[rule]]
name = "blip"
when = 'status == "FAILED"'
for = "1h"
severity = "low"
channels = ["hook"]

[[job]]
name = "flaky"
sources = ["flaky-src"]
schedule = "0 0 1 1 *"
retries = 0
ping_url = "{hc}"
"#,
        flag = flag.display(),
        hook = recv.url("/hook"),
        pager = recv.url("/pager"),
        hook_zh = recv.url("/zh"),
        hc = recv.url("/hc/flaky"),
    ));
    let port = free_port();
    let daemon = Daemon::start(&lab, port, "daemon.log");

    // First failure: high, at once, to `hook` only (pager wants critical).
    run_job(port, &lab, "flaky", 0);
    let ended = Instant::now();
    wait_for(&recv, "/hook", "BackupFailed", "firing", "high", 1);
    eprintln!(
        "failure -> webhook: {:?} after the run was seen ended",
        ended.elapsed()
    );
    assert_eq!(count(&recv, "/pager", "BackupFailed", "firing", ""), 0);
    // `for = 1h` holds the user rule back: listed as pending, never sent.
    let pending = json_get(port, "/api/alerts?state=pending");
    assert!(
        pending["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "blip"),
        "{pending:#}"
    );
    let first = &recv.requests("/hook")[0].json();
    assert_eq!(first["status"], "firing");
    assert_eq!(first["alerts"][0]["labels"]["backup_job"], "flaky");
    assert!(
        first["alerts"][0]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{first:#}"
    );

    // A channel with `language = "zh-CN"` gets the same alert in Chinese.
    wait_for(&recv, "/zh", "BackupFailed", "firing", "high", 1);
    let zh = recv.requests("/zh")[0].json();
    let summary = zh["alerts"][0]["annotations"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("备份 flaky 失败："), "{zh:#}");

    // Second failure in a row: critical, to both; the dead channel fails after its retries
    // and is reported as ChannelFailing.
    run_job(port, &lab, "flaky", 1);
    wait_for(&recv, "/hook", "BackupFailed", "firing", "critical", 1);
    wait_for(&recv, "/pager", "BackupFailed", "firing", "critical", 1);
    wait_for(&recv, "/hook", "ChannelFailing", "firing", "", 1);
    let deliveries = json_get(port, "/api/deliveries?channel=dead");
    let d = &deliveries["deliveries"][0];
    assert_eq!(d["ok"], false, "{deliveries:#}");
    assert_eq!(d["attempts"], 3, "{deliveries:#}");

    // Unacknowledged, critical repeats every 2 s.
    let n = count(&recv, "/pager", "BackupFailed", "firing", "critical");
    wait_for(&recv, "/pager", "BackupFailed", "firing", "critical", n + 1);

    // A silence stops the repeats; expiring it brings them back. A duration needs a unit:
    // `--duration 2` is not 2 seconds of silence.
    let r = run(&mut lab.coffer([
        "silence",
        "add",
        "backup_job=flaky",
        "--duration",
        "2",
        "--comment",
        "x",
    ]))
    .expect_code(1);
    assert!(r.stderr.contains("has no unit"), "{}", r.describe());
    let r = run(&mut lab.coffer([
        "--json",
        "silence",
        "add",
        "backup_job=flaky",
        "alertname=~Backup.*",
        "--duration",
        "1h",
        "--comment",
        "disk being replaced",
    ]))
    .ok();
    let silence: Value = serde_json::from_slice(&r.stdout).unwrap();
    let sid = silence["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    quiet_for(
        &recv,
        "/pager",
        "BackupFailed",
        Duration::from_secs(5),
        "silenced, yet repeated",
    );
    let listed = run(&mut lab.coffer(["alerts"])).ok().stdout_str();
    assert!(listed.contains(&format!("silence {sid}")), "{listed}");
    run(&mut lab.coffer(["silence", "expire", &sid[..8]])).ok();
    let n = count(&recv, "/pager", "BackupFailed", "firing", "critical");
    wait_for(&recv, "/pager", "BackupFailed", "firing", "critical", n + 1);

    // An ack through the API stops the repeats too, and records who.
    let id = alert_id(port, "BackupFailed");
    let (code, body) = http(port, "POST", &format!("/api/alerts/{id}/acknowledge"));
    assert_eq!(code, 200, "{body}");
    std::thread::sleep(Duration::from_millis(1500));
    quiet_for(
        &recv,
        "/pager",
        "BackupFailed",
        Duration::from_secs(5),
        "acknowledged, yet repeated",
    );
    let firing = json_get(port, "/api/alerts?state=firing&severity=critical");
    let acked = firing["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(acked["ack"]["by"], "anonymous", "{acked:#}");
    let (code, _) = http(port, "POST", "/api/alerts/nonexistent/acknowledge");
    assert_eq!(code, 404);

    // Healthchecks-style pings: start and fail for each failed run, in that order.
    let hc: Vec<String> = recv
        .requests("/hc/")
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(&hc[..2], ["/hc/flaky/start", "/hc/flaky/fail"], "{hc:?}");
    let fail = recv.requests("/hc/flaky/fail")[0].json();
    assert_eq!(fail["status"], "FAILED", "{fail:#}");

    // Success: the resolved notice reaches both channels that got the alert, ack or not.
    std::fs::remove_file(&flag).unwrap();
    run_job(port, &lab, "flaky", 2);
    wait_until("the success ping", Duration::from_secs(30), || {
        recv.requests("/hc/flaky")
            .iter()
            .any(|r| r.target == "/hc/flaky")
    });
    wait_for(&recv, "/hook", "BackupFailed", "resolved", "", 1);
    wait_for(&recv, "/pager", "BackupFailed", "resolved", "", 1);
    // The blip never reached anyone, and the ack went with the alert.
    assert_eq!(count(&recv, "/hook", "blip", "firing", ""), 0);
    let resolved = json_get(port, "/api/alerts?state=resolved");
    let a = resolved["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert!(a.get("ack").is_none(), "{a:#}");
    // Actions are audited, the config load at start included.
    let audit = json_get(port, "/api/audit");
    for action in ["alert.ack", "config.load", "backup"] {
        assert!(
            audit["audit"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == action),
            "{action}: {audit:#}"
        );
    }
    assert!(daemon.stop().success());
    // Nothing is sent at start-up: a restarted daemon remembers what was sent.
    let before = recv.requests("/").len();
    let daemon = Daemon::start(&lab, port, "daemon2.log");
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<_> = recv.requests("/")[before..]
        .iter()
        .map(|r| r.json())
        .collect();
    // Only the failing channel's own alert may repeat (high, every 2 s); a new process does
    // not think the channel healthy, so it is never "resolved" by the restart.
    assert!(
        after.iter().all(|v| v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["labels"]["alertname"] == "ChannelFailing" && a["status"] == "firing")),
        "a restart re-sent or resolved alerts: {after:#?}"
    );
    let firing = json_get(port, "/api/alerts?state=firing");
    assert!(
        firing["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "ChannelFailing"),
        "{firing:#}"
    );
    drop(daemon);
}

#[test]
fn a_restarted_daemon_keeps_alerts_whose_facts_it_has_not_measured() {
    let recv = Receiver::start();
    let lab = Lab::new(&format!(
        r#"
[[repository]]
name = "nas"
url = "{nas}"
password = "${{COFFER_PASSWORD}}"
quota = "1"

[alerting]
group_interval = "1s"
evaluation_interval = "1s"

[[channel]]
name = "hook"
type = "webhook"
url = "{hook}"
"#,
        nas = "NAS_DIR",
        hook = recv.url("/hook"),
    ));
    let nas = lab.dir.join("nas");
    let text = std::fs::read_to_string(&lab.config).unwrap();
    std::fs::write(&lab.config, text.replace("NAS_DIR", nas.to_str().unwrap())).unwrap();
    run(&mut crate::util::Repo::local(&nas).coffer(["init"])).ok();
    let port = free_port();
    let daemon = Daemon::start(&lab, port, "daemon.log");
    wait_until("StorageThreshold for nas", Duration::from_secs(60), || {
        received(&recv, "/hook")
            .iter()
            .any(|a| a.0 == "StorageThreshold" && a.1 == "firing" && a.2 == "critical")
    });
    let id = alert_id(port, "StorageThreshold");
    let (code, body) = http(port, "POST", &format!("/api/alerts/{id}/acknowledge"));
    assert_eq!(code, 200, "{body}");
    assert!(daemon.stop().success());

    // The NAS is not mounted when the daemon comes back: its storage cannot be measured,
    // which is not the same as fine. Nothing is resolved, nothing re-sent, the ack stays.
    std::fs::rename(&nas, lab.dir.join("nas.unmounted")).unwrap();
    let before = recv.requests("/hook").len();
    let daemon = Daemon::start(&lab, port, "daemon2.log");
    std::thread::sleep(Duration::from_secs(4));
    let after = &received(&recv, "/hook")[..];
    let sent_after: Vec<_> = recv.requests("/hook")[before..]
        .iter()
        .map(|r| r.json())
        .collect();
    assert!(
        sent_after.is_empty(),
        "sent after the restart: {sent_after:#?} (all: {after:#?})"
    );
    let firing = json_get(port, "/api/alerts?state=firing");
    let a = firing["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap_or_else(|| panic!("the alert is no longer firing: {firing:#}"));
    assert_eq!(a["ack"]["by"], "anonymous", "{a:#}");
    drop(daemon);
}

#[test]
fn dead_mans_switch_catches_a_killed_scheduler() {
    let recv = Receiver::start();
    let lab = Lab::new(&format!(
        r#"
# The host's own disk level is not what these tests are about.
[[rule]]
name = "StorageThreshold"
enabled = false

[alerting]
heartbeat_timeout = "3s"
evaluation_interval = "1s"
group_interval = "1s"

[[channel]]
name = "hook"
type = "webhook"
url = "{hook}"

[[job]]
name = "every2s"
sources = ["files"]
schedule = "*/2 * * * * *"
rpo = "20s"

[[job]]
name = "cron-run"
sources = ["files"]
schedule = "0 3 * * *"
rpo = "8s"
"#,
        hook = recv.url("/hook"),
    ));
    // A job run by cron (`coffer job run`), then cron stops: `alerts check`, run from
    // another cron entry or host, reports it overdue once the RPO has passed.
    run(&mut lab.coffer(["job", "run", "cron-run"])).ok();
    let r = run(&mut lab.coffer(["alerts", "check"])).ok();
    assert!(
        r.stdout_str().contains("0 firing"),
        "{}\n{:#?}",
        r.describe(),
        received(&recv, "/hook")
    );
    let t = Instant::now();
    wait_until("the overdue alert", Duration::from_secs(60), || {
        run(&mut lab.coffer(["alerts", "check"])).ok();
        std::thread::sleep(Duration::from_millis(500));
        count(&recv, "/hook", "BackupOverdue", "firing", "critical") > 0
    });
    eprintln!(
        "cron-run overdue reported {:?} after the check started",
        t.elapsed()
    );
    let got = received(&recv, "/hook");
    assert!(
        got.iter()
            .any(|a| a.0 == "BackupOverdue" && a.3 == "cron-run"),
        "{got:#?}"
    );

    // The daemon schedules every 2 s; killed with -9, its heartbeat stops and `alerts
    // check` (which stays quiet while the daemon lives) reports SchedulerDown.
    let port = free_port();
    let mut daemon = Daemon::start(&lab, port, "daemon.log");
    wait_until("a scheduled run", Duration::from_secs(30), || {
        lab.runs("every2s").iter().any(|r| r["status"] == "SUCCESS")
    });
    // Let the daemon store a fresh heartbeat (every 10 s) and evaluate.
    std::thread::sleep(Duration::from_secs(2));
    let r = run(&mut lab.coffer(["alerts", "check"])).ok();
    assert!(
        r.stdout_str().contains("the daemon is running"),
        "{}",
        r.describe()
    );
    daemon.kill9();
    let killed = Instant::now();
    wait_until("SchedulerDown", Duration::from_secs(60), || {
        run(&mut lab.coffer(["alerts", "check"]));
        std::thread::sleep(Duration::from_millis(500));
        count(&recv, "/hook", "SchedulerDown", "firing", "critical") > 0
    });
    eprintln!(
        "SchedulerDown reported {:?} after kill -9",
        killed.elapsed()
    );
    // Overdue for the daemon's job follows, inhibited by SchedulerDown (one page, the cause).
    wait_until(
        "every2s overdue and inhibited",
        Duration::from_secs(60),
        || {
            run(&mut lab.coffer(["alerts", "check"]));
            let r = run(&mut lab.coffer(["--json", "alerts"])).ok();
            let v: Value = serde_json::from_slice(&r.stdout).unwrap();
            v.as_array().unwrap().iter().any(|a| {
                a["rule"] == "BackupOverdue"
                    && a["labels"]["backup_job"] == "every2s"
                    && a["suppressed_by"] == "inhibited by SchedulerDown"
            })
        },
    );
    assert!(
        !received(&recv, "/hook")
            .iter()
            .any(|a| a.0 == "BackupOverdue" && a.3 == "every2s"),
        "inhibited, yet sent"
    );
}

#[test]
fn audit_log_is_chained_and_verify_catches_edits_and_cuts() {
    let keydir = crate::util::tempdir("coffer-audit-key-");
    let lab = Lab::new(&format!(
        r#"
[audit]
key_file = "{k}/audit.key"

[[job]]
name = "files-job"
sources = ["files"]
schedule = "0 3 * * *"
"#,
        k = keydir.path().display()
    ));
    run(&mut lab.coffer(["job", "run", "files-job"])).ok();
    run(&mut lab.coffer(["job", "pause", "files-job"])).ok();
    run(&mut lab.coffer(["job", "resume", "files-job"])).ok();
    run(&mut lab.coffer([
        "silence",
        "add",
        "backup_job=files-job",
        "--duration",
        "1h",
        "--comment",
        "test",
    ]))
    .ok();
    // A restore with the config file is audited too.
    let out = lab.dir.join("restored");
    run(&mut lab.coffer(["restore", "latest", "--target", out.to_str().unwrap()])).ok();
    // The second run's snapshot carries the head recorded after the first actions.
    run(&mut lab.coffer(["job", "run", "files-job"])).ok();
    let tagged = lab.snapshots_tagged("job:files-job");
    assert!(
        tagged.iter().any(|s| s["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().starts_with("audit:"))),
        "{tagged:#?}"
    );
    let r = run(&mut lab.coffer(["--json", "audit", "verify"])).ok();
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    assert!(v["lines"].as_u64().unwrap() >= 6, "{v:#}");
    assert_eq!(v["head"], v["expected_head"], "{v:#}");
    let log = std::path::PathBuf::from(v["log"].as_str().unwrap());
    let text = std::fs::read_to_string(&log).unwrap();
    for action in ["job.run", "job.pause", "silence.add", "restore"] {
        assert!(
            text.contains(&format!("\"action\":\"{action}\"")),
            "{action} missing:\n{text}"
        );
    }
    // The key never sits beside the log.
    assert!(!log.parent().unwrap().join("audit.key").exists());
    // Read by a person: who did what. $USER is not set here (as under cron): the actor is
    // the uid's name.
    let shown = run(&mut lab.coffer(["audit", "show", "--since", "1h"]))
        .ok()
        .stdout_str();
    assert!(
        shown.contains("job.pause") && shown.contains("cli:root") && !shown.contains("ALTERED"),
        "{shown}"
    );
    let r = run(&mut lab.coffer(["--json", "audit", "show", "--limit", "2"])).ok();
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["entries"].as_array().unwrap().len(), 2, "{v:#}");
    assert_eq!(v["entries"][1]["valid"], true, "{v:#}");

    // One byte edited in the middle: caught, with its line.
    let mut edited = text.clone().into_bytes();
    let at = text.find("job.pause").unwrap();
    edited[at] = b'J';
    std::fs::write(&log, &edited).unwrap();
    let r = run(&mut lab.coffer(["--json", "audit", "verify"])).expect_code(1);
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["problems"][0]["kind"], "BadMac", "{v:#}");
    let r = run(&mut lab.coffer(["audit", "show"])).expect_code(1);
    assert!(r.stdout_str().contains("ALTERED"), "{}", r.describe());
    // The last line cut off: a valid shorter chain, caught against the recorded head.
    let cut: String = {
        let lines: Vec<&str> = text.lines().collect();
        lines[..lines.len() - 1]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect()
    };
    std::fs::write(&log, cut).unwrap();
    let r = run(&mut lab.coffer(["audit", "verify"])).expect_code(1);
    assert!(r.stdout_str().contains("removed"), "{}", r.describe());
    // Restored: intact again.
    std::fs::write(&log, &text).unwrap();
    run(&mut lab.coffer(["audit", "verify"])).ok();
}

fn amtool_backup_failed(port: u16) -> Vec<Value> {
    amtool_query(port, "alertname=BackupFailed")
}

#[test]
fn alertmanager_gets_active_alerts_again_and_their_end() {
    let flag_dir = crate::util::tempdir("coffer-am-flag-");
    let (_am, am_port) = alertmanager(flag_dir.path());
    let flag = flag_dir.path().join("fail");
    std::fs::write(&flag, "1").unwrap();
    let lab = Lab::new(&format!(
        r#"
[[source]]
name = "flaky-src"
type = "command"
command = ["sh", "-c", "if test -e {flag}; then echo 'connection refused' >&2; exit 3; fi; echo data"]

# The host's own disk level is not what these tests are about.
[[rule]]
name = "StorageThreshold"
enabled = false

[alerting]
evaluation_interval = "1s"
resend_interval = "1s"

[[channel]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:{am_port}"

[[job]]
name = "flaky"
sources = ["flaky-src"]
schedule = "0 0 1 1 *"
retries = 0
"#,
        flag = flag.display(),
    ));
    let port = free_port();
    let _daemon = Daemon::start(&lab, port, "daemon.log");
    run_job(port, &lab, "flaky", 0);
    wait_until(
        "Alertmanager to show the alert",
        Duration::from_secs(30),
        || amtool_backup_failed(am_port).len() == 1,
    );
    let got = amtool_backup_failed(am_port);
    assert_eq!(got[0]["labels"]["backup_job"], "flaky", "{got:#?}");
    assert_eq!(got[0]["labels"]["severity"], "high", "{got:#?}");
    assert_eq!(got[0]["status"]["state"], "active", "{got:#?}");
    // Re-sent while active, so Alertmanager never lets it expire.
    wait_until("three pushes", Duration::from_secs(30), || {
        json_get(port, "/api/deliveries?channel=am")["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["ok"] == true)
            .count()
            >= 3
    });
    // Resolved: pushed with endsAt now, and Alertmanager drops it from the active list.
    std::fs::remove_file(&flag).unwrap();
    run_job(port, &lab, "flaky", 1);
    wait_until(
        "Alertmanager to drop the alert",
        Duration::from_secs(30),
        || amtool_backup_failed(am_port).is_empty(),
    );
    let d = json_get(port, "/api/deliveries?channel=am&limit=1");
    assert_eq!(
        d["deliveries"][0]["alerts"][0]["status"], "resolved",
        "{d:#}"
    );
}
