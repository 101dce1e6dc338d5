//! [`Repository`]: an opened repository with its master key, config and index. It reads and
//! writes encrypted JSON files, loads blobs, and lists snapshots; writing blobs goes through
//! [`crate::Packer`].

use parking_lot::{RwLock, RwLockReadGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{Backend, FileType, Location};
use crate::cache::Cache;
use crate::config::{decode_unpacked, encode_unpacked, Config};
use crate::crypto::Key;
use crate::error::{RepoError, Result};
use crate::id::Id;
use crate::index::{IndexFile, MasterIndex};
use crate::keyfile::{KeyFile, KeyFileError};
use crate::pack::{open_blob, BlobType, Compression};
use crate::snapshot::{Snapshot, SnapshotWithId};
use crate::tree::Tree;

/// Options for `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// scrypt N for the first key.
    pub kdf_n: u32,
    /// Reuse another repository's chunker polynomial (for `copy` with deduplication).
    pub chunker_polynomial: Option<coffer_chunker::Pol>,
    /// Format version (2 unless told otherwise).
    pub version: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            kdf_n: kdf_n_from_env(),
            chunker_polynomial: None,
            version: 2,
        }
    }
}

// Tests open repositories hundreds of times; they may lower the KDF cost. Never below 2^10.
fn kdf_n_from_env() -> u32 {
    std::env::var("COFFER_KDF_N")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| n.is_power_of_two() && *n >= 1024)
        .unwrap_or(crate::keyfile::DEFAULT_N)
}

/// An opened repository.
pub struct Repository {
    backend: Backend,
    key: Key,
    key_id: Id,
    config: Config,
    index: RwLock<MasterIndex>,
    index_loaded: std::sync::atomic::AtomicBool,
    /// Index files [`Repository::load_index`] skipped as damaged.
    damaged_index: parking_lot::Mutex<Vec<(Id, String)>>,
    compression: Compression,
    cache: Option<Cache>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.backend.location())
    }
}

impl Repository {
    /// Creates a new repository at `location`.
    pub fn init(location: &Location, password: &str, opts: &InitOptions) -> Result<Repository> {
        let backend = Backend::open(location)?;
        if backend.stat(FileType::Config, "config")?.is_some() {
            return Err(RepoError::AlreadyExists {
                location: location.to_string(),
            });
        }
        backend.create_layout()?;
        let key = Key::random();
        let kf = KeyFile::create(password, &key, opts.kdf_n)
            .map_err(|e| RepoError::file(FileType::Key, "new", e))?;
        let kf_bytes = serde_json::to_vec_pretty(&kf).expect("key file serializes");
        let key_id = Id::hash(&kf_bytes);
        backend.write(FileType::Key, &key_id.to_hex(), kf_bytes)?;
        let mut config = Config::new();
        config.version = opts.version;
        if let Some(p) = opts.chunker_polynomial {
            config.chunker_polynomial = p;
        }
        let plain = serde_json::to_vec(&config).expect("config serializes");
        backend.write(FileType::Config, "config", key.encrypt(&plain))?;
        tracing::info!(location = %location, id = %config.id, "repository created");
        Ok(Repository::assemble(backend, key, key_id, config))
    }

