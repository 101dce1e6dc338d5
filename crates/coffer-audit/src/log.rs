use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::key::private_parent;
use crate::line::{self, Body, Flock, Tail, GENESIS};
use crate::{AuditError, AuditKey, Entry, Head};

/// An audit log file, opened for appending. Cheap to share between threads (`&self`
/// methods); several processes may append to the same file at once.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    key: AuditKey,
}

/// The last line, as found by [`AuditLog::last`].
struct Last {
    seq: u64,
    mac: [u8; 32],
}

impl AuditLog {
    /// Opens the log at `path`, creating its directory (mode 0700) and the file (mode 0600) if
    /// missing. Reads nothing: a damaged log is reported by [`AuditLog::append`],
    /// [`AuditLog::head`] and [`crate::verify`].
    pub fn open(path: &Path, key: AuditKey) -> Result<AuditLog, AuditError> {
        let dir = private_parent(path)?;
        match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let meta = fs::metadata(path).map_err(|e| AuditError::io(path, e))?;
                if !meta.is_file() {
                    return Err(AuditError::io(
                        path,
                        io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
                    ));
                }
            }
            Err(e) => return Err(AuditError::io(path, e)),
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            key,
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` as the next line of the chain and returns the new head.
    ///
    /// Holds an exclusive `flock` on the file meanwhile, reads only the last line and checks
    /// its MAC first: a log whose last line does not verify, or does not end with a newline
    /// (a write torn by a crash), is refused with [`AuditError::Broken`], never extended.
    /// The line is written with one `write` on a file opened with `O_APPEND`, then `fsync`ed.
    /// The file is not re-created if it was removed since [`AuditLog::open`].
    pub fn append(&self, entry: &Entry) -> Result<Head, AuditError> {
        let io_err = |e| AuditError::io(&self.path, e);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err)?;
        let _lock = Flock::acquire(&file, true).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        let last = self.last(&file, len)?;
        let (seq, prev) = match last {
            Some(l) => (l.seq + 1, l.mac),
            None => (1, GENESIS),
        };
        let (mut bytes, mac) = self.encode(entry, seq, &prev)?;
        bytes.push(b'\n');
        let written = (&file).write_all(&bytes).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Do not leave a torn line behind if we can help it.
            if file.set_len(len).is_ok() {
                let _ = file.sync_data();
            }
            return Err(io_err(e));
        }
        Ok(Head {
            seq,
            mac: hex::encode(mac),
        })
    }

    /// The head of the chain: the last line's `seq` and `mac`, `None` for an empty log.
    /// Reads only the last line, and refuses ([`AuditError::Broken`]) a last line that does
    /// not verify.
    pub fn head(&self) -> Result<Option<Head>, AuditError> {
        let io_err = |e| AuditError::io(&self.path, e);
        let file = File::open(&self.path).map_err(io_err)?;
        let _lock = Flock::acquire(&file, false).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        Ok(self.last(&file, len)?.map(|l| Head {
            seq: l.seq,
            mac: hex::encode(l.mac),
        }))
    }

    /// Reads and checks the last line of the first `len` bytes of `file`.
    fn last(&self, file: &File, len: u64) -> Result<Option<Last>, AuditError> {
        let broken = |line: Option<u64>, message: &str| {
            tracing::warn!(path = %self.path.display(), "audit log: {message}");
            AuditError::Broken {
                path: self.path.clone(),
                line,
                message: message.to_string(),
            }
        };
        let bytes = match line::read_tail(file, len).map_err(|e| AuditError::io(&self.path, e))? {
            Tail::Empty => return Ok(None),
            Tail::Torn => {
                return Err(broken(
                    None,
                    "the last line is incomplete (no trailing newline): a write was \
                     interrupted, e.g. by a crash, or the file was cut",
                ))
            }
            Tail::TooLong => return Err(broken(None, "the last line is too long")),
            Tail::Line(b) => b,
        };
        match line::check(&self.key, &bytes) {
            Err(msg) => Err(broken(None, &format!("the last line is malformed: {msg}"))),
            Ok(c) if !c.canonical => Err(broken(
                Some(c.seq),
                "the last line is not in canonical form (edited)",
            )),
            Ok(c) if !c.mac_ok => Err(broken(
                Some(c.seq),
                "the last line's MAC does not match (edited, or wrong key)",
            )),
            Ok(c) => Ok(Some(Last {
                seq: c.seq,
                mac: c.mac,
            })),
        }
    }

    /// The line for `entry` at `seq` after `prev`, in a form that reads back identically.
    fn encode(
        &self,
        entry: &Entry,
        seq: u64,
        prev: &[u8; 32],
    ) -> Result<(Vec<u8>, [u8; 32]), AuditError> {
        let enc_err = |message: String| AuditError::Encode {
            path: self.path.clone(),
            message,
        };
        let prev = hex::encode(prev);
        // JSON round trips may change `details` (`null` is read back as no details; a float
        // may be read back one unit off): iterate to a fixed point, which is reached at once
        // in practice.
        let mut details = entry.details.clone().filter(|d| !d.is_null());
        for _ in 0..4 {
            let body = Body {
                seq,
                time: &entry.time,
                actor: &entry.actor,
                action: &entry.action,
                target: &entry.target,
                outcome: &entry.outcome,
                details: details.as_ref(),
                prev: &prev,
            };
            let (bytes, mac) =
                line::encode(&self.key, &body).map_err(|e| enc_err(e.to_string()))?;
            match line::check(&self.key, &bytes) {
                Ok(c) if c.valid() => return Ok((bytes, mac)),
                Ok(_) => {
                    let stored: line::Stored =
                        serde_json::from_slice(&bytes).map_err(|e| enc_err(e.to_string()))?;
                    details = stored.details;
                }
                Err(e) => return Err(enc_err(e)),
            }
        }
        Err(enc_err(
            "the details do not survive a JSON round trip".into(),
        ))
    }
}
