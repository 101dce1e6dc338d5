//! `dr drill`: a scenario's steps against scratch instances, never the live servers, with
//! checks of what came back, timed against the scenario's targets.
//!
//! A restore of a PostgreSQL logical source goes into a scratch cluster (one per source,
//! shared by the scenario's later steps); of a physical one, its base backup with the
//! archived WAL replayed to a point ([`physical`]); of Redis into a scratch redis-server, of
//! Kafka into a scratch broker ([`kafka`]), of files into a temporary directory. `run` steps
//! are skipped unless marked `drill = true`; `wait_for` steps are skipped (a drill starts no
//! services). `check` steps run against the scratch instance. After each restore:
//! `pg_amcheck` and row counts against the dump's for PostgreSQL (pg_amcheck of every
//! database after a physical restore); the RDB loaded by redis-server and key counts against
//! the manifest for Redis; every record read back and compared for Kafka; every file re-read
//! and hashed against the snapshot for files. Everything a drill starts is registered with
//! [`coffer_sources::scratch`] (a signal handler stops it) and stopped when the drill ends,
//! passed or not.
//!
//! [`run`] records the drill as a run of kind `drill` and writes its report; [`execute`] only
//! runs the steps.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use coffer_archiver::Progress;
use coffer_catalog::{Catalog, CheckResult, RecoveryResult, Run, RunKind, Status, StepResult};
use coffer_config::dr::{RestoreStep, Step};
use coffer_config::{units, Config, SourceEntry};
use coffer_sources::postgres::scratch::ScratchCluster;
use coffer_sources::scratch::Registration;
use coffer_sources::RestoreRequest;
use serde::Serialize;

use crate::assess::Opener;
use crate::recover::{self, PlannedSnapshot, PlannedStep, RecoverPlan};

mod kafka;
mod mariadb;
mod physical;

/// A physical PostgreSQL source (base backup and WAL archive).
fn is_physical(e: &SourceEntry) -> bool {
    e.kind == "postgres" && e.settings.get("mode").and_then(|m| m.as_str()) == Some("physical")
}

/// Source types a drill can restore, and why the others cannot yet.
fn drillable(e: &SourceEntry) -> Result<(), String> {
    match e.kind.as_str() {
        "postgres" | "mariadb" | "mysql" | "redis" | "kafka" | "files" | "command" => Ok(()),
        other => Err(format!(
            "source {:?}: drills of {other} sources need a scratch server coffer does not \
             start yet",
            e.name
        )),
    }
}

/// The recovery plan, adjusted for a drill: where each restore goes and what cannot be
/// drilled. A plan with problems does not run.
pub fn plan(
    cfg: &Config,
    scenario: &coffer_config::dr::Scenario,
    open: &Opener<'_>,
    choice: &recover::Choice,
    last_seconds: Option<f64>,
    now: DateTime<Utc>,
) -> RecoverPlan {
    let mut p = recover::plan_for(cfg, scenario, open, choice, last_seconds, now, false);
    for s in &mut p.steps {
        match &s.config {
            Step::Restore(r) => {
                let Some(e) = cfg.source.iter().find(|e| e.name == r.restore) else {
                    continue;
                };
                if let Err(why) = drillable(e) {
                    p.problems.push(format!("step {}: {why}", s.number));
                }
                if is_physical(e) {
                    match plan_physical(cfg, e, s, open, choice, now) {
                        Ok(()) => continue,
                        Err(why) => {
                            p.problems.push(format!("step {}: {why}", s.number));
                            continue;
                        }
                    }
                }
                s.into = Some(match e.kind.as_str() {
                    "postgres" => "a scratch PostgreSQL cluster".into(),
                    "mariadb" | "mysql" => "a scratch MariaDB server".into(),
                    "redis" => "a scratch redis-server".into(),
                    "kafka" => "a scratch Kafka broker".into(),
                    _ => "a temporary directory".into(),
                });
            }
            Step::Run(r) if !r.drill => s.step = format!("{} [skipped in drills]", s.step),
            Step::WaitFor(_) => s.step = format!("{} [skipped in drills]", s.step),
            _ => {}
        }
    }
    // A physical restore brings back data as recent as its replay point, not its base backup.
    p.rpo_seconds = p
        .steps
        .iter()
        .filter_map(|s| s.snapshot.as_ref().map(|s| s.age_seconds))
        .max();
    p.rpo_met = p.rpo_seconds.zip(p.rpo_target_seconds).map(|(a, t)| a <= t);
    p
}

