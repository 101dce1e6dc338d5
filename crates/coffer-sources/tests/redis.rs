//! The Redis source against real servers: the shared one on 127.0.0.1:6379 (started here if
//! it is not running) and private ones on free ports for settings that must not be changed on
//! the shared one (passwords, ACL users, disk-based replication, no checksums).

// A test fails by panicking: unwrap is how these say what they expect.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_sources::redis::{
    compare_keys, verify_rdb_file, Client, Config, ExpectedKeys, LoadedKeys, Redis, Reply,
    ScratchServer,
};
use coffer_sources::{BackupPlan, Manifest, RestoreRequest, SnapshotFiles, Source, SourceError};
use serde_json::{Map, Value};

const SHARED: &str = "redis://127.0.0.1:6379/";
/// The database of the shared server these tests own.
const DB: u32 = 11;
const T: Duration = Duration::from_secs(30);

// --- servers --------------------------------------------------------------------------------

/// The shared server, started if it is not running.
fn shared_server() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        if Client::connect(SHARED, Duration::from_secs(2)).is_ok() {
            return;
        }
        let st = Command::new("redis-server")
            .args(["--port", "6379", "--daemonize", "yes"])
            .status()
            .expect("redis is not running on 127.0.0.1:6379 and redis-server could not be started");
        assert!(
            st.success(),
            "redis-server --port 6379 --daemonize yes failed: {st}"
        );
        let t0 = Instant::now();
        while let Err(e) = Client::connect(SHARED, Duration::from_secs(1)) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "started redis-server on 6379 but it does not answer: {e}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// A private redis-server on a free port, killed when dropped.
struct Private {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Private {
    fn start(extra: &[&str]) -> Private {
        let dir = tempfile::tempdir().unwrap();
        let port = coffer_testkit::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--logfile", ""])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting redis-server (is it installed?)");
        let mut p = Private {
            child,
            port,
            _dir: dir,
        };
        let t0 = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                p.child.try_wait().unwrap().is_none(),
                "redis-server {extra:?} exited"
            );
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        p.port = port;
        p
    }

    fn url(&self, userinfo: &str) -> String {
        format!("redis://{userinfo}127.0.0.1:{}/", self.port)
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- helpers --------------------------------------------------------------------------------

fn source(url: &str) -> Redis {
    let cfg: Config = toml::from_str(&format!("url = {url:?}\ntimeout = 30")).unwrap();
    Redis::new("cache", cfg).unwrap()
}

struct Backup {
    rdb: Vec<u8>,
    manifest: Map<String, Value>,
}

/// Runs a backup, reading the stream as the archiver does (1 MiB reads).
fn backup(src: &Redis) -> Result<Backup, String> {
    let manifest = Manifest::default();
    let plan = src.backup(&manifest).map_err(|e| e.to_string())?;
    let BackupPlan::Streams(mut streams) = plan else {
        panic!("a Redis backup is one stream")
    };
    assert_eq!(streams.len(), 1);
    let s = streams.pop().unwrap();
    assert_eq!(s.filename, "dump.rdb");
    let mut reader = s.reader;
    let mut rdb = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let read = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => rdb.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    drop(reader);
    (s.finish)()?;
    read.map_err(|e| format!("read failed but finish succeeded: {e}"))?;
    Ok(Backup {
        rdb,
        manifest: manifest.snapshot(),
    })
}

fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn call(c: &mut Client, args: &[&[u8]]) -> Reply {
    c.command(args)
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(args[0])))
}

