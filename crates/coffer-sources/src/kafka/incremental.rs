//! What a backup keeps of the source's previous snapshot. Records are immutable by offset,
//! so a partition's segments up to the previous cut are put into the new snapshot unread,
//! and only the offsets after it are fetched, into one new segment. A partition thus holds
//! a run of segments in offset order; to keep that run short, the smallest neighbours are
//! merged (read back from the repository and written again as one segment, which mostly
//! deduplicates) once a partition has more than [`MAX_SEGMENTS`].
//!
//! Records that the broker's retention deleted since stay in the backup unless
//! `keep_deleted = false`, which drops the segments that lie wholly below the partition's
//! log start. A partition whose end went back below the previous cut, or whose topic has
//! another topic id (the topic was deleted and created again), is backed up in full.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fetch::Bounds;
use crate::SnapshotFiles;

/// A partition's segments after a backup, at most (the new one included), by default.
pub const MAX_SEGMENTS: usize = 16;

/// One segment file of a partition, as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seg {
    /// The file in the snapshot.
    pub file: String,
    /// First offset covered (inclusive).
    pub first: i64,
    /// End offset covered (exclusive).
    pub end: i64,
    /// Records it holds.
    pub records: u64,
    /// Offset of its last record (-1: none).
    pub last_offset: i64,
    /// SHA-256 over its records without their offsets (see `segment`).
    pub digest: String,
    /// Size of the file.
    pub bytes: u64,
}

/// A partition in the previous snapshot.
#[derive(Clone, Debug, Default)]
pub struct PrevPart {
    /// Its cut: every offset below it is in `segments` (or was gone from the broker).
    pub cut: i64,
    /// Its segments, in offset order.
    pub segments: Vec<Seg>,
}

/// The previous snapshot of the source, as far as the next backup can build on it.
pub struct Previous<'a> {
    /// Its files.
    pub files: &'a SnapshotFiles,
    /// Each partition, by (topic, partition).
    pub parts: BTreeMap<(String, i32), PrevPart>,
    /// Each topic's id, where the brokers gave one.
    pub topic_ids: BTreeMap<String, String>,
}

impl<'a> Previous<'a> {
    /// Reads the previous snapshot's manifest; `Err` says why the backup cannot build on it
    /// (another cluster, another format) and is then made in full.
    pub fn load(files: &'a SnapshotFiles, cluster_id: &str) -> Result<Previous<'a>, String> {
        let id = files.snapshot.id.short();
        let m = files
            .manifest()
            .ok_or_else(|| format!("snapshot {id} has no manifest"))?;
        if m.get("format").and_then(Value::as_str) != Some(super::FORMAT) {
            return Err(format!("snapshot {id} is not in format {}", super::FORMAT));
        }
        let theirs = m.get("cluster_id").and_then(Value::as_str).unwrap_or("");
        if theirs != cluster_id {
            return Err(format!(
                "snapshot {id} is of cluster {theirs:?}, the brokers now answer as {cluster_id:?}"
            ));
        }
        let mut parts = BTreeMap::new();
        for (key, p) in m
            .get("partitions")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let bad = || format!("snapshot {id}: partition {key} in its manifest is malformed");
            let topic = p.get("topic").and_then(Value::as_str).ok_or_else(bad)?;
            let partition = p
                .get("partition")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(bad)?;
            let cut = p.get("cut").and_then(Value::as_i64).ok_or_else(bad)?;
            let segments: Vec<Seg> = p
                .get("segments")
                .cloned()
                .map(serde_json::from_value)
                .ok_or_else(bad)?
                .map_err(|e| format!("{}: {e}", bad()))?;
            for s in &segments {
                // A segment named in the manifest but missing from the tree cannot be
                // carried; such a snapshot is not built on.
                files.node(&s.file).map_err(|e| e.to_string())?;
            }
            parts.insert((topic.to_string(), partition), PrevPart { cut, segments });
        }
        let topic_ids = m
            .get("topics")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(t, info)| Some((t.clone(), info.get("topic_id")?.as_str()?.to_string())))
            .collect();
        Ok(Previous {
            files,
            parts,
            topic_ids,
        })
    }
}

/// One piece of a partition's new run of segments, in offset order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A segment of the previous snapshot, kept as it is.
    Keep(Seg),
    /// Neighbouring segments of the previous snapshot, written again as one.
    Merge(Vec<Seg>),
    /// The records from this offset to the cut, fetched from the broker.
    Fetch(i64),
}

/// What a backup does with one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartPlan {
    /// The new run of segments.
    pub pieces: Vec<Piece>,
    /// Offsets the broker deleted after the previous cut before this backup could read
    /// them: (from, to), exclusive end.
    pub gap: Option<(i64, i64)>,
    /// Why the previous snapshot's segments were not used, when there were some.
    pub restarted: Option<String>,
}

