//! Reading one file of a snapshot as a byte stream, so that a restore can pipe a database dump
//! straight into `pg_restore` or `mariadb` without a temporary copy.
//!
//! The stream is the restore's critical path (RTO), so blobs are not fetched one after the
//! other: the file's content is cut into segments (blobs that sit next to each other in one
//! pack, at most [`SEGMENT`] bytes), which worker threads read, decrypt, decompress and verify
//! ahead of the reader, while the reader hands them out strictly in order. At most
//! `2 × threads` segments are held, so memory stays bounded whatever the file size. A blob
//! whose copy cannot be read is tried from any other pack through
//! [`Repository::load_blob`]; the first blob that cannot be had at all becomes the stream's
//! error, after every byte before it has been delivered.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use coffer_repo::pack::{open_blob, BlobType, PackedBlob};
use coffer_repo::tree::Node;
use coffer_repo::{Id, Repository};

use crate::progress::Progress;

use crate::restore::SEGMENT;

/// A `Read` over a file node's content.
pub struct FileReader {
    shared: Arc<Shared>,
    threads: usize,
    workers: Vec<JoinHandle<()>>,
    started: bool,
    /// Blobs of the segment being handed out, and the error that ends it, if any.
    current: std::vec::IntoIter<Vec<u8>>,
    failure: Option<String>,
    buf: Vec<u8>,
    pos: usize,
    read: u64,
    /// Set once an error was returned: every later read returns it again.
    failed: Option<String>,
    size: u64,
    progress: Option<Arc<Progress>>,
}

/// Consecutive blobs of the content that one worker fetches with one read.
struct Segment {
    /// The pack and byte range to read; `None` when the first blob is not in the index.
    range: Option<(Id, u64, u64)>,
    blobs: Vec<PackedBlob>,
}

/// A fetched segment: its plain blobs, and the error that stopped it early.
type Fetched = (Vec<Vec<u8>>, Option<String>);

struct Shared {
    repo: Arc<Repository>,
    segments: Vec<Segment>,
    state: Mutex<State>,
    /// Signalled when a segment is done or the reader moves on.
    changed: Condvar,
}

struct State {
    /// Next segment a worker may claim.
    next: usize,
    /// Next segment the reader takes.
    taken: usize,
    done: BTreeMap<usize, Fetched>,
    /// The reader was dropped.
    stop: bool,
}

impl FileReader {
    /// Reads the content of `node` (a file) from `repo`, whose index must be loaded, with a
    /// read-ahead of a few threads.
    pub fn new(repo: Arc<Repository>, node: &Node) -> FileReader {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(4, 8);
        FileReader::with_threads(repo, node, threads)
    }

    /// As [`FileReader::new`] with `threads` fetching ahead (at least one).
    pub fn with_threads(repo: Arc<Repository>, node: &Node, threads: usize) -> FileReader {
        let content = node.content.as_deref().unwrap_or_default();
        let segments = plan(&repo, content);
        let threads = threads.max(1).min(segments.len().max(1));
        FileReader {
            shared: Arc::new(Shared {
                repo,
                segments,
                state: Mutex::new(State {
                    next: 0,
                    taken: 0,
                    done: BTreeMap::new(),
                    stop: false,
                }),
                changed: Condvar::new(),
            }),
            threads,
            workers: Vec::new(),
            started: false,
            current: Vec::new().into_iter(),
            failure: None,
            buf: Vec::new(),
            pos: 0,
            read: 0,
            failed: None,
            size: node.size,
            progress: None,
        }
    }

    /// Counts this file in `progress`: its size in the totals now, bytes as they are read,
    /// the file as done at its end.
    pub fn with_progress(mut self, progress: Arc<Progress>, name: &str) -> FileReader {
        progress.total_files.fetch_add(1, Ordering::Relaxed);
        progress.total_bytes.fetch_add(self.size, Ordering::Relaxed);
        progress.scan_finished.store(true, Ordering::Relaxed);
        progress.set_current(name);
        self.progress = Some(progress);
        self
    }

    /// Bytes returned so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The next blob in order, `Ok(None)` at the end.
    fn next_blob(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(b) = self.current.next() {
                return Ok(Some(b));
            }
            if let Some(e) = self.failure.take() {
                return Err(e);
            }
            let shared = &self.shared;
            let mut st = shared.state.lock();
            if st.taken == shared.segments.len() {
                return Ok(None);
            }
            // Workers start on the first read, so that a reader made and dropped unread
            // costs nothing.
            if !self.started {
                self.started = true;
                for n in 0..self.threads {
                    let s = Arc::clone(shared);
                    let window = 2 * self.threads;
                    // Without a thread (none could be made), the reader fetches in turn.
                    if let Ok(h) = std::thread::Builder::new()
                        .name(format!("coffer-read-{n}"))
                        .spawn(move || work(&s, window))
                    {
                        self.workers.push(h);
                    }
                }
            }
            let want = st.taken;
            let (blobs, failure) = loop {
                if let Some(f) = st.done.remove(&want) {
                    break f;
                }
                if self.workers.is_empty() && st.next == want {
                    st.next += 1;
                    drop(st);
                    let f = fetch(&shared.repo, &shared.segments[want]);
                    st = shared.state.lock();
                    break f;
                }
                shared.changed.wait(&mut st);
            };
            st.taken += 1;
            drop(st);
            shared.changed.notify_all();
            self.current = blobs.into_iter();
            self.failure = failure;
        }
    }
}

