//! PostgreSQL physical backups from the command line: `wal-push` (archive_command),
//! `wal-fetch` (restore_command) and `pg restore` (a data directory at a point in time).
//! The work is in `coffer_sources::postgres::{archive, physical}`; this module resolves the
//! source and repository, takes the shared lock and reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use coffer_sources::postgres::archive::{self, FetchOutcome, PushOutcome, PushRequest};
use coffer_sources::postgres::physical::{self, PitrRequest, RecoveryTarget};
use coffer_sources::postgres::prefetch;
use coffer_sources::postgres::wal;

use crate::global::GlobalOpts;
use crate::ui::{self, bytes, Reporter};

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The physical PostgreSQL source (from the config file) whose archive this is
    #[arg(long)]
    pub source: String,
    /// The WAL file to archive (%p in archive_command)
    pub path: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The physical PostgreSQL source (from the config file)
    #[arg(long)]
    pub source: String,
    /// Only files of the cluster with this system identifier (default: that of the newest
    /// base backup)
    #[arg(long, value_name = "ID")]
    pub system_id: Option<u64>,
    /// Fetch this many following segments ahead into pg_wal/.coffer-prefetch when a request
    /// misses, so that the next requests need no repository access (0: off; needs
    /// --system-id, which `coffer pg restore` writes into restore_command)
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub prefetch: usize,
    /// The file PostgreSQL wants (%f in restore_command)
    pub name: String,
    /// Where to write it (%p in restore_command)
    pub dest: PathBuf,
}

#[derive(clap::Subcommand, Debug)]
pub enum PgCommand {
    /// Lay out a data directory from a base backup and configure recovery to a point in time
    Restore(RestoreArgs),
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The physical PostgreSQL source (from the config file)
    #[arg(long)]
    pub source: String,
    /// "latest" (replay all archived WAL) or the id of the base backup snapshot to start from
    #[arg(default_value = "latest")]
    pub snapshot: String,
    /// New data directory (absent or empty)
    #[arg(short, long)]
    pub target: PathBuf,
    /// Recover up to this time (RFC 3339, or YYYY-MM-DD HH:MM:SS[.ffffff] in local time)
    #[arg(long, conflicts_with = "target_lsn")]
    pub target_time: Option<String>,
    /// Recover up to this LSN (e.g. 0/3000060)
    #[arg(long)]
    pub target_lsn: Option<String>,
    /// Cluster to restore when the source has backups of several (default: the newest)
    #[arg(long, value_name = "ID")]
    pub system_id: Option<u64>,
    /// Keep archive_mode as it was on the backed-up server (default: off, because the copy
    /// shares the original's system identifier and would archive into the same source)
    #[arg(long)]
    pub keep_archive_mode: bool,
}

/// Opens the source's repository under a shared lock. A reader (`deferred`) does not idle
/// through the lock's race window: its second look runs while it reads, and it confirms the
/// lock before it reports success.
fn open(
    g: &GlobalOpts,
    source: &str,
    deferred: bool,
) -> anyhow::Result<(Arc<coffer_repo::Repository>, coffer_repo::lock::LockGuard)> {
    let (src, repo_name) = super::sources::load(g, source)?;
    if src.extra_tags().iter().all(|t| t != archive::BASE_TAG) {
        bail!("source {source:?} is not a physical PostgreSQL source (type = \"postgres\", mode = \"physical\")");
    }
    let repo = g.open_named(repo_name.as_deref())?;
    let lock = match deferred {
        true => g.lock_deferred(&repo)?,
        false => g.lock(&repo, false)?,
    };
    Ok((repo, lock))
}

