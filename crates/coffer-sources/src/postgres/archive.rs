//! The WAL archive of a physical PostgreSQL source, inside the repository.
//!
//! **How WAL lives in the repository.** Every file PostgreSQL archives (segment, partial
//! segment, backup or timeline history file) becomes one snapshot of its own: one file at the
//! root, tagged `source:NAME`, `type:postgres` and `wal`, with its name, kind, timeline, size,
//! SHA-256 and the cluster's system identifier under the snapshot's `coffer` key. A snapshot
//! is the repository's only atomic commit, so `wal-push` can answer 0 exactly when the segment
//! is durable (pack, index, then snapshot file, each synced on local disk), and stock `restic
//! check`, `ls` and `restore` see ordinary snapshots.
//!
//! Base backups and segments share a `log_chain` (`postgres/<source>/<system id>`); segments
//! carry `log_position` (log and segment number) and base backups `log_start` (the segment
//! their WAL starts in). `coffer forget` never applies the keep-policy to `wal` snapshots:
//! it removes a segment only when it lies before the start of the oldest base backup kept in
//! its chain (`coffer_maint::retention::log_removals`), so every kept base backup can be
//! restored to any point up to the newest archived segment. Timeline history files are tiny
//! and always kept. (A stock `restic forget` knows none of this: use coffer's.)

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use coffer_archiver::{BackupOptions, FileReader, Progress, StreamSource};
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::tree::NodeType;
use coffer_repo::{Id, Repository};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::wal::{self, WalKind, WalName};
use crate::{source_tags, SourceError};

/// The tag every WAL snapshot carries.
pub const WAL_TAG: &str = "wal";
/// The tag every physical base backup carries.
pub const BASE_TAG: &str = "basebackup";

/// The chain a source's base backups and WAL of one cluster share.
pub fn chain_id(source: &str, system_identifier: u64) -> String {
    format!("postgres/{source}/{system_identifier}")
}

