//! Reading the log for people (`coffer audit show`): each line's fields with whether its own
//! MAC holds. Whether the lines still form one unbroken chain (nothing inserted, removed or
//! cut) is [`crate::verify`]'s question; `show` marks each line so that an altered one is
//! never displayed as if it were genuine.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::line::{self, Flock};
use crate::verify::{next_line, LineEnd};
use crate::{AuditError, AuditKey, Entry};

/// One line of the log as read.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    /// Its `seq`.
    pub seq: u64,
    /// Its fields.
    #[serde(flatten)]
    pub entry: Entry,
    /// Its MAC matches its canonical bytes under the key.
    pub valid: bool,
}

/// The log's lines at or after `since` (all with `None`), oldest first. Lines that are not
/// audit lines at all (not JSON) are skipped here and reported by [`crate::verify`].
pub fn read(
    path: &Path,
    key: &AuditKey,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Shown>, AuditError> {
    let io_err = |e| AuditError::io(path, e);
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let len = {
        let _lock = Flock::acquire(&file, false).map_err(io_err)?;
        file.metadata().map_err(io_err)?.len()
    };
    let mut reader = BufReader::with_capacity(1 << 16, file.take(len));
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(end) = next_line(&mut reader, &mut buf).map_err(io_err)? {
        if end != LineEnd::Newline {
            continue;
        }
        let Ok(stored) = serde_json::from_slice::<line::Stored>(&buf) else {
            continue;
        };
        if since.is_some_and(|s| stored.time < s) {
            continue;
        }
        let valid = line::check(key, &buf).is_ok_and(|c| c.valid());
        out.push(Shown {
            seq: stored.seq,
            entry: Entry {
                time: stored.time,
                actor: stored.actor,
                action: stored.action,
                target: stored.target,
                outcome: stored.outcome,
                details: stored.details,
            },
            valid,
        });
    }
    Ok(out)
}
