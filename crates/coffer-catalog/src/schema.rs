//! The catalog's tables and their migrations: each schema version upgrades the one before
//! in one transaction, so a catalog of any earlier version opens.

use std::time::Duration;

use crate::{Catalog, CatalogError, Result, SCHEMA_VERSION};

impl Catalog {
    pub(crate) fn migrate(&self) -> Result<()> {
        self.conn
            .busy_timeout(Duration::from_secs(30))
            .map_err(self.err())?;
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(self.err())?;
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.err())?;
        if version > SCHEMA_VERSION {
            return Err(CatalogError::Schema {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            self.conn
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE IF NOT EXISTS runs (
                         id TEXT PRIMARY KEY,
                         job TEXT NOT NULL,
                         status TEXT NOT NULL,
                         started TEXT NOT NULL,
                         ended TEXT,
                         body TEXT NOT NULL
                     );
                     CREATE INDEX IF NOT EXISTS runs_job_started ON runs (job, started);
                     CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
                     CREATE TABLE IF NOT EXISTS jobs (
                         name TEXT PRIMARY KEY,
                         paused INTEGER NOT NULL DEFAULT 0,
                         paused_by TEXT,
                         paused_at TEXT
                     );
                     PRAGMA user_version = 1;
                     COMMIT;",
                )
                .map_err(self.err())?;
        }
        if version < 2 {
            self.conn
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                     PRAGMA user_version = 2;
                     COMMIT;",
                )
                .map_err(self.err())?;
        }
        if version < 3 {
            // Kind and repository become columns so that status queries (last good backup,
            // last verify of a repository) do not decode every body.
            self.conn
                .execute_batch(
                    "BEGIN;
                     ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'backup';
                     ALTER TABLE runs ADD COLUMN repository TEXT NOT NULL DEFAULT '';
                     UPDATE runs SET repository = coalesce(json_extract(body, '$.repository'), '');
                     CREATE INDEX IF NOT EXISTS runs_job_kind_started ON runs (job, kind, started, id);
                     CREATE INDEX IF NOT EXISTS runs_repository_kind ON runs (repository, kind, started);
                     CREATE TABLE IF NOT EXISTS audit (
                         seq INTEGER PRIMARY KEY AUTOINCREMENT,
                         time TEXT NOT NULL,
                         actor TEXT NOT NULL,
                         action TEXT NOT NULL,
                         target TEXT NOT NULL,
                         outcome TEXT NOT NULL,
                         origin TEXT
                     );
                     PRAGMA user_version = 3;
                     COMMIT;",
                )
                .map_err(self.err())?;
        }
        if version < 4 {
            self.conn
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE IF NOT EXISTS alerts (
                         id TEXT PRIMARY KEY,
                         rule TEXT NOT NULL,
                         state TEXT NOT NULL,
                         severity TEXT NOT NULL,
                         updated TEXT NOT NULL,
                         body TEXT NOT NULL
                     );
                     CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, severity);
                     CREATE TABLE IF NOT EXISTS alert_acks (
                         id TEXT PRIMARY KEY,
                         by TEXT NOT NULL,
                         at TEXT NOT NULL,
                         comment TEXT NOT NULL DEFAULT ''
                     );
                     CREATE TABLE IF NOT EXISTS silences (
                         id TEXT PRIMARY KEY,
                         starts TEXT NOT NULL,
                         ends TEXT NOT NULL,
                         created_by TEXT NOT NULL,
                         comment TEXT NOT NULL,
                         created TEXT NOT NULL,
                         matchers TEXT NOT NULL
                     );
                     CREATE TABLE IF NOT EXISTS deliveries (
                         seq INTEGER PRIMARY KEY AUTOINCREMENT,
                         time TEXT NOT NULL,
                         channel TEXT NOT NULL,
                         body TEXT NOT NULL
                     );
                     CREATE INDEX IF NOT EXISTS deliveries_channel ON deliveries (channel, seq);
                     PRAGMA user_version = 4;
                     COMMIT;",
                )
                .map_err(self.err())?;
        }
        if version < 5 {
            self.conn
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE IF NOT EXISTS forgotten (
                         snapshot_id TEXT PRIMARY KEY,
                         time TEXT NOT NULL,
                         by TEXT NOT NULL
                     );
                     CREATE INDEX IF NOT EXISTS forgotten_time ON forgotten (time);
                     PRAGMA user_version = 5;
                     COMMIT;",
                )
                .map_err(self.err())?;
        }
        Ok(())
    }
}