/// Plans a partition from its previous state and its bounds now, with at most
/// `max_segments` segments (at least 2).
pub fn plan(
    prev: Option<&PrevPart>,
    b: &Bounds,
    keep_deleted: bool,
    max_segments: usize,
) -> PartPlan {
    let full = |restarted| PartPlan {
        pieces: vec![Piece::Fetch(b.log_start.min(b.cut))],
        gap: None,
        restarted,
    };
    let Some(p) = prev else {
        return full(None);
    };
    if b.cut < p.cut {
        return full(Some(format!(
            "it ends at offset {}, before the previous backup's cut {}: the topic was recreated or truncated, so it is backed up in full",
            b.cut, p.cut
        )));
    }
    let mut kept: Vec<Seg> = p.segments.clone();
    if !keep_deleted {
        kept.retain(|s| s.end > b.log_start);
    }
    let start = p.cut.max(b.log_start);
    let gap = (b.log_start > p.cut).then_some((p.cut, b.log_start.min(b.cut)));
    let fetch = b.cut > start;
    let mut groups: Vec<Vec<Seg>> = kept.into_iter().map(|s| vec![s]).collect();
    while groups.len() + usize::from(fetch) > max_segments && groups.len() >= 2 {
        let size = |g: &Vec<Seg>| g.iter().map(|s| s.bytes).sum::<u64>();
        let i = (0..groups.len() - 1)
            .min_by_key(|&i| size(&groups[i]) + size(&groups[i + 1]))
            .unwrap_or(0);
        let next = groups.remove(i + 1);
        groups[i].extend(next);
    }
    let mut pieces: Vec<Piece> = groups
        .into_iter()
        .map(|mut g| {
            if g.len() == 1 {
                Piece::Keep(g.remove(0))
            } else {
                Piece::Merge(g)
            }
        })
        .collect();
    if fetch {
        pieces.push(Piece::Fetch(start));
    }
    PartPlan {
        pieces,
        gap,
        restarted: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(first: i64, end: i64, bytes: u64) -> Seg {
        Seg {
            file: format!("s{first}"),
            first,
            end,
            records: (end - first) as u64,
            last_offset: end - 1,
            digest: String::new(),
            bytes,
        }
    }

    fn bounds(log_start: i64, cut: i64) -> Bounds {
        Bounds {
            leader: 1,
            log_start,
            high_watermark: cut,
            cut,
        }
    }

    #[test]
    fn first_backup_fetches_everything_from_the_log_start() {
        let p = plan(None, &bounds(5, 100), true, MAX_SEGMENTS);
        assert_eq!(p.pieces, vec![Piece::Fetch(5)]);
    }

    #[test]
    fn next_backup_keeps_earlier_segments_and_fetches_after_the_cut() {
        let prev = PrevPart {
            cut: 100,
            segments: vec![seg(0, 100, 1000)],
        };
        let p = plan(Some(&prev), &bounds(0, 150), true, MAX_SEGMENTS);
        assert_eq!(
            p.pieces,
            vec![Piece::Keep(seg(0, 100, 1000)), Piece::Fetch(100)]
        );
        // Nothing new: only what was there.
        let p = plan(Some(&prev), &bounds(0, 100), true, MAX_SEGMENTS);
        assert_eq!(p.pieces, vec![Piece::Keep(seg(0, 100, 1000))]);
    }

    #[test]
    fn retention_past_the_cut_leaves_a_gap_and_keep_deleted_decides_the_rest() {
        let prev = PrevPart {
            cut: 100,
            segments: vec![seg(0, 50, 10), seg(50, 100, 10)],
        };
        let p = plan(Some(&prev), &bounds(120, 200), true, MAX_SEGMENTS);
        assert_eq!(p.gap, Some((100, 120)));
        assert_eq!(p.pieces.len(), 3);
        assert_eq!(p.pieces[2], Piece::Fetch(120));
        let p = plan(Some(&prev), &bounds(60, 200), false, MAX_SEGMENTS);
        assert_eq!(p.gap, None);
        assert_eq!(
            p.pieces,
            vec![Piece::Keep(seg(50, 100, 10)), Piece::Fetch(100)],
            "a segment partly below the log start stays whole"
        );
    }

    #[test]
    fn a_partition_that_went_back_is_backed_up_in_full() {
        let prev = PrevPart {
            cut: 100,
            segments: vec![seg(0, 100, 10)],
        };
        let p = plan(Some(&prev), &bounds(0, 40), true, MAX_SEGMENTS);
        assert_eq!(p.pieces, vec![Piece::Fetch(0)]);
        assert!(p.restarted.unwrap().contains("recreated"));
    }

    #[test]
    fn a_long_run_merges_its_smallest_neighbours() {
        // One big old segment and many small newer ones.
        let mut segments = vec![seg(0, 1000, 1 << 30)];
        segments.extend(
            (0..MAX_SEGMENTS as i64).map(|i| seg(1000 + i * 10, 1010 + i * 10, 100 + i as u64)),
        );
        let cut = segments.last().unwrap().end;
        let prev = PrevPart { cut, segments };
        let p = plan(Some(&prev), &bounds(0, cut + 10), true, MAX_SEGMENTS);
        assert_eq!(p.pieces.len(), MAX_SEGMENTS);
        assert_eq!(
            p.pieces[0],
            Piece::Keep(seg(0, 1000, 1 << 30)),
            "the big one stays"
        );
        let merged: Vec<&Vec<Seg>> = p
            .pieces
            .iter()
            .filter_map(|x| match x {
                Piece::Merge(g) => Some(g),
                _ => None,
            })
            .collect();
        // 17 kept + 1 new is two too many: the two smallest pairs of neighbours are merged.
        assert_eq!(merged.len(), 2, "{merged:?}");
        assert_eq!(merged[0][0].first, 1000);
        assert_eq!(merged[1][0].first, 1020);
        assert!(merged.iter().all(|g| g.len() == 2), "{merged:?}");
        // Offsets stay in order and contiguous.
        let mut at = 0;
        for x in &p.pieces {
            match x {
                Piece::Keep(s) => {
                    assert_eq!(s.first, at);
                    at = s.end;
                }
                Piece::Merge(g) => {
                    assert_eq!(g[0].first, at);
                    at = g.last().unwrap().end;
                }
                Piece::Fetch(f) => assert_eq!(*f, at),
            }
        }
    }
}
