//! What restoring a whole run (`coffer restore --run ID`) can bring back: each source's
//! snapshot of that run, and for every source the run backed up whose snapshot is not there,
//! why (its backup failed in that run, or the snapshot was removed and by what). The CLI
//! prints the plan and restores what it holds; disaster recovery uses the same plan to say
//! whether a run is whole before it starts.

use coffer_catalog::{Catalog, SourceResult};
use coffer_repo::snapshot::SnapshotWithId;
use serde::Serialize;

/// One source's snapshot in the run.
#[derive(Clone, Debug)]
pub struct RunSnapshot {
    /// The source (the snapshot's `source:` tag).
    pub source: String,
    /// The snapshot.
    pub snapshot: SnapshotWithId,
}

/// A source of the run that cannot be restored from it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct MissingSource {
    /// The source.
    pub source: String,
    /// Why, as a sentence a person reads.
    pub reason: String,
}

/// The plan.
#[derive(Clone, Debug)]
pub struct RunRestorePlan {
    /// The run.
    pub run_id: String,
    /// What can be restored, in the run's source order.
    pub found: Vec<RunSnapshot>,
    /// What the run backed up (or tried to) that is not there.
    pub missing: Vec<MissingSource>,
}

/// Why a run cannot be restored at all.
#[derive(Debug, thiserror::Error)]
pub enum RunRestoreError {
    /// Neither the repository nor the catalog knows the run.
    #[error("no snapshot is tagged run:{0} and the run catalog has no such run: `coffer runs` lists run ids and their snapshots")]
    UnknownRun(String),
    /// The source was not part of the run.
    #[error("run {run} did not back up source {name:?} (its sources: {sources})")]
    NotInRun {
        /// The run.
        run: String,
        /// The source asked for.
        name: String,
        /// The run's sources.
        sources: String,
    },
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] coffer_catalog::CatalogError),
}

/// Plans restoring run `run_id` from `snapshots` (the repository's), with the catalog's
/// record of the run (when there is one) saying what the run should hold; `only` narrows the
/// plan to one source.
pub fn plan(
    catalog: Option<&Catalog>,
    snapshots: &[SnapshotWithId],
    run_id: &str,
    only: Option<&str>,
) -> Result<RunRestorePlan, RunRestoreError> {
    let tag = format!("run:{run_id}");
    let in_repo: Vec<RunSnapshot> = snapshots
        .iter()
        .filter(|s| s.snap.tags.contains(&tag))
        .map(|s| RunSnapshot {
            source: s
                .snap
                .tags
                .iter()
                .find_map(|t| t.strip_prefix("source:"))
                .unwrap_or("snapshot")
                .to_string(),
            snapshot: s.clone(),
        })
        .collect();
    let recorded = match catalog {
        Some(c) => c.get(run_id)?,
        None => None,
    };
    let mut p = RunRestorePlan {
        run_id: run_id.to_string(),
        found: Vec::new(),
        missing: Vec::new(),
    };
    match &recorded {
        None if in_repo.is_empty() => return Err(RunRestoreError::UnknownRun(run_id.into())),
        // Without the catalog's record, the repository is all there is to go by.
        None => p.found = in_repo,
        Some(run) => {
            for r in &run.sources {
                match in_repo.iter().find(|s| s.source == r.source) {
                    Some(s) => p.found.push(s.clone()),
                    None => p.missing.push(MissingSource {
                        source: r.source.clone(),
                        reason: why_missing(catalog, r)?,
                    }),
                }
            }
            // Tagged with the run but not in its record (a hand-tagged snapshot): offered too.
            for s in in_repo {
                if !p.found.iter().any(|f| f.source == s.source) {
                    p.found.push(s);
                }
            }
        }
    }
    if let Some(name) = only {
        let known =
            p.found.iter().any(|s| s.source == name) || p.missing.iter().any(|m| m.source == name);
        if !known {
            // In the run's own order where the catalog has it.
            let mut sources: Vec<&str> = recorded
                .iter()
                .flat_map(|r| r.sources.iter().map(|s| s.source.as_str()))
                .collect();
            for s in &p.found {
                if !sources.contains(&s.source.as_str()) {
                    sources.push(&s.source);
                }
            }
            return Err(RunRestoreError::NotInRun {
                run: run_id.into(),
                name: name.into(),
                sources: sources.join(", "),
            });
        }
        p.found.retain(|s| s.source == name);
        p.missing.retain(|m| m.source == name);
    }
    Ok(p)
}

fn why_missing(catalog: Option<&Catalog>, r: &SourceResult) -> Result<String, RunRestoreError> {
    let Some(id) = &r.snapshot_id else {
        return Ok(match &r.error {
            Some(e) => format!("its backup failed in that run ({e})"),
            None => format!("the run made no snapshot of it (status {})", r.status),
        });
    };
    let short = &id[..8.min(id.len())];
    Ok(match catalog.map(|c| c.forgotten(id)).transpose()?.flatten() {
        Some(f) => format!(
            "its snapshot {short} was removed by {} at {}",
            f.by,
            f.time.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        None => format!(
            "its snapshot {short} is no longer in the repository (removed by `coffer forget`, a retention or a repair)"
        ),
    })
}
