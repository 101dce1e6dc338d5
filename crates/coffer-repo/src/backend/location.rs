//! Repository locations in restic's syntax: a path (`/srv/backup`, `local:/srv/backup`) or
//! `s3:http://host:9000/bucket/prefix` (`s3:https://...`, or `s3:host/bucket` for https).

use std::fmt;
use std::path::PathBuf;

/// Where a repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3 {
        /// `http://host:port` or `https://host`.
        endpoint: String,
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
    },
}

/// An unusable repository location.
#[derive(Debug, thiserror::Error)]
#[error("invalid repository location {location:?}: {reason}")]
pub struct LocationError {
    /// What was given.
    pub location: String,
    /// What is wrong.
    pub reason: String,
}

impl Location {
    /// Parses a restic-style location.
    pub fn parse(s: &str) -> Result<Location, LocationError> {
        let bad = |reason: &str| LocationError {
            location: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(rest) = s.strip_prefix("s3:") {
            let (scheme, rest) = if let Some(r) = rest.strip_prefix("http://") {
                ("http", r)
            } else if let Some(r) = rest.strip_prefix("https://") {
                ("https", r)
            } else if let Some((other, _)) = rest.split_once("://") {
                return Err(bad(&format!(
                    "{other}:// is not an S3 endpoint scheme: use s3:http://HOST:PORT/BUCKET or s3:https://HOST/BUCKET"
                )));
            } else {
                ("https", rest)
            };
            let mut parts = rest.splitn(3, '/');
            let host = parts.next().unwrap_or_default();
            let bucket = parts.next().unwrap_or_default();
            let prefix = parts.next().unwrap_or_default().trim_matches('/');
            if host.is_empty() {
                return Err(bad(
                    "missing host, expected s3:http://HOST:PORT/BUCKET/PREFIX",
                ));
            }
            if let Some(why) = host_problem(host) {
                return Err(bad(&format!(
                    "host {host:?} {why}, expected s3:http://HOST:PORT/BUCKET/PREFIX"
                )));
            }
            if bucket.is_empty() {
                return Err(bad(
                    "missing bucket, expected s3:http://HOST:PORT/BUCKET/PREFIX",
                ));
            }
            return Ok(Location::S3 {
                endpoint: format!("{scheme}://{host}"),
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        for other in [
            "sftp:", "rest:", "b2:", "azure:", "gs:", "swift:", "rclone:",
        ] {
            if s.starts_with(other) {
                return Err(bad(&format!(
                    "the {} backend is not supported; use a local path or s3:",
                    other.trim_end_matches(':')
                )));
            }
        }
        let path = s.strip_prefix("local:").unwrap_or(s);
        let p = PathBuf::from(path);
        let abs = if p.is_absolute() {
            p
        } else {
            std::env::current_dir()
                .map_err(|e| bad(&format!("cannot resolve relative path: {e}")))?
                .join(p)
        };
        Ok(Location::Local(abs))
    }

    /// True for a local directory.
    pub fn is_local(&self) -> bool {
        matches!(self, Location::Local(_))
    }
}

/// What is wrong with the HOST[:PORT] of an S3 location, if anything.
fn host_problem(host: &str) -> Option<String> {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Some("has an IPv6 address without its closing ']'".into());
        };
        if addr.is_empty()
            || !addr
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Some(format!("has an invalid IPv6 address [{addr}]"));
        }
        return match after {
            "" => None,
            a => port_problem(a.strip_prefix(':').unwrap_or(a)),
        };
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if name.is_empty() {
        return Some("has no name".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Some(format!("contains {c:?}"));
    }
    port.and_then(port_problem)
}

fn port_problem(p: &str) -> Option<String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => None,
        _ => Some(format!("has an invalid port {p:?} (1-65535)")),
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                if prefix.is_empty() {
                    write!(f, "s3:{endpoint}/{bucket}")
                } else {
                    write!(f, "s3:{endpoint}/{bucket}/{prefix}")
                }
            }
        }
    }
}

/// Region from `AWS_DEFAULT_REGION`/`AWS_REGION`, or `us-east-1`, which MinIO, SeaweedFS and
/// Garage accept by default.
pub fn s3_region() -> String {
    std::env::var("AWS_DEFAULT_REGION")
        .or_else(|_| std::env::var("AWS_REGION"))
        .unwrap_or_else(|_| "us-east-1".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(
            Location::parse("s3:http://127.0.0.1:8333/bucket/a/b").unwrap(),
            Location::S3 {
                endpoint: "http://127.0.0.1:8333".into(),
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("s3:s3.amazonaws.com/b")
                .unwrap()
                .to_string(),
            "s3:https://s3.amazonaws.com/b"
        );
        assert!(Location::parse("s3:http://host").is_err());
        let why = |s: &str| Location::parse(s).unwrap_err().reason;
        assert!(why("s3:ftp://host/bucket").contains("ftp:// is not an S3 endpoint scheme"));
        assert!(why("s3:http://[::1").contains("without its closing ']'"));
        assert!(why("s3:http://h:99999/b").contains("invalid port"));
        assert!(why("s3:http://h o/b").contains("contains ' '"));
        assert!(Location::parse("s3:http://[::1]:8333/b").is_ok());
        assert!(Location::parse("s3:https://[fe80::1]/b").is_ok());
        assert!(Location::parse("sftp:host:/x").is_err());
        assert_eq!(
            Location::parse("local:/x").unwrap(),
            Location::Local("/x".into())
        );
        assert!(Location::parse("rel").unwrap().is_local());
    }
}
