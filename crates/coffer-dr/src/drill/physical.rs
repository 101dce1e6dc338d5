//! Drills of physical PostgreSQL sources: a base backup laid out in a scratch cluster and the
//! archived WAL replayed to a point, by default five minutes before the newest archived WAL
//! file (so that the replay stops at a target inside the archive, as a point-in-time
//! recovery after a bad statement would), or to `--at TIME`.
//!
//! When no transaction committed after the target, PostgreSQL ends recovery before reaching
//! it and refuses to promote; the data at the end of the archive is then the data at the
//! target, and the drill replays to the end instead, saying so.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coffer_repo::snapshot::SnapshotWithId;
use coffer_repo::Repository;
use coffer_sources::postgres::archive::{self, BaseBackup};
use coffer_sources::postgres::physical::{self, RecoveryTarget};
use coffer_sources::postgres::scratch::ScratchCluster;
use coffer_sources::RestoreReport;

use crate::recover::Choice;

/// How far before the newest archived WAL a drill replays to.
pub const OFFSET: chrono::Duration = chrono::Duration::minutes(5);

/// What a physical drill restores.
pub struct Resolved {
    /// The base backup.
    pub base: BaseBackup,
    /// Where replay stops.
    pub target: RecoveryTarget,
    /// The time of the data it brings back (the target, or the newest archived WAL).
    pub data_time: DateTime<Utc>,
    /// Why this target, in a sentence.
    pub note: String,
}

/// Picks the base backup and the replay target for `choice`.
pub fn resolve(
    snaps: &[SnapshotWithId],
    source: &str,
    choice: &Choice,
) -> Result<Resolved, String> {
    let bases = archive::base_backups(snaps, source);
    let newest = bases.last().ok_or_else(|| {
        format!(
            "source {source:?} has no physical base backup: run `coffer backup --source {source}`"
        )
    })?;
    let wal = archive::archived(snaps, source);
    let newest_wal = |sysid: u64| {
        wal.iter()
            .filter(|a| a.system_identifier == sysid)
            .map(|a| a.snap.snap.time.with_timezone(&Utc))
            .max()
    };
    let pick = |target: &RecoveryTarget, sysid: Option<u64>| {
        physical::choose_base(&bases, target, sysid)
            .cloned()
            .map_err(|e| e.to_string())
    };
    match choice {
        Choice::At(t) => {
            let target = RecoveryTarget::Time(t.fixed_offset());
            Ok(Resolved {
                base: pick(&target, None)?,
                target,
                data_time: *t,
                note: format!("replays WAL to {} (--at)", t.to_rfc3339()),
            })
        }
        Choice::Id(id) => {
            let base = bases
                .iter()
                .find(|b| b.snap.id.has_prefix(id))
                .cloned()
                .ok_or_else(|| format!("snapshot {id:?} is not a base backup of {source:?}"))?;
            let end =
                newest_wal(base.system_identifier).unwrap_or(base.finished_at.with_timezone(&Utc));
            Ok(Resolved {
                base,
                target: RecoveryTarget::Latest,
                data_time: end,
                note: "replays all archived WAL after the chosen base backup".into(),
            })
        }
        Choice::Latest => {
            let sysid = newest.system_identifier;
            let Some(end) = newest_wal(sysid) else {
                return Ok(Resolved {
                    base: newest.clone(),
                    target: RecoveryTarget::Latest,
                    data_time: newest.finished_at.with_timezone(&Utc),
                    note: "no WAL archived after the base backup: restores the base backup alone"
                        .into(),
                });
            };
            let at = end - OFFSET;
            let target = RecoveryTarget::Time(at.fixed_offset());
            match pick(&target, Some(sysid)) {
                Ok(base) => Ok(Resolved {
                    base,
                    target,
                    data_time: at,
                    note: format!(
                        "replays WAL to {}, five minutes before the newest archived WAL",
                        at.to_rfc3339()
                    ),
                }),
                Err(_) => Ok(Resolved {
                    base: newest.clone(),
                    target: RecoveryTarget::Latest,
                    data_time: end,
                    note: "the archive reaches less than five minutes past the newest base \
                           backup: replays all of it"
                        .into(),
                }),
            }
        }
    }
}

/// Restores `r` into a scratch cluster and waits for it to promote.
pub fn restore(
    bin_dir: Option<&str>,
    repo: Arc<Repository>,
    snaps: &[SnapshotWithId],
    source: &str,
    r: &Resolved,
    timeout: Duration,
) -> Result<(ScratchCluster, RestoreReport), String> {
    let archived = archive::archived(snaps, source);
    let first = ScratchCluster::from_base_backup(
        bin_dir,
        Arc::clone(&repo),
        &r.base,
        &archived,
        r.target.clone(),
        timeout,
    );
    match first {
        Err(e)
            if matches!(r.target, RecoveryTarget::Time(_))
                && e.to_string()
                    .contains("before configured recovery target was reached") =>
        {
            let (c, mut rep) = ScratchCluster::from_base_backup(
                bin_dir,
                repo,
                &r.base,
                &archived,
                RecoveryTarget::Latest,
                timeout,
            )
            .map_err(|e| e.to_string())?;
            rep.steps.insert(
                0,
                format!(
                    "no transaction committed after {}: replayed the whole archive instead, which holds the same data",
                    r.target
                ),
            );
            Ok((c, rep))
        }
        other => other.map_err(|e| e.to_string()),
    }
}