    /// Opens the repository at `location` with `password`.
    pub fn open(location: &Location, password: &str) -> Result<Repository> {
        let backend = Backend::open(location)?;
        let config_bytes = match backend.read(FileType::Config, "config") {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(RepoError::NotFound {
                    location: location.to_string(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let keys = backend.list(FileType::Key)?;
        let mut opened = None;
        for k in &keys {
            let bytes = backend.read(FileType::Key, &k.name)?;
            let kf: KeyFile = match serde_json::from_slice(&bytes) {
                Ok(kf) => kf,
                Err(e) => {
                    tracing::warn!(key = %k.name, error = %e, "skipping unreadable key file");
                    continue;
                }
            };
            match kf.open(password) {
                Ok(key) => {
                    opened = Some((key, k.name.parse().unwrap_or_default()));
                    break;
                }
                Err(KeyFileError::WrongPassword) => continue,
                Err(e) => tracing::warn!(key = %k.name, error = %e, "skipping invalid key file"),
            }
        }
        let Some((key, key_id)) = opened else {
            return Err(RepoError::WrongPassword {
                location: location.to_string(),
                keys: keys.len(),
            });
        };
        let plain = key
            .decrypt(&config_bytes)
            .map_err(|e| RepoError::file(FileType::Config, "config", e))?;
        let config: Config = serde_json::from_slice(&plain)
            .map_err(|e| RepoError::file(FileType::Config, "config", e))?;
        if config.version != 1 && config.version != 2 {
            return Err(RepoError::file(
                FileType::Config,
                "config",
                format!("unsupported repository version {}", config.version),
            ));
        }
        Ok(Repository::assemble(backend, key, key_id, config))
    }

    fn assemble(backend: Backend, key: Key, key_id: Id, config: Config) -> Repository {
        let compression = if config.version >= 2 {
            Compression::AUTO
        } else {
            Compression::Off
        };
        let cache = Cache::for_repository(backend.location(), &config.id);
        Repository {
            backend,
            key,
            key_id,
            config,
            index: RwLock::new(MasterIndex::new()),
            index_loaded: false.into(),
            damaged_index: Default::default(),
            compression,
            cache,
        }
    }

    /// The storage.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The master key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Id of the key file that opened the repository.
    pub fn key_id(&self) -> Id {
        self.key_id
    }

    /// The decrypted config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Compression for new blobs.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Sets compression for new blobs (always off in a version-1 repository).
    pub fn set_compression(&mut self, c: Compression) {
        if self.config.version >= 2 {
            self.compression = c;
        }
    }

    /// The local cache, if one could be set up.
    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// Disables the local cache.
    pub fn disable_cache(&mut self) {
        self.cache = None;
    }

    /// Reads and decrypts a file; uses the cache for immutable files.
    pub fn load_file(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        // Everything but the config and key files is named by the hash of its bytes.
        let addressed = t != FileType::Config && t != FileType::Key;
        let matches = |b: &[u8]| !addressed || Id::hash(b).to_hex() == name;
        let cache = self
            .cache
            .as_ref()
            .filter(|_| matches!(t, FileType::Index | FileType::Snapshot));
        let bytes = match cache.and_then(|c| c.get(t, name)).filter(|b| matches(b)) {
            Some(b) => b,
            None => {
                let b = self.backend.read(t, name)?;
                if !matches(&b) {
                    return Err(RepoError::file(
                        t,
                        name,
                        "content does not match its name (hash mismatch)",
                    ));
                }
                // Verified first, so the cache never holds junk.
                if let Some(c) = cache {
                    c.put(t, name, &b);
                }
                b
            }
        };
        self.key
            .decrypt(&bytes)
            .map_err(|e| RepoError::file(t, name, e))
    }

    /// Loads and parses an encrypted JSON file (index, snapshot, lock).
    pub fn load_json<T: DeserializeOwned>(&self, t: FileType, id: &Id) -> Result<T> {
        let name = id.to_hex();
        let plain = self.load_file(t, &name)?;
        let json = decode_unpacked(plain).map_err(|e| RepoError::file(t, &name, e))?;
        serde_json::from_slice(&json).map_err(|e| RepoError::file(t, &name, e))
    }

    /// Encrypts and stores a JSON file; returns its id.
    pub fn save_json<T: Serialize>(&self, t: FileType, value: &T) -> Result<Id> {
        let json = serde_json::to_vec(value).map_err(|e| RepoError::file(t, "new", e))?;
        let data = self
            .key
            .encrypt(&encode_unpacked(&json, self.config.version));
        let id = Id::hash(&data);
        self.backend.write(t, &id.to_hex(), data)?;
        Ok(id)
    }

    /// Loads every index file into memory (once).
    pub fn load_index(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.index_loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let ids = self.backend.list_ids(FileType::Index)?;
        let mut damaged = Vec::new();
        let mut guard = self.index.write();
        let idx: &mut MasterIndex = &mut guard;
        self.parallel_in_order(
            &ids,
            |id| match self.load_json::<IndexFile>(FileType::Index, id) {
                Ok(f) => Ok((*id, Ok(f))),
                Err(RepoError::File { reason, .. }) => Ok((*id, Err(reason))),
                Err(e) => Err(e),
            },
            |(id, f)| {
                match f {
                    Ok(f) => idx.add_file(&f),
                    // One damaged index file must not stop a restore: the blobs it lists look
                    // missing (and name the files that need them) until `repair index`.
                    Err(reason) => {
                        tracing::warn!(
                            "index file {} is damaged and skipped ({reason}): the blobs it lists look missing until `coffer repair index` rebuilds the index",
                            id.short()
                        );
                        damaged.push((id, reason));
                    }
                }
                Ok(())
            },
        )?;
        let idx = &mut guard;
        idx.shrink_to_fit();
        *self.damaged_index.lock() = damaged;
        self.index_loaded.store(true, Ordering::Release);
        if let Some(c) = &self.cache {
            let keep: Vec<String> = ids.iter().map(|i| i.to_hex()).collect();
            c.retain(FileType::Index, &keep);
        }
        Ok(())
    }

    /// Index files the last [`Repository::load_index`] skipped as damaged, with why. Commands
    /// that delete what the index does not list (prune) must refuse while there are any.
    pub fn damaged_index_files(&self) -> Vec<(Id, String)> {
        self.damaged_index.lock().clone()
    }

    /// Loads every index file that can be read and returns the ones that cannot, instead of
    /// stopping at the first (for `check` and `repair`, which must see past damage).
    pub fn load_index_tolerant(&self) -> Result<Vec<(Id, RepoError)>> {
        use std::sync::atomic::Ordering;
        let ids = self.backend.list_ids(FileType::Index)?;
        let mut bad = Vec::new();
        let mut guard = self.index.write();
        *guard = MasterIndex::new();
        let idx: &mut MasterIndex = &mut guard;
        self.parallel_in_order(
            &ids,
            |id| Ok((*id, self.load_json::<IndexFile>(FileType::Index, id))),
            |(id, f)| {
                match f {
                    Ok(f) => idx.add_file(&f),
                    Err(e) => bad.push((id, e)),
                }
                Ok(())
            },
        )?;
        let idx = &mut guard;
        idx.shrink_to_fit();
        *self.damaged_index.lock() = bad.iter().map(|(id, e)| (*id, e.to_string())).collect();
        self.index_loaded.store(true, Ordering::Release);
        Ok(bad)
    }

    /// Forgets the in-memory index, so that the next [`Repository::load_index`] reads the
    /// index files again (after a command rewrote them).
    pub fn reset_index(&self) {
        *self.index.write() = MasterIndex::new();
        self.damaged_index.lock().clear();
        self.index_loaded
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Runs `f` over `items` on a few threads, keeping order; stops at the first error.
    pub fn parallel_map<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&T) -> Result<R> + Sync,
    ) -> Result<Vec<R>> {
        let mut out = Vec::with_capacity(items.len());
        self.parallel_in_order(items, f, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs `f` over `items` on a few threads and hands each result to `consume` in item order
    /// as soon as it and every one before it are done. Workers stay at most a small window
    /// ahead of `consume`, so only a few results are held at once: the index of a repository
    /// with millions of blobs loads without first holding every parsed index file. Stops at
    /// the first error of either.
    pub fn parallel_in_order<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&T) -> Result<R> + Sync,
        consume: impl FnMut(R) -> Result<()> + Send,
    ) -> Result<()> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let threads = if self.backend.location().is_local() {
            4
        } else {
            16
        };
        let window = 2 * threads;
        struct Merge<R, C> {
            done: usize,
            ready: std::collections::BTreeMap<usize, R>,
            consume: C,
            error: Option<RepoError>,
        }
        let merge = parking_lot::Mutex::new(Merge {
            done: 0,
            ready: Default::default(),
            consume,
            error: None,
        });
        let progressed = parking_lot::Condvar::new();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..threads.min(items.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= items.len() {
                        break;
                    }
                    {
                        let mut m = merge.lock();
                        while i >= m.done + window && !stop.load(Ordering::Relaxed) {
                            progressed.wait(&mut m);
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let r = f(&items[i]);
                    let mut m = merge.lock();
                    match r {
                        Ok(v) => {
                            m.ready.insert(i, v);
                        }
                        Err(e) => {
                            m.error.get_or_insert(e);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    while !stop.load(Ordering::Relaxed) {
                        let k = m.done;
                        let Some(v) = m.ready.remove(&k) else { break };
                        m.done += 1;
                        if let Err(e) = (m.consume)(v) {
                            m.error.get_or_insert(e);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    drop(m);
                    progressed.notify_all();
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                });
            }
        });
        let m = merge.into_inner();
        if let Some(e) = m.error {
            return Err(e);
        }
        if m.done != items.len() {
            return Err(RepoError::Invalid("parallel load stopped early".into()));
        }
        Ok(())
    }

    /// Read access to the in-memory index.
    pub fn index(&self) -> RwLockReadGuard<'_, MasterIndex> {
        self.index.read()
    }

    /// Adds a freshly uploaded pack to the in-memory index.
    pub fn index_add_pack(&self, pack: Id, blobs: &[crate::pack::PackedBlob]) {
        self.index.write().add_pack(pack, blobs);
    }

    /// Loads, decrypts, decompresses and verifies one blob.
    pub fn load_blob(&self, id: &Id, kind: BlobType) -> Result<Vec<u8>> {
        let locations = self.index().lookup_all(id, kind);
        if locations.is_empty() {
            if let Some((index, _)) = self.damaged_index.lock().first() {
                return Err(RepoError::BlobNotIndexed {
                    id: *id,
                    kind,
                    index: index.short(),
                });
            }
            return Err(RepoError::BlobNotFound { id: *id, kind });
        }
        let mut last = None;
        // A damaged copy is not fatal when another pack holds the blob too.
        for loc in locations {
            let r = self
                .read_pack_range(&loc.pack, loc.blob.offset as u64, loc.blob.length as u64)
                .and_then(|enc| {
                    open_blob(&self.key, &loc.blob, &enc).map_err(|source| RepoError::Blob {
                        id: *id,
                        kind,
                        pack: loc.pack,
                        source: Box::new(source),
                    })
                });
            match r {
                Ok(b) => return Ok(b),
                Err(e) => {
                    if let Some(c) = &self.cache {
                        // A damaged cached copy must not hide a good one in the repository.
                        if c.get_range(FileType::Pack, &loc.pack.to_hex(), 0, 1)
                            .is_some()
                        {
                            c.remove(FileType::Pack, &loc.pack.to_hex());
                            let enc = self.backend.read_range(
                                FileType::Pack,
                                &loc.pack.to_hex(),
                                loc.blob.offset as u64,
                                loc.blob.length as u64,
                            )?;
                            if let Ok(b) = open_blob(&self.key, &loc.blob, &enc) {
                                return Ok(b);
                            }
                        }
                    }
                    last = Some(e)
                }
            }
        }
        Err(last.expect("at least one location"))
    }

    /// Reads part of a pack, from the cache when the pack is a cached tree pack.
    pub fn read_pack_range(&self, pack: &Id, offset: u64, len: u64) -> Result<bytes::Bytes> {
        let name = pack.to_hex();
        if let Some(c) = &self.cache {
            if let Some(b) = c.get_range(FileType::Pack, &name, offset, len) {
                return Ok(b.into());
            }
        }
        Ok(self
            .backend
            .read_range(FileType::Pack, &name, offset, len)?)
    }

    /// Loads a tree blob.
    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let b = self.load_tree_blob(id)?;
        Tree::from_blob(&b).map_err(|e| RepoError::Invalid(format!("tree {id}: {e}")))
    }

    fn load_tree_blob(&self, id: &Id) -> Result<Vec<u8>> {
        if let Some(c) = &self.cache {
            if let Some(loc) = self.index().lookup(id, BlobType::Tree) {
                // Tree packs are small and read again by every command: cache whole packs.
                c.ensure_pack(&self.backend, &loc.pack);
            }
        }
        self.load_blob(id, BlobType::Tree)
    }

    /// Every readable snapshot, oldest first. A damaged snapshot file is skipped with a
    /// warning, so that one bad file does not block every command (as restic does);
    /// [`Repository::snapshots_and_damage`] names them for the commands that act on them.
    pub fn snapshots(&self) -> Result<Vec<SnapshotWithId>> {
        let (snaps, damaged) = self.snapshots_and_damage()?;
        damaged.iter().for_each(DamagedSnapshot::warn);
        Ok(snaps)
    }

    /// Every readable snapshot, oldest first, and the snapshot files that are damaged (their
    /// bytes do not match their name, do not decrypt or do not parse). A file that cannot be
    /// read at all (an I/O or storage error) is an error, not damage.
    pub fn snapshots_and_damage(&self) -> Result<(Vec<SnapshotWithId>, Vec<DamagedSnapshot>)> {
        let ids = self.backend.list_ids(FileType::Snapshot)?;
        let loaded = self.parallel_map(&ids, |id| {
            match self.load_json::<Snapshot>(FileType::Snapshot, id) {
                Ok(snap) => Ok(Some(Ok(SnapshotWithId { id: *id, snap }))),
                Err(RepoError::File { reason, .. }) => {
                    Ok(Some(Err(DamagedSnapshot { id: *id, reason })))
                }
                // Forgotten between the listing and the read (by a forget that does not take
                // the lock, or another tool): it is gone, not damaged.
                Err(RepoError::Backend(e)) if e.is_not_found() => {
                    tracing::debug!(snapshot = %id, "snapshot removed while listing; skipped");
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })?;
        if let Some(c) = &self.cache {
            let keep: Vec<String> = ids.iter().map(|i| i.to_hex()).collect();
            c.retain(FileType::Snapshot, &keep);
        }
        let (mut snaps, mut damaged) = (Vec::new(), Vec::new());
        for l in loaded.into_iter().flatten() {
            match l {
                Ok(s) => snaps.push(s),
                Err(d) => damaged.push(d),
            }
        }
        snaps.sort_by(|a, b| a.snap.time.cmp(&b.snap.time).then(a.id.cmp(&b.id)));
        damaged.sort_by_key(|d| d.id);
        Ok((snaps, damaged))
    }

    /// Resolves `latest`, a full id or a unique id prefix, among snapshots passing `filter`.
    pub fn find_snapshot(
        &self,
        spec: &str,
        filter: impl Fn(&Snapshot) -> bool,
    ) -> Result<SnapshotWithId> {
        let snaps: Vec<_> = self
            .snapshots()?
            .into_iter()
            .filter(|s| filter(&s.snap))
            .collect();
        crate::snapshot::resolve(&snaps, spec).cloned()
    }

    /// Removes snapshot files from storage and the local cache (in parallel; stops at the
    /// first failure, and those already removed stay removed).
    pub fn remove_snapshots(&self, ids: &[Id]) -> Result<()> {
        self.parallel_map(ids, |id| {
            let name = id.to_hex();
            self.backend.remove(FileType::Snapshot, &name)?;
            if let Some(c) = &self.cache {
                c.remove(FileType::Snapshot, &name);
            }
            tracing::info!(snapshot = %id.short(), "snapshot removed");
            Ok(())
        })?;
        Ok(())
    }

    /// Saves a snapshot file. Call only after every pack and index it refers to is stored.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<Id> {
        self.save_json(FileType::Snapshot, snap)
    }

    /// Every readable key file with its id (the SHA-256 of the file), sorted by creation time.
    /// Files that are not key files are skipped with a warning, as [`Repository::open`] does.
    pub fn keys(&self) -> Result<Vec<(Id, KeyFile)>> {
        let ids = self.backend.list_ids(FileType::Key)?;
        let loaded = self.parallel_map(&ids, |id| {
            let bytes = self.backend.read(FileType::Key, &id.to_hex())?;
            Ok(serde_json::from_slice::<KeyFile>(&bytes)
                .map_err(|e| tracing::warn!(key = %id, error = %e, "skipping unreadable key file"))
                .ok()
                .map(|kf| (*id, kf)))
        })?;
        let mut keys: Vec<(Id, KeyFile)> = loaded.into_iter().flatten().collect();
        keys.sort_by(|a, b| a.1.created.cmp(&b.1.created).then(a.0.cmp(&b.0)));
        Ok(keys)
    }

    /// Writes a new key file wrapping this repository's master key under `password` (scrypt
    /// cost as for `init`), then reads it back and opens it, so that a key that would not work
    /// is removed again instead of being left behind. `username`/`hostname` default to the
    /// current user and host. Returns the new key's id.
    pub fn add_key(
        &self,
        password: &str,
        username: Option<&str>,
        hostname: Option<&str>,
    ) -> Result<Id> {
        let mut kf = KeyFile::create(password, &self.key, kdf_n_from_env())
            .map_err(|e| RepoError::file(FileType::Key, "new", e))?;
        if let Some(u) = username {
            kf.username = u.to_string();
        }
        if let Some(h) = hostname {
            kf.hostname = h.to_string();
        }
        let bytes =
            serde_json::to_vec_pretty(&kf).map_err(|e| RepoError::file(FileType::Key, "new", e))?;
        let id = Id::hash(&bytes);
        let name = id.to_hex();
        self.backend.write(FileType::Key, &name, bytes)?;
        let verified = self
            .backend
            .read(FileType::Key, &name)
            .map_err(RepoError::from)
            .and_then(|b| {
                serde_json::from_slice::<KeyFile>(&b)
                    .map_err(|e| RepoError::file(FileType::Key, &name, e))
            })
            .and_then(|k| {
                k.open(password)
                    .map_err(|e| RepoError::file(FileType::Key, &name, e))
            })
            .and_then(|m| {
                // The new key must unwrap the same master key, or it would open nothing.
                let probe = self.key.encrypt(b"coffer key check");
                m.decrypt(&probe).map(|_| ()).map_err(|_| {
                    RepoError::file(FileType::Key, &name, "wraps a different master key")
                })
            });
        if let Err(e) = verified {
            let _ = self.backend.remove(FileType::Key, &name);
            return Err(RepoError::Invalid(format!(
                "the new key {name} does not open the repository and was removed again: {e}"
            )));
        }
        Ok(id)
    }

    /// Deletes a key file. Refuses the key this process opened the repository with and the
    /// last remaining key, so that the repository never becomes unreadable through this call.
    pub fn remove_key(&self, id: &Id) -> Result<()> {
        if *id == self.key_id {
            return Err(RepoError::Invalid(format!(
                "cannot remove the key in use; open the repository with another key (key {})",
                id.short()
            )));
        }
        let keys = self.backend.list_ids(FileType::Key)?;
        if !keys.contains(id) {
            return Err(RepoError::Invalid(format!(
                "no key file {id} in the repository"
            )));
        }
        if keys.len() < 2 {
            return Err(RepoError::Invalid(format!(
                "refusing to remove key {}: it is the repository's only key",
                id.short()
            )));
        }
        self.backend.remove(FileType::Key, &id.to_hex())?;
        Ok(())
    }

    /// Changes the password: adds a key under `password` (see [`Repository::add_key`]), then
    /// removes the key this process opened the repository with. In that order a crash leaves
    /// both keys, never none. Returns (new key, removed key). [`Repository::key_id`] still names
    /// the removed key afterwards: reopen the repository to work with the new one.
    pub fn change_password(
        &self,
        password: &str,
        username: Option<&str>,
        hostname: Option<&str>,
    ) -> Result<(Id, Id)> {
        let new = self.add_key(password, username, hostname)?;
        let old = self.key_id;
        self.backend.remove(FileType::Key, &old.to_hex())?;
        Ok((new, old))
    }
}

/// A snapshot file that cannot be used: its bytes do not match its name, or it does not
/// decrypt or parse. What it referred to is unknown.
#[derive(Clone, Debug, Serialize)]
pub struct DamagedSnapshot {
    /// The file's id (its name).
    pub id: Id,
    /// What is wrong with it.
    pub reason: String,
}

impl DamagedSnapshot {
    /// Says that this file is skipped, and how to remove it.
    pub fn warn(&self) {
        tracing::warn!(
            "snapshot file {} is damaged and skipped ({}): `coffer repair snapshots --forget` or `coffer forget {}` removes it",
            self.id,
            self.reason,
            self.id.short()
        );
    }
}
