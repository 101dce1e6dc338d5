//! Redis: RDB snapshots over the replication protocol (being written; not usable yet).
use crate::{BackupPlan, Manifest, RestoreReport, RestoreRequest, SnapshotFiles, Source, SourceError};

/// Settings.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// redis://[:password@]host:port/
    pub url: coffer_config::EnvString,
}

/// A Redis source.
pub struct Redis {
    name: String,
}

impl Redis {
    /// Checks the settings.
    pub fn new(name: &str, _cfg: Config) -> Result<Redis, SourceError> {
        Ok(Redis { name: name.to_string() })
    }
}

impl Source for Redis {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "redis"
    }
    fn backup(&self, _m: &Manifest) -> Result<BackupPlan, SourceError> {
        Err(SourceError::Usage("redis sources are not available yet".into()))
    }
    fn restore(&self, _f: &SnapshotFiles, _r: &RestoreRequest) -> Result<RestoreReport, SourceError> {
        Err(SourceError::Usage("redis sources are not available yet".into()))
    }
    fn describe(&self) -> String {
        String::new()
    }
}
