//! A snapshot's partitions as its manifest lists them, and their records read back from the
//! repository in offset order: what every kind of restore (into brokers, into JSON lines)
//! starts from. Each segment's count is checked against the manifest as it ends (its
//! trailer's CRC and digest by the decoder), so a restore never hands on a partition that
//! is not whole.

use std::io::BufReader;

use serde_json::Value;

use super::batch::Record;
use super::incremental::Seg;
use super::segment::Decoder;
use crate::{SnapshotFiles, SourceError};

/// One backed-up partition, from the manifest.
pub(super) struct Part {
    pub topic: String,
    pub partition: i32,
    /// Its segment files in offset order.
    pub segments: Vec<Seg>,
    pub records: u64,
}

/// The snapshot's manifest (checked to be a Kafka one) and its partitions in topic and
/// partition order.
pub(super) fn load(files: &SnapshotFiles) -> Result<(Value, Vec<Part>), SourceError> {
    let snap_err =
        |m: String| SourceError::Snapshot(format!("snapshot {}: {m}", files.snapshot.id.short()));
    let manifest = files
        .manifest()
        .ok_or_else(|| snap_err("it has no manifest: it was not made by a kafka source".into()))?;
    if manifest.get("format").and_then(Value::as_str) != Some(super::FORMAT) {
        return Err(snap_err(format!("its manifest is not {}", super::FORMAT)));
    }
    let mut parts: Vec<Part> = manifest
        .get("partitions")
        .and_then(Value::as_object)
        .map(|m| {
            m.values()
                .map(|p| {
                    Some(Part {
                        topic: p.get("topic")?.as_str()?.to_string(),
                        partition: i32::try_from(p.get("partition")?.as_i64()?).ok()?,
                        segments: serde_json::from_value(p.get("segments")?.clone()).ok()?,
                        records: p.get("records")?.as_u64()?,
                    })
                })
                .collect::<Option<Vec<Part>>>()
        })
        .unwrap_or_default()
        .ok_or_else(|| snap_err("a partition in its manifest is malformed".into()))?;
    parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok((manifest, parts))
}

/// Which records a restore takes: timestamps in `from..to` (milliseconds).
#[derive(Clone, Copy)]
pub(super) struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    fn holds(&self, r: &Record) -> bool {
        r.timestamp >= self.from && r.timestamp < self.to
    }
}

impl Part {
    /// Calls `f` with each of the partition's records in the window, in offset order, with
    /// `read_ahead` threads reading the repository ahead; returns how many there were.
    pub fn each_record<E>(
        &self,
        files: &SnapshotFiles,
        window: Window,
        read_ahead: usize,
        mut f: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<u64, E>
    where
        E: From<SourceError>,
    {
        let (mut taken, mut read) = (0u64, 0u64);
        for seg in &self.segments {
            let bad = |e: std::io::Error| SourceError::Snapshot(format!("{}: {e}", seg.file));
            let reader = files.reader_with_threads(&seg.file, read_ahead)?;
            let mut dec = Decoder::new(BufReader::with_capacity(1 << 20, reader)).map_err(bad)?;
            let mut in_seg = 0u64;
            while let Some(r) = dec.next_record().map_err(bad)? {
                in_seg += 1;
                if window.holds(&r) {
                    taken += 1;
                    f(r)?;
                }
            }
            read += in_seg;
            if in_seg != seg.records {
                return Err(SourceError::Snapshot(format!(
                    "{}: {in_seg} records read, the manifest says {}",
                    seg.file, seg.records
                ))
                .into());
            }
        }
        if read != self.records {
            return Err(SourceError::Snapshot(format!(
                "{}/{}: {read} records read, the manifest says {}",
                self.topic, self.partition, self.records
            ))
            .into());
        }
        Ok(taken)
    }
}
