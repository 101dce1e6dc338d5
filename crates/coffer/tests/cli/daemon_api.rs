//! The daemon's access control and repository side: bearer tokens and roles with the HTTP
//! codes they give, the audit of mutating calls, a max_runtime cancel that stops the run and
//! not the daemon; verify runs that find real damage, copy_to into a second repository that
//! restic accepts, `/api/repositories`, `/api/metrics` and the repository gauges; and an S3
//! repository guarded by its quota.

use std::time::Duration;

use sha2::Digest;

use coffer_testkit::free_port;

use crate::jobs::{http, http_as, http_raw, json_get, Daemon, Lab};
use crate::util::{run, wait_until, Repo, S3_KEY, S3_SECRET};

const VIEWER: &str = "viewer-token-0123456789";
const OPS: &str = "ops-token-0123456789abcdef";

#[test]
fn api_tokens_roles_codes_and_audit() {
    let ops_sha = hex::encode(sha2::Sha256::digest(OPS.as_bytes()));
    let lab = Lab::with_server(
        "max_concurrent_jobs = 1",
        &format!(
            r#"
[[server.token]]
name = "grafana"
role = "read"
token = "{VIEWER}"

[[server.token]]
name = "ops"
role = "operator"
token_sha256 = "{ops_sha}"

[[job]]
name = "fast"
sources = ["files"]
schedule = "0 0 1 1 *"

[[job]]
name = "stuck"
sources = ["slow"]
schedule = "0 0 1 1 *"
max_runtime = "3s"
retries = 0
"#
        ),
    );
    let port = free_port();
    let d = Daemon::start(&lab, port, "serve.log");

    // No token, an unknown one, a read token on a POST.
    let (code, raw) = http_raw(port, "GET", "/api/status", None);
    assert_eq!(code, 401, "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{raw}"
    );
    assert!(raw.contains("Authorization: Bearer TOKEN"), "{raw}");
    assert_eq!(
        http_as(port, "GET", "/api/status", Some("not-a-token-at-all")).0,
        401
    );
    assert_eq!(http(port, "GET", "/metrics").0, 401, "open_metrics is off");
    assert_eq!(http(port, "GET", "/-/healthy").0, 401);
    assert_eq!(http_as(port, "GET", "/-/healthy", Some(VIEWER)).0, 200);
    let (code, body) = http_as(port, "GET", "/api/status", Some(VIEWER));
    assert_eq!(code, 200, "{body}");
    assert_eq!(http_as(port, "GET", "/metrics", Some(OPS)).0, 200);
    let (code, body) = http_as(port, "POST", "/api/jobs/fast/run", Some(VIEWER));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("operator"), "{body}");
    assert_eq!(http(port, "POST", "/api/jobs/fast/pause").0, 401);

    // An operator: run, a second run while the first is going, unknown job and endpoint.
    assert_eq!(
        http_as(port, "POST", "/api/jobs/stuck/run", Some(OPS)).0,
        202
    );
    let (code, body) = http_as(port, "POST", "/api/jobs/stuck/run", Some(OPS));
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        http_as(port, "POST", "/api/jobs/nope/run", Some(OPS)).0,
        404
    );
    assert_eq!(http_as(port, "GET", "/api/nothing", Some(OPS)).0, 404);
    assert_eq!(
        http_as(port, "GET", "/api/runs?kind=bogus", Some(OPS)).0,
        400
    );

    // One worker: a second job waits as a QUEUED run in the catalog.
    let runs = |job: &str| -> serde_json::Value {
        let (code, body) = http_as(port, "GET", &format!("/api/runs?job={job}"), Some(VIEWER));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(
        http_as(port, "POST", "/api/jobs/fast/run", Some(OPS)).0,
        202
    );
    let queued = runs("fast")["runs"][0].clone();
    assert_eq!(queued["status"], "QUEUED", "{queued}");
    assert_eq!(queued["trigger"], "api", "{queued}");

    // max_runtime cancels the run, FAILED, and the daemon goes on serving.
    wait_until(
        "the stuck run to be cancelled",
        Duration::from_secs(30),
        || runs("stuck")["runs"][0]["status"] == "FAILED",
    );
    let r = runs("stuck")["runs"][0].clone();
    assert!(r["errors"].to_string().contains("max_runtime"), "{r}");
    wait_until(
        "the queued run after the cancelled one",
        Duration::from_secs(30),
        || runs("fast")["runs"][0]["status"] == "SUCCESS",
    );
    let done = runs("fast");
    assert_eq!(done["runs"].as_array().unwrap().len(), 1, "{done}");
    assert_eq!(
        done["runs"][0]["id"], queued["id"],
        "the queued row became the run"
    );

    // Every mutating call is in the audit, with its caller and outcome.
    let (code, body) = http_as(port, "GET", "/api/audit", Some(VIEWER));
    assert_eq!(code, 200, "{body}");
    let audit: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entries = audit["audit"].as_array().unwrap();
    let has = |actor: &str, action: &str, target: &str, outcome: &str| {
        entries.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["target"] == target
                && e["outcome"] == outcome
                && e["origin"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("127.0.0.1:"))
        })
    };
    assert!(has("token:ops", "job.run", "stuck", "ok"), "{audit}");
    assert!(has("token:ops", "job.run", "stuck", "409"), "{audit}");
    assert!(has("token:ops", "job.run", "nope", "404"), "{audit}");
    assert!(has("token:grafana", "job.run", "fast", "403"), "{audit}");
    assert!(has("token:ops", "job.run", "fast", "ok"), "{audit}");
    assert!(d.stop().success());

    // Without tokens, only loopback: both the config check and serve refuse 0.0.0.0.
    let open = Lab::with_server(
        "listen = \"0.0.0.0:9\"",
        "[[job]]\nname = \"fast\"\nsources = [\"files\"]\nschedule = \"0 0 1 1 *\"\n",
    );
    let r = run(&mut open.coffer(["config", "check"])).expect_code(1);
    assert!(
        r.stderr.contains("not a loopback address") && r.stderr.contains("[[server.token]]"),
        "{}",
        r.describe()
    );
    let quiet =
        Lab::new("[[job]]\nname = \"fast\"\nsources = [\"files\"]\nschedule = \"0 0 1 1 *\"\n");
    let r = run(&mut quiet.coffer(["serve", "--listen", &format!("0.0.0.0:{}", free_port())]))
        .expect_code(1);
    assert!(r.stderr.contains("loopback"), "{}", r.describe());
}

