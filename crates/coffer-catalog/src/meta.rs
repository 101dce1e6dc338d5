//! Small values the daemon keeps between starts (its heartbeat, missed schedules) and the
//! paused flag of each job.

use chrono::Utc;
use rusqlite::{params, OptionalExtension};

use crate::{Catalog, Result};

impl Catalog {
    /// Stores a value whose `seq` only moves forward: a writer that lost a race with a
    /// newer one does not put an older value back.
    pub fn set_meta_forward(&self, key: &str, value: &str, seq: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2
                 WHERE coalesce(json_extract(meta.value, '$.seq'), -1) < ?3",
                params![key, value, seq],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Stores a value (the daemon's heartbeat, say).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// A stored value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    /// Pauses or resumes a job; `by` says who.
    pub fn set_paused(&self, job: &str, paused: bool, by: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO jobs (name, paused, paused_by, paused_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET paused = ?2, paused_by = ?3, paused_at = ?4",
                params![job, paused as i64, by, Utc::now().to_rfc3339()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Whether a job is paused.
    pub fn is_paused(&self, job: &str) -> Result<bool> {
        let p: Option<i64> = self
            .conn
            .query_row("SELECT paused FROM jobs WHERE name = ?1", [job], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())?;
        Ok(p.unwrap_or(0) != 0)
    }
}
