use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use coffer_archiver::filter::PatternSet;
use coffer_archiver::{restore, Progress, RestoreOptions};

use crate::cmd::SnapshotFilter;
use crate::global::{cancel_flag, GlobalOpts, PartialFailure};
use crate::ui::{self, bytes, lang, Reporter};
use coffer_i18n::t;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id (or prefix) or "latest" (the default; with --source: the latest of that
    /// source). Not with --run, which picks each source's snapshot of that run
    pub snapshot: Option<String>,
    /// Directory to restore into (a snapshot of /a/b lands in DIR/a/b)
    #[arg(short, long)]
    pub target: Option<PathBuf>,
    /// Restore a source declared in the config file (into its server, or --target for files)
    #[arg(long)]
    pub source: Option<String>,
    /// Restore what job run ID backed up (every source into DIR/SOURCE, or one with --source)
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// With --source: load into this database (created if missing)
    #[arg(long, requires = "source")]
    pub to_database: Option<String>,
    /// With --source: which dumped database to restore when the snapshot holds several
    #[arg(long, requires = "source")]
    pub database: Option<String>,
    /// With --source: replace the objects of an existing database
    #[arg(long, requires = "source")]
    pub clean: bool,
    /// With --source (Redis): start a scratch server from the backup and check its keys
    #[arg(long, requires = "source")]
    pub scratch: bool,
    /// With --source (Redis): load the keys into this running server,
    /// redis://[:PASSWORD@]HOST:PORT/ (`${VAR}` is taken from the environment, so quote it);
    /// refused when the server holds keys, unless --clean empties it first
    #[arg(long, requires = "source", value_name = "URL")]
    pub to_url: Option<String>,
    /// With --source: PostgreSQL logical, pg_restore with N parallel jobs (the dump is
    /// spooled to a temporary file first, which parallel pg_restore needs); Kafka, N
    /// partitions produced at once (default: the source's `parallel`, 4)
    #[arg(long, requires = "source", value_name = "N")]
    pub jobs: Option<usize>,
    /// With --source (Kafka): produce into these brokers (HOST:PORT, repeatable or
    /// comma-separated) instead of the source's own
    #[arg(
        long,
        requires = "source",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub to_brokers: Vec<String>,
    /// With --source (Kafka): restore only this topic (repeatable)
    #[arg(long, requires = "source")]
    pub topic: Vec<String>,
    /// With --source (Kafka): restore topic FROM under the name TO (repeatable)
    #[arg(long, requires = "source", value_name = "FROM:TO")]
    pub rename: Vec<String>,
    /// With --source (Kafka): do not commit consumer-group offsets
    #[arg(long, requires = "source")]
    pub no_groups: bool,
    /// With --source (Kafka): add to topics that already hold records
    #[arg(long, requires = "source")]
    pub append: bool,
    /// With --source (Kafka): only records with a timestamp at or after this time (RFC 3339,
    /// or YYYY-MM-DD HH:MM[:SS] in local time)
    #[arg(long, requires = "source", value_name = "TIME")]
    pub from_time: Option<String>,
    /// With --source (Kafka): only records with a timestamp before this time
    #[arg(long, requires = "source", value_name = "TIME")]
    pub to_time: Option<String>,
    /// With --source (Kafka) and --target: write the segment files as stored (and the
    /// manifest) instead of JSON lines
    #[arg(long, requires = "target")]
    pub segments: bool,
    /// With --source (Kafka): do not add the `coffer.offset` header (the record's offset
    /// in the backed-up partition) to restored records
    #[arg(long, requires = "source")]
    pub no_offset_header: bool,
    /// Restore only paths matching this pattern (repeatable)
    #[arg(short, long)]
    pub include: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable)
    #[arg(short, long)]
    pub exclude: Vec<String>,
    /// Re-read every restored file and check it against the snapshot (Kafka: read every
    /// restored record back from the brokers and compare it, and each group's offsets)
    #[arg(long)]
    pub verify: bool,
    /// Keep a file that cannot be restored exactly (damaged data, a full disk) as
    /// NAME.damaged with what could be read, instead of removing it
    #[arg(long)]
    pub keep_damaged: bool,
    /// Accept restoring part of what was asked (a run with a source's snapshot gone, an
    /// --include that matched nothing): exit 0 instead of 3, with the same warnings
    #[arg(long)]
    pub partial: bool,
    /// Worker threads
    #[arg(long, default_value_t = 4)]
    pub threads: usize,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

