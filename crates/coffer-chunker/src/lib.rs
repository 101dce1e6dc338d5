//! Content-defined chunking, byte-exact with restic.
//!
//! This crate owns coffer's implementation of the chunker of the restic
//! repository format: a port of the Go package `github.com/restic/chunker`
//! (the version used by restic 0.14 and later). For the same repository
//! polynomial it cuts any byte stream at exactly the same places as restic,
//! so blobs are deduplicated across both tools.
//!
//! * [`Pol`]: polynomials over GF(2); [`Pol::random`] creates a new
//!   repository polynomial (irreducible, degree 53), [`Display`](std::fmt::Display)
//!   / [`FromStr`](std::str::FromStr) convert the hex form stored in the
//!   repository config (`"chunker_polynomial": "3da3358b4dc173"`).
//! * [`Chunker`]: the streaming chunker. A Rabin fingerprint over a sliding
//!   window of [`WINDOW_SIZE`] (64) bytes; a chunk ends after a byte where the
//!   lowest [`AVERAGE_BITS`] (20) bits of the fingerprint are zero, but not
//!   before [`MIN_SIZE`] (512 KiB) bytes and at the latest at [`MAX_SIZE`]
//!   (8 MiB). The first `MIN_SIZE - WINDOW_SIZE` bytes of each chunk are
//!   skipped without hashing. It never copies data.
//! * [`ChunkReader`]: iterator of owned chunks from any [`Read`](std::io::Read).
//!
//! It does not hash, compress or encrypt chunks; that is the repository
//! layer's business.
//!
//! # Example
//!
//! ```
//! use coffer_chunker::{ChunkReader, Chunker, Pol};
//!
//! // The repository's polynomial, as stored in its config.
//! let pol: Pol = "3da3358b4dc173".parse().unwrap();
//! assert!(pol.is_irreducible());
//! assert_eq!(pol.to_string(), "3da3358b4dc173");
//!
//! // Some data: 3 MiB of pseudo-random bytes.
//! let mut x = 1u32;
//! let data: Vec<u8> = (0..3 << 20)
//!     .map(|_| {
//!         x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
//!         (x >> 24) as u8
//!     })
//!     .collect();
//!
//! // Zero-copy: find the boundaries in a buffer fed in any slice sizes.
//! let mut chunker = Chunker::new(pol);
//! let mut lengths = Vec::new();
//! let mut rest = &data[..];
//! while let Some(n) = chunker.next_boundary(rest) {
//!     lengths.push(n);
//!     rest = &rest[n..];
//! }
//! // At the end of the stream the remaining bytes are the last chunk.
//! if !rest.is_empty() {
//!     lengths.push(rest.len());
//! }
//! assert_eq!(lengths.iter().sum::<usize>(), data.len());
//!
//! // The same, as owned chunks from a reader.
//! let chunks: Vec<Vec<u8>> = ChunkReader::new(&data[..], pol)
//!     .collect::<std::io::Result<_>>()
//!     .unwrap();
//! assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), lengths);
//! assert_eq!(chunks.concat(), data);
//! ```

#![forbid(unsafe_code)]

mod chunker;
mod pol;
mod reader;

pub use chunker::{Chunker, AVERAGE_BITS, MAX_SIZE, MIN_SIZE, WINDOW_SIZE};
pub use pol::{ParsePolError, Pol};
pub use reader::ChunkReader;
