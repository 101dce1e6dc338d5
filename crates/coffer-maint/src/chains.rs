//! Log chains: continuous logs (PostgreSQL WAL) archived as one snapshot per file, which a
//! keep-policy must not thin out like backups. A base backup starts a chain position
//! (`coffer.log_chain` and `coffer.log_start` in its snapshot); each archived log file carries
//! `coffer.log_chain` and, unless it is always needed (timeline history), `coffer.log_position`.
//! Positions are fixed-width hex, so they sort as strings.
//!
//! The rule `forget` applies: log files never go through the policy; once the policy has
//! decided which base backups stay, a log file is removed when it lies before the start of
//! the oldest base backup that stays in its chain. A chain with no base backup left keeps all
//! its log files (they may be all that is left of that cluster); `forget ID` removes them.

use std::collections::{BTreeMap, HashSet};

use coffer_repo::snapshot::{Snapshot, SnapshotWithId};
use coffer_repo::Id;

fn field<'s>(s: &'s Snapshot, key: &str) -> Option<&'s str> {
    s.extra.get("coffer")?.get(key)?.as_str()
}

/// Whether the snapshot is an archived log file (part of a chain, not a base backup).
pub fn is_log_file(s: &Snapshot) -> bool {
    field(s, "log_chain").is_some() && field(s, "log_start").is_none()
}

/// What [`log_removals`] decided.
#[derive(Debug, Default)]
pub struct LogDecision<'a> {
    /// Log files no base backup that stays needs.
    pub remove: Vec<&'a SnapshotWithId>,
    /// Log files kept.
    pub keep: Vec<&'a SnapshotWithId>,
    /// Per chain: the start position of its oldest remaining base backup, or None when no
    /// base backup remains (all its log files are kept).
    pub chains: BTreeMap<String, Option<String>>,
}

/// Decides which of `logs` to remove, given every snapshot in the repository (`all`, for the
/// base backups) and the ids the policy removes.
pub fn log_removals<'a>(
    logs: &[&'a SnapshotWithId],
    all: &[SnapshotWithId],
    removed: &HashSet<Id>,
) -> LogDecision<'a> {
    let mut starts: BTreeMap<String, Option<String>> = BTreeMap::new();
    for s in logs {
        if let Some(c) = field(&s.snap, "log_chain") {
            starts.entry(c.to_string()).or_default();
        }
    }
    for b in all.iter().filter(|b| !removed.contains(&b.id)) {
        if let (Some(chain), Some(start)) =
            (field(&b.snap, "log_chain"), field(&b.snap, "log_start"))
        {
            if let Some(slot) = starts.get_mut(chain) {
                if slot.as_deref().is_none_or(|cur| start < cur) {
                    *slot = Some(start.to_string());
                }
            }
        }
    }
    let mut d = LogDecision::default();
    for s in logs {
        let chain = field(&s.snap, "log_chain").unwrap_or_default();
        let min = starts.get(chain).cloned().flatten();
        let before = match (field(&s.snap, "log_position"), min) {
            (Some(pos), Some(min)) => pos < min.as_str(),
            _ => false,
        };
        if before {
            d.remove.push(s);
        } else {
            d.keep.push(s);
        }
    }
    d.chains = starts;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_repo::snapshot::Snapshot;
    use serde_json::json;

    fn snap(n: u8, coffer: serde_json::Value) -> SnapshotWithId {
        let mut s: Snapshot = serde_json::from_value(json!({
            "time": "2026-01-01T00:00:00Z", "tree": "0".repeat(64),
            "paths": ["/x"], "hostname": "h"
        }))
        .unwrap();
        s.extra.insert("coffer".into(), coffer);
        SnapshotWithId {
            id: Id([n; 32]),
            snap: s,
        }
    }

    #[test]
    fn keeps_what_remaining_bases_need() {
        let base1 = snap(
            1,
            json!({"log_chain": "c", "log_start": "0000000000000002"}),
        );
        let base2 = snap(
            2,
            json!({"log_chain": "c", "log_start": "0000000000000005"}),
        );
        let wal = |n: u8, pos: &str| snap(10 + n, json!({"log_chain": "c", "log_position": pos}));
        let w1 = wal(1, "0000000000000001");
        let w3 = wal(3, "0000000000000003");
        let w6 = wal(6, "0000000000000006");
        let hist = snap(30, json!({"log_chain": "c"}));
        let other = snap(
            40,
            json!({"log_chain": "d", "log_position": "0000000000000001"}),
        );
        let all = vec![
            base1.clone(),
            base2.clone(),
            w1.clone(),
            w3.clone(),
            w6.clone(),
            hist.clone(),
            other.clone(),
        ];
        assert!(is_log_file(&w1.snap) && !is_log_file(&base1.snap));
        let logs: Vec<&SnapshotWithId> = all.iter().filter(|s| is_log_file(&s.snap)).collect();

        // Nothing removed: only the segment before the oldest base goes.
        let d = log_removals(&logs, &all, &HashSet::new());
        assert_eq!(
            d.remove.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![w1.id]
        );
        // The oldest base removed: segments before the next base go, history stays, and the
        // chain without any base keeps everything.
        let d = log_removals(&logs, &all, &HashSet::from([base1.id]));
        let mut gone: Vec<Id> = d.remove.iter().map(|s| s.id).collect();
        gone.sort();
        assert_eq!(gone, vec![w1.id, w3.id]);
        assert_eq!(d.chains["c"].as_deref(), Some("0000000000000005"));
        assert_eq!(d.chains["d"], None);
        assert!(d.keep.iter().any(|s| s.id == other.id) && d.keep.iter().any(|s| s.id == hist.id));
    }
}
