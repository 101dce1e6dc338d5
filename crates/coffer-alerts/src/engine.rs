//! The alert lifecycle, as Prometheus and Alertmanager define it, for one process:
//!
//! - **Identity**: an alert is its rule plus its labels (severity excluded, so that an
//!   escalation from high to critical is the same alert, announced again).
//! - **States**: a hit starts *pending*; it *fires* once its condition has held for the
//!   rule's `for`; it is *resolved* at the first evaluation without the hit (a pending alert
//!   that stops holding just disappears: the blip is never sent).
//! - **Suppression**: an active silence whose matchers all match, or an inhibition (a
//!   critical `StorageThreshold` on a repository mutes `BackupFailed` for "no space" errors
//!   there; `SchedulerDown` mutes `BackupOverdue`), keeps a firing alert from being sent.
//! - **Due**: per channel, a firing alert is due when the channel never got it, when its
//!   severity changed, or when its severity's repeat interval has passed and nobody
//!   acknowledged it (`alertmanager` channels: every `resend_interval`, as that API wants).
//!   A resolved alert is due, once, on every channel that got it firing; silences and acks
//!   do not stop the resolved notice.
//! - **Grouping**: due alerts of one channel are batched by the `group_by` labels. A group
//!   is sent when `group_wait` has passed since it first had something due and
//!   `group_interval` since its last send.
//!
//! The engine is pure state: it is told the time, the hits, the silences and the acks, and
//! answers with batches to send; [`crate::Alerter`] does the I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use coffer_catalog::{Ack, AlertRow, Matcher, Silence};
use coffer_config::rules::AlertingConfig;
use serde::{Deserialize, Serialize};

use coffer_i18n::Lang;

use crate::rules::Hit;
use crate::{fingerprint, AlertStatus, Notification, Severity};

/// Alerts of one rule whose labels include these: the part of the alert space an
/// evaluation could not decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The rule (alertname).
    pub rule: String,
    /// Labels the alert must carry with these values.
    pub labels: BTreeMap<String, String>,
}

impl Scope {
    /// Whether `a` lies in the scope.
    pub fn covers(&self, a: &Alert) -> bool {
        a.rule == self.rule && self.labels.iter().all(|(k, v)| a.labels.get(k) == Some(v))
    }
}

/// Where an alert is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// Active.
    Firing,
    /// Over.
    Resolved,
}

impl AlertState {
    /// `pending`, `firing`, `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// What a channel was last sent about an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    /// When.
    pub at: DateTime<Utc>,
    /// At which severity.
    pub severity: Severity,
    /// Whether that was the resolved notice.
    pub resolved: bool,
}

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Fingerprint of the rule and labels.
    pub id: String,
    /// The rule (`alertname`).
    pub rule: String,
    /// Pending, firing or resolved.
    pub state: AlertState,
    /// Current severity.
    pub severity: Severity,
    /// Identity labels, without `alertname` and `severity`.
    pub labels: BTreeMap<String, String>,
    /// One line.
    pub summary: String,
    /// Details.
    pub description: String,
    /// The summary and description in other languages (by tag, `zh-CN`), for channels that
    /// speak them; English is `summary` and `description`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub translations: BTreeMap<String, Texts>,
    /// What to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    /// Channels the rule names (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// The failing run's error, for inhibition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Since when the condition holds.
    pub active_since: DateTime<Utc>,
    /// Since when it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_since: Option<DateTime<Utc>>,
    /// When it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// The rule's `for`, in seconds.
    pub hold_seconds: u64,
    /// Per channel, the last notification sent.
    #[serde(default)]
    pub sent: BTreeMap<String, Sent>,
    /// Why it is not being sent (a silence's id, or an inhibition), as of the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
    /// Who acknowledged it, as of the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
}

impl Alert {
    /// Labels with `alertname` and `severity`, as silences and receivers see them.
    pub fn all_labels(&self) -> BTreeMap<String, String> {
        let mut l = self.labels.clone();
        l.insert("alertname".into(), self.rule.clone());
        l.insert("severity".into(), self.severity.as_str().into());
        l
    }

