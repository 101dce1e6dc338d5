//! The [`Alerter`]: one evaluation = read the facts, run the rules, move the alerts through
//! their lifecycle, send what is due (every channel in parallel, each with its retries and
//! rate limit), log each delivery, and save the alert state, all against the catalog. The
//! daemon calls it on every finished run and every `evaluation_interval`; `coffer alerts
//! check` calls it once, from cron or another host, when the daemon itself may be dead.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use coffer_catalog::{Catalog, CatalogError};
use coffer_config::alerts::ChannelKind;
use coffer_config::Config;
use serde::Serialize;

use crate::engine::{Batch, ChannelInfo, Engine};
use crate::facts::{ChannelFailure, Collector, RepoFacts};
use crate::rules::{RuleError, Rules};
use crate::{build, AlertStatus, Channel, ChannelError, Options};

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A rule did not compile.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A channel could not be built.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// One delivery, as the delivery log and `--json` show it.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryRecord {
    /// When it was sent.
    pub time: DateTime<Utc>,
    /// The channel.
    pub channel: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The group.
    pub group: String,
    /// What it announced.
    pub alerts: Vec<DeliveredAlert>,
    /// Delivered.
    pub ok: bool,
    /// Attempts made.
    pub attempts: u32,
    /// HTTP status (SMTP reply code) of the last attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Milliseconds from first attempt to last answer.
    pub duration_ms: u64,
    /// Why it failed (never a secret), or why it was held back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One alert in a delivery.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveredAlert {
    /// Its id.
    pub id: String,
    /// Its rule.
    pub alertname: String,
    /// Firing or resolved.
    pub status: &'static str,
    /// Its severity.
    pub severity: &'static str,
    /// The job, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_job: Option<String>,
}

/// What one evaluation did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Evaluation {
    /// Conditions that hold.
    pub hits: usize,
    /// Alerts pending, firing, resolved (still listed).
    pub pending: usize,
    /// Firing.
    pub firing: usize,
    /// Resolved and still listed.
    pub resolved: usize,
    /// Deliveries attempted.
    pub deliveries: Vec<DeliveryRecord>,
    /// Rule errors (a `when` failing on some job).
    pub rule_errors: Vec<String>,
    /// Time spent reading facts.
    pub collect_ms: f64,
    /// Time spent evaluating rules and the lifecycle.
    pub evaluate_ms: f64,
}

struct Limiter {
    max: u32,
    per: Duration,
    sent: VecDeque<Instant>,
}

