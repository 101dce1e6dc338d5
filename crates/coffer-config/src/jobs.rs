//! `[server]` and `[[job]]`: what the daemon runs and when. Parsed here with everything that
//! can be checked without touching a server (names refer to declared sources and
//! repositories, schedules parse, time zones exist, durations and percentages are sane), so
//! that `coffer config check` reports every mistake at once.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8081"
//! max_concurrent_jobs = 2
//!
//! [[job]]
//! name = "nightly"
//! sources = ["pg-main", "etc"]
//! schedule = "0 2 * * *"          # 5 fields, or 6 with seconds first (croner syntax)
//! timezone = "Asia/Shanghai"
//! rpo = "26h"
//! retention = { daily = 7, weekly = 4, monthly = 12 }
//! max_runtime = "4h"
//! retries = 2
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::EnvString;

/// A duration written as `90s`, `15m`, `26h`, `7d`, `2w` or a combination (`1h30m`); a bare
/// number is seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl Span {
    /// Seconds.
    pub fn secs(&self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.0.as_secs();
        if s == 0 {
            return f.write_str("0s");
        }
        for (unit, n) in [
            ("w", 604_800),
            ("d", 86_400),
            ("h", 3_600),
            ("m", 60),
            ("s", 1),
        ] {
            if s >= n {
                write!(f, "{}{unit}", s / n)?;
                s %= n;
            }
        }
        Ok(())
    }
}

impl FromStr for Span {
    type Err = String;
    fn from_str(input: &str) -> Result<Span, String> {
        let t = input.trim();
        if let Ok(n) = t.parse::<u64>() {
            return Ok(Span(Duration::from_secs(n)));
        }
        let bad =
            || format!("invalid duration {input:?}: write e.g. 90s, 15m, 26h, 7d, 2w or 1h30m");
        let mut total = 0u64;
        let mut num = String::new();
        let mut any = false;
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: u64 = num.parse().map_err(|_| bad())?;
            num.clear();
            let mult = match c {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                'w' => 604_800,
                _ => return Err(bad()),
            };
            total = n
                .checked_mul(mult)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
            any = true;
        }
        if !num.is_empty() || !any {
            return Err(bad());
        }
        Ok(Span(Duration::from_secs(total)))
    }
}

impl Span {
    /// Parses a duration given on the command line, where a bare number is refused: `2`
    /// could mean seconds, minutes or hours (`--duration 2` must not silence for 2 s).
    pub fn parse_with_unit(s: &str) -> Result<Span, String> {
        let t = s.trim();
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "duration {t:?} has no unit: write {t}s, {t}m, {t}h, {t}d or {t}w"
            ));
        }
        t.parse()
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Span(Duration::from_secs(n))),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// What to do about a schedule missed while the daemon was down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Run once at start-up, however many runs were missed.
    #[default]
    RunOnce,
    /// Only report the missed run.
    Skip,
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the HTTP API and /metrics (`coffer serve --listen` overrides).
    pub listen: String,
    /// Runs at the same time; the rest wait in QUEUED.
    pub max_concurrent_jobs: usize,
    /// Default for jobs that do not say.
    pub misfire: Misfire,
    /// The SQLite run catalog (default: /var/lib/coffer/catalog.db as root, else
    /// $XDG_DATA_HOME/coffer/catalog.db).
    pub catalog: Option<EnvString>,
    /// How long finished runs are kept in the catalog.
    pub catalog_retention: Span,
    /// Storage thresholds, in percent of the capacity used.
    pub storage: StorageConfig,
    /// Serve /metrics and the health endpoints without a token.
    pub open_metrics: bool,
    /// `[[server.token]]`: bearer tokens of the HTTP API. With none, the API is open and
    /// only a loopback address may be listened on.
    pub token: Vec<TokenConfig>,
    /// `en` or `zh-CN`: the language of alert texts (channels without their own
    /// `language`) and of commands run with this config (unless the locale asks for one).
    pub language: Option<String>,
}

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// GET everything.
    Read,
    /// GET everything, and run, pause and resume jobs.
    Operator,
}

