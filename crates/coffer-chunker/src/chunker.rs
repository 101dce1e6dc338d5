//! The content-defined chunker, port of `chunker.go` from
//! `github.com/restic/chunker`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::Pol;

/// Size of the sliding window in bytes.
pub const WINDOW_SIZE: usize = 64;
/// Minimal chunk size (512 KiB): no chunk except the last one of a stream is
/// shorter.
pub const MIN_SIZE: usize = 512 * 1024;
/// Maximal chunk size (8 MiB).
pub const MAX_SIZE: usize = 8 * 1024 * 1024;
/// A chunk boundary is placed where the lowest `AVERAGE_BITS` bits of the
/// fingerprint are zero (restic's default of 20 bits).
pub const AVERAGE_BITS: u32 = 20;

const SPLITMASK: u64 = (1 << AVERAGE_BITS) - 1;
const WMASK: usize = WINDOW_SIZE - 1;

// The sliding window index arithmetic below relies on this.
const _: () = assert!(WINDOW_SIZE.is_power_of_two() && MIN_SIZE >= WINDOW_SIZE);

/// Precomputed lookup tables for one polynomial of degree `k`.
///
/// The byte-at-a-time path (`Chunker::slide`) is a literal port of Go's
/// `slide`/`updateDigest` on the fingerprint `d < 2^k`. The fast path
/// ([`scan`]) works on the same fingerprint kept left-aligned in the word,
/// `a = d << (64 - k)`, which gives the same values (`d = a >> (64 - k)`) with
/// a shorter critical path: the reduction index is simply `a >> 56`, and the
/// 8 bits shifted out at the top need no cancelling.
struct Tables {
    /// `out[b]` = fingerprint of `b` followed by 63 zero bytes; XOR-ing it
    /// removes byte `b` leaving the window.
    out: [u64; 256],
    /// `modt[b]` = `(b * x^k mod pol) | (b << k)`: one XOR reduces the 8 bits
    /// shifted out above the degree.
    modt: [u64; 256],
    /// `k - 8`.
    shift: u32,
    /// Left-aligned `out[b] * x^8 mod pol`: the removal of the oldest byte
    /// already pushed through the following shift/reduce step, so that it is
    /// not on the critical dependency chain.
    out_a: [u64; 256],
    /// Left-aligned `b * x^k mod pol`.
    mod_a: [u64; 256],
    /// `64 - k`.
    align: u32,
    /// Left-aligned `SPLITMASK` (bits that do not exist in the fingerprint
    /// fall off the top).
    splitmask_a: u64,
}

impl Tables {
    fn new(pol: Pol) -> Tables {
        let k = pol.deg();
        assert!((8..=53).contains(&k));
        let append_byte = |hash: u64, b: u8| (Pol((hash << 8) | b as u64) % pol).0;

        let mut out = [0u64; 256];
        for (b, o) in out.iter_mut().enumerate() {
            let mut h = append_byte(0, b as u8);
            for _ in 0..WINDOW_SIZE - 1 {
                h = append_byte(h, 0);
            }
            *o = h;
        }
        let mut modt = [0u64; 256];
        for (b, m) in modt.iter_mut().enumerate() {
            let b = b as u64;
            *m = (Pol(b << k) % pol).0 | (b << k);
        }
        let align = 64 - k as u32;
        let mut out_a = [0u64; 256];
        for (oa, &o) in out_a.iter_mut().zip(out.iter()) {
            *oa = append_byte(o, 0) << align;
        }
        let mut mod_a = [0u64; 256];
        for (b, ma) in mod_a.iter_mut().enumerate() {
            *ma = (Pol((b as u64) << k) % pol).0 << align;
        }
        Tables {
            out,
            modt,
            shift: k as u32 - 8,
            out_a,
            mod_a,
            align,
            splitmask_a: SPLITMASK << align,
        }
    }

    /// Tables for `pol`, computed once per polynomial and process.
    fn get(pol: Pol) -> Arc<Tables> {
        static CACHE: OnceLock<Mutex<HashMap<Pol, Arc<Tables>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(pol)
            .or_insert_with(|| Arc::new(Tables::new(pol)))
            .clone()
    }

