//! `coffer dr recover`: prints `coffer_dr::recover`'s plan, asks before changing anything,
//! runs the steps (printing, auditing and recording each), and says where a failed recovery
//! stopped and how to continue.

use std::io::{IsTerminal, Write as _};
use std::sync::Arc;

use anyhow::bail;
use chrono::Utc;
use coffer_catalog::{RunKind, Status, StepResult};
use coffer_config::units::short_duration;
use coffer_config::Config;
use coffer_dr::recover::{self, Choice, PlannedStep, RecoverPlan};

use super::dr::RecoverArgs;
use super::job::{audit, catalog, catalog_path};
use crate::global::GlobalOpts;

pub fn run(g: &GlobalOpts, cfg: &Config, a: RecoverArgs) -> anyhow::Result<i32> {
    let scenario = cfg.find_scenario(&a.scenario).map_err(anyhow::Error::msg)?;
    if a.from_step == 0 || a.from_step > scenario.steps.len() {
        bail!(
            "--from-step {}: scenario {:?} has steps 1 to {}",
            a.from_step,
            scenario.name,
            scenario.steps.len()
        );
    }
    let choice = choice(&a.snapshot, &a.at)?;
    let cat = catalog_unless_dry(cfg, a.dry_run)?;
    let last = cat
        .as_ref()
        .and_then(|c| coffer_dr::last_duration(c, &scenario.name, RunKind::Recover));
    let open = |r: &coffer_config::RepositoryConfig| {
        g.open_named(Some(&r.name))
            .map_err(|e| crate::ui::chain_text(&e))
    };
    let plan = recover::plan(cfg, &scenario, &open, &choice, last, Utc::now());
    if show_plan(g, &plan, a.dry_run, a.from_step, "run", "changed")? {
        return Ok(0);
    }
    if !a.yes {
        confirm(&plan)?;
    }
    let Some(cat) = cat else {
        bail!("the run catalog could not be opened");
    };
    let mut record = plan.new_run(RunKind::Recover, "manual");
    cat.insert(&mut record)?;
    audit(cfg, &cat, "dr.recover", &plan.scenario, "started");
    let total = plan.steps.len();
    let text = !g.json && !g.quiet;
    let mut shown = crate::ui::StepsReporter::start(g.json, g.quiet);
    let progress = Arc::clone(shown.progress());
    let (result, ok) = recover::execute(cfg, &plan, &open, a.from_step, &progress, &mut |p, r| {
        shown.step_done(|| {
            if text {
                print_step(p, r, total);
            }
        });
        audit(
            cfg,
            &cat,
            "dr.recover.step",
            &format!("{} step {}: {}", plan.scenario, p.number, p.step),
            &if r.status == "FAILED" {
                format!("failed: {}", r.message)
            } else {
                r.status.to_lowercase()
            },
        );
    });
    drop(shown);
    let rto_met = result.rto_seconds <= result.rto_target_seconds as f64;
    record.ended = Some(Utc::now());
    record.duration_seconds = Some(result.rto_seconds);
    record.status = match (ok, rto_met) {
        (false, _) => Status::Failed,
        (true, false) => Status::Warning,
        (true, true) => Status::Success,
    };
    if let Some(f) = result.steps.iter().find(|s| s.status == "FAILED") {
        record.errors.push(format!("{}: {}", f.step, f.message));
    }
    if ok && !rto_met {
        record.warnings.push(format!(
            "took {}, over the RTO of {}",
            short_duration(result.rto_seconds as u64),
            short_duration(result.rto_target_seconds)
        ));
    }
    record.recovery = Some(result.clone());
    cat.update(&record)?;
    audit(
        cfg,
        &cat,
        "dr.recover",
        &plan.scenario,
        record.status.as_str(),
    );
    if g.json {
        println!(
            "{}",
            serde_json::json!({"run": record.id, "status": record.status, "recovery": result})
        );
    } else if text {
        println!();
        println!(
            "recovery {} {}: RTO {} (target {}){}",
            record.id,
            record.status.as_str(),
            short_duration(result.rto_seconds.round() as u64),
            short_duration(result.rto_target_seconds),
            match (result.rpo_seconds, result.rpo_target_seconds) {
                (Some(a), Some(t)) => format!(
                    ", RPO {} (target {}{})",
                    short_duration(a),
                    short_duration(t),
                    if a > t { ", missed" } else { "" }
                ),
                _ => String::new(),
            }
        );
    }
    if !ok {
        let failed = result.steps.len();
        let done: Vec<String> = result
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.status == "SUCCESS")
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        bail!(
            "recovery {:?} stopped at step {failed} ({}); {}steps {}-{total} did not run. \
             Fix the cause, then continue with: coffer --config {} dr recover --scenario {} --from-step {failed}",
            plan.scenario,
            plan.steps[failed - 1].step,
            if done.is_empty() {
                String::new()
            } else {
                format!("steps {} completed; ", done.join(", "))
            },
            failed,
            cfg.path.display(),
            plan.scenario
        );
    }
    Ok(0)
}