fn s(c: &mut Client, args: &[&str]) -> Reply {
    c.cmd(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Writes keys of every type into the client's database; returns how many.
fn populate(c: &mut Client) -> u64 {
    s(c, &["FLUSHDB"]);
    let mut n = 0;
    let set = |c: &mut Client, args: &[&[u8]]| {
        call(c, args);
    };
    set(c, &[b"SET", b"str", b"hello world"]);
    set(c, &[b"SET", b"int", b"1234567"]);
    set(c, &[b"SET", b"empty", b""]);
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    set(c, &[b"SET", b"bin\x00\xff\r\nkey", &all_bytes]);
    set(c, &[b"SET", "clé-ünïcode".as_bytes(), "välue ✓".as_bytes()]);
    set(c, &[b"SET", b"big", &pseudo_random(5 << 20, 42)]);
    set(c, &[b"SET", b"ttl", b"expiring", b"EX", b"3600"]);
    set(c, &[b"SET", b"pttl", b"x", b"PX", b"86400000"]);
    n += 8;
    s(c, &["RPUSH", "list_small", "a", "b", "c", ""]);
    let items: Vec<String> = (0..3000).map(|i| format!("item-{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"RPUSH", b"list_big"];
    args.extend(items.iter().map(|i| i.as_bytes()));
    call(c, &args);
    n += 2;
    s(c, &["HSET", "hash_small", "f1", "v1", "f2", "v2"]);
    let fields: Vec<String> = (0..1000).map(|i| format!("field-{i}")).collect();
    let mut args: Vec<&[u8]> = vec![b"HSET", b"hash_big"];
    for f in &fields {
        args.push(f.as_bytes());
        args.push(b"\x00binary\xfe");
    }
    call(c, &args);
    s(c, &["EXPIRE", "hash_big", "7200"]);
    n += 2;
    s(c, &["SADD", "set_int", "1", "2", "3", "-40", "100000"]);
    s(c, &["SADD", "set_str", "a", "b", "c"]);
    let mut args: Vec<&[u8]> = vec![b"SADD", b"set_big"];
    args.extend(fields.iter().map(|f| f.as_bytes()));
    call(c, &args);
    n += 3;
    s(c, &["ZADD", "zset_small", "1", "a", "2.5", "b", "-3", "c"]);
    let scored: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("{}", i as f64 / 7.0), format!("m{i}")))
        .collect();
    let mut args: Vec<&[u8]> = vec![b"ZADD", b"zset_big"];
    for (sc, m) in &scored {
        args.push(sc.as_bytes());
        args.push(m.as_bytes());
    }
    call(c, &args);
    n += 2;
    for i in 0..50 {
        s(
            c,
            &["XADD", "stream", "*", "n", &i.to_string(), "payload", "x"],
        );
    }
    s(c, &["XADD", "stream", "99999999999999-5", "last", "1"]);
    s(c, &["XGROUP", "CREATE", "stream", "grp", "0"]);
    s(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "grp",
            "alice",
            "COUNT",
            "3",
            "STREAMS",
            "stream",
            ">",
        ],
    );
    s(c, &["XADD", "stream_small", "1-1", "a", "b"]);
    n += 2;
    n
}

fn keys(c: &mut Client) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let Reply::Array(r) = s(c, &["SCAN", &cursor, "COUNT", "1000"]) else {
            panic!("SCAN")
        };
        cursor = r[0].text().unwrap();
        if let Reply::Array(ks) = &r[1] {
            out.extend(ks.iter().map(|k| k.bytes().unwrap().to_vec()));
        }
        if cursor == "0" {
            break;
        }
    }
    out.sort();
    out
}

fn sorted(r: Reply) -> Reply {
    match r {
        Reply::Array(mut v) => {
            v.sort_by_key(|x| format!("{x:?}"));
            Reply::Array(v)
        }
        r => r,
    }
}

/// Everything about a key that a restore must reproduce.
fn describe_key(c: &mut Client, k: &[u8]) -> Vec<Reply> {
    let ty = call(c, &[b"TYPE", k]).text().unwrap();
    let mut out = vec![Reply::Simple(ty.clone())];
    match ty.as_str() {
        "string" => out.push(call(c, &[b"GET", k])),
        "list" => out.push(call(c, &[b"LRANGE", k, b"0", b"-1"])),
        "hash" => out.push(sorted(call(c, &[b"HGETALL", k]))),
        "set" => out.push(sorted(call(c, &[b"SMEMBERS", k]))),
        "zset" => out.push(call(c, &[b"ZRANGE", k, b"0", b"-1", b"WITHSCORES"])),
        "stream" => {
            out.push(call(c, &[b"XRANGE", k, b"-", b"+"]));
            out.push(call(c, &[b"XINFO", b"GROUPS", k]));
            if k == b"stream" {
                out.push(call(c, &[b"XPENDING", k, b"grp"]));
            }
        }
        other => panic!("unexpected type {other}"),
    }
    // Whether it has a TTL (not its exact value, which moves).
    let Reply::Integer(pttl) = call(c, &[b"PTTL", k]) else {
        panic!("PTTL")
    };
    out.push(Reply::Integer(pttl.signum()));
    out
}

