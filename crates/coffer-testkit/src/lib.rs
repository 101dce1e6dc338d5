//! Fixtures the test suites share, so that each is written once: free loopback ports, waiting
//! for a port to answer, child servers killed when a test ends, and Debian's Alertmanager with
//! the `amtool` query that reads it back. A dev-dependency only: nothing here ships.
//!
//! Fixtures fail by panicking with what to install or what did not start, as tests do.

#![allow(clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on (now).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` different loopback ports nothing listens on: held together while they are chosen, so
/// that they differ.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("binding a free loopback port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound port's address").port())
        .collect()
}

/// Waits up to 30 s for something to accept connections on loopback `port`.
pub fn wait_for_port(what: &str, port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what} does not listen on port {port} after 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process, killed and reaped when the test ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's prometheus-alertmanager on a free port, with an empty route, its data and log in
/// `dir`.
pub fn alertmanager(dir: &Path) -> (Server, u16) {
    let port = free_port();
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let data = dir.join("am-data");
    std::fs::create_dir_all(&data).unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap())
        .spawn()
        .expect("starting prometheus-alertmanager (scripts/test-deps installs it)");
    let s = Server(child);
    wait_for_port("alertmanager", port);
    (s, port)
}

/// The active alerts `amtool alert query MATCHER` shows on the Alertmanager at `port`.
pub fn amtool_query(port: u16, matcher: &str) -> Vec<serde_json::Value> {
    let out = Command::new("amtool")
        .args(["alert", "query", "-o", "json"])
        .arg(format!("--alertmanager.url=http://127.0.0.1:{port}"))
        .arg(matcher)
        .output()
        .expect("running amtool (scripts/test-deps installs prometheus-alertmanager)");
    assert!(
        out.status.success(),
        "amtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}
