//! `coffer alert test` against real receivers: HTTP receivers on loopback (a std TcpListener
//! thread recording path, headers and body), a real SMTP server (aiosmtpd) and a real
//! Alertmanager. Payload shapes are checked key by key, and every signature is recomputed
//! independently with python3's hmac module from the documented algorithm.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use coffer_testkit::{alertmanager, amtool_query, free_port, wait_for_port, Server};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{coffer_bare, run, tempdir, wait_until};

const HOOK_SECRET: &str = "hook-secret-6f1c";
const DING_SECRET: &str = "SECding0a9b8c7d";
const FEISHU_SECRET: &str = "feishu-secret-42";

/// One request a receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Req {
    /// Path and query.
    pub(crate) target: String,
    /// Lower-case names.
    pub(crate) headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e})", self.target))
    }
}

/// An HTTP/1.1 server on loopback that records every request and answers by path prefix the
/// way the real service does: DingTalk and WeCom `{"errcode":0}`, Feishu `{"code":0}`,
/// `/refuse` a DingTalk refusal, anything else `ok`.
pub(crate) struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Req>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let g = g.clone();
                std::thread::spawn(move || {
                    let _ = serve(s, &g);
                });
            }
        });
        Receiver { port, got }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests whose path starts with `prefix`.
    pub(crate) fn requests(&self, prefix: &str) -> Vec<Req> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn one(&self, prefix: &str) -> Req {
        let r = self.requests(prefix);
        assert_eq!(r.len(), 1, "requests to {prefix}: {r:#?}");
        r.into_iter().next().unwrap()
    }
}

fn serve(s: TcpStream, got: &Mutex<Vec<Req>>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    assert_eq!(method, "POST", "{target}");
    got.lock().unwrap().push(Req {
        target: target.clone(),
        headers,
        body,
    });
    let answer = if target.starts_with("/ding") || target.starts_with("/wecom") {
        r#"{"errcode":0,"errmsg":"ok"}"#
    } else if target.starts_with("/feishu") {
        r#"{"code":0,"msg":"success","data":{}}"#
    } else if target.starts_with("/refuse") {
        r#"{"errcode":310000,"errmsg":"sign not match"}"#
    } else {
        "ok"
    };
    let mut s = s;
    write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    s.flush()
}

/// A python3 that can import aiosmtpd: the one on PATH (pip), else Debian's
/// (python3-aiosmtpd) when PATH starts with another interpreter (pyenv).
fn python_with_aiosmtpd() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import aiosmtpd"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("no python3 can import aiosmtpd (scripts/test-deps installs python3-aiosmtpd)")
}

