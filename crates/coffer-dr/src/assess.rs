//! `dr assess`: could the site be recovered now, and how far back would it go?
//!
//! Per source: does its server answer (version and role where it says), how old is its newest
//! backup against its RPO. Per repository: does it open, are snapshot files damaged, how full
//! is its storage against `[server.storage]`, do stale locks block it, what did the last verify
//! find. Each finding that is not healthy comes with a recommendation: a sentence and the
//! command that fixes it. The overall status is the worst of all checks.
//!
//! Probes and repository listings run in parallel (a dead server costs its timeout once,
//! not once per source); nothing here writes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_catalog::{Catalog, Status};
use coffer_config::{units, Config, RepositoryConfig, SourceEntry};
use coffer_jobs::storage::{self, Usage};
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::Repository;
use serde::Serialize;

/// How ready something is. Ordered: the worst wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Recoverable within its targets.
    Healthy,
    /// Recoverable, but something needs attention (a server down, storage filling up).
    Degraded,
    /// A recovery now would miss its targets or cannot run.
    Critical,
}

impl Level {
    /// `healthy`, `degraded` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Degraded => "degraded",
            Level::Critical => "critical",
        }
    }

    /// The exit code `coffer dr assess` ends with: 0, 4 or 5.
    pub fn exit_code(self) -> i32 {
        match self {
            Level::Healthy => 0,
            Level::Degraded => 4,
            Level::Critical => 5,
        }
    }
}

/// One finding.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// `reachable`, `backup_age`, `storage`, ...
    pub name: &'static str,
    /// Its level.
    pub status: Level,
    /// What was found, in a sentence.
    pub message: String,
}

/// The newest snapshot of a source.
#[derive(Clone, Debug, Serialize)]
pub struct NewestBackup {
    /// Snapshot id (short).
    pub snapshot: String,
    /// The repository holding it.
    pub repository: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Its age at the assessment.
    pub age_seconds: i64,
}

/// One source.
#[derive(Clone, Debug, Serialize)]
pub struct Service {
    /// Source name.
    pub name: String,
    /// Source type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The worst of its checks.
    pub status: Level,
    /// Server version, when it answered.
    pub version: Option<String>,
    /// `primary` or `replica`, where the server says.
    pub role: Option<String>,
    /// Recovery point target.
    pub rpo_seconds: u64,
    /// Recovery time target.
    pub rto_seconds: u64,
    /// Its newest backup, if any was found.
    pub newest_backup: Option<NewestBackup>,
    /// The findings.
    pub checks: Vec<Check>,
}

/// One repository.
#[derive(Clone, Debug, Serialize)]
pub struct RepositoryHealth {
    /// Repository name.
    pub name: String,
    /// The worst of its checks.
    pub status: Level,
    /// Snapshots listed (None when it could not be opened).
    pub snapshots: Option<usize>,
    /// Storage against the thresholds, when measured.
    pub usage: Option<Usage>,
    /// Lock files whose holder is gone.
    pub stale_locks: usize,
    /// The newest finished verify: its run id, status and end.
    pub last_verify: Option<serde_json::Value>,
    /// The findings.
    pub checks: Vec<Check>,
}

/// The whole assessment, in the seeds' shape (`overall_status`, `services`,
/// `recommendations`) plus repositories.
#[derive(Clone, Debug, Serialize)]
pub struct Assessment {
    /// The worst status of any service or repository.
    pub overall_status: Level,
    /// When it was made.
    pub assessed_at: DateTime<Utc>,
    /// Per source.
    pub services: Vec<Service>,
    /// Per repository.
    pub repositories: Vec<RepositoryHealth>,
    /// Per scenario: its newest restore drill (from the catalog).
    pub drills: Vec<DrillHealth>,
    /// One sentence with a command per finding that is not healthy.
    pub recommendations: Vec<String>,
}

