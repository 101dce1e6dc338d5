//! The `alertmanager` channel against a real Alertmanager (Debian `prometheus-alertmanager`,
//! installed by scripts/test-deps): a pushed alert is active, as `amtool alert query` sees
//! it, and a resolved push (endsAt in the past) takes it away.

// A test fails by panicking: unwrap is how these say what they expect.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use coffer_alerts::{build, fingerprint, AlertStatus, Notification, Options, Severity};
use coffer_testkit::{alertmanager, amtool_query};

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
    let got = amtool_query(port, "backup_job=nightly");
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
        amtool_query(port, "backup_job=nightly").is_empty(),
        "still listed after the resolved push"
    );
}
