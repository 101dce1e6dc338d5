//! Running a `[[job]]`: back up its sources into its repository, retry what failed with
//! exponential backoff, cancel a run that outlives `max_runtime`, apply the job's retention
//! after a good run (never after a failed one), and record every step in the run catalog.
//! `coffer job run` calls [`run_job`] directly; the daemon's scheduler calls it from its
//! worker pool.
//!
//! A run's state moves RUNNING → (RETRY → RUNNING)* → SUCCESS | WARNING | FAILED; a job that is
//! paused records one PAUSED run and does nothing. Every snapshot a run makes is tagged
//! `run:<id>`, `job:<name>` and `audit:<seq>-<mac>` (the audit log's head) besides the source's own tags, so a run can be restored as a
//! whole (`coffer restore --run ID`). A retry only runs the sources that failed.

pub mod audit;
mod copy;
pub mod protocol;
mod retention;
pub mod run_restore;
mod source;
pub mod status;
pub mod storage;
pub mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_catalog::{Catalog, CatalogError, Run, RunKind, SourceResult, Status};
use coffer_config::{Config, JobConfig, RepositoryConfig};
use coffer_repo::backend::Location;
use coffer_repo::Repository;

pub use retention::RetentionReport;
pub use source::{backup_source, SourceUsage};

/// Why a job could not be run at all (a failing source is a FAILED run, not an error).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] coffer_config::ConfigError),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The repository could not be opened.
    #[error("repository {name:?}: {message}")]
    Repository {
        /// Its name in the config.
        name: String,
        /// What happened.
        message: String,
    },
}

/// Opens a repository declared in the config, with its password file or password.
pub fn open_repository(repo: &RepositoryConfig) -> Result<Arc<Repository>, JobError> {
    let err = |message: String| JobError::Repository {
        name: repo.name.clone(),
        message,
    };
    let password = match (&repo.password_file, &repo.password) {
        (Some(f), _) => std::fs::read_to_string(&**f)
            .map_err(|e| err(format!("reading password_file {}: {e}", &**f)))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, Some(p)) => p.0.clone(),
        (None, None) => {
            return Err(err(
                "no password_file or password: a job cannot prompt for one".into(),
            ))
        }
    };
    coffer_config::secrets::register(&password);
    let location = Location::parse(&repo.url).map_err(|e| err(e.to_string()))?;
    Repository::open(&location, &password)
        .map(Arc::new)
        .map_err(|e| err(e.to_string()))
}

/// What triggered a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule.
    Schedule,
    /// `coffer job run`.
    Manual,
    /// A schedule missed while the daemon was down.
    Misfire,
    /// The HTTP API.
    Api,
}

impl Trigger {
    /// `schedule`, `manual`, `misfire` or `api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Misfire => "misfire",
            Trigger::Api => "api",
        }
    }
}

/// A callback for a run's state changes.
pub type OnChange = Box<dyn Fn(&Run) + Send + Sync>;

/// Settings of one run besides the job's own.
pub struct RunOptions {
    /// The coffer binary each source's backup runs in.
    pub exe: std::path::PathBuf,
    /// Why it runs.
    pub trigger: Trigger,
    /// Raised to stop the run (shutdown, Ctrl-C); only read, never set, by the run.
    pub cancel: Arc<AtomicBool>,
    /// How long to wait for a repository lock.
    pub lock_wait: Duration,
    /// Called after every state change (for logs and progress).
    pub on_change: Option<OnChange>,
    /// The QUEUED row the daemon recorded when it queued this run: the run keeps its id.
    pub queued: Option<Run>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            exe: std::env::current_exe().unwrap_or_else(|_| "coffer".into()),
            trigger: Trigger::Manual,
            cancel: Arc::new(AtomicBool::new(false)),
            lock_wait: Duration::from_secs(600),
            on_change: None,
            queued: None,
        }
    }
}

fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and has no other effect.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// The run to record: the queued one (now RUNNING from now on), or a new one.
fn begin(job: &str, repository: &str, kind: RunKind, opts: &RunOptions) -> Run {
    match &opts.queued {
        Some(q) => {
            let mut r = q.clone();
            r.status = Status::Running;
            r.started = chrono::Utc::now();
            r
        }
        None => {
            let mut r = Run::start(job, repository, opts.trigger.as_str(), 1);
            r.kind = kind;
            r
        }
    }
}

/// Records `run` as PAUSED (not run) with the reason.
fn end_paused(catalog: &Catalog, run: &mut Run, why: &str) -> Result<(), CatalogError> {
    run.errors.push(why.to_string());
    record(catalog, run)?;
    run.finish(Status::Paused);
    catalog.update(run)
}

