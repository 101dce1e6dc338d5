//! Jobs from the command line: `config check`, `job run|pause|resume`, `runs` and `status`.
//! The work is in `coffer_jobs` (running) and `coffer_catalog` (history); this module loads
//! the config, opens the catalog and prints.

use std::path::PathBuf;

use anyhow::Context;
use coffer_catalog::{Catalog, Run, Status};
use coffer_config::Config;

use crate::global::{cancel_flag, GlobalOpts};
use coffer_config::units::short_duration;
use coffer_i18n::t;

use crate::ui::{bytes, lang, relative};

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the config file (every error at once, with line and key) without running
    Check,
    /// Print a commented coffer.toml covering every section
    Example,
}

#[derive(clap::Subcommand, Debug)]
pub enum JobCommand {
    /// Run a job now and wait for it (exit 0 SUCCESS, 3 WARNING, 1 FAILED)
    Run {
        /// The job
        name: String,
    },
    /// Stop a job from running (scheduled or manual) until it is resumed
    Pause {
        /// The job
        name: String,
    },
    /// Let a paused job run again
    Resume {
        /// The job
        name: String,
    },
    /// Read back part of the job's repository now, as its verify_schedule does (exit 0
    /// sound, 1 damaged or failed)
    Verify {
        /// The job
        name: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunsArgs {
    /// Only this job's runs
    #[arg(long)]
    pub job: Option<String>,
    /// Only runs of this kind: backup, verify, recover or drill
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(coffer_catalog::RunKind::ALL.map(coffer_catalog::RunKind::as_str)))]
    pub kind: Option<String>,
    /// How many (newest first)
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

fn load(g: &GlobalOpts) -> anyhow::Result<Config> {
    g.config()?
        .context("jobs live in the config file: use --config FILE or COFFER_CONFIG")
}

/// The run catalog the config names (or the default place).
pub fn catalog(cfg: &Config) -> anyhow::Result<Catalog> {
    Ok(Catalog::open(&catalog_path(cfg))?)
}

/// Where the config's catalog is.
pub fn catalog_path(cfg: &Config) -> PathBuf {
    match &cfg.server.catalog {
        Some(p) => PathBuf::from(&**p),
        None => Catalog::default_path(),
    }
}

pub fn config(g: &GlobalOpts, c: ConfigCommand) -> anyhow::Result<i32> {
    if let ConfigCommand::Example = c {
        print!("{}", coffer_config::EXAMPLE);
        return Ok(0);
    }
    let Some(path) = &g.config else {
        anyhow::bail!("jobs live in the config file: use --config FILE or COFFER_CONFIG");
    };
    let (cfg, mut errors) = match Config::load_lenient(path) {
        Ok(r) => r,
        Err(coffer_config::ConfigError::Invalid { errors, .. }) => (Config::default(), errors),
        Err(e) => return Err(e.into()),
    };
    // Sources check their own settings; every mistake is reported, not the first.
    for s in &cfg.source {
        use coffer_config::ConfigError::Invalid;
        match coffer_sources::build(&cfg, s) {
            Ok(_) => {}
            Err(coffer_sources::SourceError::Config(Invalid { errors: e, .. })) => errors.extend(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    coffer_config::sort_by_line(&mut errors);
    if !errors.is_empty() {
        if g.json {
            println!(
                "{}",
                serde_json::json!({"message_type": "summary", "valid": false, "file": path,
                    "errors": errors})
            );
        } else {
            eprintln!(
                "{}: {} error{}:",
                path.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            for e in &errors {
                eprintln!("  {e}");
            }
        }
        return Ok(1);
    }
    let warnings = cfg.warnings();
    let now = chrono::Utc::now();
    let jobs: Vec<serde_json::Value> = cfg
        .job
        .iter()
        .map(|j| serde_json::json!({"name": j.name, "next_run": j.next_run(now).map(|t| t.to_rfc3339())}))
        .collect();
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "summary", "valid": true, "file": cfg.path,
                "repositories": cfg.repository.len(), "sources": cfg.source.len(), "jobs": jobs,
                "warnings": warnings})
        );
    } else if !g.quiet {
        println!(
            "{}: valid ({} repositories, {} sources, {} jobs)",
            cfg.path.display(),
            cfg.repository.len(),
            cfg.source.len(),
            cfg.job.len()
        );
        for j in &cfg.job {
            println!(
                "  job {:<16} {:<20} next run {}",
                j.name,
                j.schedule,
                j.next_run(now)
                    .map(|t| zoned_time(t, j.timezone.as_deref(), now))
                    .unwrap_or_else(|| "never".into())
            );
        }
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(0)
}

fn print_run(r: &Run) {
    println!(
        "run {} of job {}: {} (attempt {}, {:.1}s, {} read, {} stored{})",
        r.id,
        r.job,
        r.status,
        r.attempt,
        r.duration_seconds.unwrap_or_default(),
        bytes(r.source_bytes),
        bytes(r.stored_bytes),
        r.compression_ratio
            .map(|c| format!(", ratio {c:.2}"))
            .unwrap_or_default()
    );
    for s in &r.sources {
        println!(
            "  {:<16} {:<8} {:<8} {}{}",
            s.source,
            s.kind,
            s.status,
            s.snapshot_id
                .as_deref()
                .map(|i| format!("snapshot {}", &i[..8.min(i.len())]))
                .unwrap_or_default(),
            s.error
                .as_deref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default()
        );
    }
    for e in &r.errors {
        if !r
            .sources
            .iter()
            .any(|s| e.ends_with(s.error.as_deref().unwrap_or("\0")))
        {
            println!("  error: {e}");
        }
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
    for c in &r.copies {
        println!(
            "  copy to {:<10} {:<8} {} snapshots, {} stored{}",
            c.repository,
            c.status,
            c.snapshots,
            bytes(c.stored_bytes),
            c.error
                .as_deref()
                .map(|e| format!(" error: {e}"))
                .unwrap_or_default()
        );
    }
    if let Some(v) = &r.verify {
        println!(
            "  verify {}: {} of {} packs read ({}), {} snapshots, {} problems{}",
            v.subset,
            v.packs_read,
            v.packs,
            bytes(v.bytes_read),
            v.snapshots,
            v.problems,
            if v.damaged_packs.is_empty() {
                String::new()
            } else {
                format!(", damaged packs: {}", v.damaged_packs.join(", "))
            }
        );
    }
}

/// Records an action in the catalog's audit table and the chained audit log.
pub(crate) fn audit(cfg: &Config, cat: &Catalog, action: &str, target: &str, outcome: &str) {
    let e = coffer_catalog::AuditEntry {
        time: chrono::Utc::now(),
        actor: whoami(),
        action: action.to_string(),
        target: target.to_string(),
        outcome: outcome.to_string(),
        origin: None,
    };
    let auditor = coffer_jobs::audit::Auditor::open(cfg, &catalog_path(cfg)).unwrap_or_else(|err| {
        tracing::error!(error = %err, "opening the audit log: only the catalog table records {action}");
        coffer_jobs::audit::Auditor::table_only()
    });
    auditor.record(cat, &e);
}

pub fn job(g: &GlobalOpts, c: JobCommand) -> anyhow::Result<i32> {
    let cfg = load(g)?;
    let cat = catalog(&cfg)?;
    match c {
        JobCommand::Pause { name } => {
            cfg.job(&name)?;
            cat.set_paused(&name, true, &whoami())?;
            audit(&cfg, &cat, "job.pause", &name, "ok");
            if !g.quiet {
                println!("job {name} paused");
            }
            Ok(0)
        }
        JobCommand::Resume { name } => {
            cfg.job(&name)?;
            cat.set_paused(&name, false, &whoami())?;
            audit(&cfg, &cat, "job.resume", &name, "ok");
            if !g.quiet {
                println!("job {name} resumed");
            }
            Ok(0)
        }
        JobCommand::Verify { name } => {
            let job = cfg.job(&name)?;
            let opts = run_options(g, None)?;
            let run = coffer_jobs::verify::verify_job(&cfg, job, &cat, &opts)?;
            audit(&cfg, &cat, "job.verify", &name, run.status.as_str());
            print_summary(g, &run)?;
            Ok(if run.status.is_good() || run.status == Status::Paused {
                0
            } else {
                1
            })
        }
        JobCommand::Run { name } => {
            let job = cfg.job(&name)?;
            let json = g.json;
            let quiet = g.quiet;
            let opts = run_options(
                g,
                Some(Box::new(move |r: &Run| {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"message_type": "status", "run_id": r.id, "status": r.status, "attempt": r.attempt})
                        );
                    } else if !quiet && !r.status.is_final() {
                        eprintln!("{}: {} (attempt {})", r.id, r.status, r.attempt);
                    }
                })),
            )?;
            let pings = coffer_alerts::pings::RunPings::start(job.ping_url.as_deref(), &name);
            let run = coffer_jobs::run_job(&cfg, job, &cat, &opts)?;
            audit(&cfg, &cat, "job.run", &name, run.status.as_str());
            if let Some(h) = pings.finish(&run) {
                let _ = h.join();
            }
            print_summary(g, &run)?;
            Ok(match run.status {
                Status::Success | Status::Paused => 0,
                Status::Warning => 3,
                _ => 1,
            })
        }
    }
}

