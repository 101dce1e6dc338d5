//! Loading a backup into a running Redis (`coffer restore --source NAME --to-url URL`).
//!
//! The RDB is first loaded by a scratch `redis-server` (which checks it and knows every
//! encoding), then each key is copied over the protocol: `DUMP` and `PTTL` from the scratch
//! server, `RESTORE key ttl payload` into the target, a thousand keys per round trip. That is
//! the target's own serialization, so every type, encoding and module value comes back
//! exactly, with its remaining time to live; a key that expired on the way is left out.
//!
//! A target that holds keys is refused unless `--clean` asks for it to be emptied first
//! (`FLUSHALL`): merging a backup into live data silently would mix two states. Afterwards
//! the target's key counts are compared with the scratch server's.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    describe_counts, parse_keyspace, parse_reply, Conn, DbKeys, Reply, ScratchServer, Target,
    COMMAND_BUFFER, STREAM_BUFFER,
};

/// Keys per `SCAN` and per pipelined round trip.
const BATCH: usize = 1000;

/// What the load did.
pub(super) struct Loaded {
    /// Keys restored, per database.
    pub restored: BTreeMap<u32, u64>,
    /// Keys that expired between the scan and their DUMP.
    pub expired: u64,
    /// The target's key counts afterwards.
    pub after: BTreeMap<u32, DbKeys>,
    /// Whether the target was emptied first.
    pub flushed: u64,
}

/// Why a load did not happen or stopped.
pub(super) enum LoadError {
    /// The target holds keys and `--clean` was not given (nothing was changed).
    NotEmpty(String),
    /// Anything else.
    Failed(String),
}

/// Copies every key of `scratch` into `target`.
pub(super) fn load(
    scratch: &ScratchServer,
    target: &Target,
    timeout: Duration,
    clean: bool,
) -> Result<Loaded, LoadError> {
    let fail = LoadError::Failed;
    let mut dst = Conn::connect_authed(target, timeout, COMMAND_BUFFER).map_err(fail)?;
    let before = parse_keyspace(&dst.info("keyspace").map_err(fail)?);
    let held: u64 = before.values().map(|k| k.keys).sum();
    let mut flushed = 0;
    if held > 0 {
        if !clean {
            return Err(LoadError::NotEmpty(format!(
                "redis at {} is not empty ({}): nothing was changed; pass --clean to empty it \
                 first (FLUSHALL) and load the backup",
                dst.addr,
                describe_counts(&before)
            )));
        }
        dst.call(&[b"FLUSHALL", b"SYNC"]).map_err(fail)?;
        flushed = held;
    }
    let mut src = Conn::connect_authed(&scratch.target(), timeout, STREAM_BUFFER).map_err(fail)?;
    let dbs: Vec<u32> = parse_keyspace(&src.info("keyspace").map_err(fail)?)
        .into_keys()
        .collect();
    let mut out = Loaded {
        restored: BTreeMap::new(),
        expired: 0,
        after: BTreeMap::new(),
        flushed,
    };
    for db in dbs {
        let n = db.to_string();
        src.call(&[b"SELECT", n.as_bytes()]).map_err(fail)?;
        dst.call(&[b"SELECT", n.as_bytes()]).map_err(|e| {
            fail(format!(
                "{e} (the backup has keys in db{db}: the target needs `databases` > {db})"
            ))
        })?;
        let mut cursor = b"0".to_vec();
        loop {
            let (next, keys) = scan(&mut src, &cursor).map_err(fail)?;
            let (restored, expired) =
                copy_batch(&mut src, &mut dst, &keys, &scratch.version).map_err(fail)?;
            *out.restored.entry(db).or_default() += restored;
            out.expired += expired;
            if next == b"0" {
                break;
            }
            cursor = next;
        }
    }
    out.after = parse_keyspace(&dst.info("keyspace").map_err(fail)?);
    Ok(out)
}

