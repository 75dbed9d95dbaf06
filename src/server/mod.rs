//! The faces of Verdict on the network: gRPC (`verdict.v1.Authorizer`, `verdict.v1.Admin`,
//! `grpc.health.v1`, reflection v1 and v1alpha) on one listener, optionally over TLS or mutual TLS
//! ([`tls`]); the HTTP/JSON API and the Prometheus endpoint ([`http`]).
//!
//! The only module that knows wire types (protobuf, HTTP). Handlers convert the request into
//! engine types ([`convert`], [`validate`]), and the shared [`authority`] resolves who asks (the
//! request's principal, or the one its token proves), takes one policy-set snapshot, calls the
//! synchronous engine or planner, and records metrics and the decision log. No locks and no I/O
//! on the request path.

pub mod authority;
pub mod convert;
pub mod http;
pub mod tls;
pub mod validate;

/// Generated protobuf and gRPC code for `verdict.v1`.
pub mod proto {
    tonic::include_proto!("verdict.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("verdict_descriptor");
}

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::store::PolicyStore;
use crate::telemetry::audit::AuditLog;
use crate::token::Verifier;
use authority::{Authority, Refusal, Subject};
use convert::Limits;
use proto::admin_server::{Admin, AdminServer};
use proto::authorizer_server::{Authorizer, AuthorizerServer};

/// How long past the request deadline tonic's own timer cancels a request.
const TIMEOUT_BACKSTOP_MARGIN: Duration = Duration::from_secs(1);

/// How the servers behave, beyond the policy store they answer from.
#[derive(Clone, Default)]
pub struct ServerOptions {
    pub limits: Limits,
    /// Server-side deadline of one request (a shorter `grpc-timeout` from the client wins).
    pub request_timeout: Option<Duration>,
    /// Largest request message accepted; 0 = tonic's default (4 MiB).
    pub max_message_bytes: usize,
    pub audit: Option<Arc<AuditLog>>,
    /// TLS for the gRPC listener (h2 ALPN).
    pub tls: Option<Arc<tls::ReloadingTls>>,
    /// Health reports SERVING while this is true, NOT_SERVING while false (draining). `None`:
    /// always SERVING.
    pub serving: Option<tokio::sync::watch::Receiver<bool>>,
    /// Token verification: requests may carry a JWT instead of a principal.
    pub tokens: Option<Arc<Verifier>>,
}

impl ServerOptions {
    pub fn authority(&self, store: Arc<PolicyStore>) -> Arc<Authority> {
        Arc::new(
            Authority::new(store, self.limits, self.request_timeout, self.audit.clone())
                .with_tokens(self.tokens.clone()),
        )
    }
}

impl From<Limits> for ServerOptions {
    fn from(limits: Limits) -> Self {
        ServerOptions {
            limits,
            ..Default::default()
        }
    }
}

/// The Authorizer service.
pub struct AuthorizerService {
    authority: Arc<Authority>,
}

impl AuthorizerService {
    pub fn new(authority: Arc<Authority>) -> Self {
        AuthorizerService { authority }
    }
}

/// The caller's deadline from the `grpc-timeout` header (`100m` = 100 ms, `5S`, `1H`...).
fn client_deadline<T>(request: &Request<T>) -> Option<Duration> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn header<'a, T>(request: &'a Request<T>, name: &str) -> Option<&'a str> {
    request.metadata().get(name).and_then(|v| v.to_str().ok())
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let started = Instant::now();
        let deadline = client_deadline(&request);
        let request_id = header(&request, "x-request-id").map(str::to_string);
        let mut message = request.into_inner();
        let token = std::mem::take(&mut message.token);
        // The request's shape is checked first: it is cheap, and a signature check is not.
        let mut checked = convert::check_request(message, self.authority.limits())
            .map_err(|status| refused("Check", started, status))?;
        checked.request_id = self
            .authority
            .request_id(&checked.request_id, request_id.as_deref());
        let principal = std::mem::take(&mut checked.principal);
        let answer = match self
            .authority
            .subject(&token, principal)
            .map_err(|r| refused("Check", started, r.into()))?
        {
            Subject::Principal(principal) => {
                checked.principal = principal;
                self.authority.check("Check", checked, deadline)?
            }
            Subject::Rejected(e) => self.authority.check_rejected("Check", checked, &e),
        };
        let mut response =
            convert::check_response(answer.request_id, &answer.policy_version, &answer.results);
        response.token_error = answer.token_error.unwrap_or_default();
        Ok(Response::new(response))
    }

    async fn plan_filter(
        &self,
        request: Request<proto::PlanFilterRequest>,
    ) -> Result<Response<proto::PlanFilterResponse>, Status> {
        let started = Instant::now();
        let header_id = header(&request, "x-request-id").map(str::to_string);
        let mut request = request.into_inner();
        let token = std::mem::take(&mut request.token);
        let request_id = self
            .authority
            .request_id(&request.request_id, header_id.as_deref());
        let sql =
            convert::sql_request(&request.sql).map_err(|s| refused("PlanFilter", started, s))?;
        let mut plan_request = convert::plan_request(request, self.authority.limits())
            .map_err(|s| refused("PlanFilter", started, s))?;
        let principal = std::mem::take(&mut plan_request.principal);
        let planned = match self
            .authority
            .subject(&token, principal)
            .map_err(|r| refused("PlanFilter", started, r.into()))?
        {
            Subject::Principal(principal) => {
                plan_request.principal = principal;
                self.authority
                    .plan("PlanFilter", request_id, plan_request, sql)?
            }
            Subject::Rejected(e) => self
                .authority
                .plan_rejected("PlanFilter", request_id, sql, &e),
        };
        Ok(Response::new(convert::plan_response(&planned)))
    }
}

