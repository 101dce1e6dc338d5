//! `dr recover`: a scenario's steps run against the live servers.
//!
//! [`plan`] resolves every restore step to a snapshot (the newest of its source, the newest at
//! or before `--at`, or the one named) and says what the recovery would achieve: the age of
//! the data it brings back (the RPO achieved) against the target, and how long the last
//! recovery of this scenario took. A plan with problems (a source never backed up, a source
//! type a step cannot recover) does not run. [`execute`] runs the steps in order, each within
//! its timeout, and stops at the first that fails; the caller prints, audits and records.
//!
//! Timeouts: a `run` command, a `check` and a `wait_for` are stopped at their timeout. A
//! restore is never killed halfway (that leaves a half-loaded database, worse than a slow
//! one): it is reported FAILED when it finishes past its timeout.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use coffer_archiver::Progress;
use coffer_catalog::{RecoveryResult, StepResult};
use coffer_config::dr::{parse_tcp, Scenario, Step};
use coffer_config::{units, Config, SourceEntry};
use coffer_repo::lock::LockGuard;
use coffer_repo::snapshot::SnapshotWithId;
use serde::Serialize;

use crate::assess::Opener;

const RUN_TIMEOUT: Duration = Duration::from_secs(600);
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);
const WAIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Which snapshots the restores use.
#[derive(Clone, Debug, Default)]
pub enum Choice {
    /// Each source's newest.
    #[default]
    Latest,
    /// Each source's newest taken at or before this time.
    At(DateTime<Utc>),
    /// This snapshot (id or unique prefix) for the source it belongs to, the newest for others.
    Id(String),
}

/// The snapshot a restore step will use.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedSnapshot {
    /// Full id.
    pub id: String,
    /// Short id.
    pub short_id: String,
    /// The repository holding it.
    pub repository: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Its age when planned: the data a recovery from it loses.
    pub age_seconds: u64,
}

/// One step as it will run.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedStep {
    /// 1-based.
    pub number: usize,
    /// What it does.
    pub step: String,
    /// Its timeout.
    pub timeout_seconds: u64,
    /// The snapshot a restore uses.
    pub snapshot: Option<PlannedSnapshot>,
    /// Where a restore writes (a directory, a server URL without credentials), when not the
    /// source's own server.
    pub into: Option<String>,
    /// A physical PostgreSQL restore: the point WAL is replayed to (none: the whole archive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_to: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub(crate) config: Step,
}

/// What a recovery would do.
#[derive(Clone, Debug, Serialize)]
pub struct RecoverPlan {
    /// The scenario.
    pub scenario: String,
    /// What it recovers from.
    pub description: String,
    /// Its recovery time target.
    pub rto_target_seconds: u64,
    /// Its recovery point target.
    pub rpo_target_seconds: Option<u64>,
    /// The age of the oldest data it restores: what the recovery loses.
    pub rpo_seconds: Option<u64>,
    /// Whether that is within the target.
    pub rpo_met: Option<bool>,
    /// How long the last finished recovery of this scenario took.
    pub expected_seconds: Option<f64>,
    /// The steps.
    pub steps: Vec<PlannedStep>,
    /// Why it cannot run, if anything.
    pub problems: Vec<String>,
}

impl RecoverPlan {
    /// A new run of `kind` (a recovery or a drill) for this plan, not yet in the catalog: its
    /// job is the scenario, its repository that of the first snapshot restored.
    pub fn new_run(&self, kind: coffer_catalog::RunKind, trigger: &str) -> coffer_catalog::Run {
        let repo = self
            .steps
            .iter()
            .find_map(|s| s.snapshot.as_ref().map(|s| s.repository.as_str()))
            .unwrap_or_default();
        let mut r = coffer_catalog::Run::start(&self.scenario, repo, trigger, 1);
        r.kind = kind;
        r
    }
}

/// Resolves `scenario`'s steps against the repositories. `last_seconds` is how long its last
/// recovery took (from the catalog), for the expected duration.
pub fn plan(
    cfg: &Config,
    scenario: &Scenario,
    open: &Opener<'_>,
    choice: &Choice,
    last_seconds: Option<f64>,
    now: DateTime<Utc>,
) -> RecoverPlan {
    plan_for(cfg, scenario, open, choice, last_seconds, now, true)
}