    /// The notification a channel speaking `lang` gets for it now.
    pub fn notification(&self, push_until: Option<DateTime<Utc>>, lang: Lang) -> Notification {
        let resolved = self.state == AlertState::Resolved;
        let (summary, description) = match self.translations.get(lang.tag()) {
            Some(t) => (t.summary.clone(), t.description.clone()),
            None => (self.summary.clone(), self.description.clone()),
        };
        Notification {
            alertname: self.rule.clone(),
            severity: self.severity,
            status: if resolved {
                AlertStatus::Resolved
            } else {
                AlertStatus::Firing
            },
            labels: self.labels.clone(),
            summary,
            description,
            runbook: self.runbook.clone(),
            starts_at: self.firing_since.unwrap_or(self.active_since),
            ends_at: if resolved {
                self.resolved_at
            } else {
                push_until
            },
            fingerprint: self.id.clone(),
            generator_url: None,
            test: false,
            lang,
        }
    }
}

/// An alert's texts in one language.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Texts {
    /// One line.
    pub summary: String,
    /// Details.
    pub description: String,
}

/// What the engine needs to know of a channel.
#[derive(Clone, Debug)]
pub struct ChannelInfo {
    /// Its name.
    pub name: String,
    /// Its `min_severity`.
    pub min_severity: Severity,
    /// An `alertmanager` push channel: re-sent every `resend_interval`, not grouped.
    pub push: bool,
    /// The language of its texts.
    pub lang: Lang,
}

/// Notifications for one channel, sent as one message.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The channel.
    pub channel: String,
    /// The group key (`alertname=BackupFailed`).
    pub group: String,
    /// The alerts in it, with what is announced.
    pub alerts: Vec<(String, AlertStatus)>,
    /// What the channel gets.
    pub notifications: Vec<Notification>,
}

#[derive(Default, Clone, Copy)]
struct GroupTimer {
    last_flush: Option<DateTime<Utc>>,
    waiting_since: Option<DateTime<Utc>>,
}

/// The alert state of one coffer (daemon or `coffer alerts check`).
pub struct Engine {
    settings: AlertingConfig,
    alerts: BTreeMap<String, Alert>,
    dirty: BTreeSet<String>,
    deleted: Vec<String>,
    groups: HashMap<(String, String), GroupTimer>,
}

/// Errors that contain "no space" in some form: what a full repository causes.
fn is_no_space(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    [
        "no space",
        "enospc",
        "disk full",
        "quota",
        "storage is full",
        "insufficient storage",
    ]
    .iter()
    .any(|p| e.contains(p))
}

/// A matcher with its regular expression compiled once, not once per alert.
struct Compiled<'a> {
    m: &'a Matcher,
    re: Option<regex::Regex>,
}

impl<'a> Compiled<'a> {
    fn new(m: &'a Matcher) -> Compiled<'a> {
        let re = m
            .is_regex
            .then(|| regex::Regex::new(&format!("^(?:{})$", m.value)).ok())
            .flatten();
        Compiled { m, re }
    }

    /// Whether it matches a label set (a missing label is the empty string, as in
    /// Alertmanager; a regular expression that does not compile matches nothing).
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.m.name).map(String::as_str).unwrap_or("");
        let hit = match (&self.re, self.m.is_regex) {
            (Some(r), _) => r.is_match(v),
            (None, true) => false,
            (None, false) => v == self.m.value,
        };
        hit == self.m.is_equal
    }
}

/// Whether a matcher matches a label set.
pub fn matches(m: &Matcher, labels: &BTreeMap<String, String>) -> bool {
    Compiled::new(m).matches(labels)
}

