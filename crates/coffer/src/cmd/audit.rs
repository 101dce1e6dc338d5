//! `coffer audit verify`: checks the HMAC-chained audit log of `[audit]` line by line
//! against its key, and its end against the head recorded in the catalog, so that an edited,
//! inserted or removed line, or lines cut from the end, are reported. Also the helper the
//! repository commands use to record themselves when they run with a config file.

use anyhow::Context;

use crate::cmd::job::{audit, catalog, catalog_path};
use crate::global::GlobalOpts;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Check every line of the audit log and its end; exit 1 if anything is wrong
    Verify,
}

pub fn run(g: &GlobalOpts, c: Command) -> anyhow::Result<i32> {
    let Command::Verify = c;
    let cfg = g.config()?.context(
        "the audit log is set up by the config file: use --config FILE or COFFER_CONFIG",
    )?;
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

/// Records a repository command (backup, restore, forget, prune, key change) in the audit
/// trail when a config file names it; a bare `coffer -r REPO ...` has no trail to write to.
pub fn record(g: &GlobalOpts, action: &str, target: &str, outcome: &str) {
    let Ok(Some(cfg)) = g.config() else { return };
    match catalog(&cfg) {
        Ok(cat) => audit(&cfg, &cat, action, target, outcome),
        Err(e) => tracing::error!(error = %e, "opening the catalog to audit {action}"),
    }
}