/// `[[server.token]]`: one bearer token. Give the secret as `token` (best as `${ENV}`),
/// `token_file`, or only its SHA-256 as `token_sha256` so the file holds no secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (recorded with every call it makes).
    pub name: String,
    /// `read` or `operator`.
    pub role: Role,
    /// The token.
    pub token: Option<crate::EnvString>,
    /// A file holding the token.
    pub token_file: Option<crate::EnvString>,
    /// The token's SHA-256, in hex.
    pub token_sha256: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8081".into(),
            max_concurrent_jobs: 2,
            misfire: Misfire::RunOnce,
            catalog: None,
            catalog_retention: Span(Duration::from_secs(180 * 86_400)),
            storage: StorageConfig::default(),
            open_metrics: false,
            token: Vec::new(),
            language: None,
        }
    }
}

/// `[server.storage]`: the seeds' 70 / 85 / 95 percent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Above this, an event of severity low.
    pub low: f64,
    /// Above this, severity high, and retention runs early.
    pub high: f64,
    /// Above this, severity critical, and backups into the repository pause.
    pub critical: f64,
    /// How often repositories are measured between runs.
    pub check_interval: Span,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            low: 70.0,
            high: 85.0,
            critical: 95.0,
            check_interval: Span(Duration::from_secs(300)),
        }
    }
}

/// `[[job]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Unique name (the `backup_job` label).
    pub name: String,
    /// Sources backed up together, in this order.
    pub sources: Vec<String>,
    /// Repository (optional when one is declared).
    pub repository: Option<String>,
    /// Repositories the new snapshots are copied to afterwards (3-2-1).
    #[serde(default)]
    pub copy_to: Vec<String>,
    /// Cron schedule, 5 fields or 6 with seconds first.
    pub schedule: String,
    /// IANA time zone of the schedule (default: the host's).
    pub timezone: Option<String>,
    /// Maximum acceptable age of the newest good backup (default: two scheduled runs after it plus `[alerting] overdue_grace`).
    pub rpo: Option<Span>,
    /// Keep policy applied after SUCCESS and WARNING runs: last, hourly, daily, weekly,
    /// monthly, yearly (counts) and within (a duration).
    pub retention: Option<toml::Table>,
    /// A run longer than this is cancelled and FAILED (default 12h).
    #[serde(default = "default_max_runtime")]
    pub max_runtime: Span,
    /// Attempts after a failure, with exponential backoff (default 1).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one (default 1m).
    #[serde(default = "default_retry_delay")]
    pub retry_delay: Span,
    /// Higher runs first when jobs queue.
    #[serde(default)]
    pub priority: i32,
    /// Overrides `[server] misfire`.
    pub misfire: Option<Misfire>,
    /// `check --read-data-subset` on its own schedule.
    pub verify_schedule: Option<String>,
    /// How much a verify reads (`n/t`, `x%` or a size; default 5%).
    pub verify_subset: Option<String>,
    /// A Healthchecks-style check URL: `URL/start` when a run starts, `URL` when it ends
    /// SUCCESS or WARNING, `URL/fail` when it fails (the run's summary as the body). Holds
    /// the check's key, so it is never printed.
    pub ping_url: Option<EnvString>,
}

fn default_max_runtime() -> Span {
    Span(Duration::from_secs(12 * 3600))
}

fn default_retries() -> u32 {
    1
}

fn default_retry_delay() -> Span {
    Span(Duration::from_secs(60))
}

impl JobConfig {
    /// The next time this job is due strictly after `after`, in its time zone (the host's if
    /// none).
    pub fn next_run(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_occurrence(&self.schedule, self.timezone.as_deref(), after)
    }

    /// The next time this job's verify is due strictly after `after`.
    pub fn next_verify(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next_occurrence(
            self.verify_schedule.as_deref()?,
            self.timezone.as_deref(),
            after,
        )
    }

    /// The RPO in force, measured from `since` (the newest good backup, or when the job was
    /// first seen without one): the job's `rpo`, else the time from `since` to the second
    /// scheduled run after it plus `grace` (two missed runs). None without either. The one
    /// rule that status, alerts, metrics and disaster recovery use.
    pub fn rpo_in_force(&self, since: DateTime<Utc>, grace: Duration) -> Option<Duration> {
        if let Some(r) = self.rpo {
            return Some(r.0);
        }
        let a = self.next_run(since)?;
        let b = self.next_run(a)?;
        (b - since).to_std().ok().map(|d| d + grace)
    }
}

