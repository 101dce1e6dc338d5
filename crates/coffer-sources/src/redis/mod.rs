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

mod conn;
mod counts;
mod load;
mod rdb;
mod resp;
mod scratch;
mod sync;

pub use conn::*;
pub use counts::*;
pub use rdb::*;
pub use resp::*;
pub use scratch::*;
use sync::*;

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
