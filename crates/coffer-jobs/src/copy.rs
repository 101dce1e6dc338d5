//! `copy_to` (the 3-2-1 rule): after a good run, the snapshots of the job's sources that a
//! second repository lacks are copied into it, and the job's retention is applied there too.
//!
//! Every snapshot the job made is offered, not only this run's: what an earlier copy
//! missed (target down, run cancelled) and the WAL that `archive_command` stored between runs
//! follow, and snapshots already present are skipped cheaply. A target whose storage is past
//! the critical threshold is not written to. A failed copy never fails the backup (its data
//! is safe in the main repository); it turns the run into WARNING.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_catalog::CopyResult;
use coffer_config::{Config, JobConfig, RepositoryConfig};
use coffer_maint::Progress;
use coffer_repo::lock::LockGuard;
use coffer_repo::Repository;

use crate::RetentionReport;

/// Copies `job`'s snapshots from `src` into `target`, then applies the job's retention there
/// (what it removed comes back beside the result).
pub fn copy_to(
    cfg: &Config,
    job: &JobConfig,
    src: &Arc<Repository>,
    target: &RepositoryConfig,
    lock_wait: Duration,
    stop: &AtomicBool,
) -> (CopyResult, Option<RetentionReport>) {
    let started = Instant::now();
    let mut out = CopyResult {
        repository: target.name.clone(),
        status: "FAILED".into(),
        ..Default::default()
    };
    let mut retention = None;
    match copy_inner(cfg, job, src, target, lock_wait, stop, &mut out) {
        Ok(r) => {
            out.status = "SUCCESS".into();
            retention = r;
        }
        Err(e) => {
            tracing::warn!(job = %job.name, repository = %target.name, error = %e, "copy_to failed");
            out.error = Some(e);
        }
    }
    out.duration_seconds = started.elapsed().as_secs_f64();
    (out, retention)
}

fn copy_inner(
    cfg: &Config,
    job: &JobConfig,
    src: &Arc<Repository>,
    target: &RepositoryConfig,
    lock_wait: Duration,
    stop: &AtomicBool,
    out: &mut CopyResult,
) -> Result<Option<RetentionReport>, String> {
    if let Some(u) = crate::storage::measure(target, &cfg.server.storage)? {
        if u.level == "critical" {
            return Err(format!(
                "storage of repository {:?} is {} (critical threshold {}%): not copied until space is freed",
                target.name,
                u.describe(),
                cfg.server.storage.critical
            ));
        }
    }
    let dst = crate::open_repository(target).map_err(|e| e.to_string())?;
    if dst.config().id == src.config().id {
        return Err("the copy_to repository is the job's own repository".into());
    }
    let _src_lock = LockGuard::acquire_wait(src, false, lock_wait)
        .map_err(|e| format!("locking the job's repository: {e}"))?;
    let dst_lock = LockGuard::acquire_wait(&dst, false, lock_wait)
        .map_err(|e| format!("locking {:?}: {e}", target.name))?;
    // The job's own snapshots and its sources' archived WAL: another job's or a hand-made
    // snapshot of the same source is not this job's to copy (its retention would never
    // thin it out there).
    let tags: Vec<String> = job.sources.iter().map(|s| format!("source:{s}")).collect();
    let own = crate::retention::job_tag(&job.name);
    let snaps: Vec<_> = src
        .snapshots()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|s| s.snap.tags.iter().any(|t| tags.contains(t)))
        .filter(|s| s.snap.tags.contains(&own) || coffer_maint::chains::is_log_file(&s.snap))
        .collect();
    src.load_index().map_err(|e| e.to_string())?;
    dst.load_index().map_err(|e| e.to_string())?;
    let progress = Progress::default();
    let threads = if dst.backend().location().is_local() {
        2
    } else {
        4
    };
    // The copy polls its progress for cancellation; the run's stop flag is forwarded to it.
    let done = AtomicBool::new(false);
    let report = std::thread::scope(|sc| {
        sc.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if stop.load(Ordering::Relaxed) {
                    progress.cancel();
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let r = coffer_maint::copy::copy(src, &dst, &snaps, threads, &progress);
        done.store(true, Ordering::Relaxed);
        r
    });
    let report = report.map_err(|e| e.to_string())?;
    out.snapshots = report.copied.len() as u64;
    out.stored_bytes = report.bytes_stored;
    drop(dst_lock);
    job.retention
        .as_ref()
        .map(|policy| {
            crate::retention::apply(&dst, job, policy, lock_wait)
                .map_err(|e| format!("copied, but retention in {:?} failed: {e}", target.name))
        })
        .transpose()
}
