//! The HTTP API (axum): job status, runs and the job actions, plus health endpoints.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/-/healthy`, `/-/ready` | `OK` |
//! | GET | `/metrics` | Prometheus text format 0.0.4 |
//! | GET | `/api/status` | `{"jobs": [...], "scheduler": {"queued", "running", "heartbeat"}}` |
//! | GET | `/api/jobs`, `/api/jobs/{name}` | job status objects (404 for an unknown job) |
//! | GET | `/api/runs?job=&kind=&limit=` | `{"runs": [...]}`, newest first (kind `backup` or `verify`) |
//! | GET | `/api/repositories` | `{"repositories": [...]}`: storage, size, snapshots, last verify |
//! | GET | `/api/metrics` | the numbers of `/metrics` as JSON |
//! | GET | `/api/audit?limit=` | `{"audit": [...]}`: the mutating calls and their callers |
//! | POST | `/api/jobs/{name}/run`, `/verify` | 202 queued, 409 already queued or running |
//! | POST | `/api/jobs/{name}/pause`, `/resume` | 200 |
//! | GET | `/api/alerts?state=&severity=` | `{"alerts": [...]}` (state pending, firing, resolved) |
//! | POST | `/api/alerts/{id}/acknowledge` | body `{"comment": "..."}`; 404 when no firing alert has that id |
//! | GET | `/api/silences?expired=true` | `{"silences": [...]}` (Alertmanager's field names) |
//! | POST | `/api/silences` | body `{"matchers": ["backup_job=db"], "duration": "2h", "comment": "..."}` (or `startsAt`/`endsAt`); 201 |
//! | DELETE | `/api/silences/{id}` | expires it; 404 when no active silence has that id |
//! | GET | `/api/deliveries?channel=&limit=` | `{"deliveries": [...]}`: the notification log |
//!
//! Errors are `{"error": message}` with 400 (bad query), 401 (no or unknown token), 403
//! (read token on a POST), 404 (unknown job), 409 (already queued). Access: [`crate::auth`].

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use coffer_catalog::{Catalog, RunKind, Status};
use coffer_config::Config;
use coffer_jobs::Trigger;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::auth::{Access, Caller, Tokens};
use crate::repos::Repos;
use crate::scheduler::Scheduler;

/// What the handlers share.
#[derive(Clone)]
pub struct State {
    /// The config.
    pub config: Arc<Config>,
    /// The catalog (reads are short; one connection is enough).
    pub catalog: Arc<Mutex<Catalog>>,
    /// The queue.
    pub scheduler: Arc<Scheduler>,
    /// Counters and the exposition.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The repositories' figures.
    pub repos: Arc<Repos>,
    /// Wakes the alerting thread (after an ack or a silence).
    pub poke: Arc<crate::alerting::Poke>,
    /// The audit trail.
    pub auditor: Arc<coffer_jobs::audit::Auditor>,
}

/// An error answer: a status code and `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<coffer_catalog::CatalogError> for ApiError {
    fn from(e: coffer_catalog::CatalogError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Runs catalog work on the blocking pool: SQLite calls must not hold the two async threads
/// that also answer `/-/healthy`.
async fn blocking<T, F>(s: &State, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&State) -> Result<T, ApiError> + Send + 'static,
{
    let s = s.clone();
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// Every route: its path, its handlers and, for a route that changes something, the action
/// the audit trail records a call as (its target is the path's `{...}` parameter). The one
/// route table: the router and the access guard are both built from it.
fn routes() -> Vec<(&'static str, MethodRouter<State>, Option<&'static str>)> {
    vec![
        ("/-/healthy", get(|| async { "OK\n" }), None),
        ("/-/ready", get(|| async { "OK\n" }), None),
        ("/metrics", get(metrics), None),
        ("/api/status", get(status), None),
        ("/api/jobs", get(jobs), None),
        ("/api/jobs/{name}", get(job), None),
        ("/api/jobs/{name}/run", post(run_job), Some("job.run")),
        ("/api/jobs/{name}/pause", post(pause), Some("job.pause")),
        ("/api/jobs/{name}/resume", post(resume), Some("job.resume")),
        (
            "/api/jobs/{name}/verify",
            post(verify_job),
            Some("job.verify"),
        ),
        ("/api/scenarios", get(scenarios), None),
        ("/api/scenarios/{name}/drill", post(drill), Some("dr.drill")),
        ("/api/runs", get(runs), None),
        ("/api/repositories", get(repositories), None),
        ("/api/metrics", get(metrics_json), None),
        ("/api/audit", get(audit), None),
        ("/api/alerts", get(alerts), None),
        (
            "/api/alerts/{id}/acknowledge",
            post(acknowledge),
            Some("alert.ack"),
        ),
        (
            "/api/silences",
            get(silences).post(add_silence),
            Some("silence.add"),
        ),
        (
            "/api/silences/{id}",
            delete(expire_silence),
            Some("silence.expire"),
        ),
        ("/api/deliveries", get(deliveries), None),
    ]
}

/// The routes, behind the access guard of `tokens`.
pub fn router(state: State, tokens: Arc<Tokens>) -> Router {
    let table = routes();
    let access = Access {
        tokens,
        catalog: Arc::clone(&state.catalog),
        auditor: Arc::clone(&state.auditor),
        actions: Arc::new(
            table
                .iter()
                .filter_map(|(p, _, a)| Some((*p, (*a)?)))
                .collect(),
        ),
    };
    table
        .into_iter()
        .fold(Router::new(), |r, (path, handlers, _)| r.route(path, handlers))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint (see /api/status, /api/jobs, /api/runs, /api/repositories, /api/alerts, /api/silences, /api/metrics, /metrics)".into(),
            )
        })
        .layer(axum::middleware::from_fn_with_state(access, crate::auth::guard))
        .with_state(state)
}

