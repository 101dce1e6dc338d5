//! `restore --verify` for Kafka (and every drill): each restored partition read back from
//! its leader and compared with what the restore produced. Per partition: no offset missing
//! between the first and the last record produced, the same count, and the same digest over
//! each record's timestamp, key, value and headers (the segments' digest, with the
//! `coffer.offset` header taken off); that header's original offsets rising; and each
//! group's committed offset sitting right after the last record the group had consumed
//! before the backup and on the first one it had not. Then every group's committed offsets
//! are read back and compared with what the restore committed.

use std::collections::BTreeMap;

use super::batch::{self, Record};
use super::conn::Cluster;
use super::fetch::{fetch_one, MAX_PARTITION_BYTES, PARTITION_BYTES};
use super::groups::{self, Offsets};
use super::segment::{RecordDigest, Summary};

/// The header a restore adds to each record: its offset in the backed-up partition, in
/// decimal. A record restored twice carries two; the last is this restore's.
pub const OFFSET_HEADER: &[u8] = b"coffer.offset";

/// What a restore produced into one partition.
pub(super) struct Produced {
    pub target: String,
    pub partition: i32,
    pub leader: i32,
    /// Offset of the first record produced.
    pub first: i64,
    /// Count and digest of the records as produced (before the header was added).
    pub summary: Summary,
    /// Whether each record carries [`OFFSET_HEADER`].
    pub header: bool,
    /// (group, original committed offset, offset committed in the restored partition).
    pub groups: Vec<(String, i64, i64)>,
}

/// What reading a partition back found.
pub(super) struct Checked {
    pub records: u64,
    pub bytes: u64,
}

/// Reads `p`'s records back and compares them; the error names the first difference.
pub(super) fn partition(cluster: &mut Cluster, p: &Produced) -> Result<Checked, String> {
    let (topic, partition) = (p.target.as_str(), p.partition);
    let at = |o: i64| format!("{topic}/{partition} offset {o}");
    let end = p.first + p.summary.records as i64;
    // New committed offset -> (group, original offset) of the groups resuming there.
    let mut resume: BTreeMap<i64, Vec<(&str, i64)>> = BTreeMap::new();
    for (g, orig, new) in &p.groups {
        resume.entry(*new).or_default().push((g, *orig));
    }
    let mut digest = RecordDigest::default();
    let (mut next, mut expected, mut bytes) = (p.first, p.first, 0u64);
    let mut last_orig: Option<i64> = None;
    let mut room = PARTITION_BYTES;
    while next < end {
        let Some(part) = fetch_one(cluster, p.leader, topic, partition, next, room)? else {
            if room >= MAX_PARTITION_BYTES {
                return Err(format!("{}: no answer to a fetch", at(next)));
            }
            room *= 4;
            continue;
        };
        let data = part.records.unwrap_or_default();
        bytes += data.len() as u64;
        let got = batch::decode(&data[..], &[]).map_err(|e| format!("{topic}/{partition}: {e}"))?;
        for mut r in got
            .records
            .into_iter()
            .filter(|r| r.offset >= next && r.offset < end)
        {
            if r.offset != expected {
                return Err(format!(
                    "{}: missing when read back (the next record is at {})",
                    at(expected),
                    r.offset
                ));
            }
            expected += 1;
            if p.header {
                let orig = take_offset_header(&mut r).ok_or_else(|| {
                    format!(
                        "{}: no {} header",
                        at(r.offset),
                        String::from_utf8_lossy(OFFSET_HEADER)
                    )
                })?;
                if last_orig.is_some_and(|l| l >= orig) {
                    return Err(format!(
                        "{}: original offset {orig} does not follow {}",
                        at(r.offset),
                        last_orig.unwrap_or_default()
                    ));
                }
                for (g, c) in resume.get(&r.offset).into_iter().flatten() {
                    if orig < *c {
                        return Err(format!(
                            "group {g} resumes at {} (original offset {orig}), a record it had consumed before the backup (it had committed {c})",
                            at(r.offset)
                        ));
                    }
                }
                for (g, c) in resume.get(&(r.offset + 1)).into_iter().flatten() {
                    if orig >= *c {
                        return Err(format!(
                            "group {g} resumes after {} (original offset {orig}), a record it had not consumed before the backup (it had committed {c})",
                            at(r.offset)
                        ));
                    }
                }
                last_orig = Some(orig);
            }
            digest.add(&r);
        }
        match got.next {
            Some(n) if n > next => next = n,
            _ if data.is_empty() => {
                return Err(format!(
                    "{topic}/{partition}: the partition ends at {} where the restore produced records up to {}",
                    part.high_watermark.min(next),
                    end - 1
                ))
            }
            _ if room < MAX_PARTITION_BYTES => room *= 4,
            _ => {
                return Err(format!(
                    "{}: a batch does not fit in {} MiB",
                    at(next),
                    room >> 20
                ))
            }
        }
    }
    let read = digest.finish();
    if read.records != p.summary.records {
        return Err(format!(
            "{topic}/{partition}: {} records read back, {} produced",
            read.records, p.summary.records
        ));
    }
    if read.digest != p.summary.digest {
        return Err(format!(
            "{topic}/{partition}: the records read back differ from those produced (digest {} against {})",
            &read.digest[..12],
            &p.summary.digest[..12]
        ));
    }
    Ok(Checked {
        records: read.records,
        bytes,
    })
}

/// Takes the last header off `r` if it is [`OFFSET_HEADER`]; returns its offset.
fn take_offset_header(r: &mut Record) -> Option<i64> {
    let (k, v) = r.headers.last()?;
    if k != OFFSET_HEADER {
        return None;
    }
    let o = std::str::from_utf8(v.as_deref()?).ok()?.parse().ok()?;
    r.headers.pop();
    Some(o)
}

/// Compares each group's committed offsets with `committed` (group -> offsets); returns
/// the differences.
pub(super) fn groups(
    cluster: &mut Cluster,
    committed: &BTreeMap<String, Offsets>,
) -> Result<Vec<String>, String> {
    let mut wrong = Vec::new();
    for (g, want) in committed {
        let have = groups::committed(cluster, g)?;
        for (t, ps) in want {
            for (p, o) in ps {
                let h = have.get(t).and_then(|m| m.get(p));
                if h != Some(o) {
                    wrong.push(format!(
                        "group {g} on {t}/{p}: committed {}, the restore committed {o}",
                        h.map_or_else(|| "nothing".to_string(), i64::to_string)
                    ));
                }
            }
        }
    }
    Ok(wrong)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_offset_header_is_taken_only_from_the_end() {
        let mut r = Record {
            headers: vec![
                (OFFSET_HEADER.to_vec(), Some(b"7".to_vec())),
                (b"trace".to_vec(), Some(b"x".to_vec())),
            ],
            ..Default::default()
        };
        assert_eq!(take_offset_header(&mut r), None);
        assert_eq!(r.headers.len(), 2);
        r.headers
            .push((OFFSET_HEADER.to_vec(), Some(b"1234".to_vec())));
        assert_eq!(take_offset_header(&mut r), Some(1234));
        assert_eq!(r.headers.len(), 2);
        r.headers.push((OFFSET_HEADER.to_vec(), None));
        assert_eq!(take_offset_header(&mut r), None);
    }
}