/// Resolves a physical restore step: base backup, replay point, and the data age it proves.
fn plan_physical(
    cfg: &Config,
    e: &SourceEntry,
    s: &mut PlannedStep,
    open: &Opener<'_>,
    choice: &recover::Choice,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let repo_name = s
        .snapshot
        .as_ref()
        .map(|x| x.repository.clone())
        .ok_or_else(|| format!("source {:?} has no backup to drill", e.name))?;
    let repo_cfg = cfg
        .repository
        .iter()
        .find(|r| r.name == repo_name)
        .ok_or_else(|| format!("no repository {repo_name:?}"))?;
    let snaps = open(repo_cfg)?.snapshots().map_err(|e| e.to_string())?;
    let r = physical::resolve(&snaps, &e.name, choice)?;
    s.snapshot = Some(PlannedSnapshot {
        id: r.base.snap.id.to_hex(),
        short_id: r.base.snap.id.short(),
        repository: repo_name,
        time: r.data_time,
        age_seconds: (now - r.data_time).num_seconds().max(0) as u64,
    });
    s.replay_to = matches!(
        r.target,
        coffer_sources::postgres::physical::RecoveryTarget::Time(_)
    )
    .then_some(r.data_time);
    s.into = Some(format!(
        "a scratch PostgreSQL cluster: base backup {}, {}",
        r.base.snap.id.short(),
        r.note
    ));
    Ok(())
}

/// What a drill did and found.
#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    /// The run's id (`YYYYMMDD_HHMMSS-drill-NAME`).
    pub id: String,
    /// The scenario.
    pub scenario: String,
    /// What it recovers from.
    pub description: String,
    /// The host the drill ran on.
    pub host: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// Every step succeeded, every check passed and both targets were met.
    pub passed: bool,
    /// RTO target, seconds.
    pub rto_target_seconds: u64,
    /// How long the steps took, seconds: the recovery time this drill proves.
    pub rto_seconds: f64,
    /// Whether that is within the target.
    pub rto_met: bool,
    /// RPO target, seconds.
    pub rpo_target_seconds: Option<u64>,
    /// Age of the oldest data restored when the drill started.
    pub rpo_seconds: Option<u64>,
    /// Whether that is within the target.
    pub rpo_met: Option<bool>,
    /// The snapshots restored.
    pub snapshots: Vec<PlannedSnapshot>,
    /// Each step.
    pub steps: Vec<StepResult>,
    /// Each check of restored data.
    pub checks: Vec<CheckResult>,
    /// One sentence per failed step or check and per missed target.
    pub failures: Vec<String>,
    /// What was stopped and removed afterwards.
    pub cleanup: Vec<String>,
}

/// The steps' outcome, before it is recorded.
pub struct Executed {
    /// Steps, checks and timings.
    pub result: RecoveryResult,
    /// What was stopped and removed afterwards.
    pub cleanup: Vec<String>,
}

/// What a step restored, for later checks.
enum Restored {
    /// A scratch server (PostgreSQL, MariaDB) that the source reaches at `url`.
    Server { url: String, databases: Vec<String> },
    /// Checked when restored (Redis, files): the check's outcome.
    Checked(String),
}

