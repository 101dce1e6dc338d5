//! A partition's entry in the manifest, written when the backup plans the partition and
//! again as each of its new segments' streams ends, so that it lists every segment once
//! the last one is read:
//!
//! ```json
//! "orders/0": {"topic": "orders", "partition": 0, "log_start": 0, "high_watermark": 300,
//!   "cut": 300, "first": 0, "records": 300, "last_offset": 299, "bytes": 31337,
//!   "segments": [{"file": "kseg.orders.0.…", "first": 0, "end": 300, "records": 300,
//!                 "last_offset": 299, "digest": "…", "bytes": 31337}]}
//! ```

use std::sync::Arc;

use coffer_archiver::StreamSource;
use parking_lot::Mutex;
use serde_json::json;

use super::fetch::{Bounds, Outcome};
use super::incremental::{Piece, Seg};
use crate::Manifest;

/// One partition's entry, shared by the finish checks of its streams.
#[derive(Clone)]
pub(super) struct PartEntry {
    pub(super) topic: String,
    pub(super) partition: i32,
    manifest: Manifest,
    bounds: Bounds,
    /// The segments in offset order; `None` while its stream has not ended.
    slots: Arc<Mutex<Vec<Option<Seg>>>>,
}

impl PartEntry {
    /// The entry of a partition whose new run of segments is `pieces`.
    pub(super) fn new(
        manifest: &Manifest,
        topic: &str,
        partition: i32,
        bounds: &Bounds,
        pieces: &[Piece],
    ) -> PartEntry {
        let slots = pieces
            .iter()
            .map(|p| match p {
                Piece::Keep(s) => Some(s.clone()),
                Piece::Merge(_) | Piece::Fetch(_) => None,
            })
            .collect();
        PartEntry {
            topic: topic.to_string(),
            partition,
            manifest: manifest.clone(),
            bounds: *bounds,
            slots: Arc::new(Mutex::new(slots)),
        }
    }

    /// Writes the entry as far as it is known.
    pub(super) fn write(&self) {
        let slots = self.slots.lock();
        let segs: Vec<&Seg> = slots.iter().flatten().collect();
        let b = &self.bounds;
        self.manifest.set_in(
            "partitions",
            &format!("{}/{}", self.topic, self.partition),
            json!({
                "topic": self.topic,
                "partition": self.partition,
                "log_start": b.log_start,
                "high_watermark": b.high_watermark,
                "cut": b.cut,
                "first": segs.first().map_or(b.log_start.min(b.cut), |s| s.first),
                "records": segs.iter().map(|s| s.records).sum::<u64>(),
                "last_offset": segs.iter().map(|s| s.last_offset).max().unwrap_or(-1),
                "bytes": segs.iter().map(|s| s.bytes).sum::<u64>(),
                "segments": segs,
            }),
        );
    }

    /// The stream of a new segment `file` covering `first..end`, which fills `slot` when it
    /// has reached its end; an error or a short stream fails the backup.
    pub(super) fn stream(
        &self,
        file: String,
        slot: usize,
        first: i64,
        end: i64,
        reader: Box<dyn std::io::Read + Send>,
        outcome: Arc<Mutex<Outcome>>,
    ) -> StreamSource {
        let entry = self.clone();
        StreamSource {
            filename: file.clone(),
            reader,
            finish: Box::new(move || {
                let o = outcome.lock();
                if let Some(e) = &o.error {
                    return Err(e.clone());
                }
                let Some(s) = &o.summary else {
                    return Err(format!(
                        "{}/{}: the stream ended before offset {end}",
                        entry.topic, entry.partition
                    ));
                };
                let seg = Seg {
                    file,
                    first,
                    end,
                    records: s.records,
                    last_offset: s.last_offset,
                    digest: s.digest.clone(),
                    bytes: o.bytes,
                };
                if let Some(x) = entry.slots.lock().get_mut(slot) {
                    *x = Some(seg);
                }
                entry.write();
                Ok(())
            }),
        }
    }
}
