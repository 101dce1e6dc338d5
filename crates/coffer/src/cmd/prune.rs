//! `coffer prune`: delete unreferenced data and repack partly used packs, under an exclusive
//! lock (see `coffer_maint::prune`).

use std::sync::Arc;

use coffer_maint::prune::{self, MaxUnused, PruneOptions, PruneStats};
use coffer_maint::Progress;

use crate::global::GlobalOpts;
use crate::ui::{self, bytes};

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Unused space allowed to remain: a percentage of the used size (5%), a size (200M),
    /// or "unlimited" (only delete packs that are entirely unused)
    #[arg(long, default_value = "5%", value_name = "LIMIT")]
    pub max_unused: String,
    /// Repack at most this much (e.g. 1G); useful on metered storage
    #[arg(long, value_name = "SIZE")]
    pub max_repack_size: Option<String>,
    /// Only show what would be done
    #[arg(long, short = 'n')]
    pub dry_run: bool,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let repo = g.open()?;
    run_on(g, &repo, a)
}

/// Prune with default settings; `forget --prune` calls this after forgetting (the caller must
/// not hold a lock any more).
pub fn run_default(g: &GlobalOpts) -> anyhow::Result<i32> {
    run(
        g,
        Args {
            max_unused: "5%".into(),
            ..Args::default()
        },
    )
}

fn run_on(g: &GlobalOpts, repo: &Arc<coffer_repo::Repository>, a: Args) -> anyhow::Result<i32> {
    let opts = PruneOptions {
        max_unused: MaxUnused::parse(&a.max_unused)?,
        max_repack_bytes: a
            .max_repack_size
            .as_deref()
            .map(prune::parse_size)
            .transpose()?,
        dry_run: a.dry_run,
        upload_threads: if repo.backend().location().is_local() {
            2
        } else {
            4
        },
    };
    let lock = g.lock(repo, true)?;
    repo.load_index()?;
    let progress = Arc::new(Progress::default());
    ui::cancel_on_signal(&progress);
    let stats = {
        let _r = ui::TaskReporter::start(ui::mode(g.json, g.quiet), Arc::clone(&progress));
        let plan = prune::plan(repo, &opts, &progress)?;
        if !g.json && !g.quiet && !a.dry_run {
            print_plan(&plan.stats);
        }
        prune::execute(repo, plan, &opts, &lock, &progress)?
    };
    drop(lock);
    if g.json {
        let mut v = serde_json::to_value(&stats)?;
        v["message_type"] = "summary".into();
        println!("{v}");
    } else if !g.quiet {
        if a.dry_run {
            print_plan(&stats);
            println!("dry run: nothing was changed");
        } else {
            println!(
                "done: {} packs written, {} packs deleted ({} unused, {} repacked, {} unreferenced); {} index files replaced by {}; freed {} ({} -> {})",
                stats.packs_written,
                stats.remove_packs.count + stats.repack_packs.count + stats.unreferenced_packs.count,
                stats.remove_packs.count,
                stats.repack_packs.count,
                stats.unreferenced_packs.count,
                stats.index_files_deleted,
                stats.index_files_written,
                bytes(stats.bytes_freed),
                bytes(stats.total_before),
                bytes(stats.total_after)
            );
        }
    }
    Ok(0)
}

fn print_plan(s: &PruneStats) {
    let line = |what: &str, a: &coffer_maint::prune::Amount| {
        println!("{what:<24} {:>9} {:>14}", a.count, bytes(a.bytes));
    };
    println!("{} snapshots keep their data", s.snapshots);
    line("used blobs:", &s.used_blobs);
    line("duplicate blobs:", &s.duplicate_blobs);
    line("unused blobs:", &s.unused_blobs);
    line("packs kept:", &s.keep_packs);
    line("packs to repack:", &s.repack_packs);
    line("packs to delete:", &s.remove_packs);
    line("unreferenced packs:", &s.unreferenced_packs);
    if s.missing_packs > 0 {
        println!(
            "{} packs named by the index are missing and will be dropped from it",
            s.missing_packs
        );
    }
    println!(
        "unused space after prune: {} ; repository {} -> about {} (frees about {})",
        bytes(s.unused_after),
        bytes(s.total_before),
        bytes(s.total_after),
        bytes(s.bytes_freed)
    );
}