/// [`plan`], for restores in place (a recovery) or elsewhere (a drill, which has its own
/// rules about what it can restore).
pub(crate) fn plan_for(
    cfg: &Config,
    scenario: &Scenario,
    open: &Opener<'_>,
    choice: &Choice,
    last_seconds: Option<f64>,
    now: DateTime<Utc>,
    in_place: bool,
) -> RecoverPlan {
    let mut problems = Vec::new();
    let mut steps = Vec::new();
    let mut listed: Vec<(String, Result<Vec<SnapshotWithId>, String>)> = Vec::new();
    let mut id_used = false;
    for (i, st) in scenario.steps.iter().enumerate() {
        let mut p = PlannedStep {
            number: i + 1,
            step: st.describe(),
            timeout_seconds: timeout(cfg, st).as_secs(),
            snapshot: None,
            into: None,
            replay_to: None,
            config: st.clone(),
        };
        if let Step::Restore(r) = st {
            match cfg.source.iter().find(|e| e.name == r.restore) {
                None => problems.push(format!("step {}: no source {:?}", i + 1, r.restore)),
                Some(e) => {
                    if let (true, Err(why)) = (in_place, restorable(e)) {
                        problems.push(format!("step {}: {why}", i + 1));
                    }
                    p.into = into(e, r).map(|s| {
                        coffer_config::secrets::register_url(&s);
                        coffer_config::secrets::redact(&s).into_owned()
                    });
                    match find_snapshot(cfg, e, open, choice, &mut listed, now) {
                        Ok((s, by_id)) => {
                            id_used |= by_id;
                            p.snapshot = Some(s);
                        }
                        Err(why) => problems.push(format!("step {}: {why}", i + 1)),
                    }
                }
            }
        }
        steps.push(p);
    }
    if let (Choice::Id(id), false) = (choice, id_used) {
        if problems.is_empty() {
            problems.push(format!(
                "snapshot {id:?} belongs to none of the sources this scenario restores"
            ));
        }
    }
    let rpo_seconds = steps
        .iter()
        .filter_map(|s| s.snapshot.as_ref().map(|s| s.age_seconds))
        .max();
    let rpo_target_seconds = scenario.rpo.map(|d| d.as_secs());
    RecoverPlan {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        rto_target_seconds: scenario.rto.as_secs(),
        rpo_target_seconds,
        rpo_seconds,
        rpo_met: rpo_seconds.zip(rpo_target_seconds).map(|(a, t)| a <= t),
        expected_seconds: last_seconds,
        steps,
        problems,
    }
}

pub(crate) fn timeout(cfg: &Config, st: &Step) -> Duration {
    match st {
        Step::Run(r) => r.timeout.map_or(RUN_TIMEOUT, |t| t.0),
        Step::Restore(r) => r.timeout.map(|t| t.0).unwrap_or_else(|| {
            cfg.source
                .iter()
                .find(|e| e.name == r.restore)
                .map_or(Duration::from_secs(4 * 3600), |e| cfg.targets(e).rto)
        }),
        Step::Check(c) => c.timeout.map_or(CHECK_TIMEOUT, |t| t.0),
        Step::WaitFor(w) => w.timeout.map_or(WAIT_TIMEOUT, |t| t.0),
    }
}

/// Whether a restore step can recover this type of source in place.
fn restorable(e: &SourceEntry) -> Result<(), String> {
    let physical = e.settings.get("mode").and_then(|m| m.as_str()) == Some("physical");
    match (e.kind.as_str(), physical) {
        ("postgres", true) => Err(format!(
            "source {:?} is a physical PostgreSQL backup: recover its data directory with \
             `coffer pg restore --source {} --target DIR` (not yet a scenario step)",
            e.name, e.name
        )),
        ("mariadb", true) => Err(format!(
            "source {:?} is a physical MariaDB backup: a scenario cannot restore it in place yet",
            e.name
        )),
        _ => Ok(()),
    }
}