/// A scenario's newest drill.
#[derive(Clone, Debug, Serialize)]
pub struct DrillHealth {
    /// The scenario.
    pub scenario: String,
    /// Degraded when the newest drill failed, missed a target or is older than
    /// `[dr] drill_max_age`; healthy otherwise (also when never drilled: see the
    /// recommendations).
    pub status: Level,
    /// The newest finished drill: run id, status, end, RTO and RPO achieved.
    pub last_drill: Option<serde_json::Value>,
    /// What was found, in a sentence.
    pub message: String,
}

/// Opens a repository declared in the config (the caller decides where passwords come from).
pub type Opener<'a> = dyn Fn(&RepositoryConfig) -> Result<Arc<Repository>, String> + Sync + 'a;

struct Listed {
    snapshots: Result<Vec<SnapshotWithId>, String>,
    damaged: usize,
    stale_locks: usize,
}

/// Assesses every source and repository of `cfg`. `catalog` (when the config has one) gives
/// the last verify per repository.
pub fn assess(
    cfg: &Config,
    catalog: Option<&Catalog>,
    open: &Opener<'_>,
    now: DateTime<Utc>,
) -> Assessment {
    let cmd = format!(
        "coffer --config {}",
        shell_word(&cfg.path.display().to_string())
    );
    let (listed, probes) = std::thread::scope(|s| {
        let repos: Vec<_> = cfg
            .repository
            .iter()
            .map(|r| s.spawn(move || list(r, open)))
            .collect();
        let probes: Vec<_> = cfg
            .source
            .iter()
            .map(|e| s.spawn(move || probe(cfg, e)))
            .collect();
        (
            repos
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Listed::failed("the listing panicked"))
                })
                .collect::<Vec<Listed>>(),
            probes
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the probe panicked".into()))
                })
                .collect::<Vec<Result<coffer_sources::Probe, String>>>(),
        )
    });
    let mut recommendations = Vec::new();
    let mut repositories = Vec::new();
    for (r, l) in cfg.repository.iter().zip(&listed) {
        repositories.push(repository_health(
            cfg,
            r,
            l,
            catalog,
            &cmd,
            &mut recommendations,
        ));
    }
    let mut services = Vec::new();
    for (e, p) in cfg.source.iter().zip(probes) {
        services.push(service(cfg, e, p, &listed, now, &cmd, &mut recommendations));
    }
    let drills = catalog
        .map(|c| drills(cfg, c, now, &cmd, &mut recommendations))
        .unwrap_or_default();
    let overall_status = services
        .iter()
        .map(|s| s.status)
        .chain(repositories.iter().map(|r| r.status))
        .chain(drills.iter().map(|d| d.status))
        .max()
        .unwrap_or(Level::Healthy);
    Assessment {
        overall_status,
        assessed_at: now,
        services,
        repositories,
        drills,
        recommendations,
    }
}