/// One archived file, as its snapshot describes it.
#[derive(Clone, Debug)]
pub struct Archived {
    /// Its snapshot.
    pub snap: SnapshotWithId,
    /// The parsed name.
    pub name: WalName,
    /// The cluster it came from.
    pub system_identifier: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

fn manifest(s: &SnapshotWithId) -> Option<&serde_json::Map<String, Value>> {
    s.snap.extra.get("coffer")?.as_object()
}

fn sysid_of(m: &serde_json::Map<String, Value>) -> Option<u64> {
    m.get("system_identifier")?.as_str()?.parse().ok()
}

/// The archived files of `source`, oldest snapshot first.
pub fn archived(snaps: &[SnapshotWithId], source: &str) -> Vec<Archived> {
    let tag = format!("source:{source}");
    snaps
        .iter()
        .filter(|s| s.snap.tags.contains(&tag) && s.snap.tags.iter().any(|t| t == WAL_TAG))
        .filter_map(|s| {
            let m = manifest(s)?;
            let w = m.get("wal")?;
            Some(Archived {
                snap: s.clone(),
                name: WalName::parse(w.get("name")?.as_str()?)?,
                system_identifier: sysid_of(m)?,
                sha256: w.get("sha256")?.as_str()?.to_string(),
                size: w.get("size")?.as_u64()?,
            })
        })
        .collect()
}

/// A physical base backup, as its snapshot describes it.
#[derive(Clone, Debug)]
pub struct BaseBackup {
    /// Its snapshot.
    pub snap: SnapshotWithId,
    /// The cluster.
    pub system_identifier: u64,
    /// Timeline the backup started on.
    pub timeline: u32,
    /// Where its WAL starts and ends.
    pub start_lsn: u64,
    /// The end of the backup: recovery must replay at least this far.
    pub stop_lsn: u64,
    /// WAL segment size.
    pub seg_size: u64,
    /// When pg_basebackup returned (a point in time after the backup's end).
    pub finished_at: DateTime<FixedOffset>,
    /// PostgreSQL version.
    pub server_version: String,
}

impl BaseBackup {
    /// The segments recovery needs at least, first to last (names on the backup's timeline).
    pub fn needed_segments(&self) -> Vec<String> {
        let first = self.start_lsn / self.seg_size;
        let last = self.stop_lsn.saturating_sub(1).max(self.start_lsn) / self.seg_size;
        (first..=last)
            .map(|n| wal::segment_name(self.timeline, n * self.seg_size, self.seg_size))
            .collect()
    }
}

/// The base backups of `source`, oldest first.
pub fn base_backups(snaps: &[SnapshotWithId], source: &str) -> Vec<BaseBackup> {
    let tag = format!("source:{source}");
    let mut v: Vec<BaseBackup> = snaps
        .iter()
        .filter(|s| s.snap.tags.contains(&tag) && s.snap.tags.iter().any(|t| t == BASE_TAG))
        .filter_map(|s| {
            let m = manifest(s)?;
            Some(BaseBackup {
                snap: s.clone(),
                system_identifier: sysid_of(m)?,
                timeline: u32::try_from(m.get("timeline")?.as_u64()?).ok()?,
                start_lsn: wal::parse_lsn(m.get("start_lsn")?.as_str()?)?,
                stop_lsn: wal::parse_lsn(m.get("stop_lsn")?.as_str()?)?,
                seg_size: m.get("wal_segment_size")?.as_u64()?,
                finished_at: DateTime::parse_from_rfc3339(m.get("finished_at")?.as_str()?).ok()?,
                server_version: m
                    .get("server_version")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
        })
        .collect();
    v.sort_by_key(|b| b.snap.snap.time);
    v
}

/// What `wal-push` was asked to archive.
pub struct PushRequest<'a> {
    /// The source.
    pub source: &'a str,
    /// The file (`%p`: relative to the data directory, which is the working directory).
    pub path: &'a Path,
    /// Host name for the snapshot.
    pub host: String,
    /// The cluster's data directory, when known (the working directory of archive_command).
    pub data_dir: Option<PathBuf>,
}

/// What `wal-push` did.
#[derive(Debug)]
pub enum PushOutcome {
    /// Stored as a new snapshot.
    Stored {
        /// The snapshot.
        snapshot: Id,
        /// Bytes archived.
        bytes: u64,
        /// Bytes the repository grew by (after deduplication and compression).
        stored: u64,
    },
    /// The identical file was already archived; nothing written.
    AlreadyArchived {
        /// The existing snapshot.
        snapshot: Id,
    },
}

fn read_file(path: &Path) -> Result<Vec<u8>, SourceError> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(data)
}

/// Archives one WAL file. Returns only when it is durable in the repository (or was already
/// there with the same content); a different file under an archived name is refused.
/// The caller holds a shared lock.
pub fn push(repo: Arc<Repository>, req: &PushRequest<'_>) -> Result<PushOutcome, SourceError> {
    let file_name = req
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = WalName::parse(&file_name).ok_or_else(|| {
        SourceError::Wal(format!(
            "{}: not a WAL file name (wal-push takes %p, the path PostgreSQL passes to archive_command)",
            req.path.display()
        ))
    })?;
    let data = read_file(req.path)?;
    let cluster = req
        .data_dir
        .as_deref()
        .and_then(wal::control_system_identifier);
    let snaps = repo.snapshots()?;
    let sysid = match name.kind {
        WalKind::Segment | WalKind::Partial => {
            let h = wal::check_segment(&name, &data).map_err(|e| {
                SourceError::Wal(format!(
                    "refusing {}: {e}",
                    req.path.display()
                ))
            })?;
            if let Some(c) = cluster {
                if c != h.system_identifier {
                    return Err(SourceError::Wal(format!(
                        "refusing {name}: it belongs to the cluster with system identifier {} but the data directory is cluster {c}",
                        h.system_identifier
                    )));
                }
            }
            h.system_identifier
        }
        // History files carry no header: they belong to the cluster that archives them.
        WalKind::BackupHistory | WalKind::TimelineHistory => match cluster {
            Some(c) => c,
            None => newest_sysid(&snaps, req.source).ok_or_else(|| {
                SourceError::Wal(format!(
                    "cannot tell which cluster {name} belongs to: run wal-push from the data directory, as archive_command does"
                ))
            })?,
        },
    };
    let sha = hex::encode(Sha256::digest(&data));
    if let Some(prev) = archived(&snaps, req.source)
        .into_iter()
        .rfind(|a| a.name.name == name.name && a.system_identifier == sysid)
    {
        if prev.sha256 == sha {
            return Ok(PushOutcome::AlreadyArchived {
                snapshot: prev.snap.id,
            });
        }
        return Err(SourceError::Wal(format!(
            "refusing {name}: a different file of that name is already archived for source {:?} \
             (snapshot {}, sha256 {} here vs {}); two clusters with one system identifier may be \
             archiving into this source, for example a restored copy that was not given its own",
            req.source,
            prev.snap.id.short(),
            &sha[..16],
            &prev.sha256[..prev.sha256.len().min(16)]
        )));
    }
    if let Some(base) = base_backups(&snaps, req.source).last() {
        if base.system_identifier != sysid {
            tracing::warn!(
                source = req.source,
                "{name} is from cluster {sysid}, the newest base backup from cluster {}: \
                 take a new base backup so that this WAL can be restored",
                base.system_identifier
            );
        }
    }

    let size = data.len() as u64;
    let mut m = serde_json::Map::new();
    m.insert("mode".into(), "wal".into());
    m.insert("system_identifier".into(), sysid.to_string().into());
    m.insert("log_chain".into(), chain_id(req.source, sysid).into());
    if let Some(p) = name.position() {
        m.insert("log_position".into(), p.into());
    }
    m.insert(
        "wal".into(),
        json!({
            "name": name.name,
            "kind": name.kind.as_str(),
            "timeline": name.timeline,
            "size": size,
            "sha256": sha,
        }),
    );
    let mut tags = source_tags(req.source, "postgres");
    tags.push(WAL_TAG.into());
    let opts = BackupOptions {
        streams: vec![StreamSource {
            filename: name.name.clone(),
            reader: Box::new(std::io::Cursor::new(data)),
            finish: Box::new(|| Ok(())),
        }],
        tags,
        host: req.host.clone(),
        finalize: Some(Box::new(move |extra| {
            extra.insert("coffer".into(), Value::Object(m));
        })),
        ..Default::default()
    };
    let r = coffer_archiver::backup(
        repo,
        opts,
        Arc::new(Progress::default()),
        Arc::new(AtomicBool::new(false)),
    )?;
    Ok(PushOutcome::Stored {
        snapshot: r.snapshot_id,
        bytes: size,
        stored: r.summary.data_added_packed,
    })
}

/// The system identifier of the newest base backup or archived file of `source`.
fn newest_sysid(snaps: &[SnapshotWithId], source: &str) -> Option<u64> {
    let base = base_backups(snaps, source)
        .into_iter()
        .last()
        .map(|b| (b.snap.snap.time, b.system_identifier));
    let seg = archived(snaps, source)
        .into_iter()
        .max_by_key(|a| a.snap.snap.time)
        .map(|a| (a.snap.snap.time, a.system_identifier));
    base.into_iter()
        .chain(seg)
        .max_by_key(|(t, _)| *t)
        .map(|(_, s)| s)
}

/// What `wal-fetch` did.
#[derive(Debug)]
pub enum FetchOutcome {
    /// Written to the destination.
    Restored {
        /// The snapshot it came from.
        snapshot: Id,
        /// Its size.
        bytes: u64,
    },
    /// Not in the archive (normal at the end of recovery).
    NotFound,
}

/// Restores the archived file `name` of cluster `system_identifier` (default: the cluster of
/// the newest base backup) to `dest`, after checking its hash and header. The caller holds a
/// shared lock and has loaded the index.
pub fn fetch(
    repo: Arc<Repository>,
    source: &str,
    name: &str,
    dest: &Path,
    system_identifier: Option<u64>,
) -> Result<FetchOutcome, SourceError> {
    wal_name(name)?;
    let snaps = repo.snapshots()?;
    fetch_in(repo, &snaps, source, name, dest, system_identifier)
}

/// `name` as a WAL file name, checked before any listing: a typo in restore_command must not
/// look like the end of the archive.
pub fn wal_name(name: &str) -> Result<WalName, SourceError> {
    WalName::parse(name).ok_or_else(|| {
        SourceError::Wal(format!(
            "{name:?} is not a WAL file name (wal-fetch takes %f %p)"
        ))
    })
}

/// [`fetch`] from the listing `snaps` of the repository.
pub fn fetch_in(
    repo: Arc<Repository>,
    snaps: &[SnapshotWithId],
    source: &str,
    name: &str,
    dest: &Path,
    system_identifier: Option<u64>,
) -> Result<FetchOutcome, SourceError> {
    let sysid = match system_identifier {
        Some(s) => Some(s),
        None => base_backups(snaps, source)
            .last()
            .map(|b| b.system_identifier),
    };
    let mut candidates: Vec<Archived> = archived(snaps, source)
        .into_iter()
        .filter(|a| a.name.name == name && sysid.is_none_or(|s| a.system_identifier == s))
        .collect();
    let clusters: std::collections::BTreeSet<u64> =
        candidates.iter().map(|a| a.system_identifier).collect();
    if clusters.len() > 1 {
        return Err(SourceError::Wal(format!(
            "{name} is archived for several clusters of source {source:?} ({}): choose one with --system-id",
            clusters.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        )));
    }
    candidates.sort_by_key(|a| a.snap.snap.time);
    let Some(found) = candidates.pop() else {
        return Ok(FetchOutcome::NotFound);
    };
    let bytes = restore_archived(&repo, &found, dest)?;
    Ok(FetchOutcome::Restored {
        snapshot: found.snap.id,
        bytes,
    })
}

/// Writes the archived file `found` to `dest` after checking its size, SHA-256 and (for a
/// segment) its header against what was recorded when it was archived; returns its size.
/// The caller has loaded the index.
pub fn restore_archived(
    repo: &Arc<Repository>,
    found: &Archived,
    dest: &Path,
) -> Result<u64, SourceError> {
    let name = found.name.name.as_str();
    let root = repo.load_tree(&found.snap.snap.tree)?;
    let node = root
        .nodes
        .iter()
        .find(|n| n.name == name.as_bytes() && n.kind == NodeType::File)
        .ok_or_else(|| {
            SourceError::Snapshot(format!(
                "WAL snapshot {} has no file {name}",
                found.snap.id.short()
            ))
        })?;
    let mut data = Vec::with_capacity(found.size as usize);
    FileReader::new(Arc::clone(repo), node)
        .read_to_end(&mut data)
        .map_err(|e| {
            SourceError::Snapshot(format!(
                "reading {name} from snapshot {}: {e}",
                found.snap.id.short()
            ))
        })?;
    let sha = hex::encode(Sha256::digest(&data));
    if sha != found.sha256 || data.len() as u64 != found.size {
        return Err(SourceError::Wal(format!(
            "{name} from snapshot {} does not match its recorded size and SHA-256: not restoring it",
            found.snap.id.short()
        )));
    }
    if matches!(found.name.kind, WalKind::Segment | WalKind::Partial) {
        let h = wal::check_segment(&found.name, &data)
            .map_err(|e| SourceError::Wal(format!("archived {e}")))?;
        if h.system_identifier != found.system_identifier {
            return Err(SourceError::Wal(format!(
                "archived {name} holds cluster {} but was recorded for cluster {}",
                h.system_identifier, found.system_identifier
            )));
        }
    }
    crate::util::write_file(dest, &data[..]).map_err(SourceError::Wal)?;
    Ok(data.len() as u64)
}

/// The archived files a replay from `base` may read: the cluster's timeline history files
/// and every segment from the backup's start on, on its timeline or a later one; the newest
/// copy of each name.
pub fn replay_set<'a>(base: &BaseBackup, archive: &'a [Archived]) -> Vec<&'a Archived> {
    let first = WalName::parse(&wal::segment_name(
        base.timeline,
        base.start_lsn,
        base.seg_size,
    ))
    .and_then(|n| n.position())
    .unwrap_or_default();
    let mut out: std::collections::BTreeMap<&str, &Archived> = Default::default();
    for a in archive.iter().filter(|a| {
        a.system_identifier == base.system_identifier
            && match a.name.kind {
                WalKind::TimelineHistory => true,
                WalKind::BackupHistory => false,
                _ => {
                    a.name.timeline >= base.timeline
                        && a.name.position().is_some_and(|p| p >= first)
                }
            }
    }) {
        let e = out.entry(a.name.name.as_str()).or_insert(a);
        if a.snap.snap.time > e.snap.snap.time {
            *e = a;
        }
    }
    out.into_values().collect()
}

