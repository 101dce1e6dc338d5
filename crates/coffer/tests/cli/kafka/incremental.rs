//! Incremental backups: what is fetched, carried and merged, older snapshots, recreated
//! topics.

use serde_json::Value;

use super::{
    backup, broker, contents, newest_manifest, python, segment_count, site, PRODUCE, READ,
};
use crate::util::run;

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

#[test]
fn kafka_backups_are_incremental_and_each_snapshot_restores_on_its_own() {
    // A short run of segments, so that the fourth backup merges.
    let (s, _a, pa) = site("coffer-kafka-incr-", PRODUCE, "max_segments = 3\n");
    let port = pa.to_string();
    let first = backup(&s, &[]);
    assert_eq!(first["files_new"], 5);
    let after_first = python(&s.dir, READ, &[&port, "payments:1"]);

    // Ten more payments: only they are fetched, every other segment is kept unread.
    python(&s.dir, MORE, &[&port, "200", "10"]);
    let second = backup(&s, &[]);
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
    let same = backup(&s, &[]);
    assert_eq!(same["files_new"], 1, "only the manifest: {same}");
    python(&s.dir, MORE, &[&port, "210", "10"]);
    backup(&s, &[]);
    assert_eq!(segment_count(&newest_manifest(&s), "payments/0"), 3);
    // A fourth segment would be one too many: the two small newer ones are merged.
    python(&s.dir, MORE, &[&port, "220", "10"]);
    let merged = backup(&s, &[]);
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
    let (s, _a, pa) = site("coffer-kafka-older-", PRODUCE, "");
    let port = pa.to_string();
    backup(&s, &[]);
    python(&s.dir, MORE, &[&port, "200", "10"]);
    backup(&s, &[]);
    let middle = python(&s.dir, READ, &[&port, "payments:1"]);
    let middle_id = s.repo.snapshot_ids().last().unwrap().clone();
    python(&s.dir, MORE, &[&port, "210", "25"]);
    backup(&s, &[]);

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
    let (s, _a, pa) = site("coffer-kafka-recreated-", PRODUCE, "");
    let port = pa.to_string();
    backup(&s, &[]);
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
