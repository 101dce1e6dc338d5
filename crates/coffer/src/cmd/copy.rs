//! `coffer copy --from-repo SRC [SNAPSHOT...]`: copy snapshots from another repository into
//! this one, transferring only what this one lacks (see `coffer_maint::copy`).

use std::sync::Arc;

use anyhow::Context;
use coffer_maint::Progress;
use coffer_repo::backend::Location;
use coffer_repo::Repository;

use crate::cmd::SnapshotFilter;
use crate::global::GlobalOpts;
use crate::ui::{self, bytes};

/// The source repository of `copy` and `init --copy-chunker-params` (restic's option names).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct FromRepo {
    /// Source repository
    #[arg(
        long = "from-repo",
        env = "COFFER_FROM_REPOSITORY",
        value_name = "REPO"
    )]
    pub from_repo: Option<String>,
    /// File holding the source repository's password (wins over COFFER_FROM_PASSWORD)
    #[arg(long, env = "COFFER_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<std::path::PathBuf>,
}

impl FromRepo {
    pub fn open(&self, g: &GlobalOpts) -> anyhow::Result<Arc<Repository>> {
        let Some(url) = &self.from_repo else {
            anyhow::bail!("no source repository: use --from-repo or COFFER_FROM_REPOSITORY");
        };
        let location = Location::parse(url)?;
        let password = match &self.from_password_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("reading source password file {}", f.display()))?
                .trim()
                .to_string(),
            None => match std::env::var("COFFER_FROM_PASSWORD") {
                Ok(p) => p,
                Err(_) => anyhow::bail!(
                    "no password for the source repository: use --from-password-file, COFFER_FROM_PASSWORD_FILE or COFFER_FROM_PASSWORD"
                ),
            },
        };
        if password.is_empty() {
            anyhow::bail!("the source repository's password is empty");
        }
        let mut repo = Repository::open(&location, &password)
            .with_context(|| format!("opening source repository {location}"))?;
        if g.no_cache {
            repo.disable_cache();
        }
        Ok(Arc::new(repo))
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub from: FromRepo,
    #[command(flatten)]
    pub filter: SnapshotFilter,
    /// Snapshots to copy (default: all that pass the filters)
    pub snapshots: Vec<String>,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let src = a.from.open(g)?;
    let dst = g.open().map_err(|e| {
        let missing = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<coffer_repo::RepoError>(),
                Some(coffer_repo::RepoError::NotFound { .. })
            )
        });
        if missing {
            // Created with the source's chunker parameters, the copy deduplicates.
            e.context(
                "the destination (create it with `coffer -r DEST init --copy-chunker-params \
                 --from-repo SOURCE`, so that the copy deduplicates)",
            )
        } else {
            e
        }
    })?;
    if src.config().id == dst.config().id {
        anyhow::bail!("source and destination are the same repository");
    }
    let _src_lock = g
        .lock(&src, false)
        .context("locking the source repository")?;
    let _dst_lock = g.lock(&dst, false)?;
    let snaps = if a.snapshots.is_empty() {
        src.snapshots()?
            .into_iter()
            .filter(|s| a.filter.matches(&s.snap))
            .collect()
    } else {
        let mut v = Vec::new();
        for spec in &a.snapshots {
            v.push(src.find_snapshot(spec, |s| a.filter.matches(s))?);
        }
        v
    };
    src.load_index()?;
    dst.load_index()?;
    if src.config().chunker_polynomial != dst.config().chunker_polynomial && !g.quiet {
        eprintln!("note: the repositories use different chunker parameters, so files backed up to both are not deduplicated (create the destination with `init --copy-chunker-params`)");
    }
    let progress = Arc::new(Progress::default());
    ui::cancel_on_signal(&progress);
    let threads = if dst.backend().location().is_local() {
        2
    } else {
        4
    };
    let report = {
        let _r = ui::TaskReporter::start(ui::mode(g.json, g.quiet), Arc::clone(&progress));
        coffer_maint::copy::copy(&src, &dst, &snaps, threads, &progress)?
    };
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["message_type"] = "summary".into();
        println!("{v}");
    } else if !g.quiet {
        for (from, to) in &report.copied {
            println!("snapshot {} copied as {}", from.short(), to.short());
        }
        for s in &report.skipped {
            println!("snapshot {} is already in the destination", s.short());
        }
        println!(
            "{} snapshots copied, {} skipped; {} blobs ({}) transferred, {} stored, {} already present",
            report.copied.len(),
            report.skipped.len(),
            report.blobs_copied,
            bytes(report.bytes_copied),
            bytes(report.bytes_stored),
            report.blobs_deduplicated
        );
    }
    Ok(0)
}
