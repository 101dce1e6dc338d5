//! The channel registry ([`build`]) and what HTTP channels share: one blocking client, the
//! retry loop with backoff, and the delivery record. Each channel's payload and signing live in
//! its own module.

mod alertmanager;
mod dingtalk;
mod email;
mod feishu;
mod slack;
mod webhook;
mod wecom;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use coffer_config::alerts::ChannelConfig;

use crate::{Channel, ChannelError, ChannelKind, Delivery, Options, RetryPolicy};

/// Makes the channel a `[[channel]]` table describes.
pub fn build(cfg: &ChannelConfig, opts: &Options) -> Result<Box<dyn Channel>, ChannelError> {
    let kind = cfg.kind().ok_or_else(|| ChannelError::Build {
        channel: cfg.name.clone(),
        message: format!("unknown channel type {:?}", cfg.kind),
    })?;
    let common = Common::new(cfg, kind, opts);
    // One arm per channel type; the match is exhaustive so a new type cannot be forgotten.
    Ok(match kind {
        ChannelKind::Email => Box::new(email::Email::new(common, cfg)?),
        ChannelKind::Webhook => Box::new(webhook::Webhook::new(common, cfg)?),
        ChannelKind::Slack => Box::new(slack::Slack::new(common, cfg)?),
        ChannelKind::Dingtalk => Box::new(dingtalk::Dingtalk::new(common, cfg)?),
        ChannelKind::Wecom => Box::new(wecom::Wecom::new(common, cfg)?),
        ChannelKind::Feishu => Box::new(feishu::Feishu::new(common, cfg)?),
        ChannelKind::Alertmanager => Box::new(alertmanager::Alertmanager::new(common, cfg)?),
    })
}

/// What every channel keeps from its table and the options.
pub(crate) struct Common {
    pub name: String,
    pub kind: ChannelKind,
    pub min_severity: crate::Severity,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub external_url: Option<String>,
}

impl Common {
    fn new(cfg: &ChannelConfig, kind: ChannelKind, opts: &Options) -> Common {
        Common {
            name: cfg.name.clone(),
            kind,
            min_severity: cfg.min_severity(),
            retry: opts.retry,
            timeout: cfg.timeout.map(|t| t.0).unwrap_or(opts.timeout),
            external_url: opts.external_url.clone(),
        }
    }

    pub fn build_error(&self, message: impl Into<String>) -> ChannelError {
        ChannelError::Build {
            channel: self.name.clone(),
            message: message.into(),
        }
    }

