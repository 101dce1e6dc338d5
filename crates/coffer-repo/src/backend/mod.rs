//! Storage backends through Apache OpenDAL: a local directory or an S3-compatible bucket,
//! addressed by restic-style locations. The rest of the engine sees only named files of a
//! [`FileType`]; paths (`data/ab/abcd...`), retries with backoff, and the async runtime OpenDAL
//! needs stay in here. Writes on local disk go to a temporary file that is synced and renamed,
//! so a file is either absent or complete. One exception to "everything through OpenDAL":
//! pack reads in a local repository are plain `pread`s, because OpenDAL's local service hops
//! through the runtime and its blocking pool on every call (about 100 µs, more than reading a
//! tree blob), which tripled the time of an unchanged re-backup.

mod location;
mod spool;

pub use location::{Location, LocationError};
pub use spool::Spool;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use opendal::layers::RetryLayer;
use opendal::{ErrorKind, Operator};

use crate::id::Id;

/// The kinds of file in a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// `config`.
    Config,
    /// `keys/`.
    Key,
    /// `snapshots/`.
    Snapshot,
    /// `index/`.
    Index,
    /// `data/xx/`.
    Pack,
    /// `locks/`.
    Lock,
}

impl FileType {
    fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys/",
            FileType::Snapshot => "snapshots/",
            FileType::Index => "index/",
            FileType::Pack => "data/",
            FileType::Lock => "locks/",
        }
    }

    /// Path of a file relative to the repository root.
    pub fn path(self, name: &str) -> String {
        match self {
            FileType::Config => "config".to_string(),
            FileType::Pack => format!("data/{}/{}", name.get(..2).unwrap_or("00"), name),
            t => format!("{}{}", t.dir(), name),
        }
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileType::Config => "config",
            FileType::Key => "key",
            FileType::Snapshot => "snapshot",
            FileType::Index => "index",
            FileType::Pack => "pack",
            FileType::Lock => "lock",
        })
    }
}

/// A storage operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op}{}{path} at {location}: {}", if path.is_empty() { "" } else { " " }, describe(cause))]
pub struct BackendError {
    /// What was attempted.
    pub op: &'static str,
    /// File path inside the repository.
    pub path: String,
    /// The repository location.
    pub location: String,
    /// OpenDAL's error (its context dump is left out of the message).
    pub cause: Box<opendal::Error>,
}

// OpenDAL's Display repeats request context and response headers; people need the kind, the
// server's message and the OS error.
fn describe(e: &opendal::Error) -> String {
    use std::error::Error as _;
    let mut s = match e.kind() {
        ErrorKind::NotFound => "not found".to_string(),
        ErrorKind::PermissionDenied => {
            "permission denied (check the credentials and bucket policy)".to_string()
        }
        ErrorKind::ConfigInvalid => "invalid location".to_string(),
        k => k.to_string(),
    };
    let mut parts: Vec<String> = Vec::new();
    let mut push = |m: String| {
        // Wrapped OpenDAL errors display their whole context; their messages come through
        // the chain anyway.
        if !m.is_empty() && !m.contains("context: {") && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
    };
    push(e.message().to_string());
    let mut src = e.source();
    while let Some(c) = src {
        match c.downcast_ref::<opendal::Error>() {
            Some(oe) => push(oe.message().to_string()),
            None => push(c.to_string()),
        }
        src = c.source();
    }
    for p in parts {
        s.push_str(": ");
        s.push_str(&p);
    }
    if e.is_temporary() || e.is_persistent() {
        s.push_str(if e.is_persistent() {
            " (gave up after retries)"
        } else {
            " (temporary)"
        });
    }
    s
}

/// Up to `len` bytes at `offset` (fewer at the end of the file, as OpenDAL's range reads).
fn read_at(path: &std::path::Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = len.min(f.metadata()?.len().saturating_sub(offset));
    f.seek(SeekFrom::Start(offset))?;
    // read_to_end fills spare capacity without zeroing it first: a restore reads gigabytes
    // through here, and zeroing each buffer cost a third of the copying.
    let mut buf = Vec::with_capacity(len as usize);
    f.take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

/// True if a live writer holds the file's lock (see [`Spool`]).
fn in_use(path: &std::path::Path) -> bool {
    std::fs::File::open(path)
        .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// A local file operation's failure in the shape of OpenDAL's.
fn io_error(location: &str, op: &'static str, path: &str, e: std::io::Error) -> BackendError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Unexpected,
    };
    BackendError {
        op,
        path: path.to_string(),
        location: location.to_string(),
        cause: Box::new(opendal::Error::new(kind, e.to_string())),
    }
}

impl BackendError {
    /// The file does not exist.
    pub fn is_not_found(&self) -> bool {
        self.cause.kind() == ErrorKind::NotFound
    }
}

/// One file found by listing.
#[derive(Clone, Debug)]
pub struct FileInfo {
    /// File name (an id for everything but the config).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// A repository's storage.
#[derive(Clone)]
pub struct Backend {
    op: Operator,
    rt: Arc<tokio::runtime::Runtime>,
    location: Location,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Backend({})", self.location)
    }
}

fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal_http_transport_reqwest::install_default();
    });
}