fn compare_db(src: &mut Client, dst: &mut Client) -> usize {
    let ks = keys(src);
    assert_eq!(ks, keys(dst), "the restored key names differ");
    for k in &ks {
        let (a, b) = (describe_key(src, k), describe_key(dst, k));
        assert!(
            a == b,
            "key {:?} differs after the restore",
            String::from_utf8_lossy(k)
        );
    }
    ks.len()
}

fn redis_check_rdb(path: &Path) {
    let out = Command::new("redis-check-rdb")
        .arg(path)
        .output()
        .expect("running redis-check-rdb");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb rejects the backup: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn only_db(exp: &ExpectedKeys, db: u32) -> ExpectedKeys {
    let pick = |m: &BTreeMap<u32, u64>| {
        m.iter()
            .filter(|(d, _)| **d == db)
            .map(|(d, n)| (*d, *n))
            .collect()
    };
    ExpectedKeys {
        keys: pick(&exp.keys),
        expires: pick(&exp.expires),
        keys_after: exp.keys_after.as_ref().map(pick),
    }
}

// --- tests ----------------------------------------------------------------------------------

#[test]
fn redis_backup_every_type_and_load_it_into_a_scratch_server() {
    shared_server();
    let db_url = format!("{SHARED}{DB}");
    let mut src = Client::connect(&db_url, T).unwrap();
    let n = populate(&mut src);

    let b = backup(&source(SHARED)).unwrap();
    let m = &b.manifest;
    eprintln!("{}", serde_json::to_string_pretty(m).unwrap());
    assert_eq!(m["keys"][format!("db{DB}")], n, "manifest: {m:?}");
    assert_eq!(m["expires"][format!("db{DB}")], 3);
    assert_eq!(m["rdb_bytes"], b.rdb.len() as u64);
    assert!(b.rdb.len() > 5 << 20);
    assert!(b.rdb.starts_with(b"REDIS"));
    let crc = u64::from_le_bytes(b.rdb[b.rdb.len() - 8..].try_into().unwrap());
    assert_ne!(crc, 0);
    assert_eq!(m["rdb_crc64"], format!("{crc:016x}"));
    for key in [
        "redis_version",
        "started_at",
        "duration_seconds",
        "replication_offset",
        "replication_id",
        "transfer",
    ] {
        assert!(m.contains_key(key), "manifest lacks {key}: {m:?}");
    }
    // Redis 7's default replication is diskless: the EOF-mark framing.
    assert_eq!(m["transfer"], "diskless");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    std::fs::write(&path, &b.rdb).unwrap();
    redis_check_rdb(&path);
    let summary = verify_rdb_file(&path).unwrap();
    assert_eq!(summary.crc, crc);

    let server = ScratchServer::start(&path, 16, T).unwrap();
    let mut dst = server.client().unwrap();
    s(&mut dst, &["SELECT", &DB.to_string()]);
    assert_eq!(compare_db(&mut src, &mut dst) as u64, n);
    let Reply::Integer(size) = s(&mut dst, &["DBSIZE"]) else {
        panic!("DBSIZE")
    };
    assert_eq!(size as u64, n);
    let loaded = server.count_keys().unwrap();
    assert_eq!(loaded.per_db[&DB].keys, n);
    // Other tests may write to the shared server's other databases meanwhile: check ours.
    let exp = only_db(
        &ExpectedKeys::from_manifest(&Value::Object(m.clone())).unwrap(),
        DB,
    );
    let ours = LoadedKeys {
        per_db: loaded
            .per_db
            .iter()
            .filter(|(d, _)| **d == DB)
            .map(|(d, k)| (*d, *k))
            .collect(),
        loaded: None,
        expired: None,
    };
    assert_eq!(compare_keys(&exp, &ours).unwrap(), Vec::<String>::new());
    server.shutdown().unwrap();
    s(&mut src, &["FLUSHDB"]);
}

#[test]
fn redis_wrong_password_is_reported() {
    shared_server();
    let e = source("redis://:hunter2-secret@127.0.0.1:6379/")
        .backup(&Manifest::default())
        .err()
        .expect("AUTH with a password on a server without one must fail");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(matches!(e, SourceError::Server { .. }), "{e:?}");
    assert!(
        msg.contains("authentication at redis 127.0.0.1:6379 failed")
            && msg.contains("without any password configured"),
        "{msg}"
    );
    assert!(
        !msg.contains("hunter2"),
        "the error shows the password: {msg}"
    );
}

#[test]
fn redis_unreachable_server_is_reported() {
    let port = coffer_testkit::free_port();
    let e = source(&format!("redis://127.0.0.1:{port}/"))
        .backup(&Manifest::default())
        .err()
        .expect("nothing listens there");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains(&format!("cannot connect to redis at 127.0.0.1:{port}"))
            && msg.contains("refused"),
        "{msg}"
    );
}

