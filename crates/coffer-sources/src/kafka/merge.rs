//! Neighbouring segments of a partition in the previous snapshot, read back from the
//! repository and written again as one segment while the archiver reads it (see
//! [`super::incremental`]). Every segment read is checked against its trailer and against
//! the manifest's record count and digest, so a merge never carries damage forward.

use std::collections::VecDeque;
use std::io::{self, BufReader, Read};
use std::sync::Arc;

use coffer_archiver::FileReader;
use coffer_repo::tree::Node;
use coffer_repo::Repository;
use parking_lot::Mutex;

use super::fetch::Outcome;
use super::incremental::Seg;
use super::segment::{Decoder, Encoder, Header};

/// Bytes encoded per refill.
const CHUNK: usize = 1 << 20;

/// The merged segment as a stream.
pub struct MergeStream {
    repo: Arc<Repository>,
    header: Header,
    todo: VecDeque<(Seg, Node)>,
    current: Option<(Seg, Decoder<BufReader<FileReader>>)>,
    encoder: Option<Encoder>,
    buf: Vec<u8>,
    pos: usize,
    outcome: Arc<Mutex<Outcome>>,
}

impl MergeStream {
    /// Merges `segs` (with their nodes in the previous snapshot), in offset order.
    pub fn new(
        repo: Arc<Repository>,
        topic: &str,
        partition: i32,
        segs: Vec<(Seg, Node)>,
        outcome: Arc<Mutex<Outcome>>,
    ) -> MergeStream {
        let header = Header {
            topic: topic.to_string(),
            partition,
            first: segs.first().map_or(0, |s| s.0.first),
            end: segs.last().map_or(0, |s| s.0.end),
        };
        let mut buf = Vec::new();
        let encoder = Encoder::start(&header, &mut buf);
        MergeStream {
            repo,
            header,
            todo: segs.into(),
            current: None,
            encoder: Some(encoder),
            buf,
            pos: 0,
            outcome,
        }
    }

    fn refill(&mut self) -> Result<(), String> {
        self.buf.clear();
        self.pos = 0;
        while self.buf.len() < CHUNK {
            let Some(enc) = self.encoder.as_mut() else {
                return Ok(());
            };
            let Some((seg, dec)) = self.current.as_mut() else {
                match self.todo.pop_front() {
                    Some((seg, node)) => {
                        let reader = FileReader::new(Arc::clone(&self.repo), &node);
                        let dec = Decoder::new(BufReader::with_capacity(1 << 20, reader))
                            .map_err(|e| format!("{}: {e}", seg.file))?;
                        if dec.header.topic != self.header.topic
                            || dec.header.partition != self.header.partition
                        {
                            return Err(format!(
                                "{}: it holds {}/{}, not {}/{}",
                                seg.file,
                                dec.header.topic,
                                dec.header.partition,
                                self.header.topic,
                                self.header.partition
                            ));
                        }
                        self.current = Some((seg, dec));
                    }
                    None => {
                        if let Some(enc) = self.encoder.take() {
                            let s = enc.finish(&mut self.buf);
                            self.outcome.lock().summary = Some(s);
                        }
                    }
                }
                continue;
            };
            match dec
                .next_record()
                .map_err(|e| format!("{}: {e}", seg.file))?
            {
                Some(r) => enc.record(&r, &mut self.buf),
                None => {
                    let s = dec.summary().cloned().unwrap_or_default();
                    if s.records != seg.records || s.digest != seg.digest {
                        return Err(format!(
                            "{}: it holds {} records with digest {}, the manifest says {} with {}",
                            seg.file, s.records, s.digest, seg.records, seg.digest
                        ));
                    }
                    self.current = None;
                }
            }
        }
        Ok(())
    }
}

impl Read for MergeStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if let Err(e) = self.refill() {
                self.outcome.lock().error = Some(e.clone());
                return Err(io::Error::other(e));
            }
        }
        Ok(Outcome::serve(&self.outcome, &self.buf, &mut self.pos, out))
    }
}