/// Parses `name=value`, `name!=value`, `name=~regex`, `name!~regex`.
pub fn parse_matcher(s: &str) -> Result<Matcher, String> {
    let bad =
        || format!("matcher {s:?}: write name=value, name!=value, name=~regex or name!~regex");
    let (name, op, value) = ["!~", "=~", "!=", "="]
        .iter()
        .find_map(|op| s.split_once(op).map(|(n, v)| (n, *op, v)))
        .ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad());
    }
    let value = value.trim().trim_matches('"').to_string();
    let is_regex = op.ends_with('~');
    if is_regex {
        regex::Regex::new(&format!("^(?:{value})$"))
            .map_err(|e| format!("matcher {s:?}: bad regular expression: {e}"))?;
    }
    Ok(Matcher {
        name: name.to_string(),
        value,
        is_regex,
        is_equal: op.starts_with('='),
    })
}

/// A new silence, checked: at least one matcher, a comment, an end after its start and
/// in the future. Its id is random (UUID-shaped).
pub fn new_silence(
    matchers: Vec<Matcher>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    created_by: &str,
    comment: &str,
    now: DateTime<Utc>,
) -> Result<Silence, String> {
    if matchers.is_empty() {
        return Err("a silence needs at least one matcher (for example backup_job=nightly)".into());
    }
    if comment.trim().is_empty() {
        return Err(
            "a silence needs a comment saying why (who will know in a week otherwise?)".into(),
        );
    }
    if ends_at <= starts_at || ends_at <= now {
        return Err("a silence must end after it starts, and in the future".into());
    }
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    Ok(Silence {
        id: format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        ),
        matchers,
        starts_at,
        ends_at,
        created_by: created_by.to_string(),
        comment: comment.trim().to_string(),
        created_at: now,
    })
}

impl Engine {
    /// An engine holding the stored alerts.
    pub fn load(settings: &AlertingConfig, rows: &[AlertRow]) -> Engine {
        let mut alerts = BTreeMap::new();
        let mut deleted = Vec::new();
        for r in rows {
            match serde_json::from_str::<Alert>(&r.body) {
                Ok(a) => {
                    alerts.insert(a.id.clone(), a);
                }
                Err(e) => {
                    tracing::warn!(alert = %r.id, error = %e, "stored alert unreadable: dropped");
                    deleted.push(r.id.clone());
                }
            }
        }
        Engine {
            settings: settings.clone(),
            alerts,
            dirty: BTreeSet::new(),
            deleted,
            groups: HashMap::new(),
        }
    }

    /// Every alert, by id.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// Applies one evaluation's hits; returns the ids that resolved. An alert in one of the
    /// `unknown` scopes (its facts are not measured yet) keeps its state: unknown is not
    /// false, so a restarted daemon neither resolves nor re-announces what still holds.
    pub fn update(&mut self, hits: Vec<Hit>, unknown: &[Scope], now: DateTime<Utc>) -> Vec<String> {
        let mut seen = BTreeSet::new();
        for hit in hits {
            let mut all = hit.labels.clone();
            all.insert("alertname".into(), hit.rule.clone());
            let id = fingerprint(&all);
            if !seen.insert(id.clone()) {
                continue;
            }
            let hold = hit.hold.as_secs();
            match self.alerts.get_mut(&id) {
                Some(a) if a.state != AlertState::Resolved => {
                    let before = a.clone();
                    a.severity = hit.severity;
                    a.summary = hit.summary;
                    a.description = hit.description;
                    a.translations = hit.translations;
                    a.runbook = hit.runbook;
                    a.channels = hit.channels;
                    a.error = hit.error;
                    a.hold_seconds = hold;
                    if a.state == AlertState::Pending
                        && (now - a.active_since).num_seconds() >= hold as i64
                    {
                        a.state = AlertState::Firing;
                        a.firing_since = Some(now);
                    }
                    if *a != before {
                        self.dirty.insert(id);
                    }
                }
                _ => {
                    let firing = hold == 0;
                    let a = Alert {
                        id: id.clone(),
                        rule: hit.rule,
                        state: if firing {
                            AlertState::Firing
                        } else {
                            AlertState::Pending
                        },
                        severity: hit.severity,
                        labels: hit.labels,
                        summary: hit.summary,
                        description: hit.description,
                        translations: hit.translations,
                        runbook: hit.runbook,
                        channels: hit.channels,
                        error: hit.error,
                        active_since: now,
                        firing_since: firing.then_some(now),
                        resolved_at: None,
                        hold_seconds: hold,
                        sent: BTreeMap::new(),
                        suppressed_by: None,
                        ack: None,
                    };
                    self.alerts.insert(id.clone(), a);
                    self.dirty.insert(id);
                }
            }
        }
        let mut resolved = Vec::new();
        let keep = chrono::Duration::seconds(self.settings.keep_resolved.secs() as i64);
        let mut gone = Vec::new();
        for (id, a) in self.alerts.iter_mut() {
            if seen.contains(id) || unknown.iter().any(|u| u.covers(a)) {
                continue;
            }
            match a.state {
                AlertState::Pending => gone.push(id.clone()),
                AlertState::Firing => {
                    a.state = AlertState::Resolved;
                    a.resolved_at = Some(now);
                    a.ack = None;
                    resolved.push(id.clone());
                    self.dirty.insert(id.clone());
                }
                AlertState::Resolved => {
                    if a.resolved_at.is_none_or(|t| now - t > keep) {
                        gone.push(id.clone());
                    }
                }
            }
        }
        for id in gone {
            self.alerts.remove(&id);
            self.dirty.remove(&id);
            self.deleted.push(id);
        }
        resolved
    }

