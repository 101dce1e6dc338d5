//! Restoring a Kafka snapshot: topics created with their backed-up partition count and
//! configs, every record produced to its original partition in order by an idempotent
//! producer, and consumer-group offsets translated to where the same records now are.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::Value;

use super::batch::{self, Producer, Record};
use super::configs;
use super::conn::{error_name, topic_name, Cluster};
use super::groups::{self, Offsets};
use super::jsonl;
use super::segment::RecordDigest;
use super::stored::{self, Part, Window};
use super::verify::{self, Produced, OFFSET_HEADER};
use super::Kafka;
use crate::{RestoreReport, RestoreRequest, SnapshotFiles, SourceError};

/// A produce request carries at most this much of one partition (Kafka's default
/// `max.message.bytes` is 1 MiB).
const BATCH_BYTES: usize = 900 << 10;
const BATCH_RECORDS: usize = 10_000;
const DUPLICATE_SEQUENCE: i16 = 46;

pub(super) fn restore(
    src: &Kafka,
    files: &SnapshotFiles,
    req: &RestoreRequest,
) -> Result<RestoreReport, SourceError> {
    let (manifest, parts) = stored::load(files)?;
    let topics = manifest
        .get("topics")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for t in &req.topics {
        if !topics.contains_key(t) {
            let mut have: Vec<&String> = topics.keys().collect();
            have.sort();
            return Err(SourceError::Usage(format!(
                "--topic {t}: the snapshot has no such topic (it has: {})",
                have.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let renames: BTreeMap<&str, &str> = req
        .renames
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    for from in renames.keys() {
        if !topics.contains_key(*from) {
            return Err(SourceError::Usage(format!(
                "--rename {from}:...: the snapshot has no topic {from}"
            )));
        }
    }
    let chosen = |t: &str| req.topics.is_empty() || req.topics.iter().any(|x| x == t);
    let target_of = |t: &str| {
        renames
            .get(t)
            .map_or_else(|| t.to_string(), |n| n.to_string())
    };

    let win = window(req)?;
    let parts: Vec<&Part> = parts.iter().filter(|p| chosen(&p.topic)).collect();
    let stored: u64 = parts.iter().map(|p| p.records).sum();
    let mut report = RestoreReport::default();
    if let Some(dir) = &req.target {
        if req.segments {
            let mut names: Vec<&str> = parts
                .iter()
                .flat_map(|p| p.segments.iter().map(|s| s.file.as_str()))
                .collect();
            names.push("coffer-manifest.json");
            crate::util::write_files(files, dir, &names, &mut report)?;
        } else {
            let total = jsonl::write(files, &parts, dir, &target_of, win, &mut report)?;
            report.checks.insert("records".into(), total.into());
            in_window(req, total, stored, &mut report)?;
        }
        return Ok(report);
    }

    let brokers = req
        .to_brokers
        .clone()
        .unwrap_or_else(|| src.brokers.clone());
    let mut cluster = src.connect(&brokers)?;
    let err = |m: String| src.server_err(m);

    // Topics: create what is missing, refuse what holds records (unless --append).
    let wanted: Vec<&String> = {
        let mut w: Vec<&String> = topics.keys().filter(|t| chosen(t)).collect();
        w.sort();
        w
    };
    let targets: Vec<String> = wanted.iter().map(|t| target_of(t)).collect();
    let md = cluster.metadata(Some(&targets)).map_err(err)?;
    let mut to_create = Vec::new();
    for (t, target) in wanted.iter().zip(&targets) {
        let info = &topics[t.as_str()];
        let partitions = info.get("partitions").and_then(Value::as_i64).unwrap_or(1) as i32;
        let existing = md
            .topics
            .iter()
            .find(|m| m.name.as_ref().is_some_and(|n| n.0.as_str() == target) && m.error_code == 0);
        match existing {
            Some(m) => {
                if m.partitions.len() as i32 != partitions {
                    return Err(SourceError::Usage(format!(
                        "topic {target} exists with {} partitions; the backup of {t} has {partitions}: restore into a new topic with --rename {t}:NEW",
                        m.partitions.len()
                    )));
                }
                if !req.append {
                    for p in &m.partitions {
                        let (start, end) =
                            bounds(&mut cluster, p.leader_id.0, target, p.partition_index)
                                .map_err(err)?;
                        if end > start {
                            return Err(SourceError::Usage(format!(
                                "topic {target} already holds records (partition {} has offsets {start}..{end}): restore into a new topic with --rename {t}:NEW, or add to it with --append",
                                p.partition_index
                            )));
                        }
                    }
                }
            }
            None => to_create.push((target.clone(), partitions, info)),
        }
    }
    if !to_create.is_empty() {
        let broker_count = md.brokers.len().max(1);
        let req_topics = to_create
            .iter()
            .map(|(name, partitions, info)| {
                let rf = info
                    .get("replication_factor")
                    .and_then(Value::as_u64)
                    .unwrap_or(1) as usize;
                let rf = rf.min(broker_count).max(1) as i16;
                let configs = info
                    .get("configs")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(
                                        v.as_str().map(|s| StrBytes::from_string(s.to_string())),
                                    )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                CreatableTopic::default()
                    .with_name(topic_name(name))
                    .with_num_partitions(*partitions)
                    .with_replication_factor(rf)
                    .with_configs(configs)
            })
            .collect();
        let creq = CreateTopicsRequest::default()
            .with_topics(req_topics)
            .with_timeout_ms(30_000);
        let resp: CreateTopicsResponse = cluster
            .any()
            .and_then(|c| c.call(ApiKey::CreateTopics, &creq))
            .map_err(err)?;
        for r in &resp.topics {
            if r.error_code != 0 {
                return Err(err(format!(
                    "creating topic {}: {}{}",
                    r.name.0.as_str(),
                    error_name(r.error_code),
                    r.error_message
                        .as_ref()
                        .map(|m| format!(": {}", m.as_str()))
                        .unwrap_or_default()
                )));
            }
        }
        for (name, partitions, _) in &to_create {
            report
                .steps
                .push(format!("created topic {name} with {partitions} partitions"));
        }
    }
    let leaders = wait_for_leaders(&mut cluster, &targets).map_err(err)?;
    // (target, backed-up configs, created by this restore), for --verify.
    let settings: Vec<(String, serde_json::Map<String, Value>, bool)> = wanted
        .iter()
        .zip(&targets)
        .map(|(t, target)| {
            let configs = topics[t.as_str()]
                .get("configs")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let created = to_create.iter().any(|(n, _, _)| n == target);
            (target.clone(), configs, created)
        })
        .collect();

    // One idempotent producer for the whole restore: a retried request cannot duplicate.
    let ip: InitProducerIdResponse = cluster
        .any()
        .and_then(|c| {
            c.call(
                ApiKey::InitProducerId,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
        })
        .map_err(err)?;
    if ip.error_code != 0 {
        return Err(err(format!(
            "starting an idempotent producer: {}",
            error_name(ip.error_code)
        )));
    }

    // Committed offsets per (topic, partition): (group, original offset).
    let mut commits: BTreeMap<(String, i32), Vec<(String, i64)>> = BTreeMap::new();
    if !req.no_groups {
        for (g, ts) in manifest
            .get("groups")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            for (t, ps) in ts.as_object().into_iter().flatten() {
                for (p, off) in ps.as_object().into_iter().flatten() {
                    if let (Ok(p), Some(off)) = (p.parse::<i32>(), off.as_i64()) {
                        commits
                            .entry((t.clone(), p))
                            .or_default()
                            .push((g.clone(), off));
                    }
                }
            }
        }
    }
    let mut jobs = Vec::new();
    for part in parts {
        let target = target_of(&part.topic);
        let leader = *leaders
            .get(&(target.clone(), part.partition))
            .ok_or_else(|| {
                err(format!(
                    "topic {target} partition {} has no leader",
                    part.partition
                ))
            })?;
        let pending = commits
            .remove(&(part.topic.clone(), part.partition))
            .unwrap_or_default();
        jobs.push(Job {
            part,
            target,
            leader,
            pending,
        });
    }
    let producer = Producer {
        id: ip.producer_id.0,
        epoch: ip.producer_epoch,
        sequence: 0,
    };
    let workers = req.jobs.unwrap_or(src.parallel).max(1);
    let started = Instant::now();
    let each = Each {
        window: win,
        // The partitions restored at once share the repository's read-ahead.
        read_ahead: (8 / workers).clamp(1, 8),
        offset_header: !req.no_offset_header,
        digest: req.verify,
    };
    let mut done = cluster.each(jobs, workers, |conns, job| {
        produce_partition(src, conns, files, job, producer, each)
    })?;
    done.sort_by(|a, b| (&a.target, a.partition).cmp(&(&b.target, b.partition)));
    // Translated: group -> target topic -> partition -> new offset.
    let mut translated: BTreeMap<String, Offsets> = BTreeMap::new();
    let mut total = 0u64;
    for d in &done {
        for (g, _, offset) in &d.placed {
            translated
                .entry(g.clone())
                .or_default()
                .entry(d.target.clone())
                .or_default()
                .insert(d.partition, *offset);
        }
        total += d.records;
    }
    report.steps.push(format!(
        "produced {total} records into {} topics in {:.1} s ({workers} partitions at once)",
        targets.len(),
        started.elapsed().as_secs_f64()
    ));
    report.checks.insert("records".into(), total.into());
    in_window(req, total, stored, &mut report)?;

    if !req.no_groups {
        for (g, ts) in &translated {
            groups::commit(&mut cluster, g, ts).map_err(err)?;
            report.steps.push(format!(
                "committed offsets of group {g} on {} partitions",
                ts.values().map(BTreeMap::len).sum::<usize>()
            ));
        }
        report
            .checks
            .insert("groups".into(), translated.len().into());
        report.checks.insert(
            "offsets".into(),
            serde_json::to_value(&translated).unwrap_or_default(),
        );
    }
    if req.verify {
        verify_all(
            src,
            &mut cluster,
            done,
            &translated,
            &settings,
            workers,
            &mut report,
        )?;
    }
    Ok(report)
}

/// Reads every restored partition back and compares it with what was produced, then the
/// groups' committed offsets with what was committed.
fn verify_all(
    src: &Kafka,
    cluster: &mut Cluster,
    done: Vec<Done>,
    translated: &BTreeMap<String, Offsets>,
    settings: &[(String, serde_json::Map<String, Value>, bool)],
    workers: usize,
    report: &mut RestoreReport,
) -> Result<(), SourceError> {
    let started = Instant::now();
    let produced: Vec<Produced> = done.into_iter().filter_map(|d| d.produced).collect();
    let partitions = produced.len();
    let checked = cluster
        .each(produced, workers, |conns, p| verify::partition(conns, &p))
        .map_err(|e| SourceError::Verify(format!("verifying the restore: {e}")))?;
    let mut wrong = verify::groups(cluster, translated).map_err(|e| src.server_err(e))?;
    // A topic this restore created must have the backed-up settings; one that was there
    // already keeps its own, which the restore only reports.
    let mut kept = Vec::new();
    for (topic, want, created) in settings {
        let diff = configs::differences(cluster, topic, want).map_err(|e| src.server_err(e))?;
        if *created {
            wrong.extend(diff);
        } else {
            kept.extend(diff);
        }
    }
    for k in kept {
        report
            .steps
            .push(format!("{k} (the topic existed before this restore)"));
    }
    if !wrong.is_empty() {
        return Err(SourceError::Verify(format!(
            "verifying the restore: {}",
            wrong.join("; ")
        )));
    }
    let records: u64 = checked.iter().map(|c| c.records).sum();
    let bytes: u64 = checked.iter().map(|c| c.bytes).sum();
    report.steps.push(format!(
        "read back {records} records of {partitions} partitions ({:.1} MB) in {:.1} s: counts and digests match what was produced, topic settings those backed up{}",
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        if translated.is_empty() {
            String::new()
        } else {
            format!(
                ", and {} groups resume where they had stopped",
                translated.len()
            )
        }
    ));
    report
        .checks
        .insert("verified_records".into(), records.into());
    report
        .checks
        .insert("verified_partitions".into(), partitions.into());
    report.checks.insert(
        "verified_topic_configs".into(),
        settings
            .iter()
            .map(|(_, c, _)| c.len())
            .sum::<usize>()
            .into(),
    );
    Ok(())
}

/// A partition to restore.
struct Job<'a> {
    part: &'a Part,
    target: String,
    leader: i32,
    /// (group, original committed offset) of the groups that had read it.
    pending: Vec<(String, i64)>,
}

/// With a time window, says how many of the snapshot's `stored` records it held; none is an
/// error, not a silent success.
fn in_window(
    req: &RestoreRequest,
    total: u64,
    stored: u64,
    report: &mut RestoreReport,
) -> Result<(), SourceError> {
    if req.from_time.is_none() && req.to_time.is_none() {
        return Ok(());
    }
    report.steps.push(format!(
        "{total} of the snapshot's {stored} records have a timestamp in the window"
    ));
    report
        .checks
        .insert("records_in_snapshot".into(), stored.into());
    if total == 0 && stored > 0 {
        return Err(SourceError::Usage(format!(
            "no record of the {stored} in the snapshot has a timestamp in the window given by --from-time/--to-time: nothing was restored"
        )));
    }
    Ok(())
}

/// The records `--from-time`/`--to-time` select.
pub(super) fn window(req: &RestoreRequest) -> Result<Window, SourceError> {
    let w = Window {
        from: req.from_time.unwrap_or(i64::MIN),
        to: req.to_time.unwrap_or(i64::MAX),
    };
    if w.from >= w.to {
        return Err(SourceError::Usage(
            "--from-time is not before --to-time: no record can be in that window".into(),
        ));
    }
    Ok(w)
}

/// How each partition is restored: the records in `window`, with `read_ahead` threads
/// reading the repository ahead; with the original offset in a header, and a digest of what
/// was produced for `--verify`.
#[derive(Clone, Copy)]
struct Each {
    window: Window,
    read_ahead: usize,
    offset_header: bool,
    digest: bool,
}

/// A partition restored.
struct Done {
    target: String,
    partition: i32,
    records: u64,
    /// (group, original committed offset, new offset to commit).
    placed: Vec<(String, i64, i64)>,
    /// What to check it against, when verifying.
    produced: Option<Produced>,
}

/// Produces one partition's segments in order; returns where its groups resume.
fn produce_partition(
    src: &Kafka,
    cluster: &mut Cluster,
    files: &SnapshotFiles,
    job: Job<'_>,
    producer: Producer,
    each: Each,
) -> Result<Done, SourceError> {
    let Job {
        part,
        target,
        leader,
        mut pending,
    } = job;
    let err = |m: String| src.server_err(m);
    pending.sort_by_key(|(_, c)| *c);
    let mut pending = pending.into_iter().peekable();
    let mut sink = PartitionSink {
        cluster,
        leader,
        topic: &target,
        partition: part.partition,
        producer,
        buf: Vec::new(),
        bytes: 0,
        first: None,
        next: None,
    };
    // Records go in order to one partition that nobody else writes (checked on every
    // answer), so the i-th record restored lands at the first one's offset + i.
    let mut n = 0u64;
    let mut placed: Vec<(String, i64, u64)> = Vec::new();
    let mut digest = each.digest.then(RecordDigest::default);
    part.each_record(files, each.window, each.read_ahead, |mut r| {
        // A group that had consumed up to C resumes at the first record restored at or
        // after C.
        while let Some((g, c)) = pending.next_if(|(_, c)| *c <= r.offset) {
            placed.push((g, c, n));
        }
        if let Some(d) = digest.as_mut() {
            d.add(&r);
        }
        if each.offset_header {
            r.headers.push((
                OFFSET_HEADER.to_vec(),
                Some(r.offset.to_string().into_bytes()),
            ));
        }
        sink.push(r).map_err(err)?;
        n += 1;
        Ok::<(), SourceError>(())
    })?;
    sink.flush().map_err(err)?;
    let first = match sink.first {
        Some(f) => f,
        None => {
            bounds(sink.cluster, leader, &target, part.partition)
                .map_err(err)?
                .1
        }
    };
    // Groups that had read everything resume after the last restored record.
    placed.extend(pending.map(|(g, c)| (g, c, n)));
    let placed: Vec<(String, i64, i64)> = placed
        .into_iter()
        .map(|(g, c, i)| (g, c, first + i as i64))
        .collect();
    Ok(Done {
        partition: part.partition,
        records: n,
        produced: digest.map(|d| Produced {
            target: target.clone(),
            partition: part.partition,
            leader,
            first,
            summary: d.finish(),
            header: each.offset_header,
            groups: placed.clone(),
        }),
        placed,
        target,
    })
}

/// Records of one partition gathered into produce requests.
struct PartitionSink<'a> {
    cluster: &'a mut Cluster,
    leader: i32,
    topic: &'a str,
    partition: i32,
    producer: Producer,
    buf: Vec<Record>,
    bytes: usize,
    /// Where the first record went.
    first: Option<i64>,
    /// Where the next request's records must go.
    next: Option<i64>,
}

impl PartitionSink<'_> {
    /// Queues `r`, sending what is queued first when a request is full.
    fn push(&mut self, r: Record) -> Result<(), String> {
        let size = 32
            + r.key.as_ref().map_or(0, Vec::len)
            + r.value.as_ref().map_or(0, Vec::len)
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 8)
                .sum::<usize>();
        if !self.buf.is_empty()
            && (self.bytes + size > BATCH_BYTES || self.buf.len() >= BATCH_RECORDS)
        {
            self.send()?;
        }
        self.bytes += size;
        self.buf.push(r);
        Ok(())
    }

    /// Sends what is queued.
    fn flush(&mut self) -> Result<(), String> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }

    fn send(&mut self) -> Result<(), String> {
        let refs: Vec<&Record> = self.buf.iter().collect();
        let bytes = batch::encode(&refs, self.producer);
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(self.topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(self.partition)
                    .with_records(Some(bytes.into()))])]);
        let resp: ProduceResponse = self
            .cluster
            .node(self.leader)?
            .call(ApiKey::Produce, &req)?;
        let p = resp
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.index == self.partition)
            .ok_or_else(|| {
                format!(
                    "{}/{}: no answer to the produce request",
                    self.topic, self.partition
                )
            })?;
        if p.error_code != 0 && p.error_code != DUPLICATE_SEQUENCE {
            return Err(format!(
                "{}/{}: producing records: {}{}",
                self.topic,
                self.partition,
                error_name(p.error_code),
                p.error_message
                    .as_ref()
                    .map(|m| format!(": {}", m.as_str()))
                    .unwrap_or_default()
            ));
        }
        let n = self.buf.len() as i64;
        let base = match (self.next, p.error_code) {
            // A duplicate (a retry of what the broker already has) carries no offset.
            (Some(expected), DUPLICATE_SEQUENCE) => expected,
            (Some(expected), _) if p.base_offset != expected => {
                return Err(format!(
                    "{}/{}: the broker put records at offset {} where {expected} was expected: someone else is writing to the partition",
                    self.topic, self.partition, p.base_offset
                ));
            }
            _ => p.base_offset,
        };
        self.first.get_or_insert(base);
        self.next = Some(base + n);
        self.producer.sequence = self.producer.sequence.wrapping_add(n as i32);
        self.buf.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// The (start, end) offsets of a partition: ListOffsets earliest and latest. Some brokers
/// answer "latest" low (tansu), but never equal to "earliest" when the partition holds records.
fn bounds(
    cluster: &mut Cluster,
    leader: i32,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), String> {
    Ok((
        super::fetch::list_offset(cluster, leader, topic, partition, -2)?,
        super::fetch::list_offset(cluster, leader, topic, partition, -1)?,
    ))
}

/// Each target partition's leader, waiting for new topics to get them.
fn wait_for_leaders(
    cluster: &mut Cluster,
    topics: &[String],
) -> Result<BTreeMap<(String, i32), i32>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = cluster.metadata(Some(topics))?;
        let mut out = BTreeMap::new();
        let mut missing = None;
        for t in &md.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            for p in &t.partitions {
                if p.leader_id.0 >= 0 {
                    out.insert((name.clone(), p.partition_index), p.leader_id.0);
                } else {
                    missing = Some(format!("{name}/{}", p.partition_index));
                }
            }
            if t.error_code != 0 || t.partitions.is_empty() {
                missing = Some(name);
            }
        }
        match missing {
            None => return Ok(out),
            Some(m) if Instant::now() >= deadline => {
                return Err(format!("{m} has no leader 30 s after it was created"))
            }
            Some(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