/// The newest drill of every scenario. A failed drill, one that missed its targets or one
/// older than `drill_max_age` degrades the site: its backups are no longer proven. A site
/// that never drilled gets one recommendation, not one per scenario.
fn drills(
    cfg: &Config,
    cat: &Catalog,
    now: DateTime<Utc>,
    cmd: &str,
    recommendations: &mut Vec<String>,
) -> Vec<DrillHealth> {
    let max_age = cfg.dr.drill_max_age.0.as_secs() as i64;
    let mut out = Vec::new();
    for sc in cfg.scenarios() {
        let last = cat
            .last_of_kind(
                &sc.name,
                coffer_catalog::RunKind::Drill,
                &[Status::Success, Status::Warning, Status::Failed],
            )
            .ok()
            .flatten();
        let drill = format!("{cmd} dr drill --scenario {}", shell_word(&sc.name));
        let (status, message) = match &last {
            None => (Level::Healthy, "never drilled".to_string()),
            Some(r) => {
                let age = r.ended.map(|t| (now - t).num_seconds()).unwrap_or(0);
                let when = format!("{} ago", units::short_duration(age.max(0) as u64));
                match r.status {
                    Status::Failed => {
                        let why = r.errors.first().cloned().unwrap_or_default();
                        recommendations.push(format!(
                            "the newest drill of {:?} failed ({why}): fix it and drill again: {drill}",
                            sc.name
                        ));
                        (
                            Level::Degraded,
                            format!("the newest drill ({when}) failed: {why}"),
                        )
                    }
                    Status::Warning => {
                        let why = r.warnings.join("; ");
                        recommendations.push(format!(
                            "the newest drill of {:?} missed its targets ({why}): speed up the restore or back up more often, then drill again: {drill}",
                            sc.name
                        ));
                        (
                            Level::Degraded,
                            format!("the newest drill ({when}) missed its targets: {why}"),
                        )
                    }
                    _ if age > max_age => {
                        recommendations.push(format!(
                            "the newest passed drill of {:?} was {when} (at most {}): {drill}",
                            sc.name,
                            units::short_duration(max_age as u64)
                        ));
                        (
                            Level::Degraded,
                            format!("the newest drill passed {when}: overdue"),
                        )
                    }
                    _ => (Level::Healthy, format!("the newest drill passed {when}")),
                }
            }
        };
        out.push(DrillHealth {
            scenario: sc.name,
            status,
            last_drill: last.map(|r| {
                serde_json::json!({
                    "run": r.id,
                    "status": r.status,
                    "ended": r.ended,
                    "rto_seconds": r.recovery.as_ref().map(|x| x.rto_seconds),
                    "rpo_seconds": r.recovery.as_ref().and_then(|x| x.rpo_seconds),
                    "report": r.recovery.as_ref().and_then(|x| x.report.clone()),
                })
            }),
            message,
        });
    }
    if !out.is_empty() && out.iter().all(|d| d.last_drill.is_none()) {
        let name = out
            .iter()
            .find(|d| d.scenario == "full_disaster")
            .unwrap_or(&out[0])
            .scenario
            .clone();
        recommendations.push(format!(
            "no restore drill has proven these backups yet: {cmd} dr drill --scenario {}",
            shell_word(&name)
        ));
    }
    out
}

impl Listed {
    fn failed(why: &str) -> Listed {
        Listed {
            snapshots: Err(why.into()),
            damaged: 0,
            stale_locks: 0,
        }
    }
}

fn list(r: &RepositoryConfig, open: &Opener<'_>) -> Listed {
    let repo = match open(r) {
        Ok(repo) => repo,
        Err(e) => return Listed::failed(&e),
    };
    let stale_locks = coffer_repo::lock::list_locks(&repo)
        .map(|l| l.iter().filter(|(_, l)| l.is_stale()).count())
        .unwrap_or(0);
    match repo.snapshots_and_damage() {
        Ok((snaps, damaged)) => Listed {
            snapshots: Ok(snaps),
            damaged: damaged.len(),
            stale_locks,
        },
        Err(e) => Listed::failed(&e.to_string()),
    }
}

fn probe(cfg: &Config, e: &SourceEntry) -> Result<coffer_sources::Probe, String> {
    let source = coffer_sources::build(cfg, e).map_err(|e| e.to_string())?;
    source.probe().map_err(|e| e.to_string())
}

