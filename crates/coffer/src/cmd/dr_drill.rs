//! `coffer dr drill`: prints `coffer_dr::drill`'s plan, runs it against scratch instances,
//! prints each step and check, and says where the report is. Ctrl-C or SIGTERM stops every
//! scratch instance, records the drill as failed and exits.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::bail;
use chrono::Utc;
use coffer_catalog::{Catalog, Run, RunKind, Status};
use coffer_config::units::short_duration;
use coffer_config::Config;
use coffer_dr::drill;

use super::dr::DrillArgs;
use super::dr_recover::{catalog_unless_dry, choice, print_step, show_plan};
use super::job::{audit, catalog_path};
use crate::global::GlobalOpts;

/// Exit code of a drill whose checks passed but that missed a target.
const TARGET_MISSED: i32 = 4;

pub fn run(g: &GlobalOpts, cfg: &Config, a: DrillArgs) -> anyhow::Result<i32> {
    let scenario = cfg.find_scenario(&a.scenario).map_err(anyhow::Error::msg)?;
    let choice = choice(&a.snapshot, &a.at)?;
    let cat = catalog_unless_dry(cfg, a.dry_run)?;
    let last = cat
        .as_ref()
        .and_then(|c| coffer_dr::last_duration(c, &scenario.name, RunKind::Drill));
    let open = |r: &coffer_config::RepositoryConfig| {
        g.open_named(Some(&r.name))
            .map_err(|e| crate::ui::chain_text(&e))
    };
    let plan = drill::plan(cfg, &scenario, &open, &choice, last, Utc::now());
    if show_plan(g, &plan, a.dry_run, 1, "be drilled", "started")? {
        return Ok(0);
    }
    let Some(cat) = cat else {
        bail!("the run catalog could not be opened");
    };
    let text = !g.json && !g.quiet;
    let total = plan.steps.len();
    let cancel = Arc::new(AtomicBool::new(false));
    let signalled = Arc::new(AtomicI32::new(0));
    let mut shown = crate::ui::StepsReporter::start(g.json, g.quiet);
    let progress = Arc::clone(shown.progress());
    let recorded = drill::run(
        cfg,
        &plan,
        &open,
        &cat,
        "manual",
        &cancel,
        &progress,
        &mut |r| {
            audit(cfg, &cat, "dr.drill", &plan.scenario, "started");
            on_signal_cancel(
                catalog_path(cfg),
                r.clone(),
                Arc::clone(&cancel),
                Arc::clone(&signalled),
            );
        },
        &mut |p, r| {
            shown.step_done(|| {
                if text {
                    print_step(p, r, total);
                }
            })
        },
    );
    drop(shown);
    let mut recorded = recorded.map_err(anyhow::Error::msg)?;
    let sig = signalled.load(Ordering::SeqCst);
    if sig != 0 {
        recorded
            .run
            .errors
            .insert(0, format!("interrupted by {}", signal_name(sig)));
        cat.update(&recorded.run)?;
    }
    let (run, report) = (&recorded.run, &recorded.report);
    audit(cfg, &cat, "dr.drill", &plan.scenario, run.status.as_str());
    if g.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else if text {
        println!();
        for c in &report.checks {
            println!(
                "check {} {} ({:.1}s): {}",
                if c.passed { "passed" } else { "FAILED" },
                c.check,
                c.seconds,
                c.detail
            );
        }
        println!(
            "drill {} {}: RTO {} (target {}{}){}",
            run.id,
            if report.passed { "PASSED" } else { "FAILED" },
            if report.rto_seconds < 60.0 {
                format!("{:.1}s", report.rto_seconds)
            } else {
                short_duration(report.rto_seconds.round() as u64)
            },
            short_duration(report.rto_target_seconds),
            if report.rto_met { "" } else { ", missed" },
            match (report.rpo_seconds, report.rpo_target_seconds) {
                (Some(a), Some(t)) => format!(
                    ", RPO {} (target {}{})",
                    short_duration(a),
                    short_duration(t),
                    if a > t { ", missed" } else { "" }
                ),
                _ => String::new(),
            }
        );
        for f in &report.failures {
            println!("  {f}");
        }
        match &recorded.files {
            Ok((html, json)) => println!("report: {} ({})", html.display(), json.display()),
            Err(e) => eprintln!("warning: the report could not be written: {e}"),
        }
    }
    Ok(match run.status {
        _ if sig != 0 => 128 + sig,
        Status::Success => 0,
        Status::Warning => TARGET_MISSED,
        _ => 1,
    })
}

fn signal_name(sig: i32) -> &'static str {
    if sig == signal_hook::consts::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

/// On SIGINT or SIGTERM: cancel the drill and stop every scratch instance, so that the
/// running step ends and the drill records itself as interrupted. Should it still be running
/// after a grace period (a step that does not notice), record the run as failed and exit.
fn on_signal_cancel(
    catalog: std::path::PathBuf,
    mut run: Run,
    cancel: Arc<AtomicBool>,
    signalled: Arc<AtomicI32>,
) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        let Some(sig) = signals.forever().next() else {
            return;
        };
        signalled.store(sig, Ordering::SeqCst);
        cancel.store(true, Ordering::SeqCst);
        let stopped = coffer_sources::scratch::stop_all();
        eprintln!(
            "drill {}: {}, stopping: {}",
            run.id,
            signal_name(sig),
            if stopped.is_empty() {
                "nothing was running".to_string()
            } else {
                stopped.join(", ")
            }
        );
        std::thread::sleep(std::time::Duration::from_secs(20));
        run.status = Status::Failed;
        run.ended = Some(Utc::now());
        run.errors.push(format!(
            "interrupted by {}; the drill did not stop in time",
            signal_name(sig)
        ));
        if let Ok(c) = Catalog::open(&catalog) {
            let _ = c.update(&run);
        }
        std::process::exit(128 + sig);
    });
}
