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

/// Bytes an early-started stream reads per hand-over.
const EARLY_PIECE: usize = 256 << 10;

impl StreamSource {
    /// Starts reading now, on a thread of its own, holding at most about `ahead` bytes until
    /// the backup asks for them: a server that needs time before its first byte (Redis forks
    /// and saves before it sends the RDB; pg_dump plans and locks) then gets on with it while
    /// the repository's index loads. The stream's bytes, errors and end are passed on as
    /// they come.
    pub fn start_early(self, ahead: usize) -> StreamSource {
        let StreamSource {
            filename,
            mut reader,
            finish,
        } = self;
        let (tx, rx) =
            crossbeam_channel::bounded::<io::Result<Vec<u8>>>((ahead / EARLY_PIECE).max(1));
        let started = std::thread::Builder::new()
            .name("coffer-early-read".into())
            .spawn(move || loop {
                let mut piece = vec![0u8; EARLY_PIECE];
                let mut n = 0;
                let mut failure = None;
                while n < piece.len() {
                    match reader.read(&mut piece[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                let end = n < piece.len();
                piece.truncate(n);
                // The receiver is gone when the backup stopped early: so does this thread.
                if n > 0 && tx.send(Ok(piece)).is_err() {
                    return;
                }
                if let Some(e) = failure {
                    let _ = tx.send(Err(e));
                    return;
                }
                if end {
                    return;
                }
            });
        let reader: Box<dyn Read + Send> = match started {
            Ok(_) => Box::new(EarlyReader {
                rx,
                piece: io::Cursor::new(Vec::new()),
                failed: None,
            }),
            Err(e) => Box::new(FailedReader(format!(
                "starting a thread to read {filename}: {e}"
            ))),
        };
        StreamSource {
            filename,
            reader,
            finish,
        }
    }
}

/// The reading end of [`StreamSource::start_early`].
struct EarlyReader {
    rx: crossbeam_channel::Receiver<io::Result<Vec<u8>>>,
    piece: io::Cursor<Vec<u8>>,
    /// The stream's error, returned again on every later read.
    failed: Option<(io::ErrorKind, String)>,
}

impl Read for EarlyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((kind, msg)) = &self.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            let n = self.piece.read(out)?;
            if n > 0 || out.is_empty() {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(Ok(piece)) => self.piece = io::Cursor::new(piece),
                Ok(Err(e)) => self.failed = Some((e.kind(), e.to_string())),
                // The thread ended after the last piece: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
    }
}

struct FailedReader(String);

impl Read for FailedReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other(self.0.clone()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives `data` in reads of 1000 bytes, then `end` (EOF when None).
    struct Slow {
        data: Vec<u8>,
        pos: usize,
        end: Option<io::ErrorKind>,
    }

    impl Read for Slow {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(1000).min(self.data.len() - self.pos);
            if n == 0 {
                if let Some(k) = self.end {
                    return Err(io::Error::new(k, "the server went away"));
                }
            }
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn data() -> Vec<u8> {
        (0..3_000_017u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn an_early_stream_passes_on_every_byte_and_its_end() {
        let src = StreamSource::reader(
            "x",
            Slow {
                data: data(),
                pos: 0,
                end: None,
            },
        )
        .start_early(1 << 20);
        let mut got = Vec::new();
        let mut r = src.reader;
        r.read_to_end(&mut got).unwrap();
        assert!(got == data());
        assert_eq!(r.read(&mut [0u8; 10]).unwrap(), 0);
    }

    #[test]
    fn an_early_stream_passes_on_its_error_after_the_bytes_before_it() {
        let src = StreamSource::reader(
            "x",
            Slow {
                data: data(),
                pos: 0,
                end: Some(io::ErrorKind::ConnectionReset),
            },
        )
        .start_early(1 << 20);
        let mut r = src.reader;
        let mut got = Vec::new();
        let mut buf = [0u8; 70_000];
        let e = loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("an error must not look like the end"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert!(got == data());
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(e.to_string().contains("went away"), "{e}");
        assert!(r.read(&mut buf).is_err(), "the error stays");
    }

    #[test]
    fn dropping_an_early_stream_unread_stops_its_thread() {
        let src = StreamSource::reader("x", io::repeat(1)).start_early(1 << 20);
        drop(src);
    }
}
