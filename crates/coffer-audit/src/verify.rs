use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde::Serialize;

use crate::line::{self, Flock, GENESIS, MAX_LINE};
use crate::{AuditError, AuditKey, Head};

/// At most this many problems are listed in a [`Report`]; the rest are only counted.
pub const MAX_PROBLEMS: usize = 100;

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Lines read, a torn last line included.
    pub lines: u64,
    /// `seq` and `mac` of the last line that could be parsed (whether or not it verified);
    /// `None` if there is none.
    pub head: Option<Head>,
    /// The problems, in file order (the comparison with the expected head last), at most
    /// [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// Problems found beyond [`MAX_PROBLEMS`], not listed.
    pub omitted: u64,
}

impl Report {
    /// Whether the log verified: no problem at all.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.omitted == 0
    }
}

/// One problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The line (1-based line number in the file).
    pub line: u64,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// A sentence for people.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The kinds of [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Not an audit line (not JSON, missing or unknown fields, too long), or its bytes are not
    /// the canonical serialization of its fields (e.g. whitespace was changed).
    Malformed,
    /// The MAC does not match the line's fields: the line was edited (or the key is wrong).
    BadMac,
    /// `prev` is not the MAC of the line before: a line was inserted or removed here.
    BrokenChain,
    /// `seq` is not the previous line's `seq` plus one.
    BadSequence,
    /// The log ends before the expected head, or the line at the expected head's `seq` has
    /// another MAC: lines were cut from the end (and maybe others appended since).
    Truncated,
    /// The last line has no trailing newline: an interrupted write, or a cut mid-line.
    TornWrite,
}

/// Checks the whole log at `path` under `key`, streaming it line by line (memory does not
/// depend on the file's size), and lists what is wrong.
///
/// Each line must be canonical, carry a valid MAC, point with `prev` to the MAC of the line
/// before (64 zeros for the first) and have `seq` one more than it. After a problem the check
/// re-anchors on the line found, so one edit, insertion or removal yields one or two problems,
/// not one per following line. A log cut at a line boundary is still a valid chain: pass the
/// `expected` head recorded elsewhere to detect that. A missing or empty log is a log of 0
/// lines. Only I/O errors other than "not found" are errors; damage is in the [`Report`].
pub fn verify(path: &Path, key: &AuditKey, expected: Option<&Head>) -> Result<Report, AuditError> {
    let io_err = |e| AuditError::io(path, e);
    let file = match File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(e)),
    };
    let mut v = Verifier::default();
    if let Some(file) = file {
        // Appends hold an exclusive lock and write whole lines, so the length seen under a
        // shared lock ends on a line boundary; lines appended while we read are left out.
        let len = {
            let _lock = Flock::acquire(&file, false).map_err(io_err)?;
            file.metadata().map_err(io_err)?.len()
        };
        let mut reader = BufReader::with_capacity(1 << 16, file.take(len));
        let mut buf = Vec::new();
        while let Some(read) = next_line(&mut reader, &mut buf).map_err(io_err)? {
            v.line(key, &buf, read, expected);
        }
    }
    Ok(v.finish(expected))
}

/// How a line ended.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineEnd {
    Newline,
    Eof,
    TooLong,
}

/// Reads the next line into `buf` (without newline; nothing kept beyond [`MAX_LINE`]).
pub(crate) fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<LineEnd>> {
    buf.clear();
    let mut started = false;
    let mut too_long = false;
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(match (started, too_long) {
                (false, _) => None,
                (true, true) => Some(LineEnd::TooLong),
                (true, false) => Some(LineEnd::Eof),
            });
        }
        started = true;
        let (chunk, newline) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], true),
            None => (avail, false),
        };
        if buf.len() + chunk.len() > MAX_LINE {
            too_long = true;
            buf.clear();
        } else if !too_long {
            buf.extend_from_slice(chunk);
        }
        let n = chunk.len() + usize::from(newline);
        r.consume(n);
        if newline {
            return Ok(Some(if too_long {
                LineEnd::TooLong
            } else {
                LineEnd::Newline
            }));
        }
    }
}

#[derive(Default)]
struct Verifier {
    lines: u64,
    /// `seq` and MAC of the previous line; `None` after an unparsable line (re-anchor).
    prev: Option<(u64, [u8; 32])>,
    started: bool,
    head: Option<Head>,
    /// Line number and MAC of the first line whose `seq` is the expected head's.
    at_expected: Option<(u64, [u8; 32])>,
    problems: Vec<Problem>,
    omitted: u64,
    omitted_bad_macs: u64,
    macs_ok: u64,
    macs_bad: u64,
}

