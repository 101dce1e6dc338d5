//! `type = "mariadb"`: MariaDB and MySQL, backed up with the server's own tools, logically
//! (`mode = "logical"`, the default) or physically (`mode = "physical"`).
//!
//! Logical: one `mariadb-dump --single-transaction --routines --events --triggers` per
//! database (a consistent InnoDB view without locking writers), streamed into the repository
//! as `<database>.sql`, plus `users.sql` (`--system=users`: `CREATE USER IF NOT EXISTS` and
//! grants, so restoring it keeps accounts that exist). The dumps name no database, so a dump
//! restores into any database name.
//!
//! Physical ([`physical`]): `mariadb-backup --backup --stream=xbstream` (Debian package
//! `mariadb-backup`) copies the whole server's data directory, streamed into the repository as
//! `backup.xbstream`; the manifest records the InnoDB checkpoint LSN and, when the binary log
//! is on, the binlog file, position and GTID the copy is consistent with. It has to run on the
//! database host, as a user that can read the data directory (root, or one in group mysql).
//! Restore unpacks it with `mbstream -x` into an empty or new `--target DIR` and runs
//! `mariadb-backup --prepare` there; moving DIR into place is left to the operator, who has to
//! stop the server for it:
//!
//! ```sh
//! coffer restore --source mariadb-phys latest --target /var/lib/mysql-restored
//! systemctl stop mariadb
//! mv /var/lib/mysql /var/lib/mysql.old && mv /var/lib/mysql-restored /var/lib/mysql
//! chown -R mysql:mysql /var/lib/mysql && systemctl start mariadb
//! # or, into an empty data directory:
//! mariadb-backup --copy-back --target-dir=/var/lib/mysql-restored
//! ```
//!
//! The password never appears on a command line: it goes into a temporary defaults file
//! readable only by us.
//!
//! ```toml
//! [[source]]
//! name = "mariadb-main"
//! type = "mariadb"
//! url = "mariadb://root:${MARIADB_PASSWORD}@127.0.0.1:3306/"
//! databases = ["shop"]         # default: every database except the system ones
//!
//! [[source]]
//! name = "mariadb-phys"
//! type = "mariadb"
//! url = "mariadb://root:${MARIADB_PASSWORD}@127.0.0.1:3306/"
//! mode = "physical"            # the whole server; `databases` does not apply
//! ```

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use coffer_config::EnvString;
use serde::Deserialize;

mod physical;
mod rows;
pub mod scratch;

use crate::{
    util, BackupPlan, Manifest, RestoreReport, RestoreRequest, SnapshotFiles, Source, SourceError,
};

const SYSTEM_DATABASES: [&str; 4] = ["information_schema", "performance_schema", "mysql", "sys"];

/// Settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `mariadb://user:password@host:port/` (or `mysql://`).
    pub url: EnvString,
    /// Databases to dump (default: all but the system databases).
    pub databases: Option<Vec<String>>,
    /// Databases to leave out of the default list.
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// `logical` (default, mariadb-dump) or `physical` (mariadb-backup, the whole server).
    pub mode: Option<String>,
    /// Directory holding mariadb, mariadb-dump, mariadb-backup and mbstream (default: PATH).
    pub bin_dir: Option<String>,
}

struct Conn {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
}

use coffer_config::units::percent_decode;

