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
