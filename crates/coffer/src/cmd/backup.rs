use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use coffer_archiver::filter::{read_pattern_file, PatternSet};
use coffer_archiver::{backup, BackupOptions, Progress, StreamSource};
use coffer_jobs::protocol::{BackupMessage, BackupSummary, ErrorText};
use coffer_repo::pack::Compression;

use crate::global::{cancel_flag, GlobalOpts, PartialFailure};
use crate::ui::{self, bytes, Reporter};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and directories to back up (or, with --stdin-from-command, the command and its
    /// arguments after --)
    pub paths: Vec<String>,
    /// Exclude paths matching this pattern (repeatable)
    #[arg(short = 'e', long = "exclude")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from a file (repeatable)
    #[arg(long)]
    pub exclude_file: Vec<PathBuf>,
    /// Do not cross file system boundaries
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Add a tag (repeatable, or comma-separated)
    #[arg(long = "tag", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Host name to record (default: this host)
    #[arg(short = 'H', long)]
    pub host: Option<String>,
    /// Compare against this snapshot instead of the latest one of the same paths
    #[arg(long)]
    pub parent: Option<String>,
    /// Read every file again, ignoring the parent snapshot
    #[arg(short, long)]
    pub force: bool,
    /// Back up standard input
    #[arg(long)]
    pub stdin: bool,
    /// File name for --stdin and --stdin-from-command data
    #[arg(long, default_value = "stdin")]
    pub stdin_filename: String,
    /// Back up the standard output of the command given after --; fails if it exits non-zero
    #[arg(long)]
    pub stdin_from_command: bool,
    /// Compression: auto, off, max, fastest, better or a zstd level (-7..22)
    #[arg(long, default_value = "auto", allow_negative_numbers = true)]
    pub compression: String,
    /// Snapshot time to record (RFC 3339 or "YYYY-MM-DD HH:MM:SS"), default now
    #[arg(long)]
    pub time: Option<String>,
    /// Files read concurrently
    #[arg(long, default_value_t = 2)]
    pub read_concurrency: usize,
    /// Back up a source declared in the config file (postgres, redis, files, command)
    #[arg(long, conflicts_with_all = ["stdin", "stdin_from_command", "paths"])]
    pub source: Option<String>,
    /// With --source: write into this [[repository]] of the config instead of the source's
    #[arg(long, requires = "source", value_name = "NAME")]
    pub repository: Option<String>,
}

/// The repository `open` opens, with the backup's compression, and its lock (taken for
/// good when the backup confirms).
fn open_locked(
    g: &GlobalOpts,
    open: impl FnOnce() -> anyhow::Result<Arc<coffer_repo::Repository>>,
    compression: Compression,
) -> anyhow::Result<(
    Arc<coffer_repo::Repository>,
    Arc<coffer_repo::lock::LockGuard>,
)> {
    let mut repo = open()?;
    Arc::get_mut(&mut repo)
        .expect("repository not shared yet")
        .set_compression(compression);
    let lock = Arc::new(g.lock_deferred(&repo)?);
    Ok((repo, lock))
}