fn parse_url(url: &str) -> Result<Conn, String> {
    let rest = url
        .strip_prefix("mariadb://")
        .or_else(|| url.strip_prefix("mysql://"))
        .ok_or("url must start with mariadb:// or mysql://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (
                percent_decode(u).map_err(|e| format!("url user name: {e}"))?,
                Some(percent_decode(p).map_err(|e| format!("url password: {e}"))?),
            ),
            None => (
                percent_decode(u).map_err(|e| format!("url user name: {e}"))?,
                None,
            ),
        },
        None => ("root".to_string(), None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse().map_err(|_| format!("invalid port {p:?}"))?,
        ),
        None => (hostport.to_string(), 3306),
    };
    Ok(Conn {
        host: if host.is_empty() {
            "127.0.0.1".into()
        } else {
            host
        },
        port,
        user,
        password,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Logical,
    Physical,
}

/// A MariaDB source.
pub struct Mariadb {
    name: String,
    conn: Conn,
    mode: Mode,
    databases: Option<Vec<String>>,
    exclude: Vec<String>,
    bin_dir: Option<String>,
}

/// File name of a database's dump in the snapshot.
pub fn dump_file(db: &str) -> String {
    format!(
        "{}.sql",
        crate::postgres::dump_file(db).trim_end_matches(".dump")
    )
}

fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

impl Mariadb {
    /// Checks the settings.
    pub fn new(name: &str, cfg: Config) -> Result<Mariadb, SourceError> {
        let mode = match cfg.mode.as_deref() {
            None | Some("logical") => Mode::Logical,
            Some("physical") => Mode::Physical,
            Some(m) => {
                return Err(SourceError::Usage(format!(
                    "source {name:?}: unknown mode {m:?} (use \"logical\" or \"physical\")"
                )))
            }
        };
        // A physical copy is of the whole server; silently ignoring a database list would
        // make the operator believe the backup is smaller or narrower than it is.
        if mode == Mode::Physical && (cfg.databases.is_some() || !cfg.exclude_databases.is_empty())
        {
            return Err(SourceError::Usage(format!(
                "source {name:?}: databases and exclude_databases do not apply to mode \"physical\" (mariadb-backup copies the whole server); use mode \"logical\" for single databases"
            )));
        }
        let conn =
            parse_url(&cfg.url).map_err(|e| SourceError::Usage(format!("source {name:?}: {e}")))?;
        Ok(Mariadb {
            name: name.to_string(),
            conn,
            mode,
            databases: cfg.databases,
            exclude: cfg.exclude_databases,
            bin_dir: cfg.bin_dir,
        })
    }

    fn endpoint(&self) -> String {
        format!("{}@{}:{}", self.conn.user, self.conn.host, self.conn.port)
    }

    /// A defaults file holding the credentials (mode 0600), alive as long as the handle.
    fn defaults_file(&self) -> Result<Arc<tempfile::NamedTempFile>, SourceError> {
        let mut f = tempfile::Builder::new()
            .prefix("coffer-mariadb-")
            .tempfile()
            .map_err(|e| SourceError::Usage(format!("creating a credentials file: {e}")))?;
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut text = format!(
            "[client]\nhost=\"{}\"\nport={}\nuser=\"{}\"\n",
            esc(&self.conn.host),
            self.conn.port,
            esc(&self.conn.user)
        );
        if let Some(p) = &self.conn.password {
            text.push_str(&format!("password=\"{}\"\n", esc(p)));
        }
        f.write_all(text.as_bytes())
            .and_then(|_| f.flush())
            .map_err(|e| SourceError::Usage(format!("writing a credentials file: {e}")))?;
        Ok(Arc::new(f))
    }

    fn bin(&self, prog: &str) -> String {
        match &self.bin_dir {
            Some(d) => format!("{d}/{prog}"),
            None => prog.to_string(),
        }
    }

    fn tool(&self, prog: &str, defaults: &tempfile::NamedTempFile) -> Command {
        let mut c = Command::new(self.bin(prog));
        // Must come first, as the client requires.
        c.arg(format!(
            "--defaults-extra-file={}",
            defaults.path().display()
        ));
        c.arg("--default-character-set=utf8mb4");
        if prog == "mariadb" {
            c.arg("--connect-timeout=15");
        }
        c
    }

    fn tool_err(&self, message: String) -> SourceError {
        SourceError::Tool {
            source_name: self.name.clone(),
            message,
        }
    }

    fn query(&self, db: Option<&str>, sql: &str) -> Result<Vec<Vec<String>>, SourceError> {
        let d = self.defaults_file()?;
        let mut c = self.tool("mariadb", &d);
        c.args(["--batch", "--skip-column-names", "-e", sql]);
        if let Some(db) = db {
            c.arg(db);
        }
        let out = util::output(c).map_err(|m| SourceError::Server {
            source_name: self.name.clone(),
            message: format!("{}: {m}", self.endpoint()),
        })?;
        Ok(out
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect())
    }

    fn databases(&self) -> Result<Vec<(String, u64)>, SourceError> {
        let rows = self.query(
            None,
            "SELECT s.schema_name, COALESCE(SUM(t.data_length + t.index_length), 0) FROM information_schema.schemata s LEFT JOIN information_schema.tables t ON t.table_schema = s.schema_name GROUP BY s.schema_name ORDER BY s.schema_name",
        )?;
        let all: Vec<(String, u64)> = rows
            .into_iter()
            .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.parse().ok()?)))
            .collect();
        match &self.databases {
            Some(wanted) => wanted
                .iter()
                .map(|w| {
                    all.iter()
                        .find(|(n, _)| n == w)
                        .cloned()
                        .ok_or_else(|| SourceError::Server {
                            source_name: self.name.clone(),
                            message: format!(
                                "database {w:?} does not exist on {}{}\n{}",
                                self.endpoint(),
                                coffer_config::suggest::did_you_mean(
                                    w,
                                    all.iter().map(|(n, _)| n.as_str())
                                ),
                                crate::util::names_hint(
                                    "databases on the server",
                                    all.iter().map(|(n, _)| n.as_str())
                                )
                            ),
                        })
                })
                .collect(),
            None => Ok(all
                .into_iter()
                .filter(|(n, _)| {
                    !SYSTEM_DATABASES.contains(&n.as_str()) && !self.exclude.contains(n)
                })
                .collect()),
        }
    }
}

