//! The storage guard: how full a repository's storage is, against `[server.storage]`'s
//! thresholds (the seeds' 70 / 85 / 95 percent by default).
//!
//! For a local repository the filesystem holding it is measured (statvfs: capacity, and what
//! is available to an unprivileged writer). Above `low` the level is `low`, above `high` it
//! is `high` (retention runs before the backup, to make room), above `critical` backups into
//! the repository are PAUSED until space returns. S3 repositories report no capacity (a
//! quota setting is still to come) and are never paused.

use std::path::Path;

use coffer_config::jobs::StorageConfig;
use coffer_repo::backend::Location;
use serde::Serialize;

/// How full a repository's storage is.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Usage {
    /// Bytes in the filesystem.
    pub capacity_bytes: u64,
    /// Bytes in use (capacity minus what an unprivileged writer may still use).
    pub used_bytes: u64,
    /// Bytes available.
    pub available_bytes: u64,
    /// used / capacity.
    pub ratio: f64,
    /// `ok`, `low`, `high` or `critical`.
    pub level: &'static str,
}

/// Measures the filesystem holding `dir`.
pub fn measure_dir(dir: &Path, t: &StorageConfig) -> Option<Usage> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we pass from a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    let capacity = s.f_blocks as u64 * frsize;
    let available = s.f_bavail as u64 * frsize;
    let used = capacity.saturating_sub(available);
    let ratio = if capacity == 0 {
        0.0
    } else {
        used as f64 / capacity as f64
    };
    Some(Usage {
        capacity_bytes: capacity,
        used_bytes: used,
        available_bytes: available,
        ratio,
        level: level(ratio * 100.0, t),
    })
}

fn level(percent: f64, t: &StorageConfig) -> &'static str {
    if percent >= t.critical {
        "critical"
    } else if percent >= t.high {
        "high"
    } else if percent >= t.low {
        "low"
    } else {
        "ok"
    }
}

/// Measures a repository's storage, when it has a measurable one.
pub fn measure(url: &str, t: &StorageConfig) -> Option<Usage> {
    match Location::parse(url).ok()? {
        Location::Local(dir) => measure_dir(&dir, t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        let t = StorageConfig::default();
        assert_eq!(level(10.0, &t), "ok");
        assert_eq!(level(70.0, &t), "low");
        assert_eq!(level(90.0, &t), "high");
        assert_eq!(level(95.0, &t), "critical");
        let u = measure_dir(Path::new("/"), &t).unwrap();
        assert!(u.capacity_bytes > 0 && u.used_bytes <= u.capacity_bytes);
    }
}
