//! The audit trail of a managed coffer: every audited action (job runs, API calls, acks,
//! silences, restores, forgets, prunes, key changes) goes to two places — the catalog's
//! `audit` table, which `/api/audit` queries, and the HMAC-chained log of `[audit]`
//! (`coffer-audit`), which `coffer audit verify` checks. The chain's head is stored in the
//! catalog (meta `audit_head`, only ever moved forward) and tagged on each job snapshot
//! (`audit:SEQ-MAC`), so lines cut from the end of the log are detected.
//!
//! Recording never fails the action it records: a log that cannot be written is reported
//! as an error event, loudly, and the action goes on.

use std::path::{Path, PathBuf};

use coffer_audit::{AuditKey, AuditLog, Entry, Head, Report};
use coffer_catalog::{AuditEntry, Catalog};
use coffer_config::Config;

/// The catalog meta key holding the newest head.
pub const HEAD_META: &str = "audit_head";

/// Writes audit entries.
pub struct Auditor {
    log: Option<AuditLog>,
}

/// Where the log and key of `cfg` are, given its catalog.
pub fn paths(cfg: &Config, catalog: &Path) -> (PathBuf, PathBuf) {
    (cfg.audit.log_path(catalog), cfg.audit.key_path())
}

impl Auditor {
    /// The log of `cfg` (key created on first use), or only the catalog table when
    /// `[audit] enabled = false`.
    pub fn open(cfg: &Config, catalog: &Path) -> Result<Auditor, coffer_audit::AuditError> {
        if !cfg.audit.enabled {
            return Ok(Auditor { log: None });
        }
        let (log, key) = paths(cfg, catalog);
        coffer_audit::check_key_location(&log, &key)?;
        let key = AuditKey::load_or_create(&key)?;
        Ok(Auditor {
            log: Some(AuditLog::open(&log, key)?),
        })
    }

    /// Only the catalog table.
    pub fn table_only() -> Auditor {
        Auditor { log: None }
    }

    /// Records `e` in the catalog table and the chained log.
    pub fn record(&self, catalog: &Catalog, e: &AuditEntry) {
        if let Err(err) = catalog.audit(e) {
            tracing::error!(error = %err, action = %e.action, "recording in the audit table");
        }
        let Some(log) = &self.log else { return };
        let mut entry = Entry::new(&e.actor, &e.action, &e.target, &e.outcome);
        entry.time = e.time;
        if let Some(o) = &e.origin {
            entry = entry.with_details(serde_json::json!({ "origin": o }));
        }
        match log.append(&entry) {
            Ok(head) => {
                let value = serde_json::to_string(&head).unwrap_or_default();
                if let Err(err) = catalog.set_meta_forward(HEAD_META, &value, head.seq as i64) {
                    tracing::error!(error = %err, "recording the audit head in the catalog");
                }
            }
            Err(err) => tracing::error!(
                event = "audit",
                error = %err,
                action = %e.action,
                "AUDIT LOG NOT WRITTEN: run `coffer audit verify`"
            ),
        }
    }
}

/// The head recorded in the catalog.
pub fn recorded_head(catalog: &Catalog) -> Option<Head> {
    catalog
        .meta(HEAD_META)
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_str(&v).ok())
}

/// The snapshot tag carrying the recorded head: `audit:SEQ-MAC` (16 hex digits of the mac).
pub fn head_tag(catalog: &Catalog) -> Option<String> {
    recorded_head(catalog).map(|h| format!("audit:{}-{}", h.seq, &h.mac[..h.mac.len().min(16)]))
}

/// Verifies the log of `cfg` against the head recorded in the catalog.
pub fn verify(
    cfg: &Config,
    catalog_path: &Path,
    catalog: &Catalog,
) -> Result<(Report, Option<Head>, PathBuf), coffer_audit::AuditError> {
    let (log, key) = paths(cfg, catalog_path);
    let key = AuditKey::load_or_create(&key)?;
    let expected = recorded_head(catalog);
    let report = coffer_audit::verify(&log, &key, expected.as_ref())?;
    Ok((report, expected, log))
}

/// The lines of the log of `cfg` at or after `since`, each with whether its MAC holds.
pub fn show(
    cfg: &Config,
    catalog_path: &Path,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(Vec<coffer_audit::Shown>, PathBuf), coffer_audit::AuditError> {
    let (log, key) = paths(cfg, catalog_path);
    let key = AuditKey::load_or_create(&key)?;
    Ok((coffer_audit::read(&log, &key, since)?, log))
}
