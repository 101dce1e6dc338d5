//! `mode = "physical"` of the MariaDB source: the whole server's data directory, copied by
//! `mariadb-backup --backup --stream=xbstream` while the server runs, stored as the snapshot
//! file `backup.xbstream`.
//!
//! mariadb-backup reads the data files itself, so it runs on the database host; it asks the
//! server where its data directory is, and coffer passes that on explicitly so that this
//! host's option files cannot point the copy at another directory. `--extra-lsndir` makes it
//! leave a copy of `xtrabackup_checkpoints` and `xtrabackup_info` (also inside the stream) in
//! a private directory, from which the manifest takes the InnoDB checkpoint LSN and, when the
//! binary log is on, the binlog file, position and GTID the copy is consistent with.
//!
//! Restore never touches a running server: it unpacks the stream with `mbstream -x` into an
//! empty or new `--target DIR` and runs `mariadb-backup --prepare` there (applies the redo log
//! copied alongside the files), which leaves DIR ready to become a data directory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use coffer_archiver::StreamSource;
use serde_json::Value;

use super::Mariadb;
use crate::{
    util, BackupPlan, Manifest, RestoreReport, RestoreRequest, SnapshotFiles, SourceError,
};

/// The snapshot file holding the xbstream.
pub(super) const STREAM_FILE: &str = "backup.xbstream";

/// Whether a snapshot holds a physical backup.
pub(super) fn is_physical(files: &SnapshotFiles) -> bool {
    files
        .manifest()
        .is_some_and(|m| m.get("mode").and_then(Value::as_str) == Some("physical"))
        || files.names().iter().any(|n| n == STREAM_FILE)
}

/// Counts the bytes of the stream for the manifest.
struct Counting {
    inner: Box<dyn Read + Send>,
    bytes: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// mariadb-backup logs a line for every file it copies; an error needs its first line (which
/// tool, which status) and the last lines (why), not the inventory in between.
fn shorten(msg: String) -> String {
    let lines: Vec<&str> = msg.lines().collect();
    if lines.len() <= 40 {
        return msg;
    }
    format!(
        "{}\n[... {} lines left out ...]\n{}",
        lines[0],
        lines.len() - 31,
        lines[lines.len() - 30..].join("\n")
    )
}

/// The `key = value` lines of mariadb-backup's metadata files.
fn read_kv(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect())
}

/// `filename 'binlog.000001', position '897', GTID of the last change '0-7-4'` as JSON.
fn binlog_json(pos: &str) -> Value {
    let mut out = serde_json::Map::new();
    let parts: Vec<&str> = pos.split('\'').collect();
    for pair in parts.chunks(2) {
        let [label, value] = pair else { continue };
        let label = label.trim_matches(|c: char| c == ',' || c.is_whitespace());
        let key = match label {
            "filename" => "file",
            "position" => "position",
            l if l.starts_with("GTID") => "gtid",
            _ => continue,
        };
        let v = match (key, value.parse::<u64>()) {
            ("position", Ok(n)) => Value::from(n),
            _ => Value::from(*value),
        };
        out.insert(key.into(), v);
    }
    out.insert("raw".into(), pos.into());
    Value::Object(out)
}

/// Copies what mariadb-backup reported about the copy into the manifest.
fn record_positions(manifest: &Manifest, lsn_dir: &Path) -> Result<(), String> {
    let cp = read_kv(&lsn_dir.join("xtrabackup_checkpoints")).map_err(|e| {
        format!(
            "mariadb-backup exited 0 but left no checkpoint record ({e}); the copy is not trusted"
        )
    })?;
    if cp.get("backup_type").map(String::as_str) != Some("full-backuped") {
        return Err(format!(
            "mariadb-backup exited 0 but its checkpoint record says backup_type = {:?}, not a full backup",
            cp.get("backup_type").cloned().unwrap_or_default()
        ));
    }
    let lsn = |k: &str| cp.get(k).and_then(|v| v.parse::<u64>().ok());
    if let Some(v) = lsn("to_lsn") {
        manifest.set("innodb_checkpoint_lsn", v);
    }
    if let Some(v) = lsn("last_lsn") {
        manifest.set("innodb_last_lsn", v);
    }
    // Only a copy of the stream's own file: its absence loses positions, not data.
    if let Ok(info) = read_kv(&lsn_dir.join("xtrabackup_info")) {
        if let Some(v) = info.get("tool_version") {
            manifest.set("tool_version", v.clone());
        }
        // Empty when the server runs without a binary log.
        let binlog = match info.get("binlog_pos").filter(|v| !v.is_empty()) {
            Some(pos) => binlog_json(pos),
            None => Value::Null,
        };
        manifest.set("binlog", binlog);
    }
    Ok(())
}

