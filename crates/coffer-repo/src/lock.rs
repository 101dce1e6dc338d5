//! restic-compatible lock files under `locks/`. A backup holds a non-exclusive lock so that a
//! `restic prune` (which takes an exclusive one) never deletes packs it is writing; the lock is
//! refreshed every 5 minutes, and a lock older than 30 minutes, or held by a dead process on
//! this host, is stale and ignored (restic's rules).

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local};
use serde::{Deserialize, Serialize};

use crate::backend::FileType;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::repository::Repository;
use crate::sysinfo;

/// A lock older than this is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

/// A lock file's contents.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LockFile {
    /// When it was written (refreshes write a new file).
    pub time: DateTime<FixedOffset>,
    /// Exclusive (prune, check) or shared (backup).
    pub exclusive: bool,
    /// Holder's host.
    pub hostname: String,
    /// Holder's user.
    pub username: String,
    /// Holder's pid.
    pub pid: i64,
    /// Holder's uid.
    #[serde(default)]
    pub uid: u32,
    /// Holder's gid.
    #[serde(default)]
    pub gid: u32,
}

impl LockFile {
    fn new(exclusive: bool) -> LockFile {
        let (uid, gid) = sysinfo::uid_gid();
        LockFile {
            time: Local::now().fixed_offset(),
            exclusive,
            hostname: sysinfo::hostname(),
            username: sysinfo::username(),
            pid: std::process::id() as i64,
            uid,
            gid,
        }
    }

    /// Stale by age, or by a dead pid on this host.
    pub fn is_stale(&self) -> bool {
        let age = Local::now().fixed_offset().signed_duration_since(self.time);
        if age.to_std().map(|a| a > STALE_AFTER).unwrap_or(false) {
            return true;
        }
        self.hostname == sysinfo::hostname() && !sysinfo::process_alive(self.pid)
    }

    fn describe(&self) -> String {
        format!(
            "PID {} on {} by {} since {}",
            self.pid,
            self.hostname,
            self.username,
            self.time.format("%Y-%m-%d %H:%M:%S")
        )
    }
}

/// Lists the locks of a repository (unreadable ones are skipped).
pub fn list_locks(repo: &Repository) -> Result<Vec<(Id, LockFile)>> {
    let mut out = Vec::new();
    for id in repo.backend().list_ids(FileType::Lock)? {
        match repo.load_json::<LockFile>(FileType::Lock, &id) {
            Ok(l) => out.push((id, l)),
            Err(e) => tracing::debug!(lock = %id, error = %e, "ignoring unreadable lock"),
        }
    }
    Ok(out)
}

/// Removes stale locks (or all with `all`); returns how many.
pub fn remove_locks(repo: &Repository, all: bool) -> Result<usize> {
    let mut n = 0;
    for (id, l) in list_locks(repo)? {
        if all || l.is_stale() {
            repo.backend().remove(FileType::Lock, &id.to_hex())?;
            n += 1;
        }
    }
    Ok(n)
}

fn conflict(repo: &Repository, exclusive: bool, ours: Option<Id>) -> Result<()> {
    for (id, l) in list_locks(repo)? {
        if Some(id) == ours || l.is_stale() {
            continue;
        }
        if exclusive || l.exclusive {
            return Err(RepoError::Locked {
                location: repo.backend().location().to_string(),
                kind: if l.exclusive { " exclusively" } else { "" },
                holder: l.describe(),
            });
        }
    }
    Ok(())
}

/// A held lock; released (file deleted) on drop.
pub struct LockGuard {
    repo: Arc<Repository>,
    current: Arc<Mutex<Id>>,
    exclusive: bool,
    stop: Option<std::sync::mpsc::Sender<()>>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl LockGuard {
    /// Takes a lock, failing if a conflicting live lock exists.
    pub fn acquire(repo: &Arc<Repository>, exclusive: bool) -> Result<LockGuard> {
        conflict(repo, exclusive, None)?;
        let id = repo.save_json(FileType::Lock, &LockFile::new(exclusive))?;
        // restic's protocol: write, wait, and look again for a competitor that raced us.
        std::thread::sleep(Duration::from_millis(200));
        if let Err(e) = conflict(repo, exclusive, Some(id)) {
            let _ = repo.backend().remove(FileType::Lock, &id.to_hex());
            return Err(e);
        }
        let current = Arc::new(Mutex::new(id));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let r = Arc::clone(repo);
        let cur = Arc::clone(&current);
        let refresher = std::thread::Builder::new()
            .name("coffer-lock".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(REFRESH_EVERY)
                {
                    match r.save_json(FileType::Lock, &LockFile::new(exclusive)) {
                        Ok(new) => {
                            let old = std::mem::replace(&mut *cur.lock(), new);
                            let _ = r.backend().remove(FileType::Lock, &old.to_hex());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "refreshing the repository lock failed")
                        }
                    }
                }
            })
            .map_err(|e| RepoError::Invalid(format!("starting lock refresher: {e}")))?;
        Ok(LockGuard {
            repo: Arc::clone(repo),
            current,
            exclusive,
            stop: Some(tx),
            refresher: Some(refresher),
        })
    }

    /// Takes a lock, waiting up to `wait` for conflicting locks to go away (restic's
    /// `--retry-lock`). Polls with a growing interval capped at 10 s.
    pub fn acquire_wait(
        repo: &Arc<Repository>,
        exclusive: bool,
        wait: Duration,
    ) -> Result<LockGuard> {
        let deadline = std::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(250);
        loop {
            match LockGuard::acquire(repo, exclusive) {
                Err(RepoError::Locked { .. }) if std::time::Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                r => return r,
            }
        }
    }

    /// Fails if the lock file is gone or was last written so long ago that other clients
    /// may consider it stale. Destructive steps (prune's deletions) call this first, so a
    /// process that lost its lock (suspended machine, unreachable storage) stops instead
    /// of deleting data that someone else now relies on.
    pub fn verify(&self) -> Result<()> {
        let id = self.id();
        let l: LockFile = self.repo.load_json(FileType::Lock, &id).map_err(|e| {
            RepoError::Invalid(format!("our lock file {id} is no longer readable: {e}"))
        })?;
        let age = Local::now().fixed_offset().signed_duration_since(l.time);
        if age
            .to_std()
            .map(|a| a > STALE_AFTER - REFRESH_EVERY)
            .unwrap_or(false)
        {
            return Err(RepoError::Invalid(format!(
                "our lock file {id} was last refreshed {} minutes ago; stopping before anything is deleted",
                age.num_minutes()
            )));
        }
        Ok(())
    }

    /// Whether this is the exclusive lock (deleting operations need it).
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }

    /// Id of the lock file currently held.
    pub fn id(&self) -> Id {
        *self.current.lock()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let id = self.id();
        if let Err(e) = self.repo.backend().remove(FileType::Lock, &id.to_hex()) {
            tracing::warn!(lock = %id, error = %e, "could not remove lock file");
        }
    }
}
