//! What a run is: its kind, state, per-source results and figures, as stored and as the API
//! returns them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A run's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Waiting for a slot.
    Queued,
    /// Running.
    Running,
    /// Every source backed up.
    Success,
    /// Failed (after its retries).
    Failed,
    /// Backed up, with warnings (files that could not be read).
    Warning,
    /// Failed, and waiting to be tried again.
    Retry,
    /// Not run: the job or its repository is paused.
    Paused,
}

impl Status {
    /// Every state, in the seeds' order.
    pub const ALL: [Status; 7] = [
        Status::Queued,
        Status::Running,
        Status::Success,
        Status::Failed,
        Status::Warning,
        Status::Retry,
        Status::Paused,
    ];

    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::Running => "RUNNING",
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
            Status::Warning => "WARNING",
            Status::Retry => "RETRY",
            Status::Paused => "PAUSED",
        }
    }

    /// Parses the upper-case name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Success | Status::Failed | Status::Warning | Status::Paused
        )
    }

    /// Whether the run produced a usable backup.
    pub fn is_good(self) -> bool {
        matches!(self, Status::Success | Status::Warning)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one source of a run did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceResult {
    /// Source name.
    pub source: String,
    /// Source type.
    #[serde(rename = "type")]
    pub kind: String,
    /// SUCCESS, WARNING or FAILED.
    pub status: String,
    /// The snapshot made, if any.
    pub snapshot_id: Option<String>,
    /// Bytes read from the source.
    pub source_bytes: u64,
    /// Bytes added to the repository (after deduplication and compression).
    pub stored_bytes: u64,
    /// Files read.
    pub files: u64,
    /// Seconds.
    pub duration_seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// What could not be read.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// What a run does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Backs up the job's sources.
    #[default]
    Backup,
    /// Reads back part of the job's repository (`check --read-data-subset`).
    Verify,
    /// Runs a disaster-recovery scenario against the live servers (`coffer dr recover`);
    /// the run's `job` is the scenario's name.
    Recover,
    /// Runs a scenario against scratch instances and checks what came back (`coffer dr
    /// drill`); the run's `job` is the scenario's name.
    Drill,
}

impl RunKind {
    /// Every kind.
    pub const ALL: [RunKind; 4] = [
        RunKind::Backup,
        RunKind::Verify,
        RunKind::Recover,
        RunKind::Drill,
    ];

    /// `backup`, `verify`, `recover` or `drill`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Backup => "backup",
            RunKind::Verify => "verify",
            RunKind::Recover => "recover",
            RunKind::Drill => "drill",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<RunKind> {
        RunKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a recovery did, step by step, against its targets.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RecoveryResult {
    /// The scenario.
    pub scenario: String,
    /// One per step, in order, as far as the recovery went.
    pub steps: Vec<StepResult>,
    /// The scenario's RTO, seconds.
    pub rto_target_seconds: u64,
    /// How long the recovery took, seconds.
    pub rto_seconds: f64,
    /// The scenario's RPO, seconds, if it restores anything.
    pub rpo_target_seconds: Option<u64>,
    /// The age of the oldest data restored, at the start: what was lost.
    pub rpo_seconds: Option<u64>,
    /// A drill's checks of what it restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// A drill's report (the HTML page; the JSON beside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// One check a drill made of restored data.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CheckResult {
    /// The step (1-based) whose data it checked.
    pub step: usize,
    /// What was checked (`pg_amcheck shop`, `row counts shop`, `key counts`, ...).
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// The figures or the error.
    pub detail: String,
    /// How long it took.
    #[serde(default)]
    pub seconds: f64,
}

/// One step of a recovery.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StepResult {
    /// What the step does, in one line.
    pub step: String,
    /// `SUCCESS`, `FAILED` or `SKIPPED`.
    pub status: String,
    /// Seconds.
    pub seconds: f64,
    /// What happened (the snapshot restored, the check's answer, the error).
    pub message: String,
}

/// What copying a run's snapshots to a `copy_to` repository did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CopyResult {
    /// The target repository's name.
    pub repository: String,
    /// SUCCESS or FAILED.
    pub status: String,
    /// Snapshots copied.
    pub snapshots: u64,
    /// Bytes of new pack data written to the target.
    pub stored_bytes: u64,
    /// Seconds.
    pub duration_seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
}

/// What a verify run read and found.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct VerifyResult {
    /// The subset read (`5%`, `1/7`, `2G`).
    pub subset: String,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Packs in the repository.
    pub packs: u64,
    /// Packs read back.
    pub packs_read: u64,
    /// Bytes read back.
    pub bytes_read: u64,
    /// Problems found.
    pub problems: u64,
    /// Packs found damaged.
    pub damaged_packs: Vec<String>,
    /// Snapshots that depend on damaged data.
    pub affected_snapshots: Vec<String>,
}