/// Checks that the server's data directory is readable here, which mariadb-backup needs.
fn check_datadir(src: &Mariadb, datadir: &str) -> Result<(), SourceError> {
    match std::fs::read_dir(datadir) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SourceError::Usage(format!(
            "source {:?}: the data directory {datadir} of {} does not exist on this host; mode \"physical\" copies the data files, so coffer has to run on the database host (use mode \"logical\" for a remote server)",
            src.name,
            src.endpoint()
        ))),
        Err(e) => Err(SourceError::Usage(format!(
            "source {:?}: cannot read the data directory {datadir} of {} ({e}); mode \"physical\" copies the data files: run the backup as root or as a member of the server's group (mysql)",
            src.name,
            src.endpoint()
        ))),
    }
}

/// `mariadb-backup --backup --stream=xbstream` as the stream `backup.xbstream`.
pub(super) fn backup(src: &Mariadb, manifest: &Manifest) -> Result<BackupPlan, SourceError> {
    let started = Instant::now();
    let row = src.query(None, "SELECT VERSION(), @@datadir")?;
    let (version, datadir) = match row.first().map(Vec::as_slice) {
        Some([v, d, ..]) => (v.clone(), d.clone()),
        _ => {
            return Err(SourceError::Server {
                source_name: src.name.clone(),
                message: format!(
                    "{}: unexpected answer to SELECT VERSION(), @@datadir: {row:?}",
                    src.endpoint()
                ),
            })
        }
    };
    check_datadir(src, &datadir)?;
    let dbs = src.databases()?;
    manifest.set("mode", "physical");
    manifest.set("server_version", version);
    manifest.set("datadir", datadir.clone());
    manifest.set("file", STREAM_FILE);
    manifest.set("started_at", chrono::Local::now().to_rfc3339());
    manifest.set(
        "databases",
        Value::Array(
            dbs.iter()
                .map(|(db, size)| serde_json::json!({"name": db, "size_bytes": size}))
                .collect(),
        ),
    );

    // mariadb-backup insists on a target directory even when it streams; it and the
    // checkpoint copy live in a private directory that goes away after the backup.
    let work = tempfile::Builder::new()
        .prefix("coffer-mariadb-backup-")
        .tempdir()
        .map_err(|e| SourceError::Usage(format!("creating a work directory: {e}")))?;
    let target = work.path().join("target");
    let lsn_dir = work.path().join("lsn");
    for d in [&target, &lsn_dir] {
        std::fs::create_dir(d)
            .map_err(|e| SourceError::Usage(format!("creating {}: {e}", d.display())))?;
    }
    let defaults = src.defaults_file()?;
    let mut c = Command::new(src.bin("mariadb-backup"));
    // Must come first, as the MariaDB tools require.
    c.arg(format!(
        "--defaults-extra-file={}",
        defaults.path().display()
    ));
    c.args(["--backup", "--stream=xbstream"])
        .arg(format!("--datadir={datadir}"))
        .arg(format!("--target-dir={}", target.display()))
        .arg(format!("--extra-lsndir={}", lsn_dir.display()));
    let inner = util::deferred(STREAM_FILE, c, Some(defaults as util::KeepAlive));
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&bytes);
    let m = manifest.clone();
    let inner_finish = inner.finish;
    let stream = StreamSource {
        filename: inner.filename,
        reader: Box::new(Counting {
            inner: inner.reader,
            bytes,
        }),
        finish: Box::new(move || {
            inner_finish().map_err(shorten)?;
            m.set("size_bytes", counted.load(Ordering::Relaxed));
            record_positions(&m, &work.path().join("lsn"))
        }),
    };
    Ok(BackupPlan::Streams(vec![
        stream,
        util::manifest_stream(manifest, started),
    ]))
}

/// Makes `dir` a new directory, or accepts it if it is an empty one; refuses anything else
/// before a byte is written, so that a restore never mixes with or replaces existing files.
fn claim_target(dir: &Path) -> Result<(), SourceError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            // Private until the operator hands it to the server's account.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| SourceError::Usage(format!("creating {}: {e}", dir.display())))
        }
        Err(e) => Err(SourceError::Usage(format!("{}: {e}", dir.display()))),
        Ok(md) if !md.is_dir() => Err(SourceError::Usage(format!(
            "{} exists and is not a directory: a physical restore needs a new or empty directory",
            dir.display()
        ))),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir)
                .map_err(|e| SourceError::Usage(format!("reading {}: {e}", dir.display())))?;
            if entries.next().is_some() {
                return Err(SourceError::Usage(format!(
                    "{} is not empty: a physical restore needs a new or empty directory (nothing was changed)",
                    dir.display()
                )));
            }
            Ok(())
        }
    }
}

