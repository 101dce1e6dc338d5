//! restic-compatible lock files under `locks/`. A backup holds a non-exclusive lock so that a
//! `restic prune` (which takes an exclusive one) never deletes packs it is writing; the lock is
//! refreshed every 5 minutes, and a lock older than 30 minutes, or held by a dead process on
//! this host, is stale and ignored (restic's rules).
//!
//! restic's protocol writes the lock, waits 200 ms and looks again for a competitor that
//! raced it. An exclusive lock (prune) waits idle: it is about to delete. A shared one can
//! take the second look on a thread while its holder works ([`LockGuard::acquire_deferred`]):
//! a shared holder deletes nothing, and what it writes before it commits (packs, index files
//! of those packs) is harmless if the second look finds a competitor, exactly as after an
//! interrupted backup. It calls [`LockGuard::confirm`] before it commits a snapshot. A
//! competitor seen at the second look is given the time to withdraw (it follows the same
//! protocol and sees ours), so a racing prune costs the backup a moment, not its work. On a
//! local filesystem, where a written lock is listed at once, the wait is zero.

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

/// restic's wait between writing a lock and looking again for a competitor.
const RACE_WINDOW: Duration = Duration::from_millis(200);

/// The wait before the second look. restic's window is there for storage that lists a new
/// file late. Where a write is visible to every listing at once, two writers that each
/// write their lock and then list cannot both miss the other (whoever lists second sees the
/// first one's lock), so no wait is needed: an unchanged re-backup spent 200 of its 330 ms
/// waiting here.
fn race_window(repo: &Repository) -> Duration {
    #[cfg(test)]
    if tests::SLOW_LISTING
        .lock()
        .contains(&repo.backend().location().to_string())
    {
        return RACE_WINDOW;
    }
    if repo.backend().lists_writes_at_once() {
        Duration::ZERO
    } else {
        RACE_WINDOW
    }
}

/// How long a racing competitor's lock may take to withdraw after our second look: its own
/// race window plus a listing.
const WITHDRAW_WITHIN: Duration = Duration::from_millis(1000);

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
    /// A lock file for this process, written now.
    pub fn new(exclusive: bool) -> LockFile {
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
    /// The second look for a competitor, when it runs on a thread (a deferred shared lock).
    second_look: Mutex<Option<std::thread::JoinHandle<Result<()>>>>,
}

impl LockGuard {
    /// Takes a lock, failing if a conflicting live lock exists.
    pub fn acquire(repo: &Arc<Repository>, exclusive: bool) -> Result<LockGuard> {
        conflict(repo, exclusive, None)?;
        let id = repo.save_json(FileType::Lock, &LockFile::new(exclusive))?;
        // restic's protocol: write, wait, and look again for a competitor that raced us.
        std::thread::sleep(race_window(repo));
        if let Err(e) = conflict(repo, exclusive, Some(id)) {
            let _ = repo.backend().remove(FileType::Lock, &id.to_hex());
            return Err(e);
        }
        LockGuard::hold(repo, exclusive, id, None)
    }

    /// Takes a shared lock whose second look for a racing competitor runs on a thread after
    /// the race window, while the caller works; [`LockGuard::confirm`] waits for it. The
    /// caller may read and write packs meanwhile, but must confirm before it commits a
    /// snapshot or reports success.
    pub fn acquire_deferred(repo: &Arc<Repository>) -> Result<LockGuard> {
        conflict(repo, false, None)?;
        let id = repo.save_json(FileType::Lock, &LockFile::new(false))?;
        let r = Arc::clone(repo);
        let look = std::thread::Builder::new()
            .name("coffer-lock-check".into())
            .spawn(move || second_look(&r, id))
            .map_err(|e| RepoError::Invalid(format!("starting the lock check: {e}")))?;
        LockGuard::hold(repo, false, id, Some(look))
    }

    /// Waits for a deferred lock's second look (at most the race window) and fails if it
    /// found a competitor; then the caller must stop without committing. Instant for a lock
    /// taken by [`LockGuard::acquire`] or already confirmed.
    pub fn confirm(&self) -> Result<()> {
        let Some(look) = self.second_look.lock().take() else {
            return Ok(());
        };
        look.join()
            .unwrap_or_else(|_| Err(RepoError::Invalid("the lock check panicked".into())))
    }

