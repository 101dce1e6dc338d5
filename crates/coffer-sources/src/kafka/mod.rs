//! Kafka (`type = "kafka"`): a consistent cut of the selected topics, with their records,
//! topic settings and consumer-group offsets, restored so that consumers resume where they
//! were. Kafka has no snapshot command, so the backup makes one, the way OSO's kafka-backup
//! does: it takes each partition's last stable offset when it starts (the cut), reads every
//! record below it from the partition's leader, and stores a partition as segment files
//! (see [`segment`]) with its original offsets, keys, values, headers and timestamps. After
//! the first backup only the offsets past the previous snapshot's cut are fetched; the older
//! segments are carried over unread ([`incremental`]). The manifest ([`entry`]) holds the
//! cluster id, each topic's partition count, replication factor and configs, each
//! partition's bounds and segments with their record counts and digests, and the committed
//! offsets of the selected consumer groups, read before the cut so that none lies beyond it.
//!
//! A restore creates the topics (or refuses ones that hold records, unless `--append`),
//! produces every record to its original partition in order with an idempotent producer,
//! and commits each group's offsets translated to the new offsets: a group that had
//! consumed up to original offset C resumes at the first restored record at or after C.
//!
//! Wire protocol: requests and responses are encoded by the `kafka-protocol` crate
//! ([`conn`]); record batches by [`batch`], which keeps what client libraries drop
//! (duplicate headers, the timestamp type).

pub mod batch;
mod configs;
pub mod conn;
mod entry;
mod fetch;
mod groups;
pub mod incremental;
mod jsonl;
mod merge;
mod prefetch;
mod restore;
pub mod scratch;
pub mod segment;
mod stored;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coffer_archiver::StreamSource;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::{ApiKey, ListGroupsResponse};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    BackupPlan, Manifest, RestoreReport, RestoreRequest, SnapshotFiles, Source, SourceError,
};
use conn::{error_name, Cluster};
use entry::PartEntry;
use fetch::{Bounds, Outcome, SegmentFetch};
use incremental::{Piece, Previous};
use prefetch::Prefetch;

/// The manifest's `format`.
pub const FORMAT: &str = "coffer-kafka/1";
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const DEFAULT_PARALLEL: usize = 4;

/// `[[source]]` settings of `type = "kafka"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Topics to back up, as regular expressions matching whole names (default: every
    /// topic but internal ones such as `__consumer_offsets`).
    #[serde(default)]
    pub topics: Vec<String>,
    /// Topics to leave out, as regular expressions.
    #[serde(default)]
    pub exclude_topics: Vec<String>,
    /// Consumer groups whose committed offsets are kept (default: all).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Seconds to wait for a broker (default 30).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Keep records in the backup after the broker's retention deleted them (default true):
    /// a backup outlives the topic's retention. `false` drops the segments that lie wholly
    /// below a partition's log start.
    #[serde(default)]
    pub keep_deleted: Option<bool>,
    /// Segments a partition may have before neighbouring ones are merged (default 16; at
    /// least 2): more means less re-reading, fewer means smaller snapshot trees.
    #[serde(default)]
    pub max_segments: Option<usize>,
    /// Partitions fetched at once by a backup and produced at once by a restore (default
    /// 4; a restore's `--jobs` overrides it).
    #[serde(default)]
    pub parallel: Option<usize>,
    /// The broker a drill starts as its scratch restore target: a tansu binary (default:
    /// `tansu` on the PATH).
    #[serde(default)]
    pub scratch_broker: Option<String>,
}

/// A Kafka cluster as a source.
pub struct Kafka {
    name: String,
    brokers: Vec<String>,
    topics: Vec<regex::Regex>,
    exclude: Vec<regex::Regex>,
    groups: Vec<regex::Regex>,
    timeout: Duration,
    keep_deleted: bool,
    max_segments: usize,
    parallel: usize,
}

fn whole(patterns: &[String], what: &str) -> Result<Vec<regex::Regex>, String> {
    patterns
        .iter()
        .map(|p| {
            regex::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| format!("{what} pattern {p:?} is not a valid regular expression: {e}"))
        })
        .collect()
}