impl Source for Mariadb {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mariadb"
    }

    fn backup(&self, manifest: &Manifest) -> Result<BackupPlan, SourceError> {
        if self.mode == Mode::Physical {
            return physical::backup(self, manifest);
        }
        let started = Instant::now();
        let version = self
            .query(None, "SELECT VERSION()")?
            .first()
            .and_then(|r| r.first().cloned())
            .unwrap_or_default();
        let dbs = self.databases()?;
        manifest.set("mode", "logical");
        manifest.set("server_version", version);
        manifest.set("started_at", chrono::Local::now().to_rfc3339());
        manifest.set(
            "databases",
            serde_json::Value::Array(
                dbs.iter()
                    .map(|(db, size)| serde_json::json!({"name": db, "file": dump_file(db), "size_bytes": size}))
                    .collect(),
            ),
        );
        let defaults = self.defaults_file()?;
        let mut streams = Vec::new();
        let mut users = self.tool("mariadb-dump", &defaults);
        users.args([
            "--system=users",
            "--no-create-info",
            "--no-data",
            "--skip-triggers",
        ]);
        streams.push(util::deferred(
            "users.sql",
            users,
            Some(Arc::clone(&defaults) as util::KeepAlive),
        ));
        for (db, _) in &dbs {
            let mut c = self.tool("mariadb-dump", &defaults);
            c.args([
                "--single-transaction",
                "--routines",
                "--events",
                "--triggers",
                "--hex-blob",
                "--quick",
                "--skip-dump-date",
            ])
            .arg(db);
            streams.push(crate::row_counts::counted(
                util::deferred(
                    &dump_file(db),
                    c,
                    Some(Arc::clone(&defaults) as util::KeepAlive),
                ),
                db,
                manifest,
                rows::count,
            ));
        }
        streams.push(util::manifest_stream(manifest, started));
        Ok(BackupPlan::Streams(streams))
    }

    fn restore(
        &self,
        files: &SnapshotFiles,
        req: &RestoreRequest,
    ) -> Result<RestoreReport, SourceError> {
        // The snapshot decides, not the configured mode: a source switched to physical still
        // restores its older logical snapshots, and the other way round.
        if physical::is_physical(files) {
            return physical::restore(self, files, req);
        }
        let mut report = RestoreReport::default();
        let source_db = util::choose_database(files, req.database.as_deref(), dump_file)?;
        let file = dump_file(&source_db);
        if let Some(dir) = &req.target {
            util::write_files(files, dir, &[file.as_str(), "users.sql"], &mut report)?;
            return Ok(report);
        }
        let target_db = req.to_database.clone().unwrap_or_else(|| source_db.clone());
        let defaults = self.defaults_file()?;

        // Accounts first (CREATE USER IF NOT EXISTS keeps existing ones).
        let mut c = self.tool("mariadb", &defaults);
        c.arg("--force");
        util::feed(c, files.reader("users.sql")?)
            .map_err(|m| self.tool_err(format!("restoring users: {m}")))?;
        report
            .steps
            .push("applied users and grants (existing accounts kept)".into());

        let exists = !self
            .query(
                None,
                &format!(
                    "SELECT 1 FROM information_schema.schemata WHERE schema_name = {}",
                    quote_literal(&target_db)
                ),
            )?
            .is_empty();
        if exists && !req.clean {
            return Err(SourceError::Usage(format!(
                "database {target_db:?} already exists: use --clean to replace it, or --to-database NEW"
            )));
        }
        if exists {
            self.query(None, &format!("DROP DATABASE {}", quote_ident(&target_db)))?;
            report
                .steps
                .push(format!("dropped existing database {target_db:?} (--clean)"));
        }
        self.query(
            None,
            &format!(
                "CREATE DATABASE {} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
                quote_ident(&target_db)
            ),
        )?;
        let started = Instant::now();
        let mut c = self.tool("mariadb", &defaults);
        c.arg(&target_db);
        util::feed(c, files.reader(&file)?).map_err(|m| {
            self.tool_err(format!("loading {source_db:?} into {target_db:?} failed; the database is partly restored: {m}"))
        })?;
        report.steps.push(format!(
            "restored {source_db:?} into {target_db:?} in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        let tables = self.query(
            None,
            &format!(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {} AND table_type = 'BASE TABLE'",
                quote_literal(&target_db)
            ),
        )?;
        if let Some(n) = tables
            .first()
            .and_then(|r| r.first())
            .and_then(|n| n.parse::<u64>().ok())
        {
            report.checks.insert("tables".into(), n.into());
        }
        Ok(report)
    }

    fn run_sql(&self, database: Option<&str>, sql: &str) -> Result<Vec<Vec<String>>, SourceError> {
        self.query(database, sql)
    }

    fn probe(&self) -> Result<crate::Probe, SourceError> {
        // A server that replicates from another has a replica status row; read_only alone
        // is a setting, not a role.
        let v = self.query(None, "SELECT VERSION()")?;
        let replica = !self.query(None, "SHOW REPLICA STATUS")?.is_empty();
        Ok(crate::Probe::answered(
            v.first()
                .and_then(|r| r.first())
                .map(|v| format!("MariaDB {v}")),
            Some(if replica { "replica" } else { "primary" }),
        ))
    }

    fn describe(&self) -> String {
        match self.mode {
            Mode::Physical => format!(
                "mariadb://{} (whole server, physical: mariadb-backup)",
                self.endpoint()
            ),
            Mode::Logical => {
                let dbs = match &self.databases {
                    Some(d) => d.join(", "),
                    None => "all databases".into(),
                };
                format!("mariadb://{} ({dbs}, logical)", self.endpoint())
            }
        }
    }
}