    /// Starts refreshing lock `id`.
    fn hold(
        repo: &Arc<Repository>,
        exclusive: bool,
        id: Id,
        second_look: Option<std::thread::JoinHandle<Result<()>>>,
    ) -> Result<LockGuard> {
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
            second_look: Mutex::new(second_look),
        })
    }

    /// Takes a lock, waiting up to `wait` for conflicting locks to go away (restic's
    /// `--retry-lock`). Polls with a growing interval capped at 10 s.
    pub fn acquire_wait(
        repo: &Arc<Repository>,
        exclusive: bool,
        wait: Duration,
    ) -> Result<LockGuard> {
        retry_locked(wait, || LockGuard::acquire(repo, exclusive))
    }

    /// [`LockGuard::acquire_deferred`], waiting up to `wait` for exclusive locks to go away.
    pub fn acquire_wait_deferred(repo: &Arc<Repository>, wait: Duration) -> Result<LockGuard> {
        retry_locked(wait, || LockGuard::acquire_deferred(repo))
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

/// A deferred shared lock's second look, a race window after it was written. A prune that
/// wrote its exclusive lock in the same moment follows the same protocol: its own second
/// look finds ours and it withdraws. So a conflicting lock seen now is given the time to
/// withdraw; one that stays did not see ours (a slow listing) and goes ahead, and then the
/// holder of the shared lock must stop.
fn second_look(repo: &Repository, ours: Id) -> Result<()> {
    std::thread::sleep(race_window(repo));
    let deadline = std::time::Instant::now() + WITHDRAW_WITHIN;
    loop {
        match conflict(repo, false, Some(ours)) {
            Err(RepoError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// Calls `take` until it succeeds or fails otherwise than with a held lock, or `wait` runs
/// out. Polls with a growing interval capped at 10 s.
fn retry_locked(wait: Duration, take: impl Fn() -> Result<LockGuard>) -> Result<LockGuard> {
    let deadline = std::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(250);
    loop {
        match take() {
            Err(RepoError::Locked { .. }) if std::time::Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(10));
            }
            r => return r,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(look) = self.second_look.get_mut().take() {
            let _ = look.join();
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::backend::Location;
    use crate::repository::InitOptions;

    /// Repositories (by location) that get the race window as if their storage listed new
    /// files late, which a local disk does not: the races below only exist there.
    pub(super) static SLOW_LISTING: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn repo(dir: &std::path::Path) -> Arc<Repository> {
        let opts = InitOptions {
            kdf_n: 1 << 10,
            ..Default::default()
        };
        let loc = Location::parse(dir.to_str().unwrap()).unwrap();
        Arc::new(Repository::init(&loc, "pw", &opts).unwrap())
    }

    fn slow_listing_repo(dir: &std::path::Path) -> Arc<Repository> {
        let r = repo(dir);
        SLOW_LISTING.lock().push(r.backend().location().to_string());
        r
    }

    #[test]
    fn a_local_disk_needs_no_race_window() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(&dir.path().join("repo"));
        // The tests' temporary directory is on ext4 or tmpfs here and in CI.
        assert_eq!(race_window(&repo), Duration::ZERO);
        let started = std::time::Instant::now();
        let lock = LockGuard::acquire(&repo, true).unwrap();
        assert!(started.elapsed() < RACE_WINDOW);
        drop(lock);
        let s3 = crate::backend::Location::parse("s3:http://127.0.0.1:1/bucket/repo").unwrap();
        let backend = crate::backend::Backend::open(&s3).unwrap();
        assert!(!backend.lists_writes_at_once());
    }

    #[test]
    fn deferred_lock_confirms_and_excludes_prune() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(&dir.path().join("repo"));
        let started = std::time::Instant::now();
        let lock = LockGuard::acquire_deferred(&repo).unwrap();
        // The caller works during the race window instead of waiting it out.
        assert!(started.elapsed() < RACE_WINDOW);
        assert!(matches!(
            LockGuard::acquire(&repo, true),
            Err(RepoError::Locked { .. })
        ));
        lock.confirm().unwrap();
        lock.confirm().unwrap();
        drop(lock);
        assert!(list_locks(&repo).unwrap().is_empty());
    }

    /// A deferred shared lock, and the exclusive lock of a prune that wrote it at the same
    /// moment.
    fn raced(repo: &Arc<Repository>) -> (LockGuard, Id) {
        let lock = LockGuard::acquire_deferred(repo).unwrap();
        let racer = repo
            .save_json(FileType::Lock, &LockFile::new(true))
            .unwrap();
        (lock, racer)
    }

    #[test]
    fn deferred_lock_outlasts_a_racing_prune_that_withdraws() {
        let dir = tempfile::tempdir().unwrap();
        let repo = slow_listing_repo(&dir.path().join("repo"));
        // The prune sees ours at its own second look and withdraws.
        let (lock, racer) = raced(&repo);
        std::thread::sleep(RACE_WINDOW + Duration::from_millis(100));
        repo.backend()
            .remove(FileType::Lock, &racer.to_hex())
            .unwrap();
        lock.confirm().unwrap();
    }

    #[test]
    fn deferred_lock_fails_confirmation_when_an_exclusive_lock_raced_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = slow_listing_repo(&dir.path().join("repo"));
        // The prune does not see ours (a slow listing) and goes ahead.
        let (lock, racer) = raced(&repo);
        assert!(matches!(lock.confirm(), Err(RepoError::Locked { .. })));
        drop(lock);
        let left: Vec<Id> = list_locks(&repo)
            .unwrap()
            .into_iter()
            .map(|l| l.0)
            .collect();
        assert_eq!(left, vec![racer]);
    }
}
