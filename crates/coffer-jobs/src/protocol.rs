//! The lines `coffer backup --json` prints, one JSON object each, typed once: the CLI writes
//! them and [`crate::backup_source`] reads them back from the child it runs for each source.
//! Status lines (progress) share the stream and are not part of the protocol: a reader skips
//! every line that is not one of these.

use coffer_repo::snapshot::SnapshotSummary;
use serde::{Deserialize, Serialize};

/// One line of a backup's JSON output, told apart by its `message_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "message_type", rename_all = "snake_case")]
pub enum BackupMessage {
    /// An item that could not be read: the backup went on without it (a WARNING run).
    Error {
        /// What went wrong.
        error: ErrorText,
        /// The phase: "archival".
        during: String,
    },
    /// The last line: what the backup did.
    Summary(BackupSummary),
}

/// The message of an [`BackupMessage::Error`] (nested as restic nests it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorText {
    /// The message.
    pub message: String,
}

/// What a backup did: the snapshot's statistics under restic's field names, with the time it
/// took, the snapshot made and the count of warnings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// The statistics recorded with the snapshot.
    #[serde(flatten)]
    pub stats: SnapshotSummary,
    /// Seconds the backup took.
    pub total_duration: f64,
    /// The snapshot saved, in hex.
    pub snapshot_id: String,
    /// Items that could not be read.
    pub warnings: u64,
}

impl BackupMessage {
    /// The message as one line of JSON (without the newline).
    pub fn to_line(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads one line; `None` for a line of another kind (progress) or not JSON.
    pub fn parse(line: &str) -> Option<BackupMessage> {
        serde_json::from_str(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_others_are_skipped() {
        let s = BackupMessage::Summary(BackupSummary {
            stats: SnapshotSummary {
                files_new: 3,
                total_bytes_processed: 1 << 40,
                ..Default::default()
            },
            total_duration: 1.5,
            snapshot_id: "ab".repeat(32),
            ..Default::default()
        });
        let line = s.to_line();
        assert!(line.starts_with(r#"{"message_type":"summary","#), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["total_bytes_processed"],
            1u64 << 40,
            "restic's flat field names"
        );
        assert_eq!(BackupMessage::parse(&line), Some(s));
        let e = BackupMessage::Error {
            error: ErrorText {
                message: "/x: permission denied".into(),
            },
            during: "archival".into(),
        };
        let line = e.to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["error"]["message"], "/x: permission denied");
        assert_eq!(BackupMessage::parse(&line), Some(e));
        assert_eq!(
            BackupMessage::parse(r#"{"message_type":"status","percent_done":0.5}"#),
            None
        );
        assert_eq!(BackupMessage::parse("Fatal: no"), None);
    }
}