/// The scratch instances of one drill.
struct Scratch {
    work: PathBuf,
    _work: Registration,
    clusters: Vec<(String, ScratchCluster)>,
    mariadb: Vec<(String, coffer_sources::mariadb::scratch::ScratchServer)>,
    kafka: Vec<(String, coffer_sources::kafka::scratch::ScratchBroker)>,
    restored: Vec<(String, Restored)>,
}

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let work = tempfile::Builder::new()
            .prefix("coffer-drill-")
            .tempdir()
            .map_err(|e| format!("creating a drill directory: {e}"))?
            .keep();
        Ok(Scratch {
            _work: coffer_sources::scratch::register_dir(&work),
            work,
            clusters: Vec::new(),
            mariadb: Vec::new(),
            kafka: Vec::new(),
            restored: Vec::new(),
        })
    }

    fn cluster(&mut self, e: &SourceEntry) -> Result<&ScratchCluster, String> {
        if let Some(i) = self.clusters.iter().position(|(n, _)| n == &e.name) {
            return Ok(&self.clusters[i].1);
        }
        let c = ScratchCluster::start(bin_dir(e).as_deref()).map_err(|e| e.to_string())?;
        self.clusters.push((e.name.clone(), c));
        Ok(&self.clusters[self.clusters.len() - 1].1)
    }

    fn dir_for(&self, e: &SourceEntry) -> PathBuf {
        let safe: String = e
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.work.join(format!("{}-{safe}", e.kind))
    }

    /// Stops every instance and removes the directory; says what it did.
    fn finish(self) -> Vec<String> {
        let mut done = Vec::new();
        for (name, c) in self.clusters {
            let port = c.port();
            c.stop();
            done.push(format!(
                "stopped the scratch PostgreSQL cluster of {name:?} (port {port}) and removed its directory"
            ));
        }
        for (name, b) in self.kafka {
            let port = b.port();
            b.stop();
            done.push(format!(
                "stopped the scratch Kafka broker of {name:?} (port {port}); its records were in memory"
            ));
        }
        for (name, s) in self.mariadb {
            let port = s.port();
            s.stop();
            done.push(format!(
                "stopped the scratch MariaDB server of {name:?} (port {port}) and removed its directory"
            ));
        }
        match std::fs::remove_dir_all(&self.work) {
            Ok(()) => done.push(format!("removed {}", self.work.display())),
            Err(e) => done.push(format!("removing {}: {e}", self.work.display())),
        }
        done
    }
}

fn bin_dir(e: &SourceEntry) -> Option<String> {
    e.settings
        .get("bin_dir")
        .and_then(|b| b.as_str())
        .map(str::to_string)
}

/// Runs the plan's steps against scratch instances, calling `on_step` after each; stops at
/// the first failed step, or when `cancel` is set (whoever sets it also stops the scratch
/// instances, [`coffer_sources::scratch::stop_all`], so that the running step ends). Checks
/// that fail do not stop the drill: every finding is reported.
pub fn execute(
    cfg: &Config,
    plan: &RecoverPlan,
    open: &Opener<'_>,
    cancel: &AtomicBool,
    progress: &Arc<Progress>,
    on_step: &mut dyn FnMut(&PlannedStep, &StepResult),
) -> Executed {
    let started = Instant::now();
    let mut out = RecoveryResult {
        scenario: plan.scenario.clone(),
        rto_target_seconds: plan.rto_target_seconds,
        rpo_target_seconds: plan.rpo_target_seconds,
        rpo_seconds: plan.rpo_seconds,
        ..Default::default()
    };
    let mut scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            out.steps.push(StepResult {
                step: "prepare the drill".into(),
                status: "FAILED".into(),
                seconds: 0.0,
                message: e,
            });
            return Executed {
                result: out,
                cleanup: Vec::new(),
            };
        }
    };
    for p in &plan.steps {
        if cancel.load(Ordering::SeqCst) {
            let r = StepResult {
                step: p.step.clone(),
                status: "FAILED".into(),
                seconds: 0.0,
                message: INTERRUPTED.into(),
            };
            on_step(p, &r);
            out.steps.push(r);
            break;
        }
        let t = Instant::now();
        let (status, message) =
            match run_step(cfg, p, open, progress, &mut scratch, &mut out.checks) {
                _ if cancel.load(Ordering::SeqCst) => ("FAILED", INTERRUPTED.to_string()),
                Ok(Some(m)) => ("SUCCESS", m),
                Ok(None) => ("SKIPPED", skip_reason(&p.config)),
                Err(m) => ("FAILED", m),
            };
        let r = StepResult {
            step: p.step.clone(),
            status: status.into(),
            seconds: t.elapsed().as_secs_f64(),
            message,
        };
        on_step(p, &r);
        out.steps.push(r);
        if status == "FAILED" {
            break;
        }
    }
    // The recovery time ends with the last step; stopping the scratch instances is not part
    // of a real recovery.
    out.rto_seconds = started.elapsed().as_secs_f64();
    Executed {
        result: out,
        cleanup: scratch.finish(),
    }
}

