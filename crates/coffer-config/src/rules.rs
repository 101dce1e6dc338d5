//! `[[rule]]` and `[alerting]`: when coffer raises an alert and how often it tells people.
//! Parsed and checked here (names, severities, channels, durations, and each `when`
//! expression compiled as CEL with every variable it reads looked up in [`FIELDS`]); the
//! rules run in `coffer-alerts`.
//!
//! ```toml
//! [alerting]
//! group_wait = "0s"               # first notification of a group: at once
//! group_interval = "1m"           # further changes in a group: batched this long
//! repeat_interval = { critical = "5m", high = "15m", medium = "1h", low = "24h" }
//!
//! [[rule]]
//! name = "db-backup-failed"
//! when = 'status == "FAILED" && source_type == "postgres"'
//! for = "0s"
//! severity = "critical"
//! channels = ["ops-mail"]
//! labels = { team = "dba" }
//! summary = "Backup {{ backup_job }} failed: {{ error }}"
//!
//! [[rule]]                        # a built-in rule, overridden
//! name = "BackupSlow"
//! severity = "low"
//! channels = ["ops-chat"]
//! ```
//!
//! A `[[rule]]` named like a built-in rule ([`BUILTIN_RULES`]) and without `when` changes
//! that rule (`enabled`, `for`, `severity`, `channels`, `labels`, annotations); any other
//! `[[rule]]` is a user rule and needs `when`.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use crate::alerts::Severity;
use crate::{Config, Span};

/// One `[[rule]]`.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name; becomes the alert's `alertname` label.
    pub name: String,
    /// A CEL expression over the fields of [`FIELDS`], evaluated for every job; the alert
    /// is active for each job where it is true. Required unless `name` is a built-in rule.
    pub when: Option<String>,
    /// How long the condition must hold before the alert fires (default 0s).
    #[serde(rename = "for")]
    pub hold: Option<Span>,
    /// `critical`, `high`, `medium` or `low` (user rules: default `high`).
    pub severity: Option<String>,
    /// Channels that get this rule's alerts (each still filtered by its `min_severity`);
    /// empty: every channel.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Extra labels (part of the alert's identity).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// One line; `{{ field }}` is replaced by the field's value.
    pub summary: Option<String>,
    /// Details, templated like `summary`.
    pub description: Option<String>,
    /// A link to what to do, templated like `summary`.
    pub runbook: Option<String>,
    /// `false` turns a rule (a built-in one, typically) off.
    pub enabled: Option<bool>,
}

impl RuleConfig {
    /// The severity, when it is set and valid.
    pub fn severity(&self) -> Option<Severity> {
        self.severity.as_deref().and_then(Severity::parse)
    }

    /// Whether the rule is on (default: yes).
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
}

/// Repeat interval per severity: how long an unchanged, unacknowledged alert waits before
/// it is sent again. Defaults follow the response times users asked for.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatIntervals {
    /// Default 5m.
    pub critical: Span,
    /// Default 15m.
    pub high: Span,
    /// Default 1h.
    pub medium: Span,
    /// Default 24h.
    pub low: Span,
}

impl Default for RepeatIntervals {
    fn default() -> Self {
        let m = |n: u64| Span(std::time::Duration::from_secs(n * 60));
        RepeatIntervals {
            critical: m(5),
            high: m(15),
            medium: m(60),
            low: m(24 * 60),
        }
    }
}

impl RepeatIntervals {
    /// The interval for `s`.
    pub fn of(&self, s: Severity) -> Span {
        match s {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
        }
    }
}