fn run_source(g: &GlobalOpts, a: Args, name: &str) -> anyhow::Result<i32> {
    let (src, repo_name) = super::sources::load(g, name)?;
    let repo = g.open_named(repo_name.as_deref())?;
    // A restore commits nothing: the lock's race check runs while it works, and is
    // confirmed before success is reported.
    let lock = g.lock_deferred(&repo)?;
    let snap = match &a.run {
        Some(id) => {
            let plan = plan_run(g, &repo, id, Some(name))?;
            match (plan.found.into_iter().next(), plan.missing.first()) {
                (Some(s), _) => s.snapshot,
                (None, Some(m)) => bail!(
                    "run {id} has no snapshot of source {name:?} to restore: {}",
                    m.reason
                ),
                (None, None) => bail!("run {id} has no snapshot of source {name:?}"),
            }
        }
        None => {
            let tag = format!("source:{name}");
            let spec = a.snapshot.as_deref().unwrap_or("latest");
            repo.find_snapshot(spec, |s| {
                s.tags.contains(&tag)
                    && !coffer_maint::chains::is_log_file(s)
                    && a.filter.matches(s)
            })
            .with_context(|| format!("finding snapshot {spec:?} of source {name:?}"))?
        }
    };
    repo.load_index()?;
    if !g.json && !g.quiet {
        eprintln!(
            "{}",
            t!(
                lang(),
                "restore-source-start",
                source = name,
                kind = src.kind(),
                id = snap.id.short(),
                time = snap.snap.time.format("%Y-%m-%d %H:%M:%S").to_string()
            )
        );
    }
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let files = coffer_sources::SnapshotFiles::open(Arc::clone(&repo), snap.clone())?
        .with_progress(Arc::clone(&progress));
    let req = coffer_sources::RestoreRequest {
        target: a.target.clone(),
        to_database: a.to_database.clone(),
        database: a.database.clone(),
        clean: a.clean,
        scratch: a.scratch,
        jobs: a.jobs,
        to_url: a
            .to_url
            .as_deref()
            .map(coffer_config::expand)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--to-url: {e}"))?,
        to_brokers: (!a.to_brokers.is_empty()).then(|| a.to_brokers.clone()),
        topics: a.topic.clone(),
        renames: a
            .rename
            .iter()
            .map(|r| match r.split_once(':') {
                Some((from, to)) if !from.is_empty() && !to.is_empty() => {
                    Ok((from.to_string(), to.to_string()))
                }
                _ => Err(anyhow::anyhow!("--rename {r:?}: expected FROM:TO")),
            })
            .collect::<anyhow::Result<_>>()?,
        no_groups: a.no_groups,
        append: a.append,
        from_time: millis(a.from_time.as_deref(), "--from-time")?,
        to_time: millis(a.to_time.as_deref(), "--to-time")?,
        no_offset_header: a.no_offset_header,
        segments: a.segments,
        verify: a.verify,
    };
    let report = {
        let _shown = Reporter::start(ui::mode(g.json, g.quiet), progress, "restore");
        src.restore(&files, &req).and_then(|r| {
            lock.confirm()?;
            Ok(r)
        })
    }
    .with_context(|| {
        format!(
            "restoring source {name:?} from snapshot {}",
            snap.id.short()
        )
    })?;
    print_report(
        g,
        serde_json::json!({"source": name, "snapshot_id": snap.id.to_hex()}),
        &report,
        started.elapsed().as_secs_f64(),
    );
    Ok(0)
}