    /// Marks silenced, inhibited and acknowledged alerts.
    pub fn annotate(
        &mut self,
        silences: &[Silence],
        acks: &HashMap<String, Ack>,
        now: DateTime<Utc>,
    ) {
        let full_repos: BTreeSet<String> = self
            .alerts
            .values()
            .filter(|a| {
                a.state == AlertState::Firing
                    && a.rule == "StorageThreshold"
                    && a.severity == Severity::Critical
            })
            .filter_map(|a| a.labels.get("repository").cloned())
            .collect();
        let scheduler_down = self
            .alerts
            .values()
            .any(|a| a.state == AlertState::Firing && a.rule == "SchedulerDown");
        let active: Vec<(&Silence, Vec<Compiled>)> = silences
            .iter()
            .filter(|s| s.active(now))
            .map(|s| (s, s.matchers.iter().map(Compiled::new).collect()))
            .collect();
        for (id, a) in self.alerts.iter_mut() {
            let labels = a.all_labels();
            let silence = active
                .iter()
                .find(|(_, ms)| ms.iter().all(|m| m.matches(&labels)))
                .map(|(s, _)| format!("silence {}", s.id));
            let inhibited = if a.rule == "BackupFailed"
                && is_no_space(&a.error)
                && a.labels
                    .get("repository")
                    .is_some_and(|r| full_repos.contains(r))
            {
                Some("inhibited by StorageThreshold (critical) on the same repository".to_string())
            } else if a.rule == "BackupOverdue" && scheduler_down {
                Some("inhibited by SchedulerDown".to_string())
            } else {
                None
            };
            let suppressed = silence.or(inhibited);
            let ack = if a.state == AlertState::Firing {
                acks.get(id).cloned()
            } else {
                None
            };
            if a.suppressed_by != suppressed || a.ack != ack {
                a.suppressed_by = suppressed;
                a.ack = ack;
                self.dirty.insert(id.clone());
            }
        }
    }

    fn eligible(a: &Alert, ch: &ChannelInfo) -> bool {
        a.severity >= ch.min_severity
            && (a.channels.is_empty() || a.channels.contains(&ch.name))
            // A failing channel is not told that it fails.
            && !(a.rule == "ChannelFailing" && a.labels.get("channel") == Some(&ch.name))
    }