/// The next time a cron `schedule` fires strictly after `after`, in `timezone` (the host's
/// if none).
pub fn next_occurrence(
    schedule: &str,
    timezone: Option<&str>,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let cron = parse_schedule(schedule).ok()?;
    // croner carries the sub-second part of `after` into its answer.
    let after = chrono::DurationRound::duration_trunc(after, chrono::Duration::seconds(1)).ok()?;
    match timezone {
        Some(tz) => {
            let tz = parse_timezone(tz).ok()?;
            cron.find_next_occurrence(&after.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }
        None => cron
            .find_next_occurrence(&after.with_timezone(&chrono::Local), false)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// Parses a schedule the way the daemon will: 5 fields, or 6 with seconds first.
pub fn parse_schedule(s: &str) -> Result<croner::Cron, String> {
    let fields = s.split_whitespace().count();
    if !(5..=6).contains(&fields) && !s.trim_start().starts_with('@') {
        return Err(format!(
            "schedule {s:?} has {fields} fields: write 5 (minute hour day month weekday) or 6 (seconds first)"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(s)
        .map_err(|e| format!("schedule {s:?} is not a valid cron expression: {e}"))
}

/// Parses an IANA time zone name.
pub fn parse_timezone(s: &str) -> Result<chrono_tz::Tz, String> {
    s.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("unknown time zone {s:?} (use an IANA name such as Asia/Shanghai or UTC)")
    })
}

const RETENTION_COUNTS: [&str; 6] = ["last", "hourly", "daily", "weekly", "monthly", "yearly"];

/// Checks a retention table's keys and value types.
pub fn check_retention(t: &toml::Table) -> Vec<String> {
    let mut errors = Vec::new();
    for (k, v) in t {
        if RETENTION_COUNTS.contains(&k.as_str()) {
            match v.as_integer() {
                Some(n) if n >= -1 => {}
                _ => errors.push(format!(
                    "retention.{k} must be a count (a number >= 0, or -1 for all)"
                )),
            }
        } else if k == "within" {
            if v.as_str().is_none() {
                errors
                    .push("retention.within must be a duration such as \"30d\" or \"1y6m\"".into());
            }
        } else {
            errors.push(format!(
                "retention has no key {k:?} (keys: last hourly daily weekly monthly yearly within)"
            ));
        }
    }
    if t.is_empty() {
        errors.push("retention is empty: it would keep everything (leave it out instead)".into());
    }
    errors
}

/// A retention table in words: `daily 7, weekly 4, monthly 12`, in the order the keys are
/// applied (restic's), `within` last.
pub fn describe_retention(t: Option<&toml::Table>) -> String {
    let Some(t) = t else {
        return "everything (no retention)".into();
    };
    let mut parts: Vec<String> = RETENTION_COUNTS
        .iter()
        .filter_map(|k| t.get(*k).map(|v| (k, v)))
        .map(|(k, v)| match v.as_integer() {
            Some(-1) => format!("all {k}"),
            _ => format!("{k} {v}"),
        })
        .collect();
    if let Some(w) = t.get("within").and_then(|v| v.as_str()) {
        parts.push(format!("everything within {w}"));
    }
    parts.join(", ")
}

impl crate::Config {
    /// Things that are allowed but may surprise: printed by `config check`, never fatal.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        // Two jobs backing up one source into one repository keep two histories side by
        // side: each job's retention only ever removes the snapshots that job made.
        let repo_of = |j: &JobConfig| {
            j.repository
                .clone()
                .or_else(|| self.repository.first().map(|r| r.name.clone()))
        };
        for (i, a) in self.job.iter().enumerate() {
            for b in &self.job[i + 1..] {
                if repo_of(a) != repo_of(b) || a.retention == b.retention {
                    continue;
                }
                for s in a.sources.iter().filter(|s| b.sources.contains(s)) {
                    out.push(format!(
                        "source {s:?} is backed up by jobs {:?} and {:?} with different retention: \
                         {:?} keeps {} of its own snapshots, {:?} keeps {} of its own; \
                         neither removes the other's (or hand-made ones), so the repository holds both sets",
                        a.name,
                        b.name,
                        a.name,
                        describe_retention(a.retention.as_ref()),
                        b.name,
                        describe_retention(b.retention.as_ref()),
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!("26h".parse::<Span>().unwrap().secs(), 26 * 3600);
        assert_eq!("1h30m".parse::<Span>().unwrap().secs(), 5400);
        assert_eq!("90".parse::<Span>().unwrap().secs(), 90);
        assert_eq!("2w".parse::<Span>().unwrap().to_string(), "2w");
        assert_eq!(Span(Duration::from_secs(5400)).to_string(), "1h30m");
        for bad in ["", "h", "5x", "1h30", "-1h"] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
        assert!(Span::parse_with_unit("2").unwrap_err().contains("2h"));
        assert_eq!(Span::parse_with_unit("1w").unwrap().secs(), 604_800);
    }

    #[test]
    fn schedules() {
        assert!(parse_schedule("0 2 * * *").is_ok());
        assert!(parse_schedule("*/5 * * * * *").is_ok());
        assert!(parse_schedule("0 2 * *").unwrap_err().contains("4 fields"));
        assert!(parse_schedule("0 25 * * *").is_err());
        assert!(parse_timezone("Asia/Shanghai").is_ok());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }

    /// One rule for the RPO in force: the job's own, else two scheduled runs after the
    /// newest good backup plus the grace.
    #[test]
    fn rpo_in_force() {
        let parse = |extra: &str| {
            let t = format!(
                "[[repository]]\nname = \"r\"\nurl = \"/x\"\n[[source]]\nname = \"s\"\ntype = \"files\"\n\
                 paths = [\"/etc\"]\n[[job]]\nname = \"j\"\nsources = [\"s\"]\nschedule = \"0 * * * *\"\n\
                 timezone = \"UTC\"\n{extra}"
            );
            crate::Config::parse(&t, std::path::Path::new("c.toml")).unwrap()
        };
        let since: DateTime<Utc> = "2026-03-01T10:30:00Z".parse().unwrap();
        let grace = Duration::from_secs(600);
        let c = parse("");
        // Runs at 11:00 and 12:00: 1h30m after the backup, plus 10m.
        assert_eq!(
            c.job[0].rpo_in_force(since, grace),
            Some(Duration::from_secs(5400 + 600))
        );
        assert_eq!(
            c.job[0].next_run(since).map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-03-01T11:00:00+00:00")
        );
        let c = parse("rpo = \"26h\"\n");
        assert_eq!(
            c.job[0].rpo_in_force(since, grace),
            Some(Duration::from_secs(26 * 3600))
        );
    }

    #[test]
    fn shared_source_with_different_retention_is_a_warning() {
        let base = "[[repository]]\nname = \"local\"\nurl = \"/x\"\n\
                    [[source]]\nname = \"etc\"\ntype = \"files\"\npaths = [\"/etc\"]\n\
                    [[source]]\nname = \"pg\"\ntype = \"files\"\npaths = [\"/srv\"]\n\
                    [[job]]\nname = \"nightly\"\nsources = [\"etc\", \"pg\"]\nschedule = \"0 2 * * *\"\n\
                    retention = { daily = 7, weekly = 4, monthly = 12 }\n";
        let parse = |t: &str| crate::Config::parse(t, std::path::Path::new("c.toml")).unwrap();
        let c = parse(&format!(
            "{base}[[job]]\nname = \"quick\"\nsources = [\"etc\"]\nschedule = \"0 * * * *\"\nretention = {{ last = 3 }}\n"
        ));
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        for want in [
            "\"etc\"",
            "\"nightly\" keeps daily 7, weekly 4, monthly 12",
            "\"quick\" keeps last 3",
        ] {
            assert!(w[0].contains(want), "{want:?} not in {}", w[0]);
        }
        // The same policy, or no shared source: nothing to say.
        let c = parse(&format!(
            "{base}[[job]]\nname = \"again\"\nsources = [\"etc\"]\nschedule = \"0 * * * *\"\n\
             retention = {{ daily = 7, weekly = 4, monthly = 12 }}\n"
        ));
        assert!(c.warnings().is_empty());
        let c = parse(&format!(
            "{base}[[job]]\nname = \"keepall\"\nsources = [\"pg\"]\nschedule = \"0 * * * *\"\n"
        ));
        assert!(c.warnings()[0].contains("\"keepall\" keeps everything (no retention)"));
    }
}