impl Kafka {
    /// A source from its settings.
    pub fn new(name: &str, cfg: Config) -> Result<Kafka, SourceError> {
        let usage = |m: String| SourceError::Usage(format!("source {name:?}: {m}"));
        if cfg.brokers.is_empty() {
            return Err(usage(
                "brokers is empty: list at least one HOST:PORT".into(),
            ));
        }
        for b in &cfg.brokers {
            if b.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(usage(format!("broker {b:?} is not HOST:PORT")));
            }
        }
        let max_segments = cfg.max_segments.unwrap_or(incremental::MAX_SEGMENTS);
        if max_segments < 2 {
            return Err(usage(format!(
                "max_segments = {max_segments}: a partition needs at least 2 segments (the kept records and the new ones)"
            )));
        }
        Ok(Kafka {
            name: name.to_string(),
            brokers: cfg.brokers,
            topics: whole(&cfg.topics, "topics").map_err(usage)?,
            exclude: whole(&cfg.exclude_topics, "exclude_topics").map_err(usage)?,
            groups: whole(
                cfg.groups.as_deref().unwrap_or(&[".*".to_string()]),
                "groups",
            )
            .map_err(usage)?,
            timeout: Duration::from_secs(cfg.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS)),
            keep_deleted: cfg.keep_deleted.unwrap_or(true),
            max_segments,
            parallel: match cfg.parallel {
                Some(0) => return Err(usage("parallel = 0: use at least 1".into())),
                Some(n) => n,
                None => DEFAULT_PARALLEL,
            },
        })
    }

    fn server_err(&self, message: String) -> SourceError {
        SourceError::Server {
            source_name: self.name.clone(),
            message,
        }
    }

    fn connect(&self, brokers: &[String]) -> Result<Cluster, SourceError> {
        Cluster::connect(brokers, self.timeout).map_err(|e| self.server_err(e))
    }

    fn selected(&self, topic: &str) -> bool {
        (self.topics.is_empty() || self.topics.iter().any(|r| r.is_match(topic)))
            && !self.exclude.iter().any(|r| r.is_match(topic))
    }
}

/// A topic as the backup found it.
struct TopicInfo {
    name: String,
    /// Its topic id (Kafka 2.8+), which changes when the topic is deleted and created again.
    id: Option<String>,
    /// (partition, leader) in partition order.
    leaders: Vec<(i32, i32)>,
    replication_factor: usize,
}

/// The file a partition's segment becomes: `kseg.TOPIC.PARTITION.FIRST.END` (topic names
/// may hold dots, so it is read from the right).
pub fn segment_file(topic: &str, partition: i32, first: i64, end: i64) -> String {
    format!("kseg.{topic}.{partition}.{first:020}.{end:020}")
}

impl Source for Kafka {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn backup(&self, manifest: &Manifest) -> Result<BackupPlan, SourceError> {
        self.backup_on(manifest, None)
    }

    fn incremental(&self) -> bool {
        true
    }

