//! The line format: canonical serialization, MAC, parsing, and reading the last line.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::Mac;
use serde::{Deserialize, Serialize, Serializer};

use crate::AuditKey;

/// The longest line accepted (1 MiB). Longer lines are reported as malformed.
pub(crate) const MAX_LINE: usize = 1 << 20;

/// The `prev` of the first line.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// One audited event, as the caller describes it. The log adds `seq`, `prev` and `mac`.
///
/// `time` is written with millisecond precision. `details` must survive a JSON round trip
/// unchanged; [`crate::AuditLog::append`] normalizes it (e.g. `null` becomes "no details").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it happened (UTC).
    pub time: DateTime<Utc>,
    /// Who did it: a user name, `daemon`, ...
    pub actor: String,
    /// What was done: `backup`, `restore`, `delete`, `prune`, `key-change`, `ack`, `silence`,
    /// `config-reload`, ...
    pub action: String,
    /// What it was done to: a job, a snapshot, an alert, a file, ...
    pub target: String,
    /// How it ended: `success`, `failed`, `denied`, ...
    pub outcome: String,
    /// Anything else worth keeping, as a JSON value. Left out of the line when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl Entry {
    /// An entry stamped with the current time and no details.
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        outcome: impl Into<String>,
    ) -> Entry {
        Entry {
            time: Utc::now(),
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            outcome: outcome.into(),
            details: None,
        }
    }

    /// The same entry with `details`.
    pub fn with_details(mut self, details: serde_json::Value) -> Entry {
        self.details = Some(details);
        self
    }
}

/// The head of the chain: the `seq` and `mac` of the last line. Recorded outside the log (in
/// the catalog and, with each snapshot, in the repository) so that lines cut from the end can
/// be detected by [`crate::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Head {
    /// The last line's sequence number (the first line is 1).
    pub seq: u64,
    /// The last line's MAC, 64 lowercase hex digits.
    pub mac: String,
}

/// The MAC'd part of a line, in line order. Serializing it gives the canonical bytes.
#[derive(Serialize)]
pub(crate) struct Body<'a> {
    pub seq: u64,
    #[serde(serialize_with = "ser_time")]
    pub time: &'a DateTime<Utc>,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<&'a serde_json::Value>,
    pub prev: &'a str,
}

fn ser_time<S: Serializer>(t: &&DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// A line as parsed, before any check.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Stored {
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    #[serde(default)]
    pub details: Option<serde_json::Value>,
    pub prev: String,
    pub mac: String,
}

impl Stored {
    fn body(&self) -> Body<'_> {
        Body {
            seq: self.seq,
            time: &self.time,
            actor: &self.actor,
            action: &self.action,
            target: &self.target,
            outcome: &self.outcome,
            details: self.details.as_ref(),
            prev: &self.prev,
        }
    }
}

/// The line (without its newline) for `body`, with its MAC.
pub(crate) fn encode(key: &AuditKey, body: &Body<'_>) -> serde_json::Result<(Vec<u8>, [u8; 32])> {
    let mut line = serde_json::to_vec(body)?;
    let mut m = key.mac();
    m.update(&line);
    let mac: [u8; 32] = m.finalize().into_bytes().into();
    debug_assert_eq!(line.last(), Some(&b'}'));
    line.pop();
    line.extend_from_slice(b",\"mac\":\"");
    line.extend_from_slice(hex::encode(mac).as_bytes());
    line.extend_from_slice(b"\"}");
    Ok((line, mac))
}

/// A line that parsed, with the outcome of its checks.
pub(crate) struct Checked {
    pub seq: u64,
    pub prev: [u8; 32],
    pub mac: [u8; 32],
    /// The bytes are exactly the canonical serialization.
    pub canonical: bool,
    /// The MAC matches the (canonical) fields under the key.
    pub mac_ok: bool,
}

impl Checked {
    pub fn valid(&self) -> bool {
        self.canonical && self.mac_ok
    }
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    let lower_hex = s
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if s.len() != 64 || !lower_hex || hex::decode_to_slice(s, &mut out).is_err() {
        return Err(format!("\"{what}\" is not 64 lowercase hex digits"));
    }
    Ok(out)
}

/// Parses and checks one line (without its newline). `Err` when it is not an audit line at
/// all (not JSON, wrong fields, `prev`/`mac` not hex), so that it cannot be chained.
pub(crate) fn check(key: &AuditKey, line: &[u8]) -> Result<Checked, String> {
    let stored: Stored =
        serde_json::from_slice(line).map_err(|e| format!("not a valid audit line: {e}"))?;
    let prev = hex32(&stored.prev, "prev")?;
    let mac = hex32(&stored.mac, "mac")?;
    let body = serde_json::to_vec(&stored.body()).map_err(|e| e.to_string())?;
    let mut m = key.mac();
    m.update(&body);
    let mac_ok = m.verify_slice(&mac).is_ok();
    let mut expected = body;
    expected.pop();
    expected.extend_from_slice(b",\"mac\":\"");
    expected.extend_from_slice(hex::encode(mac).as_bytes());
    expected.extend_from_slice(b"\"}");
    let canonical = line == expected.as_slice();
    Ok(Checked {
        seq: stored.seq,
        prev,
        mac,
        canonical,
        mac_ok,
    })
}

/// The last line of a file, read backwards in blocks.
pub(crate) enum Tail {
    /// The file is empty.
    Empty,
    /// The last byte is not a newline: a write was interrupted (or the file was cut).
    Torn,
    /// The last line is longer than [`MAX_LINE`].
    TooLong,
    /// The last line, without its newline.
    Line(Vec<u8>),
}

const BLOCK: u64 = 8192;

/// Reads the last line of the first `len` bytes of `file`, without reading the rest.
pub(crate) fn read_tail(file: &File, len: u64) -> io::Result<Tail> {
    if len == 0 {
        return Ok(Tail::Empty);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    if last[0] != b'\n' {
        return Ok(Tail::Torn);
    }
    let end = len - 1;
    let mut pos = end;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        if end - pos > MAX_LINE as u64 {
            return Ok(Tail::TooLong);
        }
        if pos == 0 {
            break;
        }
        let start = pos.saturating_sub(BLOCK);
        let mut block = vec![0u8; (pos - start) as usize];
        file.read_exact_at(&mut block, start)?;
        if let Some(i) = block.iter().rposition(|&b| b == b'\n') {
            blocks.push(block.split_off(i + 1));
            break;
        }
        blocks.push(block);
        pos = start;
    }
    let mut line = Vec::with_capacity(blocks.iter().map(Vec::len).sum());
    for b in blocks.iter().rev() {
        line.extend_from_slice(b);
    }
    if line.len() > MAX_LINE {
        return Ok(Tail::TooLong);
    }
    Ok(Tail::Line(line))
}

/// An `flock` held on a file until dropped.
pub(crate) struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    /// Waits for a shared (`exclusive == false`) or exclusive lock on `file`.
    pub fn acquire(file: &'a File, exclusive: bool) -> io::Result<Flock<'a>> {
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: flock on a file descriptor owned by `file`, which outlives the lock.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(Flock(file));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release the lock anyway.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