fn known(s: &State, name: &str) -> Result<(), ApiError> {
    if s.config.job.iter().any(|j| j.name == name) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no job is named {name:?}"),
        ))
    }
}

/// Job status objects (of one job, or all), with QUEUED from the live queue.
fn statuses(s: &State, only: Option<&str>) -> Result<Vec<Value>, ApiError> {
    let view = s.scheduler.view();
    let now = chrono::Utc::now();
    let cat = s.catalog.lock();
    let mut list = Vec::new();
    for job in s
        .config
        .job
        .iter()
        .filter(|j| only.is_none_or(|n| n == j.name))
    {
        let mut j = coffer_jobs::status::job_status(&s.config, job, &cat, now)?;
        if view.queued.contains(&job.name) {
            j["status"] = "QUEUED".into();
        }
        list.push(j);
    }
    Ok(list)
}

async fn metrics(AxState(s): AxState<State>) -> Response {
    let body = match blocking(&s, |s| {
        let view = s.scheduler.view();
        let repos = s.repos.list(&s.config);
        Ok(s.metrics
            .render(&s.config, &s.catalog.lock(), &view, &repos))
    })
    .await
    {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn status(AxState(s): AxState<State>) -> ApiResult {
    blocking(&s, |s| {
        let jobs = statuses(s, None)?;
        Ok(Json(
            json!({ "jobs": jobs, "scheduler": s.scheduler.view() }),
        ))
    })
    .await
}

async fn jobs(AxState(s): AxState<State>) -> ApiResult {
    blocking(&s, |s| Ok(Json(json!({ "jobs": statuses(s, None)? })))).await
}

async fn job(AxState(s): AxState<State>, Path(name): Path<String>) -> ApiResult {
    known(&s, &name)?;
    blocking(&s, move |s| {
        Ok(Json(
            statuses(s, Some(&name))?
                .into_iter()
                .next()
                .unwrap_or(Value::Null),
        ))
    })
    .await
}

#[derive(serde::Deserialize)]
struct RunsQuery {
    job: Option<String>,
    kind: Option<String>,
    limit: Option<usize>,
}

async fn runs(AxState(s): AxState<State>, Query(q): Query<RunsQuery>) -> ApiResult {
    if let Some(j) = &q.job {
        known(&s, j)?;
    }
    let kind = match q.kind.as_deref() {
        None | Some("") | Some("all") => None,
        Some(k) => match RunKind::parse(k) {
            Some(k) => Some(k),
            None => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("kind {k:?} is not backup, verify, recover or all"),
                ))
            }
        },
    };
    let limit = q.limit.unwrap_or(50).min(10_000);
    blocking(&s, move |s| {
        let runs = s.catalog.lock().list_kind(q.job.as_deref(), kind, limit)?;
        Ok(Json(json!({ "runs": runs })))
    })
    .await
}

async fn repositories(AxState(s): AxState<State>) -> ApiResult {
    blocking(&s, repositories_of).await
}

fn repositories_of(s: &State) -> ApiResult {
    let cat = s.catalog.lock();
    let t = &s.config.server.storage;
    let mut list = Vec::new();
    for r in s.repos.list(&s.config) {
        let verify = cat.last_verify(&r.name)?;
        let mut v = serde_json::to_value(&r).unwrap_or_default();
        v["thresholds"] = json!({ "low": t.low, "high": t.high, "critical": t.critical });
        v["last_verify"] = match verify {
            Some(run) => json!({
                "run": run.id,
                "status": run.status,
                "ended": run.ended,
                "verify": run.verify,
            }),
            None => Value::Null,
        };
        list.push(v);
    }
    Ok(Json(json!({ "repositories": list })))
}