/// Prints a source restore's steps and checks, or its JSON summary with `fields` added.
pub(crate) fn print_report(
    g: &GlobalOpts,
    mut fields: serde_json::Value,
    report: &coffer_sources::RestoreReport,
    secs: f64,
) {
    if g.json {
        fields["message_type"] = "summary".into();
        fields["steps"] = serde_json::json!(report.steps);
        fields["checks"] = serde_json::Value::Object(report.checks.clone());
        fields["total_duration"] = secs.into();
        println!("{fields}");
    } else if !g.quiet {
        for s in &report.steps {
            println!("{s}");
        }
        for (k, v) in &report.checks {
            println!("check: {k} = {v}");
        }
        println!(
            "{}",
            t!(lang(), "restore-source-done", secs = format!("{secs:.1}"))
        );
    }
}

/// The snapshots of run `id` (narrowed to `only`), with the run catalog's record of the run
/// when the config names one that exists.
fn plan_run(
    g: &GlobalOpts,
    repo: &coffer_repo::Repository,
    id: &str,
    only: Option<&str>,
) -> anyhow::Result<coffer_jobs::run_restore::RunRestorePlan> {
    // Reading must not create a catalog where there is none.
    let catalog = match g.config()? {
        Some(cfg) if super::job::catalog_path(&cfg).exists() => Some(super::job::catalog(&cfg)?),
        _ => None,
    };
    Ok(coffer_jobs::run_restore::plan(
        catalog.as_ref(),
        &repo.snapshots()?,
        id,
        only,
    )?)
}

/// `--run ID --target DIR`: every snapshot of the run, each into DIR/<source>.
fn run_whole(g: &GlobalOpts, a: Args, id: &str) -> anyhow::Result<i32> {
    let Some(target) = a.target.clone() else {
        bail!("restore --run {id} needs --target DIR (or --source NAME to load one source into its server)");
    };
    // Run ids end in the job's name (and a .N suffix for a second run in the same second).
    let job_repo = g.config()?.and_then(|cfg| {
        let job = id.split_once('-')?.1;
        let job = job.rsplit_once('.').map_or(job, |(j, n)| {
            if n.chars().all(|c| c.is_ascii_digit()) {
                j
            } else {
                job
            }
        });
        cfg.job.iter().find(|j| j.name == job)?.repository.clone()
    });
    let repo = g.open_named(job_repo.as_deref())?;
    let lock = g.lock_deferred(&repo)?;
    let mut plan = plan_run(g, &repo, id, None)?;
    plan.found.retain(|s| a.filter.matches(&s.snapshot.snap));
    for m in &plan.missing {
        warn(
            g,
            &t!(
                lang(),
                "restore-source-missing",
                source = m.source.as_str(),
                reason = m.reason.as_str()
            ),
        );
    }
    if plan.found.is_empty() {
        bail!("nothing of run {id} can be restored: none of its snapshots is in the repository");
    }
    repo.load_index()?;
    let mut errors = 0;
    let mut damaged = 0;
    // Per include pattern: in how many of the run's snapshots it matched nothing.
    let mut missed: std::collections::HashMap<String, usize> = Default::default();
    for s in &plan.found {
        let (source, snap) = (&s.source, &s.snapshot);
        let dir = target.join(source);
        let opts = RestoreOptions {
            target: dir.clone(),
            includes: PatternSet::new(&a.include)?,
            excludes: PatternSet::new(&a.exclude)?,
            verify: a.verify,
            threads: a.threads.max(1),
            keep_damaged: a.keep_damaged,
        };
        let r = restore_shown(g, &repo, &snap.snap, &opts)?;
        lock.confirm()?;
        errors += r.errors.len();
        damaged += r.damaged.len();
        report_damaged(g, &r.damaged);
        for p in &r.unmatched_includes {
            *missed.entry(p.clone()).or_default() += 1;
        }
        if g.json {
            println!(
                "{}",
                serde_json::json!({"message_type": "source_summary", "run_id": id, "source": source,
                    "snapshot_id": snap.id.to_hex(), "target": dir, "files_restored": r.files,
                    "bytes_restored": r.bytes, "errors": r.errors, "damaged": r.damaged,
                    "unmatched_includes": r.unmatched_includes})
            );
        } else if !g.quiet {
            println!(
                "{}",
                t!(
                    lang(),
                    "restore-run-source",
                    source = source.as_str(),
                    id = snap.id.short(),
                    dir = dir.display().to_string(),
                    files = r.files,
                    bytes = bytes(r.bytes)
                )
            );
            for e in &r.errors {
                eprintln!("error: {e}");
            }
        }
    }
    // An include that matched nothing in one source may well match in another.
    let unmatched: Vec<String> = a
        .include
        .iter()
        .filter(|p| missed.get(p.trim_end_matches('/')) == Some(&plan.found.len()))
        .cloned()
        .collect();
    for p in &unmatched {
        warn(
            g,
            &t!(
                lang(),
                "restore-include-unmatched-run",
                pattern = p.as_str(),
                run = id
            ),
        );
    }
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "summary", "run_id": id,
                "sources_restored": plan.found.iter().map(|s| &s.source).collect::<Vec<_>>(),
                "missing": plan.missing, "unmatched_includes": unmatched, "errors": errors,
                "files_damaged": damaged,
                "partial": !plan.missing.is_empty() || !unmatched.is_empty() || damaged + errors > 0})
        );
    }
    incomplete(damaged, errors)?;
    if !plan.missing.is_empty() && !a.partial {
        let names: Vec<&str> = plan.missing.iter().map(|m| m.source.as_str()).collect();
        return Err(PartialFailure(t!(
            lang(),
            "restore-run-partial",
            found = plan.found.len(),
            total = plan.found.len() + plan.missing.len(),
            run = id,
            names = names.join(", ")
        ))
        .into());
    }
    partial_includes(&unmatched, a.partial)
}

