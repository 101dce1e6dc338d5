//! Kafka's record batch (message format v2, Kafka 0.11 and later), decoded and encoded here
//! rather than by a client library: a backup must keep every header in order, duplicates
//! and null values included, and each record's timestamp type, which the libraries' record
//! types flatten.
//!
//! A batch is `baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 (2) |
//! crc u32 (CRC-32C of what follows) | attributes i16 | lastOffsetDelta i32 | baseTimestamp
//! i64 | maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 | count
//! i32 | records`, the records compressed as a whole when the attributes say so. A record
//! is `length varint | attributes i8 | timestampDelta varlong | offsetDelta varint | key |
//! value | headers`, lengths as zigzag varints with -1 for null.

use std::io::Read;

/// One record as it was in the partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Offset in its partition.
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The broker set the timestamp when it appended the record (LogAppendTime), rather
    /// than the producer (CreateTime).
    pub log_append_time: bool,
    /// Key; None is a null key.
    pub key: Option<Vec<u8>>,
    /// Value; None is a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers in order, duplicates kept.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Why a batch could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Bytes that are not a batch.
    #[error("malformed record batch at offset {offset}: {what}")]
    Malformed {
        /// Base offset of the batch.
        offset: i64,
        /// What is wrong.
        what: String,
    },
    /// The checksum does not match.
    #[error("record batch at offset {0} fails its CRC-32C check: the broker sent damaged data")]
    Crc(i64),
    /// Message format 0 or 1.
    #[error("record batch at offset {0} uses message format v0/v1 (Kafka before 0.11), which is not supported")]
    OldFormat(i64),
}

const HEADER_LEN: usize = 61;
const ATTR_COMPRESSION: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Transactions the broker reports aborted in a fetch response: (producer id, first offset).
pub type Aborted = [(i64, i64)];

/// What a fetch response's batches hold.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The records, in offset order.
    pub records: Vec<Record>,
    /// The offset after the last complete batch (control batches and aborted records
    /// included), where the next fetch starts; None if no batch was complete.
    pub next: Option<i64>,
}

/// Decodes the record batches of a fetch response's `records`, skipping control batches
/// and the records of aborted transactions. A batch cut short at the end (the broker stops
/// at its size limit) ends the list.
pub fn decode(mut data: &[u8], aborted: &Aborted) -> Result<Decoded, BatchError> {
    let mut out = Vec::new();
    let mut next = None;
    let mut pending: Vec<(i64, i64)> = aborted.to_vec();
    pending.sort_by_key(|&(_, first)| first);
    let mut pending = pending.into_iter().peekable();
    let mut aborting: Vec<i64> = Vec::new();
    while data.len() >= 17 {
        let base = i64::from_be_bytes(be(&data[0..8]));
        let len = i32::from_be_bytes(be(&data[8..12]));
        if len < 0 {
            return Err(malformed(base, "negative batch length"));
        }
        let total = 12 + len as usize;
        if data.len() < total {
            break;
        }
        let batch = &data[..total];
        data = &data[total..];
        // The magic byte sits at the same place in every message format.
        if batch.len() < 17 {
            return Err(malformed(base, "shorter than a batch header"));
        }
        let magic = batch[16] as i8;
        if magic != 2 {
            return Err(BatchError::OldFormat(base));
        }
        if batch.len() < HEADER_LEN {
            return Err(malformed(base, "shorter than a batch header"));
        }
        let crc = u32::from_be_bytes(be(&batch[17..21]));
        if crc32c::crc32c(&batch[21..]) != crc {
            return Err(BatchError::Crc(base));
        }
        let attrs = i16::from_be_bytes(be(&batch[21..23]));
        let last_delta = i32::from_be_bytes(be(&batch[23..27]));
        let base_ts = i64::from_be_bytes(be(&batch[27..35]));
        let max_ts = i64::from_be_bytes(be(&batch[35..43]));
        let producer = i64::from_be_bytes(be(&batch[43..51]));
        let count = i32::from_be_bytes(be(&batch[57..61]));
        let last = base + i64::from(last_delta);
        next = Some(last + 1);
        while let Some(&(p, _)) = pending.peek().filter(|&&(_, first)| first <= last) {
            aborting.push(p);
            pending.next();
        }
        let body = decompress(base, attrs & ATTR_COMPRESSION, &batch[HEADER_LEN..])?;
        if attrs & ATTR_CONTROL != 0 {
            // An end-of-transaction marker: its producer's aborted range ends here.
            aborting.retain(|&p| p != producer);
            continue;
        }
        if attrs & ATTR_TRANSACTIONAL != 0 && aborting.contains(&producer) {
            continue;
        }
        let log_append = attrs & ATTR_LOG_APPEND_TIME != 0;
        let mut r = Reader { buf: &body, base };
        for _ in 0..count.max(0) {
            let mut rec = r.record(base, base_ts)?;
            if log_append {
                rec.timestamp = max_ts;
                rec.log_append_time = true;
            }
            out.push(rec);
        }
    }
    Ok(Decoded { records: out, next })
}

