//! Restores into brokers (verified, appended, renamed), into JSON lines and segment files,
//! and drills.

use serde_json::Value;

use super::{broker, contents, offsets, python, site, PRODUCE, READ};
use crate::util::run;

#[test]
fn kafka_backup_restores_records_configs_and_translated_group_offsets() {
    let (s, _a, pa) = site("coffer-kafka-", PRODUCE, "");
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
