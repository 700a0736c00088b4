//! The HTTP/JSON API (`/v1/...`), the same over the Unix socket and (with a token) over TCP.
//! Handlers are thin: parse, call the supervisor, map its error to a status. Every error body
//! is `{"error": "..."}` with a message that names the problem and the fix.

use crate::logs::{LogLine, Stream};
use crate::model::{BatchRequest, CreateRequest, PrunedProgram, PrunedPrograms, SandboxRecord, State, now_ms};
use crate::policy::redact;
use crate::programs::ProgramError;
use crate::supervisor::{SupError, Supervisor};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::json;
use spore_api::{Classified, ErrorKind};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

type Sup = AxState<Arc<Supervisor>>;
type Params = Query<Vec<(String, String)>>;

/// An error response: its kind (which gives its status, in one place) and its message.
pub struct ApiError(ErrorKind, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<SupError> for ApiError {
    fn from(err: SupError) -> Self {
        ApiError(err.kind(), err.to_string())
    }
}

impl From<ProgramError> for ApiError {
    fn from(err: ProgramError) -> Self {
        SupError::from(err).into()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body, naming the field or position on failure (serde's message does).
fn parse<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError(ErrorKind::Invalid, format!("invalid request body: {e}")))
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn flag(params: &[(String, String)], key: &str) -> bool {
    matches!(param(params, key), Some("" | "1" | "true" | "yes"))
}

/// The router, without authentication (the caller adds it for TCP). Request bodies are capped
/// by the policy: program uploads at `max_program_body`, everything else at
/// `max_request_body`.
pub fn router(sup: Arc<Supervisor>) -> Router {
    let (request_body, program_body) = (sup.policy().max_request_body, sup.policy().max_program_body);
    routes(program_body)
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| router.route(path, methods))
        .fallback(|| async { ApiError(ErrorKind::NotFound, "no such endpoint; see GET /v1/openapi.json".into()) })
        .layer(axum::extract::DefaultBodyLimit::max(request_body))
        .with_state(sup)
}

/// Every path of the API and what answers there: one list, which the router is built from
/// and `openapi.json` is held to (a test compares the two).
fn routes(program_body: usize) -> Vec<(&'static str, axum::routing::MethodRouter<Arc<Supervisor>>)> {
    vec![
        ("/v1/health", get(health)),
        ("/v1/openapi.json", get(openapi)),
        (
            "/v1/programs/{digest}",
            get(get_program)
                .head(has_program)
                .put(put_program)
                .layer(axum::extract::DefaultBodyLimit::max(program_body)),
        ),
        ("/v1/programs/prune", post(prune_programs)),
        ("/v1/sandboxes", get(list).post(create)),
        ("/v1/sandboxes/batch", post(batch)),
        ("/v1/sandboxes/{id}", get(inspect).delete(remove)),
        ("/v1/sandboxes/{id}/start", post(start)),
        ("/v1/sandboxes/{id}/stop", post(stop)),
        ("/v1/sandboxes/{id}/kill", post(kill)),
        ("/v1/sandboxes/{id}/logs", get(logs)),
        ("/v1/sandboxes/{id}/stats", get(stats)),
        ("/v1/stats", get(all_stats)),
        ("/v1/events", get(events)),
        ("/metrics", get(metrics)),
    ]
}

/// Bearer-token check for the TCP listener.
pub async fn require_token(token: Arc<String>, req: Request, next: Next) -> Response {
    let given =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if spore_types::constant_time_eq(given.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => ApiError(ErrorKind::Unauthorized, "missing or wrong bearer token; pass --token or set SPORE_TOKEN".into())
            .into_response(),
    }
}

async fn health(AxState(sup): Sup) -> Json<serde_json::Value> {
    let counts: serde_json::Map<String, serde_json::Value> =
        sup.counts().into_iter().map(|(s, n)| (s.as_str().to_owned(), n.into())).collect();
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION"), "sandboxes": counts }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json")).into_response()
}