pub fn push(g: &GlobalOpts, a: PushArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let (repo, _lock) = open(g, &a.source, false)?;
    repo.load_index().context("loading the index")?;
    // archive_command runs in the data directory: its pg_control says which cluster is
    // archiving.
    let cwd = std::env::current_dir().ok();
    let data_dir = cwd.filter(|d| d.join("global/pg_control").is_file());
    let req = PushRequest {
        source: &a.source,
        path: &a.path,
        host: coffer_repo::sysinfo::hostname(),
        data_dir,
    };
    let outcome = archive::push(Arc::clone(&repo), &req)
        .with_context(|| format!("wal-push {} (source {:?})", a.path.display(), a.source))?;
    let name = a
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let secs = started.elapsed().as_secs_f64();
    match outcome {
        PushOutcome::Stored {
            snapshot,
            bytes: n,
            stored,
        } => {
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"message_type": "summary", "file": name, "status": "archived",
                        "snapshot_id": snapshot.to_hex(), "bytes": n, "stored_bytes": stored, "total_duration": secs})
                );
            } else if !g.quiet {
                eprintln!(
                    "archived {name} ({}, {} stored) as snapshot {} in {secs:.2} s",
                    bytes(n),
                    bytes(stored),
                    snapshot.short()
                );
            }
        }
        PushOutcome::AlreadyArchived { snapshot } => {
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"message_type": "summary", "file": name, "status": "already_archived",
                        "snapshot_id": snapshot.to_hex(), "total_duration": secs})
                );
            } else if !g.quiet {
                eprintln!(
                    "{name} is already archived with the same content (snapshot {})",
                    snapshot.short()
                );
            }
        }
    }
    Ok(0)
}

pub fn fetch(g: &GlobalOpts, a: FetchArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let ahead = a.system_id.filter(|_| a.prefetch > 0);
    if let Some(sysid) = ahead {
        let spool = prefetch::spool_dir(&a.dest, sysid);
        if let Some(n) = prefetch::take(&spool, &a.name, &a.dest) {
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"message_type": "summary", "file": a.name, "status": "restored",
                        "prefetched": true, "bytes": n, "total_duration": started.elapsed().as_secs_f64()})
                );
            } else if !g.quiet {
                eprintln!("restored {} ({}) from the prefetch spool", a.name, bytes(n));
            }
            return Ok(0);
        }
    }
    let (repo, lock) = open(g, &a.source, true)?;
    repo.load_index().context("loading the index")?;
    let outcome = match ahead {
        Some(sysid) => prefetch::fetch_ahead(
            Arc::clone(&repo),
            &a.source,
            &a.name,
            &a.dest,
            sysid,
            a.prefetch,
        )
        .map(|(o, n)| {
            if n > 0 && !g.quiet && !g.json {
                eprintln!("prefetched the next {n} segments");
            }
            o
        }),
        None => archive::fetch(Arc::clone(&repo), &a.source, &a.name, &a.dest, a.system_id),
    }
    .with_context(|| format!("wal-fetch {} (source {:?})", a.name, a.source))?;
    if let Err(e) = lock.confirm() {
        // PostgreSQL asks again; a segment is not handed over under a lock that lost a race.
        if matches!(outcome, FetchOutcome::Restored { .. }) {
            let _ = std::fs::remove_file(&a.dest);
        }
        return Err(e).with_context(|| format!("wal-fetch {} (source {:?})", a.name, a.source));
    }
    match outcome {
        FetchOutcome::Restored { snapshot, bytes: n } => {
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"message_type": "summary", "file": a.name, "status": "restored",
                        "snapshot_id": snapshot.to_hex(), "bytes": n,
                        "total_duration": started.elapsed().as_secs_f64()})
                );
            } else if !g.quiet {
                eprintln!(
                    "restored {} ({}) from snapshot {}",
                    a.name,
                    bytes(n),
                    snapshot.short()
                );
            }
            Ok(0)
        }
        FetchOutcome::NotFound => {
            // Normal at the end of recovery: PostgreSQL asks for the next file until there is
            // none. Exit 1 (not above 125, which would abort recovery).
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"message_type": "summary", "file": a.name, "status": "not_found"})
                );
            } else if !g.quiet {
                eprintln!("{} is not in the archive of source {:?}", a.name, a.source);
            }
            Ok(1)
        }
    }
}

fn absolute(p: &Path) -> anyhow::Result<String> {
    let a = std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))?;
    Ok(a.to_string_lossy().into_owned())
}