async fn metrics_json(AxState(s): AxState<State>) -> ApiResult {
    blocking(&s, |s| {
        let view = s.scheduler.view();
        let repos = s.repos.list(&s.config);
        Ok(Json(s.metrics.json(
            &s.config,
            &s.catalog.lock(),
            &view,
            &repos,
        )))
    })
    .await
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn audit(AxState(s): AxState<State>, Query(q): Query<AuditQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100).min(10_000);
    blocking(&s, move |s| {
        Ok(Json(
            json!({ "audit": s.catalog.lock().audit_list(limit)? }),
        ))
    })
    .await
}

fn enqueue(
    s: &State,
    name: &str,
    kind: RunKind,
    caller: &Caller,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    known(s, name)?;
    if s.scheduler.enqueue(name, kind, Trigger::Api) {
        tracing::info!(job = %name, kind = kind.as_str(), caller = %caller.actor, "run requested");
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "job": name, "kind": kind.as_str(), "queued": true })),
        ))
    } else {
        Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "job {name:?} already has a {} queued or running",
                kind.as_str()
            ),
        ))
    }
}

async fn run_job(
    AxState(s): AxState<State>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    enqueue(&s, &name, RunKind::Backup, &caller)
}

async fn verify_job(
    AxState(s): AxState<State>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    enqueue(&s, &name, RunKind::Verify, &caller)
}

/// The recovery scenarios with their targets, schedules and newest drill.
async fn scenarios(AxState(s): AxState<State>) -> ApiResult {
    blocking(&s, move |s| {
        let cat = s.catalog.lock();
        let mut out = Vec::new();
        for sc in s.config.scenarios() {
            let last = cat.last_of_kind(
                &sc.name,
                RunKind::Drill,
                &[Status::Success, Status::Warning, Status::Failed],
            )?;
            out.push(json!({
                "name": sc.name,
                "description": sc.description,
                "declared": sc.declared,
                "rto_target_seconds": sc.rto.as_secs(),
                "rpo_target_seconds": sc.rpo.map(|d| d.as_secs()),
                "drill_schedule": sc.drill_schedule,
                "steps": sc.steps.iter().map(|st| st.describe()).collect::<Vec<_>>(),
                "last_drill": last,
            }));
        }
        Ok(Json(json!({ "scenarios": out })))
    })
    .await
}

/// Queues a drill of a scenario (operators).
async fn drill(
    AxState(s): AxState<State>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if let Err(e) = s.config.find_scenario(&name) {
        return Err(ApiError(StatusCode::NOT_FOUND, e));
    }
    if s.scheduler.enqueue_drill(&name, Trigger::Api) {
        tracing::info!(scenario = %name, caller = %caller.actor, "drill requested");
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "scenario": name, "kind": "drill", "queued": true })),
        ))
    } else {
        Err(ApiError(
            StatusCode::CONFLICT,
            format!("scenario {name:?} already has a drill queued or running"),
        ))
    }
}

async fn set_paused(s: &State, name: String, paused: bool, caller: Caller) -> ApiResult {
    known(s, &name)?;
    blocking(s, move |s| {
        s.catalog.lock().set_paused(&name, paused, &caller.actor)?;
        tracing::info!(job = %name, paused, caller = %caller.actor, "job pause changed");
        Ok(Json(json!({ "job": name, "paused": paused })))
    })
    .await
}

async fn pause(
    AxState(s): AxState<State>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult {
    set_paused(&s, name, true, caller).await
}

async fn resume(
    AxState(s): AxState<State>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult {
    set_paused(&s, name, false, caller).await
}

#[derive(serde::Deserialize)]
struct AlertsQuery {
    state: Option<String>,
    severity: Option<String>,
}

async fn alerts(AxState(s): AxState<State>, Query(q): Query<AlertsQuery>) -> ApiResult {
    if let Some(st) = q.state.as_deref().filter(|x| !x.is_empty()) {
        if !["pending", "firing", "resolved"].contains(&st) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("state {st:?} is not pending, firing or resolved"),
            ));
        }
    }
    if let Some(sev) = q.severity.as_deref().filter(|x| !x.is_empty()) {
        if coffer_config::alerts::Severity::parse(sev).is_none() {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("severity {sev:?} is not critical, high, medium or low"),
            ));
        }
    }
    blocking(&s, move |s| {
        let rows = s.catalog.lock().alert_query(
            q.state.as_deref().filter(|x| !x.is_empty()),
            q.severity.as_deref().filter(|x| !x.is_empty()),
        )?;
        let list: Vec<Value> = rows
            .iter()
            .filter_map(|r| serde_json::from_str(&r.body).ok())
            .collect();
        Ok(Json(json!({ "alerts": list })))
    })
    .await
}