/// Runs and records the checks of one step.
struct Checker<'a> {
    checks: &'a mut Vec<CheckResult>,
    step: usize,
}

impl Checker<'_> {
    /// Runs `f`, records its outcome and time as check `name`, and says whether it passed.
    fn run(&mut self, name: String, f: impl FnOnce() -> Result<String, String>) -> bool {
        let t = Instant::now();
        let result = f();
        let passed = result.is_ok();
        self.checks.push(CheckResult {
            step: self.step,
            check: name,
            passed,
            detail: result.unwrap_or_else(|e| e),
            seconds: t.elapsed().as_secs_f64(),
        });
        passed
    }
}

/// The message of a step cut short by a signal or a shutdown.
pub const INTERRUPTED: &str =
    "interrupted: the drill was cancelled and its scratch instances stopped";

fn skip_reason(st: &Step) -> String {
    match st {
        Step::Run(_) => "not run in drills (mark it drill = true to run it)".into(),
        Step::WaitFor(_) => "a drill starts no services to wait for".into(),
        _ => String::new(),
    }
}

/// Runs one step; `Ok(None)` when a drill skips it.
fn run_step(
    cfg: &Config,
    p: &PlannedStep,
    open: &Opener<'_>,
    progress: &Arc<Progress>,
    scratch: &mut Scratch,
    checks: &mut Vec<CheckResult>,
) -> Result<Option<String>, String> {
    let limit = Duration::from_secs(p.timeout_seconds);
    match &p.config {
        Step::Run(r) if r.drill => recover::run_command(&r.run, limit).map(Some),
        Step::Run(_) | Step::WaitFor(_) => Ok(None),
        Step::Restore(r) => {
            let t = Instant::now();
            let msg = restore(cfg, p, r, open, progress, scratch, checks)?;
            if t.elapsed() > limit {
                return Err(format!(
                    "{msg}; but it took {}, over its timeout of {}",
                    units::short_duration(t.elapsed().as_secs()),
                    units::short_duration(limit.as_secs())
                ));
            }
            Ok(Some(msg))
        }
        Step::Check(c) => {
            let Some((_, restored)) = scratch.restored.iter().find(|(n, _)| n == &c.check) else {
                return Err(format!(
                    "source {:?} was not restored earlier in this drill: a drill checks only \
                     what it restored (put its restore step first)",
                    c.check
                ));
            };
            match (restored, &c.sql) {
                (Restored::Server { url, databases }, sql) => {
                    let e = recover::source_entry(cfg, &c.check)?.with_setting("url", url);
                    let source = coffer_sources::build(cfg, &e).map_err(|e| e.to_string())?;
                    let db = c.database.clone().or_else(|| databases.first().cloned());
                    let sql = sql.clone();
                    let name = match &c.sql {
                        Some(q) => format!("sql: {q}"),
                        None => "answers".into(),
                    };
                    let mut ok = Err(String::new());
                    Checker {
                        checks,
                        step: p.number,
                    }
                    .run(name, || {
                        ok = recover::within(limit, move || match sql {
                            Some(q) => {
                                let rows = source
                                    .run_sql(db.as_deref(), &q)
                                    .map_err(|e| e.to_string())?;
                                let v = rows
                                    .first()
                                    .and_then(|r| r.first())
                                    .cloned()
                                    .unwrap_or_default();
                                if ["t", "true", "1"].contains(&v.to_ascii_lowercase().as_str()) {
                                    Ok(format!("{q} returned {v} on the scratch server"))
                                } else {
                                    Err(format!(
                                        "{q} returned {v:?} on the scratch server, not true"
                                    ))
                                }
                            }
                            None => source
                                .probe()
                                .map(|_| "the scratch server answers".to_string())
                                .map_err(|e| e.to_string()),
                        });
                        ok.clone()
                    });
                    ok.map(Some)
                }
                (Restored::Checked(how), None) => Ok(Some(format!("checked when restored: {how}"))),
                (Restored::Checked(_), Some(_)) => {
                    Err(format!("source {:?} cannot run SQL checks", c.check))
                }
            }
        }
    }
}

