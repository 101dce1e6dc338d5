//! Running the servers' own tools: as stream producers whose exit status decides whether the
//! snapshot is made, and as consumers fed from a snapshot file. Their stderr is captured so
//! that a failure says what the tool said.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

use coffer_archiver::StreamSource;
use parking_lot::Mutex;

use crate::{SnapshotFiles, SourceError};

/// Keeps the last few KiB a tool wrote to stderr.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    fn collect(&self, mut r: impl Read + Send + 'static) -> JoinHandle<()> {
        let buf = Arc::clone(&self.0);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut b = buf.lock();
                b.extend_from_slice(&chunk[..n]);
                if b.len() > 65536 {
                    let cut = b.len() - 65536;
                    b.drain(..cut);
                }
            }
        })
    }

    /// The captured text, trimmed.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).trim().to_string()
    }
}

fn describe_status(prog: &str, st: std::process::ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("failed ({st})"),
    };
    if stderr.is_empty() {
        format!("{prog} {how}")
    } else {
        format!("{prog} {how}: {stderr}")
    }
}

/// The program a command runs, for messages.
fn program(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

fn start_error(prog: &str, e: std::io::Error) -> String {
    format!("starting {prog}: {e} (is it installed and on PATH?)")
}

/// A tool started with its stdout piped to us and its stderr collected into a [`StderrTail`].
struct Running {
    prog: String,
    child: Child,
    tail: StderrTail,
    collector: Option<JoinHandle<()>>,
}

impl Running {
    /// Starts `cmd` with `stdin`; returns it and its stdout.
    fn start(mut cmd: Command, stdin: Stdio) -> Result<(Running, ChildStdout), String> {
        let prog = program(&cmd);
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| start_error(&prog, e))?;
        let tail = StderrTail::default();
        let collector = tail.collect(
            child
                .stderr
                .take()
                .expect("stderr of a child just spawned with Stdio::piped()"),
        );
        let stdout = child
            .stdout
            .take()
            .expect("stdout of a child just spawned with Stdio::piped()");
        let running = Running {
            prog,
            child,
            tail,
            collector: Some(collector),
        };
        Ok((running, stdout))
    }

    /// Waits for the tool to exit, then for its stderr to be collected.
    fn wait(&mut self) -> Result<ExitStatus, String> {
        let st = self
            .child
            .wait()
            .map_err(|e| format!("waiting for {}: {e}", self.prog))?;
        if let Some(collector) = self.collector.take() {
            let _ = collector.join();
        }
        Ok(st)
    }

    /// Its stderr after exit status `st` if that is 0; otherwise an error with what it said.
    fn outcome(&self, st: ExitStatus) -> Result<String, String> {
        if st.success() {
            Ok(self.tail.text())
        } else {
            Err(describe_status(&self.prog, st, &self.tail.text()))
        }
    }
}

/// A stream from `cmd`'s stdout; the backup fails unless it exits 0.
pub fn stream(filename: &str, cmd: Command) -> Result<StreamSource, String> {
    stream_then(filename, cmd, |_| Ok(()))
}

/// Like [`stream`], and once the command has exited 0, `after` reads its stderr (positions
/// and figures that tools such as pg_basebackup print there) and may still fail the backup.
pub fn stream_then(
    filename: &str,
    cmd: Command,
    after: impl FnOnce(&str) -> Result<(), String> + Send + 'static,
) -> Result<StreamSource, String> {
    let (mut running, stdout) = Running::start(cmd, Stdio::null())?;
    Ok(StreamSource {
        filename: filename.to_string(),
        reader: Box::new(stdout),
        finish: Box::new(move || {
            let st = running.wait()?;
            running.outcome(st).and_then(|stderr| after(&stderr))
        }),
    })
}

