//! Checking an RDB stream as it arrives: the `REDIS` magic, the version, the EOF opcode and
//! the CRC-64 trailer (Jones, reflected, as in Redis).

use super::*;

/// Reflected form of the polynomial 0xad93d23594c935a9.
pub(super) const CRC64_POLY: u64 = 0x95ac_9329_ac4b_c9b5;

pub(super) const fn crc64_tables() -> [[u64; 256]; 8] {
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut j = 0;
        while j < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC64_POLY
            } else {
                crc >> 1
            };
            j += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

pub(super) static CRC64_TABLES: [[u64; 256]; 8] = crc64_tables();

/// Continues Redis's CRC-64 (`crc64(crc, data, len)`: initial value 0, no final xor) over
/// `data`, eight bytes at a time.
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    let t = &CRC64_TABLES;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v =
            crc ^ u64::from_le_bytes(c.try_into().expect("chunks_exact(8) yields 8-byte slices"));
        crc = t[7][(v & 0xff) as usize]
            ^ t[6][((v >> 8) & 0xff) as usize]
            ^ t[5][((v >> 16) & 0xff) as usize]
            ^ t[4][((v >> 24) & 0xff) as usize]
            ^ t[3][((v >> 32) & 0xff) as usize]
            ^ t[2][((v >> 40) & 0xff) as usize]
            ^ t[1][((v >> 48) & 0xff) as usize]
            ^ t[0][(v >> 56) as usize];
    }
    for &b in chunks.remainder() {
        crc = t[0][((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

// ---------------------------------------------------------------------------------------------

pub(super) const RDB_OPCODE_EOF: u8 = 0xff;

/// Checks an RDB as it streams by: magic, EOF opcode, and the CRC-64 of everything before the
/// 8-byte trailer.
#[derive(Default)]
pub(super) struct RdbCheck {
    pub(super) bytes: u64,
    pub(super) crc: u64,
    pub(super) head: [u8; 9],
    /// The last bytes seen, not yet in the CRC (the trailer, once at the end).
    pub(super) tail: [u8; 8],
    pub(super) tail_len: usize,
    pub(super) last_in_crc: Option<u8>,
}

/// A verified RDB.
#[derive(Clone, Debug)]
pub struct RdbSummary {
    /// Size.
    pub bytes: u64,
    /// RDB format version (10 for Redis 7.0, 11 for 7.2, 12 for 7.4).
    pub version: u32,
    /// The CRC-64 (0: the server had `rdbchecksum no`).
    pub crc: u64,
}

impl RdbSummary {
    pub(super) fn crc_text(&self) -> String {
        if self.crc == 0 {
            "no checksum (the server has rdbchecksum no)".into()
        } else {
            format!("CRC-64 {:016x} verified", self.crc)
        }
    }
}

impl RdbCheck {
    pub(super) fn feed(&mut self, data: &[u8]) {
        if let Some(&b) = data.last() {
            self.crc = crc64(self.crc, data);
            self.last_in_crc = Some(b);
        }
    }

    pub(super) fn update(&mut self, data: &[u8]) {
        let have = self.bytes as usize;
        if have < self.head.len() {
            let n = (self.head.len() - have).min(data.len());
            self.head[have..have + n].copy_from_slice(&data[..n]);
        }
        self.bytes += data.len() as u64;
        if data.len() >= 8 {
            let tail = self.tail;
            self.feed(&tail[..self.tail_len]);
            let (body, last) = data.split_at(data.len() - 8);
            self.feed(body);
            self.tail.copy_from_slice(last);
            self.tail_len = 8;
        } else {
            let mut joined = [0u8; 16];
            joined[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            joined[self.tail_len..self.tail_len + data.len()].copy_from_slice(data);
            let n = self.tail_len + data.len();
            let keep = n.min(8);
            self.feed(&joined[..n - keep]);
            self.tail[..keep].copy_from_slice(&joined[n - keep..n]);
            self.tail_len = keep;
        }
    }

    pub(super) fn verify(&self) -> Result<RdbSummary, String> {
        let shown =
            String::from_utf8_lossy(&self.head[..(self.bytes as usize).min(9)]).into_owned();
        // "REDIS" and four digits; Valkey 9 writes "VALKEY" and three (RDB 80).
        let digits = match &self.head {
            [b'R', b'E', b'D', b'I', b'S', ..] => &self.head[5..9],
            [b'V', b'A', b'L', b'K', b'E', b'Y', ..] => &self.head[6..9],
            _ => b"".as_slice(),
        };
        if self.bytes < 9 || digits.is_empty() {
            return Err(format!(
                "not an RDB file: it starts with {shown:?} instead of the REDIS magic ({} bytes)",
                self.bytes
            ));
        }
        let version: u32 = std::str::from_utf8(digits)
            .ok()
            .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("not an RDB file: bad version in {shown:?}"))?;
        if version < 5 {
            // No checksum before RDB 5 (Redis 2.6): the EOF opcode is the last byte.
            if self.tail[self.tail_len - 1] != RDB_OPCODE_EOF {
                return Err("the RDB does not end with the EOF opcode: it is truncated".into());
            }
            return Ok(RdbSummary {
                bytes: self.bytes,
                version,
                crc: 0,
            });
        }
        if self.bytes < 9 + 1 + 8 || self.last_in_crc != Some(RDB_OPCODE_EOF) {
            return Err(format!(
                "the RDB ({} bytes) does not end with the EOF opcode and checksum: it is truncated",
                self.bytes
            ));
        }
        let stored = u64::from_le_bytes(self.tail);
        if stored != 0 && stored != self.crc {
            return Err(format!(
                "CRC-64 mismatch: the RDB's trailer says {stored:016x}, its {} bytes give {:016x}",
                self.bytes, self.crc
            ));
        }
        Ok(RdbSummary {
            bytes: self.bytes,
            version,
            crc: stored,
        })
    }
}

/// A reader that checks the RDB passing through it and fails at the end if it is damaged.
pub(super) struct VerifyingReader<R> {
    pub(super) inner: R,
    pub(super) check: RdbCheck,
    pub(super) summary: Option<RdbSummary>,
    pub(super) error: Option<String>,
}

impl<R: Read> VerifyingReader<R> {
    pub(super) fn new(inner: R) -> Self {
        VerifyingReader {
            inner,
            check: RdbCheck::default(),
            summary: None,
            error: None,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.check.update(&buf[..n]);
            return Ok(n);
        }
        if !buf.is_empty() && self.summary.is_none() {
            match self.check.verify() {
                Ok(s) => self.summary = Some(s),
                Err(e) => {
                    self.error = Some(e.clone());
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
        Ok(0)
    }
}

/// Checks an RDB file: magic, EOF opcode and CRC-64.
pub fn verify_rdb_file(path: &Path) -> Result<RdbSummary, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut r = VerifyingReader::new(io::BufReader::with_capacity(1 << 20, f));
    io::copy(&mut r, &mut io::sink()).map_err(|e| format!("{}: {e}", path.display()))?;
    r.summary
        .ok_or_else(|| format!("{}: empty", path.display()))
}
