//! Outbound pings, Healthchecks.io style: a job with `ping_url` tells an outside monitor when
//! a run starts (`URL/start`), succeeds (`URL`) and fails (`URL/fail`), with the run's
//! summary as the body. The monitor raises its own alarm when the success ping stops
//! coming — the dead-man's switch that works even when this whole host is gone.

use std::time::Duration;

use crate::channels::post;
use crate::RetryPolicy;

/// What a ping says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    /// A run started.
    Start,
    /// A run ended SUCCESS or WARNING.
    Success,
    /// A run ended FAILED.
    Fail,
}

/// The URL of `ping` under a Healthchecks-style base URL (a query string stays at the end).
pub fn ping_url(base: &str, ping: Ping) -> String {
    let suffix = match ping {
        Ping::Start => "/start",
        Ping::Success => "",
        Ping::Fail => "/fail",
    };
    match base.split_once('?') {
        Some((path, query)) => format!("{}{suffix}?{query}", path.trim_end_matches('/')),
        None => format!("{}{suffix}", base.trim_end_matches('/')),
    }
}

/// Sends one ping with retries; the error never holds the URL (it carries the check's key).
pub fn send_ping(base: &str, ping: Ping, body: &serde_json::Value) -> Result<u16, String> {
    let url = ping_url(base, ping);
    let policy = RetryPolicy::default();
    let body = serde_json::to_vec(body).unwrap_or_default();
    let mut n = 0;
    loop {
        n += 1;
        let a = post(Duration::from_secs(10), &url, &[], body.clone(), None);
        match a.error {
            None => return Ok(a.status.unwrap_or(0)),
            Some(e) if a.retryable && n < policy.attempts => {
                std::thread::sleep(policy.delay_before(n + 1));
                tracing::debug!(error = %e, attempt = n, "ping failed, retrying");
            }
            Some(e) => return Err(format!("after {n} attempt(s): {e}")),
        }
    }
}

/// The pings of one run: start when created, then success or fail from [`RunPings::finish`].
/// Sending happens on threads so that a slow monitor never delays a backup; the end ping
/// waits for the start ping, so the monitor sees them in order.
pub struct RunPings {
    base: Option<String>,
    job: String,
    start: Option<std::thread::JoinHandle<()>>,
}

impl RunPings {
    /// Sends the start ping of `job` when it has a `ping_url`.
    pub fn start(base: Option<&str>, job: &str) -> RunPings {
        let start = base.map(|b| {
            let (b, j) = (b.to_string(), job.to_string());
            std::thread::spawn(move || {
                if let Err(e) = send_ping(&b, Ping::Start, &serde_json::json!({ "job": j })) {
                    tracing::warn!(job = %j, error = %e, "start ping not delivered");
                }
            })
        });
        RunPings {
            base: base.map(String::from),
            job: job.to_string(),
            start,
        }
    }

    /// Sends the end ping for `run` (success for SUCCESS and WARNING, fail for FAILED,
    /// nothing for a PAUSED run, which did not try). Join the handle to wait for it.
    pub fn finish(self, run: &coffer_catalog::Run) -> Option<std::thread::JoinHandle<()>> {
        use coffer_catalog::Status;
        let base = self.base?;
        let ping = match run.status {
            Status::Success | Status::Warning => Ping::Success,
            Status::Failed => Ping::Fail,
            _ => {
                return self
                    .start
                    .map(|h| std::thread::spawn(move || drop(h.join())))
            }
        };
        let body = serde_json::json!({
            "job": self.job,
            "run": run.id,
            "status": run.status,
            "duration_seconds": run.duration_seconds,
            "source_bytes": run.source_bytes,
            "stored_bytes": run.stored_bytes,
            "errors": run.errors,
            "warnings": run.warnings.len(),
        });
        let start = self.start;
        let job = self.job;
        Some(std::thread::spawn(move || {
            if let Some(h) = start {
                let _ = h.join();
            }
            if let Err(e) = send_ping(&base, ping, &body) {
                tracing::warn!(job = %job, error = %e, "end ping not delivered");
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let b = "https://hc-ping.com/5b1d0c8e-0000-4000-8000-000000000000";
        assert_eq!(ping_url(b, Ping::Start), format!("{b}/start"));
        assert_eq!(ping_url(&format!("{b}/"), Ping::Success), b);
        assert_eq!(ping_url(b, Ping::Fail), format!("{b}/fail"));
        assert_eq!(
            ping_url("http://h/ping/abc?rid=1", Ping::Fail),
            "http://h/ping/abc/fail?rid=1"
        );
    }
}