    /// Go's `updateDigest`: appends byte `b` to fingerprint `digest`.
    #[inline(always)]
    fn append(&self, digest: u64, b: u8) -> u64 {
        ((digest << 8) | b as u64) ^ self.modt[((digest >> self.shift) & 0xff) as usize]
    }

    /// Left-aligned: one step of the rolling hash over a full window, removing
    /// byte `old` (the byte `WINDOW_SIZE` positions before `b`) and appending
    /// `b`.
    #[inline(always)]
    fn roll_a(&self, a: u64, old: u8, b: u8) -> u64 {
        (a << 8)
            ^ ((b as u64) << self.align)
            ^ self.out_a[old as usize]
            ^ self.mod_a[(a >> 56) as usize]
    }

    /// Left-aligned [`append`](Tables::append).
    #[inline(always)]
    fn append_a(&self, a: u64, b: u8) -> u64 {
        (a << 8) ^ ((b as u64) << self.align) ^ self.mod_a[(a >> 56) as usize]
    }
}

/// Streaming content-defined chunker (restic's `chunker.Chunker`).
///
/// Feed the stream to [`next_boundary`](Chunker::next_boundary) in slices of
/// any size; the chunk boundaries do not depend on how the stream is sliced.
/// Cloning is cheap (the lookup tables are shared).
#[derive(Clone)]
pub struct Chunker {
    tables: Arc<Tables>,
    pol: Pol,
    /// Ring buffer of the last `WINDOW_SIZE` hashed bytes, oldest at `wpos`.
    window: [u8; WINDOW_SIZE],
    wpos: usize,
    digest: u64,
    /// Bytes of the current chunk seen so far.
    count: usize,
    /// Bytes still to skip (not hashed) at the start of the current chunk.
    pre: usize,
    last_cut: u64,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("pol", &self.pol)
            .field("chunk_len", &self.count)
            .field("digest", &format_args!("{:#016x}", self.digest))
            .finish_non_exhaustive()
    }
}

impl Chunker {
    /// A chunker for the polynomial `pol` (the repository's
    /// `chunker_polynomial`).
    ///
    /// The lookup tables are computed on first use of a polynomial and cached
    /// for the life of the process.
    ///
    /// # Panics
    ///
    /// If `pol` has a degree outside `8..=53`, with which restic's chunker
    /// cannot run either; use [`Chunker::try_new`] for untrusted input.
    pub fn new(pol: Pol) -> Chunker {
        Chunker::try_new(pol).unwrap_or_else(|| {
            panic!(
                "chunker polynomial {pol} has degree {}, must be in 8..=53",
                pol.deg()
            )
        })
    }

    /// Like [`Chunker::new`], but returns `None` if the degree of `pol` is not
    /// in `8..=53`. (Irreducibility is not checked, as in restic.)
    pub fn try_new(pol: Pol) -> Option<Chunker> {
        if !(8..=53).contains(&pol.deg()) {
            return None;
        }
        let mut c = Chunker {
            tables: Tables::get(pol),
            pol,
            window: [0; WINDOW_SIZE],
            wpos: 0,
            digest: 0,
            count: 0,
            pre: 0,
            last_cut: 0,
        };
        c.reset();
        Some(c)
    }

    /// The polynomial this chunker uses.
    pub fn pol(&self) -> Pol {
        self.pol
    }

    /// Forgets the current chunk: the next byte passed to
    /// [`next_boundary`](Chunker::next_boundary) starts a new chunk.
    pub fn reset(&mut self) {
        self.window = [0; WINDOW_SIZE];
        self.wpos = 0;
        self.digest = 0;
        self.count = 0;
        // like Go, slide in a 1 byte; it leaves the window again before
        // MIN_SIZE, so it shows only in the fingerprint of a final chunk
        // shorter than MIN_SIZE
        self.slide(1);
        // do not start a new chunk unless at least MIN_SIZE bytes have been
        // read
        self.pre = MIN_SIZE - WINDOW_SIZE;
    }