fn be<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn malformed(offset: i64, what: &str) -> BatchError {
    BatchError::Malformed {
        offset,
        what: what.to_string(),
    }
}

fn decompress(base: i64, codec: i16, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| malformed(base, &format!("{what}: {e}"));
    let mut out = Vec::new();
    match codec {
        0 => out.extend_from_slice(data),
        1 => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(|e| fail("gzip", &e))?;
        }
        2 => out = unsnappy(data).map_err(|e| fail("snappy", &e))?,
        3 => {
            lz4_flex::frame::FrameDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(|e| fail("lz4", &e))?;
        }
        4 => out = zstd::stream::decode_all(data).map_err(|e| fail("zstd", &e))?,
        other => {
            return Err(malformed(
                base,
                &format!("unknown compression codec {other}"),
            ))
        }
    }
    Ok(out)
}

/// Snappy as Kafka's clients write it: the Java client's xerial framing (a magic, then
/// length-prefixed raw blocks), or one raw block (librdkafka, Go clients).
fn unsnappy(data: &[u8]) -> Result<Vec<u8>, String> {
    const XERIAL: &[u8] = b"\x82SNAPPY\x00";
    let mut dec = snap::raw::Decoder::new();
    if !data.starts_with(XERIAL) {
        return dec.decompress_vec(data).map_err(|e| e.to_string());
    }
    let mut out = Vec::new();
    let mut rest = data.get(16..).ok_or("truncated xerial header")?;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("truncated xerial block length".into());
        }
        let n = u32::from_be_bytes(be(&rest[..4])) as usize;
        let block = rest.get(4..4 + n).ok_or("truncated xerial block")?;
        out.extend(dec.decompress_vec(block).map_err(|e| e.to_string())?);
        rest = &rest[4 + n..];
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
    base: i64,
}

