//! `mode = "physical"`: the whole cluster as a base backup plus its archived WAL, restorable
//! to any point in time the archive covers (the pgBackRest / WAL-G model).
//!
//! The base backup is `pg_basebackup -D - -Ft -X none` streamed into the snapshot as
//! `base.tar`, with the start and end LSN, timeline and system identifier in the manifest.
//! `-X none` leaves WAL to the archive: the server runs `coffer wal-push` as its
//! `archive_command` (see [`super::archive`]), and pg_basebackup returns only once the last
//! segment the backup needs has been archived. A cluster with tablespaces outside the data
//! directory cannot be streamed this way and is refused by pg_basebackup.
//!
//! [`restore`] lays out a data directory from a base backup and writes the recovery settings
//! (`restore_command` running `coffer wal-fetch`, the target, `recovery.signal`); starting
//! PostgreSQL on it replays the archived WAL up to the target and promotes.
//!
//! ```toml
//! [[source]]
//! name = "pg-physical"
//! type = "postgres"
//! mode = "physical"
//! url = "postgresql://postgres@127.0.0.1:5432/"   # a role with REPLICATION
//! # checkpoint = "spread"                         # default "fast"
//! ```
//! and in postgresql.conf, as the postgres user can run it:
//! ```text
//! archive_mode = on
//! archive_command = '/usr/local/bin/coffer --config /etc/coffer/coffer.toml wal-push --source pg-physical %p'
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, FixedOffset};
use coffer_archiver::Progress;
use coffer_repo::Repository;

use super::archive::{self, Archived, BaseBackup};
use super::wal::{self, WalName};
use super::{label, redact, Config, Server};
use crate::{
    util, BackupPlan, Manifest, RestoreReport, RestoreRequest, SnapshotFiles, Source, SourceError,
};

/// The file holding the base backup in a snapshot.
pub const BASE_FILE: &str = "base.tar";

/// A physical PostgreSQL source.
pub struct Physical {
    server: Server,
    fast_checkpoint: bool,
}

impl Physical {
    /// Checks the settings.
    pub fn new(name: &str, cfg: Config) -> Result<Physical, SourceError> {
        if cfg.databases.is_some() || !cfg.exclude_databases.is_empty() {
            return Err(SourceError::Usage(format!(
                "source {name:?}: databases and exclude_databases do not apply to mode = \"physical\", which backs up the whole cluster"
            )));
        }
        let fast_checkpoint = match cfg.checkpoint.as_deref() {
            None | Some("fast") => true,
            Some("spread") => false,
            Some(c) => {
                return Err(SourceError::Usage(format!(
                    "source {name:?}: checkpoint {c:?} is unknown (use \"fast\" or \"spread\")"
                )))
            }
        };
        Ok(Physical {
            server: Server::new(name, cfg.url.0, cfg.bin_dir),
            fast_checkpoint,
        })
    }

    fn server_err(&self, message: String) -> SourceError {
        SourceError::Server {
            source_name: self.server.name.clone(),
            message,
        }
    }
}

