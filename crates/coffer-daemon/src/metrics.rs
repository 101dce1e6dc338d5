//! `/metrics`: the Prometheus text format 0.0.4, written by the `prometheus` crate. Every
//! name starts with `coffer_`; jobs are labelled `backup_job` (never `job`, which Prometheus
//! itself sets to the scrape job).
//!
//! Counters and the duration histogram count runs finished since the daemon started (a
//! restart resets them, which `rate()` handles); gauges are read from the catalog and the
//! queue at scrape time, so they are right after a restart too.

use std::collections::HashMap;

use chrono::Utc;
use coffer_catalog::{Catalog, Run, RunKind, Status};
use coffer_config::Config;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::observe::RunObserver;
use crate::queue::QueueView;
use crate::repos::RepoStats;

/// The daemon's metrics.
pub struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    duration: HistogramVec,
    source_bytes: IntCounterVec,
    stored_bytes: IntCounterVec,
    cpu: prometheus::CounterVec,
    state: GaugeVec,
    last_start: GaugeVec,
    last_success: GaugeVec,
    last_completion: GaugeVec,
    next_run: GaugeVec,
    rpo: GaugeVec,
    max_runtime: GaugeVec,
    last_duration: GaugeVec,
    last_ratio: GaugeVec,
    failures: GaugeVec,
    paused: GaugeVec,
    heartbeat: prometheus::Gauge,
    storage_capacity: GaugeVec,
    storage_used: GaugeVec,
    storage_ratio: GaugeVec,
    storage_threshold: GaugeVec,
    repo_paused: GaugeVec,
    repo_size: GaugeVec,
    repo_snapshots: GaugeVec,
    repo_oldest: GaugeVec,
    repo_newest: GaugeVec,
    verify_ok: GaugeVec,
    verify_time: GaugeVec,
    drill_ok: GaugeVec,
    drill_time: GaugeVec,
    drill_rto: GaugeVec,
    drill_rpo: GaugeVec,
    rto_target: GaugeVec,
    rpo_target: GaugeVec,
    alerts: GaugeVec,
    notifications: IntCounterVec,
    evaluation: prometheus::Gauge,
}

/// Registers a collector; names are fixed, so an error here is a bug, reported rather than
/// panicking the daemon.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    c: C,
) -> prometheus::Result<C> {
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    register(r, GaugeVec::new(Opts::new(name, help), labels)?)
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    register(r, IntCounterVec::new(Opts::new(name, help), labels)?)
}

