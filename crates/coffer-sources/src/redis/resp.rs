//! The RESP protocol: writing commands and reading replies.

use super::*;

/// A reply (RESP2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$3\r\nabc`.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*2\r\n...`.
    Array(Vec<Reply>),
}

impl Reply {
    /// The bytes of a bulk or simple string.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            Reply::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// A bulk or simple string as text (lossy).
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// Encodes a command as an array of bulk strings.
pub(super) fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub(super) const MAX_LINE: usize = 64 << 10;
pub(super) const MAX_BULK: i64 = 1 << 30;
pub(super) const MAX_DEPTH: usize = 16;

pub(super) fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads one `\n`-terminated line (without `\r\n`).
pub(super) fn read_line(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&buf[..i]);
                r.consume(i + 1);
                break;
            }
            None => {
                let n = buf.len();
                line.extend_from_slice(buf);
                r.consume(n);
            }
        }
        if line.len() > MAX_LINE {
            return Err(bad_data("protocol error: reply line too long".into()));
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// Parses one RESP2 reply.
pub(super) fn parse_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    parse_reply_at(r, 0)
}

pub(super) fn parse_reply_at(r: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(bad_data("protocol error: replies nested too deeply".into()));
    }
    let line = read_line(r)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err(bad_data("protocol error: empty reply line".into()));
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    let int = || -> io::Result<i64> {
        std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_data(format!("protocol error: bad number {:?}", text())))
    };
    Ok(match kind {
        b'+' => Reply::Simple(text()),
        b'-' => Reply::Error(text()),
        b':' => Reply::Integer(int()?),
        b'$' => match int()? {
            -1 => Reply::Nil,
            n if (0..=MAX_BULK).contains(&n) => {
                let mut data = vec![0u8; n as usize + 2];
                r.read_exact(&mut data)?;
                if &data[n as usize..] != b"\r\n" {
                    return Err(bad_data(
                        "protocol error: bulk string not followed by CRLF".into(),
                    ));
                }
                data.truncate(n as usize);
                Reply::Bulk(data)
            }
            n => return Err(bad_data(format!("protocol error: bulk length {n}"))),
        },
        b'*' => match int()? {
            -1 => Reply::Nil,
            n if (0..=(1 << 24)).contains(&n) => {
                let mut items = Vec::with_capacity((n as usize).min(1024));
                for _ in 0..n {
                    items.push(parse_reply_at(r, depth + 1)?);
                }
                Reply::Array(items)
            }
            n => return Err(bad_data(format!("protocol error: array length {n}"))),
        },
        other => {
            return Err(bad_data(format!(
                "protocol error: unexpected reply type {:?}",
                other as char
            )))
        }
    })
}
