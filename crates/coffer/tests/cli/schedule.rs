//! `coffer schedule install|status|remove`: systemd units and cron files written into a
//! temporary directory (never /etc), checked line by line and, when systemd-analyze exists,
//! by systemd itself; re-running rewrites nothing, files coffer did not write are left alone,
//! and schedules croner can run but systemd or cron cannot are refused with the job's name.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{coffer_bare, random_files, run, tempdir, Repo};

struct Lab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
    /// The binary as the generated command lines name it (std::env::current_exe).
    exe: String,
}

impl Lab {
    fn new(jobs: &str) -> Lab {
        let tmp = tempdir("coffer-schedule-");
        let dir = tmp.path().to_path_buf();
        let config = dir.join("coffer.toml");
        std::fs::write(
            &config,
            format!(
                r#"[audit]
key_file = "{d}/keys/audit.key"

[server]
catalog = "{d}/catalog.db"
# Nothing listens here, so status prints the plain note rather than the warning.
listen = "127.0.0.1:9"

[[repository]]
name = "local"
url = "{d}/repo"
password = "${{COFFER_PASSWORD}}"

[[source]]
name = "files"
type = "files"
paths = ["{d}/data"]
{jobs}"#,
                d = dir.display()
            ),
        )
        .unwrap();
        let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_coffer"))
            .unwrap()
            .to_string_lossy()
            .into_owned();
        Lab {
            _tmp: tmp,
            dir,
            config,
            exe,
        }
    }

    fn coffer<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = coffer_bare();
        // The cron checks compare job time zones with the host's; pin the host's.
        c.env("TZ", "UTC")
            .arg("--config")
            .arg(&self.config)
            .args(args);
        c
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn status(&self, extra: &[&str]) -> serde_json::Value {
        let r = run(self.coffer(["--json", "schedule", "status"]).args(extra)).ok();
        serde_json::from_slice(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.describe()))
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The generated files below `dir`, with their contents, sorted by name.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("coffer-job-"))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        read(&e.path()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn on_calendar(timer: &str) -> Vec<String> {
    timer
        .lines()
        .filter_map(|l| l.strip_prefix("OnCalendar="))
        .map(String::from)
        .collect()
}

/// Whether systemd accepts the spec; None when systemd-analyze is not installed.
fn systemd_accepts(spec: &str) -> Option<bool> {
    let out = Command::new("systemd-analyze")
        .args(["calendar", spec])
        .output()
        .ok()?;
    Some(out.status.success())
}

fn job_of<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {status}"))
}

const JOBS: &str = r#"
[[job]]
name = "nightly"
sources = ["files"]
schedule = "0 2 * * *"
retries = 0

[[job]]
name = "frequent"
sources = ["files"]
schedule = "*/30 * * * * *"

[[job]]
name = "shanghai"
sources = ["files"]
schedule = "30 1 * * mon-fri"
timezone = "Asia/Shanghai"

[[job]]
name = "either"
sources = ["files"]
schedule = "0 3 1,15 * 0"
misfire = "skip"
"#;