fn restore(
    cfg: &Config,
    p: &PlannedStep,
    r: &RestoreStep,
    open: &Opener<'_>,
    progress: &Arc<Progress>,
    scratch: &mut Scratch,
    checks: &mut Vec<CheckResult>,
) -> Result<String, String> {
    let e = recover::source_entry(cfg, &r.restore)?;
    let snap = p.snapshot.as_ref().ok_or("no snapshot was planned")?;
    let (files, _lock) = recover::open_snapshot(cfg, snap, open, progress)?;
    let mut check = Checker {
        checks,
        step: p.number,
    };
    match e.kind.as_str() {
        "mariadb" | "mysql" => mariadb::restore(
            cfg,
            e,
            r,
            snap,
            &files,
            Duration::from_secs(p.timeout_seconds),
            scratch,
            &mut check,
        ),
        "kafka" => kafka::restore(cfg, e, snap, &files, scratch, &mut check),
        "postgres" if is_physical(e) => {
            let snaps = files.repo.snapshots().map_err(|e| e.to_string())?;
            let choice = match p.replay_to {
                Some(t) => recover::Choice::At(t),
                None => recover::Choice::Id(snap.id.clone()),
            };
            let resolved = physical::resolve(&snaps, &e.name, &choice)?;
            let (cluster, rep) = physical::restore(
                bin_dir(e).as_deref(),
                Arc::clone(&files.repo),
                &snaps,
                &e.name,
                &resolved,
                Duration::from_secs(p.timeout_seconds),
            )?;
            let (url, port) = (cluster.url(), cluster.port());
            let dbs: Vec<String> = cluster
                .query(
                    "postgres",
                    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
                )
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect();
            let mut all_passed = true;
            for db in &dbs {
                all_passed &= check.run(format!("pg_amcheck {db}"), || {
                    cluster.amcheck(db).map_err(|e| e.to_string())
                });
            }
            scratch.clusters.retain(|(n, _)| n != &e.name);
            scratch.clusters.push((e.name.clone(), cluster));
            scratch.restored.retain(|(n, _)| n != &e.name);
            scratch.restored.push((
                e.name.clone(),
                Restored::Server {
                    url,
                    databases: dbs.clone(),
                },
            ));
            Ok(format!(
                "restored base backup {} of {:?} into a scratch cluster on port {port}: {}{}",
                resolved.base.snap.id.short(),
                r.restore,
                rep.steps.join("; "),
                if all_passed { "" } else { "; a check failed" }
            ))
        }
        "postgres" => {
            let cluster = scratch.cluster(e)?;
            let (url, port) = (cluster.url(), cluster.port());
            let source = coffer_sources::build(cfg, &e.with_setting("url", &url))
                .map_err(|e| e.to_string())?;
            let manifest = files.manifest().unwrap_or_default();
            let dumped = dumped_databases(r, &manifest);
            let dumped = if dumped.is_empty() {
                // No manifest: what the restore finds on its own (the only dump).
                vec![String::new()]
            } else {
                dumped
            };
            let single = dumped.len() == 1;
            let mut restored = Vec::new();
            let mut all_passed = true;
            for db in &dumped {
                let target = match (&r.to_database, single) {
                    (Some(t), true) => t.clone(),
                    _ => db.clone(),
                };
                let req = RestoreRequest {
                    database: (!db.is_empty()).then(|| db.clone()),
                    to_database: (!target.is_empty()).then(|| target.clone()),
                    // The scratch cluster's own `postgres` database exists already.
                    clean: true,
                    ..Default::default()
                };
                source.restore(&files, &req).map_err(|e| e.to_string())?;
                let target = if target.is_empty() {
                    "postgres".to_string()
                } else {
                    target
                };
                let cluster = scratch.cluster(e)?;
                all_passed &= check.run(format!("pg_amcheck {target}"), || {
                    cluster.amcheck(&target).map_err(|e| e.to_string())
                });
                all_passed &= check.run(format!("row counts {target}"), || {
                    row_counts(snap, &manifest, db, |want| {
                        coffer_sources::postgres::verify::compare_row_counts(
                            &url,
                            bin_dir(e).as_deref(),
                            &target,
                            want,
                        )
                        .map_err(|e| e.to_string())
                    })
                });
                restored.push(target);
            }
            let msg = format!(
                "restored snapshot {} of {:?} ({}) into a scratch cluster on port {port}{}",
                snap.short_id,
                r.restore,
                restored.join(", "),
                if all_passed { "" } else { "; a check failed" }
            );
            scratch.restored.retain(|(n, _)| n != &e.name);
            scratch.restored.push((
                e.name.clone(),
                Restored::Server {
                    url,
                    databases: restored,
                },
            ));
            Ok(msg)
        }
        "redis" => {
            let source = coffer_sources::build(cfg, e).map_err(|e| e.to_string())?;
            let req = RestoreRequest {
                target: Some(scratch.dir_for(e)),
                scratch: true,
                clean: true,
                ..Default::default()
            };
            let outcome = source.restore(&files, &req).map_err(|e| e.to_string());
            let detail = outcome.as_ref().map(|rep| {
                format!(
                    "redis-server loaded the RDB; {}",
                    rep.steps
                        .iter()
                        .find(|s| s.starts_with("key counts"))
                        .cloned()
                        .unwrap_or_else(|| "no key counts in the backup to compare".into())
                )
            });
            let mut ok = check.run("key counts".into(), || {
                detail.clone().map_err(|e| e.clone())
            });
            let detail = detail?;
            // redis-check-rdb reads every record the way a server starting on the file
            // would; it comes with redis-server, but a minimal install may lack it.
            let rdb = scratch.dir_for(e).join(coffer_sources::redis::RDB_FILE);
            let mut installed = true;
            let passed = check.run("redis-check-rdb".into(), || {
                redis_check_rdb(&rdb).unwrap_or_else(|| {
                    installed = false;
                    Ok(String::new())
                })
            });
            if installed {
                ok &= passed;
            } else {
                check.checks.pop();
            }
            scratch
                .restored
                .push((e.name.clone(), Restored::Checked(detail.clone())));
            if !ok {
                return Err(check
                    .checks
                    .iter()
                    .rev()
                    .find(|c| !c.passed)
                    .map(|c| c.detail.clone())
                    .unwrap_or(detail));
            }
            Ok(format!(
                "restored snapshot {} of {:?} into a scratch redis-server: {detail}",
                snap.short_id, r.restore
            ))
        }
        _ => {
            let source = coffer_sources::build(cfg, e).map_err(|e| e.to_string())?;
            let dir = scratch.dir_for(e);
            let req = RestoreRequest {
                target: Some(dir.clone()),
                ..Default::default()
            };
            let outcome = source.restore(&files, &req).map_err(|e| e.to_string());
            let detail = outcome.as_ref().map(|rep| describe_files(rep, &dir));
            check.run("file hashes".into(), || {
                detail.clone().map_err(|e| e.clone())
            });
            let detail = detail?;
            scratch
                .restored
                .push((e.name.clone(), Restored::Checked(detail.clone())));
            Ok(format!(
                "restored snapshot {} of {:?}: {detail}",
                snap.short_id, r.restore
            ))
        }
    }
}

