//! The alerting tables: alert state (one row per alert, its body owned by `coffer-alerts`),
//! acknowledgements, silences and the delivery log. They live in the catalog so that the
//! daemon and the CLI (`coffer alerts ack`, `coffer silence add`, `coffer alerts check`)
//! share them, and so that a restarted daemon neither forgets what it already sent nor
//! sends it again.
//!
//! Acks and silences are separate tables rather than fields of the alert body because the
//! CLI writes them while the daemon owns the alert rows: the daemon reads them on each
//! evaluation instead of having its next save overwrite them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::{Catalog, Result};

/// One stored alert: indexable columns plus the body `coffer-alerts` serializes.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertRow {
    /// The alert's id (its fingerprint).
    pub id: String,
    /// The rule (alertname).
    pub rule: String,
    /// `pending`, `firing`, `resolved`.
    pub state: String,
    /// `critical`, `high`, `medium`, `low`.
    pub severity: String,
    /// JSON owned by `coffer-alerts`.
    pub body: String,
}

/// An acknowledgement: who said they are on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Who.
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Why, or what they are doing.
    pub comment: String,
}

/// One matcher of a silence: `name=value`, `name!=value`, `name=~regex`, `name!~regex`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// The label.
    pub name: String,
    /// The value or regular expression.
    pub value: String,
    /// `value` is a regular expression (anchored).
    #[serde(rename = "isRegex")]
    pub is_regex: bool,
    /// Matches when equal (`=`, `=~`); false for `!=`, `!~`.
    #[serde(rename = "isEqual")]
    pub is_equal: bool,
}

/// A silence: alerts whose labels match every matcher between `starts_at` and `ends_at`
/// are not sent (they stay listed, marked silenced).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Random id.
    pub id: String,
    /// Every one must match.
    pub matchers: Vec<Matcher>,
    /// From.
    #[serde(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    /// Until.
    #[serde(rename = "endsAt")]
    pub ends_at: DateTime<Utc>,
    /// Who.
    #[serde(rename = "createdBy")]
    pub created_by: String,
    /// Why (required: a silence nobody can explain later is a hazard).
    pub comment: String,
    /// When it was made.
    #[serde(rename = "createdAt")]
    pub created_at: DateTime<Utc>,
}

impl Silence {
    /// Active at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// `active`, `pending` (not started) or `expired`.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if now >= self.ends_at {
            "expired"
        } else if now < self.starts_at {
            "pending"
        } else {
            "active"
        }
    }
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

impl Catalog {
    /// Every stored alert.
    pub fn alert_rows(&self) -> Result<Vec<AlertRow>> {
        self.alert_query(None, None)
    }

