//! The walkers: a pool that stats directory entries, reuses unchanged files from the parent
//! snapshot's trees, and hands changed files to the readers; and the scanner that sizes the
//! input for the ETA.

use super::*;

pub(super) struct Walker<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) files: Sender<FileJob>,
    pub(super) dirs: Sender<DirJob>,
}

impl Walker<'_> {
    pub(super) fn dir_job(&self, nodes: Vec<PendingNode>) -> Receiver<TreeResult> {
        let (tx, rx) = bounded(1);
        if self
            .dirs
            .send(DirJob {
                nodes,
                reply: tx.clone(),
            })
            .is_err()
        {
            let _ = tx.send(Err("tree saver stopped".into()));
        }
        rx
    }

    pub(super) fn root(
        &self,
        targets: &[PathBuf],
        parent: Option<&Tree>,
    ) -> Result<Receiver<TreeResult>, String> {
        if targets.iter().any(|t| t == Path::new("/")) {
            return Ok(self.walk_dir(Path::new("/"), parent, None));
        }
        let mut root = VDir::default();
        for t in targets {
            let comps: Vec<&[u8]> = t
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(n) => Some(n.as_bytes()),
                    _ => None,
                })
                .collect();
            let mut dir = &mut root;
            let mut prefix = PathBuf::from("/");
            for (i, c) in comps.iter().enumerate() {
                prefix.push(crate::metadata::os_name(c));
                if i + 1 == comps.len() {
                    dir.children.insert(c.to_vec(), VEntry::Target(t.clone()));
                    break;
                }
                let e = dir
                    .children
                    .entry(c.to_vec())
                    .or_insert_with(|| VEntry::Dir(prefix.clone(), VDir::default()));
                dir = match e {
                    VEntry::Dir(_, d) => d,
                    VEntry::Target(_) => break,
                };
            }
        }
        Ok(self.walk_virtual(&root, parent))
    }

    pub(super) fn walk_virtual(&self, dir: &VDir, parent: Option<&Tree>) -> Receiver<TreeResult> {
        let mut nodes = Vec::new();
        for (name, e) in &dir.children {
            let path = match e {
                VEntry::Target(p) | VEntry::Dir(p, _) => p,
            };
            let md = match std::fs::symlink_metadata(path) {
                Ok(m) => m,
                Err(e) => {
                    self.ctx.warn(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            match e {
                VEntry::Target(p) => {
                    if let Some(n) = self.entry(name, p, &md, parent, md.dev()) {
                        nodes.push(n);
                    }
                }
                VEntry::Dir(p, sub) => {
                    let node = match node_from_metadata(name, p, &md, &self.ctx.names) {
                        Ok(n) => n,
                        Err(e) => {
                            self.ctx.warn(format!("{}: {e}", p.display()));
                            continue;
                        }
                    };
                    let old = parent.and_then(|t| t.find(name)).and_then(|n| n.subtree);
                    let old_tree = old.and_then(|id| self.ctx.repo.load_tree(&id).ok());
                    let rx = self.walk_virtual(sub, old_tree.as_ref());
                    nodes.push(PendingNode {
                        node,
                        pending: Pending::Subtree { rx, parent: old },
                        path: p.to_string_lossy().into_owned(),
                    });
                }
            }
        }
        self.dir_job(nodes)
    }

    /// One directory entry; None when excluded or unreadable.
    pub(super) fn entry(
        &self,
        name: &[u8],
        path: &Path,
        md: &std::fs::Metadata,
        parent: Option<&Tree>,
        dev: u64,
    ) -> Option<PendingNode> {
        if self.ctx.excludes.matches(path) {
            return None;
        }
        let shown = path.to_string_lossy().into_owned();
        let mut node = match node_from_metadata(name, path, md, &self.ctx.names) {
            Ok(n) => n,
            Err(e) => {
                self.ctx.warn(format!("{shown}: {e}"));
                return None;
            }
        };
        let old = parent.and_then(|t| t.find(name));
        let c = &self.ctx.counters;
        let pending = match node.kind {
            NodeType::File => {
                if let Some(o) = old.filter(|o| unchanged(o, md, &node)) {
                    let content = o.content.clone().unwrap_or_default();
                    let idx = self.ctx.repo.index();
                    if content.iter().all(|id| idx.has(id, BlobType::Data)) {
                        drop(idx);
                        node.content = Some(content);
                        c.files_unmodified.fetch_add(1, Ordering::Relaxed);
                        c.files.fetch_add(1, Ordering::Relaxed);
                        c.bytes.fetch_add(node.size, Ordering::Relaxed);
                        self.ctx.progress.add_bytes(node.size);
                        self.ctx.progress.file_done();
                        return Some(PendingNode {
                            node,
                            pending: Pending::Done,
                            path: shown,
                        });
                    }
                }
                let (tx, rx) = bounded(1);
                let job = FileJob {
                    path: path.to_path_buf(),
                    reply: tx,
                };
                if self.files.send(job).is_err() {
                    return None;
                }
                Pending::Content {
                    rx,
                    changed: old.is_some(),
                }
            }
            NodeType::Dir => {
                let old_id = old
                    .filter(|o| o.kind == NodeType::Dir)
                    .and_then(|o| o.subtree);
                let rx = if self.ctx.one_file_system && md.dev() != dev {
                    // A mount point: keep the empty directory, not what is mounted there.
                    self.dir_job(Vec::new())
                } else {
                    let old_tree = old_id.and_then(|id| self.ctx.repo.load_tree(&id).ok());
                    self.walk_dir(path, old_tree.as_ref(), Some(dev))
                };
                Pending::Subtree { rx, parent: old_id }
            }
            _ => Pending::Done,
        };
        Some(PendingNode {
            node,
            pending,
            path: shown,
        })
    }

    pub(super) fn walk_dir(
        &self,
        path: &Path,
        parent: Option<&Tree>,
        dev: Option<u64>,
    ) -> Receiver<TreeResult> {
        let dev = dev.unwrap_or_else(|| {
            std::fs::symlink_metadata(path)
                .map(|m| m.dev())
                .unwrap_or(0)
        });
        let mut entries: Vec<(Vec<u8>, PathBuf)> = match std::fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some((e.file_name().as_bytes().to_vec(), e.path())),
                    Err(err) => {
                        self.ctx.warn(format!("{}: {err}", path.display()));
                        None
                    }
                })
                .collect(),
            Err(e) => {
                self.ctx.warn(format!("{}: {e}", path.display()));
                Vec::new()
            }
        };
        entries.sort();
        // Entries (and the subdirectories under them) are examined on the walker pool; the
        // collected order is the sorted order, and this directory's job is queued only after
        // every descendant's, so the tree saver never waits for a job behind it.
        let nodes: Vec<PendingNode> = entries
            .into_par_iter()
            .with_max_len(WALK_BATCH)
            .filter_map(|(name, p)| {
                if self.ctx.cancelled() {
                    return None;
                }
                let md = match std::fs::symlink_metadata(&p) {
                    Ok(m) => m,
                    Err(e) => {
                        self.ctx.warn(format!("{}: {e}", p.display()));
                        return None;
                    }
                };
                self.entry(&name, &p, &md, parent, dev)
            })
            .collect();
        self.dir_job(nodes)
    }

    pub(super) fn stream_root(
        &self,
        streams: Vec<StreamSource>,
        carried: Vec<Node>,
        seal: &Sender<SealJob>,
        failed: &mut Option<(String, String)>,
    ) -> Result<Receiver<TreeResult>, String> {
        let mut names = std::collections::HashSet::new();
        let carried_names: Vec<String> = carried.iter().map(Node::name_lossy).collect();
        for f in streams.iter().map(|s| &s.filename).chain(&carried_names) {
            if f.is_empty() || f.contains('/') || f == "." || f == ".." {
                return Err(format!(
                    "invalid stream file name {f:?}: use a plain file name"
                ));
            }
            if !names.insert(f.clone()) {
                return Err(format!("two streams are both called {f:?}"));
            }
        }
        let mut nodes = Vec::new();
        {
            let idx = self.ctx.repo.index();
            let c = &self.ctx.counters;
            for (node, path) in carried.into_iter().zip(carried_names) {
                if node.kind != NodeType::File {
                    return Err(format!("carried entry {path:?} is not a file"));
                }
                let content = node.content.as_deref().unwrap_or_default();
                if let Some(id) = content.iter().find(|id| !idx.has(id, BlobType::Data)) {
                    return Err(format!(
                        "{path}, kept from the previous snapshot, refers to data blob {} that the index does not have (pruned or damaged): run `coffer check`, or back up in full with --force",
                        id.short()
                    ));
                }
                c.files_unmodified.fetch_add(1, Ordering::Relaxed);
                c.files.fetch_add(1, Ordering::Relaxed);
                c.bytes.fetch_add(node.size, Ordering::Relaxed);
                self.ctx.progress.add_bytes(node.size);
                self.ctx.progress.file_done();
                nodes.push(PendingNode {
                    node,
                    pending: Pending::Done,
                    path,
                });
            }
        }
        let (uid, gid) = coffer_repo::sysinfo::uid_gid();
        for stream in streams {
            let StreamSource {
                filename,
                mut reader,
                finish,
            } = stream;
            self.ctx.progress.set_current(&filename);
            let now = Local::now();
            let mut node = Node::new(filename.as_bytes().to_vec(), NodeType::File);
            node.mode = 0o644;
            node.mtime = now.fixed_offset();
            node.atime = node.mtime;
            node.ctime = node.mtime;
            node.uid = uid;
            node.gid = gid;
            node.user = coffer_repo::sysinfo::username();
            node.links = 1;
            let read = self.ctx.read_stream(&mut *reader, seal);
            drop(reader);
            // The producer's verdict comes first: a dump that died mid-stream is the error
            // to report, not the short read it caused.
            if let Err(message) = finish() {
                *failed = Some((filename, message));
                return Err("stream failed".into());
            }
            let (ids, size) = read?;
            let c = &self.ctx.counters;
            c.files_new.fetch_add(1, Ordering::Relaxed);
            c.files.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(size, Ordering::Relaxed);
            node.content = Some(ids);
            node.size = size;
            self.ctx.progress.file_done();
            nodes.push(PendingNode {
                node,
                pending: Pending::Done,
                path: filename,
            });
        }
        nodes.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        Ok(self.dir_job(nodes))
    }
}

/// Counts files and bytes below the targets for the progress ETA.
pub(super) fn scan(ctx: &Ctx, targets: &[PathBuf]) {
    let mut stack: Vec<PathBuf> = targets.to_vec();
    while let Some(p) = stack.pop() {
        if ctx.cancelled() {
            return;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if ctx.excludes.matches(&p) {
            continue;
        }
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if md.is_file() {
            ctx.progress.total_files.fetch_add(1, Ordering::Relaxed);
            ctx.progress
                .total_bytes
                .fetch_add(md.size(), Ordering::Relaxed);
        }
    }
    ctx.progress.scan_finished.store(true, Ordering::Relaxed);
}