impl Source for Physical {
    fn name(&self) -> &str {
        &self.server.name
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn extra_tags(&self) -> Vec<String> {
        vec![archive::BASE_TAG.into()]
    }

    fn backup(&self, manifest: &Manifest) -> Result<BackupPlan, SourceError> {
        let started = Instant::now();
        let row = self
            .server
            .query(
                "postgres",
                "SELECT current_setting('server_version'), system_identifier, \
                 current_setting('archive_mode'), \
                 (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), \
                 coalesce(a.last_failed_time > coalesce(a.last_archived_time, '-infinity'), false), \
                 coalesce(a.last_failed_wal, '') \
                 FROM pg_control_system(), pg_stat_archiver a",
            )?
            .into_iter()
            .next()
            .unwrap_or_default();
        let [version, sysid, archive_mode, seg_size, failing, failed_wal] = row.as_slice() else {
            return Err(self.server_err("could not read the server's settings".into()));
        };
        let sysid: u64 = sysid
            .parse()
            .map_err(|_| self.server_err(format!("unexpected system identifier {sysid:?}")))?;
        let seg_size: u64 = seg_size
            .parse()
            .map_err(|_| self.server_err(format!("unexpected wal_segment_size {seg_size:?}")))?;
        if archive_mode == "off" {
            return Err(self.server_err(format!(
                "archive_mode is off on {}: a physical backup needs WAL archiving. Set archive_mode = on and \
                 archive_command = 'coffer --config FILE wal-push --source {} %p' in postgresql.conf, and restart",
                redact(&self.server.url),
                self.server.name
            )));
        }
        if failing == "t" {
            return Err(self.server_err(format!(
                "WAL archiving is failing on {} (last failure: {failed_wal}); the base backup would wait for it \
                 forever. Check archive_command and the server log first",
                redact(&self.server.url)
            )));
        }
        let chain = archive::chain_id(&self.server.name, sysid);
        manifest.set("mode", "physical");
        manifest.set("server_version", version.clone());
        manifest.set("system_identifier", sysid.to_string());
        manifest.set("wal_segment_size", seg_size);
        manifest.set("log_chain", chain);
        manifest.set("started_at", chrono::Local::now().to_rfc3339());

        let mut c = self.server.tool_on("pg_basebackup", None);
        c.args(["-D", "-", "-F", "tar", "-X", "none", "--verbose"])
            .arg(if self.fast_checkpoint {
                "--checkpoint=fast"
            } else {
                "--checkpoint=spread"
            })
            .arg(format!("--label=coffer {}", self.server.name));
        let m = manifest.clone();
        let found: label::Captured = Default::default();
        let seen = Arc::clone(&found);
        let mut base = util::stream_then(BASE_FILE, c, move |_stderr| {
            let p = label::positions(&seen.lock()).ok_or_else(|| {
                "the base backup holds no readable backup_label: it cannot be restored".to_string()
            })?;
            // Without a manifest (--no-manifest servers) the end is unknown; the start
            // segment is then the least the backup needs.
            let stop = p.stop_lsn.unwrap_or(p.start_lsn);
            let start_wal = wal::segment_name(p.timeline, p.start_lsn, seg_size);
            m.set("timeline", p.timeline);
            m.set("start_lsn", wal::format_lsn(p.start_lsn));
            m.set("stop_lsn", wal::format_lsn(stop));
            m.set("start_wal", start_wal.clone());
            m.set(
                "stop_wal",
                wal::segment_name(
                    p.timeline,
                    stop.saturating_sub(1).max(p.start_lsn),
                    seg_size,
                ),
            );
            if let Some(pos) = WalName::parse(&start_wal).and_then(|n| n.position()) {
                m.set("log_start", pos);
            }
            Ok(())
        })
        .map_err(|e| self.server.tool_err(e))?;
        base.reader = Box::new(label::LabelReader::new(base.reader, found));
        Ok(BackupPlan::Streams(vec![
            base,
            util::manifest_stream(manifest, started),
        ]))
    }

    fn restore(
        &self,
        files: &SnapshotFiles,
        _req: &RestoreRequest,
    ) -> Result<RestoreReport, SourceError> {
        Err(SourceError::Usage(format!(
            "snapshot {} is a physical base backup: restore it with `coffer pg restore --source {} --target DIR \
             [--target-time T | --target-lsn L]`, which also sets up WAL replay",
            files.snapshot.id.short(),
            self.server.name
        )))
    }

    fn run_sql(&self, database: Option<&str>, sql: &str) -> Result<Vec<Vec<String>>, SourceError> {
        self.server.query(database.unwrap_or("postgres"), sql)
    }

    fn probe(&self) -> Result<crate::Probe, SourceError> {
        self.server.probe()
    }

    fn describe(&self) -> String {
        format!(
            "{} (whole cluster, physical: base backup + WAL archive)",
            redact(&self.server.url)
        )
    }
}

/// Where recovery stops.
#[derive(Clone, Debug)]
pub enum RecoveryTarget {
    /// Replay all archived WAL.
    Latest,
    /// Stop before the first transaction that committed after this time.
    Time(DateTime<FixedOffset>),
    /// Stop at this LSN.
    Lsn(u64),
}

impl std::fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryTarget::Latest => f.write_str("the end of the archived WAL"),
            RecoveryTarget::Time(t) => write!(f, "{}", pg_time(t)),
            RecoveryTarget::Lsn(l) => write!(f, "LSN {}", wal::format_lsn(*l)),
        }
    }
}

fn pg_time(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string()
}

