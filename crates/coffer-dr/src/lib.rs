//! Disaster recovery: whether the site could be recovered now, recovering it, and proving it.
//!
//! - [`assess`]: every source asked whether its server answers and how old its newest backup is
//!   against its RPO; every repository whether it opens, how full it is and whether stale locks
//!   block it; an overall status with a recommendation (a sentence and a command) per finding.
//! - [`recover`]: a scenario's steps planned (which snapshot each restore uses) and run against
//!   the live servers.
//! - [`drill`]: the same steps against scratch instances, with checks of what came back, timed
//!   against the targets; [`report`] writes its JSON and HTML report.
//!
//! The targets and scenarios themselves are config (`coffer_config::dr`); this crate returns
//! plans and reports that the CLI, the daemon and the dashboard only print.

pub mod assess;
pub mod drill;
pub mod recover;
pub mod report;

pub use assess::{assess, Assessment, Check, Level};

use coffer_config::{Config, RepositoryConfig, SourceEntry};

/// How long the newest successful run of `kind` (a recovery or a drill) of `scenario`
/// took: what the next one may be expected to take.
pub fn last_duration(
    cat: &coffer_catalog::Catalog,
    scenario: &str,
    kind: coffer_catalog::RunKind,
) -> Option<f64> {
    cat.last_of_kind(scenario, kind, &[coffer_catalog::Status::Success])
        .ok()
        .flatten()
        .and_then(|r| r.recovery.map(|x| x.rto_seconds))
}

/// The repositories a source's backups can be in: its own, those of the jobs that back it up,
/// or the only one declared.
pub fn repositories_of<'a>(cfg: &'a Config, e: &SourceEntry) -> Vec<&'a RepositoryConfig> {
    let mut names: Vec<&str> = Vec::new();
    if let Some(r) = &e.repository {
        names.push(r);
    }
    for j in cfg.job.iter().filter(|j| j.sources.contains(&e.name)) {
        if let Ok(r) = cfg.job_repository(j) {
            names.push(&r.name);
        }
        names.extend(j.copy_to.iter().map(String::as_str));
    }
    if names.is_empty() && cfg.repository.len() == 1 {
        names.push(&cfg.repository[0].name);
    }
    cfg.repository
        .iter()
        .filter(|r| names.contains(&r.name.as_str()))
        .collect()
}
