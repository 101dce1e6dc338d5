//! The rules: the built-in ones (Rust functions over [`Facts`]) and the user's `[[rule]]`s
//! (CEL over the fields of `coffer_config::rules::FIELDS`, evaluated once per job). Each
//! evaluation turns the facts into [`Hit`]s, the alerts whose condition holds right now;
//! the [`crate::engine`] turns hits into an alert lifecycle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cel::{Context, Env, Program, Value};
use coffer_config::rules::{compile_when, FieldType, RuleConfig, FIELDS};
use coffer_config::Config;

use coffer_i18n::{t, Lang};

use crate::engine::{Scope, Texts};
use crate::facts::{Facts, JobFacts};
use crate::Severity;

/// An alert whose condition holds at this evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The rule (label `alertname`).
    pub rule: String,
    /// Its severity now.
    pub severity: Severity,
    /// Identity labels (`backup_job`, `repository`, `channel`, the rule's own labels).
    pub labels: BTreeMap<String, String>,
    /// One line.
    pub summary: String,
    /// Details.
    pub description: String,
    /// The texts in other languages, by tag (built-in rules; a user rule's are its own).
    pub translations: BTreeMap<String, Texts>,
    /// What to do.
    pub runbook: Option<String>,
    /// How long the condition must hold before the alert fires.
    pub hold: Duration,
    /// Channels it goes to (empty: all).
    pub channels: Vec<String>,
    /// The run's error, for inhibition (`no space` failures under a full repository).
    pub error: String,
}

/// What a config changes of a built-in rule.
#[derive(Clone, Debug, Default)]
struct Override {
    enabled: bool,
    hold: Duration,
    severity: Option<Severity>,
    channels: Vec<String>,
    labels: BTreeMap<String, String>,
    summary: Option<String>,
    description: Option<String>,
    runbook: Option<String>,
}

impl Override {
    fn from(r: Option<&RuleConfig>) -> Override {
        match r {
            None => Override {
                enabled: true,
                ..Override::default()
            },
            Some(r) => Override {
                enabled: r.enabled(),
                hold: r.hold.map(|s| s.0).unwrap_or_default(),
                severity: r.severity(),
                channels: r.channels.clone(),
                labels: r.labels.clone(),
                summary: r.summary.clone(),
                description: r.description.clone(),
                runbook: r.runbook.clone(),
            },
        }
    }
}

struct UserRule {
    cfg: RuleConfig,
    program: Program,
    severity: Severity,
    hold: Duration,
    /// Indices in `FIELDS` of the fields the expression reads: its memo key.
    reads: Vec<usize>,
}

/// A rule's answer for one combination of the values it reads.
type Answer = Result<Value, String>;

/// Rule answers by (rule, values read). CEL is pure, so an answer can be reused whenever a
/// rule sees the same values again: most jobs share their status and error, and this spares
/// the interpreter (and `matches`, which compiles its regular expression on every call).
#[derive(Default)]
struct Memo {
    answers: HashMap<(usize, String), Answer>,
}

const MEMO_LIMIT: usize = 200_000;

/// Every rule of a config, compiled.
pub struct Rules {
    builtin: BTreeMap<&'static str, Override>,
    user: Vec<UserRule>,
    env: Arc<Env>,
    heartbeat_timeout: Duration,
    memo: parking_lot::Mutex<Memo>,
}

