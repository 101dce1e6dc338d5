//! `type = "postgres"`: PostgreSQL, backed up the way its own tools do it.
//!
//! Logical mode (the default, in this file): `pg_dumpall --globals-only` (roles, tablespaces)
//! and one `pg_dump --format=custom --compress=0` per database, each streamed into the
//! repository as a file of the snapshot (`globals.sql`, `<database>.dump`). The dumps are left
//! uncompressed so that the repository deduplicates successive dumps and compresses once.
//! Restore creates the target database if needed (an existing one only with `--clean`), applies
//! the globals (a role that already exists is kept, which is not an error), and streams the
//! dump into `pg_restore`; `--jobs N` spools it to a temporary file first, which parallel
//! pg_restore needs.
//!
//! Physical mode ([`physical`]): a base backup streamed from `pg_basebackup` plus continuous
//! WAL archiving through `coffer wal-push` ([`archive`]), restored to a point in time.
//!
//! ```toml
//! [[source]]
//! name = "pg-main"
//! type = "postgres"
//! url = "postgresql://postgres:${PGPASSWORD}@127.0.0.1:5432/"
//! databases = ["app"]          # default: every database that accepts connections
//! ```

pub mod archive;
mod dump_rows;
mod label;
pub mod physical;
pub mod prefetch;
pub mod scratch;
pub mod verify;
pub mod wal;

use std::process::Command;
use std::time::Instant;

use coffer_config::EnvString;
use serde::Deserialize;

use crate::{
    util, BackupPlan, Manifest, Probe, RestoreReport, RestoreRequest, SnapshotFiles, Source,
    SourceError,
};

/// Settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// libpq URL of the server (any database; the path is replaced per database).
    pub url: EnvString,
    /// Databases to dump (default: all that accept connections, templates excluded).
    pub databases: Option<Vec<String>>,
    /// Databases to leave out of the default list.
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    /// `logical` (default) or `physical`.
    pub mode: Option<String>,
    /// Directory holding pg_dump, pg_restore, psql, pg_basebackup (default: PATH).
    pub bin_dir: Option<String>,
    /// Physical mode: `fast` (default: an immediate checkpoint) or `spread`.
    pub checkpoint: Option<String>,
}

/// Builds the source for the configured mode.
pub fn build(name: &str, cfg: Config) -> Result<Box<dyn Source>, SourceError> {
    if !cfg.url.starts_with("postgres://") && !cfg.url.starts_with("postgresql://") {
        return Err(SourceError::Usage(format!(
            "source {name:?}: url must start with postgresql:// (got {})",
            redact(&cfg.url)
        )));
    }
    match cfg.mode.as_deref() {
        None | Some("logical") => Ok(Box::new(Postgres::new(name, cfg)?)),
        Some("physical") => Ok(Box::new(physical::Physical::new(name, cfg)?)),
        Some(m) => Err(SourceError::Usage(format!(
            "source {name:?}: mode {m:?} is unknown (use \"logical\" or \"physical\")"
        ))),
    }
}

/// Connection to one server and its client tools.
pub(crate) struct Server {
    pub(crate) name: String,
    pub(crate) url: String,
    bin_dir: Option<String>,
}

/// A PostgreSQL source, logical mode.
pub struct Postgres {
    server: Server,
    databases: Option<Vec<String>>,
    exclude: Vec<String>,
}

/// File name of a database's dump in the snapshot: the name itself when it is a plain file
/// name, otherwise percent-encoded.
pub fn dump_file(db: &str) -> String {
    let mut out = String::new();
    for b in db.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{out}.dump")
}

/// The URL with its database replaced (query parameters kept).
pub fn url_with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgresql", url));
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => match rest.find('?') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        },
    };
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!(
        "{scheme}://{authority}/{}{query}",
        coffer_config::percent_encode(db)
    )
}

pub use coffer_config::redact_url as redact;

