//! One module per subcommand; [`run`] dispatches.

mod alert;
mod alerts;
mod audit;
mod backup;
mod cat;
mod check;
mod copy;
mod diff;
mod dr;
mod dr_drill;
mod dr_recover;
mod dump;
mod find;
mod forget;
mod init;
mod job;
mod key;
mod ls;
mod pg;
mod prune;
mod repair;
mod restore;
mod schedule;
mod serve;
mod shell;
mod snapshots;
mod sources;
mod stats;
mod tag;
mod unlock;

use clap::Subcommand;

use crate::global::Cli;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    Init(init::Args),
    /// Back up files, directories or a stream into a new snapshot
    Backup(backup::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// List the files of a snapshot
    Ls(ls::Args),
    /// Restore a snapshot into a directory
    Restore(restore::Args),
    /// Write one file of a snapshot to stdout
    Dump(dump::Args),
    /// Print an internal object (config, snapshot, index, key, pack header)
    Cat(cat::Args),
    /// Remove snapshots by a retention policy (keep daily 7, weekly 4, ...)
    Forget(forget::Args),
    /// Delete unreferenced data and repack partly used packs
    Prune(prune::Args),
    /// Check the repository's structure, and read back its data with --read-data
    Check(check::Args),
    /// Repair a damaged repository (rebuild the index, rewrite snapshots around lost data)
    #[command(subcommand)]
    Repair(repair::Command),
    /// Copy snapshots from another repository into this one
    Copy(copy::Args),
    /// Manage the repository's keys (passwords)
    #[command(subcommand)]
    Key(key::Command),
    /// Add, remove or set snapshot tags
    Tag(tag::Args),
    /// Sizes, deduplication and compression figures
    Stats(stats::Args),
    /// Show what changed between two snapshots
    Diff(diff::Args),
    /// Find files by name pattern across snapshots
    Find(find::Args),
    /// List the sources of the config file with their latest snapshot
    Sources(sources::Args),
    /// Archive one WAL file of a physical PostgreSQL source (archive_command)
    WalPush(pg::PushArgs),
    /// Restore one archived WAL file (restore_command); exits 1 when it is not archived
    WalFetch(pg::FetchArgs),
    /// PostgreSQL physical restores: a data directory at a point in time
    #[command(subcommand)]
    Pg(pg::PgCommand),
    /// Check the config file
    #[command(subcommand)]
    Config(job::ConfigCommand),
    /// Run, pause or resume a [[job]] of the config file
    #[command(subcommand)]
    Job(job::JobCommand),
    /// List job runs from the run catalog, newest first
    Runs(job::RunsArgs),
    /// Each job's state, last run, last success, RPO and next run
    Status,
    /// Run the jobs on their schedules and serve the HTTP API (until SIGINT/SIGTERM)
    Serve(serve::Args),
    /// Run the jobs from systemd timers or cron instead of the daemon: install, status, remove
    #[command(subcommand)]
    Schedule(schedule::Command),
    /// Alert channels: send a test notification to each
    #[command(subcommand)]
    Alert(alert::Command),
    /// Alerts: list them, acknowledge one, evaluate the rules once (cron), the delivery log
    Alerts(alerts::AlertsArgs),
    /// Disaster recovery: assess readiness against the RPO/RTO targets, list recovery scenarios
    #[command(subcommand)]
    Dr(dr::Command),
    /// Silence alerts for a while: add, list, expire
    #[command(subcommand)]
    Silence(alerts::SilenceCommand),
    /// The tamper-evident audit log: verify it
    #[command(subcommand)]
    Audit(audit::Command),
    /// Remove stale locks
    Unlock(unlock::Args),
    /// Print a shell completion script (bash, zsh, fish): `coffer completions bash > /etc/bash_completion.d/coffer`
    Completions(shell::CompletionsArgs),
    /// Write man pages into a directory: `coffer man --dir /usr/local/share/man/man1`
    Man(shell::ManArgs),
    /// Print version information
    Version,
}

/// "repository R: what" for the audit trail (never a password: locations print without
/// credentials).
fn a_target(g: &crate::global::GlobalOpts, what: Option<String>) -> String {
    let repo = g
        .repo
        .clone()
        .unwrap_or_else(|| "(config repository)".into());
    match what {
        Some(w) => format!("{repo}: {w}"),
        None => repo,
    }
}

/// Runs a repository command and records it (with its exit code, or its error) in the
/// audit trail when a config file is in use.
fn audited(
    g: &crate::global::GlobalOpts,
    action: &str,
    target: &str,
    r: anyhow::Result<i32>,
) -> anyhow::Result<i32> {
    let outcome = match &r {
        Ok(0) => "ok".to_string(),
        Ok(n) => format!("exit {n}"),
        Err(e) => format!("error: {}", e.to_string().lines().next().unwrap_or("")),
    };
    audit::record(g, action, target, &outcome);
    r
}

