//! The scheduler thread and the worker pool.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coffer_catalog::{Catalog, Run, RunKind, Status};
use coffer_config::{Config, Misfire};
use coffer_jobs::{RunOptions, Trigger};
use parking_lot::{Condvar, Mutex};

use crate::observe::RunObserver;
use crate::queue::{Heartbeat, QueueView};
use crate::DaemonError;

struct Queued {
    job: String,
    kind: RunKind,
    /// Its QUEUED row in the catalog.
    run: Option<Run>,
    trigger: Trigger,
    priority: i32,
    seq: u64,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Queued>,
    running: HashSet<(String, RunKind)>,
    seq: u64,
}

/// The queue, its workers and the scheduling thread.
pub struct Scheduler {
    config: Arc<Config>,
    observers: Vec<Arc<dyn RunObserver>>,
    auditor: Arc<coffer_jobs::audit::Auditor>,
    /// For the QUEUED rows (enqueue is called from the API and the scheduling thread).
    catalog: Mutex<Catalog>,
    queue: Mutex<Queue>,
    wake: Condvar,
    shutdown: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    heartbeat: Arc<Heartbeat>,
}

const HEARTBEAT: &str = "scheduler_heartbeat";

/// What a finished run is reported to.
pub struct Observers {
    /// Told about every finished run, in this order.
    pub runs: Vec<Arc<dyn RunObserver>>,
    /// Records each run in the audit trail.
    pub auditor: Arc<coffer_jobs::audit::Auditor>,
    /// Where the scheduling thread beats.
    pub heartbeat: Arc<Heartbeat>,
}

