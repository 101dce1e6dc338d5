//! The index: which pack holds each blob. Index files under `index/` are JSON lists of packs
//! and their blobs; the in-memory [`MasterIndex`] merges all of them into one compact table of
//! 48-byte entries plus a hash table of 4-byte slots (about 54 bytes per blob), so that
//! repositories with tens of millions of blobs fit in memory. Entries live in fixed blocks
//! rather than one vector: growing never copies them and never holds twice their size, which
//! at 10 million blobs would be a transient extra of half a gigabyte.

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::pack::{BlobType, PackedBlob};

/// One index file as stored.
#[derive(Serialize, Deserialize, Default, Debug, Clone)]
pub struct IndexFile {
    /// Index files this one replaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<Id>,
    /// Packs described.
    pub packs: Vec<IndexPack>,
}

/// One pack in an index file.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexPack {
    /// Pack id.
    pub id: Id,
    /// Blobs in the pack.
    pub blobs: Vec<IndexBlob>,
}

/// One blob in an index file.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct IndexBlob {
    /// Plaintext id.
    pub id: Id,
    /// Kind.
    #[serde(rename = "type")]
    pub kind: BlobType,
    /// Offset in the pack.
    pub offset: u32,
    /// Encrypted length.
    pub length: u32,
    /// Plaintext length when compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
}

impl IndexPack {
    /// Builds the index record of a freshly written pack.
    pub fn new(id: Id, blobs: &[PackedBlob]) -> IndexPack {
        IndexPack {
            id,
            blobs: blobs
                .iter()
                .map(|b| IndexBlob {
                    id: b.id,
                    kind: b.kind,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                })
                .collect(),
        }
    }
}

const TREE_BIT: u32 = 1 << 31;
const COMPRESSED_BIT: u32 = 1 << 30;
const PACK_MASK: u32 = COMPRESSED_BIT - 1;

#[derive(Clone, Copy)]
struct Entry {
    id: [u8; 32],
    pack: u32,
    offset: u32,
    length: u32,
    uncompressed: u32,
}

/// Entries per block: 64 Ki entries, 3 MiB.
const BLOCK: usize = 1 << 16;

/// An append-only list of entries in fixed-size blocks.
#[derive(Default)]
struct Entries {
    blocks: Vec<Vec<Entry>>,
    len: usize,
}

impl Entries {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, e: Entry) {
        match self.blocks.last_mut() {
            Some(b) if !self.len.is_multiple_of(BLOCK) => b.push(e),
            _ => {
                let mut b = Vec::with_capacity(BLOCK);
                b.push(e);
                self.blocks.push(b);
            }
        }
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.blocks.iter().flatten()
    }

    fn capacity(&self) -> usize {
        self.blocks.iter().map(Vec::capacity).sum()
    }

    fn shrink_to_fit(&mut self) {
        if let Some(b) = self.blocks.last_mut() {
            b.shrink_to_fit();
        }
        self.blocks.shrink_to_fit();
    }
}

impl std::ops::Index<usize> for Entries {
    type Output = Entry;

    fn index(&self, n: usize) -> &Entry {
        &self.blocks[n / BLOCK][n % BLOCK]
    }
}

/// The index's blob positions grouped by pack ([`MasterIndex::by_pack`]); packs sorted by id.
pub struct PackOrder {
    order: Vec<u32>,
    packs: Vec<(Id, u32, u32)>,
}

impl PackOrder {
    /// Number of packs.
    pub fn len(&self) -> usize {
        self.packs.len()
    }

    /// True when no pack is indexed.
    pub fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }

    /// The `k`th pack's id.
    pub fn pack(&self, k: usize) -> Id {
        self.packs[k].0
    }

    /// The position of a pack, if indexed.
    pub fn find(&self, pack: &Id) -> Option<usize> {
        self.packs.binary_search_by_key(pack, |p| p.0).ok()
    }
}

/// Where a blob is, resolved to its pack id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// Pack id.
    pub pack: Id,
    /// The blob's header entry.
    pub blob: PackedBlob,
}

/// All index entries of a repository, in memory.
#[derive(Default)]
pub struct MasterIndex {
    entries: Entries,
    table: HashTable<u32>,
    packs: Vec<Id>,
    pack_table: HashTable<u32>,
    pack_sizes: Vec<u64>,
}

fn hash_id(id: &[u8; 32]) -> u64 {
    // Ids are SHA-256 outputs: their bytes are already uniformly distributed.
    u64::from_le_bytes(id[..8].try_into().expect("8 bytes"))
}

impl MasterIndex {
    /// An empty index.
    pub fn new() -> MasterIndex {
        MasterIndex::default()
    }

