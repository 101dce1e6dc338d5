//! The pipeline's stage threads: sealers (hash, dedup, compress, encrypt, pack), readers
//! (read and chunk files) and the tree saver (one tree blob per directory, post-order).

use super::*;

pub(super) fn spawn(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("spawning a backup thread")
}

/// Why a file's stored copy may mix old and new content: it was written to while it was
/// read (size, mtime or ctime moved, or fewer or more bytes came than it had). The copy is
/// kept, as restic keeps it, but the backup says so and does not end as a clean success.
pub(super) fn changed_while_read(
    before: &std::fs::Metadata,
    after: Option<&std::fs::Metadata>,
    read: u64,
) -> Option<String> {
    let after = after?;
    let stamp = |m: &std::fs::Metadata| (m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec());
    if after.len() != before.len() || read != before.len() {
        return Some(format!(
            "changed while it was read (size {} bytes when opened, {} bytes read, {} bytes now): \
             the stored copy may mix old and new content; back it up again",
            before.len(),
            read,
            after.len()
        ));
    }
    if stamp(after) != stamp(before) {
        return Some(
            "changed while it was read (its modification time moved): the stored copy may \
             mix old and new content; back it up again"
                .into(),
        );
    }
    None
}

pub(super) fn sealer(ctx: Arc<Ctx>, rx: Receiver<SealJob>) {
    let mut sealer = Sealer::new(ctx.repo.compression());
    for job in rx {
        if ctx.error.lock().is_some() {
            continue;
        }
        let id = Id::hash(job.data.data());
        let _ = job.ids.send((job.slot, id));
        if !ctx.packer.reserve(&id, BlobType::Data) {
            ctx.bufs.give(job.data);
            continue;
        }
        let (payload, unc) = sealer.compress(job.data.data());
        if let Err(e) = ctx
            .packer
            .add_compressed(id, BlobType::Data, payload, job.data.len, unc)
        {
            ctx.fail(e.to_string());
        }
        ctx.bufs.give(job.data);
    }
}

pub(super) fn reader(ctx: Arc<Ctx>, rx: Receiver<FileJob>, seal: Sender<SealJob>) {
    for job in rx {
        let r = if ctx.cancelled() {
            Err("interrupted".into())
        } else {
            ctx.progress.set_current(&job.path.to_string_lossy());
            match open_noatime(&job.path) {
                Ok(mut f) => {
                    let before = f.metadata().ok();
                    let r = ctx.read_stream(&mut f, &seal);
                    if let (Ok((_, n)), Some(before)) = (&r, &before) {
                        let after = f.metadata().ok();
                        if let Some(why) = changed_while_read(before, after.as_ref(), *n) {
                            ctx.warn(format!("{}: {why}", job.path.display()));
                        }
                    }
                    r
                }
                Err(e) => Err(e.to_string()),
            }
        };
        if let Ok((_, n)) = &r {
            ctx.counters.bytes.fetch_add(*n, Ordering::Relaxed);
        }
        ctx.counters.files.fetch_add(1, Ordering::Relaxed);
        ctx.progress.file_done();
        let _ = job.reply.send(r);
    }
}

pub(super) fn tree_saver(ctx: Arc<Ctx>, rx: Receiver<DirJob>) {
    for job in rx {
        let mut tree = Tree::default();
        for p in job.nodes {
            let PendingNode {
                mut node,
                pending,
                path,
            } = p;
            match pending {
                Pending::Done => {}
                Pending::Content { rx, changed } => match rx.recv() {
                    Ok(Ok((ids, size))) => {
                        // Counted once read: a file that could not be read is a warning,
                        // not a new file.
                        let c = &ctx.counters;
                        match changed {
                            true => c.files_changed.fetch_add(1, Ordering::Relaxed),
                            false => c.files_new.fetch_add(1, Ordering::Relaxed),
                        };
                        node.content = Some(ids);
                        node.size = size;
                    }
                    Ok(Err(e)) => {
                        if !ctx.cancelled() {
                            ctx.warn(format!("{path}: {e}"));
                        }
                        continue;
                    }
                    Err(_) => continue,
                },
                Pending::Subtree { rx, parent } => match rx.recv() {
                    Ok(Ok(id)) => {
                        let c = &ctx.counters;
                        match parent {
                            None => c.dirs_new.fetch_add(1, Ordering::Relaxed),
                            Some(p) if p == id => c.dirs_unmodified.fetch_add(1, Ordering::Relaxed),
                            Some(_) => c.dirs_changed.fetch_add(1, Ordering::Relaxed),
                        };
                        node.subtree = Some(id);
                    }
                    Ok(Err(e)) => {
                        if !ctx.cancelled() {
                            ctx.warn(format!("{path}: {e}"));
                        }
                        continue;
                    }
                    Err(_) => continue,
                },
            }
            tree.nodes.push(node);
        }
        ctx.progress.dirs_done.fetch_add(1, Ordering::Relaxed);
        let r = ctx
            .packer
            .save_blob(BlobType::Tree, &tree.to_blob())
            .map(|(id, _)| id)
            .map_err(|e| {
                ctx.fail(e.to_string());
                e.to_string()
            });
        let _ = job.reply.send(r);
    }
}