    fn backup_on(
        &self,
        manifest: &Manifest,
        previous: Option<&SnapshotFiles>,
    ) -> Result<BackupPlan, SourceError> {
        let started = std::time::Instant::now();
        let mut cluster = self.connect(&self.brokers)?;
        let md = cluster.metadata(None).map_err(|e| self.server_err(e))?;
        let mut all = Vec::new();
        let mut topics = Vec::new();
        for t in &md.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            if t.is_internal || name.starts_with("__") {
                continue;
            }
            all.push(name.clone());
            if !self.selected(&name) {
                continue;
            }
            if t.error_code != 0 {
                return Err(self.server_err(format!("topic {name}: {}", error_name(t.error_code))));
            }
            let mut leaders: Vec<(i32, i32)> = t
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            leaders.sort_unstable();
            if let Some(p) = leaders.iter().find(|(_, l)| *l < 0) {
                return Err(self.server_err(format!(
                    "topic {name} partition {} has no leader: the backup cannot read it",
                    p.0
                )));
            }
            let rf = t
                .partitions
                .first()
                .map_or(1, |p| p.replica_nodes.len().max(1));
            topics.push(TopicInfo {
                name,
                id: (!t.topic_id.is_nil()).then(|| t.topic_id.to_string()),
                leaders,
                replication_factor: rf,
            });
        }
        if topics.is_empty() {
            all.sort();
            return Err(SourceError::Usage(format!(
                "source {:?}: no topic matches (the cluster has: {})",
                self.name,
                if all.is_empty() {
                    "no topics".to_string()
                } else {
                    all.join(", ")
                }
            )));
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        let configs = configs::own(&mut cluster, &names).map_err(|e| self.server_err(e))?;
        // Offsets first, the cut after: every committed offset is then at or below the cut.
        let groups = self.group_offsets(&mut cluster, &topics)?;

        let cluster_id = cluster.cluster_id.clone().unwrap_or_default();
        let previous = previous.and_then(|files| match Previous::load(files, &cluster_id) {
            Ok(p) => Some(p),
            Err(why) => {
                tracing::warn!(source = %self.name, "not building on the previous snapshot: {why}");
                None
            }
        });
        manifest.set("format", FORMAT);
        manifest.set("cluster_id", cluster_id);
        if let Some(p) = &previous {
            manifest.set("previous", p.files.snapshot.id.to_hex());
        }
        manifest.set("brokers", json!(self.brokers));
        manifest.set("started_at", chrono::Utc::now().to_rfc3339());
        manifest.set("groups", groups);
        let mut prefetch = Prefetch::new();
        let mut streams = Vec::new();
        let mut carried = Vec::new();
        let mut warnings = Vec::new();
        // Segments are kept or merged only when there is a previous snapshot.
        let prev_files = || {
            previous
                .as_ref()
                .map(|p| p.files)
                .ok_or_else(|| SourceError::Snapshot("no previous snapshot to build on".into()))
        };
        for t in &topics {
            let bounds =
                fetch::cut(&mut cluster, &t.name, &t.leaders).map_err(|e| self.server_err(e))?;
            manifest.set_in(
                "topics",
                &t.name,
                json!({
                    "partitions": t.leaders.len(),
                    "replication_factor": t.replication_factor,
                    "configs": configs.get(&t.name).cloned().unwrap_or_default(),
                    "topic_id": t.id,
                }),
            );
            // A topic deleted and created again may have grown past the previous cut: only
            // its id tells, and none of the old records belong to it.
            let recreated = previous
                .as_ref()
                .and_then(|p| p.topic_ids.get(&t.name))
                .zip(t.id.as_ref())
                .filter(|(was, now)| was != now);
            if let Some((was, now)) = recreated {
                warnings.push(format!(
                    "{}: the topic was deleted and created again since the previous backup (topic id {was}, now {now}): backed up in full",
                    t.name
                ));
            }
            for (&(partition, _), b) in t.leaders.iter().zip(&bounds) {
                let key = (t.name.clone(), partition);
                let prev = previous
                    .as_ref()
                    .filter(|_| recreated.is_none())
                    .and_then(|p| p.parts.get(&key));
                let plan = incremental::plan(prev, b, self.keep_deleted, self.max_segments);
                let at = format!("{}/{partition}", t.name);
                if let Some(why) = &plan.restarted {
                    warnings.push(format!("{at}: {why}"));
                }
                if let Some((from, to)) = plan.gap {
                    warnings.push(format!(
                        "{at}: offsets {from}..{to} were deleted by the broker's retention before a backup could read them"
                    ));
                }
                let part = PartEntry::new(manifest, &t.name, partition, b, &plan.pieces);
                for (slot, piece) in plan.pieces.into_iter().enumerate() {
                    match piece {
                        Piece::Keep(seg) => carried.push(prev_files()?.node(&seg.file)?.clone()),
                        Piece::Merge(segs) => {
                            let files = prev_files()?;
                            let with_nodes = segs
                                .into_iter()
                                .map(|s| Ok((files.node(&s.file)?.clone(), s)))
                                .map(|r| r.map(|(n, s)| (s, n)))
                                .collect::<Result<Vec<_>, SourceError>>()?;
                            streams.push(self.merge_stream(files, &part, slot, with_nodes));
                        }
                        Piece::Fetch(first) => {
                            streams.push(partition_stream(&mut prefetch, &part, slot, first, b));
                        }
                    }
                }
                part.write();
            }
        }
        // Fetching starts now, ahead of the archiver, which reads the streams in this order.
        prefetch.start(&cluster, self.parallel);
        for w in &warnings {
            tracing::warn!(source = %self.name, "{w}");
        }
        manifest.set("warnings", json!(warnings));
        manifest.set("cut_at", chrono::Utc::now().to_rfc3339());
        streams.push(crate::util::manifest_stream(manifest, started));
        Ok(BackupPlan::Incremental { streams, carried })
    }

