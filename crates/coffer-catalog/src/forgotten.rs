//! Snapshots removed by a job's retention or by `coffer forget` with a config: which, when, by
//! whom. A restore that asks for a snapshot that is gone (`restore --run ID`) says why,
//! instead of only that it is missing. Rows are trimmed with the runs.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{Catalog, Result};

/// One removed snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    /// The snapshot's full id.
    pub snapshot_id: String,
    /// When it was removed.
    pub time: DateTime<Utc>,
    /// What removed it: `retention of job quick (run 20261204_101500-quick)`,
    /// `coffer forget (cli:root)`.
    pub by: String,
}

impl Catalog {
    /// Records removed snapshots (all at one time, by one actor).
    pub fn record_forgotten(&self, snapshot_ids: &[String], by: &str) -> Result<()> {
        let now = Utc::now().to_rfc3339();
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO forgotten (snapshot_id, time, by) VALUES (?1, ?2, ?3)
                     ON CONFLICT (snapshot_id) DO UPDATE SET time = ?2, by = ?3",
                )
                .map_err(self.err())?;
            for id in snapshot_ids {
                st.execute(params![id, now, by]).map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())
    }

    /// Why a snapshot is gone, if the catalog saw it go.
    pub fn forgotten(&self, snapshot_id: &str) -> Result<Option<Forgotten>> {
        self.conn
            .query_row(
                "SELECT snapshot_id, time, by FROM forgotten WHERE snapshot_id = ?1",
                [snapshot_id],
                |r| {
                    let time: String = r.get(1)?;
                    Ok(Forgotten {
                        snapshot_id: r.get(0)?,
                        time: DateTime::parse_from_rfc3339(&time)
                            .map(|t| t.with_timezone(&Utc))
                            .unwrap_or_default(),
                        by: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }
}
