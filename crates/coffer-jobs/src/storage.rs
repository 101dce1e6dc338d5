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
    /// Bytes in use (allocated blocks; for a quota, the repository's files).
    pub used_bytes: u64,
    /// Bytes an unprivileged writer may still use.
    pub available_bytes: u64,
    /// used / (used + available), as `df` computes its Use%.
    pub ratio: f64,
    /// `ok`, `low`, `high` or `critical`.
    pub level: &'static str,
}

impl Usage {
    /// `72.5% full, 12.3 GiB free`: the ratio with what is left beside it.
    pub fn describe(&self) -> String {
        format!(
            "{:.1}% full, {} free",
            self.ratio * 100.0,
            coffer_config::units::bytes(self.available_bytes)
        )
    }
}

/// Measures the filesystem holding `dir` as `df` does: used is what is allocated (blocks
/// minus free ones), available what an unprivileged writer may still use, and the ratio
/// used / (used + available). Blocks reserved for root count as neither, so a filesystem with
/// many reserved blocks is not reported fuller than `df` says.
pub fn measure_dir(dir: &Path, t: &StorageConfig) -> Result<Usage, String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{}: the path holds a NUL byte", dir.display()))?;
    // SAFETY: statvfs fills the struct we pass from a NUL-terminated path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(format!(
            "measuring the filesystem of {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    let frsize = s.f_frsize as u64;
    let capacity = s.f_blocks as u64 * frsize;
    let available = s.f_bavail as u64 * frsize;
    let used = (s.f_blocks as u64).saturating_sub(s.f_bfree as u64) * frsize;
    let ratio = if used + available == 0 {
        0.0
    } else {
        used as f64 / (used + available) as f64
    };
    Ok(Usage {
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

/// Measures a repository's storage: `None` when it has no measurable one (S3 without a
/// quota), an error when it has one that could not be measured (a quota whose files cannot
/// be listed, a local directory that is not there).
pub fn measure(repo: &RepositoryConfig, t: &StorageConfig) -> Result<Option<Usage>, String> {
    let location = Location::parse(&repo.url).map_err(|e| e.to_string())?;
    if let Some(quota) = repo
        .quota
        .as_deref()
        .and_then(|q| coffer_config::units::parse_size(q).ok())
    {
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
        Location::Local(dir) => Some(measure_dir(&dir, t)?),
        _ => None,
    })
}

/// The total size of a repository's files (packs, index, snapshots, keys, config).
pub fn repository_bytes(location: &Location) -> Result<u64, String> {
    let backend = Backend::open(location).map_err(|e| e.to_string())?;
    // A directory that is not there (an unmounted NAS) lists as empty: that is no
    // repository, not an empty one.
    let mut total = match backend
        .stat(FileType::Config, "")
        .map_err(|e| e.to_string())?
    {
        Some(n) => n,
        None => {
            return Err(format!(
                "no repository at {location}: its config file is missing"
            ))
        }
    };
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
        assert!(measure_dir(Path::new("/no/such/dir"), &t).is_err());
    }

    #[test]
    fn agrees_with_df() {
        let out = std::process::Command::new("df")
            .args(["--output=pcent", "/"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let df: f64 = text
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        let u = measure_dir(Path::new("/"), &StorageConfig::default()).unwrap();
        // df rounds Use% up; the disk may move a little between the two reads.
        let ours = u.ratio * 100.0;
        assert!(
            (ours.ceil() - df).abs() <= 1.0,
            "coffer {ours:.2}% vs df {df}%"
        );
    }
}
