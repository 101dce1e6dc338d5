//! Verify runs: a job's `verify_schedule` reads back part of its repository (`check
//! --read-data-subset`, default 5% of the packs at random) and records the outcome in the run
//! catalog as a run of kind `verify`: SUCCESS when everything read back decrypts and hashes
//! right, FAILED with the damaged packs and affected snapshots when not. The repository's
//! last verify status is what `/metrics` and `/api/repositories` show.
//!
//! The check runs in the caller's process (it only reads) under a non-exclusive lock, so
//! backups may run alongside; `max_runtime` and cancellation stop it at its next pack.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coffer_catalog::{Catalog, Run, RunKind, Status, VerifyResult};
use coffer_config::{Config, JobConfig};
use coffer_maint::check::{self, CheckOptions, Subset};
use coffer_maint::Progress;
use coffer_repo::lock::LockGuard;

use crate::{open_repository, JobError, RunOptions};

/// The subset read when the job does not say.
pub const DEFAULT_SUBSET: &str = "5%";

/// Verifies `job`'s repository and returns the finished verify run (also in `catalog`).
pub fn verify_job(
    cfg: &Config,
    job: &JobConfig,
    catalog: &Catalog,
    opts: &RunOptions,
) -> Result<Run, JobError> {
    let repo_cfg = cfg.job_repository(job)?;
    let mut run = crate::begin(&job.name, &repo_cfg.name, RunKind::Verify, opts);
    let subset_text = job
        .verify_subset
        .clone()
        .unwrap_or_else(|| DEFAULT_SUBSET.into());
    run.verify = Some(VerifyResult {
        subset: subset_text.clone(),
        ..Default::default()
    });
    if catalog.is_paused(&job.name)? {
        crate::end_paused(
            catalog,
            &mut run,
            "the job is paused (coffer job resume NAME)",
        )?;
        return Ok(run);
    }
    crate::record(catalog, &mut run)?;
    if let Some(f) = &opts.on_change {
        f(&run);
    }
    let started = Instant::now();
    let status = match check_repository(repo_cfg, job, &subset_text, opts, &mut run) {
        Ok(true) => Status::Success,
        Ok(false) => Status::Failed,
        Err(e) => {
            run.errors.push(e);
            Status::Failed
        }
    };
    tracing::info!(job = %job.name, repository = %repo_cfg.name, status = %status, secs = started.elapsed().as_secs_f64(), "verify finished");
    run.finish(status);
    catalog.update(&run)?;
    if let Some(f) = &opts.on_change {
        f(&run);
    }
    Ok(run)
}

/// Runs the check; Ok(false) when it found damage (listed in `run`).
fn check_repository(
    repo_cfg: &coffer_config::RepositoryConfig,
    job: &JobConfig,
    subset_text: &str,
    opts: &RunOptions,
    run: &mut Run,
) -> Result<bool, String> {
    let subset = Subset::parse(subset_text)
        .map_err(|e| format!("job {:?}: key `verify_subset`: {e}", job.name))?;
    let repo = open_repository(repo_cfg).map_err(|e| e.to_string())?;
    let _lock = LockGuard::acquire_wait(&repo, false, opts.lock_wait)
        .map_err(|e| format!("locking repository {:?}: {e}", repo_cfg.name))?;
    let progress = Progress::default();
    let deadline = Instant::now() + job.max_runtime.0;
    let done = AtomicBool::new(false);
    let timed_out = AtomicBool::new(false);
    let report = std::thread::scope(|sc| {
        sc.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if Instant::now() >= deadline {
                    timed_out.store(true, Ordering::Relaxed);
                    progress.cancel();
                    return;
                }
                if opts.cancel.load(Ordering::Relaxed) {
                    progress.cancel();
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let r = check::check(
            &repo,
            &CheckOptions {
                read_data: Some(subset),
                max_paths: 20,
            },
            &progress,
        );
        done.store(true, Ordering::Relaxed);
        r
    });
    let report = report.map_err(|e| {
        if timed_out.load(Ordering::Relaxed) {
            format!(
                "cancelled: the verify exceeded the job's max_runtime of {}",
                job.max_runtime
            )
        } else {
            e.to_string()
        }
    })?;
    let v = run.verify.get_or_insert_with(Default::default);
    v.snapshots = report.snapshots;
    v.packs = report.packs;
    v.packs_read = report.packs_read;
    v.bytes_read = report.bytes_read;
    v.problems = report.errors.len() as u64;
    v.damaged_packs = report
        .damaged_packs
        .iter()
        .map(|d| d.pack.to_hex())
        .collect();
    v.affected_snapshots = report
        .affected_snapshots
        .iter()
        .map(|a| a.snapshot.to_hex())
        .collect();
    for p in report.errors.iter().take(50) {
        run.errors
            .push(format!("{} {}: {}", p.kind, p.id, p.message));
    }
    if report.errors.len() > 50 {
        run.errors.push(format!(
            "... and {} more problems",
            report.errors.len() - 50
        ));
    }
    Ok(report.ok())
}