impl Reader<'_> {
    fn err(&self, what: &str) -> BatchError {
        malformed(self.base, what)
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut v: u64 = 0;
        for shift in (0..70).step_by(7) {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| self.err("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(self.err("varint too long"))
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], BatchError> {
        if self.buf.len() < n {
            return Err(self.err("truncated record"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// A length-prefixed field; -1 is null.
    fn nullable(&mut self) -> Result<Option<Vec<u8>>, BatchError> {
        match self.varlong()? {
            -1 => Ok(None),
            n if n < 0 => Err(self.err("negative field length")),
            n => Ok(Some(self.bytes(n as usize)?.to_vec())),
        }
    }

    fn record(&mut self, base: i64, base_ts: i64) -> Result<Record, BatchError> {
        let len = self.varlong()?;
        if len < 0 || len as usize > self.buf.len() {
            return Err(self.err("record length beyond the batch"));
        }
        let _attributes = self.bytes(1)?;
        let ts_delta = self.varlong()?;
        let offset_delta = self.varlong()?;
        let key = self.nullable()?;
        let value = self.nullable()?;
        let n = self.varlong()?;
        if n < 0 || n as usize > self.buf.len() {
            return Err(self.err("header count beyond the batch"));
        }
        let mut headers = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let k = self
                .nullable()?
                .ok_or_else(|| self.err("null header key"))?;
            headers.push((k, self.nullable()?));
        }
        Ok(Record {
            offset: base + offset_delta,
            timestamp: base_ts + ts_delta,
            log_append_time: false,
            key,
            value,
            headers,
        })
    }
}

/// Who produces a batch: an idempotent producer's id, epoch and the sequence number of the
/// batch's first record in its partition.
#[derive(Clone, Copy, Debug)]
pub struct Producer {
    /// Producer id (-1: not idempotent).
    pub id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of the first record.
    pub sequence: i32,
}

impl Producer {
    /// A producer that is not idempotent: the broker does not deduplicate its batches.
    pub const NONE: Producer = Producer {
        id: -1,
        epoch: -1,
        sequence: -1,
    };
}

/// Encodes `records` as one uncompressed batch with CreateTime timestamps and dense offset
/// deltas (the broker assigns the offsets), for a produce request.
pub fn encode(records: &[&Record], producer: Producer) -> Vec<u8> {
    let base_ts = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let mut body = Vec::new();
    let mut rec = Vec::new();
    for (i, r) in records.iter().enumerate() {
        rec.clear();
        rec.push(0);
        varlong(&mut rec, r.timestamp - base_ts);
        varlong(&mut rec, i as i64);
        nullable(&mut rec, r.key.as_deref());
        nullable(&mut rec, r.value.as_deref());
        varlong(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            nullable(&mut rec, Some(k));
            nullable(&mut rec, v.as_deref());
        }
        varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut tail = Vec::with_capacity(40 + body.len());
    tail.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression, CreateTime
    tail.extend_from_slice(&(records.len().saturating_sub(1) as i32).to_be_bytes());
    tail.extend_from_slice(&base_ts.to_be_bytes());
    tail.extend_from_slice(&max_ts.to_be_bytes());
    tail.extend_from_slice(&producer.id.to_be_bytes());
    tail.extend_from_slice(&producer.epoch.to_be_bytes());
    tail.extend_from_slice(&producer.sequence.to_be_bytes());
    tail.extend_from_slice(&(records.len() as i32).to_be_bytes());
    tail.extend_from_slice(&body);
    let mut out = Vec::with_capacity(21 + tail.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((9 + tail.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch: the broker's
    out.push(2);
    out.extend_from_slice(&crc32c::crc32c(&tail).to_be_bytes());
    out.extend_from_slice(&tail);
    out
}

fn varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn nullable(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => varlong(out, -1),
        Some(b) => {
            varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rec(offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Record {
        Record {
            offset,
            timestamp: 1_700_000_000_000 + offset * 7,
            log_append_time: false,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: vec![(b"h".to_vec(), Some(b"1".to_vec())), (b"h".to_vec(), None)],
        }
    }

    #[test]
    fn a_batch_round_trips_with_duplicate_headers_and_nulls() {
        let rs = [
            rec(0, Some(b"k"), Some(b"v")),
            rec(1, None, None),
            rec(2, Some(b""), Some(&[0u8; 300])),
        ];
        let refs: Vec<&Record> = rs.iter().collect();
        let producer = Producer::NONE;
        let mut two = encode(&refs, producer);
        two.extend(encode(&refs[..1], producer));
        let back = decode(&two, &[]).unwrap();
        // Both batches start at offset 0: the broker assigns offsets when it appends.
        assert_eq!(&back.records[..3], &rs);
        assert_eq!(back.records[3], rs[0]);
        assert_eq!(back.next, Some(1));
        // A batch cut short by the broker's size limit ends the list.
        let back = decode(&two[..two.len() - 5], &[]).unwrap();
        assert_eq!(back.records, rs);
        assert_eq!(back.next, Some(3));
    }

    #[test]
    fn damage_is_caught_by_the_checksum() {
        let r = rec(0, Some(b"k"), Some(b"v"));
        let mut b = encode(&[&r], Producer::NONE);
        let n = b.len();
        b[n - 3] ^= 1;
        assert!(matches!(decode(&b, &[]), Err(BatchError::Crc(0))));
    }

    #[test]
    fn hostile_lengths_are_errors_not_panics() {
        // A batch length of 0, 4 and 40: shorter than any header.
        for len in [0i32, 4, 40] {
            let mut b = vec![0u8; 8];
            b.extend_from_slice(&len.to_be_bytes());
            b.extend(std::iter::repeat_n(2u8, len as usize + 8));
            assert!(decode(&b, &[]).is_err(), "length {len}");
        }
        // A record count far beyond the bytes.
        let r = rec(0, Some(b"k"), Some(b"v"));
        let mut b = encode(&[&r], Producer::NONE);
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode(&b, &[]), Err(BatchError::Malformed { .. })));
    }

    #[test]
    fn varints_are_zigzag() {
        for v in [0i64, -1, 1, 63, -64, 64, 300, -301, i64::MAX, i64::MIN] {
            let mut b = Vec::new();
            varlong(&mut b, v);
            let mut r = Reader { buf: &b, base: 0 };
            assert_eq!(r.varlong().unwrap(), v);
        }
    }
}
