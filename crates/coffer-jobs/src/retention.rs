//! A job's retention after a good run: which snapshots are the job's to judge and how they
//! group (per source and host); the plan itself (keep policy, WAL chains) and its execution
//! are `coffer_maint::forget`'s, as for `coffer forget`. Then the repository is pruned, all
//! under one exclusive lock.
//!
//! A job only ever considers the snapshots it made itself (tagged `job:NAME`): two jobs that
//! back up the same source keep their own histories by their own policies, and a snapshot
//! made by hand (`coffer backup --source`) is never a job's to delete. Archived WAL carries
//! no job tag (the server's `archive_command` pushes it); it is kept for every base backup
//! that remains in the repository, whichever job or person made it.

use std::sync::Arc;
use std::time::Duration;

use coffer_config::JobConfig;
use coffer_maint::forget::{self, ForgetPlan};
use coffer_maint::prune::{self, MaxUnused, PruneOptions};
use coffer_maint::retention::{self, GroupBy, Policy};
use coffer_maint::Progress;
use coffer_repo::lock::LockGuard;
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::Repository;

/// What retention did.
#[derive(Debug, Default)]
pub struct RetentionReport {
    /// Snapshots removed (full ids).
    pub removed: Vec<String>,
    /// Bytes freed by prune.
    pub freed_bytes: u64,
}

/// The tag every snapshot of `job`'s runs carries.
pub(crate) fn job_tag(job: &str) -> String {
    format!("job:{job}")
}

/// What `job`'s policy would remove: per source, its own snapshots grouped by host; the
/// sources' archived WAL by what the base backups that stay (anyone's) still need.
pub fn plan<'a>(all: &'a [SnapshotWithId], job: &JobConfig, policy: &Policy) -> ForgetPlan<'a> {
    let own = job_tag(&job.name);
    let mut groups = Vec::new();
    let mut logs = Vec::new();
    for source in &job.sources {
        let tag = format!("source:{source}");
        let (l, backups) = forget::split_logs(all.iter().filter(|s| s.snap.tags.contains(&tag)));
        logs.extend(l);
        let by_host = GroupBy {
            host: true,
            paths: false,
            tags: false,
        };
        groups.extend(retention::group(
            backups.into_iter().filter(|s| s.snap.tags.contains(&own)),
            by_host,
        ));
    }
    forget::plan(groups, &logs, all, policy, chrono::Utc::now())
}

/// Applies `job`'s policy to its sources' snapshots and prunes.
pub fn apply(
    repo: &Arc<Repository>,
    job: &JobConfig,
    policy: &toml::Table,
    lock_wait: Duration,
) -> Result<RetentionReport, String> {
    let policy: Policy = toml::Value::Table(policy.clone())
        .try_into()
        .map_err(|e: toml::de::Error| format!("job {:?}: retention: {}", job.name, e.message()))?;
    policy.validate().map_err(|e| e.to_string())?;
    let lock = LockGuard::acquire_wait(repo, true, lock_wait).map_err(|e| e.to_string())?;
    let all = repo.snapshots().map_err(|e| e.to_string())?;
    let plan = plan(&all, job, &policy);
    if plan.removed().is_empty() {
        return Ok(RetentionReport::default());
    }
    let ids =
        forget::execute(repo, &plan, &lock).map_err(|e| format!("removing snapshots: {e}"))?;
    let mut report = RetentionReport {
        removed: ids.iter().map(|i| i.to_hex()).collect(),
        ..Default::default()
    };
    let opts = PruneOptions {
        max_unused: MaxUnused::parse("5%").map_err(|e| e.to_string())?,
        max_repack_bytes: None,
        dry_run: false,
        upload_threads: 2,
    };
    repo.load_index().map_err(|e| e.to_string())?;
    let progress = Progress::default();
    let plan = prune::plan(repo, &opts, &progress).map_err(|e| e.to_string())?;
    let stats = prune::execute(repo, plan, &opts, &lock, &progress).map_err(|e| e.to_string())?;
    report.freed_bytes = stats.bytes_freed;
    Ok(report)
}