#[derive(serde::Deserialize, Default)]
struct AckBody {
    #[serde(default)]
    comment: String,
}

async fn acknowledge(
    AxState(s): AxState<State>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<Json<AckBody>>,
) -> ApiResult {
    let comment = body.map(|b| b.0.comment).unwrap_or_default();
    blocking(&s, move |s| {
        let ack = coffer_catalog::Ack {
            by: caller.actor.clone(),
            at: chrono::Utc::now(),
            comment,
        };
        match s.catalog.lock().ack(&id, &ack)? {
            Some(full) => {
                s.poke.poke();
                Ok(Json(json!({ "id": full, "acknowledged": ack })))
            }
            None => Err(ApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "no firing alert has the id {id:?} (GET /api/alerts?state=firing lists them)"
                ),
            )),
        }
    })
    .await
}

#[derive(serde::Deserialize)]
struct SilencesQuery {
    expired: Option<bool>,
}

async fn silences(AxState(s): AxState<State>, Query(q): Query<SilencesQuery>) -> ApiResult {
    blocking(&s, move |s| {
        let now = chrono::Utc::now();
        let list: Vec<Value> = s
            .catalog
            .lock()
            .silences(q.expired.unwrap_or(false), now, 1000)?
            .into_iter()
            .map(|x| {
                let state = x.state(now);
                let mut v = serde_json::to_value(x).unwrap_or_default();
                v["status"] = json!({ "state": state });
                v
            })
            .collect();
        Ok(Json(json!({ "silences": list })))
    })
    .await
}

/// A matcher given as `"name=value"` text or as Alertmanager's object.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum MatcherIn {
    Text(String),
    Object(coffer_catalog::Matcher),
}

#[derive(serde::Deserialize)]
struct SilenceBody {
    matchers: Vec<MatcherIn>,
    #[serde(rename = "startsAt")]
    starts_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(rename = "endsAt")]
    ends_at: Option<chrono::DateTime<chrono::Utc>>,
    duration: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(rename = "createdBy")]
    created_by: Option<String>,
}

async fn add_silence(
    AxState(s): AxState<State>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<SilenceBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let Json(b) = body.map_err(|e| bad(format!("body: {e}")))?;
    let mut matchers = Vec::new();
    for m in b.matchers {
        matchers.push(match m {
            MatcherIn::Text(t) => coffer_alerts::engine::parse_matcher(&t).map_err(bad)?,
            MatcherIn::Object(o) => o,
        });
    }
    let now = chrono::Utc::now();
    let starts = b.starts_at.unwrap_or(now);
    let ends = match (b.ends_at, b.duration) {
        (Some(e), None) => e,
        (None, Some(d)) => {
            let span: coffer_config::Span = d.parse().map_err(bad)?;
            starts + chrono::Duration::seconds(span.secs() as i64)
        }
        _ => return Err(bad("give either endsAt or duration (\"2h\")".into())),
    };
    // The creator is the caller; a name in the body is kept beside it, not instead of it.
    let by = match b.created_by {
        Some(n) if !n.is_empty() => format!("{} ({n})", caller.actor),
        _ => caller.actor.clone(),
    };
    let silence = coffer_alerts::engine::new_silence(matchers, starts, ends, &by, &b.comment, now)
        .map_err(bad)?;
    blocking(&s, move |s| {
        s.catalog.lock().add_silence(&silence)?;
        s.poke.poke();
        Ok((StatusCode::CREATED, Json(json!(silence))))
    })
    .await
}

async fn expire_silence(AxState(s): AxState<State>, Path(id): Path<String>) -> ApiResult {
    blocking(&s, move |s| {
        match s.catalog.lock().expire_silence(&id, chrono::Utc::now())? {
            Some(full) => {
                s.poke.poke();
                Ok(Json(json!({ "id": full, "expired": true })))
            }
            None => Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no active or pending silence has the id {id:?}"),
            )),
        }
    })
    .await
}

#[derive(serde::Deserialize)]
struct DeliveriesQuery {
    channel: Option<String>,
    limit: Option<usize>,
}

async fn deliveries(AxState(s): AxState<State>, Query(q): Query<DeliveriesQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100).min(10_000);
    blocking(&s, move |s| {
        let list: Vec<Value> = s
            .catalog
            .lock()
            .deliveries(q.channel.as_deref(), limit)?
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect();
        Ok(Json(json!({ "deliveries": list })))
    })
    .await
}