/// Cuts `content` into segments: runs of blobs stored back to back in one pack.
fn plan(repo: &Repository, content: &[Id]) -> Vec<Segment> {
    let index = repo.index();
    let mut segments: Vec<Segment> = Vec::new();
    for id in content {
        let Some(loc) = index.lookup(id, BlobType::Data) else {
            segments.push(Segment {
                range: None,
                blobs: vec![PackedBlob {
                    id: *id,
                    kind: BlobType::Data,
                    offset: 0,
                    length: 0,
                    uncompressed_length: None,
                }],
            });
            continue;
        };
        let (off, len) = (loc.blob.offset as u64, loc.blob.length as u64);
        if let Some(Segment {
            range: Some((pack, start, slen)),
            blobs,
        }) = segments.last_mut()
        {
            let plain: u64 = blobs.iter().map(|b| b.data_length() as u64).sum();
            if *pack == loc.pack
                && *start + *slen == off
                && *slen + len <= SEGMENT
                && plain + loc.blob.data_length() as u64 <= SEGMENT
            {
                *slen += len;
                blobs.push(loc.blob);
                continue;
            }
        }
        segments.push(Segment {
            range: Some((loc.pack, off, len)),
            blobs: vec![loc.blob],
        });
    }
    segments
}

/// A worker: claims the next segment while it is within `window` of the reader, fetches it.
fn work(s: &Shared, window: usize) {
    loop {
        let i = {
            let mut st = s.state.lock();
            loop {
                if st.stop || st.next == s.segments.len() {
                    return;
                }
                if st.next < st.taken + window {
                    break;
                }
                s.changed.wait(&mut st);
            }
            st.next += 1;
            st.next - 1
        };
        let mut claim = Claim { s, i: Some(i) };
        let fetched = fetch(&s.repo, &s.segments[i]);
        claim.i = None;
        s.state.lock().done.insert(i, fetched);
        s.changed.notify_all();
    }
}

/// A claimed segment: should its worker die before delivering it, the reader gets an error
/// instead of waiting for ever.
struct Claim<'a> {
    s: &'a Shared,
    i: Option<usize>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.i {
            let lost = (Vec::new(), Some("a read-ahead thread failed".to_string()));
            self.s.state.lock().done.insert(i, lost);
            self.s.changed.notify_all();
        }
    }
}

/// Reads one segment with one request; a blob whose copy there is bad is loaded from
/// wherever else it is stored.
fn fetch(repo: &Repository, seg: &Segment) -> Fetched {
    let data = seg
        .range
        .as_ref()
        .map(|(pack, start, len)| repo.read_pack_range(pack, *start, *len));
    let start = seg.range.as_ref().map(|r| r.1).unwrap_or(0);
    let mut out = Vec::with_capacity(seg.blobs.len());
    for b in &seg.blobs {
        let fast = match &data {
            Some(Ok(d)) => {
                let lo = (b.offset as u64 - start) as usize;
                d.get(lo..lo + b.length as usize)
                    .and_then(|enc| open_blob(repo.key(), b, enc).ok())
            }
            _ => None,
        };
        let plain = match fast {
            Some(p) => p,
            None => match repo.load_blob(&b.id, BlobType::Data) {
                Ok(p) => p,
                Err(e) => return (out, Some(e.to_string())),
            },
        };
        out.push(plain);
    }
    (out, None)
}

impl Read for FileReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::other(e.clone()));
        }
        while self.pos == self.buf.len() {
            match self.next_blob() {
                Ok(Some(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(None) => {
                    if let Some(p) = self.progress.take() {
                        p.file_done();
                    }
                    return Ok(0);
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(io::Error::other(e));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.read += n as u64;
        if let Some(p) = &self.progress {
            p.add_bytes(n as u64);
        }
        Ok(n)
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.changed.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Copies `input` to `out` in writes of up to 1 MiB: `std::io::copy` moves 8 KiB at a time
/// from an unbuffered reader, which costs a dump of gigabytes a million pipe writes.
pub fn copy_stream(input: impl Read, out: &mut (impl Write + ?Sized)) -> io::Result<u64> {
    io::copy(&mut BufReader::with_capacity(1 << 20, input), out)
}