/// The database of the one `.dump` file of a snapshot, if it holds exactly one.
fn only_dump(files: &SnapshotFiles) -> Option<String> {
    let mut dumped: Vec<String> = files
        .names()
        .into_iter()
        .filter_map(|n| n.strip_suffix(".dump").map(str::to_string))
        .collect();
    if dumped.len() == 1 {
        dumped.pop()
    } else {
        None
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Server {
    pub(crate) fn new(name: &str, url: String, bin_dir: Option<String>) -> Server {
        Server {
            name: name.to_string(),
            url,
            bin_dir,
        }
    }

    /// A client tool, found in `bin_dir` or on PATH.
    fn tool(&self, prog: &str) -> Command {
        let path = match &self.bin_dir {
            Some(d) => format!("{d}/{prog}"),
            None => prog.to_string(),
        };
        let mut c = Command::new(path);
        // Never prompt: a missing password must fail, not hang a scheduled job.
        c.env("PGCONNECT_TIMEOUT", "15").arg("--no-password");
        c
    }

    /// A client tool connected to `db` (None: the URL's own database). The password goes
    /// into the child's environment (PGPASSWORD), not onto its command line.
    pub(crate) fn tool_on(&self, prog: &str, db: Option<&str>) -> Command {
        let url = match db {
            Some(db) => url_with_database(&self.url, db),
            None => self.url.clone(),
        };
        let (url, password) = coffer_config::split_url_password(&url);
        let mut c = self.tool(prog);
        c.arg("--dbname").arg(url);
        if let Some(p) = password {
            c.env("PGPASSWORD", p);
        }
        c
    }

    /// Version and role (`pg_is_in_recovery`: a replica replays WAL).
    pub(crate) fn probe(&self) -> Result<Probe, SourceError> {
        let rows = self.query(
            "postgres",
            "SELECT current_setting('server_version'), pg_is_in_recovery()",
        )?;
        let row = rows.first();
        let version = row
            .and_then(|r| r.first())
            .map(|v| format!("PostgreSQL {v}"));
        let role = match row.and_then(|r| r.get(1)).map(String::as_str) {
            Some("t") => Some("replica"),
            Some("f") => Some("primary"),
            _ => None,
        };
        Ok(Probe::answered(version, role))
    }

    pub(crate) fn tool_err(&self, message: String) -> SourceError {
        SourceError::Tool {
            source_name: self.name.clone(),
            message,
        }
    }

    /// Runs one query on `db`, returning rows of fields.
    pub(crate) fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<String>>, SourceError> {
        let mut c = self.tool_on("psql", Some(db));
        c.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
            "\u{1f}",
            "-c",
            sql,
        ]);
        let out = util::output(c).map_err(|m| SourceError::Server {
            source_name: self.name.clone(),
            message: format!("{}: {m}", redact(&url_with_database(&self.url, db))),
        })?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\u{1f}').map(str::to_string).collect())
            .collect())
    }
}

impl Postgres {
    /// Checks the settings.
    pub fn new(name: &str, cfg: Config) -> Result<Postgres, SourceError> {
        if cfg.checkpoint.is_some() {
            return Err(SourceError::Usage(format!(
                "source {name:?}: checkpoint applies to mode = \"physical\" only"
            )));
        }
        Ok(Postgres {
            server: Server::new(name, cfg.url.0, cfg.bin_dir),
            databases: cfg.databases,
            exclude: cfg.exclude_databases,
        })
    }

    fn tool_err(&self, message: String) -> SourceError {
        self.server.tool_err(message)
    }

    fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<String>>, SourceError> {
        self.server.query(db, sql)
    }

    fn databases(&self) -> Result<Vec<(String, u64)>, SourceError> {
        let rows = self.query(
            "postgres",
            "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname",
        )?;
        let all: Vec<(String, u64)> = rows
            .into_iter()
            .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.parse().ok()?)))
            .collect();
        match &self.databases {
            Some(wanted) => {
                let mut out = Vec::new();
                for w in wanted {
                    match all.iter().find(|(n, _)| n == w) {
                        Some(d) => out.push(d.clone()),
                        None => {
                            return Err(SourceError::Server {
                                source_name: self.server.name.clone(),
                                message: format!(
                                    "database {w:?} does not exist on {}{}\n{}",
                                    redact(&self.server.url),
                                    coffer_config::suggest::did_you_mean(
                                        w,
                                        all.iter().map(|(n, _)| n.as_str())
                                    ),
                                    util::names_hint(
                                        "databases on the server",
                                        all.iter().map(|(n, _)| n.as_str())
                                    )
                                ),
                            })
                        }
                    }
                }
                Ok(out)
            }
            None => Ok(all
                .into_iter()
                .filter(|(n, _)| !self.exclude.contains(n))
                .collect()),
        }
    }
}

