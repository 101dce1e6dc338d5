//! Terminal output: logging setup, error printing, and progress for long commands: an
//! indicatif bar on a terminal, restic-style `status` JSON lines with `--json`, nothing
//! otherwise. Results go to stdout, messages to stderr.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_archiver::{Progress, ProgressSnapshot};
use indicatif::{ProgressBar, ProgressStyle};

static LANG: std::sync::OnceLock<coffer_i18n::Lang> = std::sync::OnceLock::new();

/// Chooses the language of this command's messages: the locale's when it asks for Chinese,
/// else the config file's `[server] language` (when `config` names a readable one), else
/// English.
pub fn init_lang(config: Option<&std::path::Path>) {
    let lang = match coffer_i18n::Lang::from_env() {
        coffer_i18n::Lang::En => config
            .and_then(|p| coffer_config::Config::load(p).ok())
            .map(|c| c.lang())
            .unwrap_or_default(),
        l => l,
    };
    let _ = LANG.set(lang);
}

/// The language of this command's messages.
pub fn lang() -> coffer_i18n::Lang {
    LANG.get().copied().unwrap_or_default()
}

/// `5m ago` for a past time, `in 3h43m` for a future one (seconds from now), in the
/// command's language.
pub fn relative(secs_from_now: i64) -> String {
    let d = coffer_config::units::short_duration(secs_from_now.unsigned_abs());
    if secs_from_now <= 0 {
        coffer_i18n::t!(lang(), "time-ago", d = d)
    } else {
        coffer_i18n::t!(lang(), "time-in", d = d)
    }
}

/// Logging to stderr: warnings by default, `-v` info, `-vv` debug. The daemon (`daemon`)
/// logs at info by default, so its log shows each run's start and end.
pub fn init_logging(verbose: u8, quiet: bool, daemon: bool) {
    // OpenDAL logs every retry with a backtrace; our errors say what finally failed.
    let verbose = if daemon { verbose.max(1) } else { verbose };
    let default = match (quiet, verbose) {
        (true, _) => "error",
        // Redis says what a sync waits for: seconds of silence otherwise.
        (_, 0) => "warn,opendal=error,opendal_layer_retry=error,coffer_sources::redis=info",
        (_, 1) => "info,opendal=warn,opendal_layer_retry=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Secrets this process holds are scrubbed from every line, whoever wrote it (a
    // dependency's debug output may print a credential provider whole).
    coffer_config::secrets::register_env();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| RedactingStderr)
        // A log file or journald gets plain text; colours only on a terminal.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .try_init();
}

/// Standard error with registered secrets replaced (see [`coffer_config::secrets`]); the
/// formatter writes each event in one call, so a secret is never split across writes.
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(coffer_config::secrets::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub fn print_error(e: &anyhow::Error) {
    // Exit 3 is "done, but less than asked": not a fatal error.
    let lead = if crate::global::exit_code(e) == 3 {
        coffer_i18n::t!(lang(), "prefix-incomplete")
    } else {
        coffer_i18n::t!(lang(), "prefix-fatal")
    };
    eprintln!("{lead}: {}", coffer_config::secrets::redact(&chain_text(e)));
}

/// The error and its causes, each said once: library errors name their cause in their own
/// message too (so that they read well alone, in a run record or a log), and a cause whose
/// text an outer layer already holds is left out, as is a leading `NAME: ` that an outer
/// layer already names (`source "pg": pg: database ...`).
pub fn chain_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for c in e.chain() {
        let mut t = c.to_string();
        if let Some((head, rest)) = t.split_once(": ") {
            if !head.is_empty() && !head.contains(' ') && out.contains(head) {
                t = rest.to_string();
            }
        }
        if t.is_empty() || out.contains(&t) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&t);
    }
    out
}

pub use coffer_config::units::{bytes, rate};

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

/// The progress of a run of steps (a recovery, a drill) on a terminal: the display of the step
/// under way, stopped while a finished step's line is printed and started afresh for the
/// next. Text mode only: with `--json` the run's report is the whole output.
pub struct StepsReporter {
    mode: Mode,
    progress: Arc<Progress>,
    shown: Option<Reporter>,
}

impl StepsReporter {
    /// Shows the first step's progress.
    pub fn start(json: bool, quiet: bool) -> StepsReporter {
        let mode = if json { Mode::None } else { mode(false, quiet) };
        let progress = Arc::new(Progress::default());
        let shown = Some(Reporter::start(mode, Arc::clone(&progress), "restore"));
        StepsReporter {
            mode,
            progress,
            shown,
        }
    }

