//! File metadata in both directions: building a tree [`Node`] from `lstat`, and applying a
//! node's owner, mode and times to a restored path.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use coffer_repo::sysinfo;
use coffer_repo::tree::{gomode, local_time, Node, NodeType};

/// Caches uid/gid to name lookups, which are slow with NSS.
#[derive(Default)]
pub struct Names {
    users: Mutex<HashMap<u32, String>>,
    groups: Mutex<HashMap<u32, String>>,
}

impl Names {
    fn user(&self, uid: u32) -> String {
        let mut m = self.users.lock();
        m.entry(uid)
            .or_insert_with(|| sysinfo::user_name(uid).unwrap_or_default())
            .clone()
    }
    fn group(&self, gid: u32) -> String {
        let mut m = self.groups.lock();
        m.entry(gid)
            .or_insert_with(|| sysinfo::group_name(gid).unwrap_or_default())
            .clone()
    }
}

/// The node type for a `st_mode`.
pub fn node_type(st_mode: u32) -> NodeType {
    match st_mode & libc::S_IFMT {
        libc::S_IFREG => NodeType::File,
        libc::S_IFDIR => NodeType::Dir,
        libc::S_IFLNK => NodeType::Symlink,
        libc::S_IFBLK => NodeType::Dev,
        libc::S_IFCHR => NodeType::CharDev,
        libc::S_IFIFO => NodeType::Fifo,
        libc::S_IFSOCK => NodeType::Socket,
        _ => NodeType::Other("irregular".into()),
    }
}

/// Builds a node from `lstat` results (symlink targets are read here).
pub fn node_from_metadata(
    name: &[u8],
    path: &Path,
    md: &std::fs::Metadata,
    names: &Names,
) -> io::Result<Node> {
    let kind = node_type(md.mode());
    let mut n = Node::new(name.to_vec(), kind.clone());
    n.mode = gomode::from_unix(md.mode());
    n.mtime = local_time(md.mtime(), md.mtime_nsec() as u32);
    n.atime = local_time(md.atime(), md.atime_nsec() as u32);
    n.ctime = local_time(md.ctime(), md.ctime_nsec() as u32);
    n.uid = md.uid();
    n.gid = md.gid();
    n.user = names.user(md.uid());
    n.group = names.group(md.gid());
    n.inode = md.ino();
    n.device_id = md.dev();
    n.links = md.nlink();
    match kind {
        NodeType::File => n.size = md.size(),
        NodeType::Symlink => {
            n.link_target = std::fs::read_link(path)?.as_os_str().as_bytes().to_vec();
        }
        NodeType::Dev | NodeType::CharDev => n.device = md.rdev(),
        _ => {}
    }
    Ok(n)
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn timespec(t: &chrono::DateTime<chrono::FixedOffset>) -> libc::timespec {
    libc::timespec {
        tv_sec: t.timestamp() as libc::time_t,
        tv_nsec: t.timestamp_subsec_nanos() as libc::c_long,
    }
}

/// Whether this process may set arbitrary owners.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Applies owner (when root), permissions and times of `node` to `path`.
pub fn apply(path: &Path, node: &Node, as_root: bool) -> io::Result<()> {
    let c = cpath(path)?;
    if as_root {
        // Prefer names (portable across hosts), fall back to numeric ids.
        let uid = sysinfo::user_id(&node.user).unwrap_or(node.uid);
        let gid = sysinfo::group_id(&node.group).unwrap_or(node.gid);
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if node.kind != NodeType::Symlink {
        // SAFETY: as above. chmod after chown: chown clears setuid bits.
        if unsafe { libc::chmod(c.as_ptr(), gomode::to_unix_perm(node.mode) as libc::mode_t) } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    let times = [timespec(&node.atime), timespec(&node.mtime)];
    // SAFETY: c and times are valid for the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates a device node or FIFO.
pub fn mknod(path: &Path, node: &Node) -> io::Result<()> {
    let c = cpath(path)?;
    let kind = match node.kind {
        NodeType::Dev => libc::S_IFBLK,
        NodeType::CharDev => libc::S_IFCHR,
        NodeType::Fifo => libc::S_IFIFO,
        NodeType::Socket => libc::S_IFSOCK,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a special file",
            ))
        }
    };
    let mode = kind | (gomode::to_unix_perm(node.mode) & 0o777);
    // SAFETY: valid path; mknod reports errors through errno.
    if unsafe { libc::mknod(c.as_ptr(), mode as libc::mode_t, node.device as libc::dev_t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A path component from raw name bytes.
pub fn os_name(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}
