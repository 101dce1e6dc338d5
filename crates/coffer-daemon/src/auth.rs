//! Access to the HTTP API: bearer tokens from `[[server.token]]`, each with a role, and the
//! record of every call that changes something.
//!
//! - No token declared: everything is open, and the daemon listens only on loopback (the
//!   config check and `serve` refuse any other address).
//! - Tokens declared: `/api/*` needs `Authorization: Bearer TOKEN`. A missing or unknown
//!   token is 401 (with `WWW-Authenticate: Bearer`), a `read` token on a POST is 403.
//!   `/metrics` and `/-/healthy`, `/-/ready` need a token too, unless `open_metrics = true`.
//! - Only SHA-256 digests of the tokens are kept in memory, compared in constant time.
//! - Every POST is recorded in the catalog's audit table with its caller (`token:NAME` or
//!   `anonymous`), the action, the target, the outcome (HTTP status) and the peer address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State as AxState};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use coffer_catalog::{AuditEntry, Catalog};
use coffer_config::{Config, Role};
use parking_lot::Mutex;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::DaemonError;

/// What the guard needs: the tokens, where to record calls, and the audit action of each
/// route that changes something (from the API's route table, by route path).
#[derive(Clone)]
pub struct Access {
    /// Who may call what.
    pub tokens: Arc<Tokens>,
    /// Where calls are recorded.
    pub catalog: Arc<Mutex<Catalog>>,
    /// The audit trail.
    pub auditor: Arc<coffer_jobs::audit::Auditor>,
    /// Route path (`/api/jobs/{name}/run`) to action (`job.run`).
    pub actions: Arc<HashMap<&'static str, &'static str>>,
}

/// One accepted token.
struct Token {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The tokens the API accepts.
pub struct Tokens {
    tokens: Vec<Token>,
    open_metrics: bool,
}

/// Who made a request (a request extension the handlers read).
#[derive(Clone, Debug)]
pub struct Caller {
    /// `token:NAME` or `anonymous`.
    pub actor: String,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    // Constant time: no early exit on the first differing byte.
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Reads the tokens of the config (token files included).
    pub fn load(cfg: &Config) -> Result<Tokens, DaemonError> {
        let mut tokens = Vec::new();
        for t in &cfg.server.token {
            let bad = |message: String| DaemonError::Token {
                name: t.name.clone(),
                message,
            };
            let digest = if let Some(s) = &t.token {
                digest(s)
            } else if let Some(f) = &t.token_file {
                let s = std::fs::read_to_string(&**f)
                    .map_err(|e| bad(format!("reading token_file {}: {e}", &**f)))?;
                let s = s.trim();
                if s.len() < 16 {
                    return Err(bad(format!(
                        "token_file {} holds fewer than 16 characters",
                        &**f
                    )));
                }
                digest(s)
            } else if let Some(h) = &t.token_sha256 {
                let mut d = [0u8; 32];
                hex::decode_to_slice(h, &mut d)
                    .map_err(|_| bad("token_sha256 is not 64 hex digits".into()))?;
                d
            } else {
                return Err(bad("give one of token, token_file or token_sha256".into()));
            };
            tokens.push(Token {
                name: t.name.clone(),
                role: t.role,
                digest,
            });
        }
        Ok(Tokens {
            tokens,
            open_metrics: cfg.server.open_metrics,
        })
    }

    /// Whether any token is declared.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    fn find(&self, presented: &str) -> Option<&Token> {
        let d = digest(presented);
        // Every token is compared, so the time does not say which one matched.
        let mut found = None;
        for t in &self.tokens {
            if same(&t.digest, &d) {
                found = Some(t);
            }
        }
        found
    }
}