/// A `when` that did not compile (config validation reports these first).
#[derive(Debug, thiserror::Error)]
#[error("rule {rule:?}: {message}")]
pub struct RuleError {
    /// The rule.
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

impl Rules {
    /// Compiles the built-in rules with the config's overrides and every user rule.
    pub fn new(cfg: &Config) -> Result<Rules, RuleError> {
        let mut builtin = BTreeMap::new();
        for (name, _, _) in coffer_config::rules::BUILTIN_RULES {
            let o = Override::from(
                cfg.rule
                    .iter()
                    .find(|r| r.name == *name && r.when.is_none()),
            );
            builtin.insert(*name, o);
        }
        let mut user = Vec::new();
        for r in cfg.rule.iter().filter(|r| r.when.is_some() && r.enabled()) {
            let program =
                compile_when(r.when.as_deref().unwrap_or_default()).map_err(|message| {
                    RuleError {
                        rule: r.name.clone(),
                        message,
                    }
                })?;
            let refs = program.references();
            let reads = FIELDS
                .iter()
                .enumerate()
                .filter(|(_, (f, _, _))| refs.has_variable(f))
                .map(|(i, _)| i)
                .collect();
            user.push(UserRule {
                reads,
                cfg: r.clone(),
                program,
                severity: r.severity().unwrap_or(Severity::High),
                hold: r.hold.map(|s| s.0).unwrap_or_default(),
            });
        }
        Ok(Rules {
            builtin,
            user,
            env: Arc::new(Env::stdlib()),
            heartbeat_timeout: cfg.alerting.heartbeat_timeout.0,
            memo: parking_lot::Mutex::new(Memo::default()),
        })
    }

    /// How many rules are on.
    pub fn len(&self) -> usize {
        self.builtin.values().filter(|o| o.enabled).count() + self.user.len()
    }

