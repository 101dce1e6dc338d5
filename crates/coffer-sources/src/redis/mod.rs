//! Redis: an RDB snapshot taken over the replication protocol, the way `redis-cli --rdb` does
//! it, streamed into the repository as `dump.rdb` while it arrives.
//!
//! The backup connects like a replica that only wants the RDB (`REPLCONF capa eof`,
//! `REPLCONF rdb-only 1`, `PSYNC ? -1`, falling back to `SYNC` on servers without PSYNC).
//! The server forks and sends its dataset either as a bulk of known length (disk-based
//! replication) or, by default since Redis 7, straight from the fork ending with a random
//! 40-byte mark (diskless replication, which first waits `repl-diskless-sync-delay`, 5 s by
//! default, for other replicas to join). The snapshot is made only if the whole payload
//! arrived, starts with the `REDIS` magic, ends with the EOF opcode, and its CRC-64 trailer
//! matches.
//!
//! The Redis user needs `AUTH`, `PING`, `INFO`, `REPLCONF` and `PSYNC` (or `SYNC`), e.g.
//! `ACL SETUSER backup on >PASSWORD +ping +info +replconf +psync +sync`.
//!
//! Manifest fields: `server`, `redis_version`, `redis_mode`, `role`, `started_at`, `keys` and
//! `expires` (`{"db0": N}` from `INFO keyspace` just before the sync; `keys_after_sync_start`
//! too if the counts moved before the fork), `replication_id` and `replication_offset` (from
//! `+FULLRESYNC`: the exact position of the RDB), `transfer` (`diskless` or `disk`), and once
//! the stream is complete `rdb_bytes`, `rdb_version`, `rdb_crc64` (hex; all zeros plus an
//! `rdb_checksum` note when the server has `rdbchecksum no`) and `duration_seconds`.
//!
//! A restore writes `dump.rdb` into a directory (`--target DIR`), and/or loads it into a
//! temporary `redis-server` on a free loopback port (`--scratch`) and checks that the key
//! counts match the ones recorded at backup time.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_archiver::StreamSource;
use coffer_config::EnvString;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value};

mod load;

use crate::{
    util, BackupPlan, Manifest, RestoreReport, RestoreRequest, SnapshotFiles, Source, SourceError,
};

/// The file the RDB becomes in the snapshot.
pub const RDB_FILE: &str = "dump.rdb";

const DEFAULT_PORT: u16 = 6379;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const EOF_MARK_LEN: usize = 40;
/// Socket buffer for the RDB stream (the archiver reads 1 MiB at a time).
const STREAM_BUFFER: usize = 1 << 20;
/// Socket buffer for commands.
const COMMAND_BUFFER: usize = 16 << 10;

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// `[[source]]` settings of `type = "redis"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`; user and password percent-encoded. The
    /// backup always covers every database, so `/DB` is accepted and ignored.
    #[serde(deserialize_with = "deserialize_url")]
    pub url: EnvString,
    /// Seconds to wait for a connection or for any byte from the server (default 30).
    #[serde(default)]
    pub timeout: Option<u64>,
}

fn deserialize_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EnvString, D::Error> {
    let url = EnvString::deserialize(d)?;
    parse_url(&url).map_err(serde::de::Error::custom)?;
    Ok(url)
}

/// Where the server is and how to log in (parsed from the URL).
#[derive(Clone, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.describe())
    }
}

impl Target {
    /// `host:port` (`[v6]:port`), for messages.
    fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without the password.
    fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("redis://{u}@{}", self.addr()),
            None => format!("redis://{}", self.addr()),
        }
    }
}

/// Parses `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`. Messages never contain the password.
fn parse_url(url: &str) -> Result<Target, String> {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("url must look like redis://[[USER]:PASSWORD@]HOST[:PORT]/".into());
    };
    match scheme.to_ascii_lowercase().as_str() {
        "redis" => {}
        "rediss" => {
            return Err(
                "rediss:// (TLS) is not supported: reach the server over a TLS tunnel \
                        (stunnel, spiped) and use redis://"
                    .into(),
            )
        }
        other => {
            return Err(format!(
                "url scheme {other:?} is not supported: use redis://"
            ))
        }
    }
    if rest.contains(['?', '#']) {
        return Err("url query parameters and fragments are not supported".into());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let path = path.trim_end_matches('/');
    if !path.is_empty() && path.parse::<u32>().is_err() {
        return Err("the url path must be empty or a database number (/0)".into());
    }
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => match ui.split_once(':') {
            Some((u, p)) => {
                let u = percent_decode(u).map_err(|e| format!("url user name: {e}"))?;
                let p = percent_decode(p).map_err(|e| format!("url password: {e}"))?;
                if p.is_empty() {
                    return Err("the url has an empty password".into());
                }
                ((!u.is_empty()).then_some(u), Some(p))
            }
            None => {
                return Err("the url has a user name but no password: write \
                            redis://USER:PASSWORD@HOST:PORT/ (or redis://:PASSWORD@...)"
                    .into())
            }
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("url host: unterminated [IPv6 address]")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("url: expected :PORT after ]")?),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("the url has no host".into());
    }
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("url port {p:?} is not a port number")),
        },
    };
    Ok(Target {
        host,
        port,
        user,
        password,
    })
}

use coffer_config::units::percent_decode;

// ---------------------------------------------------------------------------------------------
// The source
// ---------------------------------------------------------------------------------------------

/// A Redis instance.
pub struct Redis {
    name: String,
    target: Target,
    timeout: Duration,
}

impl Redis {
    /// Checks the settings.
    pub fn new(name: &str, cfg: Config) -> Result<Redis, SourceError> {
        let target = parse_url(&cfg.url)
            .map_err(|e| SourceError::Usage(format!("source {name:?}: url: {e}")))?;
        let secs = cfg.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if secs == 0 {
            return Err(SourceError::Usage(format!(
                "source {name:?}: timeout must be at least 1 second"
            )));
        }
        Ok(Redis {
            name: name.to_string(),
            target,
            timeout: Duration::from_secs(secs),
        })
    }

    fn server_err(&self, message: String) -> SourceError {
        SourceError::Server {
            source_name: self.name.clone(),
            message,
        }
    }

    fn tool_err(&self, message: String) -> SourceError {
        SourceError::Tool {
            source_name: self.name.clone(),
            message,
        }
    }
}

impl Source for Redis {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn backup(&self, manifest: &Manifest) -> Result<BackupPlan, SourceError> {
        // Check now that the server answers and lets us in, so that such errors come before
        // the repository work. The sync itself starts when the archiver first reads: a master
        // drops a replica that does not read for `repl-timeout` (60 s).
        let mut c = Conn::connect_authed(&self.target, self.timeout, COMMAND_BUFFER)
            .map_err(|e| self.server_err(e))?;
        let server = c.info("server").map_err(|e| self.server_err(e))?;
        let replication = c.info("replication").map_err(|e| self.server_err(e))?;
        let keyspace = c.info("keyspace").map_err(|e| self.server_err(e))?;
        drop(c);
        manifest.set("server", self.target.addr());
        for (key, field) in [
            ("redis_version", "redis_version"),
            ("redis_mode", "redis_mode"),
        ] {
            if let Some(v) = info_field(&server, field) {
                manifest.set(key, v);
            }
        }
        if let Some(role) = info_field(&replication, "role") {
            manifest.set("role", role);
        }
        set_keys(manifest, "keys", "expires", &parse_keyspace(&keyspace));
        let shared = Arc::new(Mutex::new(Outcome::default()));
        let reader = SyncReader {
            state: SyncState::Pending,
            target: self.target.clone(),
            timeout: self.timeout,
            manifest: manifest.clone(),
            shared: Arc::clone(&shared),
        };
        let manifest = manifest.clone();
        Ok(BackupPlan::Streams(vec![StreamSource {
            filename: RDB_FILE.to_string(),
            reader: Box::new(reader),
            finish: Box::new(move || finish_backup(&shared, &manifest)),
        }]))
    }