/// One `SCAN` step: the next cursor and the keys.
fn scan(c: &mut Conn, cursor: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    let count = BATCH.to_string();
    let r = c.call(&[b"SCAN", cursor, b"COUNT", count.as_bytes()])?;
    let bad = || format!("redis at {}: unexpected reply to SCAN: {r:?}", c.addr);
    let Reply::Array(parts) = &r else {
        return Err(bad());
    };
    match parts.as_slice() {
        [Reply::Bulk(next), Reply::Array(keys)] => Ok((
            next.clone(),
            keys.iter()
                .filter_map(|k| k.bytes().map(<[u8]>::to_vec))
                .collect(),
        )),
        _ => Err(bad()),
    }
}

/// Sends `commands` in one write and reads their replies.
fn pipeline(c: &mut Conn, commands: &[Vec<&[u8]>]) -> Result<Vec<Reply>, String> {
    let mut wire = Vec::new();
    for cmd in commands {
        wire.extend_from_slice(&super::encode_command(cmd));
    }
    std::io::Write::write_all(&mut c.sock, &wire)
        .map_err(|e| c.io_err(e, "sending a pipeline of commands"))?;
    let mut replies = Vec::with_capacity(commands.len());
    for _ in commands {
        replies.push(parse_reply(c).map_err(|e| c.io_err(e, "reading pipelined replies"))?);
    }
    Ok(replies)
}

/// DUMP + PTTL from `src`, RESTORE into `dst`; returns (restored, expired on the way).
fn copy_batch(
    src: &mut Conn,
    dst: &mut Conn,
    keys: &[Vec<u8>],
    scratch_version: &str,
) -> Result<(u64, u64), String> {
    if keys.is_empty() {
        return Ok((0, 0));
    }
    let reads: Vec<Vec<&[u8]>> = keys
        .iter()
        .flat_map(|k| [vec![&b"DUMP"[..], k], vec![&b"PTTL"[..], k]])
        .collect();
    let replies = pipeline(src, &reads)?;
    let mut ttls = Vec::new();
    let mut payloads = Vec::new();
    let mut kept = Vec::new();
    let mut expired = 0;
    for (k, pair) in keys.iter().zip(replies.chunks(2)) {
        match (&pair[0], &pair[1]) {
            (Reply::Bulk(payload), Reply::Integer(ttl)) if *ttl != -2 => {
                ttls.push((*ttl).max(0).to_string());
                payloads.push(payload);
                kept.push(k);
            }
            (Reply::Nil, _) | (_, Reply::Integer(-2)) => expired += 1,
            (Reply::Error(e), _) | (_, Reply::Error(e)) => {
                return Err(format!(
                    "DUMP of key {:?} failed at the scratch server: {e}",
                    String::from_utf8_lossy(k)
                ))
            }
            other => {
                return Err(format!(
                    "unexpected replies to DUMP/PTTL of key {:?}: {other:?}",
                    String::from_utf8_lossy(k)
                ))
            }
        }
    }
    let writes: Vec<Vec<&[u8]>> = kept
        .iter()
        .zip(&ttls)
        .zip(&payloads)
        .map(|((k, ttl), p)| vec![&b"RESTORE"[..], k.as_slice(), ttl.as_bytes(), p.as_slice()])
        .collect();
    let replies = pipeline(dst, &writes)?;
    for (k, r) in kept.iter().zip(&replies) {
        if let Reply::Error(e) = r {
            let hint = if e.contains("payload version") {
                format!(
                    " (the backup was re-serialized by redis-server {scratch_version}; the \
                     target runs an older Redis that cannot read it: restore with --target DIR \
                     and load dump.rdb there instead)"
                )
            } else if e.starts_with("BUSYKEY") {
                " (the key was written to the target during the load)".to_string()
            } else {
                String::new()
            };
            return Err(format!(
                "RESTORE of key {:?} failed at redis {}: {e}{hint}",
                String::from_utf8_lossy(k),
                dst.addr
            ));
        }
    }
    Ok((kept.len() as u64, expired))
}
