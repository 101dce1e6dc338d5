//! Pack files: `EncBlob1 .. EncBlobN || EncHeader || HeaderLength(u32 LE)`. Each blob is
//! compressed (optionally) and encrypted on its own; the header lists type, encrypted length,
//! uncompressed length (compressed blobs only) and plaintext id of each blob. A pack is named
//! by the SHA-256 of its bytes. Data and tree blobs go to separate packs so that tree packs can
//! be cached.

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, Key, OVERHEAD};
use crate::id::Id;

/// The two kinds of blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    /// File content.
    Data,
    /// A directory listing.
    Tree,
}

impl std::fmt::Display for BlobType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        })
    }
}

/// Where one blob lives inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedBlob {
    /// Plaintext id.
    pub id: Id,
    /// Kind.
    pub kind: BlobType,
    /// Offset of the encrypted blob in the pack.
    pub offset: u32,
    /// Encrypted length.
    pub length: u32,
    /// Plaintext length when the blob is compressed.
    pub uncompressed_length: Option<u32>,
}

impl PackedBlob {
    /// Plaintext size of the blob.
    pub fn data_length(&self) -> u32 {
        self.uncompressed_length
            .unwrap_or(self.length.saturating_sub(OVERHEAD as u32))
    }
}

/// How hard to compress blobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Store plaintext (still encrypted).
    Off,
    /// zstd at this level; incompressible blobs are stored uncompressed.
    Level(i32),
}

impl Compression {
    /// restic's names: auto, off, max, fastest, better; or a zstd level.
    pub fn parse(s: &str) -> Option<Compression> {
        Some(match s {
            "auto" => Compression::AUTO,
            "off" => Compression::Off,
            "max" => Compression::Level(19),
            "fastest" => Compression::Level(1),
            "better" => Compression::Level(9),
            n => Compression::Level(n.parse().ok().filter(|l| (-7..=22).contains(l))?),
        })
    }
    /// The default: zstd level 2, which on real data (binaries, libraries, documents) stores
    /// within about 1% of restic's `auto` size at twice its speed (see bench/peers.sh).
    pub const AUTO: Compression = Compression::Level(2);
}

/// Compresses (when worthwhile) and encrypts blobs; holds a reusable zstd context, so keep
/// one per worker thread.
pub struct Sealer {
    compression: Compression,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
}

impl Sealer {
    /// A sealer for `compression`.
    pub fn new(compression: Compression) -> Sealer {
        let compressor = match compression {
            Compression::Off => None,
            Compression::Level(l) => zstd::bulk::Compressor::new(l).ok(),
        };
        Sealer {
            compression,
            compressor,
            scratch: Vec::new(),
        }
    }

    /// The compression this sealer applies.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// What to encrypt for `plain`: its compressed form when that saves at least 1/32 (with
    /// the plaintext length, which marks the blob compressed), else `plain` itself.
    pub fn compress<'a>(&'a mut self, plain: &'a [u8]) -> (&'a [u8], Option<u32>) {
        if let Some(c) = self.compressor.as_mut() {
            if !plain.is_empty() {
                // A destination of that size makes zstd give up early on incompressible data.
                let limit = plain.len() - plain.len() / 32;
                self.scratch.clear();
                self.scratch.reserve(limit);
                if c.compress_to_buffer(plain, &mut self.scratch).is_ok()
                    && self.scratch.len() < limit
                {
                    return (&self.scratch, Some(plain.len() as u32));
                }
            }
        }
        (plain, None)
    }
}

/// Why a blob could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Decryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// zstd failed.
    #[error("decompressing blob: {0}")]
    Decompress(std::io::Error),
    /// Plaintext hash differs from the id.
    #[error("blob hash mismatch: expected {expected}, got {actual}")]
    Hash {
        /// Id from the index.
        expected: Id,
        /// Hash of what was read.
        actual: Id,
    },
    /// Header or length inconsistent.
    #[error("invalid pack header: {0}")]
    Header(String),
}

/// Decompresses a compressed blob's plaintext of known length.
pub fn decompress(compressed: &[u8], len: usize) -> Result<Vec<u8>, BlobError> {
    thread_local! {
        // A zstd context is ~100 KiB of fresh pages: creating one per blob cost more than
        // decompressing a small tree blob.
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(BlobError::Decompress)?),
        };
        d.decompress(compressed, len).map_err(BlobError::Decompress)
    })
}

/// Decrypts, decompresses and verifies one blob read from a pack.
pub fn open_blob(key: &Key, blob: &PackedBlob, enc: &[u8]) -> Result<Vec<u8>, BlobError> {
    let plain = key.decrypt(enc)?;
    let plain = match blob.uncompressed_length {
        Some(n) => decompress(&plain, n as usize)?,
        None => plain,
    };
    let actual = Id::hash(&plain);
    if actual != blob.id {
        return Err(BlobError::Hash {
            expected: blob.id,
            actual,
        });
    }
    Ok(plain)
}