    /// Number of blob entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no blob is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Number of packs.
    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    fn pack_number(&mut self, id: Id) -> u32 {
        let h = hash_id(&id.0);
        let packs = &self.packs;
        if let Some(&n) = self.pack_table.find(h, |&n| packs[n as usize] == id) {
            return n;
        }
        let n = self.packs.len() as u32;
        assert!(n < PACK_MASK, "more than 2^30 packs");
        self.packs.push(id);
        self.pack_sizes.push(0);
        let packs = &self.packs;
        self.pack_table
            .insert_unique(h, n, |&m| hash_id(&packs[m as usize].0));
        n
    }

    /// Adds every blob of a pack. A blob already present elsewhere is added too, so that every
    /// copy is known (lookups return the first).
    pub fn add_pack(&mut self, pack: Id, blobs: &[PackedBlob]) {
        let p = self.pack_number(pack);
        for b in blobs {
            let mut flags = p;
            if b.kind == BlobType::Tree {
                flags |= TREE_BIT;
            }
            if b.uncompressed_length.is_some() {
                flags |= COMPRESSED_BIT;
            }
            let n = self.entries.len() as u32;
            self.entries.push(Entry {
                id: b.id.0,
                pack: flags,
                offset: b.offset,
                length: b.length,
                uncompressed: b.uncompressed_length.unwrap_or(0),
            });
            let end = b.offset as u64 + b.length as u64;
            let size = &mut self.pack_sizes[p as usize];
            *size = (*size).max(end);
            let entries = &self.entries;
            self.table
                .insert_unique(hash_id(&b.id.0), n, |&m| hash_id(&entries[m as usize].id));
        }
    }

    /// Adds every pack of an index file.
    pub fn add_file(&mut self, f: &IndexFile) {
        for p in &f.packs {
            let blobs: Vec<PackedBlob> = p
                .blobs
                .iter()
                .map(|b| PackedBlob {
                    id: b.id,
                    kind: b.kind,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                })
                .collect();
            self.add_pack(p.id, &blobs);
        }
    }

    fn resolve(&self, e: &Entry) -> BlobLocation {
        BlobLocation {
            pack: self.packs[(e.pack & PACK_MASK) as usize],
            blob: PackedBlob {
                id: Id(e.id),
                kind: if e.pack & TREE_BIT != 0 {
                    BlobType::Tree
                } else {
                    BlobType::Data
                },
                offset: e.offset,
                length: e.length,
                uncompressed_length: (e.pack & COMPRESSED_BIT != 0).then_some(e.uncompressed),
            },
        }
    }

    fn matches(e: &Entry, id: &Id, kind: BlobType) -> bool {
        e.id == id.0 && ((e.pack & TREE_BIT != 0) == (kind == BlobType::Tree))
    }

    /// The first known location of a blob.
    pub fn lookup(&self, id: &Id, kind: BlobType) -> Option<BlobLocation> {
        self.table
            .find(hash_id(&id.0), |&n| {
                Self::matches(&self.entries[n as usize], id, kind)
            })
            .map(|&n| self.resolve(&self.entries[n as usize]))
    }

    /// Every known location of a blob.
    pub fn lookup_all(&self, id: &Id, kind: BlobType) -> Vec<BlobLocation> {
        self.table
            .iter_hash(hash_id(&id.0))
            .filter(|&&n| Self::matches(&self.entries[n as usize], id, kind))
            .map(|&n| self.resolve(&self.entries[n as usize]))
            .collect()
    }

    /// Whether the blob is indexed.
    pub fn has(&self, id: &Id, kind: BlobType) -> bool {
        self.lookup(id, kind).is_some()
    }

