//! HTTP endpoints: the HTTP/JSON API for callers without gRPC tooling (`POST /v1/check`,
//! `POST /v1/plan`, `GET /v1/status`, `GET /healthz`) and the Prometheus endpoint (`GET /metrics`,
//! plus `GET /healthz` for probes, on its own plain-HTTP listener). Handlers decode the body
//! ([`json`](super::json)), ask the [`Authority`] as gRPC does, and encode its answer.
//!
//! The API takes `application/json` only (415 otherwise), reads at most the configured body size
//! (413 beyond), and every error of `/v1/...` (a refusal, an unknown path, a wrong method) is a
//! JSON body of one shape: `{"code": "INVALID_ARGUMENT", "message": "..."}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value as Json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tonic::Code;

use super::authority::{self, Authority, Call};
use super::validate::Refusal;
use super::{json, tls};

#[derive(Clone)]
struct Api {
    authority: Arc<Authority>,
    serving: Option<tokio::sync::watch::Receiver<bool>>,
    /// Largest body read.
    max_body_bytes: usize,
}

/// The HTTP/JSON API (the daemon merges the AuthZEN routes into it).
pub fn api_router(
    authority: Arc<Authority>,
    max_body_bytes: usize,
    serving: Option<tokio::sync::watch::Receiver<bool>>,
) -> Router {
    let max_body_bytes = max_body_bytes.max(1);
    Router::new()
        .route("/v1/check", post(check))
        .route("/v1/plan", post(plan))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // The handlers read the body themselves, with this limit and a JSON 413.
        .layer(DefaultBodyLimit::disable())
        .with_state(Api {
            authority,
            serving,
            max_body_bytes,
        })
}

/// `GET /metrics` in the Prometheus text format, and `GET /healthz` as on the API listener. The
/// metrics listener never speaks TLS, so this `/healthz` is what kubelet's HTTP probes can reach
/// when the gRPC and HTTP listeners require TLS or client certificates.
pub fn metrics_router(
    handle: PrometheusHandle,
    serving: Option<tokio::sync::watch::Receiver<bool>>,
) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        handle.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let serving = serving.clone();
                async move { health_answer(serving.as_ref()) }
            }),
        )
}

/// Serves `router` on `listener` (over TLS when `tls` is set) until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<tls::ReloadingTls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let local = listener.local_addr()?;
            let (incoming, accept) = tls::incoming(listener, tls, tls::Protocol::Http);
            let listener = TlsListener {
                streams: incoming.into_inner(),
                local,
            };
            let result = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await;
            accept.abort();
            result
        }
    }
}

/// Established TLS connections as an axum listener.
struct TlsListener {
    streams: tokio::sync::mpsc::Receiver<std::io::Result<TlsStream<TcpStream>>>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.streams.recv().await {
                Some(Ok(stream)) => {
                    let peer = stream.get_ref().0.peer_addr().unwrap_or(self.local);
                    return (stream, peer);
                }
                Some(Err(_)) => continue,
                // The accept loop is gone: wait for shutdown.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn healthz(State(api): State<Api>) -> Response {
    health_answer(api.serving.as_ref())
}

/// 200 `SERVING` until shutdown begins, then 503 `NOT_SERVING`.
fn health_answer(serving: Option<&tokio::sync::watch::Receiver<bool>>) -> Response {
    let serving = serving.is_none_or(|s| *s.borrow());
    if serving {
        (StatusCode::OK, "SERVING\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING\n").into_response()
    }
}

pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(super) fn refusal(r: &Refusal) -> Response {
    error(http_status(r.code), r.code, &r.message)
}

/// The one shape of every error body.
pub fn error(status: StatusCode, code: Code, message: &str) -> Response {
    let body = json!({"code": authority::code_name(code), "message": message});
    (status, axum::Json(body)).into_response()
}

async fn not_found(headers: HeaderMap, body: Body) -> Response {
    let response = error(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        "no such endpoint: POST /v1/check, POST /v1/plan, GET /v1/status, GET /healthz, and \
         AuthZEN's POST /access/v1/evaluation, /access/v1/evaluations, /access/v1/search/{subject,\
         resource,action}, GET /.well-known/authzen-configuration",
    );
    refuse(&headers, body, response).await
}

pub(super) async fn method_not_allowed(headers: HeaderMap, body: Body) -> Response {
    let response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::Unimplemented,
        "method not allowed: POST /v1/check, /v1/plan and /access/v1/..., GET /v1/status, \
         /healthz and /.well-known/authzen-configuration",
    );
    refuse(&headers, body, response).await
}

