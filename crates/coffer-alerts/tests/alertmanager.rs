//! The `alertmanager` channel against a real Alertmanager (Debian `prometheus-alertmanager`,
//! installed by scripts/test-deps): a pushed alert is active, as `amtool alert query` sees
//! it, and a resolved push (endsAt in the past) takes it away.

// A test fails by panicking: unwrap is how these say what they expect.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coffer_alerts::{build, fingerprint, AlertStatus, Notification, Options, Severity};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn alertmanager(dir: &Path) -> (Server, u16) {
    let port = free_port();
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap())
        .spawn()
        .expect("starting prometheus-alertmanager (scripts/test-deps installs it)");
    let s = Server(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "alertmanager did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (s, port)
}

/// The alerts amtool lists for `backup_job=nightly`.
fn query(port: u16) -> Vec<serde_json::Value> {
    let out = Command::new("amtool")
        .args(["alert", "query", "-o", "json"])
        .arg(format!("--alertmanager.url=http://127.0.0.1:{port}"))
        .arg("backup_job=nightly")
        .output()
        .expect("amtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn pushed_alert_is_active_until_resolved() {
    let tmp = tempfile::tempdir().unwrap();
    let (_am, port) = alertmanager(tmp.path());
    let cfg = coffer_config::Config::parse(
        &format!(
            "[[channel]]\nname = \"am\"\ntype = \"alertmanager\"\nurl = \"http://127.0.0.1:{port}\"\n"
        ),
        Path::new("t.toml"),
    )
    .unwrap();
    let channel = build(&cfg.channel[0], &Options::default()).unwrap();

    let mut labels = BTreeMap::new();
    labels.insert("backup_job".to_string(), "nightly".to_string());
    let mut all = labels.clone();
    all.insert("alertname".into(), "BackupFailed".into());
    all.insert("severity".into(), "high".into());
    let mut n = Notification {
        alertname: "BackupFailed".into(),
        severity: Severity::High,
        status: AlertStatus::Firing,
        labels,
        summary: "Backup nightly failed".into(),
        description: "pg_dump exited 1".into(),
        runbook: Some("https://example.com/runbooks/backup-failed".into()),
        starts_at: chrono::Utc::now() - chrono::Duration::seconds(30),
        ends_at: None,
        fingerprint: fingerprint(&all),
        generator_url: Some("http://127.0.0.1:8081/runs/nightly-1".into()),
        test: false,
        lang: coffer_i18n::Lang::En,
    };
    let d = channel.send(std::slice::from_ref(&n)).unwrap();
    assert_eq!((d.attempts, d.status), (1, Some(200)));
    let got = query(port);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["labels"]["alertname"], "BackupFailed");
    assert_eq!(got[0]["labels"]["severity"], "high");
    assert_eq!(got[0]["annotations"]["summary"], "Backup nightly failed");
    assert_eq!(
        got[0]["annotations"]["runbook_url"],
        "https://example.com/runbooks/backup-failed"
    );
    assert_eq!(
        got[0]["generatorURL"],
        "http://127.0.0.1:8081/runs/nightly-1"
    );
    assert_eq!(got[0]["status"]["state"], "active");

    n.status = AlertStatus::Resolved;
    n.ends_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
    channel.send(&[n]).unwrap();
    assert!(
        query(port).is_empty(),
        "still listed after the resolved push"
    );
}
