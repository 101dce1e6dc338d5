//! Global options (accepted before or after the subcommand), password lookup, opening the
//! repository, and the mapping from errors to exit codes.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser};
use coffer_archiver::{BackupError, RestoreError};
use coffer_maint::MaintError;
use coffer_repo::backend::Location;
use coffer_repo::{RepoError, Repository};

use crate::cmd::Command;

/// coffer: backups of files and middleware into restic-compatible repositories.
#[derive(Parser, Debug)]
#[command(
    name = "coffer",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes (listed under their own heading in every `--help`).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOpts {
    /// Repository location: a path or s3:http://HOST:PORT/BUCKET/PREFIX
    #[arg(short = 'r', long = "repo", env = "COFFER_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// File holding the repository password (wins over COFFER_PASSWORD)
    #[arg(long, env = "COFFER_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Configuration file (coffer.toml); its first [[repository]] is the default repository
    #[arg(long, env = "COFFER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON lines instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Do not use the local cache
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Wait up to this long for a conflicting lock to go away (e.g. 30s, 5m, 1h)
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration)]
    pub retry_lock: Option<std::time::Duration>,
    /// Print less
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more (repeat for debug output)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The repository and password a command uses, after config and environment.
pub struct Target {
    pub location: Location,
    pub password: String,
}

impl GlobalOpts {
    /// The configuration file, if one was given (`--config` or `COFFER_CONFIG`).
    pub fn config(&self) -> anyhow::Result<Option<coffer_config::Config>> {
        match &self.config {
            Some(p) => Ok(Some(coffer_config::Config::load(p)?)),
            None => Ok(None),
        }
    }

    /// The config file's repository named `name` (or the only/first one).
    fn config_repository(&self) -> anyhow::Result<Option<coffer_config::RepositoryConfig>> {
        self.config_repository_named(None)
    }

    fn config_repository_named(
        &self,
        name: Option<&str>,
    ) -> anyhow::Result<Option<coffer_config::RepositoryConfig>> {
        let Some(cfg) = self.config()? else {
            return Ok(None);
        };
        if cfg.repository.is_empty() {
            return Ok(None);
        }
        let r = match name {
            Some(n) => cfg
                .repository
                .iter()
                .find(|r| r.name == n)
                .with_context(|| {
                    format!(
                        "config file {}: no [[repository]] is named {n:?}",
                        cfg.path.display()
                    )
                })?,
            None => &cfg.repository[0],
        };
        Ok(Some(r.clone()))
    }

    /// Opens the repository a config entry names (`-r` still wins when given).
    pub fn open_named(&self, name: Option<&str>) -> anyhow::Result<Arc<Repository>> {
        let cfg_repo = self.config_repository_named(name)?;
        let url = match (&self.repo, &cfg_repo) {
            (Some(r), _) => r.clone(),
            (None, Some(c)) => c.url.0.clone(),
            (None, None) => {
                bail!("no repository given: use -r/--repo, COFFER_REPOSITORY or a [[repository]] in --config")
            }
        };
        let location = Location::parse(&url)?;
        let password = self.password_with(false, cfg_repo.as_ref())?;
        let mut repo = Repository::open(&location, &password)?;
        if self.no_cache {
            repo.disable_cache();
        }
        Ok(Arc::new(repo))
    }

    /// The repository location, from `-r`, `COFFER_REPOSITORY` or the config file.
    pub fn location(&self) -> anyhow::Result<Location> {
        let url = match (&self.repo, self.config_repository()?) {
            (Some(r), _) => r.clone(),
            (None, Some(c)) => c.url.0,
            (None, None) => {
                bail!("no repository given: use -r/--repo, COFFER_REPOSITORY or --config")
            }
        };
        Ok(Location::parse(&url)?)
    }

    /// The password: --password-file / COFFER_PASSWORD_FILE, then COFFER_PASSWORD, then the
    /// config file's password_file, then a prompt on a terminal.
    pub fn password(&self, confirm: bool) -> anyhow::Result<String> {
        let repo = if self.password_file.is_none() && std::env::var_os("COFFER_PASSWORD").is_none()
        {
            self.config_repository()?
        } else {
            None
        };
        let p = self.password_with(confirm, repo.as_ref())?;
        coffer_config::secrets::register(&p);
        Ok(p)
    }