/// Where a restore writes when not the source's own database server: files into `target`
/// (default `/`, the original paths), Redis into `to_url` (default the source's own server).
fn into(e: &SourceEntry, r: &coffer_config::dr::RestoreStep) -> Option<String> {
    match e.kind.as_str() {
        "files" => Some(r.target.clone().unwrap_or_else(|| "/".into())),
        "redis" => r.to_url.clone().or_else(|| {
            e.settings
                .get("url")
                .and_then(|u| u.as_str())
                .map(str::to_string)
        }),
        _ => r.target.clone(),
    }
}

fn find_snapshot(
    cfg: &Config,
    e: &SourceEntry,
    open: &Opener<'_>,
    choice: &Choice,
    listed: &mut Vec<(String, Result<Vec<SnapshotWithId>, String>)>,
    now: DateTime<Utc>,
) -> Result<(PlannedSnapshot, bool), String> {
    let tag = format!("source:{}", e.name);
    let repos = crate::repositories_of(cfg, e);
    if repos.is_empty() {
        return Err(format!(
            "source {:?}: no repository is known for it (no `repository` key and no job backs it up)",
            e.name
        ));
    }
    let mut best: Option<(PlannedSnapshot, bool)> = None;
    let mut errors = Vec::new();
    for r in repos {
        if !listed.iter().any(|(n, _)| n == &r.name) {
            let snaps = open(r).and_then(|repo| repo.snapshots().map_err(|e| e.to_string()));
            listed.push((r.name.clone(), snaps));
        }
        let Some((_, snaps)) = listed.iter().find(|(n, _)| n == &r.name) else {
            continue;
        };
        let snaps = match snaps {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("repository {:?}: {e}", r.name));
                continue;
            }
        };
        let own: Vec<&SnapshotWithId> = snaps
            .iter()
            .filter(|s| s.snap.tags.contains(&tag) && !is_log_file(s))
            .collect();
        let mut pick = |s: &SnapshotWithId, by_id: bool| {
            let time = s.snap.time.with_timezone(&Utc);
            if best.as_ref().is_none_or(|(b, _)| time > b.time) {
                best = Some((
                    PlannedSnapshot {
                        id: s.id.to_hex(),
                        short_id: s.id.short(),
                        repository: r.name.clone(),
                        time,
                        age_seconds: (now - time).num_seconds().max(0) as u64,
                    },
                    by_id,
                ));
            }
        };
        match choice {
            Choice::Id(id) => match own.iter().find(|s| !id.is_empty() && s.id.has_prefix(id)) {
                Some(s) => pick(s, true),
                None => own.iter().for_each(|s| pick(s, false)),
            },
            Choice::At(t) => own
                .iter()
                .filter(|s| s.snap.time.with_timezone(&Utc) <= *t)
                .for_each(|s| pick(s, false)),
            Choice::Latest => own.iter().for_each(|s| pick(s, false)),
        }
        // A snapshot named by id wins over any newer one.
        if best.as_ref().is_some_and(|(_, by_id)| *by_id) {
            break;
        }
    }
    best.ok_or_else(|| {
        let at = match choice {
            Choice::At(t) => format!(" taken at or before {}", t.to_rfc3339()),
            _ => String::new(),
        };
        if errors.is_empty() {
            format!("source {:?} has no backup{at} to recover from", e.name)
        } else {
            format!(
                "source {:?}: no backup{at} found ({})",
                e.name,
                errors.join("; ")
            )
        }
    })
}

fn is_log_file(s: &SnapshotWithId) -> bool {
    let c = s.snap.extra.get("coffer");
    let f = |k: &str| c.and_then(|c| c.get(k)).is_some();
    f("log_chain") && !f("log_start")
}

/// Runs the plan's steps from `from` (1-based; earlier ones are SKIPPED), calling `on_step`
/// after each, and stops at the first failure (later steps are not listed). Returns the
/// result and whether every step succeeded.
pub fn execute(
    cfg: &Config,
    plan: &RecoverPlan,
    open: &Opener<'_>,
    from: usize,
    progress: &Arc<Progress>,
    on_step: &mut dyn FnMut(&PlannedStep, &StepResult),
) -> (RecoveryResult, bool) {
    let started = Instant::now();
    let mut out = RecoveryResult {
        scenario: plan.scenario.clone(),
        rto_target_seconds: plan.rto_target_seconds,
        rpo_target_seconds: plan.rpo_target_seconds,
        rpo_seconds: plan.rpo_seconds,
        ..Default::default()
    };
    let mut ok = true;
    for p in &plan.steps {
        let t = Instant::now();
        let (status, message) = if p.number < from {
            ("SKIPPED", "before --from-step".to_string())
        } else {
            match run_step(cfg, p, open, progress) {
                Ok(m) => ("SUCCESS", m),
                Err(m) => ("FAILED", m),
            }
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
            ok = false;
            break;
        }
    }
    out.rto_seconds = started.elapsed().as_secs_f64();
    (out, ok)
}