    /// The required `url` of an HTTP channel.
    pub fn url(&self, cfg: &ChannelConfig) -> Result<String, ChannelError> {
        match cfg.url.as_deref() {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(u.to_string()),
            Some(_) => Err(self.build_error("key `url` must start with http:// or https://")),
            None => Err(self.build_error("key `url` is required")),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts are used up.
    pub fn with_retries(
        &self,
        mut attempt: impl FnMut() -> Attempt,
    ) -> Result<Delivery, ChannelError> {
        let start = Instant::now();
        let mut n = 0;
        loop {
            n += 1;
            let a = attempt();
            let retry = a.retryable && n < self.retry.attempts.max(1);
            let delivery = Delivery {
                channel: self.name.clone(),
                kind: self.kind.as_str(),
                attempts: n,
                status: a.status,
                duration: start.elapsed(),
                error: a.error,
            };
            match &delivery.error {
                None => {
                    tracing::debug!(channel = %self.name, attempts = n, status = ?a.status, "notification delivered");
                    return Ok(delivery);
                }
                Some(e) if retry => {
                    let wait = self.retry.delay_before(n + 1);
                    tracing::warn!(channel = %self.name, attempt = n, error = %e, wait_ms = wait.as_millis() as u64, "notification failed, retrying");
                    std::thread::sleep(wait);
                }
                Some(e) => {
                    tracing::warn!(channel = %self.name, attempts = n, error = %e, "notification failed");
                    return Err(ChannelError::Delivery(Box::new(delivery)));
                }
            }
        }
    }
}

/// The outcome of one attempt.
pub(crate) struct Attempt {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub retryable: bool,
}

impl Attempt {
    pub fn ok(status: Option<u16>) -> Attempt {
        Attempt {
            status,
            error: None,
            retryable: false,
        }
    }

    pub fn failed(status: Option<u16>, error: String, retryable: bool) -> Attempt {
        Attempt {
            status,
            error: Some(error),
            retryable,
        }
    }
}

/// One blocking HTTP client for the process. Built on first use with the ring crypto
/// provider, the one the rest of coffer uses, so that only one TLS stack is linked.
fn client() -> Result<&'static reqwest::blocking::Client, String> {
    static CLIENT: OnceLock<Result<reqwest::blocking::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
            reqwest::blocking::Client::builder()
                .user_agent(concat!("coffer/", env!("CARGO_PKG_VERSION")))
                // Redirects could carry a signed body somewhere else.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("building the HTTP client: {}", e.without_url()))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// How a receiver that answers 200 reports a refusal in its JSON body.
pub(crate) type BodyCheck = fn(&[u8]) -> Result<(), String>;

/// One POST of a JSON body. Connection errors, timeouts, 5xx and 429 are worth a retry;
/// other 4xx and a refusal in the body (`check`) are not: the same message would be refused
/// again.
pub(crate) fn post(
    timeout: Duration,
    url: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    check: Option<BodyCheck>,
) -> Attempt {
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Attempt::failed(None, e, false),
    };
    let mut req = client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = match req.send() {
        Ok(r) => r,
        // The URL may hold a token (DingTalk, WeCom, Slack): drop it from the message.
        Err(e) => return Attempt::failed(None, describe(e), true),
    };
    let status = resp.status();
    let code = Some(status.as_u16());
    let text = resp.bytes().map(|b| b.to_vec()).unwrap_or_default();
    if !status.is_success() {
        let retry = status.is_server_error() || status.as_u16() == 429;
        return Attempt::failed(code, format!("HTTP {status}: {}", snippet(&text)), retry);
    }
    if let Some(check) = check {
        if let Err(e) = check(&text) {
            return Attempt::failed(code, e, false);
        }
    }
    Attempt::ok(code)
}

/// A transport error without its URL, with its cause chain (connection refused, timed out).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

/// The start of a response body, for error messages.
fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// For robots that answer `{"errcode": N, "errmsg": "..."}` (DingTalk, WeCom).
pub(crate) fn check_errcode(body: &[u8]) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| format!("unexpected answer: {}", snippet(body)))?;
    match v.get("errcode").and_then(|c| c.as_i64()) {
        Some(0) => Ok(()),
        Some(c) => Err(format!(
            "refused: errcode {c}: {}",
            v.get("errmsg").and_then(|m| m.as_str()).unwrap_or("")
        )),
        None => Err(format!("unexpected answer: {}", snippet(body))),
    }
}

/// `HMAC-SHA256(key, msg)`.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // new_from_slice accepts any key length for HMAC; the error arm cannot happen.
    match <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg);
            m.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

/// JSON bytes of a value built with `json!` (cannot fail for those).
pub(crate) fn to_json(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn errcode_bodies() {
        assert!(check_errcode(br#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        let e = check_errcode(br#"{"errcode":310000,"errmsg":"sign not match"}"#).unwrap_err();
        assert!(e.contains("310000") && e.contains("sign not match"), "{e}");
        assert!(check_errcode(b"<html>").is_err());
    }

    #[test]
    fn retries_then_reports_attempts() {
        let c = Common {
            name: "t".into(),
            kind: ChannelKind::Webhook,
            min_severity: crate::Severity::Low,
            retry: RetryPolicy {
                attempts: 3,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
            },
            timeout: Duration::from_secs(1),
            external_url: None,
        };
        let mut calls = 0;
        let e = c
            .with_retries(|| {
                calls += 1;
                Attempt::failed(Some(503), "HTTP 503".into(), true)
            })
            .unwrap_err();
        assert_eq!(calls, 3);
        assert_eq!(e.delivery().unwrap().attempts, 3);
        assert_eq!(e.delivery().unwrap().status, Some(503));
        // A final failure is not retried.
        let mut calls = 0;
        let _ = c.with_retries(|| {
            calls += 1;
            Attempt::failed(Some(400), "HTTP 400".into(), false)
        });
        assert_eq!(calls, 1);
        let d = c.with_retries(|| Attempt::ok(Some(200))).unwrap();
        assert_eq!((d.attempts, d.ok()), (1, true));
    }
}