    fn group_key(&self, a: &Alert) -> String {
        let labels = a.all_labels();
        self.settings
            .group_by
            .iter()
            .map(|k| format!("{k}={}", labels.get(k).map(String::as_str).unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The batches to send now. Sending them is the caller's; it reports each outcome with
    /// [`Engine::delivered`].
    pub fn plan(&mut self, channels: &[ChannelInfo], now: DateTime<Utc>) -> Vec<Batch> {
        let secs = |s: coffer_config::Span| chrono::Duration::seconds(s.secs() as i64);
        let mut out = Vec::new();
        for ch in channels {
            let mut due: BTreeMap<String, Vec<&Alert>> = BTreeMap::new();
            for a in self.alerts.values() {
                if !Self::eligible(a, ch) {
                    continue;
                }
                let sent = a.sent.get(&ch.name);
                let is_due = match a.state {
                    AlertState::Pending => false,
                    AlertState::Firing => {
                        a.suppressed_by.is_none()
                            && match sent {
                                None => true,
                                Some(s) if s.resolved => true,
                                Some(s) if s.severity != a.severity => true,
                                Some(s) if ch.push => {
                                    now - s.at >= secs(self.settings.resend_interval)
                                }
                                Some(s) => {
                                    a.ack.is_none()
                                        && now - s.at
                                            >= secs(self.settings.repeat_interval.of(a.severity))
                                }
                            }
                    }
                    AlertState::Resolved => sent.is_some_and(|s| !s.resolved),
                };
                if is_due {
                    due.entry(self.group_key(a)).or_default().push(a);
                }
            }
            for (group, alerts) in due {
                let timer = self
                    .groups
                    .entry((ch.name.clone(), group.clone()))
                    .or_default();
                let waiting = *timer.waiting_since.get_or_insert(now);
                let ready = ch.push
                    || (now - waiting >= secs(self.settings.group_wait)
                        && timer
                            .last_flush
                            .is_none_or(|t| now - t >= secs(self.settings.group_interval)));
                if !ready {
                    continue;
                }
                timer.last_flush = Some(now);
                timer.waiting_since = None;
                // Alertmanager forgets a firing alert whose endsAt passed: push it far
                // enough ahead to survive a missed resend or two.
                let push_until = ch
                    .push
                    .then(|| now + secs(self.settings.resend_interval) * 4);
                out.push(Batch {
                    channel: ch.name.clone(),
                    group,
                    alerts: alerts
                        .iter()
                        .map(|a| {
                            let st = if a.state == AlertState::Resolved {
                                AlertStatus::Resolved
                            } else {
                                AlertStatus::Firing
                            };
                            (a.id.clone(), st)
                        })
                        .collect(),
                    notifications: alerts
                        .iter()
                        .map(|a| a.notification(push_until, ch.lang))
                        .collect(),
                });
            }
        }
        out
    }

    /// Records a batch's outcome: delivered batches are not due again until their repeat;
    /// failed ones stay due and are retried when their group may send again.
    pub fn delivered(&mut self, batch: &Batch, ok: bool, now: DateTime<Utc>) {
        if !ok {
            return;
        }
        for (id, st) in &batch.alerts {
            if let Some(a) = self.alerts.get_mut(id) {
                a.sent.insert(
                    batch.channel.clone(),
                    Sent {
                        at: now,
                        severity: a.severity,
                        resolved: *st == AlertStatus::Resolved,
                    },
                );
                self.dirty.insert(id.clone());
            }
        }
    }

    /// The earliest time something could become due without a new hit: a pending alert
    /// reaching its `for`, a group allowed to send again. The caller wakes then.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        let pending = self
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Pending)
            .map(|a| a.active_since + chrono::Duration::seconds(a.hold_seconds as i64));
        let groups = self.groups.values().filter_map(|g| {
            g.waiting_since.map(|w| {
                let after_wait =
                    w + chrono::Duration::seconds(self.settings.group_wait.secs() as i64);
                let after_interval = g.last_flush.map(|t| {
                    t + chrono::Duration::seconds(self.settings.group_interval.secs() as i64)
                });
                after_interval.map_or(after_wait, |i| i.max(after_wait))
            })
        });
        pending.chain(groups).min()
    }

    /// Rows to write and ids to delete since the last call.
    pub fn take_changes(&mut self) -> (Vec<AlertRow>, Vec<String>) {
        let rows = std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|id| self.alerts.get(&id))
            .map(|a| AlertRow {
                id: a.id.clone(),
                rule: a.rule.clone(),
                state: a.state.as_str().into(),
                severity: a.severity.as_str().into(),
                body: serde_json::to_string(a).unwrap_or_else(|_| "{}".into()),
            })
            .collect();
        (rows, std::mem::take(&mut self.deleted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hit(rule: &str, job: &str, sev: Severity, hold: u64) -> Hit {
        Hit {
            rule: rule.into(),
            severity: sev,
            labels: BTreeMap::from([
                ("backup_job".into(), job.into()),
                ("repository".into(), "local".into()),
            ]),
            summary: format!("{rule} {job}"),
            description: String::new(),
            translations: BTreeMap::new(),
            runbook: None,
            hold: Duration::from_secs(hold),
            channels: vec![],
            error: "No space left on device (os error 28)".into(),
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn hook() -> Vec<ChannelInfo> {
        vec![ChannelInfo {
            name: "hook".into(),
            min_severity: Severity::Low,
            push: false,
            lang: Lang::En,
        }]
    }

    fn send_all(e: &mut Engine, now: DateTime<Utc>) -> Vec<Batch> {
        let b = e.plan(&hook(), now);
        for x in &b {
            e.delivered(x, true, now);
        }
        b
    }

    #[test]
    fn for_holds_back_a_blip_and_then_fires() {
        let mut e = Engine::load(&AlertingConfig::default(), &[]);
        e.update(vec![hit("R", "a", Severity::High, 30)], &[], t(0));
        assert!(send_all(&mut e, t(0)).is_empty(), "pending is not sent");
        e.update(vec![], &[], t(10));
        assert_eq!(e.alerts().count(), 0, "a blip shorter than `for` vanishes");
        e.update(vec![hit("R", "a", Severity::High, 30)], &[], t(20));
        assert_eq!(e.next_wake(), Some(t(50)));
        e.update(vec![hit("R", "a", Severity::High, 30)], &[], t(50));
        let b = send_all(&mut e, t(50));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].notifications[0].status, AlertStatus::Firing);
    }

    #[test]
    fn escalation_repeat_ack_silence_resolve() {
        let mut e = Engine::load(&AlertingConfig::default(), &[]);
        e.update(vec![hit("BackupFailed", "a", Severity::High, 0)], &[], t(0));
        assert_eq!(send_all(&mut e, t(0)).len(), 1);
        // Unchanged: nothing until the repeat interval (15m for high), and the group
        // interval keeps a second message back.
        e.update(
            vec![hit("BackupFailed", "a", Severity::High, 0)],
            &[],
            t(20),
        );
        assert!(send_all(&mut e, t(20)).is_empty());
        // Escalation is announced as soon as the group interval allows.
        e.update(
            vec![hit("BackupFailed", "a", Severity::Critical, 0)],
            &[],
            t(30),
        );
        assert!(
            send_all(&mut e, t(30)).is_empty(),
            "group_interval not over"
        );
        assert_eq!(e.next_wake(), Some(t(60)));
        let b = send_all(&mut e, t(60));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].notifications[0].severity, Severity::Critical);
        // Critical repeats after 5m...
        assert!(send_all(&mut e, t(60 + 299)).is_empty());
        assert_eq!(send_all(&mut e, t(60 + 300)).len(), 1);
        // ...unless acknowledged.
        let id = e.alerts().next().unwrap().id.clone();
        let acks = HashMap::from([(
            id.clone(),
            Ack {
                by: "ann".into(),
                at: t(500),
                comment: String::new(),
            },
        )]);
        e.annotate(&[], &acks, t(500));
        assert!(send_all(&mut e, t(2000)).is_empty(), "acked: no repeat");
        // A silence does not stop the resolved notice.
        let s = Silence {
            id: "s1".into(),
            matchers: vec![parse_matcher("backup_job=a").unwrap()],
            starts_at: t(0),
            ends_at: t(10_000),
            created_by: "ann".into(),
            comment: "x".into(),
            created_at: t(0),
        };
        e.annotate(&[s], &acks, t(2000));
        assert_eq!(
            e.alerts().next().unwrap().suppressed_by.as_deref(),
            Some("silence s1")
        );
        let resolved = e.update(vec![], &[], t(2100));
        assert_eq!(resolved, vec![id]);
        let b = send_all(&mut e, t(2100));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].notifications[0].status, AlertStatus::Resolved);
        assert!(
            send_all(&mut e, t(5000)).is_empty(),
            "resolved is sent once"
        );
    }

    #[test]
    fn unknown_is_not_false() {
        let mut e = Engine::load(&AlertingConfig::default(), &[]);
        let mut storage = hit("StorageThreshold", "", Severity::High, 0);
        storage.labels = BTreeMap::from([("repository".into(), "local".into())]);
        e.update(vec![storage], &[], t(0));
        assert_eq!(send_all(&mut e, t(0)).len(), 1);
        // Restarted, storage not measured yet: the alert stays firing and nothing is sent.
        let mut e = Engine::load(&AlertingConfig::default(), &e.take_changes().0);
        let scope = Scope {
            rule: "StorageThreshold".into(),
            labels: BTreeMap::from([("repository".into(), "local".into())]),
        };
        assert!(e
            .update(vec![], std::slice::from_ref(&scope), t(10))
            .is_empty());
        assert!(send_all(&mut e, t(10)).is_empty());
        assert_eq!(e.alerts().next().unwrap().state, AlertState::Firing);
        // Another repository's scope does not cover it; once measured and fine, it resolves.
        let other = Scope {
            labels: BTreeMap::from([("repository".into(), "offsite".into())]),
            ..scope
        };
        assert_eq!(e.update(vec![], &[other], t(20)).len(), 1);
    }

    #[test]
    fn grouping_and_inhibition() {
        let mut e = Engine::load(&AlertingConfig::default(), &[]);
        e.update(
            vec![
                hit("BackupFailed", "a", Severity::High, 0),
                hit("BackupFailed", "b", Severity::High, 0),
            ],
            &[],
            t(0),
        );
        let b = send_all(&mut e, t(0));
        assert_eq!(b.len(), 1, "one message for the group");
        assert_eq!(b[0].notifications.len(), 2);
        // A third job failing 10 s later waits for the group interval.
        e.update(
            vec![
                hit("BackupFailed", "a", Severity::High, 0),
                hit("BackupFailed", "b", Severity::High, 0),
                hit("BackupFailed", "c", Severity::High, 0),
            ],
            &[],
            t(10),
        );
        assert!(send_all(&mut e, t(10)).is_empty());
        assert_eq!(e.next_wake(), Some(t(60)));
        assert_eq!(send_all(&mut e, t(60))[0].notifications.len(), 1);

        // A full repository mutes "no space" failures there.
        let mut e = Engine::load(&AlertingConfig::default(), &[]);
        let mut storage = hit("StorageThreshold", "", Severity::Critical, 0);
        storage.labels = BTreeMap::from([("repository".into(), "local".into())]);
        e.update(
            vec![storage, hit("BackupFailed", "a", Severity::High, 0)],
            &[],
            t(0),
        );
        e.annotate(&[], &HashMap::new(), t(0));
        let b = send_all(&mut e, t(0));
        let names: Vec<&str> = b
            .iter()
            .flat_map(|b| b.notifications.iter().map(|n| n.alertname.as_str()))
            .collect();
        assert_eq!(names, vec!["StorageThreshold"]);
    }

    #[test]
    fn matchers() {
        let l = BTreeMap::from([("backup_job".to_string(), "db-main".to_string())]);
        assert!(matches(&parse_matcher("backup_job=db-main").unwrap(), &l));
        assert!(matches(&parse_matcher("backup_job=~db-.*").unwrap(), &l));
        assert!(!matches(&parse_matcher("backup_job!~db-.*").unwrap(), &l));
        assert!(matches(&parse_matcher("severity!=critical").unwrap(), &l));
        assert!(parse_matcher("nonsense").is_err());
        assert!(parse_matcher("a=~(").is_err());
    }
}
