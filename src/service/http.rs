//! The service over HTTP: the `/v1` JSON API, Server-Sent Events, downloads with range
//! requests, `/metrics` and the web page at `/`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{JobSpec, JobState, JobView, Service, ServiceError};

/// Most jobs one listing returns.
const MAX_LIST: usize = 1000;

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ServiceError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::QueueFull(_) => (StatusCode::TOO_MANY_REQUESTS, "queue_full"),
            ServiceError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            ServiceError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        error_response(status, code, &self.to_string())
    }
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

impl Service {
    /// The service's HTTP interface, to serve alone or to nest in an application's router.
    /// Every route but the page at `/` asks for the bearer token when one is configured.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/v1/jobs", get(list_jobs).post(submit))
            .route("/v1/jobs/{id}", get(job))
            .route("/v1/jobs/{id}/events", get(job_events))
            .route("/v1/jobs/{id}/cancel", post(cancel))
            .route("/v1/jobs/{id}/output", get(output))
            .route("/v1/jobs/{id}/preview", get(preview))
            .route("/v1/events", get(all_events))
            .route("/v1/models", get(models))
            .route("/v1/info", get(info))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn_with_state(self.clone(), authorize));
        Router::new()
            .route("/", get(page))
            .merge(api)
            .layer(DefaultBodyLimit::max(self.config().max_body_bytes))
            .with_state(self.clone())
    }
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}

/// A request another site's page made the browser send (a form post, a `fetch`): refused for
/// anything but reading, so a page on the web cannot submit or cancel jobs on a service
/// that listens on the user's machine.
fn cross_site(request: &Request) -> bool {
    let headers = request.headers();
    if headers.get("sec-fetch-site").is_some_and(|site| site.as_bytes() == b"cross-site") {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, authority)| authority) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Compares in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authorize(State(service): State<Service>, request: Request, next: Next) -> Response {
    let hosts = &service.config().allowed_hosts;
    if !hosts.is_empty() {
        let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(host)) {
            return error_response(StatusCode::FORBIDDEN, "host_not_allowed", &format!("this service does not answer to host `{host}`"));
        }
    }
    let reading = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    if !reading && cross_site(&request) {
        return error_response(StatusCode::FORBIDDEN, "cross_site", "requests from another site's page are refused");
    }
    let Some(token) = &service.config().token else {
        return next.run(request).await;
    };
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    // EventSource and download links cannot set headers: the query may carry the token.
    let from_query = Query::<std::collections::HashMap<String, String>>::try_from_uri(request.uri())
        .ok()
        .and_then(|Query(mut pairs)| pairs.remove("access_token"));
    let given = from_header.or(from_query);
    if given.is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = error_response(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// The body parsed as a job spec; unknown fields and malformed JSON are 400s that say where.
async fn submit(
    State(service): State<Service>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<JobView>), Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return Err(error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a job is sent as Content-Type: application/json",
        ));
    }
    let body = body.map_err(|e| error_response(e.status(), "bad_body", &e.body_text()))?;
    let spec: JobSpec = serde_json::from_slice(&body)
        .map_err(|e| ServiceError::BadRequest(format!("job spec: {e}")).into_response())?;
    let view = service.submit(spec).await.map_err(IntoResponse::into_response)?;
    Ok((StatusCode::CREATED, Json(view)))
}

fn job_id(id: &str) -> Result<u64, ServiceError> {
    let id: u64 = id.parse().map_err(|_| ServiceError::BadRequest(format!("`{id}` is not a job id")))?;
    // Ids are SQLite row ids: anything larger names no job.
    if id > i64::MAX as u64 {
        return Err(ServiceError::NotFound(id));
    }
    Ok(id)
}