/// The newest snapshot of source `name` (or `--parent`), opened for an incremental backup.
fn previous_snapshot(
    repo: &Arc<coffer_repo::Repository>,
    name: &str,
    parent: Option<&str>,
) -> anyhow::Result<Option<coffer_sources::SnapshotFiles>> {
    let tag = format!("source:{name}");
    let found = match parent {
        Some(p) => Some(repo.find_snapshot(p, |s| s.tags.contains(&tag))?),
        None => repo
            .snapshots()?
            .into_iter()
            .rfind(|s| s.snap.tags.contains(&tag)),
    };
    found
        .map(|s| {
            let id = s.id.short();
            coffer_sources::SnapshotFiles::open(Arc::clone(repo), s)
                .with_context(|| format!("reading the previous snapshot {id}"))
        })
        .transpose()
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let compression = Compression::parse(&a.compression).with_context(|| {
        format!(
            "invalid --compression {:?}: use auto, off, max, fastest, better or a level -7..22",
            a.compression
        )
    })?;
    let mut patterns = a.exclude.clone();
    for f in &a.exclude_file {
        patterns.extend(
            read_pattern_file(f)
                .with_context(|| format!("reading exclude file {}", f.display()))?,
        );
    }
    let mut source = None;
    let mut extra_tags = Vec::new();
    let mut stream_list = Vec::new();
    let mut carried = Vec::new();
    let mut source_paths = Vec::new();
    // An incremental source needs its previous snapshot before it starts, so the repository
    // is opened and locked first; other sources check their server before the repository.
    let mut opened = None;
    if let Some(name) = &a.source {
        let (src, mut repo_name) = super::sources::load(g, name)?;
        if a.repository.is_some() {
            repo_name = a.repository.clone();
        }
        let manifest = coffer_sources::Manifest::default();
        manifest.set("source", name.clone());
        manifest.set("type", src.kind());
        let plan = if src.incremental() {
            let (repo, lock) = open_locked(g, || g.open_named(repo_name.as_deref()), compression)?;
            repo.load_index().context("loading the index")?;
            let previous = if a.force {
                None
            } else {
                previous_snapshot(&repo, name, a.parent.as_deref())?
            };
            if let Some(p) = &previous {
                tracing::info!(previous = %p.snapshot.id.short(), "building on the previous snapshot");
            }
            let plan = src.backup_on(&manifest, previous.as_ref());
            drop(previous);
            opened = Some((repo, lock));
            plan
        } else {
            src.backup(&manifest)
        }
        .with_context(|| format!("source {name:?}"))?;
        match plan {
            coffer_sources::BackupPlan::Paths { paths, exclude } => {
                patterns.extend(exclude);
                source_paths = paths;
            }
            coffer_sources::BackupPlan::Streams(s) => stream_list = s,
            coffer_sources::BackupPlan::Incremental {
                streams,
                carried: c,
            } => {
                stream_list = streams;
                carried = c;
            }
        }
        extra_tags = src.extra_tags();
        source = Some((name.clone(), src.kind(), manifest, repo_name));
    }
    let excludes = PatternSet::new(&patterns)?;
    let stream = if source.is_some() {
        None
    } else if a.stdin_from_command {
        if a.paths.is_empty() {
            bail!("--stdin-from-command needs a command after --, e.g. -- pg_dump mydb");
        }
        Some(
            StreamSource::command(&a.stdin_filename, &a.paths)
                .with_context(|| format!("running {:?}", a.paths.join(" ")))?,
        )
    } else if a.stdin {
        if !a.paths.is_empty() {
            bail!("--stdin takes no paths");
        }
        Some(StreamSource::stdin(&a.stdin_filename))
    } else {
        if a.paths.is_empty() {
            bail!("nothing to back up: give at least one path, --stdin, --stdin-from-command or --source");
        }
        None
    };
    let streaming = stream.is_some() || !stream_list.is_empty() || !carried.is_empty();
    stream_list.extend(stream);
    let paths: Vec<PathBuf> = if source.is_some() {
        source_paths
    } else if streaming {
        Vec::new()
    } else {
        a.paths.iter().map(PathBuf::from).collect()
    };
    let time = a
        .time
        .as_deref()
        .map(|t| coffer_config::when::parse_time(t).map_err(|e| anyhow::anyhow!("--time {e}")))
        .transpose()?;

    let (repo, lock) = match (opened, &source) {
        (Some(o), _) => o,
        (None, Some((_, _, _, repo_name))) => {
            open_locked(g, || g.open_named(repo_name.as_deref()), compression)?
        }
        (None, None) => open_locked(g, || g.open(), compression)?,
    };
    // A source's first stream starts now, so that its server prepares (Redis forks and saves
    // before the RDB's first byte) while the index loads. Not before the lock: a stream held
    // unread while a lock is awaited would be dropped by the server.
    if source.is_some() && !stream_list.is_empty() {
        let first = stream_list.remove(0);
        stream_list.insert(0, first.start_early(16 << 20));
    }
    repo.load_index().context("loading the index")?;

    let host = a
        .host
        .clone()
        .unwrap_or_else(coffer_repo::sysinfo::hostname);
    let parent = if a.force || streaming {
        None
    } else if let Some(p) = &a.parent {
        Some(repo.find_snapshot(p, |_| true)?)
    } else {
        let mut want: Vec<String> = paths
            .iter()
            .map(|p| {
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.clone())
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        want.sort();
        let tag = source.as_ref().map(|(n, ..)| format!("source:{n}"));
        repo.snapshots()?.into_iter().rfind(|s| {
            let mut have = s.snap.paths.clone();
            have.sort();
            s.snap.hostname == host
                && have == want
                && tag.as_ref().is_none_or(|t| s.snap.tags.contains(t))
        })
    };
    if let Some(p) = &parent {
        tracing::info!(parent = %p.id.short(), "using parent snapshot");
    }

    let progress = Arc::new(Progress::default());
    let cancel = cancel_flag();
    let started = Instant::now();
    let mut tags: Vec<String> = a.tags.iter().filter(|t| !t.is_empty()).cloned().collect();
    let mut finalize: Option<coffer_archiver::Finalize> = None;
    if let Some((name, kind, manifest, _)) = source {
        tags.extend(coffer_sources::source_tags(&name, kind));
        tags.extend(extra_tags);
        finalize = Some(Box::new(move |extra| {
            extra.insert(
                "coffer".into(),
                serde_json::Value::Object(manifest.snapshot()),
            );
        }));
    }
    let opts = BackupOptions {
        paths,
        streams: stream_list,
        carried,
        excludes,
        one_file_system: a.one_file_system,
        tags,
        finalize,
        confirm: Some({
            let lock = Arc::clone(&lock);
            Box::new(move || lock.confirm())
        }),
        host,
        parent,
        time,
        read_threads: a.read_concurrency.max(1),
        scan: !matches!(ui::mode(g.json, g.quiet), ui::Mode::None),
        ..Default::default()
    };
    let result = {
        let _r = Reporter::start(ui::mode(g.json, g.quiet), Arc::clone(&progress), "backup");
        backup(Arc::clone(&repo), opts, progress, cancel)?
    };
    let s = &result.summary;
    let secs = started.elapsed().as_secs_f64();
    for w in &result.warnings {
        if g.json {
            let m = BackupMessage::Error {
                error: ErrorText { message: w.clone() },
                during: "archival".into(),
            };
            println!("{}", m.to_line());
        } else {
            eprintln!("warning: {w}");
        }
    }
    if g.json {
        let m = BackupMessage::Summary(BackupSummary {
            stats: s.clone(),
            total_duration: secs,
            snapshot_id: result.snapshot_id.to_hex(),
            warnings: result.warnings.len() as u64,
        });
        println!("{}", m.to_line());
    } else if !g.quiet {
        println!(
            "Files:       {:>6} new, {:>6} changed, {:>6} unmodified",
            s.files_new, s.files_changed, s.files_unmodified
        );
        println!(
            "Dirs:        {:>6} new, {:>6} changed, {:>6} unmodified",
            s.dirs_new, s.dirs_changed, s.dirs_unmodified
        );
        println!(
            "Added to the repository: {} ({} stored)",
            bytes(s.data_added),
            bytes(s.data_added_packed)
        );
        println!(
            "processed {} files, {} in {:.1}s ({})",
            s.total_files_processed,
            bytes(s.total_bytes_processed),
            secs,
            crate::ui::rate(s.total_bytes_processed, secs)
        );
        println!("snapshot {} saved", result.snapshot_id.short());
    }
    if !result.warnings.is_empty() {
        return Err(PartialFailure(format!(
            "snapshot {} was saved, but {} item(s) could not be read",
            result.snapshot_id.short(),
            result.warnings.len()
        ))
        .into());
    }
    Ok(0)
}