/// `[alerting]`.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// `false` stops rule evaluation altogether (default on).
    pub enabled: bool,
    /// How long the first alert of a new group waits for others to join it (default 0s:
    /// a failure is sent at once).
    pub group_wait: Span,
    /// How long later changes in a group are batched (default 1m).
    pub group_interval: Span,
    /// Labels whose values split alerts into groups (default `["alertname"]`: one message
    /// for fifty jobs failing together).
    pub group_by: Vec<String>,
    /// Per severity.
    pub repeat_interval: RepeatIntervals,
    /// `alertmanager` channels: how often active alerts are pushed again (Alertmanager
    /// forgets an alert that is not re-sent; default 1m).
    pub resend_interval: Span,
    /// How often rules are evaluated without an event (default 10s; a finished run or a
    /// storage refresh evaluates at once).
    pub evaluation_interval: Span,
    /// The overdue rule's grace for a job without `rpo`: the newest good backup may be two
    /// schedule intervals plus this old (default 10m).
    pub overdue_grace: Span,
    /// How long the scheduler may go without a tick before `SchedulerDown` (default 1m).
    pub heartbeat_timeout: Span,
    /// How long resolved alerts stay listed (default 24h).
    pub keep_resolved: Span,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        let s = |n: u64| Span(std::time::Duration::from_secs(n));
        AlertingConfig {
            enabled: true,
            group_wait: s(0),
            group_interval: s(60),
            group_by: vec!["alertname".into()],
            repeat_interval: RepeatIntervals::default(),
            resend_interval: s(60),
            evaluation_interval: s(10),
            overdue_grace: s(600),
            heartbeat_timeout: s(60),
            keep_resolved: s(86_400),
        }
    }
}

/// The type of a rule field as CEL sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `string`.
    String,
    /// `int` (64-bit).
    Int,
    /// `double`.
    Double,
    /// `bool`.
    Bool,
    /// `list(string)`.
    StringList,
}

impl FieldType {
    /// CEL's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Int => "int",
            FieldType::Double => "double",
            FieldType::Bool => "bool",
            FieldType::StringList => "list(string)",
        }
    }
}

/// Every field a `when` expression and a template may use: name, type, meaning. Rules are
/// evaluated once per job; "the run" is the job's newest finished backup run.
pub const FIELDS: &[(&str, FieldType, &str)] = &[
    ("backup_job", FieldType::String, "the job's name"),
    ("run_id", FieldType::String, "the run's id (\"\" when the job has not run)"),
    ("source", FieldType::String, "the job's source names, comma-separated"),
    ("source_type", FieldType::String, "the type of the job's first source (postgres, mariadb, redis, files, command, ...)"),
    ("source_types", FieldType::StringList, "the types of all of the job's sources"),
    ("repository", FieldType::String, "the job's repository"),
    ("status", FieldType::String, "the run's status: SUCCESS, WARNING, FAILED, PAUSED (\"\" when none)"),
    ("error", FieldType::String, "the run's first error (\"\" when none)"),
    ("duration_seconds", FieldType::Double, "the run's duration"),
    ("source_bytes", FieldType::Int, "bytes read from the sources by the run"),
    ("stored_bytes", FieldType::Int, "new bytes the run added to the repository"),
    ("files", FieldType::Int, "files (or streams) the run saved"),
    ("compression_ratio", FieldType::Double, "source_bytes / stored_bytes of the run (0 when unknown)"),
    ("backup_age_seconds", FieldType::Double, "age of the newest SUCCESS or WARNING run (since coffer first saw the job when there is none)"),
    ("rpo_seconds", FieldType::Double, "the job's rpo; without one, two schedule intervals plus overdue_grace (0: no schedule, no rpo)"),
    ("storage_ratio", FieldType::Double, "the repository's used share of its capacity or quota, 0..1 (0 when unknown)"),
    ("consecutive_failures", FieldType::Int, "FAILED runs since the last good one"),
    ("running_seconds", FieldType::Double, "how long the job's current run has been running (0 when idle)"),
    ("max_runtime_seconds", FieldType::Double, "the job's max_runtime"),
    ("median_duration_seconds", FieldType::Double, "median duration of the job's last 10 good runs before the run (0 with fewer than 3)"),
    ("median_compression_ratio", FieldType::Double, "median compression ratio of those runs (0 with fewer than 3)"),
    ("paused", FieldType::Bool, "whether the job is paused"),
    ("verify_status", FieldType::String, "status of the repository's last verify run (\"\" when none)"),
    ("verify_problems", FieldType::Int, "problems that verify found"),
];

