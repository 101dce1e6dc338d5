//! Byte streams as backup sources: standard input, or the standard output of a command
//! (`--stdin-from-command`, and every database dump later). A command stream fails the backup
//! unless the command exits with status 0, so a crashed `pg_dump` never becomes a snapshot.

use std::io::{self, Read};
use std::process::{Child, Command, Stdio};

/// A readable stream plus the check that says whether it ended well.
pub struct StreamSource {
    /// Name of the file the stream becomes in the snapshot.
    pub filename: String,
    /// The bytes.
    pub reader: Box<dyn Read + Send>,
    /// Called after end of stream; an error fails the backup.
    pub finish: Box<dyn FnOnce() -> Result<(), String> + Send>,
}

impl StreamSource {
    /// Standard input.
    pub fn stdin(filename: &str) -> StreamSource {
        StreamSource {
            filename: filename.to_string(),
            reader: Box::new(io::stdin()),
            finish: Box::new(|| Ok(())),
        }
    }

    /// Any reader that cannot fail after EOF.
    pub fn reader(filename: &str, r: impl Read + Send + 'static) -> StreamSource {
        StreamSource {
            filename: filename.to_string(),
            reader: Box::new(r),
            finish: Box::new(|| Ok(())),
        }
    }

    /// The standard output of `argv`; its stderr goes to ours.
    pub fn command(filename: &str, argv: &[String]) -> io::Result<StreamSource> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let mut child = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {prog:?}: {e}")))?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let shown = argv.join(" ");
        Ok(StreamSource {
            filename: filename.to_string(),
            reader: Box::new(stdout),
            finish: Box::new(move || wait(child, &shown)),
        })
    }
}

fn wait(mut child: Child, shown: &str) -> Result<(), String> {
    let st = child
        .wait()
        .map_err(|e| format!("waiting for command {shown:?}: {e}"))?;
    if st.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    Err(match (st.code(), st.signal()) {
        (Some(c), _) => format!("command {shown:?} exited with status {c}"),
        (None, Some(s)) => format!("command {shown:?} was killed by signal {s}"),
        _ => format!("command {shown:?} failed: {st}"),
    })
}

/// A stream whose bytes are produced only when it is first read: a source's manifest, which
/// describes the streams before it (their sizes, the positions reached) and so can only be
/// written once they are done.
pub fn lazy(filename: &str, make: impl FnOnce() -> Vec<u8> + Send + 'static) -> StreamSource {
    StreamSource {
        filename: filename.to_string(),
        reader: Box::new(LazyReader {
            make: Some(Box::new(make)),
            data: io::Cursor::new(Vec::new()),
        }),
        finish: Box::new(|| Ok(())),
    }
}

struct LazyReader {
    make: Option<Box<dyn FnOnce() -> Vec<u8> + Send>>,
    data: io::Cursor<Vec<u8>>,
}

impl Read for LazyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(make) = self.make.take() {
            self.data = io::Cursor::new(make());
        }
        self.data.read(buf)
    }
}