    /// Number of bytes of the current chunk consumed so far.
    pub fn chunk_len(&self) -> usize {
        self.count
    }

    /// The current rolling fingerprint. When the stream ends, the remaining
    /// bytes form the last chunk and this is the value restic reports as that
    /// chunk's `Cut`.
    pub fn fingerprint(&self) -> u64 {
        self.digest
    }

    /// The fingerprint at the most recent boundary returned by
    /// [`next_boundary`](Chunker::next_boundary) (restic's `Chunk.Cut`), or 0
    /// if there was none yet.
    pub fn last_cut(&self) -> u64 {
        self.last_cut
    }

    #[inline(always)]
    fn slide(&mut self, b: u8) {
        let t = &*self.tables;
        let out = self.window[self.wpos];
        self.window[self.wpos] = b;
        self.wpos = (self.wpos + 1) & WMASK;
        self.digest = t.append(self.digest ^ t.out[out as usize], b);
    }

    /// Scans `data`, the continuation of the stream, for the end of the
    /// current chunk.
    ///
    /// Returns `Some(n)` if the current chunk ends after `data[..n]` (`n >= 1`);
    /// the chunker has then been reset and the caller continues with
    /// `data[n..]` for the next chunk. Returns `None` if all of `data` belongs
    /// to the current chunk. At the end of the stream, whatever bytes were
    /// consumed since the last boundary (see [`chunk_len`](Chunker::chunk_len))
    /// form the final chunk.
    pub fn next_boundary(&mut self, data: &[u8]) -> Option<usize> {
        let mut pos = 0;

        // the first MIN_SIZE - WINDOW_SIZE bytes of a chunk are not hashed
        if self.pre > 0 {
            let n = self.pre.min(data.len());
            self.pre -= n;
            self.count += n;
            pos = n;
            if self.pre > 0 {
                return None;
            }
        }

        // Byte-at-a-time through the window ring while the window is not yet
        // full of this chunk's bytes (no cut possible before MIN_SIZE) or the
        // bytes leaving the window are not in `data`.
        while pos < data.len() && (self.count < MIN_SIZE || pos < WINDOW_SIZE) {
            self.slide(data[pos]);
            pos += 1;
            self.count += 1;
            if self.count >= MIN_SIZE && (self.digest & SPLITMASK == 0 || self.count >= MAX_SIZE) {
                return Some(self.cut(pos, self.digest));
            }
        }
        if pos == data.len() {
            return None;
        }

        // Fast path: the byte leaving the window is data[i - WINDOW_SIZE].
        let end = data.len().min(pos + (MAX_SIZE - self.count));
        match scan(&self.tables, data, pos, end, self.digest) {
            Ok((n, digest)) => Some(self.cut(n, digest)),
            Err(digest) => {
                self.digest = digest;
                self.count += end - pos;
                if self.count == MAX_SIZE {
                    return Some(self.cut(end, digest));
                }
                // end == data.len() >= WINDOW_SIZE: refill the ring
                self.window
                    .copy_from_slice(&data[data.len() - WINDOW_SIZE..]);
                self.wpos = 0;
                None
            }
        }
    }

    #[inline]
    fn cut(&mut self, n: usize, digest: u64) -> usize {
        self.last_cut = digest;
        self.reset();
        n
    }
}

/// Number of interleaved hash lanes in [`scan`].
const LANES: usize = 4;
/// Bytes per lane and block in [`scan`] for long stretches.
const LANE_LEN: usize = 4096;
/// Bytes per lane and block in [`scan`] for the rest.
const SHORT_LANE_LEN: usize = 256;

