//! `type = "command"`: the standard output of any command is the backup (Nacos exports,
//! RabbitMQ definitions, anything with a dump tool); an optional `restore_command` reads it
//! back on its standard input.
//!
//! ```toml
//! [[source]]
//! name = "rabbit-defs"
//! type = "command"
//! command = ["rabbitmqadmin", "export", "/dev/stdout"]
//! restore_command = ["rabbitmqadmin", "import", "/dev/stdin"]
//! filename = "definitions.json"
//! ```

use std::process::Command;

use coffer_config::EnvString;
use serde::Deserialize;

use crate::{
    util, BackupPlan, Manifest, RestoreReport, RestoreRequest, SnapshotFiles, Source, SourceError,
};

/// Settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The command and its arguments; its stdout is stored.
    pub command: Vec<EnvString>,
    /// Reads the stored bytes on stdin to restore (optional).
    pub restore_command: Option<Vec<EnvString>>,
    /// File name in the snapshot (default `<name>.out`).
    pub filename: Option<String>,
}

/// A command source.
pub struct CommandSource {
    name: String,
    command: Vec<String>,
    restore_command: Option<Vec<String>>,
    filename: String,
}

fn to_command(argv: &[String]) -> Command {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

impl CommandSource {
    /// Checks the settings.
    pub fn new(name: &str, cfg: Config) -> Result<CommandSource, SourceError> {
        let bad = |m: &str| SourceError::Usage(format!("source {name:?}: {m}"));
        if cfg.command.is_empty() {
            return Err(bad("`command` must name a program"));
        }
        if cfg.restore_command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(bad("`restore_command` must name a program"));
        }
        let filename = cfg.filename.unwrap_or_else(|| format!("{name}.out"));
        if filename.is_empty() || filename.contains('/') || filename == "coffer-manifest.json" {
            return Err(bad("`filename` must be a plain file name"));
        }
        Ok(CommandSource {
            name: name.to_string(),
            command: cfg.command.into_iter().map(|s| s.0).collect(),
            restore_command: cfg
                .restore_command
                .map(|c| c.into_iter().map(|s| s.0).collect()),
            filename,
        })
    }
}

impl Source for CommandSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "command"
    }

    fn backup(&self, manifest: &Manifest) -> Result<BackupPlan, SourceError> {
        manifest.set("command", self.command[0].clone());
        manifest.set("file", self.filename.clone());
        let s = util::stream(&self.filename, to_command(&self.command)).map_err(|message| {
            SourceError::Tool {
                source_name: self.name.clone(),
                message,
            }
        })?;
        Ok(BackupPlan::Streams(vec![s]))
    }

    fn restore(
        &self,
        files: &SnapshotFiles,
        req: &RestoreRequest,
    ) -> Result<RestoreReport, SourceError> {
        let mut report = RestoreReport::default();
        let reader = files.reader(&self.filename)?;
        if let Some(dir) = &req.target {
            let path = dir.join(&self.filename);
            let n = util::write_file(&path, reader).map_err(SourceError::Usage)?;
            report.steps.push(format!(
                "wrote {} ({})",
                path.display(),
                coffer_config::units::bytes(n)
            ));
            report.checks.insert("bytes".into(), n.into());
            return Ok(report);
        }
        let Some(rc) = &self.restore_command else {
            return Err(SourceError::Usage(format!(
                "source {:?} has no restore_command: use --target DIR to get the file",
                self.name
            )));
        };
        let out = util::feed(to_command(rc), reader).map_err(|message| SourceError::Tool {
            source_name: self.name.clone(),
            message,
        })?;
        report
            .steps
            .push(format!("fed {} into {}", self.filename, rc[0]));
        if !out.trim().is_empty() {
            report.steps.push(out.trim().to_string());
        }
        Ok(report)
    }

    fn describe(&self) -> String {
        format!("{} > {}", self.command[0], self.filename)
    }
}
