//! `type = "files"`: directory trees (config trees, data directories of stopped services).
//!
//! ```toml
//! [[source]]
//! name = "etc"
//! type = "files"
//! paths = ["/etc"]
//! exclude = ["*.swp"]
//! ```

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use coffer_archiver::filter::PatternSet;
use coffer_archiver::{restore, RestoreOptions};
use serde::Deserialize;

use crate::{
    BackupPlan, Manifest, RestoreReport, RestoreRequest, SnapshotFiles, Source, SourceError,
};

/// Settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Absolute paths.
    pub paths: Vec<PathBuf>,
    /// restic-style exclude patterns.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A files source.
pub struct Files {
    name: String,
    cfg: Config,
}

impl Files {
    /// Checks the settings.
    pub fn new(name: &str, cfg: Config) -> Result<Files, SourceError> {
        if cfg.paths.is_empty() {
            return Err(SourceError::Usage(format!(
                "source {name:?}: `paths` is empty"
            )));
        }
        if let Some(p) = cfg.paths.iter().find(|p| !p.is_absolute()) {
            return Err(SourceError::Usage(format!(
                "source {name:?}: path {} must be absolute",
                p.display()
            )));
        }
        PatternSet::new(&cfg.exclude)
            .map_err(|e| SourceError::Usage(format!("source {name:?}: exclude: {e}")))?;
        Ok(Files {
            name: name.to_string(),
            cfg,
        })
    }
}

impl Source for Files {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "files"
    }

    fn backup(&self, manifest: &Manifest) -> Result<BackupPlan, SourceError> {
        manifest.set(
            "paths",
            self.cfg
                .paths
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
        );
        Ok(BackupPlan::Paths {
            paths: self.cfg.paths.clone(),
            exclude: self.cfg.exclude.clone(),
        })
    }

    fn restore(
        &self,
        files: &SnapshotFiles,
        req: &RestoreRequest,
    ) -> Result<RestoreReport, SourceError> {
        let Some(target) = &req.target else {
            return Err(SourceError::Usage(format!(
                "source {:?} restores files: give --target DIR",
                self.name
            )));
        };
        let opts = RestoreOptions {
            target: target.clone(),
            includes: PatternSet::new::<&str>(&[]).expect("empty pattern set"),
            excludes: PatternSet::new::<&str>(&[]).expect("empty pattern set"),
            verify: true,
            threads: 4,
            keep_damaged: false,
        };
        let r = restore(
            Arc::clone(&files.repo),
            &files.snapshot.snap,
            &opts,
            Arc::clone(&files.progress),
            Arc::new(AtomicBool::new(false)),
        )
        .map_err(|e| SourceError::Usage(format!("restoring into {}: {e}", target.display())))?;
        if !r.complete() {
            let damaged = r
                .damaged
                .iter()
                .map(|d| format!("{}: {}", d.path.display(), d.reason));
            return Err(SourceError::Snapshot(format!(
                "{} item(s) could not be restored into {}: {}",
                r.errors.len() + r.damaged.len(),
                target.display(),
                r.errors
                    .iter()
                    .cloned()
                    .chain(damaged)
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        let mut report = RestoreReport::default();
        report.steps.push(format!(
            "restored {} files ({}) into {}, verified",
            r.files,
            coffer_config::units::bytes(r.bytes),
            target.display()
        ));
        report.checks.insert("files".into(), r.files.into());
        report.checks.insert("bytes".into(), r.bytes.into());
        report
            .checks
            .insert("verified_files".into(), r.verified_files.into());
        Ok(report)
    }

    fn probe(&self) -> Result<crate::Probe, SourceError> {
        let missing: Vec<String> = self
            .cfg
            .paths
            .iter()
            .filter(|p| std::fs::symlink_metadata(p).is_err())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(SourceError::Usage(format!(
                "source {:?}: {} cannot be read: {}",
                self.name,
                if missing.len() == 1 { "path" } else { "paths" },
                missing.join(", ")
            )));
        }
        Ok(crate::Probe {
            checked: true,
            detail: Some(format!("{} paths present", self.cfg.paths.len())),
            ..Default::default()
        })
    }

    fn describe(&self) -> String {
        self.cfg
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
