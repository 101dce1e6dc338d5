//! `coffer audit verify`: checks the HMAC-chained audit log of `[audit]` line by line
//! against its key, and its end against the head recorded in the catalog, so that an edited,
//! inserted or removed line, or lines cut from the end, are reported. `coffer audit show`
//! prints the lines (each marked by whether its MAC holds). Also the helper the repository
//! commands use to record themselves when they run with a config file.

use anyhow::Context;

use crate::cmd::job::{audit, catalog, catalog_path};
use crate::global::GlobalOpts;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Check every line of the audit log and its end; exit 1 if anything is wrong
    Verify,
    /// Print the audit log: who did what, when, with what outcome (newest last)
    Show {
        /// Only entries since then: a duration back from now (24h, 7d) or a time
        /// (2026-12-01T00:00:00Z)
        #[arg(long)]
        since: Option<String>,
        /// At most this many (the newest)
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

pub fn run(g: &GlobalOpts, c: Command) -> anyhow::Result<i32> {
    let cfg = g.config()?.context(
        "the audit log is set up by the config file: use --config FILE or COFFER_CONFIG",
    )?;
    if let Command::Show { since, limit } = c {
        return show(g, &cfg, since.as_deref(), limit);
    }
    let cat = catalog(&cfg)?;
    let (report, expected, log) = coffer_jobs::audit::verify(&cfg, &catalog_path(&cfg), &cat)?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "log": log,
                "ok": report.ok(),
                "lines": report.lines,
                "head": report.head,
                "expected_head": expected,
                "problems": report.problems.iter().map(|p| serde_json::json!({
                    "line": p.line,
                    "kind": format!("{:?}", p.kind),
                    "message": p.message,
                })).collect::<Vec<_>>(),
                "omitted": report.omitted,
            })
        );
    } else {
        for p in &report.problems {
            println!("{}: {p}", log.display());
        }
        if report.omitted > 0 {
            println!("... and {} more problem(s)", report.omitted);
        }
        if report.ok() {
            println!(
                "{}: {} line(s), chain intact{}",
                log.display(),
                report.lines,
                match &expected {
                    Some(h) => format!(", ends at the recorded head (seq {})", h.seq),
                    None => " (no head recorded in the catalog yet)".into(),
                }
            );
        } else {
            println!(
                "{}: {} problem(s) in {} line(s): the log was altered",
                log.display(),
                report.problems.len() as u64 + report.omitted,
                report.lines
            );
        }
    }
    Ok(if report.ok() { 0 } else { 1 })
}

fn show(
    g: &GlobalOpts,
    cfg: &coffer_config::Config,
    since: Option<&str>,
    limit: usize,
) -> anyhow::Result<i32> {
    let now = chrono::Utc::now();
    let since = match since {
        None => None,
        Some(s) => Some(match chrono::DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&chrono::Utc),
            Err(_) => {
                let d = coffer_config::Span::parse_with_unit(s).map_err(|e| {
                    anyhow::anyhow!(
                        "--since {s:?}: {e}, or give a time such as 2026-12-01T00:00:00Z"
                    )
                })?;
                now - chrono::Duration::seconds(d.secs() as i64)
            }
        }),
    };
    let (mut lines, log) = coffer_jobs::audit::show(cfg, &catalog_path(cfg), since)?;
    let skip = lines.len().saturating_sub(limit);
    lines.drain(..skip);
    if g.json {
        println!("{}", serde_json::json!({ "log": log, "entries": lines }));
        return Ok(0);
    }
    if lines.is_empty() {
        println!(
            "{}: no entries{}",
            log.display(),
            if since.is_some() { " in that time" } else { "" }
        );
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            vec![
                l.seq.to_string(),
                super::job::local_time(l.entry.time, now),
                l.entry.actor.clone(),
                l.entry.action.clone(),
                l.entry.target.clone(),
                l.entry.outcome.clone(),
                if l.valid { "ok" } else { "ALTERED" }.to_string(),
            ]
        })
        .collect();
    crate::ui::print_table(
        &["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "OUTCOME", "MAC"],
        &rows,
    );
    if lines.iter().any(|l| !l.valid) {
        eprintln!(
            "warning: lines marked ALTERED do not match their MAC: run `coffer audit verify`"
        );
        return Ok(1);
    }
    Ok(0)
}

/// Records a repository command (backup, restore, forget, prune, key change) in the audit
/// trail when a config file names it; a bare `coffer -r REPO ...` has no trail to write to.
pub fn record(g: &GlobalOpts, action: &str, target: &str, outcome: &str) {
    let Ok(Some(cfg)) = g.config() else { return };
    match catalog(&cfg) {
        Ok(cat) => audit(&cfg, &cat, action, target, outcome),
        Err(e) => tracing::error!(error = %e, "opening the catalog to audit {action}"),
    }
}
