//! A scratch PostgreSQL cluster for restore drills: `initdb` into a private temporary
//! directory, started on a free port on 127.0.0.1 with trust authentication and without
//! fsync, never touching the live server. It is stopped (`pg_ctl -m immediate`) and its
//! directory deleted by [`ScratchCluster::stop`], which [`Drop`] also calls and which another
//! thread may call first (a drill interrupted by a signal).
//!
//! initdb refuses to run as root, so when coffer runs as root the cluster runs as the
//! `postgres` user (its directory is handed to that user).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use std::sync::Arc;

use parking_lot::Mutex;

use super::archive::{self, Archived, BaseBackup};
use super::physical::{PitrRequest, RecoveryTarget};
use crate::scratch::Registration;
use crate::{util, RestoreReport, SourceError};

/// A running scratch cluster.
pub struct ScratchCluster {
    inner: Arc<Inner>,
    _registered: Registration,
}

/// What stopping needs, shared with the signal handler's registry.
struct Inner {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    stopped: Mutex<bool>,
}

fn err(message: String) -> SourceError {
    SourceError::Tool {
        source_name: "scratch PostgreSQL".into(),
        message,
    }
}

/// The directory holding initdb and pg_ctl: `bin_dir`, else Debian's newest server version,
/// else PATH.
pub fn server_bin(bin_dir: Option<&str>) -> Result<PathBuf, SourceError> {
    if let Some(d) = bin_dir {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(d) = found.pop() {
        return Ok(d);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .ok_or_else(|| {
            err(
                "the PostgreSQL server programs (initdb, pg_ctl) are not installed: a drill \
                 needs them to start a scratch cluster (Debian: apt install postgresql; or set \
                 bin_dir on the source)"
                    .into(),
            )
        })
}

fn free_port() -> Result<u16, SourceError> {
    crate::scratch::free_port().map_err(|e| err(format!("finding a free port: {e}")))
}

impl ScratchCluster {
    /// Creates and starts a cluster.
    pub fn start(bin_dir: Option<&str>) -> Result<ScratchCluster, SourceError> {
        let c = ScratchCluster::prepare(bin_dir)?;
        let data = c.inner.data();
        let mut initdb = c.inner.tool("initdb");
        initdb
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data);
        util::output(initdb).map_err(|m| err(format!("initdb: {m}")))?;
        c.configure("postgresql.conf", "")?;
        c.launch(Duration::from_secs(60))?;
        Ok(c)
    }

    /// A cluster from a physical base backup, replaying archived WAL to `target` and
    /// promoted: the archive segments of the backup's cluster are fetched (and checked) into
    /// the scratch directory first, and recovery copies them from there, so that the
    /// postgres user never needs the repository, its password or coffer's config. `timeout`
    /// bounds the replay.
    pub fn from_base_backup(
        bin_dir: Option<&str>,
        repo: Arc<coffer_repo::Repository>,
        base: &BaseBackup,
        archive: &[Archived],
        target: RecoveryTarget,
        timeout: Duration,
    ) -> Result<(ScratchCluster, RestoreReport), SourceError> {
        let c = ScratchCluster::prepare(bin_dir)?;
        let wal_dir = c.inner.dir.join("wal");
        std::fs::create_dir(&wal_dir).map_err(|e| err(format!("{}: {e}", wal_dir.display())))?;
        let (mut files, mut bytes) = (0u64, 0u64);
        let started = std::time::Instant::now();
        for a in archive::replay_set(base, archive) {
            bytes += archive::restore_archived(&repo, a, &wal_dir.join(&a.name.name))?;
            files += 1;
        }
        let fetched = format!(
            "fetched and checked {files} archived WAL files ({}) in {:.1} s",
            coffer_config::units::bytes(bytes),
            started.elapsed().as_secs_f64()
        );
        let req = PitrRequest {
            dir: c.inner.data(),
            target,
            restore_command: format!(
                "cp {}/%f %p",
                super::physical::shell_quote(&wal_dir.to_string_lossy())
            ),
            keep_archive_mode: false,
            bin_dir: Some(c.inner.bin.to_string_lossy().into_owned()),
            progress: Arc::default(),
        };
        let mut report = super::physical::restore(repo, base, archive, &req)?;
        // The hint on how to start it is for a person; this cluster is started below.
        report.steps.retain(|s| !s.starts_with("next: "));
        report.steps.insert(0, fetched);
        // Debian keeps postgresql.conf and pg_hba.conf outside the data directory, so a base
        // backup may hold neither; and the server's own pg_hba.conf may want passwords the
        // drill does not have. The scratch cluster gets its own.
        let data = c.inner.data();
        if !data.join("postgresql.conf").exists() {
            std::fs::write(data.join("postgresql.conf"), "")
                .map_err(|e| err(format!("writing postgresql.conf: {e}")))?;
        }
        let hba = c.inner.dir.join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n",
        )
        .map_err(|e| err(format!("writing {}: {e}", hba.display())))?;
        c.configure(
            "postgresql.auto.conf",
            &format!(
                "hba_file = '{}'\nident_file = ''\nssl = off\nexternal_pid_file = ''\n\
                 logging_collector = off\nhot_standby = on\n",
                hba.display()
            ),
        )?;
        if let Some((uid, gid)) = c.inner.user {
            crate::scratch::chown_tree(&c.inner.dir, uid, gid).map_err(|e| {
                err(format!(
                    "handing {} to postgres: {e}",
                    c.inner.dir.display()
                ))
            })?;
        }
        let t = std::time::Instant::now();
        c.launch(timeout)?;
        c.wait_promoted(timeout.saturating_sub(t.elapsed()))?;
        report.steps.push(format!(
            "started PostgreSQL on port {}; WAL replayed and promoted in {:.1} s",
            c.inner.port,
            t.elapsed().as_secs_f64()
        ));
        Ok((c, report))
    }

    /// A registered, empty scratch directory owned by the user the cluster runs as.
    fn prepare(bin_dir: Option<&str>) -> Result<ScratchCluster, SourceError> {
        let bin = server_bin(bin_dir)?;
        let user = crate::scratch::run_as("postgres").map_err(err)?;
        let dir = tempfile::Builder::new()
            .prefix("coffer-drill-pg-")
            .tempdir()
            .map_err(|e| err(format!("creating a scratch directory: {e}")))?
            .keep();
        let inner = Arc::new(Inner {
            dir,
            port: free_port()?,
            bin,
            user,
            stopped: Mutex::new(false),
        });
        let stopper = Arc::clone(&inner);
        let c = ScratchCluster {
            _registered: crate::scratch::register(
                format!("scratch PostgreSQL cluster on port {}", inner.port),
                move || stopper.stop(),
            ),
            inner,
        };
        // From here on, a failure removes what was made (Drop).
        if let Some((uid, gid)) = c.inner.user {
            std::os::unix::fs::chown(&c.inner.dir, Some(uid), Some(gid)).map_err(|e| {
                err(format!(
                    "handing {} to postgres: {e}",
                    c.inner.dir.display()
                ))
            })?;
        }
        Ok(c)
    }

    /// Appends the scratch settings (port, loopback only, its own socket directory, no
    /// fsync) and `extra` to `file` in the data directory.
    fn configure(&self, file: &str, extra: &str) -> Result<(), SourceError> {
        let conf = format!(
            "\n# coffer scratch cluster\nport = {}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nfull_page_writes = off\n\
             synchronous_commit = off\nmax_wal_size = '1GB'\n{extra}",
            self.inner.port,
            self.inner.dir.display()
        );
        let path = self.inner.data().join(file);
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .map_err(|e| err(format!("writing {}: {e}", path.display())))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.inner.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("FATAL") || l.contains("ERROR") || l.contains("PANIC"))
            .collect();
        lines
            .last()
            .or(log.lines().last().as_ref())
            .map(|l| format!(" ({l})"))
            .unwrap_or_default()
    }

    fn launch(&self, timeout: Duration) -> Result<(), SourceError> {
        let mut start = self.inner.tool("pg_ctl");
        start
            .args(["-w", "-t", &timeout.as_secs().max(10).to_string(), "-l"])
            .arg(self.inner.dir.join("server.log"))
            .arg("-D")
            .arg(self.inner.data())
            .arg("start");
        util::output(start).map_err(|m| {
            err(format!(
                "starting the scratch cluster on port {}: {m}{}",
                self.inner.port,
                self.log_tail()
            ))
        })?;
        Ok(())
    }

    /// Waits until recovery has ended and the cluster accepts writes.
    fn wait_promoted(&self, timeout: Duration) -> Result<(), SourceError> {
        let server = super::Server::new("scratch", self.url(), None);
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match server.query("postgres", "SELECT pg_is_in_recovery()") {
                Ok(rows)
                    if rows.first().and_then(|r| r.first()).map(String::as_str) == Some("f") =>
                {
                    return Ok(())
                }
                Ok(_) => {}
                Err(e) if !self.inner.data().join("postmaster.pid").exists() => {
                    return Err(err(format!(
                        "the scratch cluster stopped during WAL replay: {e}{}",
                        self.log_tail()
                    )))
                }
                Err(_) => {}
            }
            if std::time::Instant::now() >= deadline {
                return Err(err(format!(
                    "WAL replay did not finish within {}{}",
                    coffer_config::units::short_duration(timeout.as_secs()),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs a query on `database`.
    pub fn query(&self, database: &str, sql: &str) -> Result<Vec<Vec<String>>, SourceError> {
        super::Server::new("scratch", self.url(), None).query(database, sql)
    }

    /// The cluster's URL (trust authentication, no password).
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/", self.inner.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Its directory (data, log, socket).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// `pg_amcheck` over `database` (B-tree indexes and heap pages; installs the amcheck
    /// extension in the scratch database first). Returns what it checked.
    pub fn amcheck(&self, database: &str) -> Result<String, SourceError> {
        let mut c = Command::new(self.inner.bin.join("pg_amcheck"));
        c.args(["-h", "127.0.0.1", "-U", "postgres", "--no-password"])
            .arg("-p")
            .arg(self.inner.port.to_string())
            .args(["--install-missing", "--heapallindexed", "-d", database]);
        util::output(c)
            .map(|_| format!("pg_amcheck found no corruption in {database:?}"))
            .map_err(|m| err(format!("pg_amcheck on {database:?}: {m}")))
    }

    /// Stops the cluster and deletes its directory; later calls do nothing.
    pub fn stop(&self) {
        self.inner.stop();
    }
}

impl Inner {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn tool(&self, prog: &str) -> Command {
        let mut c = Command::new(self.bin.join(prog));
        c.current_dir(&self.dir).env("LC_ALL", "C.UTF-8");
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        c
    }

    /// Stops the cluster and deletes its directory; later calls do nothing.
    pub fn stop(&self) {
        let mut stopped = self.stopped.lock();
        if *stopped {
            return;
        }
        *stopped = true;
        let data = self.data();
        if data.join("postmaster.pid").exists() {
            let mut c = self.tool("pg_ctl");
            c.args(["-w", "-t", "30", "-m", "immediate", "-D"])
                .arg(&data)
                .arg("stop");
            if util::output(c).is_err() {
                // pg_ctl could not do it: the postmaster's pid is the first line of its file.
                if let Some(pid) = std::fs::read_to_string(data.join("postmaster.pid"))
                    .ok()
                    .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
                {
                    // SAFETY: kill with a pid read from the cluster's own pid file.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "removing a scratch cluster's directory");
        }
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster of its own: it answers, pg_amcheck passes, and stopping leaves no process,
    /// port or directory behind.
    #[test]
    fn starts_checks_and_leaves_nothing() {
        let c = ScratchCluster::start(None).expect("scratch cluster");
        let server = super::super::Server::new("scratch", c.url(), None);
        let rows = server
            .query("postgres", "CREATE TABLE t(id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100); SELECT count(*) FROM t")
            .expect("query on the scratch cluster");
        assert_eq!(
            rows.last().and_then(|r| r.first()).map(String::as_str),
            Some("100")
        );
        assert!(c.amcheck("postgres").is_ok());
        let (dir, port) = (c.dir().to_path_buf(), c.port());
        drop(c);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