/// One run, as stored and as `/api/runs` returns it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// `YYYYMMDD_HHMMSS-job` (`YYYYMMDD_HHMMSS-verify-job` for a verify run).
    pub id: String,
    /// Job name.
    pub job: String,
    /// Backup or verify.
    #[serde(default)]
    pub kind: RunKind,
    /// State.
    pub status: Status,
    /// `schedule`, `manual`, `misfire`, `api`, `retry`.
    pub trigger: String,
    /// Repository name.
    pub repository: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// When it started (or was queued).
    pub started: DateTime<Utc>,
    /// When it ended.
    pub ended: Option<DateTime<Utc>>,
    /// Seconds.
    pub duration_seconds: Option<f64>,
    /// Bytes read from the sources.
    pub source_bytes: u64,
    /// Bytes added to the repository.
    pub stored_bytes: u64,
    /// source_bytes / stored_bytes of what was new (deduplication and compression).
    pub compression_ratio: Option<f64>,
    /// Files read.
    pub files: u64,
    /// source_bytes per second.
    pub throughput_bytes_per_second: Option<f64>,
    /// CPU seconds the run used (user + system).
    pub cpu_seconds: Option<f64>,
    /// Peak resident memory of the process during the run, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Errors.
    pub errors: Vec<String>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Snapshots made.
    pub snapshot_ids: Vec<String>,
    /// Per source.
    pub sources: Vec<SourceResult>,
    /// Per `copy_to` repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyResult>,
    /// What a verify run read and found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyResult>,
    /// What a recovery did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryResult>,
}

impl Run {
    /// A new RUNNING run.
    pub fn start(job: &str, repository: &str, trigger: &str, attempt: u32) -> Run {
        Run {
            id: String::new(),
            job: job.to_string(),
            kind: RunKind::Backup,
            status: Status::Running,
            trigger: trigger.to_string(),
            repository: repository.to_string(),
            attempt,
            started: Utc::now(),
            ended: None,
            duration_seconds: None,
            source_bytes: 0,
            stored_bytes: 0,
            compression_ratio: None,
            files: 0,
            throughput_bytes_per_second: None,
            cpu_seconds: None,
            peak_rss_bytes: None,
            errors: Vec::new(),
            warnings: Vec::new(),
            snapshot_ids: Vec::new(),
            sources: Vec::new(),
            copies: Vec::new(),
            verify: None,
            recovery: None,
        }
    }

    /// Fills the totals from the per-source results and closes the run with `status`.
    pub fn finish(&mut self, status: Status) {
        let end = Utc::now();
        let secs = (end - self.started).num_milliseconds().max(0) as f64 / 1000.0;
        self.status = status;
        self.ended = Some(end);
        self.duration_seconds = Some(secs);
        self.source_bytes = self.sources.iter().map(|s| s.source_bytes).sum();
        self.stored_bytes = self.sources.iter().map(|s| s.stored_bytes).sum();
        self.files = self.sources.iter().map(|s| s.files).sum();
        self.compression_ratio =
            (self.stored_bytes > 0).then(|| self.source_bytes as f64 / self.stored_bytes as f64);
        self.throughput_bytes_per_second = (secs > 0.0).then(|| self.source_bytes as f64 / secs);
        self.snapshot_ids = self
            .sources
            .iter()
            .filter_map(|s| s.snapshot_id.clone())
            .collect();
        for s in &self.sources {
            if let Some(e) = &s.error {
                self.errors.push(format!("{}: {e}", s.source));
            }
            self.warnings
                .extend(s.warnings.iter().map(|w| format!("{}: {w}", s.source)));
        }
    }
}
