//! The file one partition's records become in a snapshot (`coffer-kafka/1`), written while
//! the records arrive and read back as a stream on restore. Binary, so that keys, values and
//! headers are kept byte for byte; all integers big-endian.
//!
//! ```text
//! header : "CKAFSEG1" | u16 version (1) | u16 flags (0) | u16 topic length | topic
//!          | i32 partition | i64 first offset (inclusive) | i64 end offset (exclusive)
//! record : u32 length of what follows | i64 offset | i64 timestamp (ms)
//!          | u8 attributes (bit 0 LogAppendTime, bit 1 key present, bit 2 value present)
//!          | [u32 key length, key] | [u32 value length, value]
//!          | u32 header count, each: u32 key length, key, i32 value length (-1 null), value
//! trailer: u32 0xFFFFFFFF | u64 record count | i64 last offset (-1: none)
//!          | 32 bytes digest | u32 CRC-32C of every byte before this field
//! ```
//!
//! The digest is a SHA-256 over each record without its offset (`u32 length - 8`, then the
//! record from the timestamp on): offsets change when records are produced again, so a
//! restored partition can be checked against it.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::batch::Record;

const MAGIC: &[u8; 8] = b"CKAFSEG1";
const VERSION: u16 = 1;
const TRAILER_MARK: u32 = 0xFFFF_FFFF;

/// Where a segment's records come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset covered (inclusive).
    pub first: i64,
    /// End offset covered (exclusive): the backup's cut.
    pub end: i64,
}

/// What a segment holds, from its trailer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records.
    pub records: u64,
    /// Offset of the last record (-1: none).
    pub last_offset: i64,
    /// SHA-256 over the records without their offsets, hex.
    pub digest: String,
}

/// Writes a segment piece by piece into a caller's buffer.
pub struct Encoder {
    digest: Sha256,
    crc: u32,
    records: u64,
    last: i64,
}