/// Accumulates encrypted blobs into one pack. The bytes stay in memory unless the caller
/// takes them out with [`PackWriter::take_pending`] as it goes (a pack spooled to a file).
#[derive(Default)]
pub struct PackWriter {
    buf: Vec<u8>,
    blobs: Vec<PackedBlob>,
    // Bytes already taken out: offsets continue after them.
    taken: usize,
}

impl PackWriter {
    /// An empty pack with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> PackWriter {
        PackWriter {
            buf: Vec::with_capacity(capacity),
            blobs: Vec::new(),
            taken: 0,
        }
    }

    /// An empty pack writing into `buf` (cleared), so a pack buffer can be reused.
    pub fn with_buffer(mut buf: Vec<u8>) -> PackWriter {
        buf.clear();
        PackWriter {
            buf,
            blobs: Vec::new(),
            taken: 0,
        }
    }

    /// Bytes of blobs so far.
    pub fn len(&self) -> usize {
        self.taken + self.buf.len()
    }

    /// The bytes added since the last call, which the caller must store in order; they are
    /// dropped from memory once `f` returns Ok.
    pub fn take_pending<E>(&mut self, f: impl FnOnce(&[u8]) -> Result<(), E>) -> Result<(), E> {
        f(&self.buf)?;
        self.taken += self.buf.len();
        self.buf.clear();
        Ok(())
    }

    /// True if no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Number of blobs.
    pub fn count(&self) -> usize {
        self.blobs.len()
    }

    /// Appends an already sealed blob.
    pub fn add_sealed(&mut self, id: Id, kind: BlobType, sealed: &[u8], uncompressed: Option<u32>) {
        let offset = self.len() as u32;
        self.buf.extend_from_slice(sealed);
        self.blobs.push(PackedBlob {
            id,
            kind,
            offset,
            length: sealed.len() as u32,
            uncompressed_length: uncompressed,
        });
    }

    /// Encrypts `payload` (a blob's plaintext or, with `uncompressed` set, its compressed
    /// form) straight into the pack buffer.
    pub fn add_encrypted(
        &mut self,
        key: &Key,
        id: Id,
        kind: BlobType,
        payload: &[u8],
        uncompressed: Option<u32>,
    ) -> PackedBlob {
        let offset = self.len() as u32;
        key.encrypt_into(payload, &mut self.buf);
        let b = PackedBlob {
            id,
            kind,
            offset,
            length: self.len() as u32 - offset,
            uncompressed_length: uncompressed,
        };
        self.blobs.push(b);
        b
    }

    /// Seals `plain` straight into the pack buffer.
    pub fn add(
        &mut self,
        key: &Key,
        id: Id,
        kind: BlobType,
        plain: &[u8],
        sealer: &mut Sealer,
    ) -> PackedBlob {
        let (payload, uncompressed) = sealer.compress(plain);
        self.add_encrypted(key, id, kind, payload, uncompressed)
    }

    /// Appends the encrypted header; returns the pack bytes, its id and its blobs.
    ///
    /// # Panics
    /// When bytes were taken out with [`PackWriter::take_pending`]: use
    /// [`PackWriter::finish_pending`] then.
    pub fn finish(self, key: &Key) -> (Vec<u8>, Id, Vec<PackedBlob>) {
        assert_eq!(
            self.taken, 0,
            "finish() on a pack whose bytes were taken out"
        );
        let (buf, blobs) = self.finish_pending(key);
        let id = Id::hash(&buf);
        (buf, id, blobs)
    }

    /// Appends the encrypted header; returns the bytes not yet taken out (the last of the
    /// pack) and its blobs. The pack's id is the hash of every byte, which the caller who
    /// stored them computes.
    pub fn finish_pending(mut self, key: &Key) -> (Vec<u8>, Vec<PackedBlob>) {
        let mut header = Vec::with_capacity(self.blobs.len() * 41);
        for b in &self.blobs {
            let t = match (b.kind, b.uncompressed_length.is_some()) {
                (BlobType::Data, false) => 0u8,
                (BlobType::Tree, false) => 1,
                (BlobType::Data, true) => 2,
                (BlobType::Tree, true) => 3,
            };
            header.push(t);
            header.extend_from_slice(&b.length.to_le_bytes());
            if let Some(u) = b.uncompressed_length {
                header.extend_from_slice(&u.to_le_bytes());
            }
            header.extend_from_slice(&b.id.0);
        }
        let before = self.buf.len();
        key.encrypt_into(&header, &mut self.buf);
        let hlen = (self.buf.len() - before) as u32;
        self.buf.extend_from_slice(&hlen.to_le_bytes());
        (self.buf, self.blobs)
    }
}