    /// Whether no rule is on.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every alert whose condition holds in `facts`. A user rule whose expression fails on
    /// a job (a type error, say) is reported in the second list instead of silently false.
    /// The third list holds what could not be decided because a fact is not measured yet
    /// (storage right after a daemon starts): those alerts keep their state.
    pub fn evaluate(&self, facts: &Facts) -> (Vec<Hit>, Vec<RuleError>, Vec<Scope>) {
        let mut hits = Vec::new();
        let mut errors = Vec::new();
        let mut unknown = Vec::new();
        // Each job's fields are built once, for the built-in rules and the user's alike.
        let all_fields: Vec<Vec<(&'static str, Value)>> =
            facts.jobs.iter().map(|j| fields(j, facts)).collect();
        self.builtin_hits(facts, &all_fields, &mut hits);
        for r in facts.repositories.iter().filter(|r| !r.storage_known) {
            unknown.push(Scope {
                rule: "StorageThreshold".into(),
                labels: BTreeMap::from([("repository".to_string(), r.name.clone())]),
            });
        }
        if !self.user.is_empty() {
            let storage_field = FIELDS.iter().position(|(f, _, _)| *f == "storage_ratio");
            let mut memo = self.memo.lock();
            if memo.answers.len() > MEMO_LIMIT {
                memo.answers.clear();
            }
            for (job, fields) in facts.jobs.iter().zip(&all_fields) {
                let storage_known = facts
                    .repositories
                    .iter()
                    .find(|r| r.name == job.repository)
                    .is_some_and(|r| r.storage_known);
                let mut ctx: Option<Context> = None;
                for (ri, r) in self.user.iter().enumerate() {
                    if !storage_known && storage_field.is_some_and(|i| r.reads.contains(&i)) {
                        unknown.push(Scope {
                            rule: r.cfg.name.clone(),
                            labels: BTreeMap::from([("backup_job".to_string(), job.name.clone())]),
                        });
                        continue;
                    }
                    let mut key = String::new();
                    for &i in &r.reads {
                        key.push_str(&key_text(&fields[i].1));
                        key.push('\u{1f}');
                    }
                    let answer = memo.answers.entry((ri, key)).or_insert_with(|| {
                        let ctx = ctx.get_or_insert_with(|| {
                            let mut c = Context::with_env(Arc::clone(&self.env));
                            for (name, v) in fields.iter() {
                                c.add_variable_from_value(*name, v.clone());
                            }
                            c
                        });
                        r.program.execute(ctx).map_err(|e| e.to_string())
                    });
                    match answer.clone() {
                        Ok(Value::Bool(true)) => {
                            let mut labels = r.cfg.labels.clone();
                            labels.insert("backup_job".into(), job.name.clone());
                            labels.insert("repository".into(), job.repository.clone());
                            let render = |t: &Option<String>| {
                                t.as_deref()
                                    .map(|t| render(t, fields, &labels))
                                    .unwrap_or_default()
                            };
                            let summary = match &r.cfg.summary {
                                Some(_) => render(&r.cfg.summary),
                                None => format!("{} ({})", r.cfg.name, job.name),
                            };
                            hits.push(Hit {
                                rule: r.cfg.name.clone(),
                                severity: r.severity,
                                summary,
                                description: render(&r.cfg.description),
                                translations: BTreeMap::new(),
                                runbook: r.cfg.runbook.as_ref().map(|_| render(&r.cfg.runbook)),
                                labels,
                                hold: r.hold,
                                channels: r.cfg.channels.clone(),
                                error: last_error(job),
                            });
                        }
                        Ok(Value::Bool(false)) => {}
                        Ok(other) => errors.push(RuleError {
                            rule: r.cfg.name.clone(),
                            message: format!(
                                "job {:?}: `when` gave {other:?}, not true or false",
                                job.name
                            ),
                        }),
                        Err(e) => errors.push(RuleError {
                            rule: r.cfg.name.clone(),
                            message: format!("job {:?}: {e}", job.name),
                        }),
                    }
                }
            }
        }
        (hits, errors, unknown)
    }

    fn builtin_hits(
        &self,
        facts: &Facts,
        all_fields: &[Vec<(&'static str, Value)>],
        hits: &mut Vec<Hit>,
    ) {
        let now = facts.now;
        // Each built-in rule's texts come from the message catalogs, once per language, so
        // that every channel gets them in its own; a config's own `summary` / `description`
        // template replaces them in every language.
        let mut push = |name: &'static str,
                        severity: Severity,
                        mut labels: BTreeMap<String, String>,
                        text: &dyn Fn(Lang) -> (String, String),
                        error: String,
                        fields: Option<&Vec<(&'static str, Value)>>| {
            let Some(o) = self.builtin.get(name).filter(|o| o.enabled) else {
                return;
            };
            for (k, v) in &o.labels {
                labels.insert(k.clone(), v.clone());
            }
            let none = Vec::new();
            let f = fields.unwrap_or(&none);
            let texts = |lang: Lang| {
                let (summary, description) = text(lang);
                Texts {
                    summary: o
                        .summary
                        .as_deref()
                        .map(|t| render(t, f, &labels))
                        .unwrap_or(summary),
                    description: o
                        .description
                        .as_deref()
                        .map(|t| render(t, f, &labels))
                        .unwrap_or(description),
                }
            };
            let en = texts(Lang::En);
            let translations = Lang::ALL
                .into_iter()
                .filter(|l| *l != Lang::En)
                .map(|l| (l.tag().to_string(), texts(l)))
                .collect();
            hits.push(Hit {
                rule: name.to_string(),
                severity: o.severity.unwrap_or(severity),
                summary: en.summary,
                description: en.description,
                translations,
                runbook: o.runbook.as_deref().map(|t| render(t, f, &labels)),
                labels,
                hold: o.hold,
                channels: o.channels.clone(),
                error,
            });
        };
        let job_labels = |j: &JobFacts| {
            BTreeMap::from([
                ("backup_job".to_string(), j.name.clone()),
                ("repository".to_string(), j.repository.clone()),
            ])
        };
        for (j, fields) in facts.jobs.iter().zip(all_fields) {
            let f = Some(fields);
            let job = j.name.as_str();
            if let Some(r) = j
                .last
                .as_ref()
                .filter(|r| r.status == coffer_catalog::Status::Failed)
            {
                let sev = if j.consecutive_failures >= 2 {
                    Severity::Critical
                } else {
                    Severity::High
                };
                let err = last_error(j);
                push(
                    "BackupFailed",
                    sev,
                    job_labels(j),
                    &|l| {
                        (
                            t!(
                                l,
                                "alert-backup-failed-summary",
                                job = job,
                                error = one_line(&err)
                            ),
                            format!(
                                "{}\n{err}",
                                t!(
                                    l,
                                    "alert-backup-failed-description",
                                    run = r.id.as_str(),
                                    job = job,
                                    repo = j.repository.as_str(),
                                    count = j.consecutive_failures
                                )
                            ),
                        )
                    },
                    err.clone(),
                    f,
                );
            }
            if let Some(rpo) = j.rpo_seconds.filter(|_| !j.paused) {
                let since = j.last_good_end.unwrap_or(j.first_seen);
                let age = secs(now - since);
                if age > rpo {
                    push(
                        "BackupOverdue",
                        Severity::Critical,
                        job_labels(j),
                        &|l| {
                            let what = match j.last_good_end {
                                Some(t) => t!(l, "alert-overdue-newest", time = t.to_rfc3339()),
                                None => t!(l, "alert-overdue-none"),
                            };
                            (
                                t!(
                                    l,
                                    "alert-overdue-summary",
                                    job = job,
                                    age = human(age),
                                    rpo = human(rpo)
                                ),
                                t!(l, "alert-overdue-description", what = what),
                            )
                        },
                        String::new(),
                        f,
                    );
                }
            }
            if let Some(t) = j.running_since {
                let running = secs(now - t);
                if j.max_runtime_seconds > 0.0 && running > j.max_runtime_seconds {
                    push(
                        "BackupStuck",
                        Severity::High,
                        job_labels(j),
                        &|l| {
                            (
                                t!(
                                    l,
                                    "alert-stuck-summary",
                                    job = job,
                                    running = human(running),
                                    max = human(j.max_runtime_seconds)
                                ),
                                t!(l, "alert-stuck-description"),
                            )
                        },
                        String::new(),
                        f,
                    );
                }
            }
            if let Some(r) = j.last.as_ref().filter(|r| r.status.is_good()) {
                if let (Some(d), Some(m)) = (r.duration_seconds, j.median_duration) {
                    if m > 0.0 && d > 2.0 * m {
                        push(
                            "BackupSlow",
                            Severity::Medium,
                            job_labels(j),
                            &|l| {
                                (
                                    t!(
                                        l,
                                        "alert-slow-summary",
                                        job = job,
                                        took = human(d),
                                        median = human(m)
                                    ),
                                    t!(l, "alert-slow-description", run = r.id.as_str()),
                                )
                            },
                            String::new(),
                            f,
                        );
                    }
                }
                if let (Some(c), Some(m)) = (r.compression_ratio, j.median_ratio) {
                    if m > 0.0 && c < 0.5 * m {
                        push(
                            "CompressionRatioLow",
                            Severity::Low,
                            job_labels(j),
                            &|l| {
                                (
                                    t!(
                                        l,
                                        "alert-compression-summary",
                                        job = job,
                                        ratio = format!("{c:.2}"),
                                        median = format!("{m:.2}")
                                    ),
                                    t!(l, "alert-compression-description", run = r.id.as_str()),
                                )
                            },
                            String::new(),
                            f,
                        );
                    }
                }
            }
        }
        for r in &facts.repositories {
            let sev = match r.storage_level.as_str() {
                "low" => Some(Severity::Medium),
                "high" => Some(Severity::High),
                "critical" => Some(Severity::Critical),
                _ => None,
            };
            let repo = r.name.as_str();
            if let Some(sev) = sev.filter(|_| r.storage_known) {
                let pct = format!("{:.1}", r.storage_ratio.unwrap_or(0.0) * 100.0);
                let level = r.storage_level.as_str();
                push(
                    "StorageThreshold",
                    sev,
                    BTreeMap::from([("repository".to_string(), r.name.clone())]),
                    &|l| {
                        let summary = match r.storage_available {
                            Some(a) => t!(
                                l,
                                "alert-storage-summary",
                                repo = repo,
                                percent = pct.as_str(),
                                free = coffer_config::units::bytes(a),
                                level = level
                            ),
                            None => t!(
                                l,
                                "alert-storage-summary-unmeasured",
                                repo = repo,
                                percent = pct.as_str(),
                                level = level
                            ),
                        };
                        let action = match level {
                            "critical" => t!(l, "alert-storage-critical"),
                            "high" => t!(l, "alert-storage-high"),
                            _ => t!(l, "alert-storage-low"),
                        };
                        (
                            summary,
                            t!(l, "alert-storage-description", repo = repo, action = action),
                        )
                    },
                    String::new(),
                    None,
                );
            }
            if let Some(v) = r
                .last_verify
                .as_ref()
                .filter(|v| v.status == coffer_catalog::Status::Failed)
            {
                push(
                    "VerifyFailed",
                    Severity::Critical,
                    BTreeMap::from([("repository".to_string(), r.name.clone())]),
                    &|l| {
                        let detail = match &v.verify {
                            Some(x) => t!(
                                l,
                                "alert-verify-detail",
                                problems = x.problems,
                                packs = x.damaged_packs.join(", "),
                                snapshots = x.affected_snapshots.join(", ")
                            ),
                            None => v.errors.join("; "),
                        };
                        (
                            t!(l, "alert-verify-summary", repo = repo),
                            t!(
                                l,
                                "alert-verify-description",
                                run = v.id.as_str(),
                                detail = detail
                            ),
                        )
                    },
                    String::new(),
                    None,
                );
            }
        }
        for c in &facts.failing_channels {
            push(
                "ChannelFailing",
                Severity::High,
                BTreeMap::from([("channel".to_string(), c.channel.clone())]),
                &|l| {
                    (
                        t!(l, "alert-channel-summary", channel = c.channel.as_str()),
                        t!(
                            l,
                            "alert-channel-description",
                            since = c.since.to_rfc3339(),
                            error = c.error.as_str()
                        ),
                    )
                },
                String::new(),
                None,
            );
        }
        for sc in &facts.scenarios {
            let scenario = sc.name.as_str();
            let labels = || BTreeMap::from([("scenario".to_string(), sc.name.clone())]);
            let report = |r: &coffer_catalog::Run| {
                r.recovery
                    .as_ref()
                    .and_then(|x| x.report.clone())
                    .unwrap_or_else(|| format!("coffer runs --kind drill --job {}", sc.name))
            };
            match sc.last.as_ref() {
                Some(r) if r.status == coffer_catalog::Status::Failed => {
                    let err = r.errors.first().cloned().unwrap_or_default();
                    push(
                        "DrillFailed",
                        Severity::High,
                        labels(),
                        &|l| {
                            (
                                t!(
                                    l,
                                    "alert-drill-failed-summary",
                                    scenario = scenario,
                                    error = one_line(&err)
                                ),
                                format!(
                                    "{}\n{}",
                                    t!(
                                        l,
                                        "alert-drill-failed-description",
                                        run = r.id.as_str(),
                                        scenario = scenario,
                                        report = report(r)
                                    ),
                                    r.errors.join("\n")
                                ),
                            )
                        },
                        err.clone(),
                        None,
                    );
                }
                Some(r) if r.status == coffer_catalog::Status::Warning => {
                    let what = r.warnings.join("; ");
                    push(
                        "DrillTargetMissed",
                        Severity::Medium,
                        labels(),
                        &|l| {
                            (
                                t!(
                                    l,
                                    "alert-drill-missed-summary",
                                    scenario = scenario,
                                    what = one_line(&what)
                                ),
                                t!(
                                    l,
                                    "alert-drill-missed-description",
                                    run = r.id.as_str(),
                                    report = report(r)
                                ),
                            )
                        },
                        String::new(),
                        None,
                    );
                }
                _ => {}
            }
            if let Some(end) = sc.last_good_end {
                let age = secs(now - end);
                if sc.max_age_seconds > 0.0 && age > sc.max_age_seconds {
                    push(
                        "DrillOverdue",
                        Severity::Medium,
                        labels(),
                        &|l| {
                            (
                                t!(
                                    l,
                                    "alert-drill-overdue-summary",
                                    scenario = scenario,
                                    age = human(age),
                                    max = human(sc.max_age_seconds)
                                ),
                                t!(l, "alert-drill-overdue-description", scenario = scenario),
                            )
                        },
                        String::new(),
                        None,
                    );
                }
            }
        }
        if let Some(beat) = facts.heartbeat {
            let age = secs(now - beat);
            if age > self.heartbeat_timeout.as_secs_f64() {
                push(
                    "SchedulerDown",
                    Severity::Critical,
                    BTreeMap::new(),
                    &|l| {
                        (
                            t!(l, "alert-scheduler-summary", age = human(age)),
                            t!(l, "alert-scheduler-description", time = beat.to_rfc3339()),
                        )
                    },
                    String::new(),
                    None,
                );
            }
        }
    }
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// The newest run's error, for alert texts: without the `hint:` lines meant for a person at
/// a terminal (a server's list of databases does not belong in a chat message).
fn last_error(j: &JobFacts) -> String {
    let e = j
        .last
        .as_ref()
        .filter(|r| !r.status.is_good())
        .and_then(|r| {
            r.errors
                .first()
                .cloned()
                .or_else(|| r.sources.iter().find_map(|s| s.error.clone()))
        })
        .unwrap_or_default();
    e.lines()
        .filter(|l| !l.trim_start().starts_with("hint: "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > 200 {
        format!("{}…", l.chars().take(200).collect::<String>())
    } else {
        l.to_string()
    }
}

/// `90` → `1m30s`.
pub fn human(secs: f64) -> String {
    coffer_config::Span(Duration::from_secs(secs.max(0.0) as u64)).to_string()
}

/// The fields of `coffer_config::rules::FIELDS` for one job.
pub fn fields(j: &JobFacts, facts: &Facts) -> Vec<(&'static str, Value)> {
    let last = j.last.as_ref();
    let repo = facts.repositories.iter().find(|r| r.name == j.repository);
    let verify = repo.and_then(|r| r.last_verify.as_ref());
    let s = |v: &str| Value::String(Arc::new(v.to_string()));
    let since = j.last_good_end.unwrap_or(j.first_seen);
    let v: Vec<(&'static str, Value)> = vec![
        ("backup_job", s(&j.name)),
        ("run_id", s(last.map(|r| r.id.as_str()).unwrap_or(""))),
        ("source", s(&j.sources.join(","))),
        (
            "source_type",
            s(j.source_types.first().map(String::as_str).unwrap_or("")),
        ),
        (
            "source_types",
            Value::List(Arc::new(j.source_types.iter().map(|t| s(t)).collect())),
        ),
        ("repository", s(&j.repository)),
        ("status", s(last.map(|r| r.status.as_str()).unwrap_or(""))),
        ("error", s(&last_error(j))),
        (
            "duration_seconds",
            Value::Float(last.and_then(|r| r.duration_seconds).unwrap_or(0.0)),
        ),
        (
            "source_bytes",
            Value::Int(last.map(|r| r.source_bytes as i64).unwrap_or(0)),
        ),
        (
            "stored_bytes",
            Value::Int(last.map(|r| r.stored_bytes as i64).unwrap_or(0)),
        ),
        (
            "files",
            Value::Int(last.map(|r| r.files as i64).unwrap_or(0)),
        ),
        (
            "compression_ratio",
            Value::Float(last.and_then(|r| r.compression_ratio).unwrap_or(0.0)),
        ),
        ("backup_age_seconds", Value::Float(secs(facts.now - since))),
        ("rpo_seconds", Value::Float(j.rpo_seconds.unwrap_or(0.0))),
        (
            "storage_ratio",
            Value::Float(repo.and_then(|r| r.storage_ratio).unwrap_or(0.0)),
        ),
        (
            "consecutive_failures",
            Value::Int(j.consecutive_failures as i64),
        ),
        (
            "running_seconds",
            Value::Float(j.running_since.map(|t| secs(facts.now - t)).unwrap_or(0.0)),
        ),
        ("max_runtime_seconds", Value::Float(j.max_runtime_seconds)),
        (
            "median_duration_seconds",
            Value::Float(j.median_duration.unwrap_or(0.0)),
        ),
        (
            "median_compression_ratio",
            Value::Float(j.median_ratio.unwrap_or(0.0)),
        ),
        ("paused", Value::Bool(j.paused)),
        (
            "verify_status",
            s(verify.map(|r| r.status.as_str()).unwrap_or("")),
        ),
        (
            "verify_problems",
            Value::Int(
                verify
                    .and_then(|r| r.verify.as_ref())
                    .map(|v| v.problems as i64)
                    .unwrap_or(0),
            ),
        ),
    ];
    debug_assert_eq!(v.len(), FIELDS.len());
    debug_assert!(v.iter().zip(FIELDS).all(|((a, val), (b, t, _))| a == b
        && matches!(
            (val, t),
            (Value::String(_), FieldType::String)
                | (Value::Int(_), FieldType::Int)
                | (Value::Float(_), FieldType::Double)
                | (Value::Bool(_), FieldType::Bool)
                | (Value::List(_), FieldType::StringList)
        )));
    v
}

/// Replaces each `{{ name }}` by the field's or label's value (numbers as written by CEL,
/// floats with at most 2 decimals).
pub fn render(
    template: &str,
    fields: &[(&'static str, Value)],
    labels: &BTreeMap<String, String>,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            out.push_str(&rest[i..]);
            return out;
        };
        let name = after[..j].trim();
        let value = fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| value_text(v))
            .or_else(|| labels.get(name).cloned())
            .unwrap_or_default();
        out.push_str(&value);
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

/// Exact text of a value, for memo keys (floats in full, unlike [`value_text`]).
fn key_text(v: &Value) -> String {
    match v {
        Value::Float(f) => format!("{f:?}"),
        Value::List(l) => l.iter().map(key_text).collect::<Vec<_>>().join("\u{1e}"),
        other => value_text(other),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(i) => i.to_string(),
        Value::Float(f) if f.fract() == 0.0 => format!("{f:.0}"),
        Value::Float(f) => format!("{f:.2}"),
        Value::Bool(b) => b.to_string(),
        Value::List(l) => l.iter().map(value_text).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::RepoFacts;
    use crate::facts::ScenarioFacts;
    use chrono::Utc;
    use coffer_catalog::{Run, Status};

    fn cfg(rules: &str) -> Config {
        let text = format!(
            r#"
[[repository]]
name = "local"
url = "/tmp/x"
password = "p"

[[source]]
name = "pg"
type = "postgres"
url = "postgresql://127.0.0.1/"

[[job]]
name = "db"
sources = ["pg"]
schedule = "0 2 * * *"
{rules}"#
        );
        Config::parse(&text, std::path::Path::new("t.toml")).unwrap()
    }

    fn facts(status: Status, failures: u32) -> Facts {
        let mut run = Run::start("db", "local", "schedule", 1);
        run.errors.push("pg_dump: connection refused".into());
        run.finish(status);
        run.duration_seconds = Some(4000.0);
        Facts {
            now: Utc::now(),
            jobs: vec![JobFacts {
                name: "db".into(),
                sources: vec!["pg".into()],
                source_types: vec!["postgres".into()],
                repository: "local".into(),
                last: Some(run),
                first_seen: Utc::now(),
                consecutive_failures: failures,
                ..JobFacts::default()
            }],
            repositories: vec![RepoFacts {
                name: "local".into(),
                storage_ratio: Some(0.5),
                storage_level: "ok".into(),
                storage_available: Some(1 << 30),
                storage_known: true,
                last_verify: None,
            }],
            failing_channels: vec![],
            heartbeat: None,
            scenarios: vec![],
        }
    }

    /// A failed drill, a drill that missed its targets, and a drill too long ago: one alert
    /// each, labelled with the scenario, in both languages.
    #[test]
    fn drill_rules() {
        let rules = Rules::new(&cfg("")).unwrap();
        let drill = |status: Status, msg: &str| {
            let mut r = Run::start("database_failure", "local", "manual", 1);
            r.kind = coffer_catalog::RunKind::Drill;
            if status == Status::Failed {
                r.errors.push(msg.into());
            } else {
                r.warnings.push(msg.into());
            }
            r.finish(status);
            r
        };
        let mut f = facts(Status::Success, 0);
        let day = chrono::Duration::days(1);
        f.scenarios = vec![
            ScenarioFacts {
                name: "a".into(),
                last: Some(drill(Status::Failed, "step restore failed: pack damaged")),
                last_good_end: Some(f.now - day),
                max_age_seconds: 35.0 * 86400.0,
            },
            ScenarioFacts {
                name: "b".into(),
                last: Some(drill(Status::Warning, "took 40m, over the RTO of 30m")),
                last_good_end: Some(f.now - day * 40),
                max_age_seconds: 35.0 * 86400.0,
            },
            ScenarioFacts {
                name: "c".into(),
                last: None,
                last_good_end: None,
                max_age_seconds: 35.0 * 86400.0,
            },
        ];
        let (hits, _, _) = rules.evaluate(&f);
        let of = |rule: &str| -> Vec<&str> {
            hits.iter()
                .filter(|h| h.rule == rule)
                .map(|h| h.labels["scenario"].as_str())
                .collect()
        };
        assert_eq!(of("DrillFailed"), ["a"]);
        assert_eq!(of("DrillTargetMissed"), ["b"]);
        assert_eq!(of("DrillOverdue"), ["b"], "never drilled is not overdue");
        let failed = hits.iter().find(|h| h.rule == "DrillFailed").unwrap();
        assert!(
            failed.summary.contains("pack damaged"),
            "{}",
            failed.summary
        );
        assert!(failed.translations["zh-CN"].summary.contains("恢复演练"));
    }

    #[test]
    fn user_rules_are_cel_over_the_fields() {
        let c = cfg(r#"
[[rule]]
name = "db-failed"
when = 'status == "FAILED" && source_type == "postgres" && consecutive_failures >= 2'
severity = "critical"
summary = "Backup {{ backup_job }} failed: {{ error }} ({{ consecutive_failures }} in a row, {{ storage_ratio }})"

[[rule]]
name = "long"
when = 'duration_seconds > 3600 && "postgres" in source_types && storage_ratio < 0.9'
severity = "low"
"#);
        let rules = Rules::new(&c).unwrap();
        let (hits, errors, _) = rules.evaluate(&facts(Status::Failed, 2));
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<&str> = hits.iter().map(|h| h.rule.as_str()).collect();
        assert!(names.contains(&"db-failed"), "{names:?}");
        assert!(names.contains(&"long"), "{names:?}");
        assert!(names.contains(&"BackupFailed"), "{names:?}");
        let h = hits.iter().find(|h| h.rule == "db-failed").unwrap();
        assert_eq!(h.severity, Severity::Critical);
        assert_eq!(
            h.summary,
            "Backup db failed: pg_dump: connection refused (2 in a row, 0.50)"
        );
        let b = hits.iter().find(|h| h.rule == "BackupFailed").unwrap();
        assert_eq!(b.severity, Severity::Critical, "2 failures escalate");
        let (hits, _, _) = rules.evaluate(&facts(Status::Failed, 1));
        let b = hits.iter().find(|h| h.rule == "BackupFailed").unwrap();
        assert_eq!(b.severity, Severity::High);
        assert!(!hits.iter().any(|h| h.rule == "db-failed"));
        let (hits, _, _) = rules.evaluate(&facts(Status::Success, 0));
        assert!(!hits.iter().any(|h| h.rule == "BackupFailed"));
    }

    #[test]
    fn builtin_overrides_and_errors() {
        let c = cfg(r#"
[[rule]]
name = "BackupFailed"
severity = "medium"
labels = { team = "dba" }

[[rule]]
name = "typed"
when = 'status > 3'
"#);
        let rules = Rules::new(&c).unwrap();
        let (hits, errors, _) = rules.evaluate(&facts(Status::Failed, 5));
        let b = hits.iter().find(|h| h.rule == "BackupFailed").unwrap();
        assert_eq!(b.severity, Severity::Medium);
        assert_eq!(b.labels.get("team").map(String::as_str), Some("dba"));
        assert_eq!(
            errors.len(),
            1,
            "a type error is reported, not silently false"
        );
        assert!(errors[0].to_string().contains("typed"));
    }
}
