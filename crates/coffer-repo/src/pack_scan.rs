//! Reading the blobs of a pack whose header and index entries are both lost: blobs are laid
//! end to end from offset 0, each an encrypted object whose MAC authenticates only at its
//! true end, so a scan finds each one's length ([`Key::sealed_len_at`]), then decrypts and
//! hashes it to learn its id. The pack's own (encrypted) header is an object too: when one
//! parses as the header of exactly the blobs found so far, its entries are used instead,
//! since only it knows the blob types for sure.

use crate::crypto::{Key, OVERHEAD};
use crate::id::Id;
use crate::pack::{parse_header, BlobType, PackedBlob};
use crate::tree::Tree;

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Blobs that authenticate, with their ids and types (a compressed-looking blob may be
    /// listed twice, raw and decompressed: both descriptions read back correctly).
    pub blobs: Vec<PackedBlob>,
    /// Bytes after the last blob found that could not be read (damage stops the scan: the
    /// next blob's start is not known).
    pub unread: u64,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Scans `pack` (the whole file) for blobs.
pub fn scan_pack(key: &Key, pack: &[u8]) -> Scanned {
    let mut out = Scanned::default();
    let mut at = 0usize;
    while at + OVERHEAD <= pack.len() {
        let Some(n) = key.sealed_len_at(&pack[at..]) else {
            break;
        };
        let Ok(plain) = key.decrypt(&pack[at..at + n]) else {
            break;
        };
        if let Ok(h) = parse_header(&plain) {
            let mut found: Vec<(u32, u32)> =
                out.blobs.iter().map(|b| (b.offset, b.length)).collect();
            found.dedup();
            let same = h.len() == found.len()
                && h.iter()
                    .zip(&found)
                    .all(|(a, b)| (a.offset, a.length) == *b);
            if same && !h.is_empty() {
                out.blobs = h;
                return out;
            }
        }
        let (offset, length) = (at as u32, n as u32);
        let describe = |plain: &[u8], uncompressed_length| PackedBlob {
            id: Id::hash(plain),
            kind: match Tree::from_blob(plain) {
                Ok(_) => BlobType::Tree,
                Err(_) => BlobType::Data,
            },
            offset,
            length,
            uncompressed_length,
        };
        let raw = describe(&plain, None);
        let decompressed = plain
            .starts_with(&ZSTD_MAGIC)
            .then(|| zstd::stream::decode_all(&plain[..]).ok())
            .flatten();
        match decompressed {
            // A compressed blob; a raw blob that happens to be a whole zstd frame (a small
            // .zst file) is kept in its raw description too.
            Some(d) => {
                out.blobs.push(describe(&d, Some(d.len() as u32)));
                out.blobs.push(raw);
            }
            None => out.blobs.push(raw),
        }
        at += n;
    }
    out.unread = (pack.len() - at.min(pack.len())) as u64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{open_blob, Compression, PackWriter, Sealer};

    #[test]
    fn finds_every_blob_without_a_header() {
        let key = Key::random();
        let mut w = PackWriter::with_capacity(1 << 20);
        let mut sealer = Sealer::new(Compression::AUTO);
        let data = vec![9u8; 300_000];
        let tree = br#"{"nodes":[]}"#.to_vec();
        let noise: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for (b, kind) in [
            (&data, BlobType::Data),
            (&tree, BlobType::Tree),
            (&noise, BlobType::Data),
        ] {
            w.add(&key, Id::hash(b), kind, b, &mut sealer);
        }
        let (bytes, _, header) = w.finish(&key);
        assert!(
            header[0].uncompressed_length.is_some(),
            "the zeros compress"
        );
        // With the header: found, and the header's own entries are used.
        let s = scan_pack(&key, &bytes);
        assert_eq!(s.blobs, header);
        // Header gone, 100 bytes of junk appended: every blob is still found and reads back.
        let body = header
            .last()
            .map(|b| (b.offset + b.length) as usize)
            .unwrap();
        let mut cut = bytes[..body].to_vec();
        cut.extend_from_slice(&[0x55; 100]);
        let s = scan_pack(&key, &cut);
        for h in &header {
            let f = s
                .blobs
                .iter()
                .find(|b| b.id == h.id)
                .unwrap_or_else(|| panic!("blob {} not found", h.id));
            assert_eq!((f.kind, f.offset, f.length), (h.kind, h.offset, h.length));
            let enc = &cut[f.offset as usize..(f.offset + f.length) as usize];
            open_blob(&key, f, enc).unwrap();
        }
        assert_eq!(s.unread, 100);
        // A flipped byte in the second blob: the first is found, the scan stops there.
        let mut bad = bytes[..body].to_vec();
        bad[header[1].offset as usize + 20] ^= 1;
        let s = scan_pack(&key, &bad);
        assert!(
            s.blobs.iter().all(|b| b.offset == header[0].offset),
            "{s:?}"
        );
        assert!(s.blobs.iter().any(|b| b.id == header[0].id), "{s:?}");
    }
}