/// `HEAD`: whether the daemon has a program. A deploy asks this instead of uploading, then
/// creates: the question counts as a use, so a prune in between leaves the program alone.
async fn has_program(AxState(sup): Sup, Path(digest): Path<String>) -> ApiResult<StatusCode> {
    if !sup.programs().has(&digest)? {
        return Ok(StatusCode::NOT_FOUND);
    }
    sup.programs().touch(&digest)?;
    Ok(StatusCode::OK)
}

async fn get_program(AxState(sup): Sup, Path(digest): Path<String>) -> ApiResult<Response> {
    let bytes = sup.programs().get(&digest)?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}

async fn put_program(AxState(sup): Sup, Path(digest): Path<String>, body: Bytes) -> ApiResult<Response> {
    let existed = sup.programs().has(&digest)?;
    let store = sup.clone();
    let d = digest.clone();
    tokio::task::spawn_blocking(move || store.programs().put(&d, &body))
        .await
        .map_err(|e| ApiError(ErrorKind::Internal, e.to_string()))??;
    // Compile now: a wasm that does not compile is reported to the uploader, with the reason.
    let compiling = sup.clone();
    let d = digest.clone();
    tokio::task::spawn_blocking(move || compiling.runnable(&d))
        .await
        .map_err(|e| ApiError(ErrorKind::Internal, e.to_string()))??;
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json!({ "digest": digest }))).into_response())
}

/// `POST /v1/programs/prune[?grace=1h]`: deletes the programs no sandbox uses that nobody
/// uploaded or used within the grace period (default an hour, so that a deploy between its
/// upload and its create keeps its program).
async fn prune_programs(AxState(sup): Sup, Query(params): Params) -> ApiResult<Response> {
    let grace = match param(&params, "grace") {
        None => Duration::from_secs(3600),
        Some(g) => humantime::parse_duration(g)
            .map_err(|e| ApiError(ErrorKind::Invalid, format!("grace {g:?}: {e}; write e.g. 1h, 10m or 0s")))?,
    };
    let deleted = sup.prune_programs(grace).await?;
    let bytes = deleted.iter().map(|(_, b)| b).sum();
    let deleted = deleted.into_iter().map(|(digest, bytes)| PrunedProgram { digest, bytes }).collect();
    Ok(Json(PrunedPrograms { deleted, bytes }).into_response())
}

async fn list(AxState(sup): Sup, Query(params): Params) -> ApiResult<Response> {
    let mut labels = Vec::new();
    let mut state = None;
    let shown = shown(&sup, &params)?;
    for (k, v) in &params {
        match k.as_str() {
            "secrets" => {}
            "label" => {
                let (lk, lv) = v
                    .split_once('=')
                    .ok_or_else(|| ApiError(ErrorKind::Invalid, format!("label filter {v:?}: write KEY=VALUE")))?;
                labels.push((lk.to_owned(), lv.to_owned()));
            }
            "state" => {
                state = Some(match v.as_str() {
                    "created" => State::Created,
                    "running" => State::Running,
                    "restarting" => State::Restarting,
                    "exited" => State::Exited,
                    other => {
                        return Err(ApiError(
                            ErrorKind::Invalid,
                            format!("state filter {other:?}: use created, running, restarting or exited"),
                        ));
                    }
                });
            }
            other => {
                return Err(ApiError(
                    ErrorKind::Invalid,
                    format!("unknown query parameter {other:?}; use label, state or secrets"),
                ));
            }
        }
    }
    Ok(Json(sup.list(&labels, state).into_iter().map(shown).collect::<Vec<_>>()).into_response())
}

/// The sandboxes a create replaces (`?replace=ID` or name, repeatable; a redeploy).
fn replaced(params: &[(String, String)]) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "replace" => out.push(v.clone()),
            other => {
                return Err(ApiError(ErrorKind::Invalid, format!("unknown query parameter {other:?}; use replace")));
            }
        }
    }
    Ok(out)
}

async fn create(AxState(sup): Sup, Query(params): Params, body: Bytes) -> ApiResult<Response> {
    let replace = replaced(&params)?;
    let req: CreateRequest = parse(&body)?;
    let mut created = sup.create(vec![req], &replace).await?;
    Ok((StatusCode::CREATED, Json(created.remove(0))).into_response())
}