/// The restore_command recovery runs: this binary, the same config and repository.
fn restore_command(g: &GlobalOpts, source: &str, sysid: u64) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("finding the coffer binary for restore_command")?;
    let mut words = vec![exe.to_string_lossy().into_owned()];
    if let Some(c) = &g.config {
        words.extend(["--config".into(), absolute(c)?]);
    }
    if let Some(r) = &g.repo {
        words.extend(["-r".into(), r.clone()]);
    }
    if let Some(p) = &g.password_file {
        words.extend(["--password-file".into(), absolute(p)?]);
    } else if std::env::var_os("COFFER_PASSWORD").is_some() {
        eprintln!(
            "warning: the password comes from COFFER_PASSWORD, which PostgreSQL's restore_command will not \
             see unless the server's environment sets it; a password_file in the config is safer"
        );
    }
    words.extend([
        "--quiet".into(),
        "--retry-lock".into(),
        "10m".into(),
        "wal-fetch".into(),
        "--source".into(),
        source.into(),
        "--system-id".into(),
        sysid.to_string(),
    ]);
    let mut cmd: Vec<String> = words.iter().map(|w| physical::shell_quote(w)).collect();
    cmd.extend(["%f".into(), "%p".into()]);
    Ok(cmd.join(" "))
}

pub fn run(g: &GlobalOpts, c: PgCommand) -> anyhow::Result<i32> {
    let PgCommand::Restore(a) = c;
    let target = match (&a.target_time, &a.target_lsn) {
        (Some(t), _) => RecoveryTarget::Time(
            coffer_config::when::parse_time(t).map_err(|e| anyhow::anyhow!("--target-time {e}"))?,
        ),
        (None, Some(l)) => RecoveryTarget::Lsn(wal::parse_lsn(l).with_context(|| {
            format!("invalid --target-lsn {l:?}: write it as PostgreSQL does, e.g. 0/3000060")
        })?),
        (None, None) => RecoveryTarget::Latest,
    };
    let started = Instant::now();
    let (repo, lock) = open(g, &a.source, true)?;
    let snaps = repo.snapshots()?;
    let bases = archive::base_backups(&snaps, &a.source);
    let base = if a.snapshot == "latest" {
        physical::choose_base(&bases, &target, a.system_id)?.clone()
    } else {
        let id = repo.find_snapshot(&a.snapshot, |_| true)?.id;
        bases
            .iter()
            .find(|b| b.snap.id == id)
            .cloned()
            .with_context(|| {
                format!(
                    "snapshot {} is not a base backup of source {:?}",
                    id.short(),
                    a.source
                )
            })?
    };
    repo.load_index().context("loading the index")?;
    let archive = archive::archived(&snaps, &a.source);
    if !g.json && !g.quiet {
        eprintln!(
            "restoring base backup {} of {} (PostgreSQL {}, finished {}) to {}",
            base.snap.id.short(),
            a.source,
            base.server_version,
            base.finished_at.format("%Y-%m-%d %H:%M:%S %:z"),
            a.target.display()
        );
    }
    let req = PitrRequest {
        dir: a.target.clone(),
        target,
        restore_command: restore_command(g, &a.source, base.system_identifier)?,
        keep_archive_mode: a.keep_archive_mode,
        bin_dir: None,
        progress: Arc::default(),
    };
    let report = {
        let _shown = Reporter::start(
            ui::mode(g.json, g.quiet),
            Arc::clone(&req.progress),
            "restore",
        );
        physical::restore(Arc::clone(&repo), &base, &archive, &req)
    }
    .with_context(|| {
        format!(
            "restoring source {:?} into {}",
            a.source,
            a.target.display()
        )
    })?;
    lock.confirm()
        .with_context(|| format!("restoring source {:?}", a.source))?;
    super::restore::print_report(
        g,
        serde_json::json!({
            "source": a.source,
            "snapshot_id": base.snap.id.to_hex(),
            "system_identifier": base.system_identifier.to_string(),
            "restore_command": req.restore_command,
        }),
        &report,
        started.elapsed().as_secs_f64(),
    );
    Ok(0)
}
