//! What the rules look at: per job, the figures of its newest runs (from the catalog); per
//! repository, its storage level and last verify; per channel, whether it delivers; and the
//! scheduler's heartbeat. A [`Collector`] keeps each job's figures until the job's newest
//! run changes, so an evaluation over 500 jobs reads 500 index rows, not 500 histories.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use coffer_catalog::{Catalog, CatalogError, Run, RunKind, Status};
use coffer_config::{Config, JobConfig};

/// How many of a job's newest runs are read for its figures: the median needs the last 10
/// good runs before the newest one.
const HISTORY: usize = 24;

/// Everything one evaluation sees.
#[derive(Clone, Debug)]
pub struct Facts {
    /// The evaluation's time.
    pub now: DateTime<Utc>,
    /// One per `[[job]]`.
    pub jobs: Vec<JobFacts>,
    /// One per `[[repository]]`.
    pub repositories: Vec<RepoFacts>,
    /// Channels whose last delivery failed.
    pub failing_channels: Vec<ChannelFailure>,
    /// The scheduler's last tick; `None` when no scheduler is expected (no daemon).
    pub heartbeat: Option<DateTime<Utc>>,
    /// One per recovery scenario, with its drills.
    pub scenarios: Vec<ScenarioFacts>,
}

/// A recovery scenario's drills.
#[derive(Clone, Debug, Default)]
pub struct ScenarioFacts {
    /// Its name.
    pub name: String,
    /// The newest finished drill.
    pub last: Option<Run>,
    /// When the newest drill that passed ended.
    pub last_good_end: Option<DateTime<Utc>>,
    /// `[dr] drill_max_age`, seconds.
    pub max_age_seconds: f64,
}

/// A job's figures.
#[derive(Clone, Debug, Default)]
pub struct JobFacts {
    /// Its name.
    pub name: String,
    /// Its sources.
    pub sources: Vec<String>,
    /// Their types, in the same order.
    pub source_types: Vec<String>,
    /// Its repository.
    pub repository: String,
    /// The newest finished backup run (SUCCESS, WARNING, FAILED or PAUSED).
    pub last: Option<Run>,
    /// Since when a run has been RUNNING, if one is.
    pub running_since: Option<DateTime<Utc>>,
    /// When the newest good (SUCCESS, WARNING) run ended.
    pub last_good_end: Option<DateTime<Utc>>,
    /// Since when coffer has known the job (its first run, else the first evaluation).
    pub first_seen: DateTime<Utc>,
    /// FAILED runs since the newest good one.
    pub consecutive_failures: u32,
    /// Median duration of the last 10 good runs before `last` (3 at least).
    pub median_duration: Option<f64>,
    /// Median compression ratio of the same runs.
    pub median_ratio: Option<f64>,
    /// The RPO in force (the job's, else two schedule intervals plus the grace).
    pub rpo_seconds: Option<f64>,
    /// `max_runtime`.
    pub max_runtime_seconds: f64,
    /// Paused by an operator.
    pub paused: bool,
}

/// A repository's figures.
#[derive(Clone, Debug, Default)]
pub struct RepoFacts {
    /// Its name.
    pub name: String,
    /// Used share of capacity or quota, when measured.
    pub storage_ratio: Option<f64>,
    /// Bytes still available, when measured.
    pub storage_available: Option<u64>,
    /// `ok`, `low`, `high`, `critical` (empty when not measured).
    pub storage_level: String,
    /// Whether the storage was measured (or is known to have no measure: an S3 repository
    /// without a quota). A daemon that just started has not measured yet: its storage
    /// alerts keep their state instead of resolving until it has.
    pub storage_known: bool,
    /// The newest finished verify run.
    pub last_verify: Option<Run>,
}

/// A channel that failed to deliver.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ChannelFailure {
    /// The channel.
    pub channel: String,
    /// The last error (never holds a secret).
    pub error: String,
    /// When it first failed in this streak.
    pub since: DateTime<Utc>,
}

#[derive(Clone)]
struct Cached {
    head: Option<(String, String)>,
    facts: JobFacts,
}

/// Reads job figures from the catalog, re-reading a job only when its newest run changed.
#[derive(Default)]
pub struct Collector {
    cache: HashMap<String, Cached>,
}

