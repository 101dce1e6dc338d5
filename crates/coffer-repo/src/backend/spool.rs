//! Packs written to their file as they fill, for local repositories: a backup then holds no
//! pack in memory, only the blob being added (restic does the same with temporary files).
//! A [`Spool`] lives in the repository's temporary directory, so that [`Backend::commit`]
//! is a rename on the same filesystem; until then it is removed when dropped, so a failed or
//! abandoned pack (a full disk, an error elsewhere) leaves nothing behind.

use std::io::Write;

use super::{io_error, Backend, BackendError, FileType, Location, LOCAL_TMP_DIR};
use crate::id::{Id, IdHasher};

/// A pack file being written in a local repository's temporary directory.
pub struct Spool {
    file: tempfile::NamedTempFile,
    len: u64,
    location: String,
}

impl Spool {
    /// Appends `data`.
    pub fn append(&mut self, data: &[u8]) -> Result<(), BackendError> {
        self.file
            .as_file_mut()
            .write_all(data)
            .map_err(|e| io_error(&self.location, "write", &self.name(), e))?;
        self.len += data.len() as u64;
        Ok(())
    }

    // The temporary file's path inside the repository, for messages.
    fn name(&self) -> String {
        let f = self.file.path().file_name().unwrap_or_default();
        format!("{LOCAL_TMP_DIR}/{}", f.to_string_lossy())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True before the first append.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id of the file's bytes, read back from it: the hash runs on the thread that
    /// commits, not on the one adding blobs, and covers what the file really holds.
    fn hash(&self) -> std::io::Result<Id> {
        use std::os::unix::fs::FileExt;
        let f = self.file.as_file();
        let mut h = IdHasher::default();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < self.len {
            let n = f.read_at(&mut buf, at)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            h.update(&buf[..n]);
            at += n as u64;
        }
        Ok(h.finish())
    }
}

impl Backend {
    /// A new spool for a pack, or None when the repository is not a local directory (packs
    /// for remote storage are built in memory and uploaded whole).
    pub fn spool(&self) -> Option<Result<Spool, BackendError>> {
        let Location::Local(root) = &self.location else {
            return None;
        };
        let dir = root.join(LOCAL_TMP_DIR);
        let make = || tempfile::Builder::new().prefix("pack-").tempfile_in(&dir);
        let file = match make() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir).and_then(|()| make())
            }
            r => r,
        };
        // Held until the spool is gone: `sweep_temporary` leaves locked files alone, so a
        // pack that waits long for its next blob is not taken for a dead writer's leftover.
        let file = file.and_then(|f| f.as_file().lock().map(|()| f));
        Some(
            file.map(|file| Spool {
                file,
                len: 0,
                location: self.location.to_string(),
            })
            .map_err(|e| self.io_error("create", LOCAL_TMP_DIR, e)),
        )
    }

    /// Names the spooled pack by the hash of its bytes, syncs it and renames it into
    /// `data/`: from then on it is durable and complete. Returns its id and size.
    pub fn commit(&self, spool: Spool) -> Result<(Id, u64), BackendError> {
        let Location::Local(root) = &self.location else {
            return Err(self.io_error(
                "commit",
                LOCAL_TMP_DIR,
                std::io::Error::other("a spooled pack outside a local repository"),
            ));
        };
        let id = spool
            .hash()
            .map_err(|e| self.io_error("read back", &spool.name(), e))?;
        let rel = FileType::Pack.path(&id.to_hex());
        spool
            .file
            .as_file()
            .sync_all()
            .map_err(|e| self.io_error("sync", &rel, e))?;
        let target = root.join(&rel);
        let len = spool.len;
        match spool.file.persist(&target) {
            Ok(_) => {}
            Err(e) if e.error.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|err| self.io_error("create directory", &rel, err))?;
                }
                e.file
                    .persist(&target)
                    .map_err(|e| self.io_error("rename", &rel, e.error))?;
            }
            Err(e) => return Err(self.io_error("rename", &rel, e.error)),
        }
        Ok((id, len))
    }
}