/// The built-in rules, by name, with their default severity and meaning.
pub const BUILTIN_RULES: &[(&str, &str, &str)] = &[
    (
        "BackupFailed",
        "high; critical from 2 consecutive failures",
        "the job's newest run FAILED",
    ),
    (
        "BackupOverdue",
        "critical",
        "the newest good backup is older than rpo_seconds (dead-man's switch)",
    ),
    (
        "BackupStuck",
        "high",
        "a run has been running longer than max_runtime",
    ),
    (
        "BackupSlow",
        "medium",
        "the run took more than twice the median of the last 10 good runs",
    ),
    (
        "CompressionRatioLow",
        "low",
        "the run's compression ratio is below half the median of the last 10 good runs",
    ),
    (
        "StorageThreshold",
        "medium at low, high at high, critical at critical",
        "a repository is above a storage threshold",
    ),
    (
        "VerifyFailed",
        "critical",
        "the repository's last verify found damage",
    ),
    (
        "ChannelFailing",
        "high",
        "a notification channel failed to deliver after its retries",
    ),
    (
        "SchedulerDown",
        "critical",
        "the scheduler has not ticked within heartbeat_timeout",
    ),
    (
        "DrillFailed",
        "high",
        "a scenario's newest restore drill failed (a step or a check of the restored data)",
    ),
    (
        "DrillTargetMissed",
        "medium",
        "a scenario's newest drill passed its checks but missed its RTO or RPO",
    ),
    (
        "DrillOverdue",
        "medium",
        "a scenario's newest passed drill is older than [dr] drill_max_age (35 days)",
    ),
];

/// Whether `name` is a built-in rule.
pub fn is_builtin(name: &str) -> bool {
    BUILTIN_RULES.iter().any(|(n, _, _)| *n == name)
}

/// Compiles a `when` expression and checks the variables it reads.
pub fn compile_when(expr: &str) -> Result<cel::Program, String> {
    let p = cel::Program::compile(expr).map_err(|e| format!("not a valid CEL expression: {e}"))?;
    let unknown: Vec<String> = p
        .references()
        .variables()
        .into_iter()
        .filter(|v| !FIELDS.iter().any(|(f, _, _)| f == v))
        .map(String::from)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown field(s) {} (fields: {})",
            unknown.join(", "),
            FIELDS
                .iter()
                .map(|(f, _, _)| *f)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(p)
}

/// The `{{ name }}` placeholders of a template that are not fields or labels.
pub fn template_unknowns(template: &str, labels: &BTreeMap<String, String>) -> Vec<String> {
    template_names(template)
        .into_iter()
        .filter(|n| {
            !FIELDS.iter().any(|(f, _, _)| f == n)
                && !labels.contains_key(n)
                && !["alertname", "severity"].contains(&n.as_str())
        })
        .collect()
}

/// The names between `{{` and `}}`, trimmed.
pub fn template_names(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        out.push(after[..j].trim().to_string());
        rest = &after[j + 2..];
    }
    out
}

