//! Scratch instances that outlive a panic or a signal unless someone stops them: PostgreSQL
//! clusters started with `pg_ctl` (not our children), redis-servers, a drill's work directory.
//! Each registers how to stop it for as long as it runs; a signal handler calls [`stop_all`]
//! before the process exits, so that a drill interrupted by Ctrl-C or SIGTERM leaves no
//! process, port or directory behind. Normal endings stop each instance themselves and drop
//! their [`Registration`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

type Stop = Arc<dyn Fn() + Send + Sync>;

static NEXT: AtomicU64 = AtomicU64::new(1);
static GLOBAL: Registry = Registry::new();

/// A set of running instances and how to stop each.
struct Registry(Mutex<Vec<(u64, String, Stop)>>);

impl Registry {
    const fn new() -> Registry {
        Registry(Mutex::new(Vec::new()))
    }

    fn register(&'static self, what: String, stop: Stop) -> Registration {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        self.0.lock().push((id, what, stop));
        Registration(self, id)
    }

    fn stop_all(&self) -> Vec<String> {
        // Taken out first: a stop that drops a Registration must not wait for this lock.
        let all: Vec<(u64, String, Stop)> = std::mem::take(&mut *self.0.lock());
        all.into_iter()
            .rev()
            .map(|(_, what, stop)| {
                stop();
                what
            })
            .collect()
    }
}

/// An instance's place in the registry; dropping it says the instance was stopped.
#[must_use = "dropping the registration at once forgets the instance"]
pub struct Registration(&'static Registry, u64);

impl Drop for Registration {
    fn drop(&mut self) {
        self.0 .0.lock().retain(|(id, _, _)| *id != self.1);
    }
}

/// Registers `stop`, which must stop `what` (and may be called while the owner is stopping
/// it too: make it idempotent).
pub fn register(what: impl Into<String>, stop: impl Fn() + Send + Sync + 'static) -> Registration {
    GLOBAL.register(what.into(), Arc::new(stop))
}

/// Registers a directory to delete.
pub fn register_dir(dir: &std::path::Path) -> Registration {
    let d = dir.to_path_buf();
    register(format!("directory {}", dir.display()), move || {
        let _ = std::fs::remove_dir_all(&d);
    })
}

/// Registers a child process to kill. Drop the registration as soon as the child has been
/// waited for: its pid may be reused after that.
pub fn register_pid(what: impl Into<String>, pid: u32) -> Registration {
    let pid = pid as libc::pid_t;
    register(what, move || {
        // SAFETY: kill has no memory effects; the pid is a child not yet waited for.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    })
}

/// The uid and gid a scratch server runs as: `None` when coffer is not root (it runs as
/// coffer's user), else those of `user` (servers refuse to run as root), or an error saying
/// that `user` does not exist.
pub fn run_as(user: &str) -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new(user).map_err(|e| e.to_string())?;
    // SAFETY: getpwnam with a valid C string; the entry is read at once, before any other
    // call could reuse its static buffer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(format!(
            "coffer runs as root and there is no {user} user to run a scratch server as"
        ));
    }
    // SAFETY: pw is non-null and points at a passwd entry.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

/// Hands `path` and everything below it to `uid`:`gid` (symbolic links themselves, not
/// what they point at).
pub fn chown_tree(path: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// What is registered now, oldest first.
pub fn live() -> Vec<String> {
    GLOBAL.0.lock().iter().map(|(_, w, _)| w.clone()).collect()
}

/// Stops everything registered, newest first (a cluster before the directory it lives in),
/// and returns what was stopped.
pub fn stop_all() -> Vec<String> {
    GLOBAL.stop_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn stops_what_is_registered_and_forgets_what_was_dropped() {
        // A registry of its own: the global one holds other tests' clusters.
        static R: Registry = Registry::new();
        static STOPPED: AtomicUsize = AtomicUsize::new(0);
        let dropped = R.register(
            "a".into(),
            Arc::new(|| {
                STOPPED.fetch_add(100, Ordering::SeqCst);
            }),
        );
        drop(dropped);
        let dir = tempfile::tempdir().unwrap().keep();
        let d = dir.clone();
        let _d = R.register(
            "dir".into(),
            Arc::new(move || {
                let _ = std::fs::remove_dir_all(&d);
            }),
        );
        let _k = R.register(
            "b".into(),
            Arc::new(|| {
                STOPPED.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert_eq!(R.stop_all(), vec!["b".to_string(), "dir".to_string()]);
        assert_eq!(STOPPED.load(Ordering::SeqCst), 1);
        assert!(!dir.exists());
        assert!(R.0.lock().is_empty());
    }
}
