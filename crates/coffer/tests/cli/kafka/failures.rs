//! Brokers that are gone or die in the middle of a backup.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use coffer_testkit::free_port;

use super::{add_source, broker_at, python};
use crate::sources::setup;
use crate::util::run;

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