/// Unpacks and prepares a physical snapshot in `--target DIR`.
pub(super) fn restore(
    src: &Mariadb,
    files: &SnapshotFiles,
    req: &RestoreRequest,
) -> Result<RestoreReport, SourceError> {
    let snap = files.snapshot.id.short();
    let example = format!(
        "coffer restore --source {} {snap} --target /var/lib/mysql-restored",
        src.name
    );
    if req.to_database.is_some() || req.database.is_some() || req.clean || req.scratch {
        return Err(SourceError::Usage(format!(
            "snapshot {snap} is a physical backup of the whole server (mariadb-backup): --to-database, --database, --clean and --scratch do not apply; restore it into a directory with `{example}`"
        )));
    }
    let Some(dir) = &req.target else {
        return Err(SourceError::Usage(format!(
            "snapshot {snap} is a physical backup (mariadb-backup) and is restored into a new or empty directory, not into the running server: use --target DIR, e.g. `{example}`"
        )));
    };
    let size = files.node(STREAM_FILE)?.size;
    let dir = std::path::absolute(dir)
        .map_err(|e| SourceError::Usage(format!("{}: {e}", dir.display())))?;
    let shown = dir.display().to_string();
    claim_target(&dir)?;
    let mut report = RestoreReport::default();

    let started = Instant::now();
    let mut c = Command::new(src.bin("mbstream"));
    c.arg("-x").arg("-C").arg(&dir);
    util::feed(c, files.reader(STREAM_FILE)?).map_err(|m| {
        src.tool_err(format!(
            "extracting {STREAM_FILE} into {shown}: {m} ({shown} now holds a partial copy: empty it before trying again)"
        ))
    })?;
    report.steps.push(format!(
        "extracted {STREAM_FILE} ({}) into {shown} with mbstream in {:.1} s",
        coffer_config::units::bytes(size),
        started.elapsed().as_secs_f64()
    ));

    let started = Instant::now();
    let mut c = Command::new(src.bin("mariadb-backup"));
    c.arg("--prepare").arg(format!("--target-dir={shown}"));
    util::output(c).map_err(|m| {
        src.tool_err(shorten(format!(
            "preparing {shown} failed; it is not usable as a data directory: {m}"
        )))
    })?;
    report.steps.push(format!(
        "prepared {shown} with mariadb-backup --prepare (redo log applied) in {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    let cp = read_kv(&dir.join("xtrabackup_checkpoints"))
        .map_err(|e| src.tool_err(format!("after mariadb-backup --prepare: {e}")))?;
    let state = cp.get("backup_type").cloned().unwrap_or_default();
    if state != "log-applied" {
        return Err(src.tool_err(format!(
            "mariadb-backup --prepare exited 0 but {shown}/xtrabackup_checkpoints says backup_type = {state:?}, not log-applied"
        )));
    }
    let manifest = files.manifest().unwrap_or(Value::Null);
    let lsn = cp.get("to_lsn").and_then(|v| v.parse::<u64>().ok());
    if let (Some(got), Some(want)) = (lsn, manifest["innodb_checkpoint_lsn"].as_u64()) {
        if got != want {
            return Err(src.tool_err(format!(
                "{shown} holds a copy at InnoDB checkpoint LSN {got}, but snapshot {snap} recorded {want}"
            )));
        }
    }
    report.checks.insert("backup_type".into(), state.into());
    if let Some(l) = lsn {
        report
            .checks
            .insert("innodb_checkpoint_lsn".into(), l.into());
    }
    report.checks.insert("xbstream_bytes".into(), size.into());
    let db_dirs = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .count()
        })
        .unwrap_or(0);
    report
        .checks
        .insert("database_directories".into(), db_dirs.into());
    if let Some(b) = manifest.get("binlog").filter(|b| !b.is_null()) {
        report.checks.insert("binlog".into(), b.clone());
    }

    let datadir = manifest["datadir"]
        .as_str()
        .map(|d| d.trim_end_matches('/').to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/var/lib/mysql".into());
    report.steps.push(format!(
        "next: stop mariadb; then either `mv {datadir} {datadir}.old && mv {shown} {datadir}`, or empty {datadir} and run `mariadb-backup --copy-back --target-dir={shown}`; then `chown -R mysql:mysql {datadir}` and start mariadb"
    ));
    Ok(report)
}