impl Metrics {
    /// Registers everything, with the run counters of every job at 0.
    pub fn new(cfg: &Config) -> prometheus::Result<Metrics> {
        let r = Registry::new();
        let j = &["backup_job"];
        let runs = counter(
            &r,
            "coffer_job_runs_total",
            "Finished runs by result.",
            &["backup_job", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("coffer_job_duration_seconds", "Run durations.").buckets(vec![
                1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
            ]),
            j,
        )
        .and_then(|d| register(&r, d))?;
        let cpu = prometheus::CounterVec::new(
            Opts::new(
                "coffer_job_cpu_seconds_total",
                "CPU time of runs (user + system, with dump tools).",
            ),
            j,
        )
        .and_then(|c| register(&r, c))?;
        let heartbeat = prometheus::Gauge::new(
            "coffer_scheduler_heartbeat_timestamp_seconds",
            "Last scheduler tick (Unix time).",
        )
        .and_then(|h| register(&r, h))?;
        let build = IntGauge::with_opts(
            Opts::new("coffer_build_info", "coffer's version; always 1.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .and_then(|b| register(&r, b))?;
        build.set(1);
        let m = Metrics {
            runs,
            duration,
            source_bytes: counter(
                &r,
                "coffer_job_source_bytes_total",
                "Bytes read from sources.",
                j,
            )?,
            stored_bytes: counter(
                &r,
                "coffer_job_stored_bytes_total",
                "Bytes added to the repository.",
                j,
            )?,
            cpu,
            state: gauge(
                &r,
                "coffer_job_state",
                "1 for the job's current state, 0 for the others.",
                &["backup_job", "state"],
            )?,
            last_start: gauge(
                &r,
                "coffer_job_last_start_timestamp_seconds",
                "Start of the newest run.",
                j,
            )?,
            last_success: gauge(
                &r,
                "coffer_job_last_success_timestamp_seconds",
                "End of the newest SUCCESS or WARNING run.",
                j,
            )?,
            last_completion: gauge(
                &r,
                "coffer_job_last_completion_timestamp_seconds",
                "End of the newest finished run.",
                j,
            )?,
            next_run: gauge(
                &r,
                "coffer_job_next_run_timestamp_seconds",
                "Next scheduled start.",
                j,
            )?,
            rpo: gauge(
                &r,
                "coffer_job_rpo_seconds",
                "Maximum acceptable age of the newest good backup.",
                j,
            )?,
            max_runtime: gauge(
                &r,
                "coffer_job_max_runtime_seconds",
                "A run longer than this is cancelled.",
                j,
            )?,
            last_duration: gauge(
                &r,
                "coffer_job_last_duration_seconds",
                "Duration of the newest finished run.",
                j,
            )?,
            last_ratio: gauge(
                &r,
                "coffer_job_last_compression_ratio",
                "Bytes read per byte stored in the newest finished run.",
                j,
            )?,
            failures: gauge(
                &r,
                "coffer_job_consecutive_failures",
                "FAILED runs since the last good one.",
                j,
            )?,
            paused: gauge(&r, "coffer_job_paused", "1 when the job is paused.", j)?,
            heartbeat,
            storage_capacity: gauge(
                &r,
                "coffer_repository_storage_capacity_bytes",
                "Size of the filesystem holding the repository.",
                &["repository"],
            )?,
            storage_used: gauge(
                &r,
                "coffer_repository_storage_used_bytes",
                "Bytes used on it.",
                &["repository"],
            )?,
            storage_ratio: gauge(
                &r,
                "coffer_repository_storage_used_ratio",
                "Used / capacity.",
                &["repository"],
            )?,
            storage_threshold: gauge(
                &r,
                "coffer_repository_storage_threshold_ratio",
                "The storage guard's thresholds.",
                &["repository", "level"],
            )?,
            repo_paused: gauge(
                &r,
                "coffer_repository_paused",
                "1 when backups into the repository are paused (storage critical).",
                &["repository"],
            )?,
            repo_size: gauge(
                &r,
                "coffer_repository_size_bytes",
                "Bytes of the repository's files.",
                &["repository"],
            )?,
            repo_snapshots: gauge(
                &r,
                "coffer_repository_snapshots",
                "Snapshots in the repository (archived WAL files included).",
                &["repository"],
            )?,
            repo_oldest: gauge(
                &r,
                "coffer_repository_oldest_snapshot_timestamp_seconds",
                "Time of the oldest snapshot.",
                &["repository"],
            )?,
            repo_newest: gauge(
                &r,
                "coffer_repository_newest_snapshot_timestamp_seconds",
                "Time of the newest snapshot.",
                &["repository"],
            )?,
            verify_ok: gauge(
                &r,
                "coffer_repository_last_verify_success",
                "1 when the newest verify run found the data sound, 0 when it found damage or failed.",
                &["repository"],
            )?,
            verify_time: gauge(
                &r,
                "coffer_repository_last_verify_timestamp_seconds",
                "End of the newest verify run.",
                &["repository"],
            )?,
            drill_ok: gauge(
                &r,
                "coffer_drill_last_success",
                "1 when the scenario's newest restore drill passed (every step and check, both targets), 0 otherwise.",
                &["scenario"],
            )?,
            drill_time: gauge(
                &r,
                "coffer_drill_last_timestamp_seconds",
                "End of the scenario's newest restore drill.",
                &["scenario"],
            )?,
            drill_rto: gauge(
                &r,
                "coffer_drill_last_rto_seconds",
                "How long the scenario's newest drill took to restore and check: its achieved RTO.",
                &["scenario"],
            )?,
            drill_rpo: gauge(
                &r,
                "coffer_drill_last_rpo_seconds",
                "Age of the oldest backup the newest drill restored: its achieved RPO.",
                &["scenario"],
            )?,
            rto_target: gauge(
                &r,
                "coffer_scenario_rto_target_seconds",
                "The scenario's recovery time target.",
                &["scenario"],
            )?,
            rpo_target: gauge(
                &r,
                "coffer_scenario_rpo_target_seconds",
                "The scenario's recovery point target.",
                &["scenario"],
            )?,
            alerts: gauge(
                &r,
                "coffer_alerts",
                "Alerts by state (pending, firing, silenced, acknowledged) and severity.",
                &["state", "severity"],
            )?,
            notifications: counter(
                &r,
                "coffer_notifications_total",
                "Notification batches sent, by channel and result (ok, failed, held).",
                &["channel", "result"],
            )?,
            evaluation: prometheus::Gauge::new(
                "coffer_alert_evaluation_seconds",
                "Duration of the last rule evaluation (facts, rules and lifecycle).",
            )
            .and_then(|g| register(&r, g))?,
            registry: r,
        };
        for c in &cfg.channel {
            for result in ["ok", "failed", "held"] {
                m.notifications
                    .with_label_values(&[&c.name, result])
                    .inc_by(0);
            }
        }
        for job in &cfg.job {
            for s in Status::ALL.iter().filter(|s| s.is_final()) {
                m.runs.with_label_values(&[&job.name, s.as_str()]).inc_by(0);
            }
            m.source_bytes.with_label_values(&[&job.name]).inc_by(0);
            m.stored_bytes.with_label_values(&[&job.name]).inc_by(0);
            m.cpu.with_label_values(&[&job.name]).inc_by(0.0);
        }
        Ok(m)
    }

    /// Records an alert evaluation: counts its deliveries and sets the alert gauges.
    pub fn alerting<'a>(
        &self,
        ev: &coffer_alerts::Evaluation,
        alerts: impl Iterator<Item = &'a coffer_alerts::engine::Alert>,
    ) {
        use coffer_alerts::engine::AlertState;
        for d in &ev.deliveries {
            let result = if d.ok {
                "ok"
            } else if d.attempts == 0 {
                "held"
            } else {
                "failed"
            };
            self.notifications
                .with_label_values(&[&d.channel, result])
                .inc();
        }
        self.evaluation
            .set((ev.collect_ms + ev.evaluate_ms) / 1000.0);
        let mut counts: HashMap<(&str, &str), f64> = HashMap::new();
        for sev in ["critical", "high", "medium", "low"] {
            for st in ["pending", "firing", "silenced", "acknowledged"] {
                counts.insert((st, sev), 0.0);
            }
        }
        for a in alerts {
            let st = match a.state {
                AlertState::Pending => "pending",
                AlertState::Resolved => continue,
                AlertState::Firing if a.suppressed_by.is_some() => "silenced",
                AlertState::Firing if a.ack.is_some() => "acknowledged",
                AlertState::Firing => "firing",
            };
            *counts.entry((st, a.severity.as_str())).or_default() += 1.0;
        }
        for ((st, sev), n) in counts {
            self.alerts.with_label_values(&[st, sev]).set(n);
        }
    }

    /// Counts a finished run.
    pub fn finished(&self, r: &Run) {
        // Verify runs show in the repository's verify gauges, not in the backup counters.
        if r.kind != RunKind::Backup {
            return;
        }
        let job = r.job.as_str();
        self.runs.with_label_values(&[job, r.status.as_str()]).inc();
        if r.status == Status::Paused {
            return;
        }
        if let Some(d) = r.duration_seconds {
            self.duration.with_label_values(&[job]).observe(d);
        }
        self.source_bytes
            .with_label_values(&[job])
            .inc_by(r.source_bytes);
        self.stored_bytes
            .with_label_values(&[job])
            .inc_by(r.stored_bytes);
        if let Some(c) = r.cpu_seconds {
            self.cpu.with_label_values(&[job]).inc_by(c.max(0.0));
        }
    }

    /// The text exposition, with gauges refreshed.
    pub fn render(
        &self,
        cfg: &Config,
        catalog: &Catalog,
        queue: &QueueView,
        repos: &[RepoStats],
    ) -> String {
        self.refresh(cfg, catalog, queue, repos);
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The same numbers as JSON: `{"name": {"help", "type", "samples": [{"labels", "value"}]}}`
    /// (histograms give `count`, `sum` and `buckets`).
    pub fn json(
        &self,
        cfg: &Config,
        catalog: &Catalog,
        queue: &QueueView,
        repos: &[RepoStats],
    ) -> serde_json::Value {
        use prometheus::proto::MetricType;
        self.refresh(cfg, catalog, queue, repos);
        let mut out = serde_json::Map::new();
        for fam in self.registry.gather() {
            let kind = fam.get_field_type();
            let samples: Vec<serde_json::Value> = fam
                .get_metric()
                .iter()
                .map(|m| {
                    let labels: serde_json::Map<String, serde_json::Value> = m
                        .get_label()
                        .iter()
                        .map(|l| (l.name().to_string(), l.value().into()))
                        .collect();
                    let mut v = serde_json::json!({ "labels": labels });
                    match kind {
                        MetricType::COUNTER => v["value"] = m.get_counter().get_value().into(),
                        MetricType::GAUGE => v["value"] = m.get_gauge().get_value().into(),
                        MetricType::HISTOGRAM => {
                            let h = m.get_histogram();
                            v["count"] = h.get_sample_count().into();
                            v["sum"] = h.get_sample_sum().into();
                            v["buckets"] = h
                                .get_bucket()
                                .iter()
                                .map(|b| {
                                    serde_json::json!({
                                        "le": b.upper_bound(),
                                        "count": b.cumulative_count()
                                    })
                                })
                                .collect();
                        }
                        _ => {}
                    }
                    v
                })
                .collect();
            let kind = match kind {
                MetricType::COUNTER => "counter",
                MetricType::GAUGE => "gauge",
                MetricType::HISTOGRAM => "histogram",
                _ => "untyped",
            };
            out.insert(
                fam.name().to_string(),
                serde_json::json!({ "help": fam.help(), "type": kind, "samples": samples }),
            );
        }
        serde_json::Value::Object(out)
    }

    /// Refreshes the gauges from the catalog, the queue and the repositories' figures.
    fn refresh(&self, cfg: &Config, catalog: &Catalog, queue: &QueueView, repos: &[RepoStats]) {
        let now = Utc::now();
        let ts = |t: chrono::DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        let mut current: HashMap<&str, &str> = HashMap::new();
        for j in &queue.queued {
            current.insert(j, "QUEUED");
        }
        for j in &queue.running {
            current.insert(j, "RUNNING");
        }
        for job in &cfg.job {
            let name = job.name.as_str();
            let last = catalog
                .list_kind(Some(name), Some(RunKind::Backup), 1)
                .ok()
                .and_then(|v| v.into_iter().next());
            let done = catalog
                .last(name, &[Status::Success, Status::Warning, Status::Failed])
                .ok()
                .flatten();
            let good = catalog
                .last(name, &[Status::Success, Status::Warning])
                .ok()
                .flatten();
            let paused = catalog.is_paused(name).unwrap_or(false);
            let state = current
                .get(name)
                .copied()
                .or(if paused { Some("PAUSED") } else { None })
                .or(last.as_ref().map(|r| r.status.as_str()))
                .unwrap_or("");
            for s in Status::ALL {
                self.state
                    .with_label_values(&[name, s.as_str()])
                    .set(f64::from(u8::from(state == s.as_str())));
            }
            if let Some(r) = &last {
                self.last_start
                    .with_label_values(&[name])
                    .set(ts(r.started));
            }
            if let Some(t) = good.as_ref().and_then(|r| r.ended) {
                self.last_success.with_label_values(&[name]).set(ts(t));
            }
            if let Some(r) = &done {
                if let Some(t) = r.ended {
                    self.last_completion.with_label_values(&[name]).set(ts(t));
                }
                self.last_duration
                    .with_label_values(&[name])
                    .set(r.duration_seconds.unwrap_or(0.0));
                if let Some(c) = r.compression_ratio {
                    self.last_ratio.with_label_values(&[name]).set(c);
                }
            }
            if let Some(t) = job.next_run(now) {
                self.next_run.with_label_values(&[name]).set(ts(t));
            }
            let since = good.as_ref().and_then(|r| r.ended).unwrap_or(now);
            if let Some(r) = coffer_jobs::status::rpo_seconds(cfg, job, since) {
                self.rpo.with_label_values(&[name]).set(r as f64);
            }
            self.max_runtime
                .with_label_values(&[name])
                .set(job.max_runtime.secs() as f64);
            self.failures
                .with_label_values(&[name])
                .set(f64::from(catalog.consecutive_failures(name).unwrap_or(0)));
            self.paused
                .with_label_values(&[name])
                .set(f64::from(u8::from(paused)));
        }
        let t = &cfg.server.storage;
        for repo in &cfg.repository {
            let name = repo.name.as_str();
            for (level, v) in [("low", t.low), ("high", t.high), ("critical", t.critical)] {
                self.storage_threshold
                    .with_label_values(&[name, level])
                    .set(v / 100.0);
            }
            let Some(st) = repos.iter().find(|r| r.name == name) else {
                continue;
            };
            if let Some(u) = &st.storage {
                self.storage_capacity
                    .with_label_values(&[name])
                    .set(u.capacity_bytes as f64);
                self.storage_used
                    .with_label_values(&[name])
                    .set(u.used_bytes as f64);
                self.storage_ratio.with_label_values(&[name]).set(u.ratio);
            }
            self.repo_paused
                .with_label_values(&[name])
                .set(f64::from(u8::from(st.paused)));
            if let Some(n) = st.size_bytes {
                self.repo_size.with_label_values(&[name]).set(n as f64);
            }
            if let Some(n) = st.snapshots {
                self.repo_snapshots.with_label_values(&[name]).set(n as f64);
            }
            if let Some(t) = st.oldest_snapshot {
                self.repo_oldest.with_label_values(&[name]).set(ts(t));
            }
            if let Some(t) = st.newest_snapshot {
                self.repo_newest.with_label_values(&[name]).set(ts(t));
            }
            if let Ok(Some(v)) = catalog.last_verify(name) {
                self.verify_ok
                    .with_label_values(&[name])
                    .set(f64::from(u8::from(v.status.is_good())));
                if let Some(t) = v.ended {
                    self.verify_time.with_label_values(&[name]).set(ts(t));
                }
            }
        }
        for sc in cfg.scenarios() {
            let name = sc.name.as_str();
            self.rto_target
                .with_label_values(&[name])
                .set(sc.rto.as_secs_f64());
            if let Some(t) = sc.rpo {
                self.rpo_target
                    .with_label_values(&[name])
                    .set(t.as_secs_f64());
            }
            let last = catalog
                .last_of_kind(
                    name,
                    RunKind::Drill,
                    &[Status::Success, Status::Warning, Status::Failed],
                )
                .ok()
                .flatten();
            let Some(r) = last else { continue };
            self.drill_ok
                .with_label_values(&[name])
                .set(f64::from(u8::from(r.status == Status::Success)));
            if let Some(t) = r.ended {
                self.drill_time.with_label_values(&[name]).set(ts(t));
            }
            if let Some(x) = &r.recovery {
                self.drill_rto.with_label_values(&[name]).set(x.rto_seconds);
                if let Some(a) = x.rpo_seconds {
                    self.drill_rpo.with_label_values(&[name]).set(a as f64);
                }
            }
        }
        if let Some(h) = queue.heartbeat {
            self.heartbeat.set(ts(h));
        }
    }
}

impl RunObserver for Metrics {
    fn run_finished(&self, _: RunKind, run: Option<&Run>) {
        if let Some(r) = run {
            self.finished(r);
        }
    }
}
