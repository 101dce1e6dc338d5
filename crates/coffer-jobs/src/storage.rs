//! The storage guard: how full a repository's storage is, against `[server.storage]`'s
//! thresholds (the seeds' 70 / 85 / 95 percent by default).
//!
//! For a local repository the filesystem holding it is measured (statvfs: capacity, and what
//! is available to an unprivileged writer). Above `low` the level is `low`, above `high` it
//! is `high` (retention runs before the backup, to make room), above `critical` backups into
//! the repository are PAUSED until space returns.
//!
//! A repository with a `quota` (the way to guard an S3 bucket, which has no capacity of its
//! own) is measured as the total size of its files against the quota; listing the files
//! needs no password. An S3 repository without a quota is not measured and never paused.

use std::path::Path;

use coffer_config::jobs::StorageConfig;
use coffer_config::RepositoryConfig;
use coffer_repo::backend::{Backend, FileType, Location};
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

/// Measures a repository's storage: `None` when it has no measurable one, an error when it
/// has (a quota) but could not be measured.
pub fn measure(repo: &RepositoryConfig, t: &StorageConfig) -> Result<Option<Usage>, String> {
    let location = Location::parse(&repo.url).map_err(|e| e.to_string())?;
    if let Some(quota) = repo.quota.as_deref().and_then(coffer_config::parse_size) {
        let used = repository_bytes(&location).map_err(|e| {
            format!(
                "measuring repository {:?} against its quota: {e}",
                repo.name
            )
        })?;
        let ratio = used as f64 / quota as f64;
        return Ok(Some(Usage {
            capacity_bytes: quota,
            used_bytes: used,
            available_bytes: quota.saturating_sub(used),
            ratio,
            level: level(ratio * 100.0, t),
        }));
    }
    Ok(match location {
        Location::Local(dir) => measure_dir(&dir, t),
        _ => None,
    })
}

/// The total size of a repository's files (packs, index, snapshots, keys, config).
pub fn repository_bytes(location: &Location) -> Result<u64, String> {
    let backend = Backend::open(location).map_err(|e| e.to_string())?;
    let mut total = 0;
    for t in [
        FileType::Pack,
        FileType::Index,
        FileType::Snapshot,
        FileType::Key,
    ] {
        total += backend
            .list(t)
            .map_err(|e| e.to_string())?
            .iter()
            .map(|f| f.size)
            .sum::<u64>();
    }
    Ok(total)
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
