//! `coffer serve`: runs the config's jobs on their schedules and answers an HTTP API over the
//! run catalog.
//!
//! - **Scheduler** ([`scheduler`]): once a second, every job whose next occurrence (croner,
//!   in the job's time zone) has come is queued, unless it is already queued or running. At
//!   start, runs left RUNNING by a daemon that died are marked FAILED, and a schedule that
//!   passed while the daemon was down (since its last heartbeat) is run once or only
//!   reported, per `misfire`.
//! - **Workers**: `max_concurrent_jobs` threads take the queue by priority, then age, and run
//!   `coffer_jobs::run_job` (each source in its own process group).
//! - **Verify runs**: a job's `verify_schedule` queues a verify (`check --read-data-subset`)
//!   of its repository; it takes a worker like a backup.
//! - **Repositories** ([`repos`]): storage, size and snapshot figures refreshed every
//!   `check_interval` and after each run, with the storage guard's events.
//! - **Alerting** ([`alerting`]): rules evaluated on every finished run and every
//!   `evaluation_interval`; notifications through the `[[channel]]`s.
//! - **API** ([`api`], access in [`auth`]): axum on `[server] listen` (loopback by default;
//!   another address needs `[[server.token]]`s).
//!
//! SIGINT/SIGTERM stop scheduling, cancel running runs (their process groups are killed and
//! the runs end FAILED "cancelled") and return.

mod alerting;
mod api;
mod auth;
mod error;
mod metrics;
mod observe;
mod queue;
mod repos;
mod scheduler;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use coffer_catalog::Catalog;
use coffer_config::Config;

pub use error::DaemonError;

/// How the daemon runs.
pub struct ServeOptions {
    /// The config, already checked.
    pub config: Arc<Config>,
    /// The catalog file.
    pub catalog: PathBuf,
    /// Where to listen (`--listen`, else `[server] listen`).
    pub listen: String,
    /// The coffer binary the sources run in.
    pub exe: PathBuf,
    /// Set on SIGINT/SIGTERM.
    pub shutdown: Arc<AtomicBool>,
}

/// Runs until `opts.shutdown` is set.
pub fn serve(opts: ServeOptions) -> Result<(), DaemonError> {
    let addr: SocketAddr = opts.listen.parse().map_err(|_| DaemonError::Listen {
        addr: opts.listen.clone(),
        message: "not an address such as 127.0.0.1:8081".into(),
    })?;
    let tokens = Arc::new(auth::Tokens::load(&opts.config)?);
    if !addr.ip().is_loopback() && !tokens.enabled() {
        return Err(DaemonError::Listen {
            addr: opts.listen.clone(),
            message: "no [[server.token]] is declared, so the API is open: listen on a loopback address (127.0.0.1 or ::1), or declare tokens".into(),
        });
    }
    let catalog = Catalog::open(&opts.catalog)?;
    let failed = catalog.fail_unfinished("the daemon stopped while this run was active")?;
    if failed > 0 {
        tracing::warn!(
            runs = failed,
            "runs left active by a previous daemon marked FAILED"
        );
    }
    let metrics = Arc::new(metrics::Metrics::new(&opts.config).map_err(DaemonError::Metrics)?);
    let (repos, repos_thread) =
        repos::Repos::start(Arc::clone(&opts.config), Arc::clone(&opts.shutdown))
            .map_err(DaemonError::Runtime)?;
    let auditor = Arc::new(
        coffer_jobs::audit::Auditor::open(&opts.config, &opts.catalog)
            .map_err(|e| DaemonError::Alerting(format!("audit log: {e}")))?,
    );
    // The daemon reads its config once, at start: a start is the config (re)load that the
    // audit trail records, with the file's digest so that a changed config is visible.
    {
        use sha2::Digest;
        let digest = hex::encode(sha2::Sha256::digest(opts.config.text.as_bytes()));
        auditor.record(
            &catalog,
            &coffer_catalog::AuditEntry {
                time: chrono::Utc::now(),
                actor: "daemon".into(),
                action: "config.load".into(),
                target: format!("{} sha256:{}", opts.config.path.display(), &digest[..16]),
                outcome: "ok".into(),
                origin: None,
            },
        );
    }
    let poke = Arc::new(alerting::Poke::default());
    let heartbeat = Arc::new(queue::Heartbeat::default());
    let sched = scheduler::Scheduler::start(
        Arc::clone(&opts.config),
        scheduler::Observers {
            runs: vec![
                Arc::clone(&repos) as Arc<dyn observe::RunObserver>,
                Arc::clone(&poke) as _,
                Arc::clone(&metrics) as _,
            ],
            auditor: Arc::clone(&auditor),
            heartbeat: Arc::clone(&heartbeat),
        },
        opts.catalog.clone(),
        opts.exe.clone(),
        Arc::clone(&opts.shutdown),
    )?;
    let alerts_thread = alerting::start(
        alerting::Inputs {
            config: Arc::clone(&opts.config),
            catalog: opts.catalog.clone(),
            repos: Arc::clone(&repos),
            heartbeat,
            metrics: Arc::clone(&metrics),
            shutdown: Arc::clone(&opts.shutdown),
        },
        Arc::clone(&poke),
    );
    let alerts_thread = match alerts_thread {
        Ok(t) => t,
        Err(e) => {
            opts.shutdown
                .store(true, std::sync::atomic::Ordering::Relaxed);
            sched.join();
            return Err(e);
        }
    };
    let state = api::State {
        config: Arc::clone(&opts.config),
        catalog: Arc::new(parking_lot::Mutex::new(catalog)),
        scheduler: Arc::clone(&sched),
        metrics,
        repos,
        poke,
        auditor,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let shutdown = Arc::clone(&opts.shutdown);
    let listen = opts.listen.clone();
    let served = rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| DaemonError::Listen {
                    addr: listen.clone(),
                    message: e.to_string(),
                })?;
        tracing::info!(%addr, "listening: /metrics, /api/status, /api/runs, /-/healthy");
        eprintln!("coffer serve: listening on http://{addr} (/metrics, /api/status, /api/runs, /-/healthy)");
        axum::serve(
            listener,
            api::router(state, tokens).into_make_service_with_connect_info::<SocketAddr>(),
        )
            .with_graceful_shutdown(async move {
                while !shutdown.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            })
            .await
            .map_err(DaemonError::Runtime)
    });
    sched.join();
    if let Some(t) = alerts_thread {
        let _ = t.join();
    }
    let _ = repos_thread.join();
    served
}
