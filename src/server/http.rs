//! HTTP endpoints: the HTTP/JSON API for callers without gRPC tooling (`POST /v1/check`,
//! `POST /v1/plan`, `GET /healthz`) and the Prometheus endpoint (`GET /metrics`, plus `GET /healthz`
//! for probes, on its own plain-HTTP listener). The JSON follows the protobuf JSON mapping of
//! `proto/verdict/v1` (field names as in the proto, enums by name), so answers read the same as
//! grpcurl's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tonic::Code;

use super::authority::{self, Authority, Checked, Planned, Refusal, Subject};
use super::{convert, proto, tls, validate};
use crate::filter::sql::Dialect;
use crate::plan::{Plan, PlanRequest};
use crate::request::{CheckRequest, Principal};

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
            let (incoming, accept) = tls::incoming(listener, tls);
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

fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Parses a JSON body, refusing (and counting) what does not fit `T`.
#[allow(clippy::result_large_err)] // the error is the response itself
fn parse<T: for<'de> Deserialize<'de>>(
    method: &'static str,
    started: Instant,
    body: &Bytes,
) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        let r = Refusal::new(Code::InvalidArgument, format!("request body: {e}"));
        authority::finish(method, started, Some(&r));
        refusal(&r)
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Counts and answers a request refused with INVALID_ARGUMENT (or the refusal's own code).
fn refuse(method: &'static str, started: Instant, r: Refusal) -> Response {
    authority::finish(method, started, Some(&r));
    refusal(&r)
}

async fn check(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    const METHOD: &str = "http/v1/check";
    let started = Instant::now();
    // `token` is the one member of CheckRequest the engine's request type does not have.
    let mut body: Json = match parse(METHOD, started, &body) {
        Ok(r) => r,
        Err(response) => return response,
    };
    let token = match body.as_object_mut().and_then(|o| o.remove("token")) {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(token)) => token,
        Some(_) => {
            let message = "request body: token must be a string";
            return refuse(
                METHOD,
                started,
                Refusal::new(Code::InvalidArgument, message),
            );
        }
    };
    let mut request: CheckRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("request body: {e}");
            return refuse(
                METHOD,
                started,
                Refusal::new(Code::InvalidArgument, message),
            );
        }
    };
    if let Err(message) = validate::check_request(&request, api.authority.limits()) {
        return refuse(
            METHOD,
            started,
            Refusal::new(Code::InvalidArgument, message),
        );
    }
    request.request_id = api
        .authority
        .request_id(&request.request_id, header(&headers, "x-request-id"));
    let principal = std::mem::take(&mut request.principal);
    let checked = match api.authority.subject(&token, principal) {
        Err(r) => return refuse(METHOD, started, r),
        Ok(Subject::Rejected(e)) => Ok(api.authority.check_rejected(METHOD, request, &e)),
        Ok(Subject::Principal(principal)) => {
            request.principal = principal;
            api.authority.check(METHOD, request, None)
        }
    };
    match checked {
        Ok(checked) => {
            let id = checked.request_id.clone();
            with_request_id(axum::Json(check_json(&checked)).into_response(), &id)
        }
        Err(r) => refusal(&r),
    }
}

/// `CheckResponse` in the protobuf JSON mapping.
pub fn check_json(c: &Checked) -> Json {
    let mut response = convert::check_response(c.request_id.clone(), &c.policy_version, &c.results);
    response.token_error = c.token_error.clone().unwrap_or_default();
    check_response_json(&response)
}