/// Checks that the archive holds every segment `base` needs; returns the missing names.
pub fn missing_segments(base: &BaseBackup, archive: &[Archived]) -> Vec<String> {
    base.needed_segments()
        .into_iter()
        .filter(|n| {
            !archive
                .iter()
                .any(|a| &a.name.name == n && a.system_identifier == base.system_identifier)
        })
        .collect()
}

/// The newest segment archived for the cluster on any timeline, continuing the base backup's
/// WAL without a gap: how far a restore of `base` can go.
pub fn contiguous_end(base: &BaseBackup, archive: &[Archived]) -> Option<String> {
    let positions: std::collections::BTreeSet<String> = archive
        .iter()
        .filter(|a| {
            a.system_identifier == base.system_identifier
                && matches!(a.name.kind, WalKind::Segment | WalKind::Partial)
        })
        .filter_map(|a| a.name.position())
        .collect();
    let first = WalName::parse(&wal::segment_name(
        base.timeline,
        base.start_lsn,
        base.seg_size,
    ))?;
    let per_log = 0x1_0000_0000 / base.seg_size;
    let mut segno = u64::from(first.log) * per_log + u64::from(first.seg);
    let mut last = None;
    loop {
        let pos = format!("{:08X}{:08X}", segno / per_log, segno % per_log);
        if !positions.contains(&pos) {
            return last;
        }
        last = Some(pos);
        segno += 1;
    }
}
