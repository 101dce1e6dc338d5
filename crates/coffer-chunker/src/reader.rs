//! Convenience iterator over the chunks of a reader.

use std::io::{self, ErrorKind, Read};

use crate::{Chunker, Pol, MIN_SIZE};

/// Read size of [`ChunkReader`], the same as Go's `chunkerBufSize`.
const READ_SIZE: usize = 512 * 1024;

/// Iterator over the chunks of a [`Read`] stream, each returned as an owned
/// `Vec<u8>`.
///
/// Reads into one reusable buffer and copies every byte once, into the chunk
/// it belongs to. The last chunk is whatever remains at end of stream (it is
/// shorter than [`MIN_SIZE`] only if the stream is). An empty stream yields
/// no chunks. After an I/O error (other than `Interrupted`, which is retried)
/// the error is returned once and iteration ends.
///
/// Callers that already hold the data in memory should use
/// [`Chunker::next_boundary`] directly, which copies nothing.
#[derive(Debug)]
pub struct ChunkReader<R> {
    rd: R,
    chunker: Chunker,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    chunk: Vec<u8>,
    done: bool,
}

impl<R: Read> ChunkReader<R> {
    /// Chunks `rd` with polynomial `pol`.
    ///
    /// # Panics
    ///
    /// Like [`Chunker::new`], if the degree of `pol` is not in `8..=53`.
    pub fn new(rd: R, pol: Pol) -> ChunkReader<R> {
        ChunkReader::with_chunker(rd, Chunker::new(pol))
    }

    /// Chunks `rd` with `chunker`, which is [reset](Chunker::reset) first.
    pub fn with_chunker(rd: R, mut chunker: Chunker) -> ChunkReader<R> {
        chunker.reset();
        ChunkReader {
            rd,
            chunker,
            buf: vec![0; READ_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            chunk: Vec::new(),
            done: false,
        }
    }

    /// Returns the underlying reader.
    pub fn into_inner(self) -> R {
        self.rd
    }

    fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if self.start == self.end {
                let n = loop {
                    match self.rd.read(&mut self.buf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                };
                if n == 0 {
                    self.done = true;
                    return Ok(if self.chunk.is_empty() {
                        None
                    } else {
                        Some(std::mem::take(&mut self.chunk))
                    });
                }
                self.start = 0;
                self.end = n;
            }
            let avail = &self.buf[self.start..self.end];
            if self.chunk.capacity() == 0 {
                self.chunk.reserve(MIN_SIZE);
            }
            match self.chunker.next_boundary(avail) {
                Some(n) => {
                    self.chunk.extend_from_slice(&avail[..n]);
                    self.start += n;
                    return Ok(Some(std::mem::take(&mut self.chunk)));
                }
                None => {
                    self.chunk.extend_from_slice(avail);
                    self.start = self.end;
                }
            }
        }
    }
}

impl<R: Read> Iterator for ChunkReader<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<io::Result<Vec<u8>>> {
        if self.done {
            return None;
        }
        match self.next_chunk() {
            Ok(c) => c.map(Ok),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<R: Read> std::iter::FusedIterator for ChunkReader<R> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_stream_has_no_chunks() {
        let mut r = ChunkReader::new(io::empty(), Pol(0x3DA3358B4DC173));
        assert!(r.next().is_none());
        assert!(r.next().is_none());
    }

    #[test]
    fn short_stream_is_one_chunk() {
        let data = vec![7u8; 1000];
        let chunks: Vec<_> = ChunkReader::new(&data[..], Pol(0x3DA3358B4DC173))
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(chunks, vec![data]);
    }

    struct Failing(usize);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0 {
                0 => Err(io::Error::other("boom")),
                n => {
                    self.0 -= 1;
                    if n % 2 == 0 {
                        return Err(ErrorKind::Interrupted.into());
                    }
                    buf[..100].fill(3);
                    Ok(100)
                }
            }
        }
    }

    #[test]
    fn error_ends_iteration() {
        let mut r = ChunkReader::new(Failing(5), Pol(0x3DA3358B4DC173));
        assert_eq!(r.next().unwrap().unwrap_err().to_string(), "boom");
        assert!(r.next().is_none());
    }
}
