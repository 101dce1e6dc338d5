//! Forget: a keep policy applied to groups of snapshots, plus the archived-log rule
//! ([`crate::chains`]), as a [`ForgetPlan`] that says what stays, what goes and why, and
//! [`execute`], which removes the planned snapshot files under the exclusive lock.
//!
//! `coffer forget` and a job's retention both go through here (as rustic_core's `forget`
//! returns groups its CLI only prints): they differ only in which snapshots they hand in and
//! how they group them. Only snapshot files go; the data they used stays until prune.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use coffer_repo::lock::LockGuard;
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::{Id, Repository};

use crate::chains::{self, LogDecision};
use crate::retention::{self, Group, GroupKey, Outcome, Policy};

/// The policy's verdicts on one group of base backups.
#[derive(Debug)]
pub struct ForgetGroup<'a> {
    /// What the group's snapshots share.
    pub key: GroupKey,
    /// One verdict per snapshot, newest first.
    pub outcome: Outcome<'a>,
}

/// What a forget would do.
#[derive(Debug, Default)]
pub struct ForgetPlan<'a> {
    /// Base backups, per group.
    pub groups: Vec<ForgetGroup<'a>>,
    /// Archived log files (WAL): never thinned by the policy, removed only when no base
    /// backup that stays needs them. None when no log file was handed in.
    pub logs: Option<LogDecision<'a>>,
}

impl<'a> ForgetPlan<'a> {
    /// Every snapshot the plan removes: the groups' in group order (newest first within
    /// one), then log files.
    pub fn removed(&self) -> Vec<&'a SnapshotWithId> {
        let mut out: Vec<&'a SnapshotWithId> = Vec::new();
        for g in &self.groups {
            out.extend(g.outcome.removed());
        }
        if let Some(l) = &self.logs {
            out.extend(l.remove.iter().copied());
        }
        out
    }
}

/// Splits candidate snapshots into archived log files and base backups (everything else).
pub fn split_logs<'a>(
    snaps: impl IntoIterator<Item = &'a SnapshotWithId>,
) -> (Vec<&'a SnapshotWithId>, Vec<&'a SnapshotWithId>) {
    snaps
        .into_iter()
        .partition(|s| chains::is_log_file(&s.snap))
}

/// Applies `policy` to each group of base backups, then decides which of `logs` the base
/// backups that stay still need. `all` is every snapshot in the repository (a base backup
/// outside the selection still holds its log files). `now` decides only which snapshots are
/// in the future.
pub fn plan<'a>(
    groups: Vec<Group<'a>>,
    logs: &[&'a SnapshotWithId],
    all: &[SnapshotWithId],
    policy: &Policy,
    now: DateTime<Utc>,
) -> ForgetPlan<'a> {
    let groups: Vec<ForgetGroup<'a>> = groups
        .into_iter()
        .map(|g| ForgetGroup {
            outcome: retention::apply(g.snapshots.iter().copied(), policy, now),
            key: g.key,
        })
        .collect();
    let logs = (!logs.is_empty()).then(|| {
        let gone: HashSet<Id> = groups
            .iter()
            .flat_map(|g| g.outcome.removed())
            .map(|s| s.id)
            .collect();
        chains::log_removals(logs, all, &gone)
    });
    ForgetPlan { groups, logs }
}

/// Removes the snapshot files the plan removes (repository and cache). The lock is the proof
/// that nobody lists snapshots between the plan and this; it must be exclusive.
pub fn execute(
    repo: &Repository,
    plan: &ForgetPlan<'_>,
    lock: &LockGuard,
) -> crate::Result<Vec<Id>> {
    let ids: Vec<Id> = plan.removed().iter().map(|s| s.id).collect();
    remove(repo, &ids, lock)?;
    Ok(ids)
}

/// Removes snapshot files by id under the exclusive lock (`forget ID`, damaged snapshot files).
pub fn remove(repo: &Repository, ids: &[Id], lock: &LockGuard) -> crate::Result<()> {
    if !lock.is_exclusive() {
        return Err(crate::MaintError::Usage(
            "removing snapshots needs the exclusive lock".into(),
        ));
    }
    if !ids.is_empty() {
        lock.verify()?;
        repo.remove_snapshots(ids)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_repo::snapshot::Snapshot;
    use retention::GroupBy;

    fn snap(n: u8, time: &str, tags: &[&str], extra: Option<serde_json::Value>) -> SnapshotWithId {
        let mut v = serde_json::json!({
            "time": time,
            "tree": Id([n; 32]).to_hex(),
            "paths": ["/db"],
            "hostname": "h",
            "tags": tags,
        });
        if let Some(serde_json::Value::Object(m)) = extra {
            for (k, x) in m {
                v[k] = x;
            }
        }
        let snap: Snapshot = serde_json::from_value(v).expect("snapshot json");
        SnapshotWithId {
            id: Id([n; 32]),
            snap,
        }
    }

    /// The policy thins base backups; a WAL file is removed only once it lies before the
    /// oldest base backup that stays.
    #[test]
    fn plan_removes_backups_by_policy_and_logs_by_chain() {
        let chain =
            |start: &str| serde_json::json!({"coffer": {"log_chain": "c1", "log_start": start}});
        let wal =
            |pos: &str| serde_json::json!({"coffer": {"log_chain": "c1", "log_position": pos}});
        let all = vec![
            snap(
                1,
                "2026-01-01T00:00:00Z",
                &["base"],
                Some(chain("0000000100")),
            ),
            snap(
                2,
                "2026-01-02T00:00:00Z",
                &["base"],
                Some(chain("0000000200")),
            ),
            snap(3, "2026-01-01T01:00:00Z", &["wal"], Some(wal("0000000150"))),
            snap(4, "2026-01-02T01:00:00Z", &["wal"], Some(wal("0000000250"))),
        ];
        let (logs, backups) = split_logs(&all);
        assert_eq!((logs.len(), backups.len()), (2, 2));
        let policy = Policy {
            last: 1,
            ..Policy::default()
        };
        let groups = retention::group(backups, GroupBy::default());
        let p = plan(groups, &logs, &all, &policy, Utc::now());
        let removed: Vec<Id> = p.removed().iter().map(|s| s.id).collect();
        assert_eq!(removed, vec![all[0].id, all[2].id]);
        let l = p.logs.as_ref().expect("log decision");
        assert_eq!(l.keep.len(), 1);
        assert_eq!(l.chains["c1"].as_deref(), Some("0000000200"));
    }
}