/// Parses a decrypted pack header into blob positions.
pub fn parse_header(plain: &[u8]) -> Result<Vec<PackedBlob>, BlobError> {
    let mut out = Vec::new();
    let mut p = 0usize;
    let mut offset = 0u32;
    let bad = |m: &str| BlobError::Header(m.to_string());
    while p < plain.len() {
        let t = plain[p];
        let (kind, compressed) = match t {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            _ => return Err(bad(&format!("unknown blob type {t}"))),
        };
        let need = if compressed { 41 } else { 37 };
        if p + need > plain.len() {
            return Err(bad("truncated entry"));
        }
        let u32at = |i: usize| u32::from_le_bytes(plain[i..i + 4].try_into().expect("4 bytes"));
        let length = u32at(p + 1);
        let (uncompressed_length, idpos) = if compressed {
            (Some(u32at(p + 5)), p + 9)
        } else {
            (None, p + 5)
        };
        let id = Id(plain[idpos..idpos + 32].try_into().expect("32 bytes"));
        out.push(PackedBlob {
            id,
            kind,
            offset,
            length,
            uncompressed_length,
        });
        offset = offset
            .checked_add(length)
            .ok_or_else(|| bad("blob offsets overflow"))?;
        p += need;
    }
    Ok(out)
}

/// Reads the header of a whole pack held in memory.
pub fn read_header(key: &Key, pack: &[u8]) -> Result<Vec<PackedBlob>, BlobError> {
    read_header_tail(key, pack, pack.len() as u64)
}

/// Where the encrypted header of a pack of `pack_len` bytes starts, from its last four
/// bytes (`last4`).
pub fn header_start(last4: [u8; 4], pack_len: u64) -> Result<u64, BlobError> {
    if pack_len < (4 + OVERHEAD) as u64 {
        return Err(BlobError::Header(format!(
            "pack of {pack_len} bytes is too short"
        )));
    }
    let hlen = u32::from_le_bytes(last4) as u64;
    if hlen + 4 > pack_len {
        return Err(BlobError::Header(format!(
            "header length {hlen} exceeds pack size"
        )));
    }
    Ok(pack_len - 4 - hlen)
}

/// Decrypts and parses the header from `tail`, the last bytes of a pack of `pack_len` bytes
/// (at least the header and its length), so that a pack read in segments need not be held
/// whole.
pub fn read_header_tail(
    key: &Key,
    tail: &[u8],
    pack_len: u64,
) -> Result<Vec<PackedBlob>, BlobError> {
    let last4: [u8; 4] = match tail.len().checked_sub(4).map(|i| &tail[i..]) {
        Some(b) => b
            .try_into()
            .map_err(|_| BlobError::Header("short tail".into()))?,
        None => {
            return Err(BlobError::Header(format!(
                "pack of {pack_len} bytes is too short"
            )))
        }
    };
    let start = header_start(last4, pack_len)?;
    let tail_start = pack_len - tail.len() as u64;
    if start < tail_start {
        return Err(BlobError::Header(format!(
            "the header starts at {start}, before the {} bytes read from the end",
            tail.len()
        )));
    }
    let plain = key.decrypt(&tail[(start - tail_start) as usize..tail.len() - 4])?;
    let blobs = parse_header(&plain)?;
    let start = start as usize;
    if let Some(last) = blobs.last() {
        if last.offset as usize + last.length as usize != start {
            return Err(BlobError::Header(
                "blobs do not end where the header starts".into(),
            ));
        }
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip() {
        let key = Key::random();
        let mut w = PackWriter::default();
        let mut auto = Sealer::new(Compression::AUTO);
        let mut off = Sealer::new(Compression::Off);
        let a = vec![7u8; 100_000];
        let b: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761u32) >> 24) as u8)
            .collect();
        w.add(&key, Id::hash(&a), BlobType::Data, &a, &mut auto);
        w.add(&key, Id::hash(&b), BlobType::Tree, &b, &mut off);
        let (bytes, id, blobs) = w.finish(&key);
        assert_eq!(id, Id::hash(&bytes));
        let hdr = read_header(&key, &bytes).unwrap();
        assert_eq!(hdr, blobs);
        assert!(hdr[0].uncompressed_length.is_some());
        assert!(hdr[1].uncompressed_length.is_none());
        for (blob, want) in hdr.iter().zip([&a, &b]) {
            let enc = &bytes[blob.offset as usize..(blob.offset + blob.length) as usize];
            assert_eq!(&open_blob(&key, blob, enc).unwrap(), want);
        }
    }
}