/// Stores a run that began: inserted when new, updated when it was queued.
fn record(catalog: &Catalog, run: &mut Run) -> Result<(), CatalogError> {
    if run.id.is_empty() {
        catalog.insert(run)
    } else {
        catalog.update(run)
    }
}

/// Notes in the catalog which snapshots `job`'s retention removed in `run` (in `copy`, a
/// copy_to repository), so that a restore asking for one can say why it is gone.
fn record_forgotten(
    catalog: &Catalog,
    report: &RetentionReport,
    job: &JobConfig,
    run: &Run,
    copy: Option<&str>,
) {
    if report.removed.is_empty() {
        return;
    }
    let by = match copy {
        Some(r) => format!(
            "retention of job {} in repository {r} (run {})",
            job.name, run.id
        ),
        None => format!("retention of job {} (run {})", job.name, run.id),
    };
    if let Err(e) = catalog.record_forgotten(&report.removed, &by) {
        tracing::warn!(job = %job.name, error = %e, "recording removed snapshots in the catalog");
    }
}

/// Raises `stop` when `deadline` passes (setting `timed_out`) or `cancel` is raised, until
/// `done`.
fn watchdog(
    deadline: Instant,
    cancel: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    timed_out: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            if Instant::now() >= deadline {
                timed_out.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
                return;
            }
            if cancel.load(Ordering::Relaxed) {
                stop.store(true, Ordering::Relaxed);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Runs `job` to its end and returns the finished run (also stored in `catalog`).
pub fn run_job(
    cfg: &Config,
    job: &JobConfig,
    catalog: &Catalog,
    opts: &RunOptions,
) -> Result<Run, JobError> {
    let repo_cfg = cfg.job_repository(job)?;
    let notify = |r: &Run| {
        if let Some(f) = &opts.on_change {
            f(r)
        }
    };
    let mut run = begin(&job.name, &repo_cfg.name, RunKind::Backup, opts);
    if catalog.is_paused(&job.name)? {
        end_paused(
            catalog,
            &mut run,
            "the job is paused (coffer job resume NAME)",
        )?;
        notify(&run);
        return Ok(run);
    }
    // The storage guard: critical pauses backups into the repository, high makes room first.
    let thresholds = &cfg.server.storage;
    let usage = match storage::measure(repo_cfg, thresholds) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(event = "storage", repository = %repo_cfg.name, error = %e, "storage not measured");
            run.warnings.push(e);
            None
        }
    };
    if let Some(u) = &usage {
        let pct = u.ratio * 100.0;
        match u.level {
            "critical" => {
                tracing::error!(event = "storage", severity = "critical", repository = %repo_cfg.name, percent = pct, "storage critical: backups paused");
                let why = format!(
                    "storage of repository {:?} is {} (critical threshold {}%): backups into it are paused until space is freed",
                    repo_cfg.name, u.describe(), thresholds.critical
                );
                end_paused(catalog, &mut run, &why)?;
                notify(&run);
                return Ok(run);
            }
            "high" | "low" => {
                tracing::warn!(event = "storage", severity = u.level, repository = %repo_cfg.name, percent = pct, "storage above threshold");
                run.warnings.push(format!(
                    "storage of repository {:?} is {} (above the {} threshold)",
                    repo_cfg.name,
                    u.describe(),
                    u.level
                ));
            }
            _ => {}
        }
    }
    record(catalog, &mut run)?;
    let cpu0 = own_cpu_seconds();
    let mut cpu_children = 0.0;
    let mut peak_rss = 0u64;

    // The run's own stop flag: raised by the watchdog at max_runtime or when the caller
    // cancels (shutdown, Ctrl-C). The caller's flag is only read, so a run that times out
    // stops itself and nothing else.
    let deadline = Instant::now() + job.max_runtime.0;
    let stop = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = watchdog(
        deadline,
        Arc::clone(&opts.cancel),
        Arc::clone(&stop),
        Arc::clone(&timed_out),
        Arc::clone(&done),
    );

    // Opened here for retention, and so that a repository that cannot be opened fails the
    // run once instead of once per source.
    let repo = open_repository(repo_cfg);
    if let (Some("high"), Some(policy), Ok(r)) =
        (usage.as_ref().map(|u| u.level), &job.retention, &repo)
    {
        match retention::apply(r, job, policy, opts.lock_wait) {
            Ok(rep) => {
                record_forgotten(catalog, &rep, job, &run, None);
                run.warnings.push(format!(
                    "storage high: retention applied before the backup ({} snapshots removed, {} freed)",
                    rep.removed.len(), coffer_config::units::bytes(rep.freed_bytes)
                ))
            }
            Err(e) => run
                .warnings
                .push(format!("storage high: early retention failed: {e}")),
        }
    }
    let mut results: Vec<Option<SourceResult>> = vec![None; job.sources.len()];
    let mut attempt = 1u32;
    loop {
        run.attempt = attempt;
        run.status = Status::Running;
        catalog.update(&run)?;
        notify(&run);
        for (i, name) in job.sources.iter().enumerate() {
            if results[i].as_ref().is_some_and(|r| r.status != "FAILED") {
                continue;
            }
            let mut r = match &repo {
                Ok(_) => {
                    let mut tags = vec![format!("run:{}", run.id), retention::job_tag(&job.name)];
                    // The audit chain's head travels with the snapshot: a log cut after
                    // this point is caught even if the catalog is lost too.
                    tags.extend(audit::head_tag(catalog));
                    let (r, usage) =
                        source::backup_source(&cfg.path, &repo_cfg.name, name, &tags, opts, &stop);
                    cpu_children += usage.cpu_seconds;
                    peak_rss = peak_rss.max(usage.peak_rss_bytes);
                    r
                }
                Err(e) => SourceResult {
                    source: name.clone(),
                    status: "FAILED".into(),
                    error: Some(e.to_string()),
                    ..Default::default()
                },
            };
            r.kind = cfg
                .source
                .iter()
                .find(|s| &s.name == name)
                .map(|s| s.kind.clone())
                .unwrap_or_default();
            results[i] = Some(r);
            run.sources = results.iter().flatten().cloned().collect();
            catalog.update(&run)?;
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        let failed = results
            .iter()
            .any(|r| r.as_ref().is_none_or(|r| r.status == "FAILED"));
        if !failed || attempt > job.retries || stop.load(Ordering::Relaxed) {
            break;
        }
        // Exponential backoff, cut short by cancellation or the deadline.
        let wait = job.retry_delay.0 * 2u32.saturating_pow(attempt - 1);
        run.status = Status::Retry;
        catalog.update(&run)?;
        notify(&run);
        tracing::warn!(job = %job.name, attempt, wait_secs = wait.as_secs(), "sources failed; retrying");
        let until = Instant::now() + wait;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        attempt += 1;
    }
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();

    run.sources = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.clone().unwrap_or_else(|| SourceResult {
                source: job.sources[i].clone(),
                status: "FAILED".into(),
                error: Some("not run: the run was cancelled".into()),
                ..Default::default()
            })
        })
        .collect();
    if timed_out.load(Ordering::Relaxed) {
        run.errors.push(format!(
            "cancelled: the run exceeded its max_runtime of {}",
            job.max_runtime
        ));
    } else if stop.load(Ordering::Relaxed) {
        run.errors.push("cancelled".into());
    }
    let any_failed = run.sources.iter().any(|s| s.status == "FAILED");
    let any_warning = run.sources.iter().any(|s| s.status == "WARNING");
    let status = if any_failed || stop.load(Ordering::Relaxed) {
        Status::Failed
    } else if any_warning {
        Status::Warning
    } else {
        Status::Success
    };
    run.cpu_seconds = Some(own_cpu_seconds() - cpu0 + cpu_children);
    run.peak_rss_bytes = Some(peak_rss);
    run.finish(status);

    // Retention only after a good run, so a failing source never thins out the backups
    // that are still good.
    if status.is_good() {
        if let (Some(policy), Ok(repo)) = (&job.retention, &repo) {
            match retention::apply(repo, job, policy, opts.lock_wait) {
                Ok(r) => {
                    record_forgotten(catalog, &r, job, &run, None);
                    tracing::info!(job = %job.name, removed = r.removed.len(), "retention applied");
                }
                Err(e) => {
                    run.warnings.push(format!("retention: {e}"));
                    if run.status == Status::Success {
                        run.status = Status::Warning;
                    }
                }
            }
        }
    }
    // copy_to after retention, so the copy carries what the main repository keeps.
    if status.is_good() {
        if let Ok(repo) = &repo {
            for target in &job.copy_to {
                let Some(t) = cfg.repository.iter().find(|r| &r.name == target) else {
                    continue;
                };
                let (c, removed) = copy::copy_to(cfg, job, repo, t, opts.lock_wait, &opts.cancel);
                if let Some(r) = removed {
                    record_forgotten(catalog, &r, job, &run, Some(target));
                }
                if let Some(e) = &c.error {
                    run.warnings.push(format!("copy to {target:?}: {e}"));
                    run.status = Status::Warning;
                }
                run.copies.push(c);
                catalog.update(&run)?;
            }
        }
    }
    catalog.update(&run)?;
    notify(&run);
    Ok(run)
}