    /// Stored alerts, optionally only in one state and of one severity.
    pub fn alert_query(
        &self,
        state: Option<&str>,
        severity: Option<&str>,
    ) -> Result<Vec<AlertRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, rule, state, severity, body FROM alerts
                 WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR severity = ?2)
                 ORDER BY updated DESC, id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![state, severity], |r| {
                Ok(AlertRow {
                    id: r.get(0)?,
                    rule: r.get(1)?,
                    state: r.get(2)?,
                    severity: r.get(3)?,
                    body: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.err())
    }

    /// Writes changed alerts and deletes gone ones, in one transaction.
    pub fn save_alerts(&mut self, put: &[AlertRow], delete: &[String]) -> Result<()> {
        if put.is_empty() && delete.is_empty() {
            return Ok(());
        }
        let now = Utc::now().to_rfc3339();
        let path = self.path.clone();
        let err = move |source| crate::CatalogError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&err)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO alerts (id, rule, state, severity, updated, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (id) DO UPDATE SET rule = ?2, state = ?3, severity = ?4, updated = ?5, body = ?6",
                )
                .map_err(&err)?;
            for a in put {
                ins.execute(params![a.id, a.rule, a.state, a.severity, now, a.body])
                    .map_err(&err)?;
            }
            let mut del = tx
                .prepare_cached("DELETE FROM alerts WHERE id = ?1")
                .map_err(&err)?;
            let mut del_ack = tx
                .prepare_cached("DELETE FROM alert_acks WHERE id = ?1")
                .map_err(&err)?;
            for id in delete {
                del.execute([id]).map_err(&err)?;
                del_ack.execute([id]).map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)
    }

    /// Acknowledges a firing alert given by id or by a unique prefix of at least 6
    /// characters; returns its full id, or `None` when no single firing alert matches.
    pub fn ack(&self, id: &str, ack: &Ack) -> Result<Option<String>> {
        let Some(full) = self.firing_id(id)? else {
            return Ok(None);
        };
        self.conn
            .execute(
                "INSERT INTO alert_acks (id, by, at, comment) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET by = ?2, at = ?3, comment = ?4",
                params![full, ack.by, ack.at.to_rfc3339(), ack.comment],
            )
            .map_err(self.err())?;
        Ok(Some(full))
    }

    fn firing_id(&self, id: &str) -> Result<Option<String>> {
        self.unique_prefix(
            "SELECT id FROM alerts WHERE state = ?3 AND substr(id, 1, ?2) = ?1 LIMIT 2",
            id,
            "firing",
        )
    }

    /// The one id that starts with `prefix` (6 characters at least) in `sql`'s answer
    /// (`?1` the prefix, `?2` its length, `?3` `extra`); `None` when none or several do.
    fn unique_prefix(&self, sql: &str, prefix: &str, extra: &str) -> Result<Option<String>> {
        if prefix.len() < 6 {
            return Ok(None);
        }
        let mut st = self.conn.prepare_cached(sql).map_err(self.err())?;
        let ids = st
            .query_map(params![prefix, prefix.len() as i64, extra], |r| {
                r.get::<_, String>(0)
            })
            .map_err(self.err())?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.err())?;
        Ok(match <[String; 1]>::try_from(ids) {
            Ok([one]) => Some(one),
            Err(_) => None,
        })
    }

    /// Every acknowledgement, by alert id.
    pub fn acks(&self) -> Result<HashMap<String, Ack>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, by, at, comment FROM alert_acks")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Ack {
                        by: r.get(1)?,
                        at: parse_time(&r.get::<_, String>(2)?),
                        comment: r.get(3)?,
                    },
                ))
            })
            .map_err(self.err())?;
        rows.collect::<std::result::Result<HashMap<_, _>, _>>()
            .map_err(self.err())
    }

    /// Drops the acknowledgement of an alert (it resolved).
    pub fn clear_ack(&self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM alert_acks WHERE id = ?1", [id])
            .map_err(self.err())?;
        Ok(())
    }

    /// Stores a new silence.
    pub fn add_silence(&self, s: &Silence) -> Result<()> {
        let matchers = serde_json::to_string(&s.matchers).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "INSERT INTO silences (id, starts, ends, created_by, comment, created, matchers)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.id,
                    s.starts_at.to_rfc3339(),
                    s.ends_at.to_rfc3339(),
                    s.created_by,
                    s.comment,
                    s.created_at.to_rfc3339(),
                    matchers
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Silences, newest first; expired ones only when `expired` (up to `limit`).
    pub fn silences(
        &self,
        expired: bool,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Silence>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, starts, ends, created_by, comment, created, matchers FROM silences
                 WHERE ?1 OR ends > ?2 ORDER BY created DESC LIMIT ?3",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![expired, now.to_rfc3339(), limit as i64], |r| {
                Ok(Silence {
                    id: r.get(0)?,
                    starts_at: parse_time(&r.get::<_, String>(1)?),
                    ends_at: parse_time(&r.get::<_, String>(2)?),
                    created_by: r.get(3)?,
                    comment: r.get(4)?,
                    created_at: parse_time(&r.get::<_, String>(5)?),
                    matchers: serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default(),
                })
            })
            .map_err(self.err())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.err())
    }

    /// Ends a silence now. `Ok(None)`: no unexpired silence has that id (or unique prefix
    /// of at least 6 characters); otherwise its full id.
    pub fn expire_silence(&self, id: &str, now: DateTime<Utc>) -> Result<Option<String>> {
        let Some(full) = self.unique_prefix(
            "SELECT id FROM silences WHERE ends > ?3 AND substr(id, 1, ?2) = ?1 LIMIT 2",
            id,
            &now.to_rfc3339(),
        )?
        else {
            return Ok(None);
        };
        self.conn
            .execute(
                "UPDATE silences SET ends = ?2 WHERE id = ?1",
                params![full, now.to_rfc3339()],
            )
            .map_err(self.err())?;
        Ok(Some(full))
    }

    /// Appends one delivery record (JSON owned by `coffer-alerts`).
    pub fn log_delivery(&self, time: DateTime<Utc>, channel: &str, body: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO deliveries (time, channel, body) VALUES (?1, ?2, ?3)",
                params![time.to_rfc3339(), channel, body],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Delivery records, newest first.
    pub fn deliveries(&self, channel: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT body FROM deliveries WHERE (?1 IS NULL OR channel = ?1) ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![channel, limit as i64], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.err())
    }

    /// Removes delivery records and expired silences older than `cutoff`.
    pub fn trim_alerting(&self, cutoff: DateTime<Utc>) -> Result<usize> {
        let c = cutoff.to_rfc3339();
        let a = self
            .conn
            .execute("DELETE FROM deliveries WHERE time < ?1", [&c])
            .map_err(self.err())?;
        let b = self
            .conn
            .execute("DELETE FROM silences WHERE ends < ?1", [&c])
            .map_err(self.err())?;
        Ok(a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_acks_silences_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Catalog::open(&dir.path().join("c.db")).unwrap();
        let row = |id: &str, state: &str| AlertRow {
            id: id.into(),
            rule: "BackupFailed".into(),
            state: state.into(),
            severity: "high".into(),
            body: "{}".into(),
        };
        c.save_alerts(
            &[row("aaaaaaaa11", "firing"), row("bbbbbbbb22", "pending")],
            &[],
        )
        .unwrap();
        assert_eq!(c.alert_query(Some("firing"), None).unwrap().len(), 1);
        assert_eq!(c.alert_query(None, Some("high")).unwrap().len(), 2);
        let ack = Ack {
            by: "ann".into(),
            at: Utc::now(),
            comment: "on it".into(),
        };
        assert_eq!(
            c.ack("aaaaaa", &ack).unwrap().as_deref(),
            Some("aaaaaaaa11")
        );
        assert_eq!(
            c.ack("bbbbbbbb22", &ack).unwrap(),
            None,
            "pending alerts cannot be acked"
        );
        assert_eq!(c.ack("aaa", &ack).unwrap(), None, "too short a prefix");
        assert_eq!(c.acks().unwrap()["aaaaaaaa11"].by, "ann");
        c.save_alerts(&[], &["aaaaaaaa11".into()]).unwrap();
        assert!(c.acks().unwrap().is_empty(), "the ack goes with its alert");

        let now = Utc::now();
        let s = Silence {
            id: "silence-0001".into(),
            matchers: vec![Matcher {
                name: "backup_job".into(),
                value: "db".into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: now,
            ends_at: now + chrono::Duration::hours(1),
            created_by: "ann".into(),
            comment: "maintenance".into(),
            created_at: now,
        };
        c.add_silence(&s).unwrap();
        let got = c.silences(false, now, 10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].matchers, s.matchers);
        assert!(got[0].active(now));
        assert_eq!(
            c.expire_silence("silence", now).unwrap().as_deref(),
            Some("silence-0001")
        );
        assert!(c.silences(false, now, 10).unwrap().is_empty());
        assert_eq!(c.silences(true, now, 10).unwrap().len(), 1);

        c.log_delivery(now, "hook", r#"{"ok":true}"#).unwrap();
        c.log_delivery(now, "mail", r#"{"ok":false}"#).unwrap();
        assert_eq!(
            c.deliveries(Some("mail"), 10).unwrap(),
            vec![r#"{"ok":false}"#]
        );
        assert_eq!(c.deliveries(None, 10).unwrap().len(), 2);
    }
}