    /// Every pack id with the size its blobs imply (without the header).
    pub fn packs(&self) -> impl Iterator<Item = (Id, u64)> + '_ {
        self.packs
            .iter()
            .copied()
            .zip(self.pack_sizes.iter().copied())
    }

    /// Every blob location.
    pub fn iter(&self) -> impl Iterator<Item = BlobLocation> + '_ {
        self.entries.iter().map(|e| self.resolve(e))
    }

    /// Every blob position grouped by pack, ordered by offset within each pack, each
    /// position once (an interrupted prune can leave a pack named by two index files): what a
    /// check walks pack by pack. It holds 4 bytes a blob plus 40 a pack, where a map from
    /// each pack to its blobs would copy every entry.
    pub fn by_pack(&self) -> PackOrder {
        let key = |n: u32| {
            let e = &self.entries[n as usize];
            (e.pack & PACK_MASK, e.offset)
        };
        let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
        order.sort_unstable_by_key(|&n| key(n));
        order.dedup_by_key(|n| key(*n));
        let mut packs = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let pack = key(order[start]).0;
            let end = start + order[start..].partition_point(|&n| key(n).0 == pack);
            packs.push((self.packs[pack as usize], start as u32, end as u32));
            start = end;
        }
        packs.sort_unstable_by_key(|p| p.0);
        PackOrder { order, packs }
    }

    /// The blobs of the `k`th pack of `order` (made by [`MasterIndex::by_pack`] of this
    /// index), by offset.
    pub fn pack_blobs(&self, order: &PackOrder, k: usize) -> Vec<PackedBlob> {
        let (_, start, end) = order.packs[k];
        order.order[start as usize..end as usize]
            .iter()
            .map(|&n| self.resolve(&self.entries[n as usize]).blob)
            .collect()
    }

    /// Releases spare capacity after a bulk load.
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        self.packs.shrink_to_fit();
        self.pack_sizes.shrink_to_fit();
    }

    /// Approximate heap bytes used, for the memory budget.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.packs.capacity() * 40
            + self.pack_table.capacity() * 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(i: u32, kind: BlobType) -> PackedBlob {
        PackedBlob {
            id: Id::hash(&i.to_le_bytes()),
            kind,
            offset: i * 100,
            length: 100,
            uncompressed_length: i.is_multiple_of(2).then_some(300),
        }
    }

    #[test]
    fn lookup_and_types() {
        let mut m = MasterIndex::new();
        let p1 = Id::hash(b"p1");
        let blobs: Vec<_> = (0..1000).map(|i| blob(i, BlobType::Data)).collect();
        m.add_pack(p1, &blobs);
        m.add_pack(Id::hash(b"p2"), &[blob(5, BlobType::Tree)]);
        assert_eq!(m.len(), 1001);
        let l = m.lookup(&blobs[7].id, BlobType::Data).unwrap();
        assert_eq!(l.pack, p1);
        assert_eq!(l.blob, blobs[7]);
        assert!(m.lookup(&blobs[7].id, BlobType::Tree).is_none());
        assert_eq!(
            m.lookup(&blobs[5].id, BlobType::Tree).unwrap().pack,
            Id::hash(b"p2")
        );
        assert!(!m.has(&Id::hash(b"none"), BlobType::Data));
        assert_eq!(m.packs().count(), 2);
    }

    #[test]
    fn memory_per_blob_under_64_bytes() {
        let mut m = MasterIndex::new();
        let blobs: Vec<_> = (0..200_000).map(|i| blob(i, BlobType::Data)).collect();
        for (n, chunk) in blobs.chunks(1000).enumerate() {
            m.add_pack(Id::hash(&n.to_le_bytes()), chunk);
        }
        m.entries.shrink_to_fit();
        let per = m.heap_bytes() as f64 / m.len() as f64;
        assert!(per < 64.0, "{per} bytes per blob");
        // Entries past the first blocks, and ones added after the shrink, resolve.
        for i in [0, BLOCK - 1, BLOCK, 2 * BLOCK + 5, 199_999] {
            assert_eq!(
                m.lookup(&blobs[i].id, BlobType::Data).unwrap().blob,
                blobs[i]
            );
        }
        let late = blob(300_000, BlobType::Data);
        m.add_pack(Id::hash(b"late"), &[late]);
        assert_eq!(m.lookup(&late.id, BlobType::Data).unwrap().blob, late);
        assert_eq!(m.iter().count(), 200_001);
    }

    #[test]
    fn by_pack_groups_each_position_once() {
        let mut m = MasterIndex::new();
        let (p1, p2) = (Id::hash(b"p1"), Id::hash(b"p2"));
        m.add_pack(p1, &[blob(3, BlobType::Data), blob(1, BlobType::Tree)]);
        m.add_pack(p2, &[blob(2, BlobType::Data)]);
        // The same pack named again by a second index file.
        m.add_pack(p1, &[blob(3, BlobType::Data), blob(1, BlobType::Tree)]);
        let order = m.by_pack();
        assert_eq!(order.len(), 2);
        let k = order.find(&p1).unwrap();
        assert_eq!(order.pack(k), p1);
        let blobs = m.pack_blobs(&order, k);
        assert_eq!(
            blobs,
            vec![blob(1, BlobType::Tree), blob(3, BlobType::Data)]
        );
        let k2 = order.find(&p2).unwrap();
        assert_eq!(m.pack_blobs(&order, k2), vec![blob(2, BlobType::Data)]);
        assert!(order.find(&Id::hash(b"none")).is_none());
        assert!(order.pack(0) < order.pack(1));
    }

    #[test]
    fn index_json_shape() {
        let f = IndexFile {
            supersedes: vec![],
            packs: vec![IndexPack::new(
                Id::hash(b"p"),
                &[blob(2, BlobType::Data), blob(3, BlobType::Tree)],
            )],
        };
        let j = serde_json::to_string(&f).unwrap();
        assert!(!j.contains("supersedes"));
        assert!(j.contains("\"type\":\"data\""));
        assert!(j.contains("\"uncompressed_length\":300"));
        let back: IndexFile = serde_json::from_str(&j).unwrap();
        assert_eq!(back.packs[0].blobs.len(), 2);
    }
}