async fn job(State(service): State<Service>, Path(id): Path<String>) -> Result<Json<JobView>, ServiceError> {
    Ok(Json(service.job(job_id(&id)?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    state: Option<String>,
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

async fn list_jobs(
    State(service): State<Service>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ServiceError> {
    let Query(query) = query.map_err(|e| ServiceError::BadRequest(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ServiceError::BadRequest(format!("limit must be in 1..={MAX_LIST}")));
    }
    let state = query.state.as_deref().map(str::parse::<JobState>).transpose().map_err(ServiceError::BadRequest)?;
    let jobs = service.jobs(limit, state).await?;
    Ok(Json(serde_json::json!({ "jobs": jobs })))
}

async fn cancel(State(service): State<Service>, Path(id): Path<String>) -> Result<(StatusCode, Json<JobView>), ServiceError> {
    Ok((StatusCode::ACCEPTED, Json(service.cancel(job_id(&id)?).await?)))
}

async fn output(State(service): State<Service>, Path(id): Path<String>, request: Request) -> Result<Response, ServiceError> {
    let path = service.output(job_id(&id)?).await?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let response = tower_http::services::ServeFile::new(&path)
        .try_call(request)
        .await
        .map_err(|e| ServiceError::Internal(format!("reading the output: {e}")))?;
    let mut response = response.map(Body::new);
    // The type is ours, not guessed from a name the client chose (an `.html` output must
    // not run as a page), and the browser saves it rather than showing it.
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type(&path)));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename*=UTF-8''{encoded}")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The media type of an output by the containers the service writes.
fn media_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("mp4") => "video/mp4",
        Some("mkv") => "video/x-matroska",
        Some("mov") => "video/quicktime",
        Some("webm") => "video/webm",
        _ => "application/octet-stream",
    }
}

async fn preview(State(service): State<Service>, Path(id): Path<String>) -> Result<Response, ServiceError> {
    let id = job_id(&id)?;
    let Some((frame, png)) = service.preview(id).await? else {
        // Tells an unknown job from one without a preview (yet).
        service.job(id).await?;
        return Err(ServiceError::Conflict(format!("job {id} has no preview")));
    };
    let mut response = Body::from(png.as_ref().clone()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame", HeaderValue::from(frame));
    Ok(response)
}

/// The SSE event for a view: terminal ones are named by the state, previews `preview`,
/// the rest `progress`.
fn event(view: &JobView, preview_sent: &mut Option<u64>) -> Event {
    let name = if view.state.is_terminal() {
        view.state.as_str()
    } else if view.preview_frame != *preview_sent {
        "preview"
    } else {
        "progress"
    };
    *preview_sent = view.preview_frame;
    Event::default().event(name).data(serde_json::to_string(view).unwrap_or_default())
}

/// One job's events: its current view at once, then every change, ending with its terminal
/// event.
async fn job_events(
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ServiceError> {
    let id = job_id(&id)?;
    // Subscribed before the first read, so no change falls between them.
    let mut updates = service.subscribe();
    let first = service.job(id).await?;
    let stream = async_stream::stream! {
        let mut preview_sent = None;
        yield Ok(event(&first, &mut preview_sent));
        if first.state.is_terminal() {
            return;
        }
        loop {
            let view = tokio::select! {
                biased;
                update = updates.recv() => match update {
                    Ok(view) if view.id == id => view,
                    Ok(_) => continue,
                    // Missed some: the current view says all.
                    Err(RecvError::Lagged(_)) => match service.job(id).await {
                        Ok(view) => view,
                        Err(_) => return,
                    },
                    Err(RecvError::Closed) => return,
                },
                () = service.closed() => return,
            };
            yield Ok(event(&view, &mut preview_sent));
            if view.state.is_terminal() {
                return;
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Every job's changes (event `job`), until the service shuts down.
async fn all_events(State(service): State<Service>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut updates = service.subscribe();
    let stream = async_stream::stream! {
        loop {
            tokio::select! {
                biased;
                update = updates.recv() => match update {
                    Ok(view) => yield Ok(Event::default().event("job").data(serde_json::to_string(&view).unwrap_or_default())),
                    Err(RecvError::Lagged(_)) => yield Ok(Event::default().event("lagged").data("{}")),
                    Err(RecvError::Closed) => return,
                },
                () = service.closed() => return,
            }
        }
    };
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn models(State(service): State<Service>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "models": service.models() }))
}

async fn info(State(service): State<Service>) -> Json<serde_json::Value> {
    let config = service.config();
    let device = service.device().info();
    Json(serde_json::json!({
        "framestream": env!("CARGO_PKG_VERSION"),
        "device": device.to_string(),
        "running_jobs": config.running_jobs,
        "queued_jobs": config.queued_jobs,
        "preview_every": config.preview_every,
        "model_idle_seconds": config.model_idle.as_secs_f64(),
        "memory_budget": service.device().memory_budget(),
    }))
}

async fn metrics(State(service): State<Service>) -> Result<Response, ServiceError> {
    let text = service.metrics().await?;
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}