impl Source for Postgres {
    fn name(&self) -> &str {
        &self.server.name
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn backup(&self, manifest: &Manifest) -> Result<BackupPlan, SourceError> {
        let started = Instant::now();
        let version = self
            .query("postgres", "SHOW server_version")?
            .first()
            .and_then(|r| r.first().cloned())
            .unwrap_or_default();
        let dbs = self.databases()?;
        manifest.set("mode", "logical");
        manifest.set("server_version", version);
        manifest.set("started_at", chrono::Local::now().to_rfc3339());
        let mut list = Vec::new();
        for (db, size) in &dbs {
            list.push(serde_json::json!({"name": db, "file": dump_file(db), "size_bytes": size}));
        }
        manifest.set("databases", serde_json::Value::Array(list));

        let mut streams = Vec::new();
        let mut g = self.server.tool_on("pg_dumpall", Some("postgres"));
        g.arg("--globals-only");
        streams.push(util::stream("globals.sql", g).map_err(|m| self.tool_err(m))?);
        for (db, _) in &dbs {
            // Started only when the previous dump has ended: the archiver reads the streams
            // in order, so each pg_dump runs alone.
            let mut c = self.server.tool_on("pg_dump", Some(db));
            c.args(["--format=custom", "--compress=0"]);
            streams.push(crate::row_counts::counted(
                util::deferred(&dump_file(db), c, None),
                db,
                manifest,
                |r| dump_rows::count(r),
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
        let mut report = RestoreReport::default();
        let wanted = match &req.database {
            Some(d) => Some(d.clone()),
            // No manifest, or one that lists no database: the snapshot's only dump, if any.
            None if util::manifest_databases(files).is_empty() => only_dump(files),
            None => None,
        };
        let source_db = util::choose_database(files, wanted.as_deref(), dump_file)?;
        let file = dump_file(&source_db);

        if let Some(dir) = &req.target {
            // File-shaped restore: the dump and the globals, for pg_restore by hand.
            util::write_files(files, dir, &[file.as_str(), "globals.sql"], &mut report)?;
            return Ok(report);
        }

        let target_db = req.to_database.clone().unwrap_or_else(|| source_db.clone());
        // Globals first: the dump refers to its roles. A role that already exists is kept.
        let mut psql = self.server.tool_on("psql", Some("postgres"));
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=0"]);
        let globals = files.reader("globals.sql")?;
        let (_, stderr) = util::feed_capture(psql, globals).map_err(|m| self.tool_err(m))?;
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("ERROR:") && !l.contains("already exists"))
            .collect();
        if !errors.is_empty() {
            return Err(self.tool_err(format!(
                "restoring roles and tablespaces: {}",
                errors.join("; ")
            )));
        }
        report
            .steps
            .push("applied globals (roles that already existed were kept)".into());

        let exists = !self
            .query(
                "postgres",
                &format!(
                    "SELECT 1 FROM pg_database WHERE datname = {}",
                    quote_literal(&target_db)
                ),
            )?
            .is_empty();
        if exists && !req.clean {
            return Err(SourceError::Usage(format!(
                "database {target_db:?} already exists: use --clean to replace its objects, or --to-database NEW"
            )));
        }
        if !exists {
            self.query(
                "postgres",
                &format!("CREATE DATABASE {}", quote_ident(&target_db)),
            )?;
            report.steps.push(format!("created database {target_db:?}"));
        }
        let mut r = self.server.tool_on("pg_restore", Some(&target_db));
        if exists {
            r.args(["--clean", "--if-exists"]);
        }
        let started = Instant::now();
        let failed = |m: String| {
            self.tool_err(format!(
                "pg_restore into {target_db:?} failed; the database may be partly restored: {m}"
            ))
        };
        match req.jobs.filter(|&j| j > 1) {
            None => {
                util::feed(r, files.reader(&file)?).map_err(failed)?;
            }
            Some(jobs) => {
                // Parallel pg_restore seeks in the archive, so it cannot read a pipe: spool the
                // dump to a private temporary file (TMPDIR), removed when this returns.
                let mut tmp = tempfile::Builder::new()
                    .prefix("coffer-pg-restore-")
                    .suffix(".dump")
                    .tempfile()
                    .map_err(|source| SourceError::Io {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                let n = coffer_archiver::copy_stream(files.reader(&file)?, tmp.as_file_mut())
                    .map_err(|source| SourceError::Io {
                        path: tmp.path().to_path_buf(),
                        source,
                    })?;
                report.steps.push(format!(
                    "spooled the dump ({}) to {} for pg_restore --jobs {jobs}",
                    coffer_config::units::bytes(n),
                    tmp.path().display()
                ));
                r.arg("--jobs").arg(jobs.to_string()).arg(tmp.path());
                util::output(r).map_err(failed)?;
            }
        }
        report.steps.push(format!(
            "restored {source_db:?} into {target_db:?} with pg_restore in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        let tables = self.query(
            &target_db,
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
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
        self.server.query(database.unwrap_or("postgres"), sql)
    }

    fn probe(&self) -> Result<Probe, SourceError> {
        self.server.probe()
    }

    fn describe(&self) -> String {
        let dbs = match &self.databases {
            Some(d) => d.join(", "),
            None => "all databases".into(),
        };
        format!("{} ({dbs}, logical)", redact(&self.server.url))
    }
}