#[test]
fn schedule_systemd_units_install_status_remove() {
    let lab = Lab::new(JOBS);
    let units = lab.path("units");
    let cron = lab.path("cron/coffer");
    let places = [
        "--dir",
        units.to_str().unwrap(),
        "--file",
        cron.to_str().unwrap(),
    ];
    let r = run(lab
        .coffer(["schedule", "install", "--systemd", "--dir"])
        .arg(&units))
    .ok();
    // --dir: systemd is not told, the user is.
    assert!(
        r.stdout_str().contains(
            "systemctl daemon-reload && systemctl enable --now coffer-job-nightly.timer coffer-job-frequent.timer coffer-job-shanghai.timer coffer-job-either.timer"
        ),
        "{}",
        r.describe()
    );
    assert!(r.stderr.contains("coffer serve"), "{}", r.describe());
    let files = snapshot(&units);
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "coffer-job-either.service",
            "coffer-job-either.timer",
            "coffer-job-frequent.service",
            "coffer-job-frequent.timer",
            "coffer-job-nightly.service",
            "coffer-job-nightly.timer",
            "coffer-job-shanghai.service",
            "coffer-job-shanghai.timer",
        ]
    );

    let service = read(&units.join("coffer-job-nightly.service"));
    let config = lab.config.to_str().unwrap();
    assert!(service.starts_with("# Generated by coffer schedule install"));
    assert!(service.contains(&format!(
        "# coffer --config {config} schedule install --systemd"
    )));
    for line in [
        "Description=coffer backup job nightly".to_string(),
        "Type=oneshot".into(),
        format!("ExecStart={} --config {config} job run nightly", lab.exe),
        "SuccessExitStatus=3".into(),
        "User=root".into(),
        "KillMode=mixed".into(),
        "Nice=10".into(),
        "IOSchedulingClass=idle".into(),
        "TimeoutStopSec=5min".into(),
    ] {
        assert!(service.lines().any(|l| l == line), "{line:?} in\n{service}");
    }
    let timer = read(&units.join("coffer-job-nightly.timer"));
    for line in [
        "OnCalendar=*-*-* 02:00:00",
        "Persistent=true",
        "RandomizedDelaySec=0",
        "Unit=coffer-job-nightly.service",
        "WantedBy=timers.target",
    ] {
        assert!(timer.lines().any(|l| l == line), "{line:?} in\n{timer}");
    }
    assert!(timer.contains("misfire = \"run_once\""), "{timer}");
    let timers: Vec<(&str, Vec<&str>)> = vec![
        ("nightly", vec!["*-*-* 02:00:00"]),
        ("frequent", vec!["*-*-* *:*:00/30"]),
        ("shanghai", vec!["Mon..Fri *-*-* 01:30:00 Asia/Shanghai"]),
        // cron's day-of-month OR day-of-week: two specs.
        ("either", vec!["*-*-01,15 03:00:00", "Sun *-*-* 03:00:00"]),
    ];
    for (job, want) in &timers {
        let t = read(&units.join(format!("coffer-job-{job}.timer")));
        let specs = on_calendar(&t);
        assert_eq!(specs, *want, "{job}:\n{t}");
        for s in &specs {
            if let Some(ok) = systemd_accepts(s) {
                assert!(ok, "systemd-analyze rejects OnCalendar={s}");
            }
        }
    }
    // systemd's own check of the unit files (syntax, the binary exists, Unit= exists).
    let paths: Vec<PathBuf> = files.iter().map(|f| units.join(&f.0)).collect();
    if let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
    {
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The job's misfire = "skip" has no catch-up run at boot.
    assert!(read(&units.join("coffer-job-either.timer"))
        .lines()
        .any(|l| l == "Persistent=false"));

    // Again: nothing changes.
    let r = run(lab
        .coffer(["schedule", "install", "--systemd", "--dir"])
        .arg(&units))
    .ok();
    assert!(!r.stdout_str().contains("wrote"), "{}", r.describe());
    assert_eq!(r.stdout_str().matches("unchanged").count(), 8);
    assert_eq!(snapshot(&units), files);

    // A run for the catalog, so status has a last run to show.
    Repo::local(&lab.path("repo")).init();
    random_files(&lab.path("data"), 256 << 10, 64 << 10, 3);
    run(&mut lab.coffer(["job", "run", "nightly"])).ok();

    let st = lab.status(&places);
    let nightly = job_of(&st, "nightly");
    assert_eq!(nightly["installed"], serde_json::json!(["systemd"]));
    assert_eq!(nightly["schedule"], "0 2 * * *");
    assert_eq!(nightly["timezone"], serde_json::Value::Null);
    assert!(nightly["next_run"]
        .as_str()
        .unwrap()
        .ends_with("T02:00:00+00:00"));
    assert_eq!(nightly["last_run"]["status"], "SUCCESS", "{st}");
    assert!(nightly["last_run"]["id"]
        .as_str()
        .unwrap()
        .ends_with("-nightly"));
    assert_eq!(
        nightly["files"],
        serde_json::json!([
            units.join("coffer-job-nightly.service"),
            units.join("coffer-job-nightly.timer")
        ])
    );
    let sh = job_of(&st, "shanghai");
    assert_eq!(sh["timezone"], "Asia/Shanghai");
    // 01:30 in Shanghai is 17:30 UTC the day before.
    assert!(sh["next_run"]
        .as_str()
        .unwrap()
        .ends_with("T17:30:00+00:00"));
    assert_eq!(sh["last_run"], serde_json::Value::Null);
    assert!(
        st["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("twice")),
        "{st}"
    );
    // The text form too.
    let r = run(lab.coffer(["schedule", "status"]).args(places)).ok();
    assert!(r
        .stdout_str()
        .lines()
        .any(|l| l.starts_with("nightly") && l.contains("systemd") && l.contains("SUCCESS")));

    // Remove one job, then the rest.
    let r = run(lab
        .coffer(["schedule", "remove", "--job", "nightly"])
        .args(places))
    .ok();
    assert!(
        r.stdout_str().contains("coffer-job-nightly.timer"),
        "{}",
        r.describe()
    );
    assert!(!units.join("coffer-job-nightly.timer").exists());
    assert!(!units.join("coffer-job-nightly.service").exists());
    assert_eq!(snapshot(&units).len(), 6);
    assert_eq!(
        job_of(&lab.status(&places), "nightly")["installed"],
        serde_json::json!([])
    );
    run(lab.coffer(["schedule", "remove"]).args(places)).ok();
    assert!(snapshot(&units).is_empty());
    let st = lab.status(&places);
    assert!(st["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|j| j["installed"] == serde_json::json!([])));
}

#[test]
fn schedule_cron_file_install_merge_status_remove() {
    let lab = Lab::new(
        r#"
[[job]]
name = "nightly"
sources = ["files"]
schedule = "0 2 * * *"

[[job]]
name = "halfhourly"
sources = ["files"]
schedule = "0 */30 * * * *"

[[job]]
name = "utc"
sources = ["files"]
schedule = "15 4 1,15 * sun"
timezone = "Etc/UTC"

[[job]]
name = "shanghai"
sources = ["files"]
schedule = "30 1 * * *"
timezone = "Asia/Shanghai"

[[job]]
name = "seconds"
sources = ["files"]
schedule = "*/10 * * * * *"
"#,
    );
    let cron = lab.path("cron.d/coffer");
    let logs = lab.path("log");
    let units = lab.path("units");
    let places = [
        "--dir",
        units.to_str().unwrap(),
        "--file",
        cron.to_str().unwrap(),
    ];
    let install = |jobs: &[&str]| {
        let mut c = lab.coffer(["schedule", "install", "--cron", "--file"]);
        c.arg(&cron).arg("--log-dir").arg(&logs);
        for j in jobs {
            c.args(["--job", j]);
        }
        run(&mut c)
    };

    // Every job: two of them cannot be cron lines, and nothing is written.
    let r = install(&[]).expect_code(1);
    assert!(
        r.stderr.contains("job \"shanghai\"") || r.stderr.contains("job \"seconds\""),
        "{}",
        r.describe()
    );
    assert!(!cron.exists());
    let r = install(&["shanghai"]).expect_code(1);
    assert!(
        r.stderr.contains("job \"shanghai\"")
            && r.stderr.contains("Asia/Shanghai")
            && r.stderr.contains("--systemd"),
        "{}",
        r.describe()
    );
    let r = install(&["seconds"]).expect_code(1);
    assert!(
        r.stderr.contains("job \"seconds\"") && r.stderr.contains("cron has no seconds"),
        "{}",
        r.describe()
    );
    assert!(!cron.exists());

    // A dry run prints and writes nothing.
    let r = run(lab
        .coffer([
            "schedule",
            "install",
            "--cron",
            "--dry-run",
            "--job",
            "nightly",
            "--file",
        ])
        .arg(&cron))
    .ok();
    assert!(
        r.stdout_str().contains("job run nightly"),
        "{}",
        r.describe()
    );
    assert!(!cron.exists());

    install(&["nightly", "halfhourly"]).ok();
    install(&["utc"]).ok();
    assert!(logs.is_dir());
    let config = lab.config.to_str().unwrap();
    let line = |fields: &str, job: &str| {
        format!(
            "{fields} root {} --config {config} job run {job} >> {}/{job}.log 2>&1",
            lab.exe,
            logs.display()
        )
    };
    let want = format!(
        "# Generated by coffer schedule install: edit the [[job]]s in the config and run it again rather than this file.
# coffer --config {config} schedule install --cron
# Cron has no time zones here: the times are the host's.
SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# job nightly: 0 2 * * *
{}

# job halfhourly: 0 */30 * * * *
{}

# job utc: 15 4 1,15 * sun
{}
",
        line("0 2 * * *", "nightly"),
        line("*/30 * * * *", "halfhourly"),
        line("15 4 1,15 * 0", "utc"),
    );
    let text = read(&cron);
    assert_eq!(text, want);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cron).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // Re-running any of it rewrites the same file.
    install(&["utc", "nightly"]).ok();
    install(&["halfhourly"]).ok();
    assert_eq!(read(&cron), want);

    let st = lab.status(&places);
    assert_eq!(
        job_of(&st, "nightly")["installed"],
        serde_json::json!(["cron"])
    );
    assert_eq!(job_of(&st, "nightly")["files"], serde_json::json!([cron]));
    assert_eq!(job_of(&st, "utc")["timezone"], "Etc/UTC");
    assert_eq!(job_of(&st, "shanghai")["installed"], serde_json::json!([]));

    // Installed both ways: status says it runs twice.
    run(lab
        .coffer(["schedule", "install", "--job", "nightly", "--dir"])
        .arg(&units))
    .ok();
    let st = lab.status(&places);
    assert_eq!(
        job_of(&st, "nightly")["installed"],
        serde_json::json!(["systemd", "cron"])
    );
    assert!(
        st["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("both")),
        "{st}"
    );

    let r = run(lab
        .coffer(["schedule", "remove", "--job", "nightly"])
        .args(places))
    .ok();
    assert!(r.stdout_str().contains("nightly"), "{}", r.describe());
    let text = read(&cron);
    assert!(!text.contains("nightly"), "{text}");
    assert!(text.contains("job run halfhourly") && text.contains("job run utc"));
    assert!(snapshot(&units).is_empty());
    run(lab.coffer(["schedule", "remove"]).args(places)).ok();
    assert!(!cron.exists());
}

#[test]
fn schedule_never_overwrites_foreign_files() {
    let lab = Lab::new(JOBS);
    let units = lab.path("units");
    std::fs::create_dir_all(&units).unwrap();
    let foreign = "[Timer]\nOnCalendar=daily\n";
    let timer = units.join("coffer-job-nightly.timer");
    std::fs::write(&timer, foreign).unwrap();
    let r = run(lab
        .coffer(["schedule", "install", "--job", "nightly", "--dir"])
        .arg(&units))
    .expect_code(1);
    assert!(
        r.stderr.contains(timer.to_str().unwrap()) && r.stderr.contains("not generated by coffer"),
        "{}",
        r.describe()
    );
    assert_eq!(read(&timer), foreign);
    // Nothing of the job was written, not even its service.
    assert!(!units.join("coffer-job-nightly.service").exists());
    // remove leaves it alone too.
    run(lab
        .coffer(["schedule", "remove", "--job", "nightly", "--dir"])
        .arg(&units))
    .ok();
    assert_eq!(read(&timer), foreign);

    let cron = lab.path("crontab");
    let foreign = "0 * * * * root /usr/local/bin/other\n";
    std::fs::write(&cron, foreign).unwrap();
    let r = run(lab
        .coffer([
            "schedule", "install", "--cron", "--job", "nightly", "--file",
        ])
        .arg(&cron)
        .arg("--log-dir")
        .arg(lab.path("log")))
    .expect_code(1);
    assert!(
        r.stderr.contains(cron.to_str().unwrap()) && r.stderr.contains("not generated by coffer"),
        "{}",
        r.describe()
    );
    assert_eq!(read(&cron), foreign);
}

#[test]
fn schedule_refuses_croner_only_expressions_and_unknown_jobs() {
    let lab = Lab::new(
        r#"
[[job]]
name = "lastday"
sources = ["files"]
schedule = "0 0 L * *"

[[job]]
name = "weekday"
sources = ["files"]
schedule = "0 0 15W * *"

[[job]]
name = "second-friday"
sources = ["files"]
schedule = "0 0 * * 5#2"
"#,
    );
    let units = lab.path("units");
    let cron = lab.path("crontab");
    let sys = |job: &str| {
        run(lab
            .coffer(["schedule", "install", "--job", job, "--dir"])
            .arg(&units))
    };
    let cron_install = |job: &str| {
        run(lab
            .coffer(["schedule", "install", "--cron", "--job", job, "--file"])
            .arg(&cron)
            .arg("--log-dir")
            .arg(lab.path("log")))
    };

    // Cron has no "last day of the month".
    let r = cron_install("lastday").expect_code(1);
    assert!(
        r.stderr.contains("job \"lastday\"")
            && r.stderr.contains("\"0 0 L * *\"")
            && r.stderr.contains("L (last day of the month)"),
        "{}",
        r.describe()
    );
    assert!(!cron.exists());
    // systemd does: `~01`.
    sys("lastday").ok();
    let specs = on_calendar(&read(&units.join("coffer-job-lastday.timer")));
    assert_eq!(specs, ["*-*~01 00:00:00"]);
    if let Some(ok) = systemd_accepts(&specs[0]) {
        assert!(ok);
    }

    for (job, expr, what) in [
        ("weekday", "0 0 15W * *", "W (nearest weekday)"),
        (
            "second-friday",
            "0 0 * * 5#2",
            "# (nth weekday of the month)",
        ),
    ] {
        for r in [sys(job), cron_install(job)] {
            let r = r.expect_code(1);
            assert!(
                r.stderr.contains(&format!("job {job:?}"))
                    && r.stderr.contains(&format!("{expr:?}"))
                    && r.stderr.contains(what),
                "{}",
                r.describe()
            );
        }
        assert!(!units.join(format!("coffer-job-{job}.timer")).exists());
    }

    let r = sys("nope").expect_code(1);
    assert!(
        r.stderr.contains("no [[job]] is named \"nope\""),
        "{}",
        r.describe()
    );
    let r = run(lab
        .coffer(["schedule", "remove", "--job", "nope", "--dir"])
        .arg(&units))
    .expect_code(1);
    assert!(r.stderr.contains("\"nope\""), "{}", r.describe());
}