#[test]
fn redis_passwords_acl_users_and_disk_based_transfer() {
    let p = Private::start(&["--requirepass", "s3cret", "--repl-diskless-sync", "no"]);
    let mut admin = Client::connect(&format!("{}2", p.url(":s3cret@")), T).unwrap();
    let n = populate(&mut admin);
    s(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "backup",
            "on",
            ">b%pw",
            "+ping",
            "+info",
            "+replconf",
            "+psync",
            "+sync",
        ],
    );
    s(
        &mut admin,
        &["ACL", "SETUSER", "weak", "on", ">weakpw", "+ping", "+info"],
    );

    let e = source(&p.url(""))
        .backup(&Manifest::default())
        .err()
        .unwrap()
        .to_string();
    eprintln!("{e}");
    assert!(
        e.contains("requires a password") && e.contains("NOAUTH"),
        "{e}"
    );
    let e = source(&p.url(":nope@"))
        .backup(&Manifest::default())
        .err()
        .unwrap()
        .to_string();
    eprintln!("{e}");
    assert!(e.contains("WRONGPASS"), "{e}");
    let e = source(&p.url("backup:nope@"))
        .backup(&Manifest::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("as user \"backup\"") && e.contains("WRONGPASS"),
        "{e}"
    );

    // The user may only ping and read INFO: the sync is refused, and the backup fails.
    let e = backup(&source(&p.url("weak:weakpw@"))).err().unwrap();
    eprintln!("{e}");
    assert!(e.contains("NOPERM") && e.contains("REPLCONF"), "{e}");

    // A minimal user, with a %-encoded password; disk-based replication sends $<length>.
    let b = backup(&source(&p.url("backup:b%25pw@"))).unwrap();
    assert_eq!(b.manifest["transfer"], "disk");
    assert_eq!(b.manifest["keys"]["db2"], n);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    std::fs::write(&path, &b.rdb).unwrap();
    redis_check_rdb(&path);
    let server = ScratchServer::start(&path, 16, T).unwrap();
    let mut dst = server.client().unwrap();
    s(&mut dst, &["SELECT", "2"]);
    assert_eq!(compare_db(&mut admin, &mut dst) as u64, n);
    server.shutdown().unwrap();
}

#[test]
fn redis_without_checksums_and_unread_streams() {
    let p = Private::start(&["--rdbchecksum", "no", "--repl-diskless-sync-delay", "0"]);
    let mut c = Client::connect(&p.url(""), T).unwrap();
    s(&mut c, &["SET", "a", "1"]);
    let b = backup(&source(&p.url(""))).unwrap();
    assert_eq!(b.manifest["rdb_crc64"], "0000000000000000");
    assert!(b.manifest["rdb_checksum"]
        .as_str()
        .unwrap()
        .contains("disabled"));

    // A stream that is not read to its end must not become a snapshot.
    let manifest = Manifest::default();
    let BackupPlan::Streams(mut streams) = source(&p.url("")).backup(&manifest).unwrap() else {
        panic!()
    };
    let s = streams.pop().unwrap();
    let mut reader = s.reader;
    let mut buf = [0u8; 10];
    reader.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..5], b"REDIS");
    drop(reader);
    let e = (s.finish)().unwrap_err();
    assert!(e.contains("not read to its end"), "{e}");
}