fn deny(code: StatusCode, message: &str) -> Response {
    let mut r = (code, Json(json!({ "error": message }))).into_response();
    if code == StatusCode::UNAUTHORIZED {
        if let Ok(v) = header::HeaderValue::from_str("Bearer realm=\"coffer\"") {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    r
}

/// The middleware: checks the token and role, and records mutating calls.
pub async fn guard(AxState(s): AxState<Access>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let (action, target) = action_of(
        &s.actions,
        req.extensions().get::<MatchedPath>().map(|m| m.as_str()),
        req.method(),
        &path,
    );
    let method = req.method().clone();
    let origin = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let open_path = path == "/metrics" || path.starts_with("/-/");
    let needs = if method == Method::GET || method == Method::HEAD {
        Role::Read
    } else {
        Role::Operator
    };
    let actor = if !s.tokens.enabled() || (open_path && s.tokens.open_metrics) {
        "anonymous".to_string()
    } else {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(presented) = presented else {
            return deny(
                StatusCode::UNAUTHORIZED,
                "this API needs a token: send the header `Authorization: Bearer TOKEN` (tokens are declared in [[server.token]])",
            );
        };
        let Some(tok) = s.tokens.find(presented) else {
            tracing::warn!(path = %path, origin = ?origin, "API call with an unknown token refused");
            if method != Method::GET {
                record(&s, "unknown-token", &action, &target, "401", origin);
            }
            return deny(StatusCode::UNAUTHORIZED, "unknown token");
        };
        if needs == Role::Operator && tok.role == Role::Read {
            record(
                &s,
                &format!("token:{}", tok.name),
                &action,
                &target,
                "403",
                origin,
            );
            return deny(
                StatusCode::FORBIDDEN,
                &format!(
                    "token {:?} has the read role; this call needs an operator token",
                    tok.name
                ),
            );
        }
        format!("token:{}", tok.name)
    };
    req.extensions_mut().insert(Caller {
        actor: actor.clone(),
    });
    let resp = next.run(req).await;
    if method != Method::GET && method != Method::HEAD {
        let outcome = if resp.status().is_success() {
            "ok".to_string()
        } else {
            resp.status().as_u16().to_string()
        };
        record(&s, &actor, &action, &target, &outcome, origin);
    }
    resp
}

/// The action and target a call is recorded as: `POST /api/jobs/x/run` (route
/// `/api/jobs/{name}/run`) is action `job.run`, target `x`. A call no route declares an
/// action for is recorded by its method and path.
fn action_of(
    actions: &HashMap<&'static str, &'static str>,
    route: Option<&str>,
    method: &Method,
    path: &str,
) -> (String, String) {
    let Some((route, action)) = route.and_then(|r| Some((r, *actions.get(r)?))) else {
        return (format!("{} {path}", method.as_str()), String::new());
    };
    let target = route
        .split('/')
        .zip(path.split('/'))
        .find(|(r, _)| r.starts_with('{'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    (action.to_string(), target)
}

fn record(
    s: &Access,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    origin: Option<String>,
) {
    tracing::info!(event = "audit", actor, action = %action, target = %target, outcome, origin = ?origin, "API call");
    let e = AuditEntry {
        time: chrono::Utc::now(),
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
        outcome: outcome.to_string(),
        origin,
    };
    let catalog = Arc::clone(&s.catalog);
    let auditor = Arc::clone(&s.auditor);
    // Off the async threads, like every catalog call of the API.
    tokio::task::spawn_blocking(move || auditor.record(&catalog.lock(), &e));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_digests() {
        let actions = HashMap::from([("/api/jobs/{name}/pause", "job.pause")]);
        assert_eq!(
            action_of(
                &actions,
                Some("/api/jobs/{name}/pause"),
                &Method::POST,
                "/api/jobs/nightly/pause"
            ),
            ("job.pause".to_string(), "nightly".to_string())
        );
        assert_eq!(
            action_of(&actions, None, &Method::POST, "/api/nothing"),
            ("POST /api/nothing".to_string(), String::new())
        );
        let a = digest("0123456789abcdef");
        assert!(same(&a, &digest("0123456789abcdef")));
        assert!(!same(&a, &digest("0123456789abcdeF")));
    }
}
