//! The audit table: who did what to what, and how it ended (the API's mutating calls, the
//! CLI's and the scheduler's actions). The tamper-evident chain over it is coffer-audit's.

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::{Catalog, Result};

/// One audited action: who did what to what, and how it ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// When.
    pub time: DateTime<Utc>,
    /// Who: a token's name (`token:NAME`), `anonymous` on an open loopback API, or
    /// `cli:USER`.
    pub actor: String,
    /// What: `job.run`, `job.pause`, `job.resume`, ...
    pub action: String,
    /// On what: a job name, a repository.
    pub target: String,
    /// `ok`, or the HTTP status / error.
    pub outcome: String,
    /// Where the call came from (an address), if known.
    pub origin: Option<String>,
}

impl Catalog {
    /// Appends an audited action.
    pub fn audit(&self, e: &AuditEntry) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO audit (time, actor, action, target, outcome, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.time.to_rfc3339(), e.actor, e.action, e.target, e.outcome, e.origin],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Audited actions, newest first.
    pub fn audit_list(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT time, actor, action, target, outcome, origin FROM audit ORDER BY seq DESC LIMIT ?1",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    AuditEntry {
                        time: Utc::now(),
                        actor: r.get(1)?,
                        action: r.get(2)?,
                        target: r.get(3)?,
                        outcome: r.get(4)?,
                        origin: r.get(5)?,
                    },
                ))
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for r in rows {
            let (time, mut e) = r.map_err(self.err())?;
            e.time = DateTime::parse_from_rfc3339(&time)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default();
            out.push(e);
        }
        Ok(out)
    }
}