impl Scheduler {
    /// Starts the scheduling thread and `max_concurrent_jobs` workers.
    pub fn start(
        config: Arc<Config>,
        observers: Observers,
        catalog: PathBuf,
        exe: PathBuf,
        shutdown: Arc<AtomicBool>,
    ) -> Result<Arc<Scheduler>, DaemonError> {
        let Observers {
            runs: observers,
            auditor,
            heartbeat,
        } = observers;
        let s = Arc::new(Scheduler {
            config: Arc::clone(&config),
            observers,
            auditor,
            catalog: Mutex::new(Catalog::open(&catalog)?),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            shutdown,
            threads: Mutex::new(Vec::new()),
            heartbeat,
        });
        let mut threads = Vec::new();
        for n in 0..config.server.max_concurrent_jobs {
            let (s2, path, exe) = (Arc::clone(&s), catalog.clone(), exe.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("coffer-worker-{n}"))
                    .spawn(move || s2.worker(path, exe))
                    .map_err(DaemonError::Runtime)?,
            );
        }
        let cat = Catalog::open(&catalog)?;
        let s2 = Arc::clone(&s);
        threads.push(
            std::thread::Builder::new()
                .name("coffer-scheduler".into())
                .spawn(move || s2.schedule(cat))
                .map_err(DaemonError::Runtime)?,
        );
        *s.threads.lock() = threads;
        Ok(s)
    }

    /// Queues a run of `job`; false when one of that kind is already queued or running.
    pub fn enqueue(&self, job: &str, kind: RunKind, trigger: Trigger) -> bool {
        let Some(cfg) = self.config.job.iter().find(|j| j.name == job) else {
            return false;
        };
        let mut q = self.queue.lock();
        if q.running.contains(&(job.to_string(), kind))
            || q.waiting.iter().any(|w| w.job == job && w.kind == kind)
        {
            tracing::info!(
                job,
                kind = kind.as_str(),
                "already queued or running: not queued again"
            );
            return false;
        }
        q.seq += 1;
        let seq = q.seq;
        let run = self.config.job_repository(cfg).ok().and_then(|repo| {
            let mut r = Run::start(job, &repo.name, trigger.as_str(), 1);
            r.kind = kind;
            r.status = Status::Queued;
            match self.catalog.lock().insert(&mut r) {
                Ok(()) => Some(r),
                Err(e) => {
                    tracing::error!(job, error = %e, "recording a QUEUED run");
                    None
                }
            }
        });
        q.waiting.push(Queued {
            job: job.to_string(),
            kind,
            run,
            trigger,
            priority: cfg.priority,
            seq,
        });
        drop(q);
        self.wake.notify_one();
        true
    }

    /// Queues a drill of `scenario`; false when one is already queued or running, or there
    /// is no such scenario.
    pub fn enqueue_drill(&self, scenario: &str, trigger: Trigger) -> bool {
        if self.config.find_scenario(scenario).is_err() {
            return false;
        }
        let mut q = self.queue.lock();
        if q.running.contains(&(scenario.to_string(), RunKind::Drill))
            || q.waiting
                .iter()
                .any(|w| w.job == scenario && w.kind == RunKind::Drill)
        {
            tracing::info!(
                scenario,
                "drill already queued or running: not queued again"
            );
            return false;
        }
        q.seq += 1;
        let seq = q.seq;
        q.waiting.push(Queued {
            job: scenario.to_string(),
            kind: RunKind::Drill,
            run: None,
            trigger,
            // Backups first: a drill proves them, it must not delay them.
            priority: -1_000_000,
            seq,
        });
        drop(q);
        self.wake.notify_one();
        true
    }

    /// The queue as the API shows it.
    pub fn view(&self) -> QueueView {
        let q = self.queue.lock();
        let mut waiting: Vec<&Queued> = q.waiting.iter().collect();
        waiting.sort_by_key(|w| (std::cmp::Reverse(w.priority), w.seq));
        let of = |kind: RunKind| -> (Vec<String>, Vec<String>) {
            let queued = waiting
                .iter()
                .filter(|w| w.kind == kind)
                .map(|w| w.job.clone())
                .collect();
            let mut running: Vec<String> = q
                .running
                .iter()
                .filter(|r| r.1 == kind)
                .map(|r| r.0.clone())
                .collect();
            running.sort();
            (queued, running)
        };
        let (queued, running) = of(RunKind::Backup);
        let (verify_queued, verify_running) = of(RunKind::Verify);
        let (drill_queued, drill_running) = of(RunKind::Drill);
        QueueView {
            queued,
            running,
            verify_queued,
            verify_running,
            drill_queued,
            drill_running,
            heartbeat: self.heartbeat.last(),
        }
    }

    /// Waits for the threads after shutdown was requested; runs still queued end FAILED.
    pub fn join(&self) {
        self.wake.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
        let left = std::mem::take(&mut self.queue.lock().waiting);
        let cat = self.catalog.lock();
        for mut r in left.into_iter().filter_map(|q| q.run) {
            r.errors
                .push("not run: the daemon stopped before a worker was free".into());
            r.finish(Status::Failed);
            if let Err(e) = cat.update(&r) {
                tracing::error!(run = %r.id, error = %e, "closing a queued run");
            }
        }
    }

    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    fn schedule(self: Arc<Self>, cat: Catalog) {
        let now = Utc::now();
        let last_beat = cat
            .meta(HEARTBEAT)
            .ok()
            .flatten()
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        // Schedules that came and went while no daemon was running.
        if let Some(beat) = last_beat {
            for job in &self.config.job {
                let Some(missed) = job.next_run(beat).filter(|t| *t <= now) else {
                    continue;
                };
                match job.misfire.unwrap_or(self.config.server.misfire) {
                    Misfire::RunOnce => {
                        tracing::warn!(job = %job.name, %missed, "schedule missed while the daemon was down: running once now");
                        self.enqueue(&job.name, RunKind::Backup, Trigger::Misfire);
                    }
                    Misfire::Skip => {
                        tracing::warn!(job = %job.name, %missed, "schedule missed while the daemon was down (misfire = skip)");
                        let _ = cat.set_meta(&format!("missed:{}", job.name), &missed.to_rfc3339());
                    }
                }
            }
        }
        let mut next: Vec<Option<DateTime<Utc>>> =
            self.config.job.iter().map(|j| j.next_run(now)).collect();
        let mut next_check: Vec<Option<DateTime<Utc>>> =
            self.config.job.iter().map(|j| j.next_verify(now)).collect();
        // Drill schedules are in the host's local time, like jobs without a `timezone`.
        let scenarios: Vec<(String, String)> = self
            .config
            .scenarios()
            .into_iter()
            .filter_map(|s| Some((s.name, s.drill_schedule?)))
            .collect();
        let mut next_drill: Vec<Option<DateTime<Utc>>> = scenarios
            .iter()
            .map(|(_, sch)| coffer_config::jobs::next_occurrence(sch, None, now))
            .collect();
        let keep = chrono::Duration::seconds(self.config.server.catalog_retention.secs() as i64);
        let mut trimmed_at: Option<DateTime<Utc>> = None;
        let mut beat_saved: Option<DateTime<Utc>> = None;
        let beat_every = chrono::Duration::seconds(
            (self.config.alerting.heartbeat_timeout.secs() as i64 / 3).clamp(1, 10),
        );
        while !self.stopping() {
            let now = Utc::now();
            // History stays bounded: finished runs older than catalog_retention go, hourly.
            if trimmed_at.is_none_or(|t| now - t > chrono::Duration::hours(1)) {
                match cat.trim(now - keep) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(runs = n, "old runs removed from the catalog"),
                    Err(e) => tracing::error!(error = %e, "trimming the catalog"),
                }
                trimmed_at = Some(now);
            }
            for (i, job) in self.config.job.iter().enumerate() {
                if next[i].is_some_and(|t| t <= now) {
                    self.enqueue(&job.name, RunKind::Backup, Trigger::Schedule);
                    next[i] = job.next_run(now);
                }
                if next_check[i].is_some_and(|t| t <= now) {
                    self.enqueue(&job.name, RunKind::Verify, Trigger::Schedule);
                    next_check[i] = job.next_verify(now);
                }
            }
            for (i, (name, sch)) in scenarios.iter().enumerate() {
                if next_drill[i].is_some_and(|t| t <= now) {
                    self.enqueue_drill(name, Trigger::Schedule);
                    next_drill[i] = coffer_config::jobs::next_occurrence(sch, None, now);
                }
            }
            self.heartbeat.beat(now);
            // The stored heartbeat dates a crash for misfire detection and tells `coffer
            // alerts check` that the daemon lives: every 10 s (a third of the heartbeat
            // timeout when that is shorter) is enough, and spares the disk a write a second.
            if beat_saved.is_none_or(|t| now - t >= beat_every) {
                if let Err(e) = cat.set_meta(HEARTBEAT, &now.to_rfc3339()) {
                    tracing::error!(error = %e, "writing the scheduler heartbeat");
                }
                beat_saved = Some(now);
            }
            // Wake at the next full second: schedules may have second granularity.
            let ms = 1000 - u64::from(Utc::now().timestamp_subsec_millis()).min(999);
            std::thread::sleep(Duration::from_millis(ms.max(20)));
        }
        if let Err(e) = cat.set_meta(HEARTBEAT, &Utc::now().to_rfc3339()) {
            tracing::error!(error = %e, "writing the scheduler heartbeat");
        }
        // A drill in progress sees the shutdown flag between steps; stopping its scratch
        // instances ends the step it is in.
        for what in coffer_sources::scratch::stop_all() {
            tracing::info!(%what, "stopped for shutdown");
        }
        self.wake.notify_all();
    }

    fn worker(self: Arc<Self>, catalog: PathBuf, exe: PathBuf) {
        let cat = match Catalog::open(&catalog) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "worker cannot open the catalog");
                return;
            }
        };
        loop {
            let item = {
                let mut q = self.queue.lock();
                loop {
                    if self.stopping() {
                        return;
                    }
                    if !q.waiting.is_empty() {
                        break;
                    }
                    self.wake.wait_for(&mut q, Duration::from_millis(500));
                }
                let best = q
                    .waiting
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, w)| (std::cmp::Reverse(w.priority), w.seq))
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                let item = q.waiting.remove(best);
                q.running.insert((item.job.clone(), item.kind));
                item
            };
            if item.kind == RunKind::Drill {
                let run = self.drill(&item, &cat);
                self.queue
                    .lock()
                    .running
                    .remove(&(item.job.clone(), item.kind));
                self.finished(item.kind, run.as_ref());
            } else if let Some(job) = self.config.job.iter().find(|j| j.name == item.job) {
                let opts = RunOptions {
                    exe: exe.clone(),
                    trigger: item.trigger,
                    cancel: Arc::clone(&self.shutdown),
                    lock_wait: Duration::from_secs(600),
                    queued: item.run.clone(),
                    on_change: Some(Box::new(
                        |r| tracing::info!(run = %r.id, job = %r.job, status = %r.status, attempt = r.attempt, "run"),
                    )),
                };
                let pings = coffer_alerts::pings::RunPings::start(
                    job.ping_url
                        .as_deref()
                        .filter(|_| item.kind == RunKind::Backup),
                    &job.name,
                );
                let result = match item.kind {
                    RunKind::Backup => coffer_jobs::run_job(&self.config, job, &cat, &opts),
                    RunKind::Verify => {
                        coffer_jobs::verify::verify_job(&self.config, job, &cat, &opts)
                    }
                    // Recoveries are started by a person (`coffer dr recover`), never queued;
                    // drills are scenarios, not jobs.
                    RunKind::Recover | RunKind::Drill => Err(coffer_jobs::JobError::Config(
                        coffer_config::ConfigError::Invalid {
                            path: self.config.path.clone(),
                            errors: vec![format!(
                                "job {:?}: a {} cannot be queued as a job",
                                job.name,
                                item.kind.as_str()
                            )],
                        },
                    )),
                };
                // The run's row is final: a new request for the job is welcome from here
                // on, not only after the bookkeeping below.
                self.queue
                    .lock()
                    .running
                    .remove(&(item.job.clone(), item.kind));
                self.finished(item.kind, result.as_ref().ok());
                match result {
                    Ok(r) => {
                        // Detached: the worker does not wait for the monitor.
                        drop(pings.finish(&r));
                        self.auditor.record(
                            &cat,
                            &coffer_catalog::AuditEntry {
                                time: Utc::now(),
                                actor: format!("scheduler ({})", r.trigger),
                                action: item.kind.as_str().to_string(),
                                target: format!("job/{} run/{}", r.job, r.id),
                                outcome: r.status.as_str().to_string(),
                                origin: None,
                            },
                        );
                        tracing::info!(
                            run = %r.id,
                            job = %r.job,
                            status = %r.status,
                            seconds = r.duration_seconds.unwrap_or_default(),
                            source_bytes = r.source_bytes,
                            stored_bytes = r.stored_bytes,
                            "run finished"
                        )
                    }
                    Err(e) => tracing::error!(job = %job.name, error = %e, "run could not start"),
                }
            } else {
                self.queue.lock().running.remove(&(item.job, item.kind));
            }
        }
    }

    fn finished(&self, kind: RunKind, run: Option<&Run>) {
        for o in &self.observers {
            o.run_finished(kind, run);
        }
    }

    /// Runs a queued drill, records it, and audits it; returns its row.
    fn drill(&self, item: &Queued, cat: &Catalog) -> Option<Run> {
        let scenario = match self.config.find_scenario(&item.job) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(scenario = %item.job, error = %e, "drill not started");
                return None;
            }
        };
        let open = |r: &coffer_config::RepositoryConfig| {
            coffer_jobs::open_repository(r).map_err(|e| e.to_string())
        };
        let last = coffer_dr::last_duration(cat, &scenario.name, RunKind::Drill);
        let plan = coffer_dr::drill::plan(
            &self.config,
            &scenario,
            &open,
            &coffer_dr::recover::Choice::Latest,
            last,
            Utc::now(),
        );
        let outcome = if plan.problems.is_empty() {
            coffer_dr::drill::run(
                &self.config,
                &plan,
                &open,
                cat,
                item.trigger.as_str(),
                &self.shutdown,
                &Arc::default(),
                &mut |r| tracing::info!(run = %r.id, scenario = %r.job, "drill started"),
                &mut |p, r| tracing::info!(scenario = %plan.scenario, step = p.number, status = %r.status, seconds = r.seconds, "drill step"),
            )
            .map(|r| r.run)
        } else {
            // Recorded so that DrillFailed says why a scheduled drill cannot run.
            let mut r = plan.new_run(RunKind::Drill, item.trigger.as_str());
            r.errors.push(format!(
                "the drill cannot run: {}",
                plan.problems.join("; ")
            ));
            r.finish(Status::Failed);
            cat.insert(&mut r).map(|()| r).map_err(|e| e.to_string())
        };
        match outcome {
            Ok(r) => {
                self.auditor.record(
                    cat,
                    &coffer_catalog::AuditEntry {
                        time: Utc::now(),
                        actor: format!("scheduler ({})", r.trigger),
                        action: "dr.drill".into(),
                        target: format!("scenario/{} run/{}", r.job, r.id),
                        outcome: r.status.as_str().to_string(),
                        origin: None,
                    },
                );
                tracing::info!(run = %r.id, scenario = %r.job, status = %r.status, seconds = r.duration_seconds.unwrap_or_default(), "drill finished");
                Some(r)
            }
            Err(e) => {
                tracing::error!(scenario = %item.job, error = %e, "drill could not be recorded");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    /// Records what it is told.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(RunKind, Option<Status>)>>);

    impl RunObserver for Recorder {
        fn run_finished(&self, kind: RunKind, run: Option<&Run>) {
            self.0.lock().push((kind, run.map(|r| r.status)));
        }
    }

    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A job queued through the API runs once on a worker (a second request while it is
    /// queued or running is refused), every observer hears of its final row once, in order,
    /// and the scheduling thread beats.
    #[test]
    fn a_queued_run_reaches_every_observer_once() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        // Stands in for the coffer binary each source runs in: a backup that fails slowly.
        let exe = d.join("fake-coffer");
        std::fs::write(
            &exe,
            "#!/bin/sh\nsleep 1\necho 'Fatal: the fake backup failed' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = d.join("coffer.toml");
        std::fs::write(
            &path,
            format!(
                r#"[server]
catalog = "{d}/catalog.db"

[audit]
key_file = "{d}/keys/audit.key"

[[repository]]
name = "local"
url = "{d}/repo"
password = "test"

[[source]]
name = "files"
type = "files"
paths = ["{d}/data"]

[[job]]
name = "nightly"
sources = ["files"]
schedule = "0 2 * * *"
retries = 0
"#,
                d = d.display()
            ),
        )
        .unwrap();
        let config = Arc::new(Config::load(&path).unwrap());
        std::env::set_var("COFFER_KDF_N", "1024");
        coffer_repo::Repository::init(
            &coffer_repo::backend::Location::Local(d.join("repo")),
            "test",
            &coffer_repo::InitOptions::default(),
        )
        .unwrap();
        let catalog = d.join("catalog.db");
        let auditor = Arc::new(coffer_jobs::audit::Auditor::open(&config, &catalog).unwrap());
        let (first, second) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let heartbeat = Arc::new(Heartbeat::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let s = Scheduler::start(
            Arc::clone(&config),
            Observers {
                runs: vec![
                    Arc::clone(&first) as Arc<dyn RunObserver>,
                    Arc::clone(&second) as _,
                ],
                auditor,
                heartbeat: Arc::clone(&heartbeat),
            },
            catalog.clone(),
            exe,
            Arc::clone(&shutdown),
        )
        .unwrap();

        assert!(s.enqueue("nightly", RunKind::Backup, Trigger::Api));
        assert!(!s.enqueue("nightly", RunKind::Backup, Trigger::Api));
        let v = s.view();
        assert_eq!(v.queued.len() + v.running.len(), 1, "{v:?}");
        wait_for("the run to finish", || !second.0.lock().is_empty());
        let want = vec![(RunKind::Backup, Some(Status::Failed))];
        assert_eq!(*first.0.lock(), want);
        assert_eq!(*second.0.lock(), want);
        // The queue is free before observers hear of the run.
        let v = s.view();
        assert!(v.queued.is_empty() && v.running.is_empty(), "{v:?}");
        wait_for("a heartbeat", || heartbeat.last().is_some());
        assert_eq!(s.view().heartbeat, heartbeat.last());

        shutdown.store(true, Ordering::Relaxed);
        s.join();
        assert_eq!(first.0.lock().len(), 1);
        let runs = Catalog::open(&catalog)
            .unwrap()
            .list_kind(Some("nightly"), Some(RunKind::Backup), 10)
            .unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, Status::Failed);
        assert!(
            runs[0].errors.join(" ").contains("the fake backup failed"),
            "{:?}",
            runs[0].errors
        );
    }
}
