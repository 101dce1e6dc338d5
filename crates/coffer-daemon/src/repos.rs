//! What the daemon knows of each repository: its storage (the storage guard's measure), its
//! size, snapshot count and oldest/newest snapshot, refreshed every `[server.storage]
//! check_interval` and after each run into it, so that `/metrics` and `/api/repositories`
//! answer from memory instead of listing a bucket on every scrape.
//!
//! Each refresh also emits the storage guard's events: a log event `event="storage"` with the
//! severity (`low`, `high`, `critical`) when a repository crosses a threshold upwards, and
//! `resolved` when it falls back below the low one. The alerting layer turns these into
//! notifications.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use coffer_config::{Config, RepositoryConfig};
use coffer_jobs::storage::{self, Usage};
use coffer_repo::Repository;
use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::observe::RunObserver;

/// One repository's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RepoStats {
    /// Its name in the config.
    pub name: String,
    /// Where it is (no credentials are ever part of it).
    pub url: String,
    /// Its storage, when measurable.
    pub storage: Option<Usage>,
    /// Whether the storage guard's measure has an answer: `storage`, or none to measure
    /// (false before the first refresh, and when measuring a quota failed).
    pub storage_known: bool,
    /// Bytes of its files.
    pub size_bytes: Option<u64>,
    /// Snapshots, WAL files included.
    pub snapshots: Option<u64>,
    /// The oldest snapshot's time.
    pub oldest_snapshot: Option<DateTime<Utc>>,
    /// The newest snapshot's time.
    pub newest_snapshot: Option<DateTime<Utc>>,
    /// Backups into it are paused (storage critical).
    pub paused: bool,
    /// Why the last refresh failed, if it did.
    pub error: Option<String>,
    /// When it was last refreshed.
    pub refreshed: Option<DateTime<Utc>>,
}

/// The figures of every repository, refreshed by a background thread.
pub struct Repos {
    stats: Mutex<HashMap<String, RepoStats>>,
    dirty: Mutex<bool>,
    wake: Condvar,
}

impl Repos {
    /// Starts the refresher; it stops when `shutdown` is set.
    pub fn start(
        config: Arc<Config>,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<(Arc<Repos>, std::thread::JoinHandle<()>)> {
        let r = Arc::new(Repos {
            stats: Mutex::new(HashMap::new()),
            dirty: Mutex::new(true),
            wake: Condvar::new(),
        });
        let r2 = Arc::clone(&r);
        let t = std::thread::Builder::new()
            .name("coffer-repositories".into())
            .spawn(move || r2.refresher(&config, &shutdown))?;
        Ok((r, t))
    }

    /// Asks for a refresh soon (after a run wrote to a repository).
    pub fn touch(&self) {
        *self.dirty.lock() = true;
        self.wake.notify_all();
    }

    /// The figures, in config order.
    pub fn list(&self, cfg: &Config) -> Vec<RepoStats> {
        let stats = self.stats.lock();
        cfg.repository
            .iter()
            .map(|r| {
                stats.get(&r.name).cloned().unwrap_or_else(|| RepoStats {
                    name: r.name.clone(),
                    url: r.url.0.clone(),
                    ..Default::default()
                })
            })
            .collect()
    }

    fn refresher(&self, cfg: &Config, shutdown: &AtomicBool) {
        let every = Duration::from_secs(cfg.server.storage.check_interval.secs().max(1));
        let mut last_level: HashMap<String, &'static str> = HashMap::new();
        // Opening a repository derives its key (scrypt, a good fraction of a second of CPU):
        // once per repository for the daemon's life, not on every refresh.
        let mut opened: HashMap<String, Arc<Repository>> = HashMap::new();
        let mut next = Instant::now();
        while !shutdown.load(Ordering::Relaxed) {
            {
                let mut dirty = self.dirty.lock();
                if !*dirty && Instant::now() < next {
                    self.wake
                        .wait_for(&mut dirty, Duration::from_millis(500).min(every));
                    continue;
                }
                *dirty = false;
            }
            for repo in &cfg.repository {
                if shutdown.load(Ordering::Relaxed) {
                    return;
                }
                let s = measure(cfg, repo, &mut opened);
                let level = s.storage.as_ref().map_or("ok", |u| u.level);
                let before = last_level.insert(repo.name.clone(), level).unwrap_or("ok");
                storage_event(repo, before, level, s.storage.as_ref());
                self.stats.lock().insert(repo.name.clone(), s);
            }
            next = Instant::now() + every;
        }
    }
}

fn rank(level: &str) -> u8 {
    match level {
        "low" => 1,
        "high" => 2,
        "critical" => 3,
        _ => 0,
    }
}

/// Logs a storage event when the level rises, and a resolved one when it falls back to ok.
fn storage_event(repo: &RepositoryConfig, before: &str, now: &str, u: Option<&Usage>) {
    let percent = u.map_or(0.0, |u| u.ratio * 100.0);
    if rank(now) > rank(before) {
        tracing::warn!(event = "storage", severity = now, repository = %repo.name, percent, "storage above the {now} threshold");
    } else if rank(now) == 0 && rank(before) > 0 {
        tracing::info!(event = "storage", severity = "resolved", repository = %repo.name, percent, "storage back below the thresholds");
    }
}

fn measure(
    cfg: &Config,
    repo: &RepositoryConfig,
    opened: &mut HashMap<String, Arc<Repository>>,
) -> RepoStats {
    let mut s = RepoStats {
        name: repo.name.clone(),
        url: repo.url.0.clone(),
        refreshed: Some(Utc::now()),
        ..Default::default()
    };
    match storage::measure(repo, &cfg.server.storage) {
        Ok(u) => {
            s.storage = u;
            s.storage_known = true;
        }
        Err(e) => s.error = Some(e),
    }
    s.paused = s.storage.as_ref().is_some_and(|u| u.level == "critical");
    let location = match coffer_repo::backend::Location::parse(&repo.url) {
        Ok(l) => l,
        Err(e) => {
            s.error = Some(e.to_string());
            return s;
        }
    };
    match storage::repository_bytes(&location) {
        Ok(n) => s.size_bytes = Some(n),
        Err(e) => s.error = Some(e),
    }
    // Snapshot times need the key; the snapshot cache keeps this cheap after the first time.
    let handle = match opened.get(&repo.name) {
        Some(r) => Ok(Arc::clone(r)),
        None => coffer_jobs::open_repository(repo).inspect(|r| {
            opened.insert(repo.name.clone(), Arc::clone(r));
        }),
    };
    match handle.and_then(|r| {
        r.snapshots()
            .map_err(|e| coffer_jobs::JobError::Repository {
                name: repo.name.clone(),
                message: e.to_string(),
            })
    }) {
        Ok(snaps) => {
            s.snapshots = Some(snaps.len() as u64);
            let times = snaps.iter().map(|x| x.snap.time.with_timezone(&Utc));
            s.oldest_snapshot = times.clone().min();
            s.newest_snapshot = times.max();
        }
        Err(e) => s.error = Some(e.to_string()),
    }
    s
}

/// A finished backup or verify may have changed what a repository holds; a drill only reads.
impl RunObserver for Repos {
    fn run_finished(&self, kind: coffer_catalog::RunKind, _: Option<&coffer_catalog::Run>) {
        if kind != coffer_catalog::RunKind::Drill {
            self.touch();
        }
    }
}