/// Runs `cmd` to completion; returns its stdout, or an error with its stderr.
pub fn output(mut cmd: Command) -> Result<String, String> {
    let prog = program(&cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| start_error(&prog, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(describe_status(
            &prog,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
        ))
    }
}

/// Feeds `input` into `cmd`'s stdin; returns its stdout, or an error with its stderr.
pub fn feed(cmd: Command, input: impl Read) -> Result<String, String> {
    feed_capture(cmd, input).map(|(out, _)| out)
}

/// Like [`feed`], but also returns the (last 64 KiB of) stderr of a successful run, for tools
/// such as psql that report errors there and still exit 0.
pub fn feed_capture(cmd: Command, mut input: impl Read) -> Result<(String, String), String> {
    let (mut running, mut stdout) = Running::start(cmd, Stdio::piped())?;
    let out_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let mut stdin = running
        .child
        .stdin
        .take()
        .expect("stdin of a child just spawned with Stdio::piped()");
    let copied = coffer_archiver::copy_stream(&mut input, &mut stdin);
    drop(stdin);
    let st = running.wait()?;
    let out = out_thread.join().unwrap_or_default();
    // A read error from the repository (a damaged pack) is the cause, and the tool's failure
    // on the input cut short only its consequence; a broken pipe means the tool stopped
    // reading, early on purpose if it exited 0.
    if let Err(e) = &copied {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(format!(
                "reading the backup for {}: {e}{}",
                running.prog,
                match running.outcome(st) {
                    Err(t) => format!(" (and so {t})"),
                    Ok(_) => String::new(),
                }
            ));
        }
    }
    let stderr = running.outcome(st)?;
    Ok((String::from_utf8_lossy(&out).into_owned(), stderr))
}

/// Why writing a snapshot file to disk failed: what was being done, to which file.
#[derive(Debug)]
pub struct WriteError {
    /// What was being done (`creating`, `writing`, `syncing`, `renaming to`).
    pub doing: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.doing, self.path.display(), self.source)
    }
}

