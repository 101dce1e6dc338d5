//! The backup: the RDB taken over the replication protocol (`PSYNC ? -1` / `SYNC`), disk or
//! diskless transfer, streamed into the repository while it arrives.

use super::*;

/// How the payload ends.
pub(super) enum Framing {
    /// `$<len>`: this many bytes remain.
    Bulk { remaining: u64, total: u64 },
    /// `$EOF:<mark>`: the payload ends with the mark.
    Mark {
        mark: [u8; EOF_MARK_LEN],
        found: bool,
    },
}

pub(super) struct Transfer {
    pub(super) conn: Conn,
    pub(super) framing: Framing,
    pub(super) check: RdbCheck,
    pub(super) started: Instant,
}

pub(super) enum SyncState {
    Pending,
    Streaming(Box<Transfer>),
    Done,
    Failed,
}

#[derive(Default)]
pub(super) struct Outcome {
    pub(super) error: Option<String>,
    pub(super) done: Option<(RdbSummary, f64)>,
    pub(super) bytes: u64,
}

pub(super) struct SyncReader {
    pub(super) state: SyncState,
    pub(super) target: Target,
    pub(super) timeout: Duration,
    pub(super) manifest: Manifest,
    pub(super) shared: Arc<Mutex<Outcome>>,
}

impl SyncReader {
    pub(super) fn fail(&mut self, message: String) -> io::Error {
        self.state = SyncState::Failed;
        let mut o = self.shared.lock();
        if o.error.is_none() {
            o.error = Some(message.clone());
        }
        io::Error::other(message)
    }

    pub(super) fn start(&mut self) -> Result<Transfer, String> {
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
pub(super) fn announce_diskless_delay(ctl: &mut Conn) {
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

pub(super) struct SyncHeader {
    pub(super) offset: Option<u64>,
    pub(super) replid: Option<String>,
    pub(super) framing: Framing,
}

/// Reads what comes before the payload: keepalive newlines, `+FULLRESYNC <replid> <offset>`
/// (PSYNC), then `$<len>` or `$EOF:<mark>`. Falls back to SYNC if PSYNC is unknown.
pub(super) fn read_sync_header(c: &mut Conn) -> Result<SyncHeader, String> {
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
    pub(super) fn read_payload(&mut self, out: &mut [u8]) -> Result<usize, String> {
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

pub(super) fn finish_backup(shared: &Mutex<Outcome>, manifest: &Manifest) -> Result<(), String> {
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
