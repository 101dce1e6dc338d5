//! Reading one file of a snapshot as a byte stream, blob by blob, so that a restore can pipe a
//! database dump straight into `pg_restore` or `mariadb` without a temporary copy. Memory stays
//! at one chunk whatever the file size; every blob is verified (decrypted, hashed) on the way.

use std::io::{self, Read};
use std::sync::Arc;

use coffer_repo::pack::BlobType;
use coffer_repo::tree::Node;
use coffer_repo::{Id, Repository};

/// A `Read` over a file node's content.
pub struct FileReader {
    repo: Arc<Repository>,
    blobs: Vec<Id>,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    read: u64,
}

impl FileReader {
    /// Reads the content of `node` (a file) from `repo`, whose index must be loaded.
    pub fn new(repo: Arc<Repository>, node: &Node) -> FileReader {
        FileReader {
            repo,
            blobs: node.content.clone().unwrap_or_default(),
            next: 0,
            buf: Vec::new(),
            pos: 0,
            read: 0,
        }
    }

    /// Bytes returned so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

impl Read for FileReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.blobs.get(self.next) else {
                return Ok(0);
            };
            self.buf = self
                .repo
                .load_blob(id, BlobType::Data)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.read += n as u64;
        Ok(n)
    }
}