    fn restore(
        &self,
        files: &SnapshotFiles,
        req: &RestoreRequest,
    ) -> Result<RestoreReport, SourceError> {
        restore::restore(self, files, req)
    }

    fn describe(&self) -> String {
        let topics = if self.topics.is_empty() {
            "all topics".to_string()
        } else {
            format!("{} topic patterns", self.topics.len())
        };
        format!("kafka://{} ({topics})", self.brokers.join(","))
    }
}

impl Kafka {
    /// Neighbouring segments of the previous snapshot written again as one.
    fn merge_stream(
        &self,
        files: &SnapshotFiles,
        part: &PartEntry,
        slot: usize,
        segs: Vec<(incremental::Seg, coffer_repo::tree::Node)>,
    ) -> StreamSource {
        let (first, end) = (
            segs.first().map_or(0, |s| s.0.first),
            segs.last().map_or(0, |s| s.0.end),
        );
        let file = segment_file(&part.topic, part.partition, first, end);
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let reader = merge::MergeStream::new(
            Arc::clone(&files.repo),
            &part.topic,
            part.partition,
            segs,
            Arc::clone(&outcome),
        );
        part.stream(file, slot, first, end, Box::new(reader), outcome)
    }

    /// `{group: {topic: {partition: offset}}}` for the selected groups and topics.
    fn group_offsets(
        &self,
        cluster: &mut Cluster,
        topics: &[TopicInfo],
    ) -> Result<Value, SourceError> {
        let listed: ListGroupsResponse = cluster
            .any()
            .and_then(|c| c.call(ApiKey::ListGroups, &ListGroupsRequest::default()))
            .map_err(|e| self.server_err(e))?;
        if listed.error_code != 0 {
            return Err(
                self.server_err(format!("listing groups: {}", error_name(listed.error_code)))
            );
        }
        let mut names: Vec<String> = listed
            .groups
            .iter()
            .map(|g| g.group_id.0.to_string())
            .filter(|g| self.groups.iter().any(|r| r.is_match(g)))
            .collect();
        names.sort();
        let wanted: std::collections::HashSet<&str> =
            topics.iter().map(|t| t.name.as_str()).collect();
        let mut out = Map::new();
        for g in names {
            let all = groups::committed(cluster, &g).map_err(|e| self.server_err(e))?;
            let offsets: BTreeMap<&String, BTreeMap<String, i64>> = all
                .iter()
                .filter(|(t, _)| wanted.contains(t.as_str()))
                .map(|(t, ps)| (t, ps.iter().map(|(p, o)| (p.to_string(), *o)).collect()))
                .collect();
            if !offsets.is_empty() {
                out.insert(g, json!(offsets));
            }
        }
        Ok(Value::Object(out))
    }
}

/// The records of a partition from `first` to the cut, fetched from its leader ahead of
/// the archiver.
fn partition_stream(
    prefetch: &mut Prefetch,
    part: &PartEntry,
    slot: usize,
    first: i64,
    b: &Bounds,
) -> StreamSource {
    let file = segment_file(&part.topic, part.partition, first, b.cut);
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let fetch = SegmentFetch::new(&part.topic, part.partition, first, b);
    let reader = prefetch.add(fetch, Arc::clone(&outcome));
    part.stream(file, slot, first, b.cut, Box::new(reader), outcome)
}
