//! Row counts recorded at backup time: a database dump is read a second time as it streams
//! into the repository (a copy handed to a counting thread, so the dump never waits for a
//! parse), and the rows per table go into the snapshot's manifest. A drill compares the
//! restored tables with them. Each source type brings the parser for its dump format.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use coffer_archiver::StreamSource;

use crate::Manifest;

/// Table → rows.
pub type RowCounts = BTreeMap<String, u64>;

/// A comparison of restored tables with the recorded counts.
#[derive(Debug, Default)]
pub struct RowComparison {
    /// Tables compared.
    pub tables: usize,
    /// Rows counted in them.
    pub rows: u64,
    /// One line per table whose count differs or that is missing.
    pub differences: Vec<String>,
}

/// Reads what the tee forwards.
struct Forwarded {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Forwarded {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Passes a stream through and hands a copy to a counting thread.
struct Tee {
    inner: Box<dyn Read + Send>,
    tx: Option<SyncSender<Vec<u8>>>,
    ended: Arc<AtomicBool>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.tx = None;
            self.ended.store(true, Ordering::SeqCst);
        } else if let Some(tx) = &self.tx {
            // A counter that gave up stops taking copies; the dump goes on.
            if tx.send(buf[..n].to_vec()).is_err() {
                self.tx = None;
            }
        }
        Ok(n)
    }
}

/// Wraps the dump stream of `database`: `count` reads a copy of it in a thread of its own,
/// and once the stream has ended well its counts are stored in the manifest under
/// `row_counts.<database>` (or the reason they could not be counted under
/// `row_counts_error.<database>`; the backup goes on without them).
pub fn counted(
    stream: StreamSource,
    database: &str,
    manifest: &Manifest,
    count: fn(&mut dyn Read) -> io::Result<RowCounts>,
) -> StreamSource {
    let (tx, rx) = sync_channel::<Vec<u8>>(16);
    let counter: JoinHandle<io::Result<RowCounts>> = std::thread::spawn(move || {
        let mut input = Forwarded {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        let counted = count(&mut input);
        // Drain what is left, so that the tee never blocks on a counter that stopped early.
        let _ = io::copy(&mut input, &mut io::sink());
        counted
    });
    let (db, manifest) = (database.to_string(), manifest.clone());
    let finish = stream.finish;
    let ended = Arc::new(AtomicBool::new(false));
    let seen_end = Arc::clone(&ended);
    StreamSource {
        filename: stream.filename,
        reader: Box::new(Tee {
            inner: stream.reader,
            tx: Some(tx),
            ended,
        }),
        finish: Box::new(move || {
            finish()?;
            if !seen_end.load(Ordering::SeqCst) {
                // Not read to its end: the tee still holds its sender, and the counter would
                // wait for more. It ends when the tee is dropped.
                return Ok(());
            }
            match counter.join() {
                Ok(Ok(c)) => manifest.set_in(
                    "row_counts",
                    &db,
                    serde_json::to_value(c).unwrap_or_default(),
                ),
                Ok(Err(e)) => {
                    tracing::warn!(database = %db, error = %e, "row counts not recorded");
                    manifest.set_in("row_counts_error", &db, e.to_string());
                }
                Err(_) => manifest.set_in("row_counts_error", &db, "the counter panicked"),
            }
            Ok(())
        }),
    }
}