impl From<WriteError> for SourceError {
    fn from(e: WriteError) -> SourceError {
        SourceError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Writes a snapshot file to `path` (through a temporary file and a rename); errors say what
/// was being done.
pub fn write_file(path: &Path, input: impl Read) -> Result<u64, String> {
    write_file_io(path, input).map_err(|e| e.to_string())
}

/// [`write_file`] with the failing file and I/O error kept apart.
pub fn write_file_io(path: &Path, mut input: impl Read) -> Result<u64, WriteError> {
    let fail = |doing: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError {
            doing,
            path,
            source,
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail("creating", parent))?;
    }
    let tmp = path.with_extension("coffer-tmp");
    let mut f = std::fs::File::create(&tmp).map_err(fail("creating", &tmp))?;
    let n = coffer_archiver::copy_stream(&mut input, &mut f).map_err(fail("writing", &tmp))?;
    f.sync_all().map_err(fail("syncing", &tmp))?;
    f.flush().ok();
    std::fs::rename(&tmp, path).map_err(fail("renaming to", path))?;
    Ok(n)
}

/// Which databases a logical backup dumped, from the `databases` list (`name` of each) of the
/// snapshot's manifest; empty when there is none.
pub fn manifest_databases(files: &SnapshotFiles) -> Vec<String> {
    files
        .manifest()
        .and_then(|m| m.get("databases").cloned())
        .and_then(|d| d.as_array().cloned())
        .map(|a| {
            a.iter()
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Which dumped database a logical restore reads: `wanted` (`--database`), or else the only
/// one the manifest lists. It must be in the snapshot, as the file `file_of(name)`.
pub fn choose_database(
    files: &SnapshotFiles,
    wanted: Option<&str>,
    file_of: impl Fn(&str) -> String,
) -> Result<String, SourceError> {
    let listed = manifest_databases(files);
    let db = match (wanted, listed.as_slice()) {
        (Some(d), _) => d.to_string(),
        (None, [only]) => only.clone(),
        (None, _) => {
            return Err(SourceError::Usage(format!(
                "snapshot {} holds several databases ({}): choose one with --database",
                files.snapshot.id.short(),
                listed.join(", ")
            )))
        }
    };
    files.node(&file_of(&db)).map_err(|_| {
        SourceError::Usage(format!(
            "database {db:?} is not in snapshot {} (it holds: {})",
            files.snapshot.id.short(),
            listed.join(", ")
        ))
    })?;
    Ok(db)
}

/// The stream `coffer-manifest.json`, the last of a backup's streams: when the archiver comes
/// to it (the others have ended), it sets `duration_seconds` (since `started`) and
/// `finished_at` and serializes the manifest.
pub fn manifest_stream(manifest: &crate::Manifest, started: std::time::Instant) -> StreamSource {
    let m = manifest.clone();
    coffer_archiver::lazy_stream("coffer-manifest.json", move || {
        m.set("duration_seconds", started.elapsed().as_secs_f64());
        m.set("finished_at", chrono::Local::now().to_rfc3339());
        serde_json::to_vec_pretty(&m.snapshot()).unwrap_or_default()
    })
}

/// Writes root files of a snapshot into `dir` (file-shaped restores), one step each.
pub fn write_files(
    files: &crate::SnapshotFiles,
    dir: &std::path::Path,
    names: &[&str],
    report: &mut crate::RestoreReport,
) -> Result<(), crate::SourceError> {
    for f in names {
        let path = dir.join(f);
        let n = write_file(&path, files.reader(f)?).map_err(crate::SourceError::Usage)?;
        report.steps.push(format!(
            "wrote {} ({})",
            path.display(),
            coffer_config::units::bytes(n)
        ));
    }
    Ok(())
}

/// Something a deferred command needs to stay alive until it has run (a credentials file).
pub type KeepAlive = Arc<dyn std::any::Any + Send + Sync>;

/// A stream whose command starts when the stream is first read.
pub fn deferred(
    filename: &str,
    cmd: Command,
    keep: Option<KeepAlive>,
) -> coffer_archiver::StreamSource {
    type Finish = Box<dyn FnOnce() -> Result<(), String> + Send>;
    struct Deferred {
        cmd: Option<Command>,
        filename: String,
        reader: Option<Box<dyn std::io::Read + Send>>,
        finish: std::sync::Arc<parking_lot::Mutex<Option<Finish>>>,
        _keep: Option<KeepAlive>,
    }
    impl std::io::Read for Deferred {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if let Some(cmd) = self.cmd.take() {
                match stream(&self.filename, cmd) {
                    Ok(s) => {
                        self.reader = Some(s.reader);
                        *self.finish.lock() = Some(s.finish);
                    }
                    Err(e) => {
                        let msg = e.clone();
                        *self.finish.lock() = Some(Box::new(move || Err(msg)));
                        return Err(std::io::Error::other(e));
                    }
                }
            }
            match &mut self.reader {
                Some(r) => r.read(buf),
                None => Ok(0),
            }
        }
    }
    let slot: std::sync::Arc<parking_lot::Mutex<Option<Finish>>> = Default::default();
    let finish = std::sync::Arc::clone(&slot);
    coffer_archiver::StreamSource {
        filename: filename.to_string(),
        reader: Box::new(Deferred {
            cmd: Some(cmd),
            filename: filename.to_string(),
            reader: None,
            finish: slot,
            _keep: keep,
        }),
        finish: Box::new(move || match finish.lock().take() {
            Some(f) => f(),
            None => Ok(()),
        }),
    }
}

/// A `hint:` line listing names, at most ten of them: a server with 500 databases does not
/// fill the screen. Hint lines are for a person at a terminal; alert texts leave them out.
pub fn names_hint<'a>(what: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    const SHOWN: usize = 10;
    let names: Vec<&str> = names.into_iter().collect();
    let more = names.len().saturating_sub(SHOWN);
    format!(
        "hint: {} {what}: {}{}",
        names.len(),
        names[..names.len().min(SHOWN)].join(", "),
        if more > 0 {
            format!(", and {more} more")
        } else {
            String::new()
        }
    )
}