/// Shows the plan (JSON only for a dry run or a plan that cannot run: otherwise the JSON
/// output is the result), refuses a plan with problems, and says whether this was a dry run
/// (then nothing was `changed`).
pub(super) fn show_plan(
    g: &GlobalOpts,
    plan: &RecoverPlan,
    dry_run: bool,
    from: usize,
    verb: &str,
    changed: &str,
) -> anyhow::Result<bool> {
    if g.json {
        if dry_run || !plan.problems.is_empty() {
            println!("{}", serde_json::to_string_pretty(plan)?);
        }
    } else if !g.quiet {
        print_plan(plan, from);
    }
    if !plan.problems.is_empty() {
        bail!(
            "scenario {:?} cannot {verb}: {}",
            plan.scenario,
            plan.problems.join("; ")
        );
    }
    if dry_run && !g.json && !g.quiet {
        println!("dry run: nothing was {changed}");
    }
    Ok(dry_run)
}

fn print_plan(plan: &RecoverPlan, from: usize) {
    println!(
        "scenario {}: {}",
        plan.scenario,
        if plan.description.is_empty() {
            "(no description)"
        } else {
            &plan.description
        }
    );
    for s in &plan.steps {
        let mut line = format!(
            "  {}. {} (timeout {})",
            s.number,
            s.step,
            short_duration(s.timeout_seconds)
        );
        if let Some(sn) = &s.snapshot {
            line.push_str(&format!(
                "\n     snapshot {} in {:?}, taken {} ({} ago)",
                sn.short_id,
                sn.repository,
                sn.time
                    .with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S"),
                short_duration(sn.age_seconds)
            ));
        }
        if let Some(i) = &s.into {
            line.push_str(&format!(", into {i}"));
        }
        if s.number < from {
            line.push_str("  [skipped: before --from-step]");
        }
        println!("{line}");
    }
    if let (Some(a), Some(t)) = (plan.rpo_seconds, plan.rpo_target_seconds) {
        println!(
            "RPO: the oldest data restored is {} old (target {}){}",
            short_duration(a),
            short_duration(t),
            if a > t { ": over the target" } else { "" }
        );
    }
    println!(
        "RTO target {}; {}",
        short_duration(plan.rto_target_seconds),
        match plan.expected_seconds {
            Some(s) => format!("the last one took {}", short_duration(s.round() as u64)),
            None => "no earlier run to estimate the duration from".into(),
        }
    );
    for p in &plan.problems {
        println!("problem: {p}");
    }
}

fn confirm(plan: &RecoverPlan) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "recovery {:?} changes live servers and no terminal can confirm it: check the plan with \
             --dry-run, then run again with --yes",
            plan.scenario
        );
    }
    print!(
        "This replaces live data. Type the scenario name ({}) to go on: ",
        plan.scenario
    );
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() != plan.scenario {
        bail!("not confirmed: nothing was changed");
    }
    Ok(())
}

/// Which snapshots `--snapshot` and `--at` ask for.
pub(super) fn choice(snapshot: &Option<String>, at: &Option<String>) -> anyhow::Result<Choice> {
    Ok(match (snapshot, at) {
        (Some(id), _) => Choice::Id(id.clone()),
        (None, Some(t)) => Choice::At(parse_time(t)?),
        (None, None) => Choice::Latest,
    })
}

/// The catalog; a dry run reads it when there is one and never creates it.
pub(super) fn catalog_unless_dry(
    cfg: &Config,
    dry_run: bool,
) -> anyhow::Result<Option<coffer_catalog::Catalog>> {
    Ok(if dry_run && !catalog_path(cfg).exists() {
        None
    } else {
        Some(catalog(cfg)?)
    })
}

/// `--at`, as [`coffer_config::when::parse_time`] reads it.
fn parse_time(s: &str) -> anyhow::Result<chrono::DateTime<Utc>> {
    coffer_config::when::parse_time(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| anyhow::anyhow!("--at {e}"))
}

/// A finished step, as recover and drill print it: `step 2/5 SUCCESS: restore db (3.1s)`.
pub(super) fn print_step(p: &PlannedStep, r: &StepResult, total: usize) {
    println!(
        "step {}/{total} {}: {} ({:.1}s){}",
        p.number,
        r.status,
        p.step,
        r.seconds,
        if r.message.is_empty() {
            String::new()
        } else {
            format!("\n    {}", r.message)
        }
    );
}
