//! Row counts per table, read from a `pg_dump --format=custom --compress=0` archive as it
//! streams into the repository: what a drill compares the restored tables with. Counting the
//! dump itself costs no second scan of the server and counts exactly the rows the backup
//! holds (a `count(*)` next to the dump would see another snapshot of a busy database).
//!
//! The archive (pg_backup_archiver.c, pg_backup_custom.c): a header, the table of contents
//! (one entry per object; `TABLE DATA` entries name the tables), then one data block per
//! entry with data, in order. Written to a pipe, the TOC comes first and holds no offsets. A
//! `TABLE DATA` block is COPY text in length-prefixed chunks, one line per row (newlines in
//! values are escaped). Archive versions 1.12 to 1.16 (pg_dump 9.6 to 17) are read; anything
//! else, or a compressed archive, is reported as an error and the backup goes on without
//! counts.

use std::collections::HashMap;
use std::io::{self, Read};

pub use crate::row_counts::RowCounts;

const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;

struct Archive<R> {
    r: R,
    version: (u8, u8),
    int_size: usize,
    off_size: usize,
}

fn bad(m: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.into())
}

impl<R: Read> Archive<R> {
    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.r.read_exact(&mut b)?;
        Ok(b[0])
    }

    fn int(&mut self) -> io::Result<i64> {
        let sign = self.byte()?;
        let mut v: i64 = 0;
        for i in 0..self.int_size {
            let b = i64::from(self.byte()?);
            if i < 8 {
                v |= b << (8 * i);
            }
        }
        Ok(if sign != 0 { -v } else { v })
    }

    fn string(&mut self) -> io::Result<Option<Vec<u8>>> {
        let n = self.int()?;
        if n < 0 {
            return Ok(None);
        }
        if n > 1 << 30 {
            return Err(bad(format!("a string of {n} bytes")));
        }
        let mut b = vec![0u8; n as usize];
        self.r.read_exact(&mut b)?;
        Ok(Some(b))
    }

    fn text(&mut self) -> io::Result<String> {
        Ok(self
            .string()?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    }

    fn at_least(&self, minor: u8) -> bool {
        self.version >= (1, minor)
    }

    /// Skips length-prefixed chunks up to the zero-length one; returns the rows: the lines,
    /// less the terminator pg_dump appends to each table's COPY data (`\\.` and two empty
    /// lines; a row cannot be `\\.`, COPY escapes the backslash).
    fn chunks(&mut self, count: bool) -> io::Result<u64> {
        let mut lines = 0u64;
        let mut total = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.int()?;
            if n == 0 {
                break;
            }
            if n < 0 {
                return Err(bad(format!("a data chunk of {n} bytes")));
            }
            let mut left = n as u64;
            while left > 0 {
                let take = left.min(buf.len() as u64) as usize;
                self.r.read_exact(&mut buf[..take])?;
                if count {
                    let part = &buf[..take];
                    lines += part.iter().filter(|&&b| b == b'\n').count() as u64;
                    tail.extend_from_slice(&part[part.len().saturating_sub(6)..]);
                    let cut = tail.len().saturating_sub(6);
                    tail.drain(..cut);
                }
                total += take as u64;
                left -= take as u64;
            }
        }
        let ends = |end: &[u8]| {
            (total as usize == end.len() && tail == end)
                || (tail.len() > end.len()
                    && tail.ends_with(end)
                    && tail[tail.len() - end.len() - 1] == b'\n')
        };
        let terminator = if ends(b"\\.\n\n\n") {
            3
        } else if ends(b"\\.\n") {
            1
        } else {
            0
        };
        Ok(lines - terminator)
    }
}

