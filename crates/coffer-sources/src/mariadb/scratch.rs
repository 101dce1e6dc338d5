//! A scratch MariaDB server for restore drills: a data directory made by
//! `mariadb-install-db` (or a prepared physical backup) in a private temporary directory,
//! served by `mariadbd --no-defaults` on a free loopback port with its own socket, so that
//! neither the live server nor this host's option files are touched. As root it runs as the
//! `mysql` user. It is registered with [`crate::scratch`] and killed and removed by
//! [`ScratchServer::stop`], which [`Drop`] calls too.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::row_counts::RowComparison;
use crate::scratch::Registration;
use crate::{util, SourceError};

/// A running scratch server.
pub struct ScratchServer {
    dir: PathBuf,
    port: u16,
    client_bin: Option<String>,
    child: Mutex<Option<Child>>,
    registered: Mutex<Option<Registration>>,
}

fn err(message: String) -> SourceError {
    SourceError::Tool {
        source_name: "scratch MariaDB".into(),
        message,
    }
}

/// A program in `bin_dir`, or the first of `dirs` that has it, or the bare name for PATH.
fn program(bin_dir: Option<&str>, names: &[&str], dirs: &[&str]) -> String {
    for n in names {
        if let Some(d) = bin_dir {
            if Path::new(d).join(n).is_file() {
                return format!("{d}/{n}");
            }
        }
        for d in dirs {
            if Path::new(d).join(n).is_file() {
                return format!("{d}/{n}");
            }
        }
    }
    names[0].to_string()
}

fn mysql_user() -> Result<Option<(u32, u32)>, SourceError> {
    crate::scratch::run_as("mysql").map_err(err)
}

fn free_port() -> Result<u16, SourceError> {
    crate::scratch::free_port().map_err(|e| err(format!("finding a free port: {e}")))
}