impl Encoder {
    /// Starts a segment: appends its header to `out`.
    pub fn start(h: &Header, out: &mut Vec<u8>) -> Encoder {
        let at = out.len();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(h.topic.len() as u16).to_be_bytes());
        out.extend_from_slice(h.topic.as_bytes());
        out.extend_from_slice(&h.partition.to_be_bytes());
        out.extend_from_slice(&h.first.to_be_bytes());
        out.extend_from_slice(&h.end.to_be_bytes());
        Encoder {
            digest: Sha256::new(),
            crc: crc32c::crc32c(&out[at..]),
            records: 0,
            last: -1,
        }
    }

    /// Appends one record.
    pub fn record(&mut self, r: &Record, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&r.offset.to_be_bytes());
        out.extend_from_slice(&r.timestamp.to_be_bytes());
        let attrs = u8::from(r.log_append_time)
            | (u8::from(r.key.is_some()) << 1)
            | (u8::from(r.value.is_some()) << 2);
        out.push(attrs);
        for f in [&r.key, &r.value].into_iter().flatten() {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out.extend_from_slice(&(r.headers.len() as u32).to_be_bytes());
        for (k, v) in &r.headers {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            match v {
                Some(v) => {
                    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                    out.extend_from_slice(v);
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        self.digest.update((len - 8).to_be_bytes());
        self.digest.update(&out[at + 12..]);
        self.crc = crc32c::crc32c_append(self.crc, &out[at..]);
        self.records += 1;
        self.last = r.offset;
    }

    /// Appends the trailer; returns what the segment holds.
    pub fn finish(self, out: &mut Vec<u8>) -> Summary {
        let at = out.len();
        let digest: [u8; 32] = self.digest.finalize().into();
        out.extend_from_slice(&TRAILER_MARK.to_be_bytes());
        out.extend_from_slice(&self.records.to_be_bytes());
        out.extend_from_slice(&self.last.to_be_bytes());
        out.extend_from_slice(&digest);
        let crc = crc32c::crc32c_append(self.crc, &out[at..]);
        out.extend_from_slice(&crc.to_be_bytes());
        Summary {
            records: self.records,
            last_offset: self.last,
            digest: hex::encode(digest),
        }
    }
}

/// The digest and count a segment's trailer holds, over records given one at a time: a
/// restore's records as produced, and as read back from the brokers.
pub struct RecordDigest {
    enc: Encoder,
    buf: Vec<u8>,
}

impl Default for RecordDigest {
    fn default() -> RecordDigest {
        let mut buf = Vec::new();
        let blank = Header {
            topic: String::new(),
            partition: 0,
            first: 0,
            end: 0,
        };
        // The header goes into the CRC only, never into the digest.
        let enc = Encoder::start(&blank, &mut buf);
        RecordDigest { enc, buf }
    }
}

impl RecordDigest {
    /// Adds a record (its offset is left out, as in the segment's digest).
    pub fn add(&mut self, r: &Record) {
        self.buf.clear();
        self.enc.record(r, &mut self.buf);
    }

    /// The count and digest of what was added (`last_offset` is that of the last record).
    pub fn finish(mut self) -> Summary {
        self.buf.clear();
        self.enc.finish(&mut self.buf)
    }
}

/// Reads a segment's records, checking the trailer at the end.
pub struct Decoder<R: Read> {
    r: R,
    /// The segment's header.
    pub header: Header,
    crc: u32,
    digest: Sha256,
    records: u64,
    summary: Option<Summary>,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("Kafka segment: {}", what.into()),
    )
}

impl<R: Read> Decoder<R> {
    /// Reads the header.
    pub fn new(mut r: R) -> io::Result<Decoder<R>> {
        let mut fixed = [0u8; 14];
        r.read_exact(&mut fixed)?;
        if &fixed[..8] != MAGIC {
            return Err(bad("not a coffer Kafka segment (bad magic)"));
        }
        let version = u16::from_be_bytes([fixed[8], fixed[9]]);
        if version != VERSION {
            return Err(bad(format!(
                "format version {version} is newer than this coffer"
            )));
        }
        let tlen = u16::from_be_bytes([fixed[12], fixed[13]]) as usize;
        let mut rest = vec![0u8; tlen + 20];
        r.read_exact(&mut rest)?;
        let topic =
            String::from_utf8(rest[..tlen].to_vec()).map_err(|_| bad("topic is not UTF-8"))?;
        let p = &rest[tlen..];
        let header = Header {
            topic,
            partition: i32::from_be_bytes([p[0], p[1], p[2], p[3]]),
            first: i64::from_be_bytes(p[4..12].try_into().map_err(|_| bad("header"))?),
            end: i64::from_be_bytes(p[12..20].try_into().map_err(|_| bad("header"))?),
        };
        let crc = crc32c::crc32c_append(crc32c::crc32c(&fixed), &rest);
        Ok(Decoder {
            r,
            header,
            crc,
            digest: Sha256::new(),
            records: 0,
            summary: None,
        })
    }

    /// The next record, or None after a trailer that checks out.
    pub fn next_record(&mut self) -> io::Result<Option<Record>> {
        if self.summary.is_some() {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.r.read_exact(&mut len).map_err(truncated)?;
        let n = u32::from_be_bytes(len);
        if n == TRAILER_MARK {
            self.trailer(len)?;
            return Ok(None);
        }
        if !(21..=(1 << 30)).contains(&n) {
            return Err(bad(format!("record length {n} out of range")));
        }
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf).map_err(truncated)?;
        self.crc = crc32c::crc32c_append(crc32c::crc32c_append(self.crc, &len), &buf);
        self.digest.update((n - 8).to_be_bytes());
        self.digest.update(&buf[8..]);
        self.records += 1;
        parse_record(&buf)
            .ok_or_else(|| bad("malformed record"))
            .map(Some)
    }

    /// What the trailer says (after the last record was read).
    pub fn summary(&self) -> Option<&Summary> {
        self.summary.as_ref()
    }

    fn trailer(&mut self, mark: [u8; 4]) -> io::Result<()> {
        let mut t = [0u8; 52];
        self.r.read_exact(&mut t).map_err(truncated)?;
        let crc = crc32c::crc32c_append(crc32c::crc32c_append(self.crc, &mark), &t[..48]);
        if crc.to_be_bytes() != t[48..52] {
            return Err(bad("checksum mismatch: the segment is damaged"));
        }
        let records = u64::from_be_bytes(t[..8].try_into().map_err(|_| bad("trailer"))?);
        if records != self.records {
            return Err(bad(format!(
                "{} records read, the trailer says {records}",
                self.records
            )));
        }
        let digest: [u8; 32] = std::mem::take(&mut self.digest).finalize().into();
        if digest[..] != t[16..48] {
            return Err(bad("record digest mismatch"));
        }
        self.summary = Some(Summary {
            records,
            last_offset: i64::from_be_bytes(t[8..16].try_into().map_err(|_| bad("trailer"))?),
            digest: hex::encode(digest),
        });
        Ok(())
    }
}

fn truncated(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        bad("truncated: the segment ends before its trailer")
    } else {
        e
    }
}

