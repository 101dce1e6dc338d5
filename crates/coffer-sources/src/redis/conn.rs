//! Connections to a Redis server: buffered TCP with timeouts, commands and the errors that
//! name them, and the [`Client`] that tests and drills use to talk to a server.

use super::*;

/// A buffered connection.
pub(super) struct Conn {
    pub(super) sock: TcpStream,
    pub(super) buf: Box<[u8]>,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) addr: String,
    pub(super) timeout: Duration,
}

impl Conn {
    pub(super) fn open(target: &Target, timeout: Duration, buffer: usize) -> Result<Conn, String> {
        let addr = target.addr();
        let addrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve the redis host {:?}: {e}", target.host))?
            .collect();
        let mut last = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, timeout) {
                Ok(sock) => {
                    let _ = sock.set_nodelay(true);
                    sock.set_read_timeout(Some(timeout))
                        .and_then(|_| sock.set_write_timeout(Some(timeout)))
                        .map_err(|e| format!("redis at {addr}: {e}"))?;
                    return Ok(Conn {
                        sock,
                        buf: vec![0u8; buffer].into_boxed_slice(),
                        start: 0,
                        end: 0,
                        addr,
                        timeout,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if is_timeout(&e) => format!(
                "cannot connect to redis at {addr}: no answer within {} s (timeout)",
                secs_text(timeout)
            ),
            Some(e) => format!("cannot connect to redis at {addr}: {e}"),
            None => format!("cannot connect to redis at {addr}: the host has no address"),
        })
    }

    /// Connects, authenticates if the URL has a password, and checks with PING.
    pub(super) fn connect_authed(
        target: &Target,
        timeout: Duration,
        buffer: usize,
    ) -> Result<Conn, String> {
        let mut c = Conn::open(target, timeout, buffer)?;
        if let Some(pw) = &target.password {
            let reply = match &target.user {
                Some(u) => c.raw_call(&[b"AUTH", u.as_bytes(), pw.as_bytes()])?,
                None => c.raw_call(&[b"AUTH", pw.as_bytes()])?,
            };
            if let Reply::Error(e) = reply {
                let who = match &target.user {
                    Some(u) => format!(" as user {u:?}"),
                    None => String::new(),
                };
                return Err(format!(
                    "authentication{who} at redis {} failed: {e}",
                    c.addr
                ));
            }
        }
        match c.raw_call(&[b"PING"])? {
            Reply::Error(e) if e.starts_with("NOAUTH") => Err(format!(
                "redis at {} requires a password ({e}): put it in the url, \
                 redis://:PASSWORD@{}/ or redis://USER:PASSWORD@{}/",
                c.addr, c.addr, c.addr
            )),
            Reply::Error(e) => Err(format!("PING at redis {} failed: {e}", c.addr)),
            _ => Ok(c),
        }
    }

    pub(super) fn io_err(&self, e: io::Error, doing: &str) -> String {
        if is_timeout(&e) {
            format!(
                "{doing}: no data from redis at {} for {} s (timeout)",
                self.addr,
                secs_text(self.timeout)
            )
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            format!("{doing}: redis at {} closed the connection", self.addr)
        } else {
            format!("{doing}: redis at {}: {e}", self.addr)
        }
    }

    pub(super) fn send(&mut self, args: &[&[u8]]) -> Result<(), String> {
        let cmd = command_name(args);
        self.sock
            .write_all(&encode_command(args))
            .map_err(|e| self.io_err(e, &format!("sending {cmd}")))
    }

    /// Sends a command and reads its reply (server errors are replies).
    pub(super) fn raw_call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        self.send(args)?;
        parse_reply(self)
            .map_err(|e| self.io_err(e, &format!("reading the reply to {}", command_name(args))))
    }

    /// Sends a command; a server error is an `Err`.
    pub(super) fn call(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        match self.raw_call(args)? {
            Reply::Error(e) => Err(command_error(&command_name(args), &self.addr, &e)),
            r => Ok(r),
        }
    }

    pub(super) fn info(&mut self, section: &str) -> Result<String, String> {
        let r = self.call(&[b"INFO", section.as_bytes()])?;
        r.text().ok_or_else(|| {
            format!(
                "INFO {section} at redis {}: unexpected reply {r:?}",
                self.addr
            )
        })
    }

    /// Reads more bytes after the buffered ones; 0 at end of stream.
    pub(super) fn fill_more(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = loop {
            match self.sock.read(&mut self.buf[self.end..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.end += n;
        Ok(n)
    }
}

impl Read for Conn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.end && out.len() >= self.buf.len() {
            return self.sock.read(out);
        }
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(out.len());
            out[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Conn {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            let n = loop {
                match self.sock.read(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            self.end = n;
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub(super) fn secs_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", s as u64)
    } else {
        format!("{s:.1}")
    }
}

pub(super) fn command_name(args: &[&[u8]]) -> String {
    let mut name = args
        .first()
        .map(|a| String::from_utf8_lossy(a).to_ascii_uppercase())
        .unwrap_or_default();
    // Subcommands are part of the name; other arguments (AUTH's password) never are shown.
    if matches!(name.as_str(), "INFO" | "REPLCONF" | "CONFIG" | "CLIENT") {
        if let Some(sub) = args.get(1) {
            name.push(' ');
            name.push_str(&String::from_utf8_lossy(sub));
        }
    }
    name
}

pub(super) fn command_error(cmd: &str, addr: &str, e: &str) -> String {
    if e.starts_with("NOPERM") {
        format!(
            "{cmd} refused by redis at {addr}: {e} (the user needs +ping +info +replconf +psync \
             +sync)"
        )
    } else if e.starts_with("NOAUTH") {
        format!("{cmd} refused by redis at {addr}: {e} (put the password in the url)")
    } else {
        format!("{cmd} failed at redis {addr}: {e}")
    }
}

/// A plain Redis client (RESP2 over TCP), for checks and tests.
pub struct Client {
    pub(super) conn: Conn,
}

impl Client {
    /// Connects to `url` (`redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`), logs in and, if the
    /// URL names a database, selects it.
    pub fn connect(url: &str, timeout: Duration) -> Result<Client, String> {
        let target = parse_url(url)?;
        let mut conn = Conn::connect_authed(&target, timeout, COMMAND_BUFFER)?;
        let db = url
            .split_once("://")
            .and_then(|(_, r)| r.split_once('/'))
            .map(|(_, p)| p.trim_end_matches('/'))
            .filter(|p| !p.is_empty());
        if let Some(db) = db {
            conn.call(&[b"SELECT", db.as_bytes()])?;
        }
        Ok(Client { conn })
    }

    /// Runs a command; a server error reply is an `Err` naming the command.
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        self.conn.call(args)
    }

    /// Runs a command given as strings.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Reply, String> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.conn.call(&args)
    }

    /// `INFO section`.
    pub fn info(&mut self, section: &str) -> Result<String, String> {
        self.conn.info(section)
    }
}
