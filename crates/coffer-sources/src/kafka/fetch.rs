//! The backup's read side: the cut (each partition's last stable offset when the backup
//! starts) and, per partition, a fetch of its records up to the cut from the partition's
//! leader, encoded as a segment piece by piece.

use parking_lot::Mutex;

use super::batch;
use super::conn::{error_name, topic_name, Cluster, Result};
use super::segment::{Encoder, Header, Summary};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
};

/// A fetch asks each partition for this much at first; a batch larger than that is asked
/// again with more room (some brokers leave such a partition out of the answer). Small,
/// because several partitions are fetched at once and each piece waits for the archiver.
pub(super) const PARTITION_BYTES: i32 = 1 << 20;
pub(super) const MAX_PARTITION_BYTES: i32 = 256 << 20;
const READ_COMMITTED: i8 = 1;

/// One partition's bounds at the cut.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bounds {
    /// The leader broker.
    pub leader: i32,
    /// The oldest offset the broker still has.
    pub log_start: i64,
    /// The high watermark.
    pub high_watermark: i64,
    /// Where the backup stops (exclusive): the last stable offset, so that records of
    /// transactions still open are left for the next backup.
    pub cut: i64,
}

/// A Fetch of one partition from `offset`.
pub fn fetch_one(
    cluster: &mut Cluster,
    leader: i32,
    topic: &str,
    partition: i32,
    offset: i64,
    max_bytes: i32,
) -> Result<Option<kafka_protocol::messages::fetch_response::PartitionData>> {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        // tansu answers a fetch with min_bytes 0 with no partitions at all.
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        // One partition per request: the request's limit is the partition's, so a broker
        // that ignores the partition limit still answers with about that much.
        .with_max_bytes(max_bytes)
        .with_isolation_level(READ_COMMITTED)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(max_bytes)])]);
    let conn = cluster.node(leader)?;
    let addr = conn.addr().to_string();
    let resp: FetchResponse = match conn.call(ApiKey::Fetch, &req) {
        Ok(r) => r,
        Err(e) => {
            cluster.forget(&addr);
            return Err(e);
        }
    };
    if resp.error_code != 0 {
        return Err(format!(
            "{topic}/{partition}: fetch: {}",
            error_name(resp.error_code)
        ));
    }
    let part = resp
        .responses
        .into_iter()
        .filter(|t| t.topic.0.as_str() == topic)
        .flat_map(|t| t.partitions)
        .find(|p| p.partition_index == partition);
    if let Some(p) = &part {
        if p.error_code != 0 {
            return Err(format!(
                "{topic}/{partition}: fetch: {}",
                error_name(p.error_code)
            ));
        }
    }
    Ok(part)
}

/// Each partition's bounds, taken now: the backup's consistent cut.
pub fn cut(cluster: &mut Cluster, topic: &str, leaders: &[(i32, i32)]) -> Result<Vec<Bounds>> {
    let mut out = Vec::with_capacity(leaders.len());
    for &(partition, leader) in leaders {
        let earliest = list_offset(cluster, leader, topic, partition, -2)?;
        let latest = list_offset(cluster, leader, topic, partition, -1)?;
        if latest <= earliest {
            out.push(Bounds {
                leader,
                log_start: earliest,
                high_watermark: earliest,
                cut: earliest,
            });
            continue;
        }
        // ListOffsets "latest" is the high watermark on Kafka, but some compatible brokers
        // answer lower (tansu: one past the last batch's first offset), and some leave a
        // partition out of a fetch at an offset where no batch starts. A fetch of the last
        // record below it reports the true high watermark and last stable offset, for one
        // batch's bytes.
        let mut room = PARTITION_BYTES;
        let part = loop {
            match fetch_one(cluster, leader, topic, partition, latest - 1, room)? {
                Some(p) => break p,
                None if room < MAX_PARTITION_BYTES => room *= 4,
                None => {
                    return Err(format!(
                    "{topic}/{partition}: the broker left the partition out of every fetch answer"
                ))
                }
            }
        };
        let cut = if part.last_stable_offset >= 0 {
            part.last_stable_offset
        } else {
            part.high_watermark
        };
        out.push(Bounds {
            leader,
            log_start: earliest,
            high_watermark: part.high_watermark,
            cut,
        });
    }
    Ok(out)
}