/// A run started from the command line: Ctrl-C cancels it, `--retry-lock` bounds lock waits.
fn run_options(
    g: &GlobalOpts,
    on_change: Option<coffer_jobs::OnChange>,
) -> anyhow::Result<coffer_jobs::RunOptions> {
    Ok(coffer_jobs::RunOptions {
        exe: std::env::current_exe().context("finding the coffer binary")?,
        trigger: coffer_jobs::Trigger::Manual,
        cancel: cancel_flag(),
        lock_wait: g.retry_lock.unwrap_or(std::time::Duration::from_secs(600)),
        on_change,
        queued: None,
    })
}

/// The finished run: a JSON summary line, or the readable report.
fn print_summary(g: &GlobalOpts, run: &Run) -> anyhow::Result<()> {
    if g.json {
        let mut v = serde_json::to_value(run)?;
        v["message_type"] = "summary".into();
        println!("{v}");
    } else if !g.quiet {
        print_run(run);
    }
    Ok(())
}

/// The audit actor of a command: `cli:` and the person behind sudo, else the user the
/// process runs as (by its uid, so that cron and systemd, which set no $USER, are named too).
pub(crate) fn whoami() -> String {
    let user = std::env::var("SUDO_USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(coffer_repo::sysinfo::username);
    format!("cli:{user}")
}

pub fn runs(g: &GlobalOpts, a: RunsArgs) -> anyhow::Result<i32> {
    let cfg = load(g)?;
    if let Some(j) = &a.job {
        cfg.job(j)?;
    }
    let cat = catalog(&cfg)?;
    let kind = match a.kind.as_deref() {
        Some(k) => Some(
            coffer_catalog::RunKind::parse(k)
                .with_context(|| format!("--kind {k:?} is not backup, verify or recover"))?,
        ),
        None => None,
    };
    let runs = cat.list_kind(a.job.as_deref(), kind, a.limit)?;
    if g.json {
        println!("{}", serde_json::json!({ "runs": runs }));
        return Ok(0);
    }
    let now = chrono::Utc::now();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            // A failed run says why in its row; the whole list is in `coffer runs --json`.
            let note = match r.status {
                Status::Failed | Status::Paused => r
                    .errors
                    .first()
                    .map(|e| one_line(e, 100))
                    .unwrap_or_default(),
                _ => r
                    .snapshot_ids
                    .iter()
                    .map(|s| &s[..8.min(s.len())])
                    .collect::<Vec<_>>()
                    .join(","),
            };
            vec![
                r.id.clone(),
                r.status.as_str().to_string(),
                local_time(r.started, now),
                r.duration_seconds
                    .map(|d| short_duration(d.round() as u64))
                    .unwrap_or_else(|| "-".into()),
                bytes(r.source_bytes),
                bytes(r.stored_bytes),
                note,
            ]
        })
        .collect();
    crate::ui::print_table(
        &headers(&[
            "col-run",
            "col-status",
            "col-started",
            "col-took",
            "col-read",
            "col-stored",
            "col-snapshots-error",
        ]),
        &rows,
    );
    Ok(0)
}