async fn batch(AxState(sup): Sup, Query(params): Params, body: Bytes) -> ApiResult<Response> {
    let replace = replaced(&params)?;
    let req: BatchRequest = parse(&body)?;
    let max = sup.policy().max_batch;
    if req.count == 0 || req.count as usize > max {
        return Err(ApiError(
            ErrorKind::Invalid,
            format!("count {} must be between 1 and {max} ([policy] max_batch)", req.count),
        ));
    }
    let requests = (0..req.count)
        .map(|i| {
            let mut r = req.template.clone();
            r.name = r.name.as_ref().map(|prefix| format!("{prefix}-{i}"));
            r
        })
        .collect();
    let created = sup.create(requests, &replace).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn inspect(AxState(sup): Sup, Path(id): Path<String>, Query(params): Params) -> ApiResult<Response> {
    let shown = shown(&sup, &params)?;
    Ok(Json(shown(sup.inspect(&id)?)).into_response())
}

/// How records are shown: with variables' values only when the client asks (`secrets=true`)
/// and the policy allows it. Every other answer that carries a record hides them.
fn shown(sup: &Supervisor, params: &[(String, String)]) -> ApiResult<fn(SandboxRecord) -> SandboxRecord> {
    if !flag(params, "secrets") {
        return Ok(hidden);
    }
    sup.policy().check_reveal().map_err(|e| ApiError::from(SupError::from(e)))?;
    Ok(|r| r)
}

/// A record with its variables' values hidden.
fn hidden(mut record: SandboxRecord) -> SandboxRecord {
    redact(&mut record.spec);
    record
}

async fn remove(AxState(sup): Sup, Path(id): Path<String>, Query(params): Params) -> ApiResult<StatusCode> {
    sup.remove(&id, flag(&params, "force")).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn start(AxState(sup): Sup, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(hidden(sup.start_sandbox(&id).await?)).into_response())
}

async fn stop(AxState(sup): Sup, Path(id): Path<String>, Query(params): Params) -> ApiResult<Response> {
    // At most a day: a grace period is added to the present, which a huge one would overflow.
    let grace = match param(&params, "timeout") {
        None => Duration::from_secs(10),
        Some(t) => {
            t.parse::<f64>().ok().filter(|t| (0.0..=86_400.0).contains(t)).map(Duration::from_secs_f64).ok_or_else(
                || ApiError(ErrorKind::Invalid, format!("timeout {t:?}: seconds from 0 to 86400, e.g. 10 or 0.5")),
            )?
        }
    };
    Ok(Json(hidden(sup.stop(&id, grace).await?)).into_response())
}

async fn kill(AxState(sup): Sup, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(hidden(sup.kill(&id).await?)).into_response())
}

async fn stats(AxState(sup): Sup, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(Json(sup.stats(&id)?).into_response())
}

async fn all_stats(AxState(sup): Sup) -> ApiResult<Response> {
    let stats: Vec<_> = sup.list(&[], None).iter().filter_map(|r| sup.stats(&r.id).ok()).collect();
    Ok(Json(stats).into_response())
}

/// `since`: RFC 3339 time, a duration back from now (`10m`), or Unix milliseconds.
fn parse_since(s: &str) -> ApiResult<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms().saturating_sub(d.as_millis() as u64));
    }
    Err(ApiError(ErrorKind::Invalid, format!("since {s:?}: use an RFC 3339 time, a duration like 10m, or Unix ms")))
}