fn repository_health(
    cfg: &Config,
    r: &RepositoryConfig,
    l: &Listed,
    catalog: Option<&Catalog>,
    cmd: &str,
    recs: &mut Vec<String>,
) -> RepositoryHealth {
    let mut checks = Vec::new();
    match &l.snapshots {
        Ok(s) => checks.push(Check {
            name: "reachable",
            status: Level::Healthy,
            message: format!("opens; {} snapshots", s.len()),
        }),
        Err(e) => {
            checks.push(Check {
                name: "reachable",
                status: Level::Critical,
                message: format!("cannot be opened: {e}"),
            });
            recs.push(format!(
                "Repository {:?} cannot be opened, so nothing in it can be restored: check its url, \
                 password and network, then: {cmd} snapshots --repository {}",
                r.name, r.name
            ));
        }
    }
    if l.damaged > 0 {
        checks.push(Check {
            name: "snapshot_files",
            status: Level::Degraded,
            message: format!("{} snapshot files cannot be read", l.damaged),
        });
        recs.push(format!(
            "Repository {:?} has {} damaged snapshot files (they block prune): {cmd} repair snapshots --forget",
            r.name, l.damaged
        ));
    }
    let usage = match storage::measure(r, &cfg.server.storage) {
        Ok(u) => u,
        Err(e) => {
            checks.push(Check {
                name: "storage",
                status: Level::Degraded,
                message: format!("cannot be measured: {e}"),
            });
            None
        }
    };
    if let Some(u) = &usage {
        let status = match u.level {
            "critical" => Level::Critical,
            "high" => Level::Degraded,
            _ => Level::Healthy,
        };
        checks.push(Check {
            name: "storage",
            status,
            message: format!("{} (level {})", u.describe(), u.level),
        });
        if status != Level::Healthy {
            recs.push(format!(
                "Repository {:?} is {}{}: make room (forget old snapshots and prune), e.g. \
                 {cmd} forget --keep-daily 7 --keep-weekly 4 --prune",
                r.name,
                u.describe(),
                if status == Level::Critical {
                    "; backups into it are paused"
                } else {
                    ""
                }
            ));
        }
    }
    if l.stale_locks > 0 {
        checks.push(Check {
            name: "locks",
            status: Level::Degraded,
            message: format!("{} stale locks (their holders are gone)", l.stale_locks),
        });
        recs.push(format!(
            "Repository {:?} has {} stale locks that block prune and restore's exclusive steps: {cmd} unlock",
            r.name, l.stale_locks
        ));
    }
    let last_verify = catalog.and_then(|c| c.last_verify(&r.name).ok().flatten());
    if let Some(v) = &last_verify {
        let failed = v.status == Status::Failed;
        checks.push(Check {
            name: "verify",
            status: if failed {
                Level::Critical
            } else {
                Level::Healthy
            },
            message: format!(
                "last verify {} ({}){}",
                v.status.as_str(),
                v.id,
                v.errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        });
        if failed {
            recs.push(format!(
                "The last verify of repository {:?} found damaged data: see what is affected and repair it: \
                 {cmd} check --read-data, then {cmd} repair index and {cmd} repair snapshots",
                r.name
            ));
        }
    }
    RepositoryHealth {
        name: r.name.clone(),
        status: worst(&checks),
        snapshots: l.snapshots.as_ref().ok().map(Vec::len),
        usage,
        stale_locks: l.stale_locks,
        last_verify: last_verify.map(|v| {
            serde_json::json!({
                "run": v.id,
                "status": v.status.as_str(),
                "ended": v.ended.map(|t| t.to_rfc3339()),
            })
        }),
        checks,
    }
}

#[allow(clippy::too_many_arguments)]
fn service(
    cfg: &Config,
    e: &SourceEntry,
    probe: Result<coffer_sources::Probe, String>,
    listed: &[Listed],
    now: DateTime<Utc>,
    cmd: &str,
    recs: &mut Vec<String>,
) -> Service {
    let targets = cfg.targets(e);
    let mut checks = Vec::new();
    let (version, role) = match probe {
        Ok(p) if p.checked => {
            let mut what: Vec<String> = [p.version.clone(), p.role.clone(), p.detail.clone()]
                .into_iter()
                .flatten()
                .collect();
            if what.is_empty() {
                what.push("answers".into());
            }
            checks.push(Check {
                name: "reachable",
                status: Level::Healthy,
                message: what.join(", "),
            });
            (p.version, p.role)
        }
        Ok(_) => {
            checks.push(Check {
                name: "reachable",
                status: Level::Healthy,
                message: format!("not checked (a {} source has no server to ask)", e.kind),
            });
            (None, None)
        }
        Err(why) => {
            checks.push(Check {
                name: "reachable",
                status: Level::Degraded,
                message: format!("does not answer: {why}"),
            });
            recs.push(format!(
                "Source {:?} does not answer: start the server or fix its settings; if it is lost, \
                 restore it from its newest backup: {cmd} restore --source {}",
                e.name, e.name
            ));
            (None, None)
        }
    };

    let tag = format!("source:{}", e.name);
    let mut newest: Option<NewestBackup> = None;
    let mut unreadable: Vec<&str> = Vec::new();
    let repos = crate::repositories_of(cfg, e);
    for r in &repos {
        let Some(l) = cfg
            .repository
            .iter()
            .position(|x| x.name == r.name)
            .and_then(|i| listed.get(i))
        else {
            continue;
        };
        let Ok(snaps) = &l.snapshots else {
            unreadable.push(&r.name);
            continue;
        };
        for s in snaps.iter().filter(|s| s.snap.tags.contains(&tag)) {
            let t = s.snap.time.with_timezone(&Utc);
            if newest.as_ref().is_none_or(|n| t > n.time) {
                newest = Some(NewestBackup {
                    snapshot: s.id.short(),
                    repository: r.name.clone(),
                    time: t,
                    age_seconds: (now - t).num_seconds().max(0),
                });
            }
        }
    }
    let rpo = units::short_duration(targets.rpo.as_secs());
    let backup_cmd = match cfg.job.iter().find(|j| j.sources.contains(&e.name)) {
        Some(j) => format!("{cmd} job run {}", j.name),
        None => format!("{cmd} backup --source {}", e.name),
    };
    match &newest {
        Some(n) if n.age_seconds as u64 > targets.rpo.as_secs() => {
            let age = units::short_duration(n.age_seconds as u64);
            checks.push(Check {
                name: "backup_age",
                status: Level::Critical,
                message: format!(
                    "newest backup {} in {:?} is {age} old, over the RPO of {rpo}",
                    n.snapshot, n.repository
                ),
            });
            recs.push(format!(
                "Source {:?}: a recovery now would lose {age} of data (RPO {rpo}): back it up now with \
                 {backup_cmd}, then see why scheduled backups stopped: {cmd} runs",
                e.name
            ));
        }
        Some(n) => checks.push(Check {
            name: "backup_age",
            status: Level::Healthy,
            message: format!(
                "newest backup {} in {:?} is {} old (RPO {rpo})",
                n.snapshot,
                n.repository,
                units::short_duration(n.age_seconds as u64)
            ),
        }),
        None if !unreadable.is_empty() && unreadable.len() == repos.len() => checks.push(Check {
            name: "backup_age",
            status: Level::Critical,
            message: format!(
                "unknown: its repository {} cannot be opened",
                unreadable.join(", ")
            ),
        }),
        None => {
            checks.push(Check {
                name: "backup_age",
                status: Level::Critical,
                message: if repos.is_empty() {
                    "no repository is known for it (no `repository` key and no job backs it up)"
                        .into()
                } else {
                    "never backed up: there is nothing to recover it from".into()
                },
            });
            recs.push(format!("Source {:?} has no backup: {backup_cmd}", e.name));
        }
    }
    Service {
        name: e.name.clone(),
        kind: e.kind.clone(),
        status: worst(&checks),
        version,
        role,
        rpo_seconds: targets.rpo.as_secs(),
        rto_seconds: targets.rto.as_secs(),
        newest_backup: newest,
        checks,
    }
}

fn worst(checks: &[Check]) -> Level {
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Level::Healthy)
}

/// Quotes a path for a pasteable command line when it needs it.
fn shell_word(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_exit_codes() {
        assert!(Level::Critical > Level::Degraded && Level::Degraded > Level::Healthy);
        assert_eq!(
            [Level::Healthy, Level::Degraded, Level::Critical].map(Level::exit_code),
            [0, 4, 5]
        );
        assert_eq!(shell_word("/etc/coffer.toml"), "/etc/coffer.toml");
        assert_eq!(shell_word("/tmp/a b"), "'/tmp/a b'");
    }
}