/// Picks the newest base backup from which `target` can be reached.
pub fn choose_base<'a>(
    bases: &'a [BaseBackup],
    target: &RecoveryTarget,
    system_identifier: Option<u64>,
) -> Result<&'a BaseBackup, SourceError> {
    let usable: Vec<&BaseBackup> = bases
        .iter()
        .filter(|b| system_identifier.is_none_or(|s| b.system_identifier == s))
        .collect();
    let Some(newest) = usable.last() else {
        return Err(SourceError::Snapshot(
            "no physical base backup of this source (and cluster) is in the repository: run `coffer backup --source NAME` first".into(),
        ));
    };
    if system_identifier.is_none()
        && usable
            .iter()
            .any(|b| b.system_identifier != newest.system_identifier)
    {
        // Base backups of an older cluster only when asked for: the newest one is current.
        return choose_base(bases, target, Some(newest.system_identifier));
    }
    let pick = match target {
        RecoveryTarget::Latest => Some(*newest),
        RecoveryTarget::Time(t) => usable.iter().rev().find(|b| b.finished_at < *t).copied(),
        RecoveryTarget::Lsn(l) => usable.iter().rev().find(|b| b.stop_lsn <= *l).copied(),
    };
    pick.ok_or_else(|| {
        let first = usable[0];
        SourceError::Usage(format!(
            "no base backup ends before {target}: the earliest point this source can be restored to is {} \
             (end of base backup {}, LSN {})",
            pg_time(&first.finished_at),
            first.snap.id.short(),
            wal::format_lsn(first.stop_lsn)
        ))
    })
}