#[test]
fn redis_scratch_server_reports_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.rdb");
    std::fs::write(&path, b"REDIS0010 this is not an rdb").unwrap();
    assert!(verify_rdb_file(&path).is_err());
    let e = ScratchServer::start(&path, 16, T).err().unwrap();
    eprintln!("{e}");
    assert!(
        e.contains("redis-server exited") && e.contains("dump.rdb"),
        "{e}"
    );
}

/// The whole path: backup through the archiver into a repository, then both kinds of restore.
#[test]
fn redis_repository_round_trip_and_restore() {
    let p = Private::start(&["--repl-diskless-sync-delay", "0"]);
    let mut c = Client::connect(&format!("{}4", p.url("")), T).unwrap();
    let n = populate(&mut c);
    s(&mut c, &["SELECT", "0"]);
    s(&mut c, &["SET", "zero", "0"]);

    let repo_dir = tempfile::tempdir().unwrap();
    let location =
        coffer_repo::backend::Location::parse(repo_dir.path().to_str().unwrap()).unwrap();
    let opts = coffer_repo::InitOptions {
        kdf_n: 1024,
        ..Default::default()
    };
    let repo = Arc::new(coffer_repo::Repository::init(&location, "pw", &opts).unwrap());
    let src = source(&p.url(""));
    let manifest = Manifest::default();
    let BackupPlan::Streams(streams) = src.backup(&manifest).unwrap() else {
        panic!()
    };
    let m2 = manifest.clone();
    let result = coffer_archiver::backup(
        Arc::clone(&repo),
        coffer_archiver::BackupOptions {
            streams,
            tags: coffer_sources::source_tags("cache", "redis"),
            finalize: Some(Box::new(move |extra| {
                extra.insert("coffer".into(), Value::Object(m2.snapshot()));
            })),
            ..Default::default()
        },
        Arc::new(coffer_archiver::Progress::default()),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();

    let repo = Arc::new(coffer_repo::Repository::open(&location, "pw").unwrap());
    repo.load_index().unwrap();
    let snap = coffer_repo::snapshot::SnapshotWithId {
        id: result.snapshot_id,
        snap: result.snapshot,
    };
    let files = SnapshotFiles::open(repo, snap).unwrap();
    assert_eq!(files.manifest().unwrap()["keys"]["db4"], n);

    let e = src.restore(&files, &RestoreRequest::default()).unwrap_err();
    assert!(
        matches!(e, SourceError::Usage(_)) && e.to_string().contains("--scratch"),
        "{e}"
    );

    // Scratch only: a temporary data dir, removed afterwards.
    let req = RestoreRequest {
        scratch: true,
        ..Default::default()
    };
    let report = src.restore(&files, &req).unwrap();
    assert_eq!(report.checks["keys"]["db4"], n, "{report:?}");
    assert_eq!(report.checks["keys"]["db0"], 1, "{report:?}");
    assert_eq!(report.checks["keys_expected"], report.checks["keys"]);
    assert!(
        report.steps.iter().any(|s| s.contains("key counts match")),
        "{report:?}"
    );

    // Target only, then target + scratch (which keeps the data dir), then an existing file.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("redis-data");
    let req = RestoreRequest {
        target: Some(target.clone()),
        ..Default::default()
    };
    let report = src.restore(&files, &req).unwrap();
    let written: PathBuf = target.join("dump.rdb");
    redis_check_rdb(&written);
    assert_eq!(
        report.checks["rdb_bytes"],
        std::fs::metadata(&written).unwrap().len()
    );
    let e = src.restore(&files, &req).unwrap_err();
    assert!(e.to_string().contains("--clean"), "{e}");
    let req = RestoreRequest {
        target: Some(target.clone()),
        scratch: true,
        clean: true,
        ..Default::default()
    };
    let report = src.restore(&files, &req).unwrap();
    eprintln!("{report:#?}");
    assert!(written.exists());
    assert!(
        report.steps.iter().any(|s| s.contains("is kept")),
        "{report:?}"
    );
    // Restores that do not apply to Redis.
    let req = RestoreRequest {
        scratch: true,
        database: Some("4".into()),
        ..Default::default()
    };
    assert!(matches!(
        src.restore(&files, &req),
        Err(SourceError::Usage(_))
    ));
}
