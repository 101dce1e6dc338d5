//! Drills of Kafka sources: the snapshot produced into a scratch broker started for the step
//! (tansu, its records in memory; the source's `scratch_broker` names another binary), then
//! every partition read back and compared with what was produced (count and digest of each
//! record's timestamp, key, value and headers), and every group's committed offset checked to
//! sit on the first record that group had not consumed.

use coffer_config::{Config, SourceEntry};
use coffer_sources::kafka::scratch::ScratchBroker;
use coffer_sources::{RestoreRequest, SnapshotFiles};

use super::{Checker, Restored, Scratch};
use crate::recover::PlannedSnapshot;

/// Restores one step into a fresh scratch broker (one that an earlier step of the same
/// source filled is stopped first: a restore refuses topics that hold records).
pub(super) fn restore(
    cfg: &Config,
    e: &SourceEntry,
    snap: &PlannedSnapshot,
    files: &SnapshotFiles,
    scratch: &mut Scratch,
    check: &mut Checker<'_>,
) -> Result<String, String> {
    if let Some(i) = scratch.kafka.iter().position(|(n, _)| n == &e.name) {
        scratch.kafka.remove(i).1.stop();
    }
    let bin = e
        .settings
        .get("scratch_broker")
        .and_then(|b| b.as_str())
        .map(str::to_string);
    let broker = ScratchBroker::start(bin.as_deref(), &scratch.dir_for(e))?;
    let (address, port) = (broker.address(), broker.port());
    scratch.kafka.push((e.name.clone(), broker));
    let source = coffer_sources::build(cfg, e).map_err(|e| e.to_string())?;
    let req = RestoreRequest {
        to_brokers: Some(vec![address]),
        verify: true,
        ..Default::default()
    };
    let outcome = source.restore(files, &req).map_err(|e| e.to_string());
    let detail = outcome.as_ref().map(|rep| {
        let n = |k: &str| rep.checks.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        format!(
            "{} records of {} partitions read back and matching what was produced, {} groups resuming where they had stopped",
            n("verified_records"),
            n("verified_partitions"),
            n("groups")
        )
    });
    check.run("records read back".into(), || {
        detail.clone().map_err(|e| e.clone())
    });
    let detail = detail?;
    scratch.restored.retain(|(n, _)| n != &e.name);
    scratch
        .restored
        .push((e.name.clone(), Restored::Checked(detail.clone())));
    Ok(format!(
        "restored snapshot {} of {:?} into a scratch Kafka broker on port {port}: {detail}",
        snap.short_id, e.name
    ))
}
