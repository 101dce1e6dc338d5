use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use coffer_archiver::filter::PatternSet;
use coffer_archiver::{restore, Progress, RestoreOptions};

use crate::cmd::SnapshotFilter;
use crate::global::{cancel_flag, GlobalOpts};
use crate::ui::{self, bytes, Reporter};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id (or prefix) or "latest"
    pub snapshot: String,
    /// Directory to restore into (a snapshot of /a/b lands in DIR/a/b)
    #[arg(short, long)]
    pub target: PathBuf,
    /// Restore only paths matching this pattern (repeatable)
    #[arg(short, long)]
    pub include: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable)
    #[arg(short, long)]
    pub exclude: Vec<String>,
    /// Re-read every restored file and check it against the snapshot
    #[arg(long)]
    pub verify: bool,
    /// Worker threads
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let repo = g.open()?;
    let _lock = g.lock(&repo, false)?;
    let snap = repo.find_snapshot(&a.snapshot, |s| a.filter.matches(s))?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        includes: PatternSet::new(&a.include)?,
        excludes: PatternSet::new(&a.exclude)?,
        verify: a.verify,
        threads: a.threads.max(1),
    };
    if !g.json && !g.quiet {
        eprintln!(
            "restoring snapshot {} of {:?} at {} to {}",
            snap.id.short(),
            snap.snap.paths,
            snap.snap.time.format("%Y-%m-%d %H:%M:%S"),
            a.target.display()
        );
    }
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let r = {
        let _r = Reporter::start(ui::mode(g.json, g.quiet), Arc::clone(&progress), "restore");
        restore(
            Arc::clone(&repo),
            &snap.snap,
            &opts,
            progress,
            cancel_flag(),
        )?
    };
    let secs = started.elapsed().as_secs_f64();
    for e in &r.errors {
        if g.json {
            println!(
                "{}",
                serde_json::json!({"message_type": "error", "error": {"message": e}, "during": "restore"})
            );
        } else {
            eprintln!("error: {e}");
        }
    }
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "message_type": "summary",
                "snapshot_id": snap.id.to_hex(),
                "files_restored": r.files,
                "dirs_restored": r.dirs,
                "others_restored": r.others,
                "bytes_restored": r.bytes,
                "files_verified": r.verified_files,
                "errors": r.errors.len(),
                "total_duration": secs,
            })
        );
    } else if !g.quiet {
        println!(
            "restored {} files, {} dirs, {} in {:.1}s ({:.1} MB/s){}",
            r.files,
            r.dirs,
            bytes(r.bytes),
            secs,
            r.bytes as f64 / secs.max(0.001) / 1e6,
            if a.verify {
                format!(", verified {} files", r.verified_files)
            } else {
                String::new()
            }
        );
    }
    if !r.errors.is_empty() {
        bail!("there were {} errors during restore", r.errors.len());
    }
    Ok(0)
}