/// Names each file that could not be restored exactly.
fn report_damaged(g: &GlobalOpts, damaged: &[coffer_archiver::DamagedFile]) {
    for d in damaged {
        let kept = d
            .kept
            .as_ref()
            .map(|k| {
                t!(
                    lang(),
                    "restore-damaged-kept",
                    kept = k.display().to_string()
                )
            })
            .unwrap_or_default();
        if g.json {
            println!(
                "{}",
                serde_json::json!({"message_type": "error", "during": "restore",
                    "item": d.path, "error": {"message": d.reason}, "kept": d.kept})
            );
        } else {
            eprintln!(
                "{}: {}{kept}",
                t!(lang(), "prefix-error"),
                t!(
                    lang(),
                    "restore-damaged-file",
                    path = d.path.display().to_string(),
                    reason = d.reason.as_str()
                )
            );
        }
    }
}

/// Exit 3 when files could not be restored exactly or other items failed: the rest was
/// restored, and the summary counts only what is exact.
fn incomplete(damaged: usize, errors: usize) -> anyhow::Result<()> {
    if damaged + errors == 0 {
        return Ok(());
    }
    Err(PartialFailure(t!(
        lang(),
        "restore-incomplete",
        damaged = damaged,
        errors = errors
    ))
    .into())
}

/// Exit 3 when an include matched nothing (unless `--partial`).
fn partial_includes(unmatched: &[String], partial: bool) -> anyhow::Result<i32> {
    if unmatched.is_empty() || partial {
        return Ok(0);
    }
    Err(PartialFailure(t!(
        lang(),
        "restore-includes-partial",
        patterns = unmatched.join(", --include ")
    ))
    .into())
}

