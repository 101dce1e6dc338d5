//! A scratch PostgreSQL cluster for restore drills: `initdb` into a private temporary
//! directory, started on a free port on 127.0.0.1 with trust authentication and without
//! fsync, never touching the live server. It is stopped (`pg_ctl -m immediate`) and its
//! directory deleted by [`ScratchCluster::stop`], which [`Drop`] also calls and which another
//! thread may call first (a drill interrupted by a signal).
//!
//! initdb refuses to run as root, so when coffer runs as root the cluster runs as the
//! `postgres` user (its directory is handed to that user).

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use std::sync::Arc;

use parking_lot::Mutex;

use crate::scratch::Registration;
use crate::{util, SourceError};

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

/// uid and gid of the `postgres` user.
fn postgres_user() -> Result<(u32, u32), SourceError> {
    let name = CString::new("postgres").map_err(|e| err(e.to_string()))?;
    // SAFETY: getpwnam with a valid C string; the result is read at once, before any other
    // call that could reuse its static buffer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(err(
            "coffer runs as root and there is no postgres user to run a scratch cluster as".into(),
        ));
    }
    // SAFETY: pw is non-null and points at a passwd entry.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn free_port() -> Result<u16, SourceError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("finding a free port: {e}")))
}

impl ScratchCluster {
    /// Creates and starts a cluster.
    pub fn start(bin_dir: Option<&str>) -> Result<ScratchCluster, SourceError> {
        let bin = server_bin(bin_dir)?;
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            Some(postgres_user()?)
        } else {
            None
        };
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
        let conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nfull_page_writes = off\nsynchronous_commit = off\nmax_wal_size = '1GB'\n",
            c.inner.port,
            c.inner.dir.display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, conf.as_bytes()))
            .map_err(|e| err(format!("writing postgresql.conf: {e}")))?;
        let mut start = c.inner.tool("pg_ctl");
        start
            .args(["-w", "-t", "60", "-l"])
            .arg(c.inner.dir.join("server.log"))
            .arg("-D")
            .arg(&data)
            .arg("start");
        util::output(start).map_err(|m| {
            let log = std::fs::read_to_string(c.inner.dir.join("server.log")).unwrap_or_default();
            err(format!(
                "starting the scratch cluster on port {}: {m}{}",
                c.inner.port,
                log.lines()
                    .last()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default()
            ))
        })?;
        Ok(c)
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