/// The databases a restore step brings back: the one it names, else every one the snapshot's
/// manifest lists (none without a manifest).
fn dumped_databases(r: &RestoreStep, manifest: &serde_json::Value) -> Vec<String> {
    match &r.database {
        Some(d) => vec![d.clone()],
        None => manifest["databases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The row-count check of dumped database `db`: the counts snapshot `snap` recorded,
/// against what `compare` finds in the restored database.
fn row_counts(
    snap: &PlannedSnapshot,
    manifest: &serde_json::Value,
    db: &str,
    compare: impl FnOnce(
        &serde_json::Map<String, serde_json::Value>,
    ) -> Result<coffer_sources::row_counts::RowComparison, String>,
) -> Result<String, String> {
    let Some(want) = manifest["row_counts"][db].as_object() else {
        return Err(format!(
            "snapshot {} recorded no row counts for {db:?} ({})",
            snap.short_id,
            manifest["row_counts_error"][db]
                .as_str()
                .unwrap_or("made before coffer recorded them: back it up again")
        ));
    };
    let c = compare(want)?;
    if c.differences.is_empty() {
        Ok(format!(
            "{} tables, {} rows, as in the backup",
            c.tables, c.rows
        ))
    } else {
        Err(c.differences.join("; "))
    }
}

/// `redis-check-rdb FILE`, or None when it is not installed.
fn redis_check_rdb(rdb: &Path) -> Option<Result<String, String>> {
    let out = match std::process::Command::new("redis-check-rdb")
        .arg(rdb)
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("starting redis-check-rdb: {e}"))),
        Ok(o) => o,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.trim().lines().last().unwrap_or("").to_string();
    Some(if out.status.success() && text.contains("RDB looks OK") {
        Ok("redis-check-rdb: RDB looks OK".into())
    } else {
        Err(format!(
            "redis-check-rdb rejected the RDB ({}): {last}",
            out.status
        ))
    })
}

fn describe_files(rep: &coffer_sources::RestoreReport, dir: &Path) -> String {
    let n = |k: &str| rep.checks.get(k).and_then(|v| v.as_u64());
    match (n("files"), n("verified_files"), n("bytes")) {
        (Some(f), Some(v), b) => format!(
            "{f} files{} restored into a temporary directory, {v} re-read and hashed against the snapshot",
            b.map(|b| format!(" ({})", units::bytes(b))).unwrap_or_default()
        ),
        (_, _, Some(b)) => format!(
            "{} written into {} and hashed while read",
            units::bytes(b),
            dir.display()
        ),
        _ => rep.steps.join("; "),
    }
}

/// How the drill went: every finding, one sentence each.
fn failures(result: &RecoveryResult) -> Vec<String> {
    let mut out: Vec<String> = result
        .steps
        .iter()
        .filter(|s| s.status == "FAILED")
        .map(|s| format!("step {:?} failed: {}", s.step, s.message))
        .collect();
    out.extend(
        result
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("check {:?} (step {}) failed: {}", c.check, c.step, c.detail)),
    );
    if result.rto_seconds > result.rto_target_seconds as f64 {
        out.push(format!(
            "the recovery took {}, over the RTO target of {}",
            units::short_duration(result.rto_seconds.round() as u64),
            units::short_duration(result.rto_target_seconds)
        ));
    }
    if let (Some(a), Some(t)) = (result.rpo_seconds, result.rpo_target_seconds) {
        if a > t {
            out.push(format!(
                "the newest backup restored was {} old, over the RPO target of {}",
                units::short_duration(a),
                units::short_duration(t)
            ));
        }
    }
    out
}