async fn logs(AxState(sup): Sup, Path(id): Path<String>, Query(params): Params) -> ApiResult<Response> {
    let record = sup.inspect(&id)?;
    let since = param(&params, "since").map(parse_since).transpose()?;
    let tail = match param(&params, "tail") {
        None | Some("all") => None,
        Some(n) => {
            Some(n.parse::<usize>().map_err(|_| ApiError(ErrorKind::Invalid, format!("tail {n:?}: a number or all")))?)
        }
    };
    let (want_out, want_err) = match (flag(&params, "stdout"), flag(&params, "stderr")) {
        (false, false) => (true, true),
        pair => pair,
    };
    let keep = move |l: &LogLine| match l.s {
        Stream::Out => want_out,
        Stream::Err => want_err,
        Stream::Spore => true,
    };
    let follow = flag(&params, "follow") && record.state == State::Running;
    // Subscribe before reading history, so no line falls between the two.
    let live = follow.then(|| sup.logs().follow(&record.id));
    let history: Vec<LogLine> = sup.logs().read(&record.id, since, tail).into_iter().filter(|l| keep(l)).collect();
    let last = history.last().map(|l| l.n);
    let head = futures_util::stream::iter(history.into_iter().map(ndjson));
    let body = match live {
        None => Body::from_stream(head),
        Some(rx) => {
            let tail = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |item| {
                let out = match item {
                    Ok(line) if last.is_none_or(|n| line.n > n) && keep(&line) => Some(ndjson(line)),
                    Ok(_) => None,
                    Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => Some(ndjson(LogLine {
                        n: 0,
                        t: now_ms(),
                        s: Stream::Spore,
                        m: format!("[spore: this follower fell behind and skipped {n} lines]"),
                    })),
                };
                async move { out }
            });
            Body::from_stream(head.chain(tail))
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

fn ndjson(line: LogLine) -> Result<Bytes, Infallible> {
    let mut v = serde_json::to_vec(&line).expect("log lines serialize");
    v.push(b'\n');
    Ok(Bytes::from(v))
}

async fn events(AxState(sup): Sup) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = tokio_stream::wrappers::BroadcastStream::new(sup.subscribe());
    let stream = rx.filter_map(|item| async move {
        match item {
            Ok(ev) => {
                Some(Ok(SseEvent::default().event(ev.kind.to_string()).json_data(&ev).expect("events serialize")))
            }
            Err(_) => Some(Ok(SseEvent::default().event("lagged").data("events were skipped"))),
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(AxState(sup): Sup, _headers: HeaderMap) -> Response {
    let counts = sup.counts();
    let mut out = String::new();
    out.push_str("# HELP spore_sandboxes Sandboxes by state.\n# TYPE spore_sandboxes gauge\n");
    for state in [State::Created, State::Running, State::Restarting, State::Exited] {
        out.push_str(&format!(
            "spore_sandboxes{{state=\"{}\"}} {}\n",
            state.as_str(),
            counts.get(&state).unwrap_or(&0)
        ));
    }
    let m = &sup.metrics;
    for (name, help, value) in [
        ("spore_sandbox_starts_total", "Guest runs started.", m.starts.load(Ordering::Relaxed)),
        ("spore_sandbox_exits_total", "Guest runs ended.", m.exits.load(Ordering::Relaxed)),
        ("spore_sandbox_restarts_total", "Restarts made by restart policies.", m.restarts.load(Ordering::Relaxed)),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"));
    }
    out.push_str(&format!(
        "# HELP spore_programs_linked Programs compiled and linked in memory.\n# TYPE spore_programs_linked gauge\nspore_programs_linked {}\n",
        sup.programs_linked()
    ));
    let latencies = sup.start_latencies();
    if !latencies.is_empty() {
        out.push_str("# HELP spore_start_latency_seconds Create-to-running latency (launch to guest code entered) of running sandboxes.\n# TYPE spore_start_latency_seconds summary\n");
        for q in [0.5, 0.9, 0.99] {
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
            out.push_str(&format!(
                "spore_start_latency_seconds{{quantile=\"{q}\"}} {:.9}\n",
                latencies[i].as_secs_f64()
            ));
        }
        out.push_str(&format!("spore_start_latency_seconds_count {}\n", latencies.len()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every routed path is documented in openapi.json and every documented path is routed
    /// (which methods answer where: tests/e2e/daemon.rs, against a running daemon).
    #[test]
    fn the_routes_are_the_documented_paths() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        let documented: std::collections::BTreeSet<&str> =
            doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
        let routed: std::collections::BTreeSet<&str> = routes(1).into_iter().map(|(path, _)| path).collect();
        assert_eq!(routed, documented);
    }
}
