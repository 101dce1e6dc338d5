//! Drills of MariaDB sources: a logical backup loaded into a scratch server made by
//! `mariadb-install-db`, then `mariadb-check` of every restored table and row counts against
//! those the dump recorded; a physical backup unpacked and prepared by the source's own
//! restore and served by a scratch `mariadbd` on it, then `mariadb-check` of every database.

use std::time::Duration;

use coffer_config::dr::RestoreStep;
use coffer_config::{Config, SourceEntry};
use coffer_sources::mariadb::scratch::ScratchServer;
use coffer_sources::{RestoreRequest, SnapshotFiles};

use super::{bin_dir, dumped_databases, row_counts, Checker, Restored, Scratch};
use crate::recover::PlannedSnapshot;

const SYSTEM: [&str; 4] = ["information_schema", "performance_schema", "mysql", "sys"];

/// Restores one step into a scratch server; `check` records each check and says whether it
/// passed.
#[allow(clippy::too_many_arguments)]
pub(super) fn restore(
    cfg: &Config,
    e: &SourceEntry,
    r: &RestoreStep,
    snap: &PlannedSnapshot,
    files: &SnapshotFiles,
    timeout: Duration,
    scratch: &mut Scratch,
    check: &mut Checker<'_>,
) -> Result<String, String> {
    let manifest = files.manifest().unwrap_or_default();
    let physical = manifest["mode"].as_str() == Some("physical");
    let bin = bin_dir(e);
    let source_on = |url: &str| {
        coffer_sources::build(cfg, &e.with_setting("url", url)).map_err(|e| e.to_string())
    };
    let (server, restored, what) = if physical {
        let source = coffer_sources::build(cfg, e).map_err(|e| e.to_string())?;
        let server = ScratchServer::on_data_dir(bin.as_deref(), timeout, |data| {
            let req = RestoreRequest {
                target: Some(data.to_path_buf()),
                ..Default::default()
            };
            source.restore(files, &req).map(|_| ())
        })
        .map_err(|e| e.to_string())?;
        let dbs: Vec<String> = server
            .query(None, "SHOW DATABASES")
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .filter(|d| !SYSTEM.contains(&d.as_str()))
            .collect();
        let mut passed = true;
        for db in &dbs {
            passed &= check.run(format!("mariadb-check {db}"), || {
                server.check_tables(db).map_err(|e| e.to_string())
            });
        }
        let what = format!(
            "unpacked and prepared the physical backup, served by a scratch mariadbd{}",
            if passed { "" } else { "; a check failed" }
        );
        (server, dbs, what)
    } else {
        let server = ScratchServer::start(bin.as_deref(), timeout).map_err(|e| e.to_string())?;
        let source = source_on(&server.url())?;
        let dumped = dumped_databases(r, &manifest);
        let single = dumped.len() == 1;
        let mut restored = Vec::new();
        let mut passed = true;
        for db in &dumped {
            let target = match (&r.to_database, single) {
                (Some(t), true) => t.clone(),
                _ => db.clone(),
            };
            let req = RestoreRequest {
                database: Some(db.clone()),
                to_database: Some(target.clone()),
                clean: true,
                ..Default::default()
            };
            source.restore(files, &req).map_err(|e| e.to_string())?;
            passed &= check.run(format!("mariadb-check {target}"), || {
                server.check_tables(&target).map_err(|e| e.to_string())
            });
            passed &= check.run(format!("row counts {target}"), || {
                row_counts(snap, &manifest, db, |want| {
                    server
                        .compare_row_counts(&target, want)
                        .map_err(|e| e.to_string())
                })
            });
            restored.push(target);
        }
        let what = format!(
            "loaded {} into a scratch mariadbd{}",
            restored.join(", "),
            if passed { "" } else { "; a check failed" }
        );
        (server, restored, what)
    };
    let msg = format!(
        "restored snapshot {} of {:?}: {what} on port {}",
        snap.short_id,
        r.restore,
        server.port()
    );
    scratch.restored.retain(|(n, _)| n != &e.name);
    scratch.restored.push((
        e.name.clone(),
        Restored::Server {
            url: server.url(),
            databases: restored,
        },
    ));
    scratch.mariadb.retain(|(n, _)| n != &e.name);
    scratch.mariadb.push((e.name.clone(), server));
    Ok(msg)
}
