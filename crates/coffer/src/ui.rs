//! Terminal output: logging setup, error printing, and progress for long commands: an
//! indicatif bar on a terminal, restic-style `status` JSON lines with `--json`, nothing
//! otherwise. Results go to stdout, messages to stderr.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_archiver::{Progress, ProgressSnapshot};
use indicatif::{ProgressBar, ProgressStyle};

pub fn init_logging(verbose: u8, quiet: bool) {
    // OpenDAL logs every retry with a backtrace; our errors say what finally failed.
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn,opendal=error,opendal_layer_retry=error",
        (_, 1) => "info,opendal=warn,opendal_layer_retry=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

pub fn print_error(e: &anyhow::Error) {
    eprintln!("Fatal: {e:#}");
}

/// 1.5 GiB style sizes.
pub fn bytes(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.3} {}", U[i])
    }
}

/// Which progress output a long command shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Json,
    None,
}

pub fn mode(json: bool, quiet: bool) -> Mode {
    if json {
        Mode::Json
    } else if !quiet && std::io::stderr().is_terminal() {
        Mode::Bar
    } else {
        Mode::None
    }
}

/// Reports progress until dropped.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    /// `verb` names the action ("backup", "restore") for JSON field names.
    pub fn start(mode: Mode, progress: Arc<Progress>, verb: &'static str) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match mode {
            Mode::None => None,
            Mode::Bar => {
                let s = Arc::clone(&stop);
                Some(std::thread::spawn(move || bar_loop(&progress, &s)))
            }
            Mode::Json => {
                let s = Arc::clone(&stop);
                Some(std::thread::spawn(move || json_loop(&progress, &s, verb)))
            }
        };
        Reporter { stop, thread }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn eta(p: &ProgressSnapshot, elapsed: f64) -> Option<Duration> {
    if !p.scan_finished || p.bytes_done == 0 || p.total_bytes <= p.bytes_done {
        return None;
    }
    let rate = p.bytes_done as f64 / elapsed.max(0.001);
    Some(Duration::from_secs_f64(
        (p.total_bytes - p.bytes_done) as f64 / rate,
    ))
}

fn bar_loop(progress: &Progress, stop: &AtomicBool) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let p = progress.snapshot();
        let el = start.elapsed().as_secs_f64();
        let rate = p.bytes_done as f64 / el.max(0.001) / 1e6;
        let total = if p.scan_finished || p.total_files > 0 {
            format!(" / {} files, {}", p.total_files, bytes(p.total_bytes))
        } else {
            String::new()
        };
        let eta = eta(&p, el)
            .map(|d| format!(" ETA {}", humantime(d)))
            .unwrap_or_default();
        let errs = if p.errors > 0 {
            format!(" {} errors", p.errors)
        } else {
            String::new()
        };
        bar.set_message(format!(
            "{} files, {}{total}, {rate:.1} MB/s{eta}{errs}  {}",
            p.files_done,
            bytes(p.bytes_done),
            p.current
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(150));
    }
    bar.finish_and_clear();
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn json_loop(progress: &Progress, stop: &AtomicBool, verb: &str) {
    let start = Instant::now();
    let mut last = Instant::now() - Duration::from_secs(10);
    while !stop.load(Ordering::Relaxed) {
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let p = progress.snapshot();
            let pct = if p.total_bytes > 0 {
                (p.bytes_done as f64 / p.total_bytes as f64).min(1.0)
            } else {
                0.0
            };
            let mut v = serde_json::json!({
                "message_type": "status",
                "seconds_elapsed": start.elapsed().as_secs(),
                "percent_done": pct,
                "total_files": p.total_files,
                "total_bytes": p.total_bytes,
            });
            if verb == "restore" {
                v["files_restored"] = p.files_done.into();
                v["bytes_restored"] = p.bytes_done.into();
            } else {
                v["files_done"] = p.files_done.into();
                v["bytes_done"] = p.bytes_done.into();
                v["error_count"] = p.errors.into();
                if !p.current.is_empty() {
                    v["current_files"] = serde_json::json!([p.current]);
                }
            }
            if let Some(e) = eta(&p, start.elapsed().as_secs_f64()) {
                v["seconds_remaining"] = e.as_secs().into();
            }
            println!("{v}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Shows a maintenance operation's phase and counters until dropped: a bar on a terminal,
/// `status` JSON lines with `--json`.
pub struct TaskReporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TaskReporter {
    pub fn start(mode: Mode, progress: Arc<coffer_maint::Progress>) -> TaskReporter {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let thread = match mode {
            Mode::None => None,
            Mode::Bar => Some(std::thread::spawn(move || task_bar(&progress, &s))),
            Mode::Json => Some(std::thread::spawn(move || task_json(&progress, &s))),
        };
        TaskReporter { stop, thread }
    }
}

impl Drop for TaskReporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn task_line(v: &coffer_maint::ProgressView) -> String {
    let mut s = v.phase.clone();
    if v.total > 0 {
        s.push_str(&format!(": {}/{}", v.done, v.total));
    } else if v.done > 0 {
        s.push_str(&format!(": {}", v.done));
    }
    if v.total_bytes > 0 {
        s.push_str(&format!(", {} / {}", bytes(v.bytes), bytes(v.total_bytes)));
    } else if v.bytes > 0 {
        s.push_str(&format!(", {}", bytes(v.bytes)));
    }
    s
}

fn task_bar(progress: &coffer_maint::Progress, stop: &AtomicBool) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    while !stop.load(Ordering::Relaxed) {
        bar.set_message(task_line(&progress.view()));
        bar.tick();
        std::thread::sleep(Duration::from_millis(150));
    }
    bar.finish_and_clear();
}

fn task_json(progress: &coffer_maint::Progress, stop: &AtomicBool) {
    let start = Instant::now();
    let mut last = Instant::now() - Duration::from_secs(10);
    while !stop.load(Ordering::Relaxed) {
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let v = progress.view();
            let pct = if v.total > 0 {
                (v.done as f64 / v.total as f64).min(1.0)
            } else {
                0.0
            };
            println!(
                "{}",
                serde_json::json!({
                    "message_type": "status",
                    "phase": v.phase,
                    "seconds_elapsed": start.elapsed().as_secs(),
                    "percent_done": pct,
                    "done": v.done,
                    "total": v.total,
                    "bytes_done": v.bytes,
                    "total_bytes": v.total_bytes,
                })
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Cancels `progress` on SIGINT/SIGTERM (a second signal exits at once).
pub fn cancel_on_signal(progress: &Arc<coffer_maint::Progress>) {
    let flag = crate::global::cancel_flag();
    let p = Arc::clone(progress);
    std::thread::spawn(move || loop {
        if flag.load(Ordering::Relaxed) {
            p.cancel();
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    });
}