    fn restore(
        &self,
        files: &SnapshotFiles,
        req: &RestoreRequest,
    ) -> Result<RestoreReport, SourceError> {
        if req.database.is_some() || req.to_database.is_some() {
            return Err(SourceError::Usage(
                "a Redis backup is the whole instance (every database in one dump.rdb): \
                 --database and --to-database do not apply"
                    .into(),
            ));
        }
        if req.target.is_none() && !req.scratch && req.to_url.is_none() {
            return Err(SourceError::Usage(
                "restoring Redis needs --to-url redis://HOST:PORT/ (loads the keys into that \
                 running server), --target DIR (writes DIR/dump.rdb, for a redis-server started \
                 with --dir DIR) or --scratch (loads the backup into a temporary redis-server \
                 and checks its keys)"
                    .into(),
            ));
        }
        let load_into = req
            .to_url
            .as_deref()
            .map(|u| parse_url(u).map_err(SourceError::Usage))
            .transpose()?;
        files.node(RDB_FILE)?;
        let mut report = RestoreReport::default();
        let tmp;
        let dir = match &req.target {
            Some(d) => d.clone(),
            None => {
                tmp = tempfile::Builder::new()
                    .prefix("coffer-redis-")
                    .tempdir()
                    .map_err(|source| SourceError::Io {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                tmp.path().to_path_buf()
            }
        };
        let path = dir.join(RDB_FILE);
        if req.target.is_some() && !req.clean && path.exists() {
            return Err(SourceError::Usage(format!(
                "{} exists: remove it or pass --clean to overwrite it",
                path.display()
            )));
        }
        let mut reader = VerifyingReader::new(files.reader(RDB_FILE)?);
        if let Err(e) = util::write_file_io(&path, &mut reader) {
            let _ = std::fs::remove_file(path.with_extension("coffer-tmp"));
            return Err(match reader.error.take() {
                Some(bad) => SourceError::Snapshot(format!(
                    "snapshot {}: {RDB_FILE} is damaged: {bad}",
                    files.snapshot.id.short()
                )),
                None => e.into(),
            });
        }
        let rdb = reader.summary.take().expect(
            "write_file_io succeeded, so it read the verifying reader to its end, which verified \
             the RDB (a failed verification fails the write)",
        );
        report.steps.push(format!(
            "wrote {} ({}, RDB version {}, {})",
            path.display(),
            coffer_config::units::bytes(rdb.bytes),
            rdb.version,
            rdb.crc_text()
        ));
        report.checks.insert("rdb_bytes".into(), rdb.bytes.into());
        report
            .checks
            .insert("rdb_crc64".into(), format!("{:016x}", rdb.crc).into());
        if !req.scratch && load_into.is_none() {
            report.steps.push(format!(
                "to use it: stop the target server, copy it over its dump.rdb (with appendonly \
                 off), or start redis-server --dir {} --dbfilename {RDB_FILE}",
                dir.display()
            ));
            return Ok(report);
        }

        let expected = files
            .manifest()
            .and_then(|m| ExpectedKeys::from_manifest(&m));
        let databases = expected.as_ref().map_or(16, |e| e.databases_needed());
        let server =
            ScratchServer::start(&path, databases, self.timeout).map_err(|e| self.tool_err(e))?;
        report.steps.push(format!(
            "started redis-server {} on 127.0.0.1:{} with data dir {}",
            server.version,
            server.port(),
            dir.display()
        ));
        report
            .checks
            .insert("redis_server_version".into(), server.version.clone().into());
        let counted = server.count_keys();
        let loaded = match (&load_into, &counted) {
            (Some(t), Ok(_)) => Some(load::load(&server, t, self.timeout, req.clean)),
            _ => None,
        };
        let stopped = server.shutdown();
        let counted = counted.map_err(|e| self.tool_err(e))?;
        if let (Some(loaded), Some(t)) = (loaded, &load_into) {
            let l = match loaded {
                Ok(l) => l,
                Err(load::LoadError::NotEmpty(m)) => return Err(SourceError::Usage(m)),
                Err(load::LoadError::Failed(m)) => return Err(self.server_err(m)),
            };
            if l.flushed > 0 {
                report.steps.push(format!(
                    "emptied redis at {} (--clean): {} keys removed",
                    t.addr(),
                    l.flushed
                ));
            }
            let restored: u64 = l.restored.values().sum();
            report.steps.push(format!(
                "loaded {restored} keys into redis at {} with DUMP/RESTORE ({}){}",
                t.addr(),
                describe_counts(
                    &l.restored
                        .iter()
                        .map(|(d, n)| (
                            *d,
                            DbKeys {
                                keys: *n,
                                expires: 0
                            }
                        ))
                        .collect()
                ),
                if l.expired > 0 {
                    format!("; {} keys expired on the way", l.expired)
                } else {
                    String::new()
                }
            ));
            report.checks.insert("keys_loaded".into(), restored.into());
            report
                .checks
                .insert("target_keys".into(), keys_json(&l.after, |d| d.keys));
            let target_total: u64 = l.after.values().map(|k| k.keys).sum();
            if target_total != restored {
                return Err(self.server_err(format!(
                    "redis at {} holds {target_total} keys after loading {restored}: it was \
                     written to during the load",
                    t.addr()
                )));
            }
        }
        report
            .checks
            .insert("keys".into(), keys_json(&counted.per_db, |d| d.keys));
        let verdict = match &expected {
            Some(exp) => {
                report
                    .checks
                    .insert("keys_expected".into(), Value::Object(keys_map(&exp.keys)));
                compare_keys(exp, &counted)
            }
            None => Ok(vec![
                "the snapshot has no key counts to compare with (no coffer manifest)".into(),
            ]),
        };
        match stopped {
            Ok(()) => report.steps.push(match req.target {
                Some(_) => format!(
                    "stopped the scratch server; the data dir {} is kept (redis-server --dir {} \
                     --dbfilename {RDB_FILE} serves it)",
                    dir.display(),
                    dir.display()
                ),
                None => "stopped the scratch server and removed its temporary data dir".into(),
            }),
            Err(e) => report
                .steps
                .push(format!("stopping the scratch server: {e}")),
        }
        match verdict {
            Ok(notes) => {
                report.steps.push(format!(
                    "key counts match the backup: {}",
                    describe_counts(&counted.per_db)
                ));
                report.steps.extend(notes);
                Ok(report)
            }
            Err(message) => Err(SourceError::Snapshot(format!(
                "snapshot {}: {message}",
                files.snapshot.id.short()
            ))),
        }
    }

    fn probe(&self) -> Result<crate::Probe, SourceError> {
        let err = |m: String| SourceError::Server {
            source_name: self.name.clone(),
            message: m,
        };
        let mut c =
            Conn::connect_authed(&self.target, self.timeout, COMMAND_BUFFER).map_err(err)?;
        let server = c.info("server").map_err(err)?;
        let repl = c.info("replication").map_err(err)?;
        let role = match info_field(&repl, "role") {
            Some("master") => Some("primary"),
            Some("slave") => Some("replica"),
            _ => None,
        };
        Ok(crate::Probe::answered(
            info_field(&server, "redis_version").map(|v| format!("Redis {v}")),
            role,
        ))
    }

    fn describe(&self) -> String {
        self.target.describe()
    }
}

fn describe_counts(per_db: &BTreeMap<u32, DbKeys>) -> String {
    if per_db.is_empty() {
        return "no keys".into();
    }
    per_db
        .iter()
        .map(|(db, k)| format!("db{db} {}", k.keys))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Key counts
// ---------------------------------------------------------------------------------------------

/// The counts `INFO keyspace` gives for one database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DbKeys {
    /// Keys.
    pub keys: u64,
    /// Keys with a time to live.
    pub expires: u64,
}

/// Parses `INFO keyspace` (`db0:keys=1,expires=0,avg_ttl=0`).
pub fn parse_keyspace(info: &str) -> BTreeMap<u32, DbKeys> {
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((db, fields)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(Ok(db)) = db.strip_prefix("db").map(str::parse::<u32>) else {
            continue;
        };
        let mut k = DbKeys::default();
        for f in fields.split(',') {
            match f.split_once('=') {
                Some(("keys", v)) => k.keys = v.parse().unwrap_or(0),
                Some(("expires", v)) => k.expires = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        out.insert(db, k);
    }
    out
}

/// A field of an `INFO` reply.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

fn keys_json(per_db: &BTreeMap<u32, DbKeys>, f: impl Fn(&DbKeys) -> u64) -> Value {
    Value::Object(
        per_db
            .iter()
            .map(|(db, k)| (format!("db{db}"), Value::from(f(k))))
            .collect(),
    )
}

fn keys_map(m: &BTreeMap<u32, u64>) -> Map<String, Value> {
    m.iter()
        .map(|(db, n)| (format!("db{db}"), Value::from(*n)))
        .collect()
}

fn set_keys(manifest: &Manifest, keys: &str, expires: &str, per_db: &BTreeMap<u32, DbKeys>) {
    manifest.set(keys, keys_json(per_db, |d| d.keys));
    manifest.set(expires, keys_json(per_db, |d| d.expires));
}

fn parse_keys_json(v: Option<&Value>) -> Option<BTreeMap<u32, u64>> {
    let obj = v?.as_object()?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let db = k.strip_prefix("db").unwrap_or(k).parse().ok()?;
        out.insert(db, v.as_u64()?);
    }
    Some(out)
}

/// What the backup recorded about the keys.
#[derive(Debug, Clone, Default)]
pub struct ExpectedKeys {
    /// Keys per database just before the sync started.
    pub keys: BTreeMap<u32, u64>,
    /// Keys with a TTL per database at the same time.
    pub expires: BTreeMap<u32, u64>,
    /// Keys per database once the server had forked (when they differ from `keys`).
    pub keys_after: Option<BTreeMap<u32, u64>>,
}

impl ExpectedKeys {
    /// Reads the counts from a backup's manifest.
    pub fn from_manifest(m: &Value) -> Option<ExpectedKeys> {
        Some(ExpectedKeys {
            keys: parse_keys_json(m.get("keys"))?,
            expires: parse_keys_json(m.get("expires")).unwrap_or_default(),
            keys_after: parse_keys_json(m.get("keys_after_sync_start")),
        })
    }

    /// The `databases` setting a server needs to load the backup.
    pub fn databases_needed(&self) -> u32 {
        let max = self
            .keys
            .keys()
            .chain(self.keys_after.iter().flat_map(|m| m.keys()))
            .max();
        max.map_or(16, |m| (m + 1).max(16))
    }
}

/// What a loaded server holds.
#[derive(Debug, Clone, Default)]
pub struct LoadedKeys {
    /// `INFO keyspace`.
    pub per_db: BTreeMap<u32, DbKeys>,
    /// `rdb_last_load_keys_loaded` (Redis 7+).
    pub loaded: Option<u64>,
    /// `rdb_last_load_keys_expired` (Redis 7+): keys in the file whose TTL had passed.
    pub expired: Option<u64>,
}

/// Checks a loaded server's key counts against the backup's; returns notes on tolerated
/// differences, or what does not match.
///
/// A key whose TTL passed between the backup and the load is dropped while loading, so a
/// database may hold up to its `expires` count fewer keys (Redis 7 reports how many, and then
/// the total is checked exactly). On a server written to during the backup the counts taken
/// before and after the fork bound the count.
pub fn compare_keys(exp: &ExpectedKeys, got: &LoadedKeys) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let mut bad = Vec::new();
    let dbs: std::collections::BTreeSet<u32> = exp
        .keys
        .keys()
        .chain(exp.keys_after.iter().flat_map(|m| m.keys()))
        .chain(got.per_db.keys())
        .copied()
        .collect();
    let (mut total_lo, mut total_hi) = (0u64, 0u64);
    let expired_total = got.expired;
    for db in dbs {
        let before = exp.keys.get(&db).copied().unwrap_or(0);
        let after = exp
            .keys_after
            .as_ref()
            .map_or(before, |m| m.get(&db).copied().unwrap_or(0));
        let (lo, hi) = (before.min(after), before.max(after));
        total_lo += lo;
        total_hi += hi;
        let ttl_slack = exp
            .expires
            .get(&db)
            .copied()
            .unwrap_or(0)
            .min(expired_total.unwrap_or(u64::MAX));
        let n = got.per_db.get(&db).map_or(0, |k| k.keys);
        if n == before && n == after {
            continue;
        }
        if n <= hi && n >= lo.saturating_sub(ttl_slack) {
            let why = if lo != hi {
                format!("the key count changed from {before} to {after} while the backup started")
            } else {
                format!("{} of its keys had a TTL that has passed since", hi - n)
            };
            notes.push(format!(
                "db{db}: {n} keys, the backup recorded {before}: {why}"
            ));
        } else if lo == hi {
            bad.push(format!("db{db}: {n} keys, the backup recorded {before}"));
        } else {
            bad.push(format!(
                "db{db}: {n} keys, the backup recorded {before} before the fork and {after} after"
            ));
        }
    }
    if let (Some(loaded), Some(expired)) = (got.loaded, got.expired) {
        let in_file = loaded + expired;
        if in_file < total_lo || in_file > total_hi {
            bad.push(format!(
                "the RDB holds {in_file} keys ({loaded} loaded, {expired} expired), the backup \
                 recorded {}",
                if total_lo == total_hi {
                    total_lo.to_string()
                } else {
                    format!("between {total_lo} and {total_hi}")
                }
            ));
        } else if expired > 0 {
            notes.push(format!("{expired} keys had expired and were not loaded"));
        }
    }
    if bad.is_empty() {
        Ok(notes)
    } else {
        Err(format!(
            "the restored data does not match the backup's key counts: {}",
            bad.join("; ")
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// CRC-64 (Jones, reflected, as in Redis)
// ---------------------------------------------------------------------------------------------

/// Reflected form of the polynomial 0xad93d23594c935a9.
const CRC64_POLY: u64 = 0x95ac_9329_ac4b_c9b5;

const fn crc64_tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut j = 0;
        while j < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC64_POLY
            } else {
                crc >> 1
            };
            j += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

static CRC64_TABLES: [[u64; 256]; 8] = crc64_tables();

/// Continues Redis's CRC-64 (`crc64(crc, data, len)`: initial value 0, no final xor) over
/// `data`, eight bytes at a time.
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    let t = &CRC64_TABLES;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v =
            crc ^ u64::from_le_bytes(c.try_into().expect("chunks_exact(8) yields 8-byte slices"));
        crc = t[7][(v & 0xff) as usize]
            ^ t[6][((v >> 8) & 0xff) as usize]
            ^ t[5][((v >> 16) & 0xff) as usize]
            ^ t[4][((v >> 24) & 0xff) as usize]
            ^ t[3][((v >> 32) & 0xff) as usize]
            ^ t[2][((v >> 40) & 0xff) as usize]
            ^ t[1][((v >> 48) & 0xff) as usize]
            ^ t[0][(v >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

// ---------------------------------------------------------------------------------------------
// RDB checks
// ---------------------------------------------------------------------------------------------

const RDB_OPCODE_EOF: u8 = 0xff;

/// Checks an RDB as it streams by: magic, EOF opcode, and the CRC-64 of everything before the
/// 8-byte trailer.
#[derive(Default)]
struct RdbCheck {
    bytes: u64,
    crc: u64,
    head: [u8; 9],
    /// The last bytes seen, not yet in the CRC (the trailer, once at the end).
    tail: [u8; 8],
    tail_len: usize,
    last_in_crc: Option<u8>,
}

/// A verified RDB.
#[derive(Clone, Debug)]
pub struct RdbSummary {
    /// Size.
    pub bytes: u64,
    /// RDB format version (10 for Redis 7.0, 11 for 7.2, 12 for 7.4).
    pub version: u32,
    /// The CRC-64 (0: the server had `rdbchecksum no`).
    pub crc: u64,
}

impl RdbSummary {
    fn crc_text(&self) -> String {
        if self.crc == 0 {
            "no checksum (the server has rdbchecksum no)".into()
        } else {
            format!("CRC-64 {:016x} verified", self.crc)
        }
    }
}

impl RdbCheck {
    fn feed(&mut self, data: &[u8]) {
        if let Some(&b) = data.last() {
            self.crc = crc64(self.crc, data);
            self.last_in_crc = Some(b);
        }
    }

    fn update(&mut self, data: &[u8]) {
        let have = self.bytes as usize;
        if have < self.head.len() {
            let n = (self.head.len() - have).min(data.len());
            self.head[have..have + n].copy_from_slice(&data[..n]);
        }
        self.bytes += data.len() as u64;
        if data.len() >= 8 {
            let tail = self.tail;
            self.feed(&tail[..self.tail_len]);
            let (body, last) = data.split_at(data.len() - 8);
            self.feed(body);
            self.tail.copy_from_slice(last);
            self.tail_len = 8;
        } else {
            let mut joined = [0u8; 16];
            joined[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            joined[self.tail_len..self.tail_len + data.len()].copy_from_slice(data);
            let n = self.tail_len + data.len();
            let keep = n.min(8);
            self.feed(&joined[..n - keep]);
            self.tail[..keep].copy_from_slice(&joined[n - keep..n]);
            self.tail_len = keep;
        }
    }

    fn verify(&self) -> Result<RdbSummary, String> {
        let shown =
            String::from_utf8_lossy(&self.head[..(self.bytes as usize).min(9)]).into_owned();
        // "REDIS" and four digits; Valkey 9 writes "VALKEY" and three (RDB 80).
        let digits = match &self.head {
            [b'R', b'E', b'D', b'I', b'S', ..] => &self.head[5..9],
            [b'V', b'A', b'L', b'K', b'E', b'Y', ..] => &self.head[6..9],
            _ => b"".as_slice(),
        };
        if self.bytes < 9 || digits.is_empty() {
            return Err(format!(
                "not an RDB file: it starts with {shown:?} instead of the REDIS magic ({} bytes)",
                self.bytes
            ));
        }
        let version: u32 = std::str::from_utf8(digits)
            .ok()
            .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("not an RDB file: bad version in {shown:?}"))?;
        if version < 5 {
            // No checksum before RDB 5 (Redis 2.6): the EOF opcode is the last byte.
            if self.tail[self.tail_len - 1] != RDB_OPCODE_EOF {
                return Err("the RDB does not end with the EOF opcode: it is truncated".into());
            }
            return Ok(RdbSummary {
                bytes: self.bytes,
                version,
                crc: 0,
            });
        }
        if self.bytes < 9 + 1 + 8 || self.last_in_crc != Some(RDB_OPCODE_EOF) {
            return Err(format!(
                "the RDB ({} bytes) does not end with the EOF opcode and checksum: it is truncated",
                self.bytes
            ));
        }
        let stored = u64::from_le_bytes(self.tail);
        if stored != 0 && stored != self.crc {
            return Err(format!(
                "CRC-64 mismatch: the RDB's trailer says {stored:016x}, its {} bytes give {:016x}",
                self.bytes, self.crc
            ));
        }
        Ok(RdbSummary {
            bytes: self.bytes,
            version,
            crc: stored,
        })
    }
}

/// A reader that checks the RDB passing through it and fails at the end if it is damaged.
struct VerifyingReader<R> {
    inner: R,
    check: RdbCheck,
    summary: Option<RdbSummary>,
    error: Option<String>,
}

impl<R: Read> VerifyingReader<R> {
    fn new(inner: R) -> Self {
        VerifyingReader {
            inner,
            check: RdbCheck::default(),
            summary: None,
            error: None,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.check.update(&buf[..n]);
            return Ok(n);
        }
        if !buf.is_empty() && self.summary.is_none() {
            match self.check.verify() {
                Ok(s) => self.summary = Some(s),
                Err(e) => {
                    self.error = Some(e.clone());
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
        Ok(0)
    }
}

/// Checks an RDB file: magic, EOF opcode and CRC-64.
pub fn verify_rdb_file(path: &Path) -> Result<RdbSummary, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut r = VerifyingReader::new(io::BufReader::with_capacity(1 << 20, f));
    io::copy(&mut r, &mut io::sink()).map_err(|e| format!("{}: {e}", path.display()))?;
    r.summary
        .ok_or_else(|| format!("{}: empty", path.display()))
}

// ---------------------------------------------------------------------------------------------
// RESP
// ---------------------------------------------------------------------------------------------

/// A reply (RESP2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*2\r\n...`.
    Array(Vec<Reply>),
}

impl Reply {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            Reply::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// A bulk or simple string as text (lossy).
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// Encodes a command as an array of bulk strings.
fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

const MAX_LINE: usize = 64 << 10;
const MAX_BULK: i64 = 1 << 30;
const MAX_DEPTH: usize = 16;

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads one `\n`-terminated line (without `\r\n`).
fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&buf[..i]);
                r.consume(i + 1);
                break;
            }
            None => {
                let n = buf.len();
                line.extend_from_slice(buf);
                r.consume(n);
            }
        }
        if line.len() > MAX_LINE {
            return Err(bad_data("protocol error: reply line too long".into()));
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// Parses one RESP2 reply.
fn parse_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    parse_reply_at(r, 0)
}

fn parse_reply_at(r: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(bad_data("protocol error: replies nested too deeply".into()));
    }
    let line = read_line(r)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err(bad_data("protocol error: empty reply line".into()));
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    let int = || -> io::Result<i64> {
        std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_data(format!("protocol error: bad number {:?}", text())))
    };
    Ok(match kind {
        b'+' => Reply::Simple(text()),
        b'-' => Reply::Error(text()),
        b':' => Reply::Integer(int()?),
        b'$' => match int()? {
            -1 => Reply::Nil,
            n if (0..=MAX_BULK).contains(&n) => {
                let mut data = vec![0u8; n as usize + 2];
                r.read_exact(&mut data)?;
                if &data[n as usize..] != b"\r\n" {
                    return Err(bad_data(
                        "protocol error: bulk string not followed by CRLF".into(),
                    ));
                }
                data.truncate(n as usize);
                Reply::Bulk(data)
            }
            n => return Err(bad_data(format!("protocol error: bulk length {n}"))),
        },
        b'*' => match int()? {
            -1 => Reply::Nil,
            n if (0..=(1 << 24)).contains(&n) => {
                let mut items = Vec::with_capacity((n as usize).min(1024));
                for _ in 0..n {
                    items.push(parse_reply_at(r, depth + 1)?);
                }
                Reply::Array(items)
            }
            n => return Err(bad_data(format!("protocol error: array length {n}"))),
        },
        other => {
            return Err(bad_data(format!(
                "protocol error: unexpected reply type {:?}",
                other as char
            )))
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

/// A buffered connection.
struct Conn {
    sock: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    addr: String,
    timeout: Duration,
}

impl Conn {
    fn open(target: &Target, timeout: Duration, buffer: usize) -> Result<Conn, String> {
        let addr = target.addr();
        let addrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve the redis host {:?}: {e}", target.host))?
            .collect();
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, timeout) {
                Ok(sock) => {
                    let _ = sock.set_nodelay(true);
                    sock.set_read_timeout(Some(timeout))
                        .and_then(|_| sock.set_write_timeout(Some(timeout)))
                        .map_err(|e| format!("redis at {addr}: {e}"))?;
                    return Ok(Conn {
                        sock,
                        buf: vec![0u8; buffer].into_boxed_slice(),
                        start: 0,
                        end: 0,
                        addr,
                        timeout,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if is_timeout(&e) => format!(
                "cannot connect to redis at {addr}: no answer within {} s (timeout)",
                secs_text(timeout)
            ),
            Some(e) => format!("cannot connect to redis at {addr}: {e}"),
            None => format!("cannot connect to redis at {addr}: the host has no address"),
        })
    }

    /// Connects, authenticates if the URL has a password, and checks with PING.
    fn connect_authed(target: &Target, timeout: Duration, buffer: usize) -> Result<Conn, String> {
        let mut c = Conn::open(target, timeout, buffer)?;
        if let Some(pw) = &target.password {
            let reply = match &target.user {
                Some(u) => c.raw_call(&[b"AUTH", u.as_bytes(), pw.as_bytes()])?,
                None => c.raw_call(&[b"AUTH", pw.as_bytes()])?,
            };
            if let Reply::Error(e) = reply {
                let who = match &target.user {
                    Some(u) => format!(" as user {u:?}"),
                    None => String::new(),
                };
                return Err(format!(
                    "authentication{who} at redis {} failed: {e}",
                    c.addr
                ));
            }
        }
        match c.raw_call(&[b"PING"])? {
            Reply::Error(e) if e.starts_with("NOAUTH") => Err(format!(
                "redis at {} requires a password ({e}): put it in the url, \
                 redis://:PASSWORD@{}/ or redis://USER:PASSWORD@{}/",
                c.addr, c.addr, c.addr
            )),
            Reply::Error(e) => Err(format!("PING at redis {} failed: {e}", c.addr)),
            _ => Ok(c),
        }
    }

    fn io_err(&self, e: io::Error, doing: &str) -> String {
        if is_timeout(&e) {
            format!(
                "{doing}: no data from redis at {} for {} s (timeout)",
                self.addr,
                secs_text(self.timeout)
            )
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            format!("{doing}: redis at {} closed the connection", self.addr)
        } else {
            format!("{doing}: redis at {}: {e}", self.addr)
        }
    }

    fn send(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let cmd = command_name(args);
        self.sock
            .write_all(&encode_command(args))
            .map_err(|e| self.io_err(e, &format!("sending {cmd}")))
    }

    /// Sends a command and reads its reply (server errors are replies).
    fn raw_call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        self.send(args)?;
        parse_reply(self)
            .map_err(|e| self.io_err(e, &format!("reading the reply to {}", command_name(args))))
    }

    /// Sends a command; a server error is an `Err`.
    fn call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        match self.raw_call(args)? {
            Reply::Error(e) => Err(command_error(&command_name(args), &self.addr, &e)),
            r => Ok(r),
        }
    }

    fn info(&mut self, section: &str) -> Result<String, String> {
        let r = self.call(&[b"INFO", section.as_bytes()])?;
        r.text().ok_or_else(|| {
            format!(
                "INFO {section} at redis {}: unexpected reply {r:?}",
                self.addr
            )
        })
    }

    /// Reads more bytes after the buffered ones; 0 at end of stream.
    fn fill_more(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = loop {
            match self.sock.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.end += n;
        Ok(n)
    }
}

impl Read for Conn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end && out.len() >= self.buf.len() {
            return self.sock.read(out);
        }
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(out.len());
            out[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Conn {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            let n = loop {
                match self.sock.read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            self.end = n;
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn secs_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s:.1}")
    }
}

fn command_name(args: &[&[u8]]) -> String {
    let mut name = args
        .first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default();
    // Subcommands are part of the name; other arguments (AUTH's password) never are shown.
    if matches!(name.as_str(), "INFO" | "REPLCONF" | "CONFIG" | "CLIENT") {
        if let Some(sub) = args.get(1) {
            name.push(' ');
            name.push_str(&String::from_utf8_lossy(sub));
        }
    }
    name
}

fn command_error(cmd: &str, addr: &str, e: &str) -> String {
    if e.starts_with("NOPERM") {
        format!(
            "{cmd} refused by redis at {addr}: {e} (the user needs +ping +info +replconf +psync \
             +sync)"
        )
    } else if e.starts_with("NOAUTH") {
        format!("{cmd} refused by redis at {addr}: {e} (put the password in the url)")
    } else {
        format!("{cmd} failed at redis {addr}: {e}")
    }
}

/// A plain Redis client (RESP2 over TCP), for checks and tests.
pub struct Client {
    conn: Conn,
}

impl Client {
    /// Connects to `url` (`redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`), logs in and, if the
    /// URL names a database, selects it.
    pub fn connect(url: &str, timeout: Duration) -> Result<Client, String> {
        let target = parse_url(url)?;
        let mut conn = Conn::connect_authed(&target, timeout, COMMAND_BUFFER)?;
        let db = url
            .split_once("://")
            .and_then(|(_, r)| r.split_once('/'))
            .map(|(_, p)| p.trim_end_matches('/'))
            .filter(|p| !p.is_empty());
        if let Some(db) = db {
            conn.call(&[b"SELECT", db.as_bytes()])?;
        }
        Ok(Client { conn })
    }

    /// Runs a command; a server error reply is an `Err` naming the command.
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        self.conn.call(args)
    }

    /// Runs a command given as strings.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.conn.call(&args)
    }

    /// `INFO section`.
    pub fn info(&mut self, section: &str) -> Result<String, String> {
        self.conn.info(section)
    }
}

// ---------------------------------------------------------------------------------------------
// Backup: the replication stream
// ---------------------------------------------------------------------------------------------

/// How the payload ends.
enum Framing {
    /// `$<len>`: this many bytes remain.
    Bulk { remaining: u64, total: u64 },
    /// `$EOF:<mark>`: the payload ends with the mark.
    Mark {
        mark: [u8; EOF_MARK_LEN],
        found: bool,
    },
}

struct Transfer {
    conn: Conn,
    framing: Framing,
    check: RdbCheck,
    started: Instant,
}

enum SyncState {
    Pending,
    Streaming(Box<Transfer>),
    Done,
    Failed,
}

#[derive(Default)]
struct Outcome {
    error: Option<String>,
    done: Option<(RdbSummary, f64)>,
    bytes: u64,
}

struct SyncReader {
    state: SyncState,
    target: Target,
    timeout: Duration,
    manifest: Manifest,
    shared: Arc<Mutex<Outcome>>,
}

impl SyncReader {
    fn fail(&mut self, message: String) -> io::Error {
        self.state = SyncState::Failed;
        let mut o = self.shared.lock();
        if o.error.is_none() {
            o.error = Some(message.clone());
        }
        io::Error::other(message)
    }

    fn start(&mut self) -> Result<Transfer, String> {
        let started = Instant::now();
        let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut ctl = Conn::connect_authed(&self.target, self.timeout, COMMAND_BUFFER)?;
        let before = parse_keyspace(&ctl.info("keyspace")?);
        let replication = ctl.info("replication")?;
        announce_diskless_delay(&mut ctl);
        let mut c = Conn::connect_authed(&self.target, self.timeout, STREAM_BUFFER)?;
        for (opt, val) in [("capa", "eof"), ("rdb-only", "1")] {
            // Servers before 7.0 do not know rdb-only: they then start streaming commands
            // after the RDB, which is never read.
            if let Reply::Error(e) = c.raw_call(&[b"REPLCONF", opt.as_bytes(), val.as_bytes()])? {
                if e.starts_with("NOPERM") || e.starts_with("NOAUTH") {
                    return Err(command_error(&format!("REPLCONF {opt}"), &c.addr, &e));
                }
                tracing::debug!(addr = %c.addr, "REPLCONF {opt} {val}: {e}");
            }
        }
        c.send(&[b"PSYNC", b"?", b"-1"])?;
        let header = read_sync_header(&mut c)?;
        let after = parse_keyspace(&ctl.info("keyspace")?);
        drop(ctl);

        let m = &self.manifest;
        m.set("started_at", started_at);
        set_keys(m, "keys", "expires", &before);
        let counts = |k: &BTreeMap<u32, DbKeys>| {
            k.iter()
                .map(|(d, k)| (*d, k.keys))
                .collect::<BTreeMap<_, _>>()
        };
        if counts(&after) != counts(&before) {
            m.set("keys_after_sync_start", keys_json(&after, |d| d.keys));
        }
        match (header.offset, &header.replid) {
            (Some(off), Some(id)) => {
                m.set("replication_offset", off);
                m.set("replication_id", id.clone());
            }
            _ => {
                // SYNC gives no position: the one just before is the best there is.
                if let Some(off) = info_field(&replication, "master_repl_offset")
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    m.set("replication_offset", off);
                    m.set("replication_offset_from", "INFO replication before SYNC");
                }
                if let Some(id) = info_field(&replication, "master_replid") {
                    m.set("replication_id", id);
                }
            }
        }
        m.set(
            "transfer",
            match header.framing {
                Framing::Bulk { .. } => "disk",
                Framing::Mark { .. } => "diskless",
            },
        );
        tracing::info!(addr = %c.addr, "redis sync started");
        Ok(Transfer {
            conn: c,
            framing: header.framing,
            check: RdbCheck::default(),
            started,
        })
    }
}

/// Says what the first seconds of a sync wait for: a server with diskless replication holds
/// every new sync back by `repl-diskless-sync-delay` (5 s by default) so that more replicas
/// can share one fork. Nothing is changed on the server; a user without `CONFIG` rights just
/// does not get the notice.
fn announce_diskless_delay(ctl: &mut Conn) {
    let mut get = |name: &str| match ctl.raw_call(&[b"CONFIG", b"GET", name.as_bytes()]) {
        Ok(Reply::Array(v)) => match v.get(1) {
            Some(Reply::Bulk(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        },
        _ => None,
    };
    let diskless = get("repl-diskless-sync").is_some_and(|v| v == "yes");
    let delay: u64 = get("repl-diskless-sync-delay")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if diskless && delay > 0 {
        tracing::info!(
            addr = %ctl.addr,
            "waiting {delay} s for redis to start the sync: with repl-diskless-sync the server \
             waits repl-diskless-sync-delay ({delay} s) for other replicas before it forks"
        );
    }
}

struct SyncHeader {
    offset: Option<u64>,
    replid: Option<String>,
    framing: Framing,
}

/// Reads what comes before the payload: keepalive newlines, `+FULLRESYNC <replid> <offset>`
/// (PSYNC), then `$<len>` or `$EOF:<mark>`. Falls back to SYNC if PSYNC is unknown.
fn read_sync_header(c: &mut Conn) -> Result<SyncHeader, String> {
    let mut offset = None;
    let mut replid = None;
    let mut command = "PSYNC";
    loop {
        let line = read_line(c).map_err(|e| {
            let mut m = c.io_err(e, &format!("waiting for the RDB after {command}"));
            m.push_str(" (the server's fork or BGSAVE may have failed: see its log)");
            m
        })?;
        let text = String::from_utf8_lossy(&line).into_owned();
        let Some(&first) = line.first() else {
            continue; // keepalive while the server prepares the RDB
        };
        match first {
            b'+' => {
                let mut parts = text[1..].split_whitespace();
                match parts.next() {
                    Some("FULLRESYNC") => {
                        replid = parts.next().map(str::to_string);
                        offset = parts.next().and_then(|o| o.parse().ok());
                    }
                    _ => {
                        return Err(format!(
                            "unexpected reply to {command} from redis at {}: {text}",
                            c.addr
                        ))
                    }
                }
            }
            b'-' if command == "PSYNC" && text.to_ascii_lowercase().contains("unknown command") => {
                command = "SYNC";
                c.send(&[b"SYNC"])?;
            }
            b'-' => return Err(command_error(command, &c.addr, &text[1..])),
            b'$' => {
                if let Some(mark) = text.strip_prefix("$EOF:") {
                    let mark: [u8; EOF_MARK_LEN] = mark
                        .as_bytes()
                        .get(..EOF_MARK_LEN)
                        .and_then(|m| m.try_into().ok())
                        .ok_or_else(|| {
                            format!("redis at {} sent a bad EOF mark: {text:?}", c.addr)
                        })?;
                    return Ok(SyncHeader {
                        offset,
                        replid,
                        framing: Framing::Mark { mark, found: false },
                    });
                }
                let total: u64 = text[1..]
                    .parse()
                    .map_err(|_| format!("redis at {} sent a bad RDB length: {text:?}", c.addr))?;
                return Ok(SyncHeader {
                    offset,
                    replid,
                    framing: Framing::Bulk {
                        remaining: total,
                        total,
                    },
                });
            }
            _ => {
                return Err(format!(
                    "unexpected reply to {command} from redis at {}: {:?}",
                    c.addr,
                    text.chars().take(80).collect::<String>()
                ))
            }
        }
    }
}

impl Transfer {
    /// Copies payload bytes into `out`; 0 once the payload is complete.
    fn read_payload(&mut self, out: &mut [u8]) -> Result<usize, String> {
        let got = self.check.bytes;
        let c = &mut self.conn;
        match &mut self.framing {
            Framing::Bulk { remaining, total } => {
                if *remaining == 0 || out.is_empty() {
                    return Ok(0);
                }
                let want = out
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                let n = loop {
                    match c.read(&mut out[..want]) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r.map_err(|e| c.io_err(e, "reading the RDB"))?,
                    }
                };
                if n == 0 {
                    return Err(format!(
                        "redis at {} closed the connection after {got} of {total} bytes of the RDB",
                        c.addr
                    ));
                }
                *remaining -= n as u64;
                Ok(n)
            }
            Framing::Mark { mark, found } => loop {
                // The buffer always ends with the last bytes received (reading the header may
                // already have pulled in the whole payload).
                if !*found
                    && c.end - c.start >= EOF_MARK_LEN
                    && c.buf[c.end - EOF_MARK_LEN..c.end] == mark[..]
                {
                    *found = true;
                    c.end -= EOF_MARK_LEN;
                }
                let avail = c.end - c.start;
                let releasable = if *found {
                    avail
                } else {
                    avail.saturating_sub(EOF_MARK_LEN)
                };
                if releasable > 0 && !out.is_empty() {
                    let n = releasable.min(out.len());
                    out[..n].copy_from_slice(&c.buf[c.start..c.start + n]);
                    c.start += n;
                    return Ok(n);
                }
                if *found || out.is_empty() {
                    return Ok(0);
                }
                let n = loop {
                    match c.fill_more() {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r.map_err(|e| c.io_err(e, "reading the RDB"))?,
                    }
                };
                if n == 0 {
                    return Err(format!(
                        "redis at {} closed the connection after {} bytes of the RDB, before its \
                         end mark (the server's fork may have failed: see its log)",
                        c.addr,
                        got + (c.end - c.start) as u64
                    ));
                }
            },
        }
    }
}

impl Read for SyncReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if matches!(self.state, SyncState::Pending) {
            match self.start() {
                Ok(t) => self.state = SyncState::Streaming(Box::new(t)),
                Err(e) => return Err(self.fail(e)),
            }
        }
        let t = match &mut self.state {
            SyncState::Streaming(t) => t,
            SyncState::Done => return Ok(0),
            SyncState::Failed => return Err(io::Error::other("the Redis sync failed")),
            SyncState::Pending => unreachable!("started above"),
        };
        match t.read_payload(buf) {
            Ok(0) if buf.is_empty() => Ok(0),
            Ok(0) => {
                let secs = t.started.elapsed().as_secs_f64();
                let verdict = t.check.verify();
                let addr = t.conn.addr.clone();
                tracing::info!(addr = %addr, bytes = t.check.bytes, secs, "redis sync done");
                match verdict {
                    Ok(summary) => {
                        let mut o = self.shared.lock();
                        o.bytes = summary.bytes;
                        o.done = Some((summary, secs));
                        drop(o);
                        self.state = SyncState::Done;
                        Ok(0)
                    }
                    Err(e) => {
                        Err(self.fail(format!("the RDB from redis at {addr} is damaged: {e}")))
                    }
                }
            }
            Ok(n) => {
                t.check.update(&buf[..n]);
                Ok(n)
            }
            Err(e) => {
                let bytes = t.check.bytes;
                self.shared.lock().bytes = bytes;
                Err(self.fail(e))
            }
        }
    }
}

impl Drop for SyncReader {
    fn drop(&mut self) {
        if let SyncState::Streaming(t) = &self.state {
            self.shared.lock().bytes = t.check.bytes;
        }
    }
}

fn finish_backup(shared: &Mutex<Outcome>, manifest: &Manifest) -> Result<(), String> {
    let o = shared.lock();
    if let Some(e) = &o.error {
        return Err(e.clone());
    }
    let Some((s, secs)) = &o.done else {
        return Err(format!(
            "the RDB stream was not read to its end ({} bytes read)",
            o.bytes
        ));
    };
    manifest.set("rdb_bytes", s.bytes);
    manifest.set("rdb_version", s.version);
    manifest.set("rdb_crc64", format!("{:016x}", s.crc));
    if s.crc == 0 {
        manifest.set(
            "rdb_checksum",
            "disabled on the server (rdbchecksum no): the RDB could not be verified",
        );
    }
    manifest.set("duration_seconds", (secs * 1000.0).round() / 1000.0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Restore: a scratch server
// ---------------------------------------------------------------------------------------------

/// A temporary `redis-server` on a free loopback port, loaded from an RDB file; killed when
/// dropped unless [`ScratchServer::shutdown`] stopped it.
pub struct ScratchServer {
    child: Option<Child>,
    registered: Option<crate::scratch::Registration>,
    port: u16,
    rdb: PathBuf,
    log: Arc<Mutex<VecDeque<String>>>,
    timeout: Duration,
    /// `redis_version` of the scratch server.
    pub version: String,
}

fn free_port() -> Result<u16, String> {
    crate::scratch::free_port().map_err(|e| format!("finding a free port: {e}"))
}

fn collect_log(r: impl Read + Send + 'static, log: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in io::BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let mut l = log.lock();
            l.push_back(line);
            if l.len() > 40 {
                l.pop_front();
            }
        }
    });
}

enum StartFailure {
    PortTaken,
    Fatal(String),
}

impl ScratchServer {
    /// Starts `redis-server` with `rdb`'s directory as its data dir and `rdb` as its dump
    /// file, no persistence, and `databases` databases; waits until the dataset is loaded
    /// (`timeout` bounds the wait for the server to answer, not the loading itself).
    pub fn start(rdb: &Path, databases: u32, timeout: Duration) -> Result<ScratchServer, String> {
        let rdb = rdb
            .canonicalize()
            .map_err(|e| format!("{}: {e}", rdb.display()))?;
        let (Some(dir), Some(file)) = (rdb.parent(), rdb.file_name()) else {
            return Err(format!("{}: not a file path", rdb.display()));
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(dir)
                .arg("--dbfilename")
                .arg(file)
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--databases", &databases.to_string(), "--logfile", ""])
                .args(["--protected-mode", "yes"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| {
                    format!("starting redis-server: {e} (is it installed and on PATH?)")
                })?;
            let log = Arc::new(Mutex::new(VecDeque::new()));
            const PIPED: &str = "stdout and stderr of a child just spawned with Stdio::piped()";
            collect_log(child.stdout.take().expect(PIPED), Arc::clone(&log));
            collect_log(child.stderr.take().expect(PIPED), Arc::clone(&log));
            let registered = crate::scratch::register_pid(
                format!("scratch redis-server on port {port}"),
                child.id(),
            );
            let mut server = ScratchServer {
                child: Some(child),
                registered: Some(registered),
                port,
                rdb: rdb.clone(),
                log,
                timeout,
                version: String::new(),
            };
            match server.wait_loaded() {
                Ok(()) => return Ok(server),
                Err(StartFailure::PortTaken) if attempt < 5 => continue,
                Err(StartFailure::PortTaken) => {
                    return Err(format!(
                        "redis-server could not get a free port: {}",
                        server.log_tail()
                    ))
                }
                Err(StartFailure::Fatal(e)) => return Err(e),
            }
        }
    }

    fn log_tail(&self) -> String {
        let l = self.log.lock();
        let lines: Vec<&str> = l.iter().rev().take(15).map(String::as_str).collect();
        if lines.is_empty() {
            "(no output)".into()
        } else {
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        }
    }

    fn target(&self) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: self.port,
            user: None,
            password: None,
        }
    }

    fn wait_loaded(&mut self) -> Result<(), StartFailure> {
        let t0 = Instant::now();
        let mut last_note = Instant::now();
        let target = self.target();
        let quick = Duration::from_secs(2).min(self.timeout);
        let mut answered = false;
        loop {
            let child = self.child.as_mut().expect(
                "wait_loaded runs on a server just started, and returns whenever it drops the child",
            );
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                // The log threads may still be draining the pipes.
                std::thread::sleep(Duration::from_millis(100));
                let tail = self.log_tail();
                if tail.contains("Address already in use") {
                    return Err(StartFailure::PortTaken);
                }
                return Err(StartFailure::Fatal(format!(
                    "redis-server exited ({st}) while loading {}: {tail}",
                    self.rdb.display()
                )));
            }
            let pid = child.id();
            if let Ok(mut c) = Conn::open(&target, quick, COMMAND_BUFFER) {
                match c.raw_call(&[b"INFO", b"server"]) {
                    Ok(Reply::Error(e)) if e.starts_with("LOADING") => {
                        answered = true;
                        if last_note.elapsed() > Duration::from_secs(10) {
                            tracing::info!(
                                "scratch redis-server still loading {}",
                                self.rdb.display()
                            );
                            last_note = Instant::now();
                        }
                    }
                    Ok(Reply::Bulk(info)) => {
                        let info = String::from_utf8_lossy(&info).into_owned();
                        if info_field(&info, "process_id").and_then(|p| p.parse::<u32>().ok())
                            != Some(pid)
                        {
                            // Someone else listens there: ours failed to bind.
                            self.kill();
                            return Err(StartFailure::PortTaken);
                        }
                        self.version = info_field(&info, "redis_version")
                            .unwrap_or("?")
                            .to_string();
                        answered = true;
                        let loading = c
                            .info("persistence")
                            .ok()
                            .and_then(|p| info_field(&p, "loading").map(|v| v == "1"));
                        if loading == Some(false) {
                            return Ok(());
                        }
                    }
                    Ok(other) => {
                        self.kill();
                        return Err(StartFailure::Fatal(format!(
                            "scratch redis-server on port {}: unexpected reply to INFO: {other:?}",
                            self.port
                        )));
                    }
                    Err(_) => {}
                }
            }
            if !answered && t0.elapsed() > self.timeout {
                let tail = self.log_tail();
                self.kill();
                return Err(StartFailure::Fatal(format!(
                    "redis-server did not answer on 127.0.0.1:{} within {} s: {tail}",
                    self.port,
                    secs_text(self.timeout)
                )));
            }
            std::thread::sleep(Duration::from_millis(if answered { 200 } else { 50 }));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A client.
    pub fn client(&self) -> Result<Client, String> {
        Client::connect(&self.url(), self.timeout)
    }

    /// Key counts, and what the load reported.
    pub fn count_keys(&self) -> Result<LoadedKeys, String> {
        let mut c = self.client()?;
        let per_db = parse_keyspace(&c.info("keyspace")?);
        let persistence = c.info("persistence")?;
        let num = |f| info_field(&persistence, f).and_then(|v| v.parse::<u64>().ok());
        Ok(LoadedKeys {
            per_db,
            loaded: num("rdb_last_load_keys_loaded"),
            expired: num("rdb_last_load_keys_expired"),
        })
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.registered = None;
    }

    /// `SHUTDOWN NOSAVE` and waits for the process to exit (kills it after the timeout).
    pub fn shutdown(mut self) -> Result<(), String> {
        let sent = Conn::open(&self.target(), self.timeout, COMMAND_BUFFER)
            .and_then(|mut c| c.send(&[b"SHUTDOWN", b"NOSAVE"]).map(|_| c))
            .map(|mut c| {
                // The server closes the connection as it exits.
                let _ = parse_reply(&mut c);
            });
        let deadline = Instant::now() + self.timeout;
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => {
                    self.child = None;
                    self.registered = None;
                    return Ok(());
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    self.kill();
                    return Err(format!(
                        "the scratch redis-server did not stop{}; it was killed",
                        sent.err().map(|e| format!(" ({e})")).unwrap_or_default()
                    ));
                }
            }
        }
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crc64_bitwise(mut crc: u64, data: &[u8]) -> u64 {
        for &b in data {
            crc ^= u64::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ CRC64_POLY
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn redis_crc64_known_vector() {
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        assert_eq!(crc64_bitwise(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        assert_eq!(crc64(0, b""), 0);
    }

    #[test]
    fn redis_crc64_tables_match_bitwise_and_are_incremental() {
        let data = pseudo_random(10_000, 7);
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 10_000] {
            assert_eq!(
                crc64(0, &data[..len]),
                crc64_bitwise(0, &data[..len]),
                "len {len}"
            );
        }
        let whole = crc64(0, &data);
        for split in [1, 3, 8, 13, 4096, 9999] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc64(crc64(0, a), b), whole, "split {split}");
        }
    }

    /// A small RDB-shaped file with a correct trailer.
    fn fake_rdb(body_len: usize, seed: u64) -> Vec<u8> {
        let mut v = b"REDIS0010".to_vec();
        v.extend(pseudo_random(body_len, seed));
        v.push(RDB_OPCODE_EOF);
        let crc = crc64(0, &v);
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    fn check_in_pieces(data: &[u8], pieces: &[usize]) -> Result<RdbSummary, String> {
        let mut c = RdbCheck::default();
        let mut rest = data;
        let mut i = 0;
        while !rest.is_empty() {
            let n = pieces[i % pieces.len()].min(rest.len());
            c.update(&rest[..n]);
            rest = &rest[n..];
            i += 1;
        }
        c.verify()
    }

    #[test]
    fn redis_rdb_check_any_chunking() {
        let rdb = fake_rdb(5000, 3);
        let want = u64::from_le_bytes(rdb[rdb.len() - 8..].try_into().unwrap());
        for pieces in [
            &[1usize][..],
            &[3],
            &[7, 1, 9],
            &[8],
            &[4096],
            &[100_000],
            &[2, 11, 8, 5],
        ] {
            let s = check_in_pieces(&rdb, pieces).unwrap();
            assert_eq!(s.crc, want);
            assert_eq!(s.bytes, rdb.len() as u64);
            assert_eq!(s.version, 10);
        }
    }

    #[test]
    fn redis_rdb_check_rejects_damage() {
        let rdb = fake_rdb(2000, 5);
        let mut flipped = rdb.clone();
        flipped[1000] ^= 0x10;
        let e = check_in_pieces(&flipped, &[333]).unwrap_err();
        assert!(e.contains("CRC-64 mismatch"), "{e}");
        let e = check_in_pieces(&rdb[..rdb.len() - 100], &[64]).unwrap_err();
        assert!(e.contains("EOF opcode") || e.contains("CRC"), "{e}");
        let mut not_rdb = rdb.clone();
        not_rdb[..5].copy_from_slice(b"HELLO");
        let e = check_in_pieces(&not_rdb, &[64]).unwrap_err();
        assert!(e.contains("REDIS magic"), "{e}");
        let e = check_in_pieces(b"REDIS", &[64]).unwrap_err();
        assert!(e.contains("REDIS magic"), "{e}");
        // A zero trailer means the server does not checksum: accepted.
        let mut unchecked = rdb.clone();
        let n = unchecked.len();
        unchecked[n - 8..].fill(0);
        assert_eq!(check_in_pieces(&unchecked, &[100]).unwrap().crc, 0);
    }

    #[test]
    fn redis_verifying_reader_fails_at_the_end() {
        let mut rdb = fake_rdb(3000, 9);
        let mut r = VerifyingReader::new(&rdb[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert!(r.summary.is_some());
        rdb[20] ^= 1;
        let mut r = VerifyingReader::new(&rdb[..]);
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(r.error.unwrap().contains("CRC-64"));
    }

    fn parse_all(input: &[u8]) -> io::Result<Vec<Reply>> {
        let mut r = io::BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        while !r.fill_buf()?.is_empty() {
            out.push(parse_reply(&mut r)?);
        }
        Ok(out)
    }

    #[test]
    fn redis_resp_parsing() {
        let got = parse_all(
            b"+OK\r\n-ERR wrong\r\n:-42\r\n$5\r\nhe\r\no\r\n$0\r\n\r\n$-1\r\n*-1\r\n\
              *3\r\n:1\r\n*2\r\n+a\r\n$1\r\n\x00\r\n$-1\r\n*0\r\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                Reply::Simple("OK".into()),
                Reply::Error("ERR wrong".into()),
                Reply::Integer(-42),
                Reply::Bulk(b"he\r\no".to_vec()),
                Reply::Bulk(Vec::new()),
                Reply::Nil,
                Reply::Nil,
                Reply::Array(vec![
                    Reply::Integer(1),
                    Reply::Array(vec![Reply::Simple("a".into()), Reply::Bulk(vec![0])]),
                    Reply::Nil,
                ]),
                Reply::Array(vec![]),
            ]
        );
        let big: Vec<u8> = pseudo_random(100_000, 1);
        let mut wire = format!("${}\r\n", big.len()).into_bytes();
        wire.extend_from_slice(&big);
        wire.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&wire).unwrap(), vec![Reply::Bulk(big)]);
    }

    #[test]
    fn redis_resp_parsing_errors() {
        for bad in [
            &b"$5\r\nab"[..],
            b"$3\r\nabcd\r\n",
            b"?x\r\n",
            b":12x\r\n",
            b"$-2\r\n",
            b"*1\r\n",
            b"\r\n",
        ] {
            assert!(
                parse_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "*1\r\n".repeat(40) + ":1\r\n";
        assert!(parse_all(deep.as_bytes()).is_err());
    }

    #[test]
    fn redis_encode_command() {
        assert_eq!(
            encode_command(&[b"SET", b"k", b"a\r\nb"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"
        );
        assert_eq!(command_name(&[b"auth", b"secret"]), "AUTH");
        assert_eq!(command_name(&[b"info", b"keyspace"]), "INFO keyspace");
    }

    #[test]
    fn redis_url_parsing() {
        let t = parse_url("redis://127.0.0.1:6379/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.user, t.password),
            ("127.0.0.1", 6379, None, None)
        );
        let t = parse_url("redis://:p%40ss:w@db.example:7000").unwrap();
        assert_eq!(t.password.as_deref(), Some("p@ss:w"));
        assert_eq!(t.user, None);
        assert_eq!(t.describe(), "redis://db.example:7000");
        let t = parse_url("REDIS://backup:pw@[::1]:6380/3").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 6380));
        assert_eq!(t.user.as_deref(), Some("backup"));
        assert_eq!(t.describe(), "redis://backup@[::1]:6380");
        assert_eq!(parse_url("redis://h").unwrap().port, 6379);
        for (bad, what) in [
            ("rediss://h", "TLS"),
            ("http://h", "scheme"),
            ("h:6379", "redis://"),
            ("redis://user@h", "no password"),
            ("redis://:@h", "empty password"),
            ("redis://h:x", "port"),
            ("redis://h:0", "port"),
            ("redis://:pw@", "no host"),
            ("redis://h/abc", "database"),
            ("redis://h/?db=1", "query"),
            ("redis://:%zz@h", "%-escape"),
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(what), "{bad}: {e}");
            assert!(!e.contains("pw"), "{bad}: {e} leaks the password");
        }
    }

    #[test]
    fn redis_config_deserializes() {
        let cfg: Config =
            toml::from_str("url = \"redis://:secret@localhost:6390/\"\ntimeout = 5").unwrap();
        let r = Redis::new("cache", cfg).unwrap();
        assert_eq!(r.describe(), "redis://localhost:6390");
        assert_eq!(r.timeout, Duration::from_secs(5));
        let e = toml::from_str::<Config>("url = \"redis://:secret@h\"\nport = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<Config>("url = \"rediss://:secret@h\"").unwrap_err();
        // lib.rs reports e.message(), which never holds the URL.
        assert!(
            e.message().contains("TLS") && !e.message().contains("secret"),
            "{e}"
        );
        let cfg: Config = toml::from_str("url = \"redis://h\"\ntimeout = 0").unwrap();
        assert!(Redis::new("x", cfg).is_err());
    }

    #[test]
    fn redis_keyspace_and_comparison() {
        let ks = parse_keyspace(
            "# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=5\r\ndb12:keys=3,expires=0,avg_ttl=0\r\n",
        );
        assert_eq!(
            ks[&0],
            DbKeys {
                keys: 10,
                expires: 2
            }
        );
        assert_eq!(
            ks[&12],
            DbKeys {
                keys: 3,
                expires: 0
            }
        );
        let m = json!({"keys": {"db0": 10, "db12": 3}, "expires": {"db0": 2, "db12": 0}});
        let exp = ExpectedKeys::from_manifest(&m).unwrap();
        assert_eq!(exp.databases_needed(), 16);
        let loaded = |k0: u64, k12: u64, expired: Option<u64>| LoadedKeys {
            per_db: [
                (
                    0,
                    DbKeys {
                        keys: k0,
                        expires: 0,
                    },
                ),
                (
                    12,
                    DbKeys {
                        keys: k12,
                        expires: 0,
                    },
                ),
            ]
            .into_iter()
            .filter(|(_, k)| k.keys > 0)
            .collect(),
            loaded: expired.map(|_| k0 + k12),
            expired,
        };
        assert_eq!(
            compare_keys(&exp, &loaded(10, 3, Some(0))).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            compare_keys(&exp, &loaded(10, 3, None)).unwrap(),
            Vec::<String>::new()
        );
        // Two keys with a TTL expired before the load.
        let notes = compare_keys(&exp, &loaded(8, 3, Some(2))).unwrap();
        assert!(notes.iter().any(|n| n.contains("TTL")), "{notes:?}");
        assert!(compare_keys(&exp, &loaded(8, 3, None)).is_ok());
        // More missing than had a TTL, or one missing that had none.
        assert!(compare_keys(&exp, &loaded(7, 3, None)).is_err());
        assert!(compare_keys(&exp, &loaded(10, 2, Some(0))).is_err());
        assert!(compare_keys(&exp, &loaded(11, 3, None)).is_err());
        // Loaded + expired must add up to what the backup saw.
        assert!(compare_keys(&exp, &loaded(8, 3, Some(0))).is_err());
        let e = compare_keys(&exp, &loaded(10, 0, None)).unwrap_err();
        assert!(e.contains("db12: 0 keys, the backup recorded 3"), "{e}");
        // Counts that moved during the backup bound the result.
        let m = json!({"keys": {"db40": 10}, "expires": {}, "keys_after_sync_start": {"db40": 14}});
        let exp = ExpectedKeys::from_manifest(&m).unwrap();
        assert_eq!(exp.databases_needed(), 41);
        let one = |n: u64| LoadedKeys {
            per_db: [(
                40,
                DbKeys {
                    keys: n,
                    expires: 0,
                },
            )]
            .into_iter()
            .collect(),
            loaded: Some(n),
            expired: Some(0),
        };
        assert!(compare_keys(&exp, &one(12)).is_ok());
        assert!(compare_keys(&exp, &one(15)).is_err());
        assert!(compare_keys(&exp, &one(9)).is_err());
    }

    // --- The sync against a scripted server -----------------------------------------------

    /// A one-shot fake Redis: answers the handshake commands, then writes `payload` in small
    /// pieces after PSYNC.
    fn fake_server(payload: Vec<u8>, piece: usize) -> (u16, std::thread::JoinHandle<()>) {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            // Connections: backup() check, control, sync.
            for conn in l.incoming().take(3) {
                let mut s = conn.unwrap();
                let payload = payload.clone();
                std::thread::spawn(move || {
                    let mut r = io::BufReader::new(s.try_clone().unwrap());
                    while let Ok(Reply::Array(args)) = parse_reply(&mut r) {
                        let cmd = args[0].text().unwrap().to_ascii_uppercase();
                        let out: Vec<u8> = match cmd.as_str() {
                            "PING" => b"+PONG\r\n".to_vec(),
                            "REPLCONF" => b"+OK\r\n".to_vec(),
                            "INFO" => {
                                let body = "# x\r\nredis_version:9.9.9\r\nrole:master\r\n\
                                            master_repl_offset:77\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n";
                                format!("${}\r\n{body}\r\n", body.len()).into_bytes()
                            }
                            "PSYNC" => {
                                s.write_all(b"\n\n+FULLRESYNC abc 1234\r\n\n").unwrap();
                                for p in payload.chunks(piece) {
                                    if s.write_all(p).is_err() {
                                        return;
                                    }
                                    s.flush().unwrap();
                                }
                                return;
                            }
                            _ => b"-ERR unknown\r\n".to_vec(),
                        };
                        s.write_all(&out).unwrap();
                    }
                });
            }
        });
        (port, h)
    }

    type Run = (
        Result<Vec<u8>, io::Error>,
        Result<(), String>,
        Map<String, Value>,
    );

    fn run_backup(port: u16) -> Run {
        let cfg = Config {
            url: EnvString(format!("redis://127.0.0.1:{port}/")),
            timeout: Some(5),
        };
        let r = Redis::new("t", cfg).unwrap();
        let manifest = Manifest::default();
        let BackupPlan::Streams(mut streams) = r.backup(&manifest).unwrap() else {
            panic!("streams expected")
        };
        let s = streams.pop().unwrap();
        assert_eq!(s.filename, "dump.rdb");
        let mut reader = s.reader;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1000];
        let read = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        drop(reader);
        let fin = (s.finish)();
        (read, fin, manifest.snapshot())
    }

    #[test]
    fn redis_sync_eof_mark_framing() {
        let rdb = fake_rdb(50_000, 11);
        let mark = "0123456789abcdef0123456789abcdef01234567";
        let mut wire = format!("$EOF:{mark}\r\n").into_bytes();
        wire.extend_from_slice(&rdb);
        wire.extend_from_slice(mark.as_bytes());
        let (port, _h) = fake_server(wire, 777);
        let (read, fin, m) = run_backup(port);
        assert_eq!(read.unwrap(), rdb);
        fin.unwrap();
        assert_eq!(m["replication_offset"], 1234);
        assert_eq!(m["replication_id"], "abc");
        assert_eq!(m["transfer"], "diskless");
        assert_eq!(m["rdb_bytes"], rdb.len() as u64);
        assert_eq!(m["redis_version"], "9.9.9");
        assert_eq!(m["keys"], json!({"db0": 2}));
        let crc = u64::from_le_bytes(rdb[rdb.len() - 8..].try_into().unwrap());
        assert_eq!(m["rdb_crc64"], format!("{crc:016x}"));
    }

    #[test]
    fn redis_sync_bulk_framing_and_truncation() {
        let rdb = fake_rdb(30_000, 12);
        let mut wire = format!("${}\r\n", rdb.len()).into_bytes();
        wire.extend_from_slice(&rdb);
        wire.extend_from_slice(b"*1\r\n$4\r\nPING\r\n"); // the replication stream follows
        let (port, _h) = fake_server(wire, 5000);
        let (read, fin, m) = run_backup(port);
        assert_eq!(read.unwrap(), rdb);
        fin.unwrap();
        assert_eq!(m["transfer"], "disk");

        let mut wire = format!("${}\r\n", rdb.len()).into_bytes();
        wire.extend_from_slice(&rdb[..20_000]);
        let (port, _h) = fake_server(wire, 5000);
        let (read, fin, _) = run_backup(port);
        assert!(read.is_err());
        let e = fin.unwrap_err();
        assert!(e.contains("closed the connection after 20000 of"), "{e}");
    }

    #[test]
    fn redis_sync_detects_a_bad_checksum_and_a_missing_mark() {
        let mut rdb = fake_rdb(10_000, 13);
        rdb[500] ^= 4;
        let mark = "x".repeat(40);
        let mut wire = format!("$EOF:{mark}\r\n").into_bytes();
        wire.extend_from_slice(&rdb);
        wire.extend_from_slice(mark.as_bytes());
        let (port, _h) = fake_server(wire, 1 << 20);
        let (read, fin, m) = run_backup(port);
        assert!(read.is_err());
        let e = fin.unwrap_err();
        assert!(e.contains("CRC-64 mismatch"), "{e}");
        assert!(!m.contains_key("rdb_bytes"));

        let rdb = fake_rdb(10_000, 14);
        let mut wire = format!("$EOF:{mark}\r\n").into_bytes();
        wire.extend_from_slice(&rdb);
        let (port, _h) = fake_server(wire, 999);
        let (_, fin, _) = run_backup(port);
        let e = fin.unwrap_err();
        assert!(e.contains("before its end mark"), "{e}");
    }
}
