use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::AuditError;

/// The 32-byte secret the chain's MACs are computed under. `Debug` does not print it.
#[derive(Clone)]
pub struct AuditKey([u8; 32]);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    /// A key from raw bytes (tests, or a key kept in some other store).
    pub fn from_bytes(bytes: [u8; 32]) -> AuditKey {
        AuditKey(bytes)
    }

    /// Reads the key file at `path`: 64 hex digits, optionally followed by a newline, mode
    /// without any group or other permission (e.g. 0600). If the file does not exist, creates
    /// it (and missing parent directories, mode 0700) with a fresh random key, atomically:
    /// concurrent callers all end up with the same key.
    pub fn load_or_create(path: &Path) -> Result<AuditKey, AuditError> {
        match File::open(path) {
            Ok(f) => Self::read(path, f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(AuditError::io(path, e)),
        }
    }

    fn read(path: &Path, mut f: File) -> Result<AuditKey, AuditError> {
        let key_err = |message: String| AuditError::Key {
            path: path.to_path_buf(),
            message,
        };
        let meta = f.metadata().map_err(|e| AuditError::io(path, e))?;
        if !meta.is_file() {
            return Err(key_err("not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_err(format!(
                "mode {mode:04o} gives access to group or others; the key must be readable by \
                 its owner only (chmod 600 {})",
                path.display()
            )));
        }
        let mut text = Vec::with_capacity(66);
        (&mut f)
            .take(1024)
            .read_to_end(&mut text)
            .map_err(|e| AuditError::io(path, e))?;
        let hex_part = text.strip_suffix(b"\n").unwrap_or(&text);
        let bad = || key_err("expected 64 hexadecimal digits and an optional newline".into());
        if hex_part.len() != 64 {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| bad())?;
        Ok(AuditKey(bytes))
    }

    fn create(path: &Path) -> Result<AuditKey, AuditError> {
        let dir = private_parent(path)?;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit.key".into());
        let tmp = dir.join(format!(
            ".{name}.tmp.{}.{:016x}",
            std::process::id(),
            rand::rngs::OsRng.next_u64()
        ));
        let write_tmp = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            // The mode given to open() is filtered by the umask; make sure it is 0600.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
            f.sync_all()
        };
        if let Err(e) = write_tmp() {
            let _ = fs::remove_file(&tmp);
            return Err(AuditError::io(&tmp, e));
        }
        // hard_link never replaces an existing file: if another process created the key in the
        // meantime, its key wins and is read back below. Where hard links are not supported,
        // fall back to rename (which could replace a key created in that very instant).
        let linked = match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(_) if !path.exists() => fs::rename(&tmp, path).map(|()| true),
            Err(e) => Err(e),
        };
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(true) => {
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
                tracing::info!(path = %path.display(), "created a new audit key");
                Ok(AuditKey(bytes))
            }
            Ok(false) => {
                let f = File::open(path).map_err(|e| AuditError::io(path, e))?;
                Self::read(path, f)
            }
            Err(e) => Err(AuditError::io(path, e)),
        }
    }

    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

/// Refuses a key file in the same directory as the log: whoever can edit the log could then
/// usually read the key and recompute the whole chain. Directories are compared after
/// resolving symbolic links of the parts that exist; parts that do not exist yet are compared
/// lexically (as absolute paths, `.` and `..` resolved).
pub fn check_key_location(log: &Path, key: &Path) -> Result<(), AuditError> {
    let log_dir = resolve_dir(parent_dir(log)).map_err(|e| AuditError::io(log, e))?;
    let key_dir = resolve_dir(parent_dir(key)).map_err(|e| AuditError::io(key, e))?;
    if log_dir == key_dir {
        return Err(AuditError::KeyLocation {
            log: log.to_path_buf(),
            key: key.to_path_buf(),
        });
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
/// Creates `path`'s directory (mode 0700, as the log and key are private) if missing, and
/// returns it.
pub(crate) fn private_parent(path: &Path) -> Result<&Path, AuditError> {
    let dir = parent_dir(path);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AuditError::io(dir, e))?;
    Ok(dir)
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `dir` made absolute, with symbolic links resolved in the part that exists and `.` and `..`
/// resolved lexically in the part that does not.
fn resolve_dir(dir: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(dir)?;
    let mut out = PathBuf::new();
    // `out` is canonical as long as it exists, so popping it for `..` is right.
    let mut exists = true;
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
                exists = exists || out.exists();
            }
            other => {
                out.push(other);
                if exists {
                    match out.canonicalize() {
                        Ok(p) => out = p,
                        Err(_) => exists = false,
                    }
                }
            }
        }
    }
    Ok(out)
}
