//! Running the servers' own tools: as stream producers whose exit status decides whether the
//! snapshot is made, and as consumers fed from a snapshot file. Their stderr is captured so
//! that a failure says what the tool said.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use coffer_archiver::StreamSource;
use parking_lot::Mutex;

/// Keeps the last few KiB a tool wrote to stderr.
#[derive(Clone, Default)]
pub struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    fn collect(&self, mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<()> {
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

/// A stream from `cmd`'s stdout; the backup fails unless it exits 0.
pub fn stream(filename: &str, cmd: Command) -> Result<StreamSource, String> {
    stream_then(filename, cmd, |_| Ok(()))
}

/// Like [`stream`], and once the command has exited 0, `after` reads its stderr (positions
/// and figures that tools such as pg_basebackup print there) and may still fail the backup.
pub fn stream_then(
    filename: &str,
    mut cmd: Command,
    after: impl FnOnce(&str) -> Result<(), String> + Send + 'static,
) -> Result<StreamSource, String> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {prog}: {e} (is it installed and on PATH?)"))?;
    let tail = StderrTail::default();
    let collector = tail.collect(child.stderr.take().expect("stderr piped"));
    let stdout = child.stdout.take().expect("stdout piped");
    Ok(StreamSource {
        filename: filename.to_string(),
        reader: Box::new(stdout),
        finish: Box::new(move || {
            let st = child
                .wait()
                .map_err(|e| format!("waiting for {prog}: {e}"))?;
            let _ = collector.join();
            if st.success() {
                after(&tail.text())
            } else {
                Err(describe_status(&prog, st, &tail.text()))
            }
        }),
    })
}

/// Runs `cmd` to completion; returns its stdout, or an error with its stderr.
pub fn output(mut cmd: Command) -> Result<String, String> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting {prog}: {e} (is it installed and on PATH?)"))?;
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

/// Like [`feed`], but also returns the (last 8 KiB of) stderr of a successful run, for tools
/// such as psql that report errors there and still exit 0.
pub fn feed_capture(mut cmd: Command, mut input: impl Read) -> Result<(String, String), String> {
    let prog = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {prog}: {e} (is it installed and on PATH?)"))?;
    let tail = StderrTail::default();
    let collector = tail.collect(child.stderr.take().expect("stderr piped"));
    let mut stdout = child.stdout.take().expect("stdout piped");
    let out_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let mut stdin = child.stdin.take().expect("stdin piped");
    let copied = std::io::copy(&mut input, &mut stdin);
    drop(stdin);
    let st = child
        .wait()
        .map_err(|e| format!("waiting for {prog}: {e}"))?;
    let _ = collector.join();
    let out = out_thread.join().unwrap_or_default();
    if !st.success() {
        return Err(describe_status(&prog, st, &tail.text()));
    }
    // A read error from the repository is ours, not the tool's; a broken pipe with a
    // successful exit means the tool stopped reading early on purpose.
    match copied {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("reading the backup for {prog}: {e}"))
        }
        _ => Ok((String::from_utf8_lossy(&out).into_owned(), tail.text())),
    }
}

/// Writes a snapshot file to `path`.
pub fn write_file(path: &std::path::Path, mut input: impl Read) -> Result<u64, String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let tmp = path.with_extension("coffer-tmp");
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let n =
        std::io::copy(&mut input, &mut f).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    f.sync_all()
        .map_err(|e| format!("syncing {}: {e}", tmp.display()))?;
    f.flush().ok();
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming to {}: {e}", path.display()))?;
    Ok(n)
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
