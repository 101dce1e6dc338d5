//! `coffer repair index|snapshots`: save what survives damage (see `coffer_maint::repair`).

use std::sync::Arc;

use coffer_maint::repair::{self, RepairIndexOptions, RepairSnapshotsOptions};
use coffer_maint::Progress;

use crate::cmd::SnapshotFilter;
use crate::global::GlobalOpts;
use crate::ui;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Rebuild the index from the packs, dropping blobs that fail to decrypt or hash
    Index(IndexArgs),
    /// Rewrite snapshots to drop files whose data is lost
    Snapshots(SnapshotsArgs),
}

#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    /// Only read pack headers where the index disagrees (fast; does not verify data)
    #[arg(long)]
    pub headers_only: bool,
    /// Only show what would be done
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    /// Remove the damaged snapshots once their repaired versions are saved
    #[arg(long)]
    pub forget: bool,
    /// Only show what would be done
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Add this tag to repaired snapshots
    #[arg(long = "add-tag", value_name = "TAG")]
    pub add_tag: Option<String>,
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Snapshots to repair (default: all)
    pub snapshots: Vec<String>,
}

pub fn run(g: &GlobalOpts, c: Command) -> anyhow::Result<i32> {
    let repo = g.open()?;
    let lock = g.lock(&repo, true)?;
    let progress = Arc::new(Progress::default());
    ui::cancel_on_signal(&progress);
    match c {
        Command::Index(a) => {
            let report = with_progress(g, &progress, || {
                repair::repair_index(
                    &repo,
                    &RepairIndexOptions {
                        headers_only: a.headers_only,
                        dry_run: a.dry_run,
                    },
                    &progress,
                )
            })?;
            drop(lock);
            print_report(g, &report, |report| {
                for p in &report.unreadable_packs {
                    println!("pack {p}: unreadable, its blobs are lost");
                }
                for p in &report.salvaged_packs {
                    println!("pack {p}: damaged, good blobs copied to a new pack (`coffer prune` deletes the old one)");
                }
                if report.blobs_found_by_index > 0 {
                    println!(
                        "{} blobs of packs with an unreadable header were read where the old index put them",
                        report.blobs_found_by_index
                    );
                }
                if report.blobs_found_by_scan > 0 {
                    println!(
                        "{} blobs of packs with neither a readable header nor index entries were found by scanning",
                        report.blobs_found_by_scan
                    );
                }
                println!(
                    "{} packs read; {} blobs indexed, {} dropped; {} index files replaced by {}{}",
                    report.packs_read,
                    report.blobs_indexed,
                    report.blobs_dropped,
                    report.index_files_replaced,
                    report.index_files_written,
                    dry_run_note(a.dry_run)
                );
                if report.bytes_unscanned > 0 {
                    println!(
                        "{} of damaged packs could not be scanned past the damage: the blobs there are lost",
                        coffer_config::units::bytes(report.bytes_unscanned)
                    );
                }
                if report.blobs_dropped > 0
                    || report.bytes_unscanned > 0
                    || !report.unreadable_packs.is_empty()
                {
                    println!("data was lost: run `coffer repair snapshots` so that snapshots stop referring to it");
                }
            })?;
        }
        Command::Snapshots(a) => {
            repo.load_index()?;
            let (all, mut unreadable) = repo.snapshots_and_damage()?;
            let mut snaps: Vec<_> = all
                .into_iter()
                .filter(|s| a.filter.matches(&s.snap))
                .collect();
            if !a.snapshots.is_empty() {
                // Named snapshots only: unreadable files are left to a run without names.
                unreadable.clear();
                let mut chosen = Vec::new();
                for spec in &a.snapshots {
                    chosen.push(repo.find_snapshot(spec, |s| a.filter.matches(s))?);
                }
                snaps = chosen;
            }
            let report = with_progress(g, &progress, || {
                repair::repair_snapshots(
                    &repo,
                    &snaps,
                    &unreadable,
                    &RepairSnapshotsOptions {
                        forget: a.forget,
                        dry_run: a.dry_run,
                        tag: a.add_tag.clone(),
                    },
                    &progress,
                )
            })?;
            drop(lock);
            print_report(g, &report, |report| {
                for r in &report.repaired {
                    println!("snapshot {}:", r.snapshot.short());
                    for f in &r.dropped_files {
                        println!("    file {f}: data lost, removed");
                    }
                    for d in &r.emptied_dirs {
                        println!("    directory {d}: tree lost, now empty");
                    }
                    match (&r.new_snapshot, r.forgotten) {
                        (Some(n), true) => println!("    saved as {}, original removed", n.short()),
                        (Some(n), false) => println!(
                            "    saved as {} (the original stays; --forget removes it)",
                            n.short()
                        ),
                        (None, true) => println!("    nothing could be saved; removed"),
                        (None, false) => {}
                    }
                }
                for d in &report.unreadable {
                    println!("snapshot file {}: damaged ({})", d.id.short(), d.reason);
                    println!(
                        "    {}",
                        match (report.unreadable_removed, a.dry_run) {
                            (true, _) => "removed: nothing of it could be read",
                            (false, true) => "would be removed with --forget",
                            (false, false) => "nothing of it can be read: --forget removes it",
                        }
                    );
                }
                println!(
                    "{} of {} snapshots needed repair{}",
                    report.repaired.len() + report.unreadable.len(),
                    report.snapshots,
                    dry_run_note(a.dry_run)
                );
            })?;
        }
    }
    Ok(0)
}

/// Runs `work` while the progress of `progress` is shown (a bar, or JSON status lines).
fn with_progress<T>(
    g: &GlobalOpts,
    progress: &Arc<Progress>,
    work: impl FnOnce() -> coffer_maint::Result<T>,
) -> anyhow::Result<T> {
    let _r = ui::TaskReporter::start(ui::mode(g.json, g.quiet), Arc::clone(progress));
    Ok(work()?)
}

/// Prints a report: restic's `summary` message with --json, otherwise `text` unless --quiet.
fn print_report<R: serde::Serialize>(
    g: &GlobalOpts,
    report: &R,
    text: impl FnOnce(&R),
) -> anyhow::Result<()> {
    if g.json {
        let mut v = serde_json::to_value(report)?;
        v["message_type"] = "summary".into();
        println!("{v}");
    } else if !g.quiet {
        text(report);
    }
    Ok(())
}

fn dry_run_note(dry_run: bool) -> &'static str {
    if dry_run {
        " (dry run: nothing changed)"
    } else {
        ""
    }
}
