//! Host and user facts that restic records in keys, locks and snapshots.

use std::ffi::CStr;

/// The host name (`gethostname`), or "localhost".
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The filesystem type (`statfs`'s `f_type` magic number) of the filesystem holding `path`.
pub fn filesystem_type(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: all-zero is a valid statfs; c is NUL-terminated and outlives the call.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    // f_type's C type differs between architectures; the magic numbers fit in 32 bits.
    #[allow(clippy::unnecessary_cast)]
    (rc == 0).then_some(st.f_type as u64 & 0xFFFF_FFFF)
}

/// The name of the current user, or the numeric uid.
pub fn username() -> String {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    user_name(uid).unwrap_or_else(|| uid.to_string())
}

/// Current uid and gid.
pub fn uid_gid() -> (u32, u32) {
    // SAFETY: these calls cannot fail.
    unsafe { (libc::getuid(), libc::getgid()) }
}

// The reentrant passwd/group calls share one shape: a record, a scratch buffer, and a result
// pointer that is null when nothing was found.
fn lookup<R, T>(
    call: impl FnOnce(&mut R, &mut [u8], &mut *mut R) -> libc::c_int,
    get: impl FnOnce(&R) -> T,
) -> Option<T> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd and group are plain C structs for which all-zero is a valid value.
    let mut rec: R = unsafe { std::mem::zeroed() };
    let mut result: *mut R = std::ptr::null_mut();
    let rc = call(&mut rec, &mut buf, &mut result);
    (rc == 0 && !result.is_null()).then(|| get(&rec))
}

fn c_string(p: *const libc::c_char) -> String {
    // SAFETY: the pointer comes from a successful lookup and points into its buffer.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The login name for `uid` from the passwd database.
pub fn user_name(uid: u32) -> Option<String> {
    lookup(
        // SAFETY: all pointers are valid for the duration of the call.
        |pw, buf, res| unsafe {
            libc::getpwuid_r(uid, pw, buf.as_mut_ptr().cast(), buf.len(), res)
        },
        |pw: &libc::passwd| c_string(pw.pw_name),
    )
}

/// The group name for `gid` from the group database.
pub fn group_name(gid: u32) -> Option<String> {
    lookup(
        // SAFETY: as above.
        |gr, buf, res| unsafe {
            libc::getgrgid_r(gid, gr, buf.as_mut_ptr().cast(), buf.len(), res)
        },
        |gr: &libc::group| c_string(gr.gr_name),
    )
}

/// The uid for a user name.
pub fn user_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    lookup(
        // SAFETY: as above.
        |pw, buf, res| unsafe {
            libc::getpwnam_r(c.as_ptr(), pw, buf.as_mut_ptr().cast(), buf.len(), res)
        },
        |pw: &libc::passwd| pw.pw_uid,
    )
}

/// The gid for a group name.
pub fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    lookup(
        // SAFETY: as above.
        |gr, buf, res| unsafe {
            libc::getgrnam_r(c.as_ptr(), gr, buf.as_mut_ptr().cast(), buf.len(), res)
        },
        |gr: &libc::group| gr.gr_gid,
    )
}

/// Whether a process with this pid exists on this host.
pub fn process_alive(pid: i64) -> bool {
    if pid <= 0 || pid > i32::MAX as i64 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid as i32, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
