//! Partitions fetched ahead of the archiver. The archiver reads a snapshot's streams one
//! after the other; a partition fetched only when its turn comes would leave the broker
//! idle while the repository works and the repository idle while a fetch waits. A few
//! workers, each with connections of its own, take the partitions in the order the
//! archiver reads them and hand over encoded pieces through a short queue per partition,
//! so at most `workers` partitions are in flight and each holds a few pieces at most.
//!
//! No deadlock: partitions are taken in reading order, so the one the archiver waits for
//! was taken before any that is blocked on a full queue. When the archiver gives up (an
//! error elsewhere, an interrupted backup), its queues close and the workers stop.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use parking_lot::Mutex;

use super::conn::Cluster;
use super::fetch::{Outcome, SegmentFetch};
use super::segment::Summary;

/// Pieces queued per partition (each about one fetch, 1 MiB by default).
const QUEUE: usize = 4;

enum Msg {
    Data(Vec<u8>),
    Done(Summary),
    Failed(String),
}

/// A partition waiting for a worker.
pub struct Job {
    fetch: SegmentFetch,
    tx: SyncSender<Msg>,
}

/// Fetches queued partitions with `workers` threads once started.
pub struct Prefetch {
    jobs: VecDeque<Job>,
}

impl Prefetch {
    /// No partitions yet.
    pub fn new() -> Prefetch {
        Prefetch {
            jobs: VecDeque::new(),
        }
    }

    /// Queues a partition (in the order the archiver will read them); returns its stream.
    pub fn add(&mut self, fetch: SegmentFetch, outcome: Arc<Mutex<Outcome>>) -> FetchedStream {
        let (tx, rx) = sync_channel(QUEUE);
        self.jobs.push_back(Job { fetch, tx });
        FetchedStream {
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
            outcome,
        }
    }

    /// Starts the workers: each connects to the brokers `cluster` knows.
    pub fn start(self, cluster: &Cluster, workers: usize) {
        if self.jobs.is_empty() {
            return;
        }
        let n = workers.clamp(1, self.jobs.len());
        let queue = Arc::new(Mutex::new(self.jobs));
        let stop = Arc::new(AtomicBool::new(false));
        for i in 0..n {
            let (queue, stop) = (Arc::clone(&queue), Arc::clone(&stop));
            let mut conns = cluster.fork();
            // Detached: a worker ends when the queue is empty or the archiver gave up.
            let spawned = std::thread::Builder::new()
                .name(format!("coffer-kafka-fetch-{i}"))
                .spawn(move || work(&queue, &stop, &mut conns));
            if let Err(e) = spawned {
                tracing::warn!("starting a Kafka fetch worker: {e}");
            }
        }
    }
}

fn work(queue: &Mutex<VecDeque<Job>>, stop: &AtomicBool, cluster: &mut Cluster) {
    while !stop.load(Ordering::Relaxed) {
        let Some(mut job) = queue.lock().pop_front() else {
            return;
        };
        loop {
            let mut piece = Vec::new();
            let (msg, last) = match job.fetch.next_piece(cluster, &mut piece) {
                Ok(None) => (Msg::Data(piece), false),
                Ok(Some(summary)) => {
                    if !piece.is_empty() && job.tx.send(Msg::Data(piece)).is_err() {
                        stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    (Msg::Done(summary), true)
                }
                Err(e) => (Msg::Failed(e), true),
            };
            if job.tx.send(msg).is_err() {
                // The stream was dropped unread: the backup stopped.
                stop.store(true, Ordering::Relaxed);
                return;
            }
            if last {
                break;
            }
        }
    }
}

/// A partition's segment as the archiver reads it, from a worker's pieces.
pub struct FetchedStream {
    rx: Receiver<Msg>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
    outcome: Arc<Mutex<Outcome>>,
}

impl Read for FetchedStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Ok(Msg::Done(s)) => {
                    self.outcome.lock().summary = Some(s);
                    self.done = true;
                }
                Ok(Msg::Failed(e)) => {
                    self.outcome.lock().error = Some(e.clone());
                    self.done = true;
                    return Err(io::Error::other(e));
                }
                Err(_) => {
                    let e = "the fetch worker stopped before the cut".to_string();
                    self.outcome.lock().error = Some(e.clone());
                    self.done = true;
                    return Err(io::Error::other(e));
                }
            }
        }
        Ok(Outcome::serve(&self.outcome, &self.buf, &mut self.pos, out))
    }
}