/// A `CheckResponse` in the protobuf JSON mapping (also what `verdict check --json` prints).
/// `token_error` appears only when set.
pub fn check_response_json(response: &proto::CheckResponse) -> Json {
    let mut out = json!({
        "request_id": response.request_id,
        "policy_version": response.policy_version,
        "results": response.results.iter().map(|r| json!({
            "resource": r.resource.as_ref().map(|i| json!({"kind": i.kind, "id": i.id})),
            "actions": r.actions.iter().map(|(a, d)| (a.clone(), json!({
                "effect": proto::Effect::try_from(d.effect).map(|e| e.as_str_name()).unwrap_or("EFFECT_UNSPECIFIED"),
                "policy": d.policy,
                "rule": d.rule,
                "reason": d.reason,
            }))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    });
    if !response.token_error.is_empty() {
        out["token_error"] = json!(response.token_error);
    }
    out
}

/// `PlanFilterRequest` in the protobuf JSON mapping.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    principal: Principal,
    /// A JWT to verify instead of `principal`.
    #[serde(default)]
    token: String,
    resource_kind: String,
    action: String,
    #[serde(default)]
    context: Json,
    #[serde(default)]
    known_attr: Json,
    #[serde(default)]
    sql: Option<SqlBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    dialect: String,
    #[serde(default)]
    columns: HashMap<String, String>,
}

async fn plan(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    const METHOD: &str = "http/v1/plan";
    let started = Instant::now();
    let body: PlanBody = match parse(METHOD, started, &body) {
        Ok(b) => b,
        Err(response) => return response,
    };
    let sql = match &body.sql {
        None => None,
        Some(s) => match s.dialect.as_str() {
            "SQL_DIALECT_POSTGRES" | "postgres" => Some((Dialect::Postgres, s.columns.clone())),
            "SQL_DIALECT_SQLITE" | "sqlite" => Some((Dialect::Sqlite, s.columns.clone())),
            other => {
                let r = Refusal::new(Code::InvalidArgument, format!("sql.dialect \"{other}\" must be SQL_DIALECT_POSTGRES or SQL_DIALECT_SQLITE"));
                authority::finish(METHOD, started, Some(&r));
                return refusal(&r);
            }
        },
    };
    let mut request = PlanRequest {
        principal: body.principal,
        kind: body.resource_kind,
        action: body.action,
        context: body.context,
        known_attr: body.known_attr,
    };
    if let Err(message) = validate::plan_request(&request, api.authority.limits()) {
        let r = Refusal::new(Code::InvalidArgument, message);
        authority::finish(METHOD, started, Some(&r));
        return refusal(&r);
    }
    let id = api
        .authority
        .request_id(&body.request_id, header(&headers, "x-request-id"));
    let principal = std::mem::take(&mut request.principal);
    let planned = match api.authority.subject(&body.token, principal) {
        Err(r) => return refuse(METHOD, started, r),
        Ok(Subject::Rejected(e)) => Ok(api.authority.plan_rejected(METHOD, id, sql, &e)),
        Ok(Subject::Principal(principal)) => {
            request.principal = principal;
            api.authority.plan(METHOD, id, request, sql)
        }
    };
    match planned {
        Ok(planned) => {
            let id = planned.request_id.clone();
            with_request_id(axum::Json(plan_json(&planned)).into_response(), &id)
        }
        Err(r) => refusal(&r),
    }
}

/// `PlanFilterResponse` in the protobuf JSON mapping.
pub fn plan_json(p: &Planned) -> Json {
    let mut out = serde_json::Map::new();
    out.insert("request_id".into(), json!(p.request_id));
    out.insert("policy_version".into(), json!(p.policy_version));
    out.insert(
        "kind".into(),
        json!(convert::plan_kind(&p.plan).as_str_name()),
    );
    if let Plan::Conditional(f) = &p.plan {
        out.insert("filter".into(), filter_json(&convert::filter(f)));
    }
    if let Some(sql) = &p.sql {
        out.insert(
            "sql".into(),
            json!({"where": sql.where_clause, "params": sql.params}),
        );
    }
    if let Some(e) = &p.token_error {
        out.insert("token_error".into(), json!(e));
    }
    Json::Object(out)
}

/// A filter node in the protobuf JSON mapping (empty fields left out).
pub fn filter_json(f: &proto::Filter) -> Json {
    let mut out = serde_json::Map::new();
    let op = proto::FilterOp::try_from(f.op)
        .map(|o| o.as_str_name())
        .unwrap_or("FILTER_OP_UNSPECIFIED");
    out.insert("op".into(), json!(op));
    if !f.attribute.is_empty() {
        out.insert("attribute".into(), json!(f.attribute));
    }
    if let Some(v) = &f.value {
        out.insert("value".into(), convert::value_to_json_unbounded(v));
    }
    if !f.values.is_empty() {
        out.insert(
            "values".into(),
            Json::Array(
                f.values
                    .iter()
                    .map(convert::value_to_json_unbounded)
                    .collect(),
            ),
        );
    }
    if !f.operands.is_empty() {
        out.insert(
            "operands".into(),
            Json::Array(f.operands.iter().map(filter_json).collect()),
        );
    }
    if !f.policy.is_empty() {
        out.insert("policy".into(), json!(f.policy));
        out.insert("rule".into(), json!(f.rule));
    }
    Json::Object(out)
}
