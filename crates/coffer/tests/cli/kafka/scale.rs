//! The issue's data set end to end.

use super::{backup, broker, newest_manifest, python, site, READ};
use crate::util::run;

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
    let (s, _a, pa) = site("coffer-kafka-100k-", HUNDRED_K, "");
    let port = pa.to_string();
    backup(&s, &[]);
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