/// Builds the report of an executed drill.
pub fn report(
    id: &str,
    plan: &RecoverPlan,
    started: DateTime<Utc>,
    executed: &Executed,
) -> DrillReport {
    let r = &executed.result;
    let failures = failures(r);
    DrillReport {
        id: id.to_string(),
        scenario: plan.scenario.clone(),
        description: plan.description.clone(),
        host: hostname(),
        started,
        passed: failures.is_empty(),
        rto_target_seconds: r.rto_target_seconds,
        rto_seconds: r.rto_seconds,
        rto_met: r.rto_seconds <= r.rto_target_seconds as f64,
        rpo_target_seconds: r.rpo_target_seconds,
        rpo_seconds: r.rpo_seconds,
        rpo_met: r.rpo_seconds.zip(r.rpo_target_seconds).map(|(a, t)| a <= t),
        snapshots: plan
            .steps
            .iter()
            .filter_map(|s| s.snapshot.clone())
            .collect(),
        steps: r.steps.clone(),
        checks: r.checks.clone(),
        failures,
        cleanup: executed.cleanup.clone(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Where drill reports go: `[dr] reports`, else `drills/` beside the catalog.
pub fn reports_dir(cfg: &Config) -> PathBuf {
    match &cfg.dr.reports {
        Some(d) => PathBuf::from(d),
        None => {
            let cat = cfg
                .server
                .catalog
                .as_deref()
                .map(PathBuf::from)
                .unwrap_or_else(Catalog::default_path);
            cat.parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
                .join("drills")
        }
    }
}

/// A drill recorded in the catalog with its report written.
pub struct Recorded {
    /// The run as stored.
    pub run: Run,
    /// The report.
    pub report: DrillReport,
    /// Where the report was written (HTML, JSON), or why it could not be.
    pub files: Result<(PathBuf, PathBuf), String>,
}

/// Records a drill as a run, executes it, writes the report and finishes the run. `on_start`
/// sees the run as soon as it has its id; `cancel` as in [`execute`].
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: &Config,
    plan: &RecoverPlan,
    open: &Opener<'_>,
    cat: &Catalog,
    trigger: &str,
    cancel: &AtomicBool,
    progress: &Arc<Progress>,
    on_start: &mut dyn FnMut(&Run),
    on_step: &mut dyn FnMut(&PlannedStep, &StepResult),
) -> Result<Recorded, String> {
    let mut record = plan.new_run(RunKind::Drill, trigger);
    cat.insert(&mut record).map_err(|e| e.to_string())?;
    on_start(&record);
    let started = record.started.with_timezone(&Utc);
    let executed = execute(cfg, plan, open, cancel, progress, on_step);
    let report = report(&record.id, plan, started, &executed);
    let files = crate::report::write(&reports_dir(cfg), &report);
    let mut result = executed.result;
    result.report = files
        .as_ref()
        .ok()
        .map(|(html, _)| html.display().to_string());
    record.ended = Some(Utc::now());
    record.duration_seconds = Some(result.rto_seconds);
    let broke = result.steps.iter().any(|s| s.status == "FAILED")
        || result.checks.iter().any(|c| !c.passed);
    record.status = match (broke, report.passed) {
        (true, _) => Status::Failed,
        (false, false) => Status::Warning,
        (false, true) => Status::Success,
    };
    for f in &report.failures {
        if broke {
            record.errors.push(f.clone());
        } else {
            record.warnings.push(f.clone());
        }
    }
    if let Err(e) = &files {
        record
            .warnings
            .push(format!("the drill report could not be written: {e}"));
    }
    record.recovery = Some(result);
    cat.update(&record).map_err(|e| e.to_string())?;
    Ok(Recorded {
        run: record,
        report,
        files,
    })
}
