//! `coffer serve`: the daemon (`coffer_daemon`) with this config, until SIGINT/SIGTERM.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;

use crate::global::GlobalOpts;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address of the API (overrides [server] listen; loopback only for now)
    #[arg(long)]
    pub listen: Option<String>,
}

pub fn run(g: &GlobalOpts, a: Args) -> anyhow::Result<i32> {
    let cfg = g.config()?.context(
        "coffer serve runs the jobs of a config file: use --config FILE or COFFER_CONFIG",
    )?;
    let catalog = match &cfg.server.catalog {
        Some(p) => std::path::PathBuf::from(&**p),
        None => coffer_catalog::Catalog::default_path(),
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&shutdown))
            .context("installing the signal handler")?;
    }
    let listen = a.listen.unwrap_or_else(|| cfg.server.listen.clone());
    coffer_daemon::serve(coffer_daemon::ServeOptions {
        config: Arc::new(cfg),
        catalog,
        listen,
        exe: std::env::current_exe().context("finding the coffer binary")?,
        shutdown,
    })?;
    Ok(0)
}
