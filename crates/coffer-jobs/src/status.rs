//! Where each job stands: its state, last run, last good run, backup age against its RPO,
//! consecutive failures and next run. Shared by `coffer status` and the daemon's
//! `/api/status`, so both say the same.

use chrono::{DateTime, Utc};
use coffer_catalog::{Catalog, CatalogError, RunKind, Status};
use coffer_config::{Config, JobConfig};
use serde_json::{json, Value};

/// The RPO in force for `job` in whole seconds, measured from `since` (the newest good
/// backup): [`JobConfig::rpo_in_force`] with the alerting's `overdue_grace`, so that an
/// `overdue` here is a BackupOverdue alert there.
pub fn rpo_seconds(cfg: &Config, job: &JobConfig, since: DateTime<Utc>) -> Option<i64> {
    job.rpo_in_force(since, cfg.alerting.overdue_grace.0)
        .map(|d| d.as_secs() as i64)
}

/// One job's status object.
pub fn job_status(
    cfg: &Config,
    job: &JobConfig,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Result<Value, CatalogError> {
    let last = catalog
        .list_kind(Some(&job.name), Some(RunKind::Backup), 1)?
        .into_iter()
        .next();
    let good = catalog.last(&job.name, &[Status::Success, Status::Warning])?;
    let last_success = good.as_ref().and_then(|r| r.ended);
    let age = last_success.map(|e| (now - e).num_seconds());
    let rpo = rpo_seconds(cfg, job, last_success.unwrap_or(now));
    let overdue = matches!((age, rpo), (Some(a), Some(r)) if a > r);
    let next = job.next_run(now);
    let rpo_state = rpo_state(last_success, rpo, next, now);
    Ok(json!({
        "name": job.name,
        "sources": job.sources,
        "schedule": job.schedule,
        "paused": catalog.is_paused(&job.name)?,
        "status": last.as_ref().map(|r| r.status),
        "last_run": last.as_ref().map(|r| r.id.clone()),
        "last_start": last.as_ref().map(|r| r.started.to_rfc3339()),
        "last_success": last_success.map(|t| t.to_rfc3339()),
        "backup_age_seconds": age,
        "rpo_seconds": rpo,
        "overdue": overdue,
        "rpo_state": rpo_state,
        "consecutive_failures": catalog.consecutive_failures(&job.name)?,
        "next_run": next.map(|t| t.to_rfc3339()),
        "timezone": job.timezone,
    }))
}

/// The newest good backup against the RPO: `overdue` (older than the RPO now), `at_risk`
/// (the next scheduled run comes after the RPO runs out, so even a quick success there will
/// be late), `ok`, or `unknown` (no good backup yet, or no RPO).
pub fn rpo_state(
    last_success: Option<DateTime<Utc>>,
    rpo_seconds: Option<i64>,
    next_run: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> &'static str {
    let (Some(last), Some(rpo)) = (last_success, rpo_seconds) else {
        return "unknown";
    };
    let deadline = last + chrono::Duration::seconds(rpo);
    if now > deadline {
        "overdue"
    } else if next_run.is_some_and(|n| n > deadline) {
        "at_risk"
    } else {
        "ok"
    }
}

/// Every job's status.
pub fn status(
    cfg: &Config,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Result<Vec<Value>, CatalogError> {
    cfg.job
        .iter()
        .map(|j| job_status(cfg, j, catalog, now))
        .collect()
}
