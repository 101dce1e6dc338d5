//! A job's retention after a good run: the keep-policy applied to each of its sources'
//! snapshots (per source and host), archived WAL thinned to what the remaining base backups
//! need (`coffer_maint::chains`), the snapshot files removed and the repository pruned, all
//! under one exclusive lock.
//!
//! A job only ever considers the snapshots it made itself (tagged `job:NAME`): two jobs that
//! back up the same source keep their own histories by their own policies, and a snapshot
//! made by hand (`coffer backup --source`) is never a job's to delete. Archived WAL carries
//! no job tag (the server's `archive_command` pushes it); it is kept for every base backup
//! that remains in the repository, whichever job or person made it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use coffer_config::JobConfig;
use coffer_maint::prune::{self, MaxUnused, PruneOptions};
use coffer_maint::retention::{self, GroupBy, Policy};
use coffer_maint::{chains, Progress};
use coffer_repo::lock::LockGuard;
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::{Id, Repository};

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
    let now = chrono::Utc::now();
    let mut remove: Vec<&SnapshotWithId> = Vec::new();
    let mut logs = Vec::new();
    let own = job_tag(&job.name);
    for source in &job.sources {
        let tag = format!("source:{source}");
        let (l, backups): (Vec<&SnapshotWithId>, Vec<&SnapshotWithId>) = all
            .iter()
            .filter(|s| s.snap.tags.contains(&tag))
            .partition(|s| chains::is_log_file(&s.snap));
        logs.extend(l);
        let backups = backups.into_iter().filter(|s| s.snap.tags.contains(&own));
        let by_host = GroupBy {
            host: true,
            paths: false,
            tags: false,
        };
        for group in retention::group(backups, by_host) {
            let outcome = retention::apply(group.snapshots.iter().copied(), &policy, now);
            remove.extend(outcome.removed());
        }
    }
    let gone: HashSet<Id> = remove.iter().map(|s| s.id).collect();
    remove.extend(chains::log_removals(&logs, &all, &gone).remove);
    let mut report = RetentionReport {
        removed: remove.iter().map(|s| s.id.to_hex()).collect(),
        ..Default::default()
    };
    if remove.is_empty() {
        return Ok(report);
    }
    let ids: Vec<Id> = remove.iter().map(|s| s.id).collect();
    repo.remove_snapshots(&ids)
        .map_err(|e| format!("removing {} snapshots: {e}", ids.len()))?;
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