/// Checks `[[rule]]` and `[alerting]`.
pub(crate) fn validate(cfg: &Config, errors: &mut Vec<String>) {
    let a = &cfg.alerting;
    for (key, span) in [
        ("group_interval", a.group_interval),
        ("resend_interval", a.resend_interval),
        ("evaluation_interval", a.evaluation_interval),
        ("heartbeat_timeout", a.heartbeat_timeout),
    ] {
        if span.secs() == 0 {
            errors.push(format!("[alerting]: key `{key}` must be longer than 0s"));
        }
    }
    for s in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ] {
        if a.repeat_interval.of(s).secs() == 0 {
            errors.push(format!(
                "[alerting]: repeat_interval.{s} must be longer than 0s"
            ));
        }
    }
    if a.group_by.is_empty() {
        errors.push("[alerting]: key `group_by` lists no label (use [\"alertname\"])".into());
    }
    let mut seen = HashSet::new();
    for r in &cfg.rule {
        let at = format!("{}: rule {:?}", cfg.line_of("name", &r.name), r.name);
        if !seen.insert(&r.name) {
            errors.push(format!("{at} is declared twice"));
        }
        if r.name.is_empty()
            || r.name
                .contains(|ch: char| !(ch.is_ascii_alphanumeric() || "-_.".contains(ch)))
        {
            errors.push(format!(
                "{at}: the name may hold only letters, digits, '-', '_' and '.'"
            ));
        }
        if let Some(s) = &r.severity {
            if Severity::parse(s).is_none() {
                errors.push(format!(
                    "{at}: key `severity`: {s:?} is not one of critical, high, medium, low"
                ));
            }
        }
        for c in &r.channels {
            if !cfg.declared("channel", c) {
                errors.push(format!(
                    "{at}: key `channels`: no [[channel]] is named {c:?}"
                ));
            }
        }
        for k in r.labels.keys() {
            if [
                "alertname",
                "severity",
                "backup_job",
                "repository",
                "channel",
            ]
            .contains(&k.as_str())
            {
                errors.push(format!(
                    "{at}: key `labels`: {k:?} is set by coffer and cannot be given"
                ));
            }
        }
        match (&r.when, is_builtin(&r.name)) {
            (Some(_), true) => errors.push(format!(
                "{at}: {:?} is a built-in rule: leave out `when` to change it, or give your rule another name",
                r.name
            )),
            (None, false) => errors.push(format!(
                "{at}: key `when` is required (a CEL expression such as 'status == \"FAILED\"'; built-in rules: {})",
                BUILTIN_RULES.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ")
            )),
            (Some(w), false) => {
                if let Err(e) = compile_when(w) {
                    errors.push(format!("{at}: key `when`: {e}"));
                }
            }
            (None, true) => {}
        }
        for (key, t) in [
            ("summary", &r.summary),
            ("description", &r.description),
            ("runbook", &r.runbook),
        ] {
            if let Some(t) = t {
                let unknown = template_unknowns(t, &r.labels);
                if !unknown.is_empty() {
                    errors.push(format!(
                        "{at}: key `{key}`: unknown field(s) in {{{{ }}}}: {}",
                        unknown.join(", ")
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_rules_and_defaults() {
        let cfg = parse(
            r#"
[[channel]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/x"

[alerting]
group_interval = "30s"
repeat_interval = { high = "10m" }

[[rule]]
name = "db-backup-failed"
when = 'status == "FAILED" && source_type == "postgres"'
for = "30s"
severity = "critical"
channels = ["hook"]
summary = "Backup {{ backup_job }} failed: {{ error }}"

[[rule]]
name = "BackupSlow"
enabled = false
"#,
        )
        .unwrap();
        assert_eq!(cfg.rule.len(), 2);
        assert_eq!(cfg.alerting.group_interval.secs(), 30);
        assert_eq!(cfg.alerting.repeat_interval.high.secs(), 600);
        assert_eq!(cfg.alerting.repeat_interval.critical.secs(), 300);
        assert_eq!(cfg.alerting.group_wait.secs(), 0);
        assert_eq!(cfg.rule[0].hold.unwrap().secs(), 30);
        assert!(!cfg.rule[1].enabled());
    }

    #[test]
    fn reports_rule_mistakes_with_lines() {
        let e = parse(
            r#"[[rule]]
name = "a"
when = 'status == '

[[rule]]
name = "b"
when = 'stauts == "FAILED"'
severity = "urgent"
channels = ["nowhere"]
summary = "{{ backup_jbo }}"

[[rule]]
name = "BackupFailed"
when = 'true'

[[rule]]
name = "c"
"#,
        )
        .unwrap_err();
        for want in [
            "line 2: rule \"a\": key `when`: not a valid CEL expression",
            "line 6: rule \"b\": key `when`: unknown field(s) stauts",
            "rule \"b\": key `severity`: \"urgent\"",
            "rule \"b\": key `channels`: no [[channel]] is named \"nowhere\"",
            "rule \"b\": key `summary`: unknown field(s) in {{ }}: backup_jbo",
            "rule \"BackupFailed\": \"BackupFailed\" is a built-in rule",
            "rule \"c\": key `when` is required",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn the_docs_table_lists_every_field_and_builtin_rule() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/alerting.md"),
        )
        .unwrap();
        for (name, t, meaning) in super::FIELDS {
            let row = format!("| `{name}` | {} | {meaning} |", t.as_str());
            assert!(doc.contains(&row), "docs/alerting.md lacks the row {row:?}");
        }
        for (name, _, _) in super::BUILTIN_RULES {
            assert!(
                doc.contains(&format!("| `{name}` |")),
                "docs/alerting.md lacks {name}"
            );
        }
    }
}