fn run_step(
    cfg: &Config,
    p: &PlannedStep,
    open: &Opener<'_>,
    progress: &Arc<Progress>,
) -> Result<String, String> {
    let limit = Duration::from_secs(p.timeout_seconds);
    match &p.config {
        Step::Run(r) => run_command(&r.run, limit),
        Step::Restore(r) => {
            let started = Instant::now();
            let msg = restore(cfg, p, r, open, progress)?;
            let took = started.elapsed();
            if took > limit {
                return Err(format!(
                    "{msg}; but it took {}, over its timeout of {}",
                    units::short_duration(took.as_secs()),
                    units::short_duration(limit.as_secs())
                ));
            }
            Ok(msg)
        }
        Step::Check(c) => {
            let e = source_entry(cfg, &c.check)?;
            let source = coffer_sources::build(cfg, e).map_err(|e| e.to_string())?;
            let (sql, db) = (c.sql.clone(), c.database.clone());
            within(limit, move || match &sql {
                Some(q) => {
                    let rows = source
                        .run_sql(db.as_deref(), q)
                        .map_err(|e| e.to_string())?;
                    let v = rows
                        .first()
                        .and_then(|r| r.first())
                        .cloned()
                        .unwrap_or_default();
                    if ["t", "true", "1"].contains(&v.to_ascii_lowercase().as_str()) {
                        Ok(format!("{q} returned {v}"))
                    } else {
                        Err(format!("{q} returned {:?}, not true", v))
                    }
                }
                None => source
                    .probe()
                    .map(|p| {
                        let what: Vec<String> = [p.version, p.role].into_iter().flatten().collect();
                        format!("answers ({})", what.join(", "))
                    })
                    .map_err(|e| e.to_string()),
            })
        }
        Step::WaitFor(w) => wait_for(&w.wait_for, limit),
    }
}

pub(crate) fn source_entry<'a>(cfg: &'a Config, name: &str) -> Result<&'a SourceEntry, String> {
    cfg.source
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| format!("no source {name:?}"))
}

fn restore(
    cfg: &Config,
    p: &PlannedStep,
    r: &coffer_config::dr::RestoreStep,
    open: &Opener<'_>,
    progress: &Arc<Progress>,
) -> Result<String, String> {
    let e = source_entry(cfg, &r.restore)?;
    let snap = p.snapshot.as_ref().ok_or("no snapshot was planned")?;
    let (files, _lock) = open_snapshot(cfg, snap, open, progress)?;
    let source = coffer_sources::build(cfg, e).map_err(|e| e.to_string())?;
    let into = into(e, r);
    let req = coffer_sources::RestoreRequest {
        target: match e.kind.as_str() {
            "redis" | "kafka" => None,
            _ => into.as_ref().map(PathBuf::from),
        },
        // A Kafka step's `into` names the brokers to produce into.
        to_brokers: match e.kind.as_str() {
            "kafka" => into
                .as_ref()
                .map(|b| b.split(',').map(|s| s.trim().to_string()).collect()),
            _ => None,
        },
        to_database: r.to_database.clone(),
        database: r.database.clone(),
        clean: r.clean,
        scratch: false,
        jobs: None,
        to_url: match e.kind.as_str() {
            "redis" => into
                .as_deref()
                .map(coffer_config::expand)
                .transpose()
                .map_err(|e| format!("to_url: {e}"))?,
            _ => None,
        },
        ..Default::default()
    };
    let report = source.restore(&files, &req).map_err(|e| e.to_string())?;
    let mut msg = format!("restored snapshot {} of {:?}", snap.short_id, r.restore);
    if !report.checks.is_empty() {
        msg.push_str(&format!(" ({})", serde_json::Value::Object(report.checks)));
    }
    Ok(msg)
}

