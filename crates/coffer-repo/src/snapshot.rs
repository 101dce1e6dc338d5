//! Snapshots: small JSON files under `snapshots/` naming the root tree of one backup, when and
//! where it was taken, tags, and (restic 0.17+) a summary of what the backup did. A snapshot is
//! written last, after every pack and index file it needs, so its presence means "complete".

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::id::Id;

/// Statistics restic records with a snapshot (restic 0.17 field names).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SnapshotSummary {
    /// When the backup started.
    pub backup_start: Option<DateTime<FixedOffset>>,
    /// When it ended.
    pub backup_end: Option<DateTime<FixedOffset>>,
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose content or metadata changed.
    pub files_changed: u64,
    /// Files taken from the parent without reading.
    pub files_unmodified: u64,
    /// New directories.
    pub dirs_new: u64,
    /// Changed directories.
    pub dirs_changed: u64,
    /// Unchanged directories.
    pub dirs_unmodified: u64,
    /// Data blobs added.
    pub data_blobs: u64,
    /// Tree blobs added.
    pub tree_blobs: u64,
    /// Plaintext bytes added.
    pub data_added: u64,
    /// Bytes added after compression and encryption.
    #[serde(default)]
    pub data_added_packed: u64,
    /// Files processed.
    pub total_files_processed: u64,
    /// Bytes processed.
    pub total_bytes_processed: u64,
}

fn empty<T>(v: &[T]) -> bool {
    v.is_empty()
}

/// One snapshot file.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Snapshot {
    /// When the backup started.
    pub time: DateTime<FixedOffset>,
    /// The snapshot this one was compared against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    /// Root tree.
    pub tree: Id,
    /// Backed-up paths, absolute.
    pub paths: Vec<String>,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// User name.
    #[serde(default)]
    pub username: String,
    /// uid of the user.
    #[serde(default)]
    pub uid: u32,
    /// gid of the user.
    #[serde(default)]
    pub gid: u32,
    /// Exclude patterns used.
    #[serde(default, skip_serializing_if = "empty")]
    pub excludes: Vec<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "empty")]
    pub tags: Vec<String>,
    /// The snapshot this one was rewritten from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    /// Program that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_version: Option<String>,
    /// Backup statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotSummary>,
    /// Fields coffer or other clients add (restic ignores unknown fields).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Snapshot {
    /// True if the snapshot carries every tag in `tags`.
    pub fn has_tags(&self, tags: &[String]) -> bool {
        tags.iter().all(|t| self.tags.contains(t))
    }
}

/// A snapshot with the id of its file.
#[derive(Clone, Debug)]
pub struct SnapshotWithId {
    /// File id.
    pub id: Id,
    /// Contents.
    pub snap: Snapshot,
}

/// The snapshot `spec` names among `snaps` (oldest first): `latest` is the last one, anything
/// else a full id or a unique, non-empty id prefix. The one rule every command resolves by.
pub fn resolve<'a>(snaps: &'a [SnapshotWithId], spec: &str) -> crate::Result<&'a SnapshotWithId> {
    use crate::RepoError;
    if spec == "latest" {
        return snaps
            .last()
            .ok_or_else(|| RepoError::SnapshotNotFound(spec.to_string()));
    }
    let mut m = snaps.iter().filter(|s| s.id.has_prefix(spec));
    match (m.next(), m.next()) {
        (Some(s), None) if !spec.is_empty() => Ok(s),
        (Some(_), _) => Err(RepoError::SnapshotAmbiguous(spec.to_string())),
        (None, _) => Err(RepoError::SnapshotNotFound(spec.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoError;

    #[test]
    fn one_rule_resolves_snapshot_names() {
        let snaps: Vec<SnapshotWithId> = (0..3u8)
            .map(|i| SnapshotWithId {
                id: Id::hash(&[i]),
                snap: serde_json::from_str(
                    r#"{"time":"2026-01-01T00:00:00Z","tree":"0000000000000000000000000000000000000000000000000000000000000000","paths":["/"],"hostname":"h","username":"u"}"#,
                )
                .unwrap(),
            })
            .collect();
        assert_eq!(resolve(&snaps, "latest").unwrap().id, snaps[2].id);
        let full = snaps[1].id.to_hex();
        assert_eq!(resolve(&snaps, &full).unwrap().id, snaps[1].id);
        assert_eq!(resolve(&snaps, &full[..8]).unwrap().id, snaps[1].id);
        assert!(matches!(
            resolve(&snaps, ""),
            Err(RepoError::SnapshotAmbiguous(_))
        ));
        assert!(matches!(
            resolve(&snaps, "zz"),
            Err(RepoError::SnapshotNotFound(_))
        ));
        assert!(matches!(
            resolve(&[], "latest"),
            Err(RepoError::SnapshotNotFound(_))
        ));
    }
}