fn parse_record(b: &[u8]) -> Option<Record> {
    let mut p = Parser { b };
    let offset = i64::from_be_bytes(p.take(8)?.try_into().ok()?);
    let timestamp = i64::from_be_bytes(p.take(8)?.try_into().ok()?);
    let attrs = p.take(1)?[0];
    let key = if attrs & 2 != 0 {
        Some(p.field()?.to_vec())
    } else {
        None
    };
    let value = if attrs & 4 != 0 {
        Some(p.field()?.to_vec())
    } else {
        None
    };
    let n = p.u32()? as usize;
    let mut headers = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let k = p.field()?.to_vec();
        let vlen = p.u32()? as i32;
        let v = if vlen < 0 {
            None
        } else {
            Some(p.take(vlen as usize)?.to_vec())
        };
        headers.push((k, v));
    }
    p.b.is_empty().then_some(Record {
        offset,
        timestamp,
        log_append_time: attrs & 1 != 0,
        key,
        value,
        headers,
    })
}

struct Parser<'a> {
    b: &'a [u8],
}

impl<'a> Parser<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn field(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn records() -> Vec<Record> {
        (0..50)
            .map(|i| Record {
                offset: 100 + i * 2,
                timestamp: 1_700_000_000_000 + i,
                log_append_time: i % 7 == 0,
                key: (i % 3 != 0).then(|| format!("k{i}").into_bytes()),
                value: (i % 5 != 0).then(|| vec![i as u8; i as usize * 10]),
                headers: vec![(b"a".to_vec(), Some(b"x".to_vec())), (b"a".to_vec(), None)],
            })
            .collect()
    }

    fn write(h: &Header, rs: &[Record]) -> (Vec<u8>, Summary) {
        let mut out = Vec::new();
        let mut e = Encoder::start(h, &mut out);
        for r in rs {
            e.record(r, &mut out);
        }
        let s = e.finish(&mut out);
        (out, s)
    }

    #[test]
    fn a_segment_round_trips_and_its_digest_ignores_offsets() {
        let h = Header {
            topic: "orders.eu".into(),
            partition: 3,
            first: 100,
            end: 200,
        };
        let rs = records();
        let (bytes, s) = write(&h, &rs);
        assert_eq!(s.records, 50);
        assert_eq!(s.last_offset, 198);
        let mut d = Decoder::new(&bytes[..]).unwrap();
        assert_eq!(d.header, h);
        let mut back = Vec::new();
        while let Some(r) = d.next_record().unwrap() {
            back.push(r);
        }
        assert_eq!(back, rs);
        assert_eq!(d.summary(), Some(&s));
        // The same records at other offsets (a restored topic) have the same digest.
        let moved: Vec<Record> = rs
            .iter()
            .enumerate()
            .map(|(i, r)| Record {
                offset: i as i64,
                ..r.clone()
            })
            .collect();
        assert_eq!(write(&h, &moved).1.digest, s.digest);
        let mut d = RecordDigest::default();
        moved.iter().for_each(|r| d.add(r));
        let d = d.finish();
        assert_eq!((d.records, &d.digest), (50, &s.digest));
    }

    #[test]
    fn damage_and_truncation_are_errors() {
        let h = Header {
            topic: "t".into(),
            partition: 0,
            first: 0,
            end: 100,
        };
        let (bytes, _) = write(&h, &records());
        let read_all = |b: &[u8]| -> io::Result<()> {
            let mut d = Decoder::new(b)?;
            while d.next_record()?.is_some() {}
            Ok(())
        };
        read_all(&bytes).unwrap();
        let mut flipped = bytes.clone();
        flipped[200] ^= 0x10;
        assert!(read_all(&flipped).is_err());
        let err = read_all(&bytes[..bytes.len() - 60]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