/// Bytes of a refused body still read (and thrown away) before the refusal is sent, and for
/// how long at most. Most clients write their whole body before reading the answer: answering
/// and closing while part of the body is unread makes the kernel reset the connection, so such a
/// client fails its write (broken pipe) or loses the answer instead of reading the JSON error.
/// Reading the rest first (as nginx's lingering close does) gives them the answer, and the
/// connection stays usable when the body ends within the bound; beyond it, the refusal is sent
/// with `connection: close`. A client that sent `Expect: 100-continue` (curl does, for large
/// bodies) is answered before it sends the body at all.
const DRAIN_BYTES: usize = 16 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// `response` for a request whose body was not (all) read: the rest of `body` is read first,
/// within [`DRAIN_BYTES`] and [`DRAIN_TIME`], unless the client waits for `100 Continue`.
async fn refuse(headers: &HeaderMap, body: Body, mut response: Response) -> Response {
    let waits_for_continue = headers
        .get(axum::http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
    let ended = !waits_for_continue && drain(body).await;
    if !ended {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
    response
}

/// Reads `body` to its end, throwing it away: true if it ended within the bounds.
async fn drain(mut body: Body) -> bool {
    let read = async {
        let mut left = DRAIN_BYTES;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                let Some(rest) = left.checked_sub(data.len()) else {
                    return false;
                };
                left = rest;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}

/// The body of an API call: `application/json` (`wrong_type` otherwise: 415 for `/v1`, 400 for
/// AuthZEN, which asks for it), at most `limit` bytes.
pub(super) async fn json_body(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
    wrong_type: StatusCode,
) -> Result<Bytes, Response> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        let shown = if content_type.is_empty() {
            "none".to_string()
        } else {
            format!("{content_type:?}")
        };
        let response = error(
            wrong_type,
            Code::InvalidArgument,
            &format!("content-type must be application/json (got {shown})"),
        );
        return Err(refuse(headers, body, response).await);
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::OutOfRange,
            &format!("request body larger than {limit} bytes (limits.max_message_bytes)"),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(refuse(headers, body, too_large()).await);
    }
    let mut read = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                &format!("request body could not be read: {e}"),
            )
        })?;
        if let Some(data) = frame.data_ref() {
            if read.len() + data.len() > limit {
                return Err(refuse(headers, body, too_large()).await);
            }
            read.extend_from_slice(data);
        }
    }
    Ok(Bytes::from(read))
}

/// The call an HTTP request is: its method and `x-request-id` (HTTP callers have no deadline
/// header of their own).
fn call(method: &'static str, headers: &HeaderMap) -> Call {
    let header_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    Call::new(method, header_id, None)
}

/// The answer as JSON with its request id in `x-request-id`, or the refusal.
fn respond<T>(
    answer: Result<T, Refusal>,
    id: impl Fn(&T) -> &str,
    encode: impl Fn(T) -> Json,
) -> Response {
    match answer {
        Ok(answer) => {
            let id = HeaderValue::from_str(id(&answer)).ok();
            let mut response = axum::Json(encode(answer)).into_response();
            if let Some(id) = id {
                response.headers_mut().insert("x-request-id", id);
            }
            response
        }
        Err(r) => refusal(&r),
    }
}

async fn check(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let call = call("http/v1/check", &headers);
    let body = match json_body(
        &headers,
        body,
        api.max_body_bytes,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await
    {
        Ok(body) => body,
        Err(response) => return response,
    };
    let decoded = json::decode::<json::CheckBody>(&body).map(json::CheckBody::into_call);
    let answer = api.authority.check(call, decoded).await;
    respond(answer, |c| &c.request_id, json::check_json)
}

async fn plan(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    let call = call("http/v1/plan", &headers);
    let body = match json_body(
        &headers,
        body,
        api.max_body_bytes,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await
    {
        Ok(body) => body,
        Err(response) => return response,
    };
    let decoded = json::decode::<json::PlanBody>(&body).and_then(json::PlanBody::into_call);
    let answer = api.authority.plan(call, decoded).await;
    respond(answer, |p| &p.request_id, json::plan_json)
}

async fn status(State(api): State<Api>, headers: HeaderMap) -> Response {
    let status = api.authority.status(call("http/v1/status", &headers));
    axum::Json(json::status_json(&status)).into_response()
}