/// Reads a whole archive and counts the rows of each table's data.
pub fn count(r: impl Read) -> io::Result<RowCounts> {
    let mut magic = [0u8; 5];
    let mut r = io::BufReader::with_capacity(256 * 1024, r);
    r.read_exact(&mut magic)?;
    if &magic != b"PGDMP" {
        return Err(bad("not a pg_dump custom-format archive"));
    }
    let mut a = Archive {
        r,
        version: (0, 0),
        int_size: 4,
        off_size: 8,
    };
    let (major, minor, _rev) = (a.byte()?, a.byte()?, a.byte()?);
    a.version = (major, minor);
    if major != 1 || !(12..=16).contains(&minor) {
        return Err(bad(format!(
            "archive version {major}.{minor} (rows are counted in versions 1.12 to 1.16)"
        )));
    }
    a.int_size = a.byte()? as usize;
    a.off_size = a.byte()? as usize;
    if !(1..=16).contains(&a.int_size) || !(1..=16).contains(&a.off_size) {
        return Err(bad("implausible integer sizes in the header"));
    }
    let format = a.byte()?;
    if format != 1 {
        return Err(bad(format!("archive format {format}, not custom (1)")));
    }
    let compressed = if a.at_least(15) {
        a.byte()? != 0
    } else {
        a.int()? != 0
    };
    if compressed {
        return Err(bad(
            "the archive is compressed (coffer dumps with --compress=0)",
        ));
    }
    for _ in 0..7 {
        a.int()?; // creation time
    }
    a.string()?; // database
    a.string()?; // server version
    a.string()?; // pg_dump version

    let entries = a.int()?;
    let mut tables: HashMap<i64, String> = HashMap::new();
    for _ in 0..entries.max(0) {
        let dump_id = a.int()?;
        a.int()?; // had dumper
        a.string()?; // table oid
        a.string()?; // oid
        let tag = a.text()?;
        let desc = a.text()?;
        a.int()?; // section
        a.string()?; // definition
        a.string()?; // drop statement
        a.string()?; // copy statement
        let namespace = a.text()?;
        a.string()?; // tablespace
        if a.at_least(14) {
            a.string()?; // table access method
        }
        if a.at_least(16) {
            a.int()?; // relkind
        }
        a.string()?; // owner
        a.string()?; // with oids
        while a.string()?.is_some() {} // dependencies
        a.byte()?; // data offset flag
        for _ in 0..a.off_size {
            a.byte()?;
        }
        if desc == "TABLE DATA" {
            tables.insert(dump_id, format!("{namespace}.{tag}"));
        }
    }

    let mut counts = RowCounts::new();
    loop {
        let kind = match a.byte() {
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        };
        let id = a.int()?;
        match kind {
            BLK_DATA => {
                let table = tables.get(&id);
                let rows = a.chunks(table.is_some())?;
                if let Some(t) = table {
                    counts.insert(t.clone(), rows);
                }
            }
            BLK_BLOBS => {
                while a.int()? != 0 {
                    a.chunks(false)?;
                }
            }
            other => return Err(bad(format!("unknown data block type {other}"))),
        }
    }
    // Tables without a data block were empty.
    for t in tables.into_values() {
        counts.entry(t).or_insert(0);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::scratch::ScratchCluster;
    use crate::postgres::Server;
    use crate::Manifest;
    use coffer_archiver::StreamSource;

    /// Counts what pg_dump really writes: several tables, an empty one, values with newlines
    /// and backslashes, a large object (a blob block to skip), and a schema of its own.
    #[test]
    fn counts_the_rows_of_a_real_dump() {
        let c = ScratchCluster::start(None).expect("scratch cluster");
        let server = Server::new("scratch", c.url(), None);
        server
            .query(
                "postgres",
                "CREATE SCHEMA s; \
                 CREATE TABLE a(id int PRIMARY KEY, t text); \
                 INSERT INTO a SELECT g, E'line\\nbreak \\\\. ' || g FROM generate_series(1, 5000) g; \
                 CREATE TABLE s.\"b b\"(x int); INSERT INTO s.\"b b\" VALUES (1), (2), (3); \
                 CREATE TABLE empty(x int); \
                 CREATE TABLE blank(t text); INSERT INTO blank VALUES (''), (''); \
                 SELECT lo_from_bytea(0, '\\x0102030405'::bytea)",
            )
            .expect("setup");
        let mut dump = server.tool_on("pg_dump", Some("postgres"));
        dump.args(["--format=custom", "--compress=0"]);
        let out = dump.output().expect("pg_dump");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counts = count(&out.stdout[..]).expect("counted");
        assert_eq!(counts.get("public.a"), Some(&5000), "{counts:?}");
        assert_eq!(counts.get("s.b b"), Some(&3), "{counts:?}");
        assert_eq!(counts.get("public.empty"), Some(&0), "{counts:?}");
        assert_eq!(counts.get("public.blank"), Some(&2), "{counts:?}");
        assert_eq!(counts.len(), 4, "{counts:?}");
        // Through the tee, read in small pieces as the archiver would.
        let manifest = Manifest::default();
        let stream = StreamSource {
            filename: "postgres.dump".into(),
            reader: Box::new(std::io::Cursor::new(out.stdout.clone())),
            finish: Box::new(|| Ok(())),
        };
        let mut s = crate::row_counts::counted(stream, "postgres", &manifest, |r| count(r));
        let mut sink = Vec::new();
        let mut piece = [0u8; 777];
        loop {
            let n = s.reader.read(&mut piece).unwrap();
            if n == 0 {
                break;
            }
            sink.extend_from_slice(&piece[..n]);
        }
        assert_eq!(sink, out.stdout);
        (s.finish)().unwrap();
        let m = manifest.snapshot();
        assert_eq!(m["row_counts"]["postgres"]["public.a"], 5000);
        // Not an archive: an error, not a panic.
        assert!(count(&b"PGDMP\x01\x0e"[..]).is_err());
        assert!(count(&b"hello"[..]).is_err());
    }
}
