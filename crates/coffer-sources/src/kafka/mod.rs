//! Kafka (`type = "kafka"`): a consistent cut of the selected topics, with their records,
//! topic settings and consumer-group offsets, restored so that consumers resume where they
//! were. Kafka has no snapshot command, so the backup makes one, the way OSO's kafka-backup
//! does: it takes each partition's last stable offset when it starts (the cut), reads every
//! record below it from the partition's leader, and stores each partition as one segment
//! file (see [`segment`]) with its original offsets, keys, values, headers and timestamps.
//! The manifest holds the cluster id, each topic's partition count, replication factor and
//! configs, each partition's bounds, record count and digest, and the committed offsets of
//! the selected consumer groups, read before the cut so that none lies beyond it.
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
pub mod conn;
mod fetch;
mod restore;
pub mod segment;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coffer_archiver::StreamSource;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, GroupId, ListGroupsResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{
    BackupPlan, Manifest, RestoreReport, RestoreRequest, SnapshotFiles, Source, SourceError,
};
use conn::{error_name, Cluster};
use fetch::{Bounds, Outcome, PartitionStream};

/// The manifest's `format`.
pub const FORMAT: &str = "coffer-kafka/1";
const DEFAULT_TIMEOUT_SECS: u64 = 30;

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
}

/// A Kafka cluster as a source.
pub struct Kafka {
    name: String,
    brokers: Vec<String>,
    topics: Vec<regex::Regex>,
    exclude: Vec<regex::Regex>,
    groups: Vec<regex::Regex>,
    timeout: Duration,
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
        let configs = topic_configs(&mut cluster, &topics).map_err(|e| self.server_err(e))?;
        // Offsets first, the cut after: every committed offset is then at or below the cut.
        let groups = self.group_offsets(&mut cluster, &topics)?;

        manifest.set("format", FORMAT);
        manifest.set("cluster_id", cluster.cluster_id.clone().unwrap_or_default());
        manifest.set("brokers", json!(self.brokers));
        manifest.set("started_at", chrono::Utc::now().to_rfc3339());
        manifest.set("groups", groups);
        let cluster = Arc::new(Mutex::new(cluster));
        let mut streams = Vec::new();
        for t in &topics {
            let bounds = fetch::cut(&mut cluster.lock(), &t.name, &t.leaders)
                .map_err(|e| self.server_err(e))?;
            manifest.set_in(
                "topics",
                &t.name,
                json!({
                    "partitions": t.leaders.len(),
                    "replication_factor": t.replication_factor,
                    "configs": configs.get(&t.name).cloned().unwrap_or_default(),
                }),
            );
            for (&(partition, _), b) in t.leaders.iter().zip(&bounds) {
                streams.push(self.partition_stream(&cluster, manifest, &t.name, partition, b));
            }
        }
        manifest.set("cut_at", chrono::Utc::now().to_rfc3339());
        streams.push(crate::util::manifest_stream(manifest, started));
        Ok(BackupPlan::Streams(streams))
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
    fn partition_stream(
        &self,
        cluster: &Arc<Mutex<Cluster>>,
        manifest: &Manifest,
        topic: &str,
        partition: i32,
        b: &Bounds,
    ) -> StreamSource {
        let first = b.log_start.min(b.cut);
        let file = segment_file(topic, partition, first, b.cut);
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let reader = PartitionStream::new(
            Arc::clone(cluster),
            topic,
            partition,
            first,
            b,
            Arc::clone(&outcome),
        );
        let manifest = manifest.clone();
        let (topic, b, name) = (topic.to_string(), *b, file.clone());
        StreamSource {
            filename: file,
            reader: Box::new(reader),
            finish: Box::new(move || {
                let o = outcome.lock();
                if let Some(e) = &o.error {
                    return Err(e.clone());
                }
                let Some(s) = &o.summary else {
                    return Err(format!(
                        "{topic}/{partition}: the stream ended before the cut {}",
                        b.cut
                    ));
                };
                manifest.set_in(
                    "partitions",
                    &format!("{topic}/{partition}"),
                    json!({
                        "topic": topic,
                        "partition": partition,
                        "file": name,
                        "log_start": b.log_start,
                        "high_watermark": b.high_watermark,
                        "cut": b.cut,
                        "first": first,
                        "records": s.records,
                        "last_offset": s.last_offset,
                        "bytes": o.bytes,
                        "digest": s.digest,
                    }),
                );
                Ok(())
            }),
        }
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
            let req =
                OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(StrBytes::from_string(g.clone())))
                    .with_topics(None)]);
            let resp: OffsetFetchResponse = cluster
                .coordinator(&g)
                .and_then(|c| c.call(ApiKey::OffsetFetch, &req))
                .map_err(|e| self.server_err(e))?;
            let mut offsets: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
            for rg in &resp.groups {
                if rg.error_code != 0 {
                    return Err(self
                        .server_err(format!("group {g}: offsets: {}", error_name(rg.error_code))));
                }
                for t in &rg.topics {
                    let topic = t.name.0.to_string();
                    if !wanted.contains(topic.as_str()) {
                        continue;
                    }
                    for p in &t.partitions {
                        if p.error_code == 0 && p.committed_offset >= 0 {
                            offsets
                                .entry(topic.clone())
                                .or_default()
                                .insert(p.partition_index.to_string(), p.committed_offset);
                        }
                    }
                }
            }
            if !offsets.is_empty() {
                out.insert(g, json!(offsets));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Each topic's settings that differ from the broker's defaults.
fn topic_configs(
    cluster: &mut Cluster,
    topics: &[TopicInfo],
) -> conn::Result<BTreeMap<String, Map<String, Value>>> {
    const TOPIC: i8 = 2;
    const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    let req = DescribeConfigsRequest::default().with_resources(
        topics
            .iter()
            .map(|t| {
                DescribeConfigsResource::default()
                    .with_resource_type(TOPIC)
                    .with_resource_name(StrBytes::from_string(t.name.clone()))
                    .with_configuration_keys(None)
            })
            .collect(),
    );
    let resp: DescribeConfigsResponse = cluster.any()?.call(ApiKey::DescribeConfigs, &req)?;
    let mut out = BTreeMap::new();
    for r in resp.results {
        if r.error_code != 0 {
            return Err(format!(
                "topic {}: reading its configs: {}",
                r.resource_name.as_str(),
                error_name(r.error_code)
            ));
        }
        // Kafka lists every setting and marks the topic's own; a broker that lists only
        // the ones set at creation (all marked default) gets them all kept.
        let full = r
            .configs
            .iter()
            .any(|c| c.config_source == DYNAMIC_TOPIC_CONFIG)
            || r.configs.len() > 20;
        let mut m = Map::new();
        for c in &r.configs {
            let own = if full {
                c.config_source == DYNAMIC_TOPIC_CONFIG
            } else {
                !c.read_only
            };
            if own && !c.is_sensitive {
                if let Some(v) = &c.value {
                    m.insert(c.name.to_string(), Value::String(v.to_string()));
                }
            }
        }
        out.insert(r.resource_name.to_string(), m);
    }
    Ok(out)
}