    fn password_with(
        &self,
        confirm: bool,
        cfg_repo: Option<&coffer_config::RepositoryConfig>,
    ) -> anyhow::Result<String> {
        let env_set = std::env::var_os("COFFER_PASSWORD").is_some();
        let file = match &self.password_file {
            Some(f) => Some(f.clone()),
            None if env_set => None,
            None => match cfg_repo {
                Some(c) if c.password_file.is_some() => {
                    c.password_file.as_ref().map(|p| PathBuf::from(&p.0))
                }
                Some(c) if c.password.is_some() => {
                    return Ok(c.password.as_ref().map(|p| p.0.clone()).unwrap_or_default())
                }
                _ => None,
            },
        };
        if let Some(f) = file {
            let s = std::fs::read_to_string(&f)
                .with_context(|| format!("reading password file {}", f.display()))?;
            // restic trims surrounding whitespace too, so both tools accept the same file.
            let p = s.trim().to_string();
            if p.is_empty() {
                bail!("password file {} is empty", f.display());
            }
            return Ok(p);
        }
        if let Ok(p) = std::env::var("COFFER_PASSWORD") {
            if p.is_empty() {
                bail!("COFFER_PASSWORD is set but empty");
            }
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() {
            bail!("no password given: use --password-file, COFFER_PASSWORD_FILE or COFFER_PASSWORD (no terminal to prompt on)");
        }
        let p = rpassword::prompt_password("enter password for repository: ")?;
        if confirm {
            let again = rpassword::prompt_password("enter password again: ")?;
            if again != p {
                bail!("passwords do not match");
            }
        }
        if p.is_empty() {
            bail!("an empty password is not allowed");
        }
        Ok(p)
    }

    pub fn target(&self, confirm: bool) -> anyhow::Result<Target> {
        let location = self.location()?;
        let password = self.password(confirm)?;
        Ok(Target { location, password })
    }

    /// Takes a repository lock, waiting as long as --retry-lock allows.
    pub fn lock(
        &self,
        repo: &Arc<Repository>,
        exclusive: bool,
    ) -> anyhow::Result<coffer_repo::lock::LockGuard> {
        let wait = self.retry_lock.unwrap_or_default();
        Ok(coffer_repo::lock::LockGuard::acquire_wait(
            repo, exclusive, wait,
        )?)
    }

    /// Takes a shared lock whose second look for a racing prune runs while the caller works
    /// (see `LockGuard::acquire_deferred`): the caller confirms it before committing.
    pub fn lock_deferred(
        &self,
        repo: &Arc<Repository>,
    ) -> anyhow::Result<coffer_repo::lock::LockGuard> {
        let wait = self.retry_lock.unwrap_or_default();
        Ok(coffer_repo::lock::LockGuard::acquire_wait_deferred(
            repo, wait,
        )?)
    }

    /// Opens the repository.
    pub fn open(&self) -> anyhow::Result<Arc<Repository>> {
        let t = self.target(false)?;
        let mut repo = Repository::open(&t.location, &t.password)?;
        if self.no_cache {
            repo.disable_cache();
        }
        Ok(Arc::new(repo))
    }
}

/// A flag set by SIGINT/SIGTERM; a second signal exits at once with 130.
pub fn cancel_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag));
        let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
    }
    flag
}

/// Marker error: the command finished but some items failed (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PartialFailure(pub String);

/// restic's exit codes for an error chain.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    for c in e.chain() {
        if c.downcast_ref::<PartialFailure>().is_some() {
            return 3;
        }
        let repo = c
            .downcast_ref::<RepoError>()
            .or_else(|| match c.downcast_ref::<BackupError>() {
                Some(BackupError::Repo(r)) => Some(r),
                _ => None,
            })
            .or_else(|| match c.downcast_ref::<MaintError>() {
                Some(MaintError::Repo(r)) => Some(r),
                _ => None,
            });
        match repo {
            Some(RepoError::NotFound { .. }) => return 10,
            Some(RepoError::Locked { .. }) => return 11,
            Some(RepoError::WrongPassword { .. }) => return 12,
            _ => {}
        }
        if matches!(
            c.downcast_ref::<BackupError>(),
            Some(BackupError::Interrupted)
        ) || matches!(
            c.downcast_ref::<RestoreError>(),
            Some(RestoreError::Interrupted)
        ) || matches!(
            c.downcast_ref::<MaintError>(),
            Some(MaintError::Interrupted)
        ) {
            return 130;
        }
    }
    1
}

/// Whether the error is a closed stdout (`coffer ls | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A command-line duration (`30s`, `5m`, `1h30m`, `2d`, `1w`): the config's parser, with a
/// unit required.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    coffer_config::Span::parse_with_unit(s).map(|d| d.0)
}