/// Rolls the hash over `data[start..end]` (requires `start >= WINDOW_SIZE`,
/// and `digest` being the fingerprint of `data[start - WINDOW_SIZE..start]`),
/// returning `Ok((i + 1, fingerprint))` for the first `i` whose fingerprint
/// has the split bits zero, or `Err(fingerprint at end)`.
///
/// The fingerprint of a full window depends only on the window's bytes, so
/// blocks of `LANES * LANE_LEN` bytes are hashed as `LANES` independent
/// dependency chains (each lane warmed up on the 64 bytes before its part).
/// Blocks with a hit anywhere are rescanned serially to find the first one.
#[inline(never)]
fn scan(
    t: &Tables,
    data: &[u8],
    start: usize,
    end: usize,
    digest: u64,
) -> Result<(usize, u64), u64> {
    debug_assert!(start >= WINDOW_SIZE && start <= end && end <= data.len());
    let mut i = start;
    let mut a = digest << t.align;
    while end - i >= LANES * LANE_LEN {
        match scan_block::<LANE_LEN>(t, data, i, a) {
            Some(last) => {
                a = last;
                i += LANES * LANE_LEN;
            }
            None => break,
        }
    }
    while end - i >= LANES * SHORT_LANE_LEN {
        match scan_block::<SHORT_LANE_LEN>(t, data, i, a) {
            Some(last) => {
                a = last;
                i += LANES * SHORT_LANE_LEN;
            }
            None => break,
        }
    }
    // the rest, or the first cut point in a block that has one
    let cur = &data[i..end];
    let old = &data[i - WINDOW_SIZE..end - WINDOW_SIZE];
    for (k, (&b, &o)) in cur.iter().zip(old).enumerate() {
        a = t.roll_a(a, o, b);
        if a & t.splitmask_a == 0 {
            return Ok((i + k + 1, a >> t.align));
        }
    }
    Err(a >> t.align)
}