#[test]
fn verify_copy_to_and_repository_figures() {
    let lab = Lab::with_server(
        "",
        r#"
[[repository]]
name = "offsite"
url = "${COFFER_TEST_DIR}/offsite"
password = "${COFFER_PASSWORD}"

[[job]]
name = "nightly"
sources = ["files"]
repository = "local"
copy_to = ["offsite"]
schedule = "0 0 1 1 *"
retention = { last = 2 }
verify_subset = "100%"
"#,
    );
    let offsite = Repo::local(&lab.dir.join("offsite"));
    offsite.init();
    let job = |args: &[&str]| {
        let mut c = lab.coffer(args);
        c.env("COFFER_TEST_DIR", &lab.dir);
        run(&mut c)
    };
    for i in 0..3 {
        std::fs::write(lab.dir.join("data/changing"), format!("version {i}")).unwrap();
        let r = job(&["--json", "job", "run", "nightly"]).ok();
        let s = r.summary();
        assert_eq!(s["status"], "SUCCESS", "{}", r.describe());
        assert_eq!(s["copies"][0]["repository"], "offsite", "{s}");
        assert_eq!(s["copies"][0]["status"], "SUCCESS", "{s}");
        assert_eq!(s["copies"][0]["snapshots"], 1, "{s}");
    }
    // Retention ran in both repositories; restic reads the copy back in full.
    let snaps = |repo: &Repo| -> usize {
        let r = run(&mut repo.coffer(["--json", "snapshots", "--tag", "source:files"])).ok();
        serde_json::from_slice::<serde_json::Value>(&r.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(snaps(&lab.repo), 2);
    assert_eq!(snaps(&offsite), 2);
    offsite.restic_check(true).ok();
    let restored = lab.dir.join("from-offsite");
    let mut restore = offsite.coffer(["restore", "latest", "--target"]);
    restore.arg(&restored);
    run(&mut restore).ok();
    let data = lab.dir.join("data");
    let copy = restored.join(data.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(copy.join("changing")).unwrap(), b"version 2");

    // A verify of a sound repository, then one that finds a damaged pack.
    let r = job(&["--json", "job", "verify", "nightly"]).ok();
    let s = r.summary();
    assert_eq!(s["kind"], "verify");
    assert_eq!(s["status"], "SUCCESS", "{}", r.describe());
    assert!(s["verify"]["packs_read"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["verify"]["packs_read"], s["verify"]["packs"], "{s}");
    let pack = walk_files(&lab.dir.join("repo/data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x5a;
    std::fs::write(&pack, bytes).unwrap();
    let r = job(&["--json", "job", "verify", "nightly"]).expect_code(1);
    let s = r.summary();
    assert_eq!(s["status"], "FAILED", "{}", r.describe());
    let name = pack.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        s["verify"]["damaged_packs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == name.as_str()),
        "{s}"
    );
    let r = job(&["--json", "runs", "--kind", "verify"]).ok();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["runs"][0]["id"]
        .as_str()
        .unwrap()
        .contains("-verify-nightly"));

    // The daemon: repository figures, the verify outcome, the JSON metrics.
    let port = free_port();
    let log = std::fs::File::create(lab.dir.join("serve.log")).unwrap();
    let mut c = lab.coffer(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    c.env("COFFER_TEST_DIR", &lab.dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let _d = crate::jobs::Daemon::from_child(c.spawn().unwrap(), port);
    wait_until("repository figures", Duration::from_secs(30), || {
        json_get(port, "/api/repositories")["repositories"][1]["snapshots"].is_u64()
    });
    let repos = json_get(port, "/api/repositories");
    let local = &repos["repositories"][0];
    assert_eq!(local["name"], "local");
    assert_eq!(local["snapshots"], 2, "{repos}");
    assert!(local["size_bytes"].as_u64().unwrap() > 1 << 20, "{repos}");
    assert!(
        local["storage"]["capacity_bytes"].as_u64().unwrap() > 0,
        "{repos}"
    );
    assert_eq!(local["last_verify"]["status"], "FAILED", "{repos}");
    assert_eq!(repos["repositories"][1]["snapshots"], 2, "{repos}");
    assert!(repos["repositories"][1]["last_verify"].is_null(), "{repos}");
    let (_, text) = http(port, "GET", "/metrics");
    for line in [
        "coffer_repository_last_verify_success{repository=\"local\"} 0",
        "coffer_repository_snapshots{repository=\"offsite\"} 2",
        "coffer_repository_snapshots{repository=\"local\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
    let m = json_get(port, "/api/metrics");
    let sizes = &m["coffer_repository_size_bytes"];
    assert_eq!(sizes["type"], "gauge", "{m}");
    assert_eq!(sizes["samples"].as_array().unwrap().len(), 2, "{m}");
    assert_eq!(
        m["coffer_job_runs_total"]["samples"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "one counter per final state: {m}"
    );
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn s3_repository_over_its_quota_pauses_backups() {
    let repo = Repo::s3("quota-guard");
    repo.init();
    let lab = Lab::with_server(
        "",
        &format!(
            r#"
[[repository]]
name = "bucket"
url = "{url}"
password = "${{COFFER_PASSWORD}}"
quota = "{quota}"

[[job]]
name = "to-s3"
sources = ["files"]
repository = "bucket"
schedule = "0 0 1 1 *"
"#,
            url = repo.url,
            quota = "${QUOTA}"
        ),
    );
    let job = |quota: &str| {
        let mut c = lab.coffer(["--json", "job", "run", "to-s3"]);
        c.env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .env("QUOTA", quota);
        run(&mut c)
    };
    // The repository holds a few hundred bytes of key and config: a 100-byte quota is over.
    let r = job("100").ok();
    let s = r.summary();
    assert_eq!(s["status"], "PAUSED", "{}", r.describe());
    assert!(
        s["errors"].to_string().contains("critical threshold"),
        "{s}"
    );
    let r = job("1G").ok();
    assert_eq!(r.summary()["status"], "SUCCESS", "{}", r.describe());
    // Now the repository holds ~3 MiB: a 3.5M quota is between high and critical, so the
    // run warns.
    let r = job("3.5M");
    let s = r.summary();
    assert!(
        s["warnings"].to_string().contains("storage of repository"),
        "{}",
        r.describe()
    );
}
