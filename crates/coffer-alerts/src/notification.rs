//! The notification: one alert as channels see it, in Alertmanager's terms (labels identify
//! it, annotations describe it, `startsAt`/`endsAt` bound it), plus the rendering every chat
//! channel shares.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use coffer_i18n::{t, Lang};

use crate::Severity;

/// Whether the alert is still active.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertStatus {
    /// Active.
    Firing,
    /// Over; `ends_at` says when.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`, as Alertmanager spells them.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert to deliver.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The rule's name (label `alertname`).
    pub alertname: String,
    /// Label `severity`.
    pub severity: Severity,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Further labels, `backup_job` among them. `alertname` and `severity` are added by
    /// [`Notification::labels`].
    pub labels: BTreeMap<String, String>,
    /// One line.
    pub summary: String,
    /// Details.
    pub description: String,
    /// A link to what to do.
    pub runbook: Option<String>,
    /// When the alert started firing.
    pub starts_at: DateTime<Utc>,
    /// When it resolved (or, for a push to Alertmanager, when it should be considered over).
    pub ends_at: Option<DateTime<Utc>>,
    /// Identity: a hash of the labels (see [`fingerprint`]).
    pub fingerprint: String,
    /// A link back to coffer (run page, dashboard), when there is one.
    pub generator_url: Option<String>,
    /// A test message from `coffer alert test`: channels say so in their text.
    pub test: bool,
    /// The language of the channel it goes to (its texts are already in it; the words around
    /// them follow).
    pub lang: Lang,
}

impl Notification {
    /// Every label, `alertname` and `severity` included.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert("alertname".into(), self.alertname.clone());
        l.insert("severity".into(), self.severity.as_str().into());
        l
    }

    /// `summary`, `description` and `runbook_url` (when set, and without empty values).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        if !self.summary.is_empty() {
            a.insert("summary".into(), self.summary.clone());
        }
        if !self.description.is_empty() {
            a.insert("description".into(), self.description.clone());
        }
        if let Some(r) = &self.runbook {
            a.insert("runbook_url".into(), r.clone());
        }
        a
    }

    /// The job the alert is about, when it is about one.
    pub fn job(&self) -> Option<&str> {
        self.labels.get("backup_job").map(String::as_str)
    }

    /// A title line: `[TEST] [FIRING] high: BackupFailed (nightly)`.
    pub fn title(&self) -> String {
        let mut t = String::new();
        if self.test {
            t.push_str(&format!("[{}] ", t!(self.lang, "notif-test")));
        }
        let status = match self.status {
            AlertStatus::Firing => t!(self.lang, "notif-firing"),
            AlertStatus::Resolved => t!(self.lang, "notif-resolved"),
        };
        t.push_str(&format!("[{status}] {}: {}", self.severity, self.alertname));
        if let Some(j) = self.job() {
            t.push_str(&format!(" ({j})"));
        }
        t
    }
}

/// RFC 3339 with a `Z`, seconds precision, as Alertmanager writes times.
pub(crate) fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The identity of an alert: the first 16 hex digits of SHA-256 over its sorted labels
/// (`name=value` joined by `\n`). Stable across restarts, so re-sent alerts deduplicate.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
        h.update(b"\n");
    }
    hex::encode(&h.finalize()[..8])
}

/// The message `coffer alert test` sends: alert `CofferTest`, label `backup_job="coffer-test"`.
pub fn test_notification(severity: Severity, lang: Lang) -> Notification {
    let mut labels = BTreeMap::new();
    labels.insert("backup_job".to_string(), "coffer-test".to_string());
    let mut all = labels.clone();
    all.insert("alertname".into(), "CofferTest".into());
    all.insert("severity".into(), severity.as_str().into());
    let host = hostname();
    Notification {
        alertname: "CofferTest".into(),
        severity,
        status: AlertStatus::Firing,
        labels,
        summary: t!(lang, "notif-test-summary", host = host),
        description: t!(lang, "notif-test-description"),
        runbook: None,
        starts_at: Utc::now(),
        ends_at: None,
        fingerprint: fingerprint(&all),
        generator_url: None,
        test: true,
        lang,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "this host".into())
}

/// The plain-text body shared by email, Slack, WeCom and Feishu: one block per alert.
pub(crate) fn plain_text(ns: &[Notification]) -> String {
    let mut out = String::new();
    for (i, n) in ns.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&n.title());
        out.push('\n');
        if !n.summary.is_empty() {
            out.push_str(&n.summary);
            out.push('\n');
        }
        if !n.description.is_empty() {
            out.push_str(&n.description);
            out.push('\n');
        }
        let labels: Vec<String> = n.labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
        let l = n.lang;
        out.push_str(&format!(
            "{}: {}\n",
            t!(l, "notif-labels"),
            labels.join(", ")
        ));
        out.push_str(&format!(
            "{}: {}\n",
            t!(l, "notif-started"),
            rfc3339(&n.starts_at)
        ));
        if let Some(e) = &n.ends_at {
            out.push_str(&format!("{}: {}\n", t!(l, "notif-ended"), rfc3339(e)));
        }
        if let Some(r) = &n.runbook {
            out.push_str(&format!("{}: {r}\n", t!(l, "notif-runbook")));
        }
    }
    out
}

/// Markdown for DingTalk and WeCom (they render a small subset: headings, bold, links).
pub(crate) fn markdown(ns: &[Notification]) -> String {
    let mut out = String::new();
    for n in ns {
        out.push_str(&format!("### {}\n", n.title()));
        if !n.summary.is_empty() {
            out.push_str(&format!("**{}**\n\n", n.summary));
        }
        if !n.description.is_empty() {
            out.push_str(&format!("{}\n\n", n.description));
        }
        for (k, v) in n.labels() {
            out.push_str(&format!("- {k}: {v}\n"));
        }
        let l = n.lang;
        out.push_str(&format!(
            "- {}: {}\n",
            t!(l, "notif-started"),
            rfc3339(&n.starts_at)
        ));
        if let Some(e) = &n.ends_at {
            out.push_str(&format!("- {}: {}\n", t!(l, "notif-ended"), rfc3339(e)));
        }
        if let Some(r) = &n.runbook {
            out.push_str(&format!("\n[{}]({r})\n", t!(l, "notif-runbook")));
        }
        out.push('\n');
    }
    out
}

/// The title of a batch: the first alert's title, with a count when there are more.
pub(crate) fn batch_title(ns: &[Notification]) -> String {
    match ns {
        [] => "coffer".into(),
        [one] => one.title(),
        [first, rest @ ..] => t!(
            first.lang,
            "notif-more",
            title = first.title(),
            n = rest.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_label_sensitive() {
        let mut l = BTreeMap::new();
        l.insert("alertname".to_string(), "A".to_string());
        let a = fingerprint(&l);
        assert_eq!(a.len(), 16);
        assert_eq!(a, fingerprint(&l));
        l.insert("backup_job".to_string(), "x".to_string());
        assert_ne!(a, fingerprint(&l));
    }

    #[test]
    fn test_notification_names_itself() {
        let n = test_notification(Severity::High, Lang::En);
        assert!(n.test);
        assert_eq!(n.job(), Some("coffer-test"));
        assert!(n.title().starts_with("[TEST] [FIRING] high: CofferTest"));
        assert_eq!(n.labels()["severity"], "high");
        assert!(plain_text(&[n]).contains("backup_job=coffer-test"));
    }
}
