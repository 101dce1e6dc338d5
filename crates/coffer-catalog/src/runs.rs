//! Storing and querying runs: ids, updates, the newest run of a kind or state, failures in a
//! row, runs left open by a process that died, and trimming by age.

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use crate::{Catalog, Result, Run, RunKind, Status};

impl Catalog {
    /// Stores a new run, giving it its id.
    pub fn insert(&self, run: &mut Run) -> Result<()> {
        let stamp = run.started.format("%Y%m%d_%H%M%S");
        let base = match run.kind {
            RunKind::Backup => format!("{stamp}-{}", run.job),
            RunKind::Verify => format!("{stamp}-verify-{}", run.job),
            RunKind::Recover => format!("{stamp}-recover-{}", run.job),
            RunKind::Drill => format!("{stamp}-drill-{}", run.job),
        };
        for n in 1.. {
            let id = if n == 1 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            run.id = id;
            let body = serde_json::to_string(&run).unwrap_or_default();
            let inserted = self
                .conn
                .execute(
                    "INSERT OR IGNORE INTO runs (id, job, status, started, ended, body, kind, repository) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        run.id,
                        run.job,
                        run.status.as_str(),
                        run.started.to_rfc3339(),
                        run.ended.map(|e| e.to_rfc3339()),
                        body,
                        run.kind.as_str(),
                        run.repository,
                    ],
                )
                .map_err(self.err())?;
            if inserted == 1 {
                break;
            }
        }
        Ok(())
    }

    /// Writes a run's current state.
    pub fn update(&self, run: &Run) -> Result<()> {
        let body = serde_json::to_string(run).unwrap_or_default();
        self.conn
            .execute(
                "UPDATE runs SET status = ?2, ended = ?3, body = ?4 WHERE id = ?1",
                params![
                    run.id,
                    run.status.as_str(),
                    run.ended.map(|e| e.to_rfc3339()),
                    body
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn decode(body: String) -> Option<Run> {
        serde_json::from_str(&body).ok()
    }

    /// One run.
    pub fn get(&self, id: &str) -> Result<Option<Run>> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(self.err())?;
        Ok(body.and_then(Catalog::decode))
    }

    /// Runs of every kind, newest first; of one job if given.
    pub fn list(&self, job: Option<&str>, limit: usize) -> Result<Vec<Run>> {
        self.list_kind(job, None, limit)
    }

    /// Runs of one kind (or all), newest first; of one job if given.
    pub fn list_kind(
        &self,
        job: Option<&str>,
        kind: Option<RunKind>,
        limit: usize,
    ) -> Result<Vec<Run>> {
        // One statement per filter combination: with `(?1 IS NULL OR job = ?1)` SQLite
        // cannot use the (job, kind, started) index and sorts the whole table (23 s for 500
        // jobs over 100k runs instead of 15 ms).
        let sql = match (job.is_some(), kind.is_some()) {
            (true, true) => "SELECT body FROM runs WHERE job = ?1 AND kind = ?2 ORDER BY started DESC, id DESC LIMIT ?3",
            (true, false) => "SELECT body FROM runs WHERE job = ?1 AND ?2 IS NULL ORDER BY started DESC, id DESC LIMIT ?3",
            (false, true) => "SELECT body FROM runs WHERE ?1 IS NULL AND kind = ?2 ORDER BY started DESC, id DESC LIMIT ?3",
            (false, false) => "SELECT body FROM runs WHERE ?1 IS NULL AND ?2 IS NULL ORDER BY started DESC, id DESC LIMIT ?3",
        };
        let mut st = self.conn.prepare_cached(sql).map_err(self.err())?;
        let rows = st
            .query_map(params![job, kind.map(RunKind::as_str), limit as i64], |r| {
                r.get::<_, String>(0)
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(run) = Catalog::decode(r.map_err(self.err())?) {
                out.push(run);
            }
        }
        Ok(out)
    }

    /// The newest backup run of `job` in one of `states`.
    pub fn last(&self, job: &str, states: &[Status]) -> Result<Option<Run>> {
        self.last_of_kind(job, RunKind::Backup, states)
    }

    /// The newest run of `kind` for `job` (a scenario's name for recoveries and drills) in
    /// one of `states`.
    pub fn last_of_kind(&self, job: &str, kind: RunKind, states: &[Status]) -> Result<Option<Run>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT body, status FROM runs WHERE job = ?1 AND kind = ?2
                 ORDER BY started DESC, id DESC",
            )
            .map_err(self.err())?;
        let mut rows = st.query(params![job, kind.as_str()]).map_err(self.err())?;
        while let Some(r) = rows.next().map_err(self.err())? {
            let status: String = r.get(1).map_err(self.err())?;
            if Status::parse(&status).is_some_and(|s| states.contains(&s)) {
                return Ok(Catalog::decode(r.get(0).map_err(self.err())?));
            }
        }
        Ok(None)
    }

    /// Marks runs left RUNNING, QUEUED or RETRY by a process that died as FAILED.
    pub fn fail_unfinished(&self, why: &str) -> Result<usize> {
        let open: Vec<Run> = {
            let mut st = self
                .conn
                .prepare("SELECT body FROM runs WHERE status IN ('RUNNING', 'QUEUED', 'RETRY')")
                .map_err(self.err())?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(self.err())?;
            rows.filter_map(|r| r.ok().and_then(Catalog::decode))
                .collect()
        };
        for mut r in open.clone() {
            r.errors.push(why.to_string());
            r.finish(Status::Failed);
            self.update(&r)?;
        }
        Ok(open.len())
    }

    /// Deletes finished runs that ended before `cutoff` (and older records of removed
    /// snapshots); returns how many runs.
    pub fn trim(&self, cutoff: DateTime<Utc>) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM forgotten WHERE time < ?1",
                [cutoff.to_rfc3339()],
            )
            .map_err(self.err())?;
        self.conn
            .execute(
                "DELETE FROM runs WHERE ended IS NOT NULL AND ended < ?1",
                [cutoff.to_rfc3339()],
            )
            .map_err(self.err())
    }

    /// The id and status of `job`'s newest backup run: cheap (no body decoded), so that a
    /// watcher can tell whether anything changed since it last looked.
    pub fn backup_head(&self, job: &str) -> Result<Option<(String, String)>> {
        self.conn
            .prepare_cached(
                "SELECT id, status FROM runs WHERE job = ?1 AND kind = 'backup'
                 ORDER BY started DESC, id DESC LIMIT 1",
            )
            .map_err(self.err())?
            .query_row([job], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(self.err())
    }

    /// How many consecutive FAILED backup runs `job` has had most recently.
    pub fn consecutive_failures(&self, job: &str) -> Result<u32> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT status FROM runs WHERE job = ?1 AND kind = 'backup'
                 ORDER BY started DESC, id DESC",
            )
            .map_err(self.err())?;
        let mut rows = st.query([job]).map_err(self.err())?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(self.err())? {
            let status: String = r.get(0).map_err(self.err())?;
            match Status::parse(&status) {
                Some(Status::Failed) => n += 1,
                Some(s) if s.is_good() => break,
                _ => {}
            }
        }
        Ok(n)
    }

    /// The newest finished verify run of any job on `repository`.
    pub fn last_verify(&self, repository: &str) -> Result<Option<Run>> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM runs WHERE repository = ?1 AND kind = 'verify' AND ended IS NOT NULL
                 AND status IN ('SUCCESS', 'WARNING', 'FAILED')
                 ORDER BY started DESC, id DESC LIMIT 1",
                [repository],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        Ok(body.and_then(Catalog::decode))
    }
}