/// A request refused before reaching the authority: counted like any other.
fn refused(method: &'static str, started: Instant, status: Status) -> Status {
    let refusal = Refusal::new(status.code(), status.message());
    authority::finish(method, started, Some(&refusal));
    status
}

/// The Admin service: the store's reload status, read without locking.
pub struct AdminService {
    store: Arc<PolicyStore>,
}

impl AdminService {
    pub fn new(store: Arc<PolicyStore>) -> Self {
        AdminService { store }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let status = self.store.status();
        Ok(Response::new(proto::StatusResponse {
            active_version: status.active_version.clone(),
            loaded_at: Some(status.loaded_at.into()),
            rule_count: status.rule_count as u64,
            policy_count: status.policy_count as u64,
            last_error: status.last_error.clone().unwrap_or_default(),
            last_error_at: status.last_error_at.map(Into::into),
            reloads_ok: status.reloads_ok,
            reloads_failed: status.reloads_failed,
            failing_tests: status.failing_tests.clone(),
        }))
    }
}

/// Accepted connections with Nagle's algorithm off: small gRPC frames must not wait for ACKs.
fn plain_incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Sets every service's health: SERVING or NOT_SERVING.
async fn set_health(reporter: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(
            <AuthorizerServer<AuthorizerService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    reporter
        .set_service_status(
            <AdminServer<AdminService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Serves Authorizer, Admin, health and reflection on `listener` until `shutdown` resolves, then
/// waits for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    store: Arc<PolicyStore>,
    options: impl Into<ServerOptions>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let options = options.into();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // NOT_SERVING until serving starts (a policy set is loaded by then), and while draining.
    set_health(&health_reporter, false).await;
    let follow_health = match options.serving.clone() {
        None => {
            set_health(&health_reporter, true).await;
            None
        }
        Some(mut serving) => {
            let reporter = health_reporter.clone();
            Some(tokio::spawn(async move {
                loop {
                    let now = *serving.borrow_and_update();
                    set_health(&reporter, now).await;
                    if serving.changed().await.is_err() {
                        break;
                    }
                }
            }))
        }
    };
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid");
    let mut authorizer = AuthorizerServer::new(AuthorizerService::new(
        options.authority(Arc::clone(&store)),
    ));
    if options.max_message_bytes > 0 {
        authorizer = authorizer.max_decoding_message_size(options.max_message_bytes);
    }
    let mut builder = tonic::transport::Server::builder();
    // The deadline is the Authority's: it answers DEADLINE_EXCEEDED, naming how far deciding got.
    // tonic's timer is only a backstop for requests that never get there (a body still arriving):
    // set at the deadline itself it would race the Authority and, when it won (a large request
    // still being decoded), answer CANCELLED "Timeout expired".
    if let Some(timeout) = options.request_timeout {
        builder = builder.timeout(timeout + TIMEOUT_BACKSTOP_MARGIN);
    }
    let router = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(authorizer)
        .add_service(AdminServer::new(AdminService::new(store)));
    let result = match &options.tls {
        None => {
            router
                .serve_with_incoming_shutdown(plain_incoming(listener), shutdown)
                .await
        }
        Some(tls) => {
            let (incoming, accept) = tls::incoming(listener, Arc::clone(tls));
            let result = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
            accept.abort();
            result
        }
    };
    if let Some(task) = follow_health {
        task.abort();
    }
    result
}
