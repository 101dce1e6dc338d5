//! `coffer dr`: disaster recovery. `assess` prints `coffer_dr::assess`'s findings and exits 0
//! (healthy), 4 (degraded) or 5 (critical); `scenarios` lists the runbooks the config has
//! (declared and built in) with their targets and steps.

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::Context;
use coffer_config::units::short_duration;
use coffer_dr::Level;

use crate::global::GlobalOpts;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Could the site be recovered now? Each source's server and newest backup against its RPO,
    /// each repository's state; exit 0 healthy, 4 degraded, 5 critical
    Assess,
    /// List the recovery scenarios (declared [[scenario]]s and the built-in ones) with their steps
    Scenarios,
    /// Run a scenario's steps against the live servers (restores replace data: --dry-run first)
    Recover(RecoverArgs),
    /// Rehearse a scenario against scratch instances (never the live servers), check what came
    /// back and time it against the RTO and RPO; exit 0 passed, 1 failed, 4 a target missed
    Drill(DrillArgs),
}

#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    /// The scenario (coffer dr scenarios lists them)
    #[arg(long)]
    pub scenario: String,
    /// Print the plan and start nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Restore this snapshot (id or prefix) for its source; other sources use their newest
    #[arg(long, conflicts_with = "at")]
    pub snapshot: Option<String>,
    /// Restore each source's newest snapshot taken at or before this time
    /// (RFC 3339, or "YYYY-MM-DD HH:MM[:SS]" in local time)
    #[arg(long)]
    pub at: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RecoverArgs {
    /// The scenario (coffer dr scenarios lists them)
    #[arg(long)]
    pub scenario: String,
    /// Print the plan (snapshots, the RPO it achieves, expected duration) and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Restore this snapshot (id or prefix) for its source; other sources use their newest
    #[arg(long, conflicts_with = "at")]
    pub snapshot: Option<String>,
    /// Restore each source's newest snapshot taken at or before this time
    /// (RFC 3339, or "YYYY-MM-DD HH:MM[:SS]" in local time)
    #[arg(long)]
    pub at: Option<String>,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Continue a stopped recovery at this step (earlier ones are skipped)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub from_step: usize,
}

pub fn run(g: &GlobalOpts, c: Command) -> anyhow::Result<i32> {
    let cfg = g.config()?.context(
        "disaster recovery works from the config file: use --config FILE or COFFER_CONFIG",
    )?;
    match c {
        Command::Assess => assess(g, &cfg),
        Command::Scenarios => scenarios(g, &cfg),
        Command::Recover(a) => super::dr_recover::run(g, &cfg, a),
        Command::Drill(a) => super::dr_drill::run(g, &cfg, a),
    }
}

fn assess(g: &GlobalOpts, cfg: &coffer_config::Config) -> anyhow::Result<i32> {
    // The catalog is only read, and only when it exists: assess never creates one.
    let path = super::job::catalog_path(cfg);
    let catalog = if path.exists() {
        Some(super::job::catalog(cfg)?)
    } else {
        None
    };
    let open = |r: &coffer_config::RepositoryConfig| {
        g.open_named(Some(&r.name))
            .map_err(|e| crate::ui::chain_text(&e))
    };
    let a = coffer_dr::assess(cfg, catalog.as_ref(), &open, chrono::Utc::now());
    if g.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(a.overall_status.exit_code());
    }
    if g.quiet {
        return Ok(a.overall_status.exit_code());
    }
    println!("overall: {}", a.overall_status.as_str());
    println!();
    let rows: Vec<Vec<String>> = a
        .services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.kind.clone(),
                s.status.as_str().into(),
                [s.version.clone(), s.role.clone()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
                s.newest_backup
                    .as_ref()
                    .map(|n| format!("{} ago", short_duration(n.age_seconds as u64)))
                    .unwrap_or_else(|| "never".into()),
                format!(
                    "{} / {}",
                    short_duration(s.rpo_seconds),
                    short_duration(s.rto_seconds)
                ),
            ]
        })
        .collect();
    crate::ui::print_table(
        &[
            "SOURCE",
            "TYPE",
            "STATUS",
            "SERVER",
            "NEWEST BACKUP",
            "RPO / RTO",
        ],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = a
        .repositories
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.status.as_str().into(),
                r.snapshots
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.usage
                    .as_ref()
                    .map(|u| u.describe())
                    .unwrap_or_else(|| "not measured".into()),
                r.last_verify
                    .as_ref()
                    .and_then(|v| v["status"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    crate::ui::print_table(
        &[
            "REPOSITORY",
            "STATUS",
            "SNAPSHOTS",
            "STORAGE",
            "LAST VERIFY",
        ],
        &rows,
    );
    if a.drills.iter().any(|d| d.last_drill.is_some()) {
        println!();
        let rows: Vec<Vec<String>> = a
            .drills
            .iter()
            .map(|d| {
                vec![
                    d.scenario.clone(),
                    d.status.as_str().into(),
                    d.message.clone(),
                ]
            })
            .collect();
        crate::ui::print_table(&["SCENARIO", "STATUS", "LAST DRILL"], &rows);
    }
    let findings: Vec<String> = a
        .services
        .iter()
        .flat_map(|s| s.checks.iter().map(move |c| (&s.name, c)))
        .chain(
            a.repositories
                .iter()
                .flat_map(|r| r.checks.iter().map(move |c| (&r.name, c))),
        )
        .filter(|(_, c)| c.status != Level::Healthy)
        .map(|(n, c)| format!("  {} {n} {}: {}", c.status.as_str(), c.name, c.message))
        .collect();
    if !findings.is_empty() {
        println!();
        println!("findings:");
        findings.iter().for_each(|f| println!("{f}"));
    }
    if !a.recommendations.is_empty() {
        println!();
        println!("recommendations:");
        for r in &a.recommendations {
            println!("  - {r}");
        }
    }
    Ok(a.overall_status.exit_code())
}

fn scenarios(g: &GlobalOpts, cfg: &coffer_config::Config) -> anyhow::Result<i32> {
    let list = cfg.scenarios();
    if g.json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "description": s.description,
                    "builtin": !s.declared,
                    "rto_seconds": s.rto.as_secs(),
                    "rpo_seconds": s.rpo.map(|d| d.as_secs()),
                    "drill_schedule": s.drill_schedule,
                    "steps": s.steps.iter().map(|st| st.describe()).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if list.is_empty() {
        println!("no scenarios: the config declares no sources and no [[scenario]]");
        return Ok(0);
    }
    // One write, so that `coffer dr scenarios | head` ends quietly instead of panicking.
    let mut out = String::new();
    for s in &list {
        writeln!(
            out,
            "{}{}  RTO {}{}{}",
            s.name,
            if s.declared { "" } else { " (built in)" },
            short_duration(s.rto.as_secs()),
            s.rpo
                .map(|d| format!(", RPO {}", short_duration(d.as_secs())))
                .unwrap_or_default(),
            s.drill_schedule
                .as_ref()
                .map(|c| format!(", drill {c:?}"))
                .unwrap_or_default()
        )?;
        if !s.description.is_empty() {
            writeln!(out, "  {}", s.description)?;
        }
        for (i, st) in s.steps.iter().enumerate() {
            writeln!(out, "  {}. {}", i + 1, st.describe())?;
        }
        writeln!(out)?;
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(0)
}
