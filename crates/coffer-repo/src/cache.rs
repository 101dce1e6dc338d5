//! A local cache of the files every command needs from a remote repository: index files,
//! snapshot files and tree packs, under `$XDG_CACHE_HOME/coffer/<repository id>/` (as restic's
//! cache does). Everything cached is content-addressed, so an entry is valid forever; entries
//! whose file has left the repository are removed when the directory is listed. Local
//! repositories are not cached (the cache would only double the reads).

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::backend::{Backend, FileType, Location};
use crate::id::Id;

/// The cache directory of one repository.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

fn sub(t: FileType) -> &'static str {
    match t {
        FileType::Index => "index",
        FileType::Snapshot => "snapshots",
        FileType::Pack => "data",
        _ => "other",
    }
}

impl Cache {
    /// The cache for a repository, or None when caching is off or not useful.
    pub fn for_repository(location: &Location, repo_id: &str) -> Option<Cache> {
        if location.is_local() || std::env::var_os("COFFER_NO_CACHE").is_some() {
            return None;
        }
        let base = std::env::var_os("COFFER_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("coffer")))?;
        let dir = base.join(repo_id);
        for s in ["index", "snapshots", "data", "tmp"] {
            if let Err(e) = fs::create_dir_all(dir.join(s)) {
                tracing::warn!(dir = %dir.display(), error = %e, "cache disabled");
                return None;
            }
        }
        let tag = base.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::write(
                &tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# coffer cache; see https://bford.info/cachedir/\n",
            );
        }
        Some(Cache { dir })
    }

    fn path(&self, t: FileType, name: &str) -> PathBuf {
        self.dir.join(sub(t)).join(name)
    }

    /// A cached file's bytes.
    pub fn get(&self, t: FileType, name: &str) -> Option<Vec<u8>> {
        fs::read(self.path(t, name)).ok()
    }

    /// Stores a file (best effort: the cache never fails a command).
    pub fn put(&self, t: FileType, name: &str, data: &[u8]) {
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{name}.{}", std::process::id()));
        let ok = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(data))
            .and_then(|_| fs::rename(&tmp, self.path(t, name)));
        if let Err(e) = ok {
            tracing::debug!(error = %e, "cache write failed");
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Removes one entry.
    pub fn remove(&self, t: FileType, name: &str) {
        let _ = fs::remove_file(self.path(t, name));
    }

    /// Removes entries whose name is not in `keep`.
    pub fn retain(&self, t: FileType, keep: &[String]) {
        let keep: std::collections::HashSet<&str> = keep.iter().map(|s| s.as_str()).collect();
        if let Ok(rd) = fs::read_dir(self.dir.join(sub(t))) {
            for e in rd.flatten() {
                let n = e.file_name();
                if !keep.contains(n.to_string_lossy().as_ref()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// A byte range of a cached pack.
    pub fn get_range(&self, t: FileType, name: &str, offset: u64, len: u64) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = fs::File::open(self.path(t, name)).ok()?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    }

    /// Downloads a whole pack into the cache unless it is there.
    pub fn ensure_pack(&self, backend: &Backend, pack: &Id) {
        let name = pack.to_hex();
        if self.path(FileType::Pack, &name).exists() {
            return;
        }
        match backend.read(FileType::Pack, &name) {
            Ok(b) if Id::hash(&b) == *pack => self.put(FileType::Pack, &name, &b),
            Ok(_) => tracing::warn!(pack = %name, "pack content does not match its id; not cached"),
            Err(e) => tracing::debug!(error = %e, "pack not cached"),
        }
    }
}