/// What `coffer pg restore` asks for.
pub struct PitrRequest {
    /// The new data directory (absent or empty).
    pub dir: PathBuf,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// The `restore_command` recovery runs (a `coffer wal-fetch` line with `%f %p`).
    pub restore_command: String,
    /// Keep the archive settings of the backed-up server instead of turning archiving off.
    pub keep_archive_mode: bool,
    /// Directory of pg_verifybackup (default: PATH).
    pub bin_dir: Option<String>,
    /// Where the base backup's bytes are counted as they are laid out.
    pub progress: Arc<Progress>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Quotes a value for postgresql.conf.
fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Quotes a word for the shell that runs restore_command.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Lays out a data directory from `base` and configures recovery to `req.target`.
pub fn restore(
    repo: Arc<Repository>,
    base: &BaseBackup,
    archive: &[Archived],
    req: &PitrRequest,
) -> Result<RestoreReport, SourceError> {
    let mut report = RestoreReport::default();
    let dir = &req.dir;
    if let Ok(mut rd) = std::fs::read_dir(dir) {
        if rd.next().is_some() {
            return Err(SourceError::Usage(format!(
                "{} is not empty: restore into a new or empty directory (nothing was changed)",
                dir.display()
            )));
        }
    }
    let missing = archive::missing_segments(base, archive);
    if !missing.is_empty() {
        return Err(SourceError::Snapshot(format!(
            "base backup {} needs WAL {}..{} but the archive lacks {}: it cannot be made consistent",
            base.snap.id.short(),
            base.needed_segments().first().cloned().unwrap_or_default(),
            base.needed_segments().last().cloned().unwrap_or_default(),
            missing.join(", ")
        )));
    }
    if let Some(end) = archive::contiguous_end(base, archive) {
        report.steps.push(format!(
            "WAL is archived without gaps from the base backup through log/segment {end}"
        ));
        report
            .checks
            .insert("wal_contiguous_through".into(), end.into());
    }

    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let files = SnapshotFiles::open(Arc::clone(&repo), base.snap.clone())?
        .with_progress(Arc::clone(&req.progress));
    let reader = files.reader(BASE_FILE)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(root);
    tar.set_preserve_mtime(true);
    let (mut entries, mut bytes) = (0u64, 0u64);
    let bad_tar = |e: std::io::Error| {
        SourceError::Snapshot(format!(
            "unpacking {BASE_FILE} of snapshot {}: {e}",
            base.snap.id.short()
        ))
    };
    for e in tar.entries().map_err(bad_tar)? {
        let mut e = e.map_err(bad_tar)?;
        bytes += e.size();
        entries += 1;
        e.unpack_in(dir).map_err(bad_tar)?;
    }
    set_mode(dir, 0o700)?;
    report.steps.push(format!(
        "unpacked base backup {} ({} entries, {}) into {} in {:.1} s",
        base.snap.id.short(),
        entries,
        coffer_config::units::bytes(bytes),
        dir.display(),
        started.elapsed().as_secs_f64()
    ));
    report.checks.insert("files".into(), entries.into());
    report.checks.insert("bytes".into(), bytes.into());

    if dir.join("backup_manifest").exists() {
        let prog = verify_tool(req.bin_dir.as_deref(), &base.server_version);
        let mut c = std::process::Command::new(&prog);
        c.arg("--no-parse-wal").arg(dir);
        match util::output(c) {
            Ok(_) => {
                report
                    .steps
                    .push("pg_verifybackup: every file matches the backup manifest".into());
                report
                    .checks
                    .insert("manifest_verified".into(), true.into());
            }
            Err(e) if e.starts_with("starting ") => report
                .steps
                .push(format!("not verified against backup_manifest: {e}")),
            Err(e) => {
                return Err(SourceError::Snapshot(format!(
                    "the restored files do not match the base backup's manifest: {e}"
                )))
            }
        }
    }

    let mut conf = format!(
        "\n# Added by coffer pg restore: base backup {} ({}), recovery to {}\n",
        base.snap.id.short(),
        pg_time(&base.finished_at),
        req.target
    );
    conf.push_str(&format!(
        "restore_command = {}\n",
        conf_quote(&req.restore_command)
    ));
    match &req.target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(t) => conf.push_str(&format!(
            "recovery_target_time = {}\n",
            conf_quote(&pg_time(t))
        )),
        RecoveryTarget::Lsn(l) => conf.push_str(&format!(
            "recovery_target_lsn = {}\n",
            conf_quote(&wal::format_lsn(*l))
        )),
    }
    conf.push_str("recovery_target_action = 'promote'\nrecovery_target_timeline = 'latest'\n");
    if !req.keep_archive_mode {
        // The copy has the original's system identifier: archiving from it into the same
        // source would mix two histories. Turn it on again once it is the new primary.
        conf.push_str("archive_mode = 'off'\n");
    }
    let auto = dir.join("postgresql.auto.conf");
    append(&auto, &conf)?;
    let signal = dir.join("recovery.signal");
    std::fs::write(&signal, b"").map_err(io_err(&signal))?;
    if root {
        // Owned like the files the backup holds, so that the postgres user can start it.
        let owner = std::fs::metadata(dir.join("PG_VERSION")).map_err(io_err(dir))?;
        use std::os::unix::fs::MetadataExt;
        for p in [dir.as_path(), &signal, &auto] {
            std::os::unix::fs::chown(p, Some(owner.uid()), Some(owner.gid())).map_err(io_err(p))?;
        }
    }
    report.steps.push(format!(
        "wrote recovery settings to {} (target: {}{}) and recovery.signal",
        auto.display(),
        req.target,
        if req.keep_archive_mode {
            ""
        } else {
            ", archive_mode off"
        }
    ));
    report.steps.push(format!(
        "next: start PostgreSQL {} on it as the postgres user (pg_ctl -D {} start); it replays the archived WAL \
         through `coffer wal-fetch` and promotes at the target",
        base.server_version,
        dir.display()
    ));
    Ok(report)
}

/// pg_verifybackup: in `bin_dir`, on PATH, or where Debian installs the server's version.
fn verify_tool(bin_dir: Option<&str>, version: &str) -> String {
    if let Some(d) = bin_dir {
        return format!("{d}/pg_verifybackup");
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("pg_verifybackup").is_file()));
    let major = version.split(['.', ' ']).next().unwrap_or_default();
    let debian = format!("/usr/lib/postgresql/{major}/bin/pg_verifybackup");
    if !on_path && Path::new(&debian).is_file() {
        debian
    } else {
        "pg_verifybackup".into()
    }
}

fn set_mode(p: &Path, mode: u32) -> Result<(), SourceError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io_err(p))
}

fn append(p: &Path, text: &str) -> Result<(), SourceError> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .map_err(io_err(p))?;
    f.write_all(text.as_bytes()).map_err(io_err(p))?;
    f.sync_all().map_err(io_err(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/coffer"), "/usr/bin/coffer");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(conf_quote("a 'b'"), "'a ''b'''");
    }
}
