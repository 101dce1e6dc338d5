//! What a newcomer installs around the binary: shell completions that a real bash loads and
//! answers with, man pages for every command, an example config that `config check`
//! accepts, and a systemd unit that `systemd-analyze verify` accepts.

use std::process::Command;

use crate::util::*;

#[test]
fn bash_completes_commands_and_options() {
    let tmp = tempdir("coffer-compl-");
    let script = tmp.path().join("coffer.bash");
    let r = run(coffer_bare().args(["completions", "bash"])).ok();
    std::fs::write(&script, &r.stdout).unwrap();
    // What bash offers after `coffer rest<TAB>` and `coffer restore --par<TAB>`.
    let complete = |words: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); \
                 COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}; _coffer coffer; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        complete("coffer rest").lines().any(|l| l == "restore"),
        "{}",
        complete("coffer rest")
    );
    assert!(
        complete("coffer restore --par")
            .lines()
            .any(|l| l == "--partial"),
        "{}",
        complete("coffer restore --par")
    );
    for shell in ["zsh", "fish"] {
        let r = run(coffer_bare().args(["completions", shell])).ok();
        assert!(r.stdout_str().contains("restore"), "{shell}");
    }
}

#[test]
fn man_pages_for_every_command() {
    let tmp = tempdir("coffer-man-");
    let dir = tmp.path().join("man1");
    run(coffer_bare().args(["man", "--dir"]).arg(&dir)).ok();
    let page = std::fs::read_to_string(dir.join("coffer-restore.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH coffer-restore 1"),
        "{page}"
    );
    assert!(page.contains("partial"), "{page}");
    let main = std::fs::read_to_string(dir.join("coffer.1")).unwrap();
    assert!(
        main.contains("restore") && main.contains("completions"),
        "{main}"
    );
    assert!(dir.join("coffer-config.1").is_file() && dir.join("coffer-serve.1").is_file());
}

#[test]
fn example_config_is_valid_and_covers_every_section() {
    let tmp = tempdir("coffer-example-");
    let path = tmp.path().join("coffer.toml");
    let r = run(coffer_bare().args(["config", "example"])).ok();
    std::fs::write(&path, &r.stdout).unwrap();
    let text = r.stdout_str();
    for section in [
        "[server]",
        "[server.storage]",
        "[[server.token]]",
        "[audit]",
        "[[repository]]",
        "[[source]]",
        "[[job]]",
        "[alerting]",
        "[[channel]]",
        "[[rule]]",
    ] {
        assert!(text.contains(section), "{section} missing");
    }
    for kind in ["postgres", "mariadb", "redis", "kafka", "files", "command"] {
        assert!(
            text.contains(&format!("type = \"{kind}\"")),
            "source type {kind}"
        );
    }
    for kind in [
        "email",
        "webhook",
        "slack",
        "dingtalk",
        "wecom",
        "feishu",
        "alertmanager",
    ] {
        assert!(
            text.contains(&format!("type = \"{kind}\"")),
            "channel type {kind}"
        );
    }
    let r = run(coffer_bare()
        .arg("--config")
        .arg(&path)
        .args(["--json", "config", "check"]))
    .ok();
    assert_eq!(r.summary()["valid"], true, "{}", r.describe());
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let tmp = tempdir("coffer-unit-");
    // The unit as shipped, with the binary where this build put it; its man page installed
    // where `man` (which systemd-analyze runs for Documentation=) finds it.
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/systemd/coffer.service"),
    )
    .unwrap();
    let unit = tmp.path().join("coffer.service");
    std::fs::write(
        &unit,
        shipped.replace("/usr/local/bin/coffer", env!("CARGO_BIN_EXE_coffer")),
    )
    .unwrap();
    run(coffer_bare()
        .args(["man", "--dir"])
        .arg(tmp.path().join("man/man1")))
    .ok();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", tmp.path().join("man"))
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let sec = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sec.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for coffer.service: ")
                .nth(1)
        })
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    eprintln!("systemd-analyze security: exposure {score} (0 safest, 10 unprotected)");
    assert!(score < 3.0, "exposure {score}: {text}");
}
