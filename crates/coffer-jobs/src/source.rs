//! One source of a run, in a child process: `coffer --config F --json backup --source NAME
//! --repository R --tag run:ID --tag job:NAME`, in its own process group.
//!
//! Why a process and not a call: a dump tool that hangs (a locked table, a dead network
//! mount) blocks a read that no flag can interrupt. Killing the child's process group stops
//! coffer and every tool it started, so `max_runtime` and shutdown always end a run; and the
//! kernel's accounting of the child gives each source's CPU time and peak memory exactly,
//! even when several jobs run at once.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coffer_catalog::SourceResult;

use crate::protocol::BackupMessage;
use crate::RunOptions;

/// What a source's child process reported.
#[derive(Debug, Default)]
pub struct SourceUsage {
    /// CPU seconds (user + system) of the child and its tools.
    pub cpu_seconds: f64,
    /// Peak resident memory of the largest process among them, bytes.
    pub peak_rss_bytes: u64,
}

fn signal_group(pid: u32, sig: i32) {
    // SAFETY: kill() with a negative pid signals the process group we created; no memory is
    // touched.
    unsafe {
        libc::kill(-(pid as i32), sig);
    }
}

/// Waits for `pid` and returns its exit code (or 128 + signal) and resource usage.
fn wait_rusage(pid: u32, block: bool) -> Option<(i32, SourceUsage)> {
    let mut status = 0;
    // SAFETY: wait4 writes into the two locals we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    let r = unsafe { libc::wait4(pid as i32, &mut status, flags, &mut ru) };
    if r <= 0 {
        return None;
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some((
        code,
        SourceUsage {
            cpu_seconds: tv(ru.ru_utime) + tv(ru.ru_stime),
            peak_rss_bytes: (ru.ru_maxrss.max(0) as u64) * 1024,
        },
    ))
}

/// Backs up source `name` of the config at `config` into repository `repository`.
pub fn backup_source(
    config: &Path,
    repository: &str,
    name: &str,
    tags: &[String],
    opts: &RunOptions,
    stop: &AtomicBool,
) -> (SourceResult, SourceUsage) {
    let started = Instant::now();
    let mut out = SourceResult {
        source: name.to_string(),
        status: "FAILED".into(),
        ..Default::default()
    };
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("--config")
        .arg(config)
        .arg("--json")
        .arg("--retry-lock")
        .arg(format!("{}s", opts.lock_wait.as_secs()))
        .args(["backup", "--source", name, "--repository", repository]);
    for t in tags {
        cmd.arg("--tag").arg(t);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(format!("starting {}: {e}", opts.exe.display()));
            return (out, SourceUsage::default());
        }
    };
    let pid = child.id();
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        out.error = Some("the backup process has no output pipes".into());
        return (out, SourceUsage::default());
    };
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| BackupMessage::parse(&l))
            .collect::<Vec<_>>()
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Poll, so that cancellation (max_runtime, shutdown) is noticed within 100 ms.
    let mut killed_at: Option<Instant> = None;
    let (code, usage) = loop {
        if let Some(done) = wait_rusage(pid, false) {
            break done;
        }
        if stop.load(Ordering::Relaxed) {
            match killed_at {
                None => {
                    signal_group(pid, libc::SIGTERM);
                    killed_at = Some(Instant::now());
                }
                Some(t) if t.elapsed() > Duration::from_secs(10) => {
                    signal_group(pid, libc::SIGKILL)
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Tools the child started may outlive it; they are in its group.
    signal_group(pid, libc::SIGKILL);
    let lines = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    out.duration_seconds = started.elapsed().as_secs_f64();
    for l in &lines {
        match l {
            BackupMessage::Error { error, .. } => out.warnings.push(error.message.clone()),
            BackupMessage::Summary(s) => {
                out.snapshot_id = Some(s.snapshot_id.clone());
                out.source_bytes = s.stats.total_bytes_processed;
                out.stored_bytes = s.stats.data_added_packed;
                out.files = s.stats.total_files_processed;
            }
        }
    }
    match code {
        0 if out.snapshot_id.is_some() => out.status = "SUCCESS".into(),
        3 if out.snapshot_id.is_some() => out.status = "WARNING".into(),
        _ => {
            let msg = stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.trim_start_matches("Fatal: ").to_string())
                .collect::<Vec<_>>();
            out.error = Some(if killed_at.is_some() {
                "stopped: the run was cancelled".to_string()
            } else if msg.is_empty() {
                format!("coffer backup exited with status {code}")
            } else {
                msg[msg.len().saturating_sub(5)..].join("; ")
            });
        }
    }
    (out, usage)
}