pub fn status(g: &GlobalOpts) -> anyhow::Result<i32> {
    let cfg = load(g)?;
    let cat = catalog(&cfg)?;
    let now = chrono::Utc::now();
    let jobs = coffer_jobs::status::status(&cfg, &cat, now)?;
    if g.json {
        println!("{}", serde_json::json!({ "jobs": jobs }));
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let t = |k: &str| {
                j[k].as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .map(|d| d.with_timezone(&chrono::Utc))
            };
            let l = lang();
            let mut state = j["status"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| t!(l, "status-never-run"));
            if j["paused"] == true {
                state.push(' ');
                state.push_str(&t!(l, "status-paused"));
            }
            let age = match (j["backup_age_seconds"].as_i64(), j["rpo_seconds"].as_i64()) {
                (Some(a), Some(r)) => format!(
                    "{} / {} {}",
                    short_duration(a.max(0) as u64),
                    short_duration(r.max(0) as u64),
                    match j["rpo_state"].as_str() {
                        Some("overdue") => t!(l, "rpo-overdue"),
                        Some("at_risk") => t!(l, "rpo-at-risk"),
                        _ => t!(l, "rpo-ok"),
                    }
                ),
                (None, Some(r)) => format!(
                    "{} / {}",
                    t!(l, "rpo-none"),
                    short_duration(r.max(0) as u64)
                ),
                _ => "-".into(),
            };
            vec![
                j["name"].as_str().unwrap_or("").to_string(),
                state,
                t("last_success")
                    .map(|d| local_time(d, now))
                    .unwrap_or_else(|| t!(l, "word-never")),
                age,
                t("next_run")
                    .map(|d| zoned_time(d, j["timezone"].as_str(), now))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    crate::ui::print_table(
        &headers(&[
            "col-job",
            "col-status",
            "col-last-success",
            "col-age-rpo",
            "col-next-run",
        ]),
        &rows,
    );
    Ok(0)
}

/// `2026-12-04 18:02 (5m ago)` in the host's time zone.
pub(crate) fn local_time(
    t: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    format!(
        "{} ({})",
        t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
        relative((t - now).num_seconds())
    )
}

/// `2026-12-05 02:00 CST (in 7h58m)` in the job's time zone, or in the host's (without a
/// zone name, as the other local times) when it has none.
pub(crate) fn zoned_time(
    t: chrono::DateTime<chrono::Utc>,
    tz: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let when = match tz.and_then(|z| coffer_config::jobs::parse_timezone(z).ok()) {
        Some(z) => t.with_timezone(&z).format("%Y-%m-%d %H:%M %Z").to_string(),
        None => t
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
    };
    format!("{when} ({})", relative((t - now).num_seconds()))
}

/// The first line of `s`, cut to `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > max {
        format!("{}…", l.chars().take(max - 1).collect::<String>())
    } else {
        l.to_string()
    }
}

/// Table headers from message ids, in the command's language.
pub(crate) fn headers(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| lang().format(id, &[])).collect()
}