impl Limiter {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        while self.sent.front().is_some_and(|t| now - *t >= self.per) {
            self.sent.pop_front();
        }
        if self.sent.len() as u32 >= self.max {
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

/// The catalog's meta key holding the channels whose last delivery failed.
const FAILING_KEY: &str = "alerting.failing_channels";

/// The alerting of one coffer process.
pub struct Alerter {
    cfg: Arc<Config>,
    rules: Rules,
    engine: Engine,
    collector: Collector,
    channels: Vec<Arc<dyn Channel>>,
    infos: Vec<ChannelInfo>,
    failing: HashMap<String, ChannelFailure>,
    limiters: HashMap<String, Limiter>,
    reported: HashSet<String>,
}

impl Alerter {
    /// Builds the rules and channels of `cfg` and loads the stored alert state.
    pub fn new(cfg: Arc<Config>, catalog: &Catalog, opts: &Options) -> Result<Alerter, AlertError> {
        let rules = Rules::new(&cfg)?;
        let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
        let mut infos = Vec::new();
        let mut limiters = HashMap::new();
        for c in &cfg.channel {
            let ch: Arc<dyn Channel> = Arc::from(build(c, opts)?);
            infos.push(ChannelInfo {
                name: c.name.clone(),
                min_severity: c.min_severity(),
                push: c.kind() == Some(ChannelKind::Alertmanager),
                lang: c.lang(&cfg.server),
            });
            if let Some((max, per)) = c.rate_limit() {
                limiters.insert(
                    c.name.clone(),
                    Limiter {
                        max,
                        per,
                        sent: VecDeque::new(),
                    },
                );
            }
            channels.push(ch);
        }
        let engine = Engine::load(&cfg.alerting, &catalog.alert_rows()?);
        // Channel health outlives a restart: a channel that was failing is failing until a
        // delivery through it succeeds, not "resolved" because the process is new.
        let mut failing: HashMap<String, ChannelFailure> = catalog
            .meta(FAILING_KEY)?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        failing.retain(|name, _| cfg.channel.iter().any(|c| &c.name == name));
        Ok(Alerter {
            cfg,
            rules,
            engine,
            collector: Collector::new(),
            channels,
            infos,
            failing,
            limiters,
            reported: HashSet::new(),
        })
    }

    /// The engine (for listing alerts).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// How many rules are on.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// When to evaluate again at the latest for a pending alert or a waiting group.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.engine.next_wake()
    }

    /// One evaluation at `now`. `repositories` carries the storage figures the caller
    /// measured; `heartbeat` the scheduler's last tick (`None`: no scheduler to watch).
    pub fn evaluate(
        &mut self,
        catalog: &mut Catalog,
        now: DateTime<Utc>,
        repositories: Vec<RepoFacts>,
        heartbeat: Option<DateTime<Utc>>,
    ) -> Result<Evaluation, AlertError> {
        let mut ev = Evaluation::default();
        // A delivery failure becomes a ChannelFailing alert at once (second pass), rather
        // than at the next tick.
        for pass in 0..2 {
            let failing_before: HashSet<String> = self.failing.keys().cloned().collect();
            let t0 = Instant::now();
            let failing = self.failing.values().cloned().collect();
            let facts = self.collector.collect(
                &self.cfg,
                catalog,
                now,
                repositories.clone(),
                failing,
                heartbeat,
            )?;
            let t1 = Instant::now();
            let (hits, errors, unknown) = self.rules.evaluate(&facts);
            for e in errors {
                let msg = e.to_string();
                if self.reported.insert(msg.clone()) {
                    tracing::error!(error = %msg, "alert rule failed");
                }
                ev.rule_errors.push(msg);
            }
            ev.hits = hits.len();
            for id in self.engine.update(hits, &unknown, now) {
                catalog.clear_ack(&id)?;
            }
            let silences = catalog.silences(false, now, 10_000)?;
            let acks = catalog.acks()?;
            self.engine.annotate(&silences, &acks, now);
            let batches = self.engine.plan(&self.infos, now);
            let t2 = Instant::now();
            if pass == 0 {
                ev.collect_ms = (t1 - t0).as_secs_f64() * 1000.0;
                ev.evaluate_ms = (t2 - t1).as_secs_f64() * 1000.0;
            }
            // The new state is saved before anything is sent: whoever reads the catalog after
            // a notification arrived (an operator acking it) finds the alert it announced.
            let (rows, deleted) = self.engine.take_changes();
            catalog.save_alerts(&rows, &deleted)?;
            let records = self.send(batches, now);
            for r in &records {
                let body = serde_json::to_string(r).unwrap_or_else(|_| "{}".into());
                catalog.log_delivery(r.time, &r.channel, &body)?;
            }
            ev.deliveries.extend(records);
            let (rows, deleted) = self.engine.take_changes();
            catalog.save_alerts(&rows, &deleted)?;
            let failing_now: HashSet<String> = self.failing.keys().cloned().collect();
            if failing_now == failing_before {
                break;
            }
            let v = serde_json::to_string(&self.failing).unwrap_or_else(|_| "{}".into());
            catalog.set_meta(FAILING_KEY, &v)?;
        }
        for a in self.engine.alerts() {
            match a.state {
                crate::engine::AlertState::Pending => ev.pending += 1,
                crate::engine::AlertState::Firing => ev.firing += 1,
                crate::engine::AlertState::Resolved => ev.resolved += 1,
            }
        }
        Ok(ev)
    }

    /// Sends the batches, each channel on its own thread (a channel that times out must not
    /// delay the others), and records the outcomes in the engine.
    fn send(&mut self, batches: Vec<Batch>, now: DateTime<Utc>) -> Vec<DeliveryRecord> {
        if batches.is_empty() {
            return Vec::new();
        }
        let mut by_channel: HashMap<String, Vec<Batch>> = HashMap::new();
        for b in batches {
            by_channel.entry(b.channel.clone()).or_default().push(b);
        }
        let mut held = Vec::new();
        for (name, list) in by_channel.iter_mut() {
            if let Some(l) = self.limiters.get_mut(name) {
                list.retain(|b| {
                    let ok = l.allow();
                    if !ok {
                        held.push(record(
                            b,
                            "",
                            now,
                            None,
                            Some(
                                "held back by the channel's rate_limit; sent when the limit allows"
                                    .into(),
                            ),
                        ));
                    }
                    ok
                });
            }
        }
        let channels = &self.channels;
        let results: Vec<(Batch, Result<crate::Delivery, ChannelError>)> =
            std::thread::scope(|s| {
                let handles: Vec<_> = by_channel
                    .into_iter()
                    .filter_map(|(name, list)| {
                        let ch = channels.iter().find(|c| c.name() == name)?.clone();
                        Some(s.spawn(move || {
                            list.into_iter()
                                .map(|b| {
                                    let r = ch.send(&b.notifications);
                                    (b, r)
                                })
                                .collect::<Vec<_>>()
                        }))
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
        let mut out = held;
        for (b, r) in results {
            let kind = self
                .channels
                .iter()
                .find(|c| c.name() == b.channel)
                .map(|c| c.kind().as_str())
                .unwrap_or("");
            let ok = r.is_ok();
            self.engine.delivered(&b, ok, now);
            let rec = match &r {
                Ok(d) => record(&b, kind, now, Some(d), None),
                Err(e) => record(&b, kind, now, e.delivery(), Some(e.to_string())),
            };
            if ok {
                if self.failing.remove(&b.channel).is_some() {
                    tracing::info!(channel = %b.channel, "channel delivers again");
                }
            } else {
                let error = rec.error.clone().unwrap_or_default();
                tracing::warn!(channel = %b.channel, error = %error, "notification not delivered; retried at the next group interval");
                self.failing
                    .entry(b.channel.clone())
                    .and_modify(|f| f.error = error.clone())
                    .or_insert(ChannelFailure {
                        channel: b.channel.clone(),
                        error,
                        since: now,
                    });
            }
            out.push(rec);
        }
        out
    }
}

fn record(
    b: &Batch,
    kind: &'static str,
    now: DateTime<Utc>,
    d: Option<&crate::Delivery>,
    error: Option<String>,
) -> DeliveryRecord {
    DeliveryRecord {
        time: now,
        channel: b.channel.clone(),
        kind,
        group: b.group.clone(),
        alerts: b
            .notifications
            .iter()
            .map(|n| DeliveredAlert {
                id: n.fingerprint.clone(),
                alertname: n.alertname.clone(),
                status: match n.status {
                    AlertStatus::Firing => "firing",
                    AlertStatus::Resolved => "resolved",
                },
                severity: n.severity.as_str(),
                backup_job: n.job().map(String::from),
            })
            .collect(),
        ok: error.is_none() && d.is_some_and(|d| d.ok()),
        attempts: d.map(|d| d.attempts).unwrap_or(0),
        status: d.and_then(|d| d.status),
        duration_ms: d.map(|d| d.duration.as_millis() as u64).unwrap_or(0),
        error: error.or_else(|| d.and_then(|d| d.error.clone())),
    }
}