/// A warning on stderr, or a JSON `warning` line.
fn warn(g: &GlobalOpts, message: &str) {
    if g.json {
        println!(
            "{}",
            serde_json::json!({"message_type": "warning", "message": message})
        );
    } else {
        eprintln!("{}: {message}", t!(lang(), "prefix-warning"));
    }
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    if let (Some(id), Some(s)) = (&a.run, &a.snapshot) {
        bail!("give a snapshot ({s}) or --run {id}, not both: --run restores each source's snapshot of that run");
    }
    if let (Some(id), None) = (a.run.clone(), &a.source) {
        return run_whole(g, a, &id);
    }
    if let Some(name) = a.source.clone() {
        return run_source(g, a, &name);
    }

    let Some(target) = a.target.clone() else {
        bail!("restore needs --target DIR (or --source NAME to restore a configured source)");
    };
    let repo = g.open()?;
    let lock = g.lock_deferred(&repo)?;
    let spec = a.snapshot.as_deref().unwrap_or("latest");
    let snap = repo.find_snapshot(spec, |s| a.filter.matches(s))?;
    let opts = RestoreOptions {
        target: target.clone(),
        includes: PatternSet::new(&a.include)?,
        excludes: PatternSet::new(&a.exclude)?,
        verify: a.verify,
        threads: a.threads.max(1),
        keep_damaged: a.keep_damaged,
    };
    if !g.json && !g.quiet {
        eprintln!(
            "{}",
            t!(
                lang(),
                "restore-start",
                id = snap.id.short(),
                paths = snap.snap.paths.join(", "),
                time = snap.snap.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                target = target.display().to_string()
            )
        );
    }
    let started = Instant::now();
    let r = restore_shown(g, &repo, &snap.snap, &opts)?;
    lock.confirm()?;
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
                "files_damaged": r.damaged.len(),
                "damaged": r.damaged,
                "errors": r.errors.len(),
                "unmatched_includes": r.unmatched_includes,
                "total_duration": secs,
            })
        );
    } else if !g.quiet {
        println!(
            "{}{}",
            t!(
                lang(),
                "restore-done",
                files = r.files,
                dirs = r.dirs,
                bytes = bytes(r.bytes),
                secs = format!("{secs:.1}"),
                rate = crate::ui::rate(r.bytes, secs)
            ),
            if a.verify {
                t!(lang(), "restore-verified", n = r.verified_files)
            } else {
                String::new()
            }
        );
    }
    report_damaged(g, &r.damaged);
    incomplete(r.damaged.len(), r.errors.len())?;
    for p in &r.unmatched_includes {
        warn(
            g,
            &t!(
                lang(),
                "restore-include-unmatched",
                pattern = p.as_str(),
                id = snap.id.short(),
                paths = snap.snap.paths.join(", ")
            ),
        );
    }
    let nothing = r.files + r.dirs + r.others == 0;
    if nothing && !a.include.is_empty() {
        // `latest` is the newest snapshot of anything: after a stdin backup it is the dump.
        let hint = if spec == "latest" && a.filter.is_empty() {
            t!(
                lang(),
                "restore-latest-hint",
                paths = snap.snap.paths.join(", ")
            )
        } else {
            String::new()
        };
        return Err(PartialFailure(format!(
            "{}{hint}",
            t!(
                lang(),
                "restore-nothing",
                id = snap.id.short(),
                patterns = a.include.join(", --include ")
            )
        ))
        .into());
    }
    partial_includes(&r.unmatched_includes, a.partial)
}

/// Restores `snap` with the progress shown (a bar, or `status` lines with `--json`).
fn restore_shown(
    g: &GlobalOpts,
    repo: &Arc<coffer_repo::Repository>,
    snap: &coffer_repo::snapshot::Snapshot,
    opts: &RestoreOptions,
) -> Result<coffer_archiver::RestoreResult, coffer_archiver::RestoreError> {
    let progress = Arc::new(Progress::default());
    let _shown = Reporter::start(ui::mode(g.json, g.quiet), Arc::clone(&progress), "restore");
    restore(Arc::clone(repo), snap, opts, progress, cancel_flag())
}

/// A time flag as milliseconds since 1970 (Kafka record timestamps).
fn millis(t: Option<&str>, flag: &str) -> anyhow::Result<Option<i64>> {
    t.map(|t| {
        coffer_config::when::parse_time(t)
            .map(|t| t.timestamp_millis())
            .map_err(|e| anyhow::anyhow!("{flag} {e}"))
    })
    .transpose()
}
