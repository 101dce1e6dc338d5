//! Reads `backup_label` and the end of `backup_manifest` out of a base backup's tar stream
//! while it passes into the repository. pg_basebackup does not print the WAL start and end
//! points when it writes a tar to stdout with `-X none`, and the repository needs them to
//! know which WAL each base backup depends on, so they are taken from the files the server
//! puts into the backup itself: `backup_label` (start LSN and timeline) and the manifest's
//! `WAL-Ranges` (end LSN), which is its last section.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use parking_lot::Mutex;

use super::wal;

const BLOCK: usize = 512;
/// How much of the manifest's end to keep: WAL-Ranges and the checksum are its last lines.
const MANIFEST_TAIL: usize = 256 * 1024;

/// Files captured from the stream, by name.
pub type Captured = Arc<Mutex<HashMap<String, Vec<u8>>>>;

enum State {
    Header,
    Data {
        left: u64,
        size: u64,
        keep: Option<String>,
    },
    Padding {
        left: u64,
    },
}

/// A reader that passes a tar stream through unchanged and keeps copies of the two files.
pub struct LabelReader<R> {
    inner: R,
    state: State,
    header: Vec<u8>,
    long_name: Option<String>,
    pending_long: Option<Vec<u8>>,
    found: Captured,
}

impl<R: Read> LabelReader<R> {
    /// Wraps `inner`; what it finds goes into `found`.
    pub fn new(inner: R, found: Captured) -> LabelReader<R> {
        LabelReader {
            inner,
            state: State::Header,
            header: Vec::with_capacity(BLOCK),
            long_name: None,
            pending_long: None,
            found,
        }
    }

    fn on_header(&mut self) {
        let h = std::mem::take(&mut self.header);
        if h.iter().all(|&b| b == 0) {
            return; // end-of-archive blocks
        }
        let size = tar_size(&h[124..136]);
        let typeflag = h[156];
        let mut name = match self.long_name.take() {
            Some(n) => n,
            None => {
                let base = cstr(&h[0..100]);
                let prefix = if &h[257..262] == b"ustar" {
                    cstr(&h[345..500])
                } else {
                    String::new()
                };
                if prefix.is_empty() {
                    base
                } else {
                    format!("{prefix}/{base}")
                }
            }
        };
        if let Some(n) = name.strip_prefix("./") {
            name = n.to_string();
        }
        // A GNU long-name entry carries the next entry's name as its data.
        let keep = match typeflag {
            b'L' => {
                self.pending_long = Some(Vec::new());
                None
            }
            b'0' | 0 if name == "backup_label" || name == "backup_manifest" => Some(name),
            _ => None,
        };
        self.state = if size == 0 {
            self.end_entry();
            State::Header
        } else {
            State::Data {
                left: size,
                size,
                keep,
            }
        };
    }

    fn end_entry(&mut self) {
        if let Some(long) = self.pending_long.take() {
            self.long_name = Some(cstr(&long));
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.header.len() == BLOCK {
                        self.on_header();
                    }
                }
                State::Data { left, size, keep } => {
                    let take = (*left).min(data.len() as u64) as usize;
                    let chunk = &data[..take];
                    if let Some(long) = &mut self.pending_long {
                        long.extend_from_slice(chunk);
                    } else if let Some(name) = keep {
                        let mut f = self.found.lock();
                        let buf = f.entry(name.clone()).or_default();
                        buf.extend_from_slice(chunk);
                        if buf.len() > 2 * MANIFEST_TAIL {
                            let cut = buf.len() - MANIFEST_TAIL;
                            buf.drain(..cut);
                        }
                    }
                    *left -= take as u64;
                    data = &data[take..];
                    if *left == 0 {
                        let pad = (BLOCK as u64 - *size % BLOCK as u64) % BLOCK as u64;
                        self.end_entry();
                        self.state = if pad == 0 {
                            State::Header
                        } else {
                            State::Padding { left: pad }
                        };
                    }
                }
                State::Padding { left } => {
                    let take = (*left).min(data.len() as u64) as usize;
                    *left -= take as u64;
                    data = &data[take..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
            }
        }
    }
}

impl<R: Read> Read for LabelReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.feed(&buf[..n]);
        Ok(n)
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A tar size field: octal, or base-256 when the high bit is set.
fn tar_size(f: &[u8]) -> u64 {
    if f[0] & 0x80 != 0 {
        f[1..]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    } else {
        let s = cstr(f);
        u64::from_str_radix(s.trim(), 8).unwrap_or(0)
    }
}

/// What the backup's own files say about its WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Positions {
    /// Where replay starts.
    pub start_lsn: u64,
    /// Timeline at the start.
    pub timeline: u32,
    /// Where the backup ends (from the manifest), when it has one.
    pub stop_lsn: Option<u64>,
}

/// Reads the positions out of captured `backup_label` and `backup_manifest` text.
pub fn positions(found: &HashMap<String, Vec<u8>>) -> Option<Positions> {
    let label = String::from_utf8_lossy(found.get("backup_label")?);
    let mut start = None;
    let mut timeline = None;
    for line in label.lines() {
        if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
            start = wal::parse_lsn(rest.split_whitespace().next()?);
        } else if let Some(rest) = line.strip_prefix("START TIMELINE: ") {
            timeline = rest.trim().parse().ok();
        }
    }
    let stop_lsn = found.get("backup_manifest").and_then(|m| {
        let text = String::from_utf8_lossy(m);
        let at = text.rfind("\"End-LSN\"")?;
        let rest = &text[at + "\"End-LSN\"".len()..];
        let open = rest.find('"')?;
        let close = rest[open + 1..].find('"')?;
        wal::parse_lsn(&rest[open + 1..open + 1 + close])
    });
    Some(Positions {
        start_lsn: start?,
        timeline: timeline?,
        stop_lsn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_label_and_manifest_in_a_tar_stream() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        };
        add(
            "backup_label",
            b"START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\nCHECKPOINT LOCATION: 0/5000060\nSTART TIMELINE: 1\n",
        );
        add(&format!("base/{}/16384", "x".repeat(150)), &[7u8; 70_000]);
        let mut manifest = b"{ \"Files\": [".to_vec();
        manifest.extend(std::iter::repeat_n(b' ', 600_000));
        manifest.extend_from_slice(b"],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/5000028\", \"End-LSN\": \"0/5000100\" }\n]}");
        add("backup_manifest", &manifest);
        let bytes = b.into_inner().unwrap();

        let found: Captured = Default::default();
        let mut r = LabelReader::new(&bytes[..], Arc::clone(&found));
        let mut out = Vec::new();
        // Odd read sizes, so headers and data straddle reads.
        let mut buf = [0u8; 777];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, bytes);
        let p = positions(&found.lock()).unwrap();
        assert_eq!(
            p,
            Positions {
                start_lsn: 0x500_0028,
                timeline: 1,
                stop_lsn: Some(0x500_0100)
            }
        );
        assert!(found.lock().get("base/x").is_none());
    }
}
