//! HTTP endpoints: the HTTP/JSON API for callers without gRPC tooling (`POST /v1/check`,
//! `POST /v1/plan`, `GET /v1/status`, `GET /healthz`) and the Prometheus endpoint (`GET /metrics`,
//! plus `GET /healthz` for probes, on its own plain-HTTP listener). Handlers decode the body
//! ([`json`](super::json)), ask the [`Authority`] as gRPC does, and encode its answer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value as Json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tonic::Code;

use super::authority::{self, Authority, Call, Refusal};
use super::{json, tls};

#[derive(Clone)]
struct Api {
    authority: Arc<Authority>,
    serving: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The HTTP/JSON API.
pub fn api_router(
    authority: Arc<Authority>,
    max_body_bytes: usize,
    serving: Option<tokio::sync::watch::Receiver<bool>>,
) -> Router {
    Router::new()
        .route("/v1/check", post(check))
        .route("/v1/plan", post(plan))
        .route("/v1/status", get(status))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(max_body_bytes.max(1)))
        .with_state(Api { authority, serving })
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

fn http_status(code: Code) -> StatusCode {
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

fn refusal(r: &Refusal) -> Response {
    let body = json!({"code": authority::code_name(r.code), "message": r.message});
    (http_status(r.code), axum::Json(body)).into_response()
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

async fn check(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let call = call("http/v1/check", &headers);
    let decoded = json::decode::<json::CheckBody>(&body).map(json::CheckBody::into_call);
    let answer = api.authority.check(call, decoded).await;
    respond(answer, |c| &c.request_id, json::check_json)
}

async fn plan(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let call = call("http/v1/plan", &headers);
    let decoded = json::decode::<json::PlanBody>(&body).and_then(json::PlanBody::into_call);
    let answer = api.authority.plan(call, decoded).await;
    respond(answer, |p| &p.request_id, json::plan_json)
}

async fn status(State(api): State<Api>, headers: HeaderMap) -> Response {
    let status = api.authority.status(call("http/v1/status", &headers));
    axum::Json(json::status_json(&status)).into_response()
}