    /// The counters the steps update.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// A step ended: clears the display, lets `print` say so, and shows the next step's.
    pub fn step_done(&mut self, print: impl FnOnce()) {
        drop(self.shown.take());
        print();
        self.progress.reset();
        self.shown = Some(Reporter::start(
            self.mode,
            Arc::clone(&self.progress),
            "restore",
        ));
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
        // Most important first: what is done, errors, the ETA; then totals and the rate.
        let mut parts = vec![format!("{} files, {}", p.files_done, bytes(p.bytes_done))];
        if p.errors > 0 {
            parts.push(format!("{} errors", p.errors));
        }
        if let Some(d) = eta(&p, el) {
            parts.push(format!("ETA {}", humantime(d)));
        }
        if p.scan_finished || p.total_files > 0 {
            parts.push(format!(
                "of {} files, {}",
                p.total_files,
                bytes(p.total_bytes)
            ));
        }
        parts.push(rate(p.bytes_done, el));
        // The bar's own prefix ("⠁ [00:00:00] ") takes 13 columns.
        bar.set_message(fit_line(
            &parts,
            &p.current,
            term_width().saturating_sub(14),
        ));
        bar.tick();
        std::thread::sleep(Duration::from_millis(150));
    }
    bar.finish_and_clear();
}

/// The columns of the terminal on stderr (80 when it cannot be asked).
fn term_width() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize struct we pass; stderr is a valid descriptor.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}

/// One progress line of at most `width` columns: as many of `parts` as fit, whole and in
/// order of importance (the first always), then `current` shortened from the left, so
/// that nothing is ever cut mid-word (`ETA 0:00:`).
fn fit_line(parts: &[String], current: &str, width: usize) -> String {
    let mut line = String::new();
    for (i, p) in parts.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        if i > 0 && line.chars().count() + sep.len() + p.chars().count() > width {
            continue;
        }
        line.push_str(sep);
        line.push_str(p);
    }
    let room = width.saturating_sub(line.chars().count() + 2);
    let n = current.chars().count();
    if n > 0 && room >= 8 {
        line.push_str("  ");
        if n <= room {
            line.push_str(current);
        } else {
            line.push('…');
            line.extend(current.chars().skip(n - (room - 1)));
        }
    }
    line
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn json_loop(progress: &Progress, stop: &AtomicBool, verb: &str) {
    let start = Instant::now();
    let mut last = Instant::now() - Duration::from_secs(10);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        // One line a second, and a last one at the end with the final counts.
        if stopping || last.elapsed() >= Duration::from_secs(1) {
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
        if stopping {
            return;
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

/// A left-aligned text table with a rule under the header.
pub(crate) fn print_table<H: AsRef<str>>(header: &[H], rows: &[Vec<String>]) {
    // Columns are measured in terminal cells: a Chinese character takes two.
    use unicode_width::UnicodeWidthStr;
    let mut widths: Vec<usize> = header.iter().map(|h| h.as_ref().width()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.width());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, (c, w)) in cells.into_iter().zip(&widths).enumerate() {
            s.push_str(c);
            if i + 1 < n {
                s.push_str(&" ".repeat(w.saturating_sub(c.width()) + 2));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.as_ref()).collect());
    println!(
        "{}",
        "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
    );
    for r in rows {
        line(r.iter().map(|c| c.as_str()).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layer_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let msg = io.to_string();
        let e = anyhow::Error::new(io).context(format!("/nonexistent/dir: {msg}"));
        assert_eq!(chain_text(&e), format!("/nonexistent/dir: {msg}"));
        let e =
            anyhow::anyhow!("pg-bad: database \"x\" does not exist").context("source \"pg-bad\"");
        assert_eq!(
            chain_text(&e),
            "source \"pg-bad\": database \"x\" does not exist"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&e), "outer: inner");
    }

    #[test]
    fn progress_line_fits_and_never_cuts_a_part() {
        let parts: Vec<String> = [
            "1200 files, 512 MiB",
            "ETA 0:00:42",
            "of 5000 files, 2.00 GiB",
            "72.5 MiB/s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let current = "/usr/share/doc/some-package/changelog.Debian.gz";
        let wide = fit_line(&parts, current, 200);
        assert!(
            wide.contains("ETA 0:00:42") && wide.ends_with(current),
            "{wide}"
        );
        for w in [20, 40, 66] {
            let l = fit_line(&parts, current, w);
            assert!(l.chars().count() <= w.max(parts[0].len()), "{w}: {l}");
            assert!(l.starts_with("1200 files, 512 MiB"), "{l}");
            assert!(
                !l.contains("ETA 0:00:4,") && !l.ends_with("ETA 0:00:"),
                "{l}"
            );
        }
        assert!(fit_line(&parts, current, 40).contains("ETA 0:00:42"));
        let l = fit_line(&parts, current, 90);
        assert!(l.contains('…') && l.ends_with("Debian.gz"), "{l}");
    }
}