/// Hashes `data[i..i + LANES * LEN]` in `LANES` interleaved chains, lane `j`
/// covering `data[i + j * LEN..][..LEN]`, starting from the left-aligned
/// fingerprint `a` of the window before `i`. Returns the fingerprint at the
/// end of the block, or `None` if some position in the block is a cut point.
#[inline(always)]
fn scan_block<const LEN: usize>(t: &Tables, data: &[u8], i: usize, a: u64) -> Option<u64> {
    // one base pointer, constant offsets per lane
    let blk = &data[i - WINDOW_SIZE..i + LANES * LEN];
    let mask = t.splitmask_a;

    // warm up lanes 1.. on the window preceding them
    let mut ds = [0u64; LANES];
    ds[0] = a;
    for k in 0..WINDOW_SIZE {
        for j in 1..LANES {
            ds[j] = t.append_a(ds[j], blk[j * LEN + k]);
        }
    }

    for k in 0..LEN {
        let mut hit = false;
        for j in 0..LANES {
            ds[j] = t.roll_a(ds[j], blk[j * LEN + k], blk[WINDOW_SIZE + j * LEN + k]);
            hit |= ds[j] & mask == 0;
        }
        if hit {
            return None;
        }
    }
    Some(ds[LANES - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_POL: Pol = Pol(0x3DA3358B4DC173);

    /// Straight port of Go's `Next` loop (byte at a time through the ring),
    /// as a reference for the fast path.
    fn reference_boundaries(pol: Pol, data: &[u8]) -> Vec<(usize, u64)> {
        let t = Tables::new(pol);
        let mut res = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let mut win = [0u8; WINDOW_SIZE];
            win[0] = 1;
            let mut wpos = 1;
            let mut digest = t.append(0, 1);
            let mut add = (MIN_SIZE - WINDOW_SIZE).min(data.len() - i);
            let start = i;
            i += add;
            let mut cut = None;
            while i < data.len() {
                let b = data[i];
                i += 1;
                let out = win[wpos];
                win[wpos] = b;
                wpos = (wpos + 1) % WINDOW_SIZE;
                digest = t.append(digest ^ t.out[out as usize], b);
                add += 1;
                if (digest & SPLITMASK == 0 || add >= MAX_SIZE) && add >= MIN_SIZE {
                    cut = Some(digest);
                    break;
                }
            }
            res.push((i - start, cut.unwrap_or(digest)));
        }
        res
    }

    fn boundaries(c: &mut Chunker, data: &[u8], step: usize) -> Vec<(usize, u64)> {
        let mut res = Vec::new();
        let mut len = 0;
        for mut piece in data.chunks(step) {
            while let Some(n) = c.next_boundary(piece) {
                res.push((len + n, c.last_cut()));
                len = 0;
                piece = &piece[n..];
            }
            len += piece.len();
        }
        assert_eq!(len, c.chunk_len());
        if len > 0 {
            res.push((len, c.fingerprint()));
        }
        res
    }

    /// `n` pseudo-random bytes (splitmix64).
    fn random_bytes(n: usize, mut s: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            s = s.wrapping_add(0x9E3779B97F4A7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        v.truncate(n);
        v
    }

    #[test]
    fn aligned_matches_plain() {
        for pol in [TEST_POL, Pol(0x11b), Pol(0x11b715da9f7)] {
            let t = Tables::new(pol);
            let data = random_bytes(10_000, pol.0);
            let mut win = [0u8; WINDOW_SIZE];
            let (mut d, mut a) = (0, 0);
            for (i, &b) in data.iter().enumerate() {
                let o = win[i % WINDOW_SIZE];
                win[i % WINDOW_SIZE] = b;
                d = t.append(d ^ t.out[o as usize], b);
                a = t.roll_a(a, o, b);
                assert_eq!(a >> t.align, d);
                assert_eq!(a & t.splitmask_a == 0, d & SPLITMASK == 0);
                assert!(d < 1 << pol.deg());
            }
        }
    }

    #[test]
    fn matches_reference() {
        // small average so that many boundaries fall inside lane blocks
        let mut data = random_bytes(12 << 20, 0x1234_5678_9abc_def1);
        // a run without cut points to reach MAX_SIZE
        data.extend(std::iter::repeat_n(0xa5, 9 << 20));
        data.extend(random_bytes(3 << 20, 7));
        let want = reference_boundaries(TEST_POL, &data);
        assert!(want.len() > 5);
        assert!(want.iter().any(|&(l, _)| l == MAX_SIZE));
        for step in [data.len(), 1 << 20, 65_537, 4096, 63, 64, 65] {
            let mut c = Chunker::new(TEST_POL);
            assert_eq!(boundaries(&mut c, &data, step), want, "step {step}");
        }
    }

    #[test]
    fn window_fingerprint_is_position_independent() {
        let t = Tables::new(TEST_POL);
        let data = random_bytes(4096, 99);
        // the rolling digest over a full window equals the digest of the
        // window computed from scratch
        let mut a = 0;
        for &b in &data[..WINDOW_SIZE] {
            a = t.append_a(a, b);
        }
        for i in WINDOW_SIZE..data.len() {
            a = t.roll_a(a, data[i - WINDOW_SIZE], data[i]);
            let d = a >> t.align;
            let mut fresh = 0;
            for &b in &data[i + 1 - WINDOW_SIZE..=i] {
                fresh = t.append(fresh, b);
            }
            assert_eq!(d, fresh);
        }
    }

    #[test]
    fn try_new_rejects_bad_degrees() {
        assert!(Chunker::try_new(Pol(0)).is_none());
        assert!(Chunker::try_new(Pol(0x7f)).is_none());
        assert!(Chunker::try_new(Pol(1 << 54 | 1)).is_none());
        assert!(Chunker::try_new(Pol(0x11b)).is_some());
        assert!(Chunker::try_new(TEST_POL).is_some());
    }

    #[test]
    #[should_panic(expected = "must be in 8..=53")]
    fn new_panics_on_bad_degree() {
        let _ = Chunker::new(Pol(1 << 60));
    }

    #[test]
    fn reset_discards_current_chunk() {
        let data = random_bytes(3 << 20, 5);
        let want = reference_boundaries(TEST_POL, &data);
        let mut c = Chunker::new(TEST_POL);
        assert_eq!(c.next_boundary(&data[..MIN_SIZE + 1000]), None);
        c.reset();
        assert_eq!(c.chunk_len(), 0);
        assert_eq!(c.fingerprint(), 1);
        assert_eq!(boundaries(&mut c, &data, 1 << 20), want);
    }
}
