//! `coffer check`: structure checks, and with `--read-data[-subset]` a read-back of pack data;
//! exits 1 when anything is wrong, naming the damaged packs and the snapshots and files that
//! depend on them.

use std::sync::Arc;

use coffer_maint::check::{self, CheckOptions, CheckReport, Subset};
use coffer_maint::Progress;

use coffer_i18n::t;

use crate::global::GlobalOpts;
use crate::ui::{self, bytes};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also read every pack: decrypt and hash all data
    #[arg(long)]
    pub read_data: bool,
    /// Read only a subset of packs: n/t (group n of t, by pack id), x% (random), or a size
    #[arg(long, value_name = "SUBSET", conflicts_with = "read_data")]
    pub read_data_subset: Option<String>,
    /// List at most this many affected files per snapshot (0: all)
    #[arg(long, default_value_t = 20)]
    pub max_paths: usize,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => Some(Subset::parse(s)?),
        (None, true) => Some(Subset::All),
        (None, false) => None,
    };
    let repo = g.open()?;
    // Check changes nothing: the lock's race check runs while it works.
    let lock = g.lock_deferred(&repo)?;
    let progress = Arc::new(Progress::default());
    ui::cancel_on_signal(&progress);
    let report = {
        let _r = ui::TaskReporter::start(ui::mode(g.json, g.quiet), Arc::clone(&progress));
        check::check(
            &repo,
            &CheckOptions {
                read_data,
                max_paths: a.max_paths,
            },
            &progress,
        )?
    };
    lock.confirm()?;
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = "summary".into();
        v["ok"] = report.ok().into();
        println!("{v}");
    } else {
        print_report(&report, g.quiet);
    }
    if report.ok() {
        Ok(0)
    } else {
        anyhow::bail!(
            "{}",
            t!(crate::ui::lang(), "check-errors", n = report.errors.len())
        )
    }
}

fn print_report(r: &CheckReport, quiet: bool) {
    let l = crate::ui::lang();
    if !quiet {
        println!(
            "{}",
            t!(
                l,
                "check-summary",
                index = r.index_files,
                packs = r.packs,
                snapshots = r.snapshots,
                trees = r.trees
            )
        );
        if r.packs_read > 0 {
            println!(
                "{}",
                t!(
                    l,
                    "check-read",
                    packs = r.packs_read,
                    bytes = bytes(r.bytes_read),
                    blobs = r.blobs_read
                )
            );
        }
        if !r.unreferenced_packs.is_empty() {
            println!(
                "{}",
                t!(l, "check-unreferenced", n = r.unreferenced_packs.len())
            );
        }
    }
    let error = t!(l, "prefix-error");
    for e in &r.errors {
        eprintln!("{error}: {} {}: {}", e.kind, e.id, e.message);
    }
    for d in &r.damaged_packs {
        eprintln!(
            "{}",
            t!(
                l,
                "check-damaged-pack",
                pack = d.pack.to_string(),
                n = d.blobs.len()
            )
        );
    }
    for s in &r.affected_snapshots {
        eprintln!(
            "{}",
            t!(
                l,
                "check-affected",
                id = s.snapshot.short(),
                time = s.time.as_str(),
                paths = s.paths.join(", "),
                n = s.affected
            )
        );
        for f in &s.files {
            eprintln!("    {f}");
        }
        if (s.files.len() as u64) < s.affected {
            eprintln!(
                "    {}",
                t!(l, "check-more", n = s.affected - s.files.len() as u64)
            );
        }
    }
    if r.ok() && !quiet {
        println!("{}", t!(l, "check-ok"));
    }
}
