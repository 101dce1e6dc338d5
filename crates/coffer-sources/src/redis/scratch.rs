//! The restore's scratch server: a temporary `redis-server` on a free loopback port that
//! loads the RDB, so that its keys can be counted (and used) before anything else sees it.

use super::*;

/// A temporary `redis-server` on a free loopback port, loaded from an RDB file; killed when
/// dropped unless [`ScratchServer::shutdown`] stopped it.
pub struct ScratchServer {
    pub(super) child: Option<Child>,
    pub(super) registered: Option<crate::scratch::Registration>,
    pub(super) port: u16,
    pub(super) rdb: PathBuf,
    pub(super) log: Arc<Mutex<VecDeque<String>>>,
    pub(super) timeout: Duration,
    /// `redis_version` of the scratch server.
    pub version: String,
}

pub(super) fn free_port() -> Result<u16, String> {
    crate::scratch::free_port().map_err(|e| format!("finding a free port: {e}"))
}

pub(super) fn collect_log(r: impl Read + Send + 'static, log: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in io::BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            let mut l = log.lock();
            l.push_back(line);
            if l.len() > 40 {
                l.pop_front();
            }
        }
    });
}

pub(super) enum StartFailure {
    PortTaken,
    Fatal(String),
}

impl ScratchServer {
    /// Starts `redis-server` with `rdb`'s directory as its data dir and `rdb` as its dump
    /// file, no persistence, and `databases` databases; waits until the dataset is loaded
    /// (`timeout` bounds the wait for the server to answer, not the loading itself).
    pub fn start(rdb: &Path, databases: u32, timeout: Duration) -> Result<ScratchServer, String> {
        let rdb = rdb
            .canonicalize()
            .map_err(|e| format!("{}: {e}", rdb.display()))?;
        let (Some(dir), Some(file)) = (rdb.parent(), rdb.file_name()) else {
            return Err(format!("{}: not a file path", rdb.display()));
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(dir)
                .arg("--dbfilename")
                .arg(file)
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--databases", &databases.to_string(), "--logfile", ""])
                .args(["--protected-mode", "yes"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| {
                    format!("starting redis-server: {e} (is it installed and on PATH?)")
                })?;
            let log = Arc::new(Mutex::new(VecDeque::new()));
            const PIPED: &str = "stdout and stderr of a child just spawned with Stdio::piped()";
            collect_log(child.stdout.take().expect(PIPED), Arc::clone(&log));
            collect_log(child.stderr.take().expect(PIPED), Arc::clone(&log));
            let registered = crate::scratch::register_pid(
                format!("scratch redis-server on port {port}"),
                child.id(),
            );
            let mut server = ScratchServer {
                child: Some(child),
                registered: Some(registered),
                port,
                rdb: rdb.clone(),
                log,
                timeout,
                version: String::new(),
            };
            match server.wait_loaded() {
                Ok(()) => return Ok(server),
                Err(StartFailure::PortTaken) if attempt < 5 => continue,
                Err(StartFailure::PortTaken) => {
                    return Err(format!(
                        "redis-server could not get a free port: {}",
                        server.log_tail()
                    ))
                }
                Err(StartFailure::Fatal(e)) => return Err(e),
            }
        }
    }

    pub(super) fn log_tail(&self) -> String {
        let l = self.log.lock();
        let lines: Vec<&str> = l.iter().rev().take(15).map(String::as_str).collect();
        if lines.is_empty() {
            "(no output)".into()
        } else {
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        }
    }

    pub(super) fn target(&self) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: self.port,
            user: None,
            password: None,
        }
    }

    pub(super) fn wait_loaded(&mut self) -> Result<(), StartFailure> {
        let t0 = Instant::now();
        let mut last_note = Instant::now();
        let target = self.target();
        let quick = Duration::from_secs(2).min(self.timeout);
        let mut answered = false;
        loop {
            let child = self.child.as_mut().expect(
                "wait_loaded runs on a server just started, and returns whenever it drops the child",
            );
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                // The log threads may still be draining the pipes.
                std::thread::sleep(Duration::from_millis(100));
                let tail = self.log_tail();
                if tail.contains("Address already in use") {
                    return Err(StartFailure::PortTaken);
                }
                return Err(StartFailure::Fatal(format!(
                    "redis-server exited ({st}) while loading {}: {tail}",
                    self.rdb.display()
                )));
            }
            let pid = child.id();
            if let Ok(mut c) = Conn::open(&target, quick, COMMAND_BUFFER) {
                match c.raw_call(&[b"INFO", b"server"]) {
                    Ok(Reply::Error(e)) if e.starts_with("LOADING") => {
                        answered = true;
                        if last_note.elapsed() > Duration::from_secs(10) {
                            tracing::info!(
                                "scratch redis-server still loading {}",
                                self.rdb.display()
                            );
                            last_note = Instant::now();
                        }
                    }
                    Ok(Reply::Bulk(info)) => {
                        let info = String::from_utf8_lossy(&info).into_owned();
                        if info_field(&info, "process_id").and_then(|p| p.parse::<u32>().ok())
                            != Some(pid)
                        {
                            // Someone else listens there: ours failed to bind.
                            self.kill();
                            return Err(StartFailure::PortTaken);
                        }
                        self.version = info_field(&info, "redis_version")
                            .unwrap_or("?")
                            .to_string();
                        answered = true;
                        let loading = c
                            .info("persistence")
                            .ok()
                            .and_then(|p| info_field(&p, "loading").map(|v| v == "1"));
                        if loading == Some(false) {
                            return Ok(());
                        }
                    }
                    Ok(other) => {
                        self.kill();
                        return Err(StartFailure::Fatal(format!(
                            "scratch redis-server on port {}: unexpected reply to INFO: {other:?}",
                            self.port
                        )));
                    }
                    Err(_) => {}
                }
            }
            if !answered && t0.elapsed() > self.timeout {
                let tail = self.log_tail();
                self.kill();
                return Err(StartFailure::Fatal(format!(
                    "redis-server did not answer on 127.0.0.1:{} within {} s: {tail}",
                    self.port,
                    secs_text(self.timeout)
                )));
            }
            std::thread::sleep(Duration::from_millis(if answered { 200 } else { 50 }));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A client.
    pub fn client(&self) -> Result<Client, String> {
        Client::connect(&self.url(), self.timeout)
    }

    /// Key counts, and what the load reported.
    pub fn count_keys(&self) -> Result<LoadedKeys, String> {
        let mut c = self.client()?;
        let per_db = parse_keyspace(&c.info("keyspace")?);
        let persistence = c.info("persistence")?;
        let num = |f| info_field(&persistence, f).and_then(|v| v.parse::<u64>().ok());
        Ok(LoadedKeys {
            per_db,
            loaded: num("rdb_last_load_keys_loaded"),
            expired: num("rdb_last_load_keys_expired"),
        })
    }

    pub(super) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.registered = None;
    }

    /// `SHUTDOWN NOSAVE` and waits for the process to exit (kills it after the timeout).
    pub fn shutdown(mut self) -> Result<(), String> {
        let sent = Conn::open(&self.target(), self.timeout, COMMAND_BUFFER)
            .and_then(|mut c| c.send(&[b"SHUTDOWN", b"NOSAVE"]).map(|_| c))
            .map(|mut c| {
                // The server closes the connection as it exits.
                let _ = parse_reply(&mut c);
            });
        let deadline = Instant::now() + self.timeout;
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => {
                    self.child = None;
                    self.registered = None;
                    return Ok(());
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    self.kill();
                    return Err(format!(
                        "the scratch redis-server did not stop{}; it was killed",
                        sent.err().map(|e| format!(" ({e})")).unwrap_or_default()
                    ));
                }
            }
        }
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        self.kill();
    }
}