impl Collector {
    /// A collector with an empty cache.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Figures of every job of `cfg`. `repositories` come from whoever measures storage (the
    /// daemon's refresher, or `coffer alerts check`); their last verify is read here.
    pub fn collect(
        &mut self,
        cfg: &Config,
        catalog: &Catalog,
        now: DateTime<Utc>,
        mut repositories: Vec<RepoFacts>,
        failing_channels: Vec<ChannelFailure>,
        heartbeat: Option<DateTime<Utc>>,
    ) -> Result<Facts, CatalogError> {
        let mut jobs = Vec::with_capacity(cfg.job.len());
        for job in &cfg.job {
            let head = catalog.backup_head(&job.name)?;
            let hit = self
                .cache
                .get(&job.name)
                .filter(|c| c.head == head)
                .map(|c| c.facts.clone());
            let mut f = match hit {
                Some(f) => f,
                None => {
                    let f = read_job(cfg, job, catalog, now)?;
                    self.cache.insert(
                        job.name.clone(),
                        Cached {
                            head,
                            facts: f.clone(),
                        },
                    );
                    f
                }
            };
            // Cheap and changeable without a new run: read every time.
            f.paused = catalog.is_paused(&job.name)?;
            f.rpo_seconds = job
                .rpo_in_force(
                    f.last_good_end.unwrap_or(f.first_seen),
                    cfg.alerting.overdue_grace.0,
                )
                .map(|d| d.as_secs_f64());
            jobs.push(f);
        }
        for r in &mut repositories {
            r.last_verify = catalog.last_verify(&r.name)?;
        }
        for repo in &cfg.repository {
            if !repositories.iter().any(|r| r.name == repo.name) {
                repositories.push(RepoFacts {
                    name: repo.name.clone(),
                    last_verify: catalog.last_verify(&repo.name)?,
                    ..RepoFacts::default()
                });
            }
        }
        let mut scenarios = Vec::new();
        for sc in cfg.scenarios() {
            let drills = catalog.list_kind(Some(&sc.name), Some(RunKind::Drill), HISTORY)?;
            let finished =
                |r: &&Run| matches!(r.status, Status::Success | Status::Warning | Status::Failed);
            let last = drills.iter().find(finished).cloned();
            let last_good_end = match drills.iter().find(|r| r.status == Status::Success) {
                Some(r) => r.ended,
                None if drills.len() == HISTORY => catalog
                    .last_of_kind(&sc.name, RunKind::Drill, &[Status::Success])?
                    .and_then(|r| r.ended),
                None => None,
            };
            scenarios.push(ScenarioFacts {
                name: sc.name,
                last,
                last_good_end,
                max_age_seconds: cfg.dr.drill_max_age.0.as_secs_f64(),
            });
        }
        Ok(Facts {
            now,
            jobs,
            repositories,
            failing_channels,
            heartbeat,
            scenarios,
        })
    }
}

fn read_job(
    cfg: &Config,
    job: &JobConfig,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> Result<JobFacts, CatalogError> {
    let runs = catalog.list_kind(Some(&job.name), Some(RunKind::Backup), HISTORY)?;
    let finished = |s: Status| {
        matches!(
            s,
            Status::Success | Status::Warning | Status::Failed | Status::Paused
        )
    };
    let last = runs.iter().find(|r| finished(r.status)).cloned();
    let running_since = runs
        .iter()
        .take_while(|r| !finished(r.status))
        .find(|r| matches!(r.status, Status::Running | Status::Retry))
        .map(|r| r.started);
    let last_good = match runs.iter().find(|r| r.status.is_good()) {
        Some(r) => Some(r.clone()),
        None if runs.len() == HISTORY => {
            catalog.last(&job.name, &[Status::Success, Status::Warning])?
        }
        None => None,
    };
    let consecutive_failures = if runs.len() == HISTORY && last_good.is_none() {
        catalog.consecutive_failures(&job.name)?
    } else {
        let mut n = 0;
        for r in &runs {
            match r.status {
                Status::Failed => n += 1,
                s if s.is_good() => break,
                _ => {}
            }
        }
        n
    };
    // The baseline excludes the newest run: it is the one being judged.
    let newest = last.as_ref().map(|r| r.id.as_str());
    let good: Vec<&Run> = runs
        .iter()
        .filter(|r| r.status.is_good() && Some(r.id.as_str()) != newest)
        .take(10)
        .collect();
    let median_of = |mut v: Vec<f64>| -> Option<f64> {
        if v.len() < 3 {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    };
    let median_duration = median_of(good.iter().filter_map(|r| r.duration_seconds).collect());
    let median_ratio = median_of(good.iter().filter_map(|r| r.compression_ratio).collect());
    let first_seen = match catalog.meta(&format!("first_seen:{}", job.name))? {
        Some(t) => DateTime::parse_from_rfc3339(&t)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now),
        None => {
            let t = runs.last().map(|r| r.started).unwrap_or(now).min(now);
            catalog.set_meta(&format!("first_seen:{}", job.name), &t.to_rfc3339())?;
            t
        }
    };
    let source_types = job
        .sources
        .iter()
        .map(|s| {
            cfg.source
                .iter()
                .find(|e| &e.name == s)
                .map(|e| e.kind.clone())
                .unwrap_or_default()
        })
        .collect();
    Ok(JobFacts {
        name: job.name.clone(),
        sources: job.sources.clone(),
        source_types,
        repository: cfg
            .job_repository(job)
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        last,
        running_since,
        last_good_end: last_good.and_then(|r| r.ended),
        first_seen,
        consecutive_failures,
        median_duration,
        median_ratio,
        rpo_seconds: None,
        max_runtime_seconds: job.max_runtime.secs() as f64,
        paused: false,
    })
}
