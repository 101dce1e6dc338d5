//! The HTTP API (axum): job status, runs and the job actions, plus health endpoints.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/-/healthy`, `/-/ready` | `OK` |
//! | GET | `/metrics` | Prometheus text format 0.0.4 |
//! | GET | `/api/status` | `{"jobs": [...], "scheduler": {"queued", "running", "heartbeat"}}` |
//! | GET | `/api/jobs`, `/api/jobs/{name}` | job status objects (404 for an unknown job) |
//! | GET | `/api/runs?job=&limit=` | `{"runs": [...]}`, newest first |
//! | POST | `/api/jobs/{name}/run` | 202 queued, 409 already queued or running |
//! | POST | `/api/jobs/{name}/pause`, `/resume` | 200 |

use std::sync::Arc;

use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use coffer_catalog::Catalog;
use coffer_config::Config;
use coffer_jobs::Trigger;
use parking_lot::Mutex;
use serde_json::{json, Value};

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

/// The routes.
pub fn router(state: State) -> Router {
    Router::new()
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(|| async { "OK\n" }))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{name}", get(job))
        .route("/api/jobs/{name}/run", post(run_job))
        .route("/api/jobs/{name}/pause", post(pause))
        .route("/api/jobs/{name}/resume", post(resume))
        .route("/api/runs", get(runs))
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

/// Job status objects, with QUEUED/RUNNING from the live queue.
fn statuses(s: &State) -> Result<Vec<Value>, ApiError> {
    let view = s.scheduler.view();
    let mut list = coffer_jobs::status::status(&s.config, &s.catalog.lock(), chrono::Utc::now())?;
    for j in &mut list {
        let name = j["name"].as_str().unwrap_or_default().to_string();
        if view.queued.contains(&name) {
            j["status"] = "QUEUED".into();
        }
    }
    Ok(list)
}

async fn metrics(AxState(s): AxState<State>) -> Response {
    let view = s.scheduler.view();
    let body = s.metrics.render(&s.config, &s.catalog.lock(), &view);
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
    let jobs = statuses(&s)?;
    Ok(Json(
        json!({ "jobs": jobs, "scheduler": s.scheduler.view() }),
    ))
}

async fn jobs(AxState(s): AxState<State>) -> ApiResult {
    Ok(Json(json!({ "jobs": statuses(&s)? })))
}

async fn job(AxState(s): AxState<State>, Path(name): Path<String>) -> ApiResult {
    known(&s, &name)?;
    let j = statuses(&s)?
        .into_iter()
        .find(|j| j["name"] == name.as_str())
        .unwrap_or(Value::Null);
    Ok(Json(j))
}

#[derive(serde::Deserialize)]
struct RunsQuery {
    job: Option<String>,
    limit: Option<usize>,
}

async fn runs(AxState(s): AxState<State>, Query(q): Query<RunsQuery>) -> ApiResult {
    if let Some(j) = &q.job {
        known(&s, j)?;
    }
    let limit = q.limit.unwrap_or(50).min(10_000);
    let runs = s.catalog.lock().list(q.job.as_deref(), limit)?;
    Ok(Json(json!({ "runs": runs })))
}

async fn run_job(
    AxState(s): AxState<State>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    known(&s, &name)?;
    if s.scheduler.enqueue(&name, Trigger::Api) {
        tracing::info!(job = %name, caller = "api", "run requested");
        Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "job": name, "queued": true })),
        ))
    } else {
        Err(ApiError(
            StatusCode::CONFLICT,
            format!("job {name:?} is already queued or running"),
        ))
    }
}

fn set_paused(s: &State, name: &str, paused: bool) -> ApiResult {
    known(s, name)?;
    s.catalog.lock().set_paused(name, paused, "api")?;
    tracing::info!(job = %name, paused, caller = "api", "job pause changed");
    Ok(Json(json!({ "job": name, "paused": paused })))
}

async fn pause(AxState(s): AxState<State>, Path(name): Path<String>) -> ApiResult {
    set_paused(&s, &name, true)
}

async fn resume(AxState(s): AxState<State>, Path(name): Path<String>) -> ApiResult {
    set_paused(&s, &name, false)
}