/// Directory inside a local repository for writes in progress; restic ignores it.
pub const LOCAL_TMP_DIR: &str = ".coffer-tmp";

impl Backend {
    /// Opens storage at `location` (does not check that a repository exists there).
    pub fn open(location: &Location) -> Result<Backend, BackendError> {
        install_tls_provider();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-io")
            .enable_all()
            .build()
            .map_err(|e| BackendError {
                op: "start I/O runtime",
                path: String::new(),
                location: location.to_string(),
                cause: Box::new(opendal::Error::new(ErrorKind::Unexpected, e.to_string())),
            })?;
        let err = |e: opendal::Error| BackendError {
            op: "configure",
            path: String::new(),
            location: location.to_string(),
            cause: Box::new(e),
        };
        let op = match location {
            Location::Local(path) if path.exists() && !path.is_dir() => {
                return Err(BackendError {
                    op: "open",
                    path: String::new(),
                    location: location.to_string(),
                    cause: Box::new(opendal::Error::new(
                        ErrorKind::ConfigInvalid,
                        "this is a file, not a repository directory: give the directory that holds (or is to hold) the repository",
                    )),
                });
            }
            Location::Local(path) => {
                let root = path.to_string_lossy().to_string();
                let tmp = path.join(LOCAL_TMP_DIR).to_string_lossy().to_string();
                let b = opendal::services::Fs::default()
                    .root(&root)
                    .atomic_write_dir(&tmp);
                Operator::new(b).map_err(err)?
            }
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                let mut b = opendal::services::S3::default()
                    .endpoint(endpoint)
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(&location::s3_region())
                    .disable_config_load()
                    .disable_ec2_metadata();
                if let Ok(k) = std::env::var("AWS_ACCESS_KEY_ID") {
                    b = b.access_key_id(&k);
                }
                if let Ok(s) = std::env::var("AWS_SECRET_ACCESS_KEY") {
                    b = b.secret_access_key(&s);
                }
                if let Ok(t) = std::env::var("AWS_SESSION_TOKEN") {
                    b = b.session_token(&t);
                }
                if std::env::var("COFFER_S3_BUCKET_LOOKUP").as_deref() == Ok("dns") {
                    b = b.enable_virtual_host_style();
                }
                Operator::new(b).map_err(err)?
            }
        };
        // Local disk errors (full disk, permissions) do not go away by waiting; network
        // errors and throttling often do.
        let op = if location.is_local() {
            op
        } else {
            op.layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_max_times(retry_times())
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10)),
            )
        };
        Ok(Backend {
            op,
            rt: Arc::new(rt),
            location: location.clone(),
        })
    }

    /// Where this backend stores.
    pub fn location(&self) -> &Location {
        &self.location
    }

    fn error(&self, op: &'static str, path: &str, e: opendal::Error) -> BackendError {
        BackendError {
            op,
            path: path.to_string(),
            location: self.location.to_string(),
            cause: Box::new(e),
        }
    }

    /// The file's path when it is a pack in a local repository (read without OpenDAL, see
    /// the module doc).
    fn local_pack(&self, t: FileType, name: &str) -> Option<std::path::PathBuf> {
        match (&self.location, t) {
            (Location::Local(root), FileType::Pack) => Some(root.join(t.path(name))),
            _ => None,
        }
    }

    fn io_error(&self, op: &'static str, path: &str, e: std::io::Error) -> BackendError {
        io_error(&self.location.to_string(), op, path, e)
    }

    /// Reads a whole file.
    pub fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>, BackendError> {
        let p = t.path(name);
        if let Some(local) = self.local_pack(t, name) {
            return std::fs::read(local).map_err(|e| self.io_error("read", &p, e));
        }
        self.rt
            .block_on(self.op.read(&p))
            .map(|b| b.to_vec())
            .map_err(|e| self.error("read", &p, e))
    }

    /// Reads `len` bytes at `offset`, without copying when the storage returned one piece.
    pub fn read_range(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes, BackendError> {
        let p = t.path(name);
        if let Some(local) = self.local_pack(t, name) {
            return read_at(&local, offset, len)
                .map(bytes::Bytes::from)
                .map_err(|e| self.io_error("read", &p, e));
        }
        self.rt
            .block_on(
                self.op
                    .read_with(&p)
                    .range(offset..offset + len)
                    .into_future(),
            )
            .map(|b| b.to_bytes())
            .map_err(|e| self.error("read", &p, e))
    }

    /// Writes a whole file; it becomes visible only once complete. A failed write removes
    /// its temporary file, so a full disk is not left fuller.
    pub fn write(
        &self,
        t: FileType,
        name: &str,
        data: impl Into<bytes::Bytes>,
    ) -> Result<(), BackendError> {
        let data: bytes::Bytes = data.into();
        let p = t.path(name);
        let op = &self.op;
        self.rt
            .block_on(async {
                let mut w = op.writer(&p).await?;
                let r = match w.write(data).await {
                    Ok(()) => w.close().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if r.is_err() {
                    let _ = w.abort().await;
                }
                r
            })
            .map_err(|e| self.error("write", &p, e))
    }

    /// Removes temporary files that writers killed mid-write left in a local repository
    /// (older than `age` and not locked, so writes in progress elsewhere are not touched).
    pub fn sweep_temporary(&self, age: Duration) {
        let Location::Local(root) = &self.location else {
            return;
        };
        let Ok(rd) = std::fs::read_dir(root.join(LOCAL_TMP_DIR)) else {
            return;
        };
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|el| el >= age);
            if old && !in_use(&e.path()) {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => {
                        tracing::info!(file = %e.path().display(), "removed leftover temporary file")
                    }
                    Err(err) => tracing::debug!(error = %err, "could not remove temporary file"),
                }
            }
        }
    }

    /// True when a file written is at once visible to every other process's listing: a
    /// local filesystem of one kernel. Network filesystems cache directory listings (NFS for
    /// seconds), and object stores may list late, so they are not.
    pub fn lists_writes_at_once(&self) -> bool {
        // ext2/3/4, XFS, Btrfs, tmpfs, ZFS, overlayfs, F2FS, bcachefs, ReiserFS, JFS.
        const LOCAL: [u64; 10] = [
            0xEF53,
            0x5846_5342,
            0x9123_683E,
            0x0102_1994,
            0x2FC1_2FC1,
            0x794C_7630,
            0xF2F5_2010,
            0xCA45_1A4E,
            0x5265_4973,
            0x3153_464A,
        ];
        match &self.location {
            Location::Local(root) => {
                crate::sysinfo::filesystem_type(root).is_some_and(|t| LOCAL.contains(&t))
            }
            Location::S3 { .. } => false,
        }
    }

    /// Size of a file, or None if it does not exist.
    pub fn stat(&self, t: FileType, name: &str) -> Result<Option<u64>, BackendError> {
        let p = t.path(name);
        match self.rt.block_on(self.op.stat(&p)) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error("stat", &p, e)),
        }
    }

    /// Deletes a file (absent files are not an error).
    pub fn remove(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        let p = t.path(name);
        self.rt
            .block_on(self.op.delete(&p))
            .map_err(|e| self.error("delete", &p, e))
    }

    /// Lists the files of one type.
    pub fn list(&self, t: FileType) -> Result<Vec<FileInfo>, BackendError> {
        let dir = t.dir();
        let res = self.rt.block_on(
            self.op
                .list_with(dir)
                .recursive(t == FileType::Pack)
                .into_future(),
        );
        let entries = match res {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error("list", dir, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            if !e.metadata().is_file() {
                continue;
            }
            let name = e.name().to_string();
            // Skip foreign files (temporary files, editor droppings): only ids are ours.
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            out.push(FileInfo {
                name,
                size: e.metadata().content_length(),
            });
        }
        Ok(out)
    }

    /// Lists ids of one type.
    pub fn list_ids(&self, t: FileType) -> Result<Vec<Id>, BackendError> {
        Ok(self
            .list(t)?
            .into_iter()
            .filter_map(|f| f.name.parse().ok())
            .collect())
    }

    /// Creates the directory skeleton restic's local backend expects.
    pub fn create_layout(&self) -> Result<(), BackendError> {
        if !matches!(self.location, Location::Local(_)) {
            return Ok(());
        }
        let mut dirs: Vec<String> = ["keys/", "snapshots/", "index/", "locks/", "data/"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        dirs.extend((0..=255u8).map(|b| format!("data/{b:02x}/")));
        for d in dirs {
            self.rt
                .block_on(self.op.create_dir(&d))
                .map_err(|e| self.error("create directory", &d, e))?;
        }
        Ok(())
    }

    /// Runs a future on the backend's runtime (for callers that batch async work).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The OpenDAL operator, for concurrent async use.
    pub fn operator(&self) -> &Operator {
        &self.op
    }
}

fn retry_times() -> usize {
    std::env::var("COFFER_BACKEND_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}
