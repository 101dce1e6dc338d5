//! The alerting thread: evaluates the rules when a run finishes (so a failure reaches its
//! channels within a second with `group_wait = "0s"`), when an operator acks or silences,
//! when a pending alert or a waiting group comes due, and every `evaluation_interval`
//! otherwise. It owns the [`coffer_alerts::Alerter`]; the API reads alert state from the
//! catalog, where the alerter saves it.
//!
//! The scheduler's heartbeat is read from memory here, so `SchedulerDown` fires when the
//! scheduling thread stalls while the process lives; a dead process is for `coffer alerts
//! check` (cron, another host) and for Prometheus to notice.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::Utc;
use coffer_alerts::facts::RepoFacts;
use coffer_alerts::{Alerter, Options};
use coffer_catalog::Catalog;
use coffer_config::Config;
use parking_lot::{Condvar, Mutex};

use crate::metrics::Metrics;
use crate::observe::RunObserver;
use crate::queue::Heartbeat;
use crate::repos::Repos;
use crate::DaemonError;

/// Wakes the alerting thread.
#[derive(Default)]
pub struct Poke {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Poke {
    /// Asks for an evaluation now.
    pub fn poke(&self) {
        *self.flag.lock() = true;
        self.cv.notify_all();
    }

    /// Waits for a poke, `timeout`, or shutdown (checked every second).
    fn wait(&self, timeout: Duration, shutdown: &AtomicBool) {
        let deadline = std::time::Instant::now() + timeout;
        let mut f = self.flag.lock();
        while !*f && !shutdown.load(Ordering::Relaxed) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            self.cv.wait_for(&mut f, left.min(Duration::from_secs(1)));
        }
        *f = false;
    }
}

/// Every finished run is evaluated at once (a failure reaches its channels within a second).
impl RunObserver for Poke {
    fn run_finished(&self, _: coffer_catalog::RunKind, _: Option<&coffer_catalog::Run>) {
        self.poke();
    }
}

/// Everything the thread reads.
pub struct Inputs {
    /// The config.
    pub config: Arc<Config>,
    /// The catalog file.
    pub catalog: PathBuf,
    /// Storage figures.
    pub repos: Arc<Repos>,
    /// The scheduler's heartbeat.
    pub heartbeat: Arc<Heartbeat>,
    /// Alert gauges and notification counters.
    pub metrics: Arc<Metrics>,
    /// Set on shutdown.
    pub shutdown: Arc<AtomicBool>,
}

/// Starts the thread; `poke` wakes it.
pub fn start(inputs: Inputs, poke: Arc<Poke>) -> Result<Option<JoinHandle<()>>, DaemonError> {
    if !inputs.config.alerting.enabled {
        tracing::info!("[alerting] enabled = false: no rule is evaluated");
        return Ok(None);
    }
    let mut catalog = Catalog::open(&inputs.catalog)?;
    let mut alerter = Alerter::new(Arc::clone(&inputs.config), &catalog, &Options::default())
        .map_err(|e| DaemonError::Alerting(e.to_string()))?;
    tracing::info!(
        rules = alerter.rule_count(),
        channels = inputs.config.channel.len(),
        "alerting started"
    );
    let handle = std::thread::Builder::new()
        .name("coffer-alerts".into())
        .spawn(move || {
            let every = inputs.config.alerting.evaluation_interval.0;
            while !inputs.shutdown.load(Ordering::Relaxed) {
                let now = Utc::now();
                let repos = inputs
                    .repos
                    .list(&inputs.config)
                    .into_iter()
                    .map(|r| RepoFacts {
                        name: r.name,
                        storage_ratio: r.storage.as_ref().map(|u| u.ratio),
                        storage_available: r.storage.as_ref().map(|u| u.available_bytes),
                        storage_level: r
                            .storage
                            .as_ref()
                            .map(|u| u.level.to_string())
                            .unwrap_or_default(),
                        storage_known: r.storage_known,
                        last_verify: None,
                    })
                    .collect();
                let heartbeat = inputs.heartbeat.last();
                match alerter.evaluate(&mut catalog, now, repos, heartbeat) {
                    Ok(ev) => {
                        inputs.metrics.alerting(&ev, alerter.engine().alerts());
                        for d in &ev.deliveries {
                            tracing::info!(
                                channel = %d.channel,
                                ok = d.ok,
                                alerts = d.alerts.len(),
                                group = %d.group,
                                "notification"
                            );
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "alert evaluation failed"),
                }
                // Sleep until the next tick, or earlier when something comes due.
                let mut wait = every;
                if let Some(t) = alerter.next_wake() {
                    let ms = (t - Utc::now()).num_milliseconds().max(0) as u64;
                    wait = wait.min(Duration::from_millis(ms + 50));
                }
                poke.wait(wait, &inputs.shutdown);
            }
        })
        .map_err(DaemonError::Runtime)?;
    Ok(Some(handle))
}