impl ScratchServer {
    /// A new, empty server (root without a password on loopback).
    pub fn start(bin_dir: Option<&str>, timeout: Duration) -> Result<ScratchServer, SourceError> {
        let s = ScratchServer::prepare(bin_dir)?;
        let mut init = Command::new(program(
            bin_dir,
            &["mariadb-install-db", "mysql_install_db"],
            &["/usr/bin", "/usr/local/bin"],
        ));
        init.arg("--no-defaults")
            .arg(format!("--datadir={}", s.data().display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if let Some((uid, gid)) = mysql_user()? {
            init.arg("--user=mysql");
            std::os::unix::fs::chown(&s.dir, Some(uid), Some(gid))
                .map_err(|e| err(format!("handing {} to mysql: {e}", s.dir.display())))?;
        }
        util::output(init).map_err(|m| err(format!("mariadb-install-db: {m}")))?;
        s.launch(bin_dir, timeout)?;
        Ok(s)
    }

    /// A server on a data directory that `fill` lays out in the directory it is given (a
    /// prepared physical backup).
    pub fn on_data_dir(
        bin_dir: Option<&str>,
        timeout: Duration,
        fill: impl FnOnce(&Path) -> Result<(), SourceError>,
    ) -> Result<ScratchServer, SourceError> {
        let s = ScratchServer::prepare(bin_dir)?;
        fill(&s.data())?;
        if let Some((uid, gid)) = mysql_user()? {
            crate::scratch::chown_tree(&s.dir, uid, gid)
                .map_err(|e| err(format!("handing {} to mysql: {e}", s.dir.display())))?;
        }
        s.launch(bin_dir, timeout)?;
        Ok(s)
    }

    fn prepare(bin_dir: Option<&str>) -> Result<ScratchServer, SourceError> {
        let dir = tempfile::Builder::new()
            .prefix("coffer-drill-mariadb-")
            .tempdir()
            .map_err(|e| err(format!("creating a scratch directory: {e}")))?
            .keep();
        let s = ScratchServer {
            registered: Mutex::new(Some(crate::scratch::register_dir(&dir))),
            dir,
            port: free_port()?,
            client_bin: bin_dir.map(str::to_string),
            child: Mutex::new(None),
        };
        Ok(s)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn launch(&self, bin_dir: Option<&str>, timeout: Duration) -> Result<(), SourceError> {
        let mut c = Command::new(program(
            bin_dir,
            &["mariadbd", "mysqld"],
            &["/usr/sbin", "/usr/local/sbin", "/usr/bin"],
        ));
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--port={}", self.port))
            .arg(format!(
                "--socket={}",
                self.dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.join("error.log").display()
            ))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=128M",
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-innodb-doublewrite",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if mysql_user()?.is_some() {
            c.arg("--user=mysql");
        }
        // Its own process group: a Ctrl-C meant for coffer does not reach it first.
        c.process_group(0);
        let child = c.spawn().map_err(|e| {
            err(format!(
                "starting mariadbd: {e} (is mariadb-server installed?)"
            ))
        })?;
        // The registration kills the server before it removes the directory.
        let dir = self.dir.clone();
        *self.registered.lock() = Some(crate::scratch::register(
            format!("scratch MariaDB on port {}", self.port),
            {
                let pid = child.id() as libc::pid_t;
                move || {
                    // SAFETY: kill has no memory effects; the pid is our child, unregistered
                    // once it has been waited for.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    std::thread::sleep(Duration::from_millis(100));
                    let _ = std::fs::remove_dir_all(&dir);
                }
            },
        ));
        *self.child.lock() = Some(child);
        let deadline = Instant::now() + timeout.max(Duration::from_secs(10));
        loop {
            if let Some(st) = self
                .child
                .lock()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(err(format!(
                    "mariadbd on port {} exited ({st}){}",
                    self.port,
                    self.log_tail()
                )));
            }
            if self.query(None, "SELECT 1").is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(err(format!(
                    "mariadbd on port {} did not answer within {}{}",
                    self.port,
                    coffer_config::units::short_duration(timeout.as_secs()),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        log.lines()
            .rfind(|l| l.contains("[ERROR]"))
            .or(log.lines().next_back())
            .map(|l| format!(" ({l})"))
            .unwrap_or_default()
    }

    fn client(&self, prog: &str) -> Command {
        let mut c = Command::new(match &self.client_bin {
            Some(d) => format!("{d}/{prog}"),
            None => prog.to_string(),
        });
        c.arg("--no-defaults")
            .args(["-h", "127.0.0.1", "-u", "root"])
            .arg(format!("--port={}", self.port));
        c
    }

    /// Runs a query, returning rows of tab-separated fields.
    pub fn query(&self, db: Option<&str>, sql: &str) -> Result<Vec<Vec<String>>, SourceError> {
        let mut c = self.client("mariadb");
        c.args([
            "--batch",
            "--skip-column-names",
            "--connect-timeout=5",
            "-e",
            sql,
        ]);
        if let Some(db) = db {
            c.arg(db);
        }
        let out = util::output(c).map_err(|m| err(format!("port {}: {m}", self.port)))?;
        Ok(out
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect())
    }

    /// The URL a `mariadb` source uses to reach it.
    pub fn url(&self) -> String {
        format!("mariadb://root@127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mariadb-check --check` of every table of `database`.
    pub fn check_tables(&self, database: &str) -> Result<String, SourceError> {
        let mut c = self.client("mariadb-check");
        c.args(["--check", "--databases", database]);
        let out = util::output(c).map_err(|m| err(format!("mariadb-check {database}: {m}")))?;
        let bad: Vec<&str> = out
            .lines()
            .filter(|l| {
                let l = l.trim();
                !l.ends_with(" OK")
                    && !l.ends_with("\tOK")
                    && !l.is_empty()
                    && !l.starts_with("note")
            })
            .collect();
        let tables = out.lines().filter(|l| l.trim_end().ends_with("OK")).count();
        if bad.is_empty() {
            Ok(format!(
                "mariadb-check found {tables} tables of {database:?} OK"
            ))
        } else {
            Err(err(format!("mariadb-check {database}: {}", bad.join("; "))))
        }
    }

    /// Counts the rows of every table `expected` names (table → rows) in `database` and
    /// compares.
    pub fn compare_row_counts(
        &self,
        database: &str,
        expected: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<RowComparison, SourceError> {
        let present: Vec<String> = self
            .query(
                None,
                &format!(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = {} AND table_type = 'BASE TABLE'",
                    super::quote_literal(database)
                ),
            )?
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .filter(|t| expected.contains_key(t))
            .collect();
        let mut out = RowComparison::default();
        for t in expected.keys().filter(|t| !present.contains(t)) {
            out.differences
                .push(format!("table {t} is missing from the restored database"));
        }
        for batch in present.chunks(200) {
            let sql = batch
                .iter()
                .map(|t| {
                    format!(
                        "SELECT {}, COUNT(*) FROM {}.{}",
                        super::quote_literal(t),
                        super::quote_ident(database),
                        super::quote_ident(t)
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            for r in self.query(None, &sql)? {
                let (Some(t), Some(n)) = (r.first(), r.get(1).and_then(|n| n.parse::<u64>().ok()))
                else {
                    continue;
                };
                out.tables += 1;
                out.rows += n;
                let want = expected.get(t).and_then(|v| v.as_u64()).unwrap_or(0);
                if n != want {
                    out.differences
                        .push(format!("table {t}: {n} rows, the backup holds {want}"));
                }
            }
        }
        Ok(out)
    }

    /// Kills the server and removes its directory; later calls do nothing.
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().take() {
            // SAFETY: signalling our own child, not yet waited for.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.registered.lock().take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server of its own: it answers on loopback, checks tables and counts rows, and
    /// stopping leaves no process, port or directory behind.
    #[test]
    fn starts_checks_and_leaves_nothing() {
        let s = ScratchServer::start(None, Duration::from_secs(60)).expect("scratch MariaDB");
        s.query(
            None,
            "CREATE DATABASE d; CREATE TABLE d.t (id int PRIMARY KEY); INSERT INTO d.t VALUES (1), (2), (3)",
        )
        .expect("setup");
        assert!(s.check_tables("d").unwrap().contains("1 tables"));
        let want = serde_json::json!({"t": 3, "gone": 1});
        let c = s
            .compare_row_counts("d", want.as_object().unwrap())
            .unwrap();
        assert_eq!((c.tables, c.rows), (1, 3));
        assert_eq!(
            c.differences,
            ["table gone is missing from the restored database"]
        );
        let (dir, port) = (s.dir.clone(), s.port());
        drop(s);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