/// aiosmtpd writing every message into a Maildir.
fn smtp_server(dir: &Path) -> (Server, u16, PathBuf) {
    let port = free_port();
    let maildir = dir.join("mail");
    let child = Command::new(python_with_aiosmtpd())
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("aiosmtpd.log")).unwrap())
        .spawn()
        .expect("starting aiosmtpd (scripts/test-deps installs python3-aiosmtpd)");
    let s = Server(child);
    wait_for_port("aiosmtpd", port);
    (s, port, maildir)
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(k: &[&'a str]) -> BTreeSet<&'a str> {
    k.iter().copied().collect()
}

/// Runs a python3 expression with `args` as sys.argv[1:] and returns what it prints.
fn python(expr: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!("import sys,hmac,hashlib,base64,urllib.parse\nprint({expr})"),
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn query_param(target: &str, key: &str) -> String {
    let q = target.split_once('?').map(|x| x.1).unwrap_or("");
    q.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {target}"))
        .to_string()
}

/// Decodes a quoted-printable body (soft line breaks and `=XX`).
fn quoted_printable(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 3 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn coffer(config: &Path) -> Command {
    let mut c = coffer_bare();
    c.env("COFFER_TEST_HOOK_SECRET", HOOK_SECRET)
        .env("COFFER_TEST_DING_SECRET", DING_SECRET)
        .env("COFFER_TEST_FEISHU_SECRET", FEISHU_SECRET)
        .arg("--config")
        .arg(config);
    c
}

fn assert_no_secrets(out: &str) {
    for s in [
        HOOK_SECRET,
        DING_SECRET,
        FEISHU_SECRET,
        "access_token",
        "key=wk",
    ] {
        assert!(!out.contains(s), "output shows secret {s:?}:\n{out}");
    }
}

#[test]
fn alert_test_reaches_every_channel_with_exact_payloads_and_signatures() {
    let tmp = tempdir("coffer-alerts-");
    let dir = tmp.path();
    let rx = Receiver::start();
    let (_smtp, smtp_port, maildir) = smtp_server(dir);
    let (_am, am_port) = alertmanager(dir);
    let dead = free_port();
    let config = dir.join("coffer.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[channel]]
name = "hook"
type = "webhook"
url = "{hook}"
secret = "${{COFFER_TEST_HOOK_SECRET}}"
min_severity = "high"

[[channel]]
name = "slack"
type = "slack"
url = "{slack}"

[[channel]]
name = "ding"
type = "dingtalk"
url = "{ding}"
secret = "${{COFFER_TEST_DING_SECRET}}"

[[channel]]
name = "wecom"
type = "wecom"
url = "{wecom}"

[[channel]]
name = "feishu"
type = "feishu"
url = "{feishu}"
secret = "${{COFFER_TEST_FEISHU_SECRET}}"

[[channel]]
name = "am-loopback"
type = "alertmanager"
url = "{am_rx}"

[[channel]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:{am_port}/"
min_severity = "critical"

[[channel]]
name = "mail"
type = "email"
smtp = "smtp://127.0.0.1:{smtp_port}"
tls = "none"
from = "coffer@example.com"
to = ["ops@example.com", "Backup Team <backup@example.com>"]

[[channel]]
name = "dead"
type = "webhook"
url = "http://127.0.0.1:{dead}/hook"
"#,
            hook = rx.url("/hook"),
            slack = rx.url("/slack/services/T0/B0/XXX"),
            ding = rx.url("/ding/robot/send?access_token=abc123"),
            wecom = rx.url("/wecom/cgi-bin/webhook/send?key=wk-77"),
            feishu = rx.url("/feishu/open-apis/bot/v2/hook/f00"),
            am_rx = rx.url("/am"),
        ),
    )
    .unwrap();

    let started = Instant::now();
    let r = run(coffer(&config).args(["--json", "alert", "test"])).expect_code(1);
    assert_no_secrets(&r.output());
    let lines = r.json_lines();
    let by_name: HashMap<String, Value> = lines
        .iter()
        .map(|v| (v["channel"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    assert_eq!(by_name.len(), 9, "{}", r.describe());
    for (name, v) in &by_name {
        assert_eq!(v["message_type"], "alert_test");
        if name == "dead" {
            assert_eq!(v["ok"], false, "{v}");
            assert_eq!(v["attempts"], 3, "a refused connection is retried: {v}");
            assert_eq!(v["status"], Value::Null);
            assert!(v["error"].as_str().unwrap().contains("connect"), "{v}");
        } else {
            assert_eq!(v["ok"], true, "{name}: {v}");
            assert_eq!(v["attempts"], 1, "{name}: {v}");
            assert!(v["error"].is_null(), "{v}");
        }
    }
    for (name, ty, status) in [
        ("hook", "webhook", Some(200)),
        ("slack", "slack", Some(200)),
        ("ding", "dingtalk", Some(200)),
        ("wecom", "wecom", Some(200)),
        ("feishu", "feishu", Some(200)),
        ("am-loopback", "alertmanager", Some(200)),
        ("am", "alertmanager", Some(200)),
        ("mail", "email", Some(250)),
    ] {
        assert_eq!(by_name[name]["type"], ty);
        assert_eq!(
            by_name[name]["status"].as_u64(),
            status.map(|s| s as u64),
            "{name}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));

    // Webhook: Alertmanager's webhook payload, version 4, signed over "timestamp.body".
    let hook = rx.one("/hook");
    let v = hook.json();
    assert_eq!(
        keys(&v),
        set(&[
            "version",
            "groupKey",
            "truncatedAlerts",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts"
        ])
    );
    assert_eq!(v["version"], "4");
    assert_eq!(v["status"], "firing");
    assert_eq!(v["receiver"], "hook");
    assert_eq!(
        v["groupLabels"],
        serde_json::json!({"alertname": "CofferTest"})
    );
    let labels = serde_json::json!({"alertname": "CofferTest", "severity": "high", "backup_job": "coffer-test"});
    assert_eq!(v["commonLabels"], labels);
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        keys(a),
        set(&[
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint"
        ])
    );
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"], labels);
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16);
    assert!(a["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("test notification"));
    assert!(chrono::DateTime::parse_from_rfc3339(a["startsAt"].as_str().unwrap()).is_ok());
    let ts = &hook.headers["x-coffer-timestamp"];
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..120).contains(&age), "timestamp {ts}");
    let body_file = dir.join("hook-body");
    std::fs::write(&body_file, &hook.body).unwrap();
    let want = python(
        "'sha256=' + hmac.new(sys.argv[1].encode(), sys.argv[2].encode() + b'.' + open(sys.argv[3], 'rb').read(), hashlib.sha256).hexdigest()",
        &[HOOK_SECRET, ts, body_file.to_str().unwrap()],
    );
    assert_eq!(hook.headers["x-coffer-signature"], want);
    assert_eq!(hook.headers["content-type"], "application/json");

    // Slack: text plus one mrkdwn section.
    let v = rx.one("/slack/services/T0/B0/XXX").json();
    assert_eq!(keys(&v), set(&["text", "blocks"]));
    assert!(v["text"].as_str().unwrap().contains("CofferTest"));
    assert_eq!(v["blocks"][0]["type"], "section");
    assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
    assert!(v["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .contains("backup_job=coffer-test"));

    // DingTalk: markdown; timestamp (ms) and sign appended to the URL after access_token.
    let ding = rx.one("/ding/robot/send?access_token=abc123&timestamp=");
    let v = ding.json();
    assert_eq!(keys(&v), set(&["msgtype", "markdown"]));
    assert_eq!(v["msgtype"], "markdown");
    assert_eq!(keys(&v["markdown"]), set(&["title", "text"]));
    assert!(v["markdown"]["title"].as_str().unwrap().contains("[TEST]"));
    assert!(v["markdown"]["text"]
        .as_str()
        .unwrap()
        .contains("backup_job: coffer-test"));
    let ts = query_param(&ding.target, "timestamp");
    assert_eq!(ts.len(), 13, "milliseconds: {ts}");
    let want = python(
        "urllib.parse.quote_plus(base64.b64encode(hmac.new(sys.argv[1].encode(), (sys.argv[2] + '\\n' + sys.argv[1]).encode(), hashlib.sha256).digest()))",
        &[DING_SECRET, &ts],
    );
    assert_eq!(query_param(&ding.target, "sign"), want);

    // WeCom: markdown content.
    let v = rx.one("/wecom/cgi-bin/webhook/send?key=wk-77").json();
    assert_eq!(keys(&v), set(&["msgtype", "markdown"]));
    assert_eq!(v["msgtype"], "markdown");
    assert_eq!(keys(&v["markdown"]), set(&["content"]));
    assert!(v["markdown"]["content"]
        .as_str()
        .unwrap()
        .contains("CofferTest"));

    // Feishu: text message with timestamp (seconds) and sign in the body.
    let v = rx.one("/feishu/open-apis/bot/v2/hook/f00").json();
    assert_eq!(keys(&v), set(&["msg_type", "content", "timestamp", "sign"]));
    assert_eq!(v["msg_type"], "text");
    assert!(v["content"]["text"]
        .as_str()
        .unwrap()
        .contains("coffer-test"));
    let ts = v["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), 10, "seconds: {ts}");
    let want = python(
        "base64.b64encode(hmac.new((sys.argv[2] + '\\n' + sys.argv[1]).encode(), b'', hashlib.sha256).digest()).decode()",
        &[FEISHU_SECRET, ts],
    );
    assert_eq!(v["sign"], want.as_str());

    // Alertmanager v2 push, as seen on the wire.
    let am = rx.one("/am");
    assert_eq!(am.target, "/am/api/v2/alerts");
    let v = am.json();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(keys(&arr[0]), set(&["labels", "annotations", "startsAt"]));
    assert_eq!(arr[0]["labels"]["backup_job"], "coffer-test");
    assert_eq!(arr[0]["labels"]["severity"], "low");

    // ... and as the real Alertmanager understood it.
    let got = amtool_query(am_port, "alertname=CofferTest");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["labels"]["backup_job"], "coffer-test");
    assert_eq!(got[0]["labels"]["severity"], "critical");
    assert_eq!(got[0]["status"]["state"], "active");

    // Email: one message in the Maildir, to both recipients.
    let mut mails = Vec::new();
    wait_until("the test mail", Duration::from_secs(10), || {
        mails = std::fs::read_dir(maildir.join("new"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        !mails.is_empty()
    });
    assert_eq!(mails.len(), 1);
    let mail = std::fs::read_to_string(&mails[0]).unwrap();
    let subject = mail
        .lines()
        .find(|l| l.starts_with("Subject: "))
        .unwrap_or_else(|| panic!("no subject:\n{mail}"));
    assert!(
        subject.contains("[coffer] [TEST] [FIRING] low: CofferTest (coffer-test)"),
        "{subject}"
    );
    assert!(mail.contains("From: coffer@example.com"), "{mail}");
    assert!(
        mail.contains("ops@example.com") && mail.contains("backup@example.com"),
        "{mail}"
    );
    assert!(
        mail.contains("Content-Transfer-Encoding: quoted-printable"),
        "{mail}"
    );
    let (_, body) = mail.split_once("\n\n").unwrap();
    let body = quoted_printable(body);
    assert!(
        body.contains("This is a test message sent by `coffer alert test`: if you can read it, this channel delivers coffer's alerts."),
        "{body}"
    );
    assert!(body.contains("backup_job=coffer-test"), "{body}");

    // The dead channel was tried three times; the closed port got nothing, the others one each.
    assert_eq!(rx.got.lock().unwrap().len(), 6);

    // The table form says the same.
    let r = run(coffer(&config).args(["alert", "test", "--channel", "dead"])).expect_code(1);
    let out = r.stdout_str();
    let row = out
        .lines()
        .find(|l| l.starts_with("dead "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("webhook") && row.contains("FAILED"), "{row}");
    assert!(row.contains(" 3 "), "attempts: {row}");
}

#[test]
fn alert_test_one_channel_refusals_and_unknown_names() {
    let tmp = tempdir("coffer-alerts-");
    let dir = tmp.path();
    let rx = Receiver::start();
    let config = dir.join("coffer.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[channel]]
name = "hook"
type = "webhook"
url = "{hook}"

[[channel]]
name = "refused"
type = "dingtalk"
url = "{refuse}"
secret = "${{COFFER_TEST_DING_SECRET}}"
"#,
            hook = rx.url("/hook"),
            refuse = rx.url("/refuse?access_token=abc123"),
        ),
    )
    .unwrap();

    // Only the named channel is sent to; no secret header without a secret.
    let r = run(coffer(&config).args(["alert", "test", "--channel", "hook"])).ok();
    let out = r.stdout_str();
    assert!(
        out.lines()
            .any(|l| l.starts_with("hook ") && l.contains(" OK ")),
        "{out}"
    );
    assert!(!out.contains("refused"), "{out}");
    let hook = rx.one("/hook");
    assert!(!hook.headers.contains_key("x-coffer-signature"));
    assert!(rx.requests("/refuse").is_empty());

    // HTTP 200 with errcode != 0 is a refusal: reported, not retried.
    let r = run(coffer(&config).args(["--json", "alert", "test", "--channel", "refused"]))
        .expect_code(1);
    assert_no_secrets(&r.output());
    let v = &r.json_lines()[0];
    assert_eq!(v["ok"], false);
    assert_eq!(v["attempts"], 1);
    assert_eq!(v["status"], 200);
    assert!(v["error"].as_str().unwrap().contains("310000"), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("sign not match"),
        "{v}"
    );

    let r = run(coffer(&config).args(["alert", "test", "--channel", "nope"])).expect_code(1);
    assert!(
        r.stderr
            .contains("no [[channel]] is named \"nope\" (declared: hook, refused)"),
        "{}",
        r.describe()
    );
}

#[test]
fn channel_config_errors_are_all_reported_with_lines() {
    let tmp = tempdir("coffer-alerts-");
    let config = tmp.path().join("coffer.toml");
    std::fs::write(
        &config,
        r#"[[channel]]
name = "a"
type = "pager"

[[channel]]
name = "b"
type = "dingtalk"
min_severity = "urgent"

[[channel]]
name = "b"
type = "email"
smtp = "smtp://127.0.0.1:25"
"#,
    )
    .unwrap();
    let r = run(coffer(&config).args(["alert", "test"])).expect_code(1);
    for want in [
        "line 2: channel \"a\": key `type`: unknown channel type \"pager\"",
        "line 6: channel \"b\": key `min_severity`: \"urgent\" is not one of critical, high, medium, low",
        "line 6: channel \"b\": key `url` is required for a dingtalk channel",
        "channel \"b\" is declared twice",
        "channel \"b\": key `from` is required",
        "channel \"b\": key `to` lists no recipient",
    ] {
        assert!(r.stderr.contains(want), "missing {want:?}: {}", r.describe());
    }
}