impl Verifier {
    fn problem(&mut self, line: u64, kind: ProblemKind, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                line,
                kind,
                message,
            });
        } else {
            self.omitted += 1;
            if kind == ProblemKind::BadMac {
                self.omitted_bad_macs += 1;
            }
        }
    }

    fn line(&mut self, key: &AuditKey, bytes: &[u8], end: LineEnd, expected: Option<&Head>) {
        if !self.started {
            self.started = true;
            self.prev = Some((0, GENESIS));
        }
        self.lines += 1;
        let n = self.lines;
        match end {
            LineEnd::Eof => {
                // Only the last line can lack a newline.
                self.problem(
                    n,
                    ProblemKind::TornWrite,
                    "the last line is incomplete (no trailing newline): a write was \
                     interrupted, e.g. by a crash, or the log was cut mid-line"
                        .into(),
                );
                return;
            }
            LineEnd::TooLong => {
                self.problem(
                    n,
                    ProblemKind::Malformed,
                    format!("longer than {MAX_LINE} bytes"),
                );
                self.prev = None;
                return;
            }
            LineEnd::Newline => {}
        }
        let c = match line::check(key, bytes) {
            Ok(c) => c,
            Err(msg) => {
                self.problem(n, ProblemKind::Malformed, msg);
                self.prev = None;
                return;
            }
        };
        if !c.canonical {
            self.problem(
                n,
                ProblemKind::Malformed,
                "the bytes are not the canonical serialization of the line's fields \
                 (edited by hand?)"
                    .into(),
            );
        }
        if c.mac_ok {
            self.macs_ok += 1;
        } else {
            self.macs_bad += 1;
            self.problem(
                n,
                ProblemKind::BadMac,
                "the MAC does not match: the line was edited (or the key is wrong)".into(),
            );
        }
        if let Some((prev_seq, prev_mac)) = self.prev {
            if c.prev != prev_mac {
                let what = if n == 1 {
                    "the first line does not start the chain (prev is not 64 zeros): \
                     lines were removed before it"
                        .to_string()
                } else {
                    format!(
                        "prev is not the MAC of line {}: a line was inserted or removed here",
                        n - 1
                    )
                };
                self.problem(n, ProblemKind::BrokenChain, what);
            }
            if c.seq != prev_seq + 1 {
                self.problem(
                    n,
                    ProblemKind::BadSequence,
                    format!("seq is {}, expected {}", c.seq, prev_seq + 1),
                );
            }
        }
        // Re-anchor on this line whatever its problems: its MAC is what the next line's prev
        // refers to if only this line was touched.
        self.prev = Some((c.seq, c.mac));
        self.head = Some(Head {
            seq: c.seq,
            mac: hex::encode(c.mac),
        });
        if let Some(exp) = expected {
            if c.seq == exp.seq && self.at_expected.is_none() {
                self.at_expected = Some((n, c.mac));
            }
        }
    }

    fn finish(mut self, expected: Option<&Head>) -> Report {
        // With the wrong key every MAC fails: say so once rather than once per line.
        if self.macs_ok == 0 && self.macs_bad > 1 {
            let first = self
                .problems
                .iter()
                .position(|p| p.kind == ProblemKind::BadMac);
            let dropped = self.macs_bad - 1;
            let mut i = 0;
            self.problems.retain(|p| {
                let keep = p.kind != ProblemKind::BadMac || Some(i) == first;
                i += 1;
                keep
            });
            if let Some(p) = self
                .problems
                .iter_mut()
                .find(|p| p.kind == ProblemKind::BadMac)
            {
                p.message = format!(
                    "no line's MAC matches (this one and {dropped} more): wrong key, or every \
                     line was rewritten"
                );
            }
            // The BadMac problems beyond the cap are covered by that one too.
            self.omitted -= self.omitted_bad_macs;
        }
        if let Some(exp) = expected.filter(|e| e.seq > 0) {
            let last_seq = self.head.as_ref().map_or(0, |h| h.seq);
            let mut problem = |line, message| {
                self.problems.push(Problem {
                    line,
                    kind: ProblemKind::Truncated,
                    message,
                })
            };
            match self.at_expected {
                Some((_, mac)) if hex::encode(mac).eq_ignore_ascii_case(&exp.mac) => {}
                Some((line, mac)) => problem(
                    line,
                    format!(
                        "seq {} has MAC {}, but the head recorded elsewhere is {}: the log was \
                         rewritten from seq {} or earlier on (lines cut from the end, others \
                         appended)",
                        exp.seq,
                        hex::encode(mac),
                        exp.mac,
                        exp.seq
                    ),
                ),
                None if last_seq < exp.seq => problem(
                    self.lines + 1,
                    format!(
                        "the log ends at seq {last_seq} but the head recorded elsewhere is seq \
                         {}: the last {} line(s) were removed",
                        exp.seq,
                        exp.seq - last_seq
                    ),
                ),
                None => problem(
                    self.lines + 1,
                    format!(
                        "no line has seq {} (the head recorded elsewhere) although the log \
                         reaches seq {last_seq}",
                        exp.seq
                    ),
                ),
            }
        }
        Report {
            lines: self.lines,
            head: self.head,
            problems: self.problems,
            omitted: self.omitted,
        }
    }
}