/// The offset ListOffsets gives for `at` (-2 earliest, -1 latest).
pub fn list_offset(
    cluster: &mut Cluster,
    leader: i32,
    topic: &str,
    partition: i32,
    at: i64,
) -> Result<i64> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(READ_COMMITTED)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(at)])]);
    let resp: ListOffsetsResponse = cluster.node(leader)?.call(ApiKey::ListOffsets, &req)?;
    let p = resp
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| format!("{topic}/{partition}: no answer to ListOffsets"))?;
    if p.error_code != 0 {
        return Err(format!(
            "{topic}/{partition}: ListOffsets: {}",
            error_name(p.error_code)
        ));
    }
    Ok(p.offset)
}

/// What a partition's stream reached; read by the stream's finish check.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Set when the stream reached the cut and wrote its trailer.
    pub summary: Option<Summary>,
    /// Bytes of the segment.
    pub bytes: u64,
    /// Why it stopped early.
    pub error: Option<String>,
}

impl Outcome {
    /// Copies what `buf` holds from `pos` into `out`, counting it as the segment's bytes.
    pub fn serve(outcome: &Mutex<Outcome>, buf: &[u8], pos: &mut usize, out: &mut [u8]) -> usize {
        let n = out.len().min(buf.len() - *pos);
        out[..n].copy_from_slice(&buf[*pos..*pos + n]);
        *pos += n;
        outcome.lock().bytes += n as u64;
        n
    }
}

/// One partition's records up to the cut, fetched from its leader and encoded as a segment
/// a piece at a time (see [`super::prefetch`], which runs several at once).
pub struct SegmentFetch {
    header: Header,
    leader: i32,
    next: i64,
    encoder: Option<Encoder>,
    /// The segment header, until the first piece carries it.
    start: Vec<u8>,
}

impl SegmentFetch {
    /// `topic`/`partition` from `first` to the cut in `b`.
    pub fn new(topic: &str, partition: i32, first: i64, b: &Bounds) -> SegmentFetch {
        let header = Header {
            topic: topic.to_string(),
            partition,
            first,
            end: b.cut,
        };
        let mut start = Vec::new();
        let encoder = Encoder::start(&header, &mut start);
        SegmentFetch {
            header,
            leader: b.leader,
            next: first,
            encoder: Some(encoder),
            start,
        }
    }

    /// Appends the next records to `out` (one fetch's worth), or the trailer once at the
    /// cut, which returns what the segment holds.
    pub fn next_piece(
        &mut self,
        cluster: &mut Cluster,
        out: &mut Vec<u8>,
    ) -> Result<Option<Summary>> {
        out.append(&mut self.start);
        let Some(enc) = self.encoder.as_mut() else {
            return Err(format!(
                "{}/{}: read past the end of its segment",
                self.header.topic, self.header.partition
            ));
        };
        let (topic, partition, end) = (&self.header.topic, self.header.partition, self.header.end);
        let mut room = PARTITION_BYTES;
        let at = out.len();
        while out.len() == at && self.next < end {
            let Some(part) = fetch_one(cluster, self.leader, topic, partition, self.next, room)?
            else {
                if room >= MAX_PARTITION_BYTES {
                    return Err(format!(
                        "{topic}/{partition}: no answer for offset {} even with {} MiB of room",
                        self.next,
                        room >> 20
                    ));
                }
                room *= 4;
                continue;
            };
            let aborted: Vec<(i64, i64)> = part
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            let data = part.records.unwrap_or_default();
            let got = batch::decode(&data[..], &aborted)
                .map_err(|e| format!("{topic}/{partition}: {e}"))?;
            for r in got
                .records
                .iter()
                .filter(|r| r.offset >= self.next && r.offset < end)
            {
                enc.record(r, out);
            }
            match got.next {
                Some(n) if n > self.next => self.next = n,
                _ if data.is_empty() && part.high_watermark < end => {
                    return Err(format!(
                        "{topic}/{partition}: the partition ends at {} before the backup's cut {end} (records deleted or the topic recreated while the backup ran)",
                        part.high_watermark
                    ))
                }
                _ if data.is_empty() => {
                    // Nothing at `next` below the cut: the rest was removed by retention
                    // or compaction while we read.
                    self.next = part.log_start_offset.max(self.next + 1);
                }
                _ if room < MAX_PARTITION_BYTES => room *= 4,
                _ => {
                    return Err(format!(
                        "{topic}/{partition}: a batch at offset {} does not fit in {} MiB",
                        self.next,
                        room >> 20
                    ))
                }
            }
        }
        if self.next >= end {
            if let Some(enc) = self.encoder.take() {
                return Ok(Some(enc.finish(out)));
            }
        }
        Ok(None)
    }
}