/// The planned snapshot, its repository's index loaded, under a shared lock held as long as
/// the guard lives; what its readers deliver is counted in `progress`.
pub(crate) fn open_snapshot(
    cfg: &Config,
    snap: &PlannedSnapshot,
    open: &Opener<'_>,
    progress: &Arc<Progress>,
) -> Result<(coffer_sources::SnapshotFiles, LockGuard), String> {
    let repo_cfg = cfg
        .repository
        .iter()
        .find(|x| x.name == snap.repository)
        .ok_or_else(|| format!("no repository {:?}", snap.repository))?;
    let repo = open(repo_cfg)?;
    let lock = LockGuard::acquire_wait(&repo, false, Duration::from_secs(60))
        .map_err(|e| format!("repository {:?}: {e}", snap.repository))?;
    let found = repo
        .find_snapshot(&snap.id, |_| true)
        .map_err(|e| e.to_string())?;
    repo.load_index().map_err(|e| e.to_string())?;
    let files = coffer_sources::SnapshotFiles::open(Arc::clone(&repo), found)
        .map_err(|e| e.to_string())?
        .with_progress(Arc::clone(progress));
    Ok((files, lock))
}

/// Runs `f` in a thread and gives up waiting after `limit` (the thread is left to finish;
/// what it does is a query or a probe, which end on their own).
pub(crate) fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        Err(format!(
            "no answer within its timeout of {}",
            units::short_duration(limit.as_secs())
        ))
    })
}

pub(crate) fn run_command(argv: &[String], limit: Duration) -> Result<String, String> {
    let (prog, args) = argv.split_first().ok_or("`run` needs a program")?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {prog}: {e}"))?;
    // A drill interrupted by a signal kills the command too.
    let running = coffer_sources::scratch::register_pid(argv.join(" "), child.id());
    let tail = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = tail(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = tail(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish within its timeout of {}: stopped",
                    argv.join(" "),
                    units::short_duration(limit.as_secs())
                ));
            }
            Err(e) => return Err(format!("waiting for {prog}: {e}")),
        }
    };
    drop(running);
    let text = |h: std::thread::JoinHandle<String>| h.join().unwrap_or_default();
    let (out, err) = (text(out), text(err));
    let last = |s: &str| s.trim().lines().last().unwrap_or("").to_string();
    if status.success() {
        Ok(format!("{} exited 0{}", argv.join(" "), {
            let l = last(&out);
            if l.is_empty() {
                String::new()
            } else {
                format!(": {l}")
            }
        }))
    } else {
        Err(format!(
            "{} failed ({status}){}",
            argv.join(" "),
            [last(&err), last(&out)]
                .into_iter()
                .find(|l| !l.is_empty())
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        ))
    }
}

fn wait_for(url: &str, limit: Duration) -> Result<String, String> {
    let hp = parse_tcp(url)?;
    let started = Instant::now();
    loop {
        let addrs: Vec<_> = hp
            .to_socket_addrs()
            .map(|a| a.collect())
            .unwrap_or_default();
        if addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok())
        {
            return Ok(format!(
                "{url} accepted a connection after {:.1}s",
                started.elapsed().as_secs_f64()
            ));
        }
        if started.elapsed() >= limit {
            return Err(format!(
                "{url} did not accept a connection within {}",
                units::short_duration(limit.as_secs())
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_ports_keep_their_timeouts() {
        assert!(run_command(&["true".into()], Duration::from_secs(5)).is_ok());
        let e = run_command(
            &["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.contains("exit status: 3") && e.ends_with(": nope"), "{e}");
        let t = Instant::now();
        let e = run_command(&["sleep".into(), "5".into()], Duration::from_millis(300)).unwrap_err();
        assert!(
            e.contains("did not finish") && t.elapsed() < Duration::from_secs(3),
            "{e}"
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(wait_for(&format!("tcp://127.0.0.1:{port}"), Duration::from_secs(2)).is_ok());
        drop(l);
        assert!(wait_for(
            &format!("tcp://127.0.0.1:{port}"),
            Duration::from_millis(300)
        )
        .is_err());
    }
}
