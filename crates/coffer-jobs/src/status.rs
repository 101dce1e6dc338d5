//! Where each job stands: its state, last run, last good run, backup age against its RPO,
//! consecutive failures and next run. Shared by `coffer status` and the daemon's
//! `/api/status`, so both say the same.

use chrono::{DateTime, Utc};
use coffer_catalog::{Catalog, CatalogError, RunKind, Status};
use coffer_config::{Config, JobConfig};
use serde_json::{json, Value};

/// The next time `job` is due strictly after `after`, in its time zone (the host's if none).
pub fn next_run(job: &JobConfig, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    next_occurrence(&job.schedule, job.timezone.as_deref(), after)
}

/// The next time `job`'s verify is due strictly after `after`.
pub fn next_verify(job: &JobConfig, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    next_occurrence(
        job.verify_schedule.as_deref()?,
        job.timezone.as_deref(),
        after,
    )
}

/// The next time a cron `schedule` fires strictly after `after`, in `timezone` (the host's
/// if none).
pub fn next_occurrence(
    schedule: &str,
    timezone: Option<&str>,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let cron = coffer_config::jobs::parse_schedule(schedule).ok()?;
    // croner carries the sub-second part of `after` into its answer.
    let after = chrono::DurationRound::duration_trunc(after, chrono::Duration::seconds(1)).ok()?;
    match timezone {
        Some(tz) => {
            let tz = coffer_config::jobs::parse_timezone(tz).ok()?;
            cron.find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }
        None => cron
            .find_next_occurrence(&after.with_timezone(&chrono::Local), false)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// The RPO in force: the job's, or two schedule intervals when it has none.
pub fn rpo_seconds(job: &JobConfig, now: DateTime<Utc>) -> Option<i64> {
    if let Some(r) = job.rpo {
        return Some(r.secs() as i64);
    }
    let a = next_run(job, now)?;
    let b = next_run(job, a)?;
    Some(2 * (b - a).num_seconds())
}

/// One job's status object.
pub fn job_status(
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
    let rpo = rpo_seconds(job, now);
    let overdue = matches!((age, rpo), (Some(a), Some(r)) if a > r);
    let next = next_run(job, now);
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
        .map(|j| job_status(j, catalog, now))
        .collect()
}