/// Runs the command; returns the exit code for success paths.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => {
            let target = a_target(g, None);
            audited(g, "backup", &target, backup::run(g, a))
        }
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Restore(a) => {
            let snap = a.snapshot.as_deref().unwrap_or("latest");
            let what = match (&a.run, &a.source) {
                (Some(r), _) => format!("run {r}"),
                (None, Some(s)) => format!("{snap} of source {s}"),
                _ => snap.to_string(),
            };
            let to = match (&a.target, &a.to_database, &a.to_url) {
                (Some(t), _, _) => format!(" to {}", t.display()),
                (None, Some(d), _) => format!(" to database {d}"),
                (None, None, Some(u)) => format!(" to {}", coffer_config::redact_url(u)),
                _ if !a.to_brokers.is_empty() => format!(" to {}", a.to_brokers.join(",")),
                _ => String::new(),
            };
            let target = a_target(g, Some(format!("{what}{to}")));
            audited(g, "restore", &target, restore::run(g, a))
        }
        Command::Dump(a) => dump::run(g, a),
        Command::Cat(a) => cat::run(g, a),
        Command::Forget(a) => {
            let target = a_target(g, None);
            audited(g, "forget", &target, forget::run(g, a))
        }
        Command::Prune(a) => {
            let target = a_target(g, None);
            audited(g, "prune", &target, prune::run(g, a))
        }
        Command::Check(a) => check::run(g, a),
        Command::Repair(c) => repair::run(g, c),
        Command::Copy(a) => copy::run(g, a),
        Command::Key(c) => {
            let action = match &c {
                key::Command::List => None,
                key::Command::Add(_) => Some("key.add"),
                key::Command::Remove { .. } => Some("key.remove"),
                key::Command::Passwd(_) => Some("key.passwd"),
            };
            match action {
                Some(action) => {
                    let target = a_target(g, None);
                    audited(g, action, &target, key::run(g, c))
                }
                None => key::run(g, c),
            }
        }
        Command::Tag(a) => tag::run(g, a),
        Command::Stats(a) => stats::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Find(a) => find::run(g, a),
        Command::Sources(a) => sources::run(g, a),
        Command::WalPush(a) => pg::push(g, a),
        Command::WalFetch(a) => pg::fetch(g, a),
        Command::Pg(c) => pg::run(g, c),
        Command::Config(c) => job::config(g, c),
        Command::Job(c) => job::job(g, c),
        Command::Runs(a) => job::runs(g, a),
        Command::Status => job::status(g),
        Command::Serve(a) => serve::run(g, a),
        Command::Schedule(c) => schedule::run(g, c),
        Command::Alert(c) => alert::run(g, c),
        Command::Alerts(a) => alerts::alerts(g, a),
        Command::Silence(c) => alerts::silence(g, c),
        Command::Dr(c) => dr::run(g, c),
        Command::Audit(c) => audit::run(g, c),
        Command::Unlock(a) => unlock::run(g, a),
        Command::Completions(a) => shell::completions(a),
        Command::Man(a) => shell::man(a),
        Command::Version => {
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "message_type": "version",
                        "version": env!("CARGO_PKG_VERSION"),
                        "repository_format": 2,
                        "os": std::env::consts::OS,
                        "arch": std::env::consts::ARCH,
                    })
                );
            } else {
                println!(
                    "coffer {} (restic repository format 2) {}/{}",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::OS,
                    std::env::consts::ARCH
                );
            }
            Ok(0)
        }
    }
}

/// Snapshot selection shared by commands that take a snapshot id.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Only consider snapshots from this host (for `latest`)
    #[arg(long = "host", short = 'H')]
    pub hosts: Vec<String>,
    /// Only consider snapshots with this tag (for `latest`)
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only consider snapshots of this path (for `latest`)
    #[arg(long = "path")]
    pub paths: Vec<String>,
}

/// Opens the repository, resolves a snapshot argument and loads the index.
pub fn open_snapshot(
    g: &crate::global::GlobalOpts,
    spec: &str,
    filter: &SnapshotFilter,
) -> anyhow::Result<(
    std::sync::Arc<coffer_repo::Repository>,
    coffer_repo::snapshot::SnapshotWithId,
)> {
    let repo = g.open()?;
    let snap = repo.find_snapshot(spec, |s| filter.matches(s))?;
    repo.load_index()?;
    Ok((repo, snap))
}

impl SnapshotFilter {
    /// True when no filter was given.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }

    pub fn matches(&self, s: &coffer_repo::snapshot::Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && s.has_tags(&self.tags)
            && (self.paths.is_empty() || self.paths.iter().all(|p| s.paths.contains(p)))
    }
}
