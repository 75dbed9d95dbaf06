//! The faces of Verdict on the network: gRPC (`verdict.v1.Authorizer`, `verdict.v1.Admin`,
//! `grpc.health.v1`, reflection v1 and v1alpha) on one listener, optionally over TLS or mutual TLS
//! ([`tls`]); the HTTP/JSON API and the Prometheus endpoint ([`http`]).
//!
//! The only module that knows wire types (protobuf, HTTP/JSON). Every API call goes through one
//! entry point of the shared [`authority`] (`check`, `plan`, `status`): the transports only decode
//! their wire format into engine types ([`convert`] for protobuf, [`json`] for HTTP) and encode
//! the answer. The authority checks the request's shape ([`validate`]), resolves who asks (the
//! request's principal, or the one its token proves), takes one policy-set snapshot, calls the
//! synchronous engine or planner, and records metrics and the decision log. No locks and no I/O
//! on the request path.

pub mod authority;
pub mod authzen;
pub mod backstop;
pub mod codec;
pub mod convert;
pub mod evaluation;
pub mod http;
pub mod json;
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
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::store::PolicyStore;
use crate::telemetry::audit::AuditLog;
use crate::token::Verifier;
use authority::{Authority, Call};
use proto::admin_server::{Admin, AdminServer};
use proto::authorizer_server::{Authorizer, AuthorizerServer};
pub use validate::Limits;

/// How long past the request deadline the backstop answers an Authorizer call that never reached
/// the authority (twice that: tonic's timer, any other call).
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
    /// TLS for the gRPC listener (h2 ALPN; the HTTP listener shares it).
    pub tls: Option<Arc<tls::ReloadingTls>>,
    /// Health reports SERVING while this is true, NOT_SERVING while false (draining). `None`:
    /// always SERVING.
    pub serving: Option<tokio::sync::watch::Receiver<bool>>,
    /// Token verification: requests may carry a JWT instead of a principal.
    pub tokens: Option<Arc<Verifier>>,
    /// Where large requests are decided.
    pub pool: evaluation::PoolOptions,
}

impl ServerOptions {
    pub fn authority(&self, store: Arc<PolicyStore>) -> Arc<Authority> {
        Arc::new(
            Authority::new(store, self.limits, self.request_timeout, self.audit.clone())
                .with_tokens(self.tokens.clone())
                .with_pool(self.pool),
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

/// The Authorizer service: decodes, asks the [`Authority`], encodes.
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

/// The call a gRPC request is: its method, `x-request-id` and `grpc-timeout`.
fn call<T>(method: &'static str, request: &Request<T>) -> Call {
    let header_id = request
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    Call::new(method, header_id, client_deadline(request))
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let call = call("Check", &request);
        let decoded = convert::check_call(request.into_inner(), self.authority.limits());
        let answer = self.authority.check(call, decoded).await?;
        Ok(Response::new(convert::check_response(answer)))
    }

    async fn plan_filter(
        &self,
        request: Request<proto::PlanFilterRequest>,
    ) -> Result<Response<proto::PlanFilterResponse>, Status> {
        let call = call("PlanFilter", &request);
        let decoded = convert::plan_call(request.into_inner(), self.authority.limits());
        let planned = self.authority.plan(call, decoded).await?;
        Ok(Response::new(convert::plan_response(planned)))
    }
}

/// The Admin service: the store's reload status.
pub struct AdminService {
    authority: Arc<Authority>,
}

impl AdminService {
    pub fn new(authority: Arc<Authority>) -> Self {
        AdminService { authority }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let status = self.authority.status(call("Status", &request));
        Ok(Response::new(convert::status_response(&status)))
    }
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
    let authority = options.authority(store);
    let mut authorizer = AuthorizerServer::new(AuthorizerService::new(Arc::clone(&authority)));
    if options.max_message_bytes > 0 {
        authorizer = authorizer.max_decoding_message_size(options.max_message_bytes);
    }
    let mut builder = tonic::transport::Server::builder();
    // The deadline is the Authority's: it answers DEADLINE_EXCEEDED, naming how far deciding got.
    // The backstop answers the Authorizer's calls that never get there (a body still arriving, a
    // request still being decoded), DEADLINE_EXCEEDED too, a margin later so as not to race the
    // Authority; tonic's own timer, later still, bounds the other services.
    let authorizer = backstop::Backstopped::new(
        authorizer,
        options
            .request_timeout
            .map(|timeout| timeout + TIMEOUT_BACKSTOP_MARGIN),
    );
    if let Some(timeout) = options.request_timeout {
        builder = builder.timeout(timeout + 2 * TIMEOUT_BACKSTOP_MARGIN);
    }
    let router = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(authorizer)
        .add_service(AdminServer::new(AdminService::new(authority)));
    let result = match &options.tls {
        None => {
            // Nagle's algorithm off: small gRPC frames must not wait for ACKs.
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        Some(tls) => {
            let (incoming, accept) = tls::incoming(listener, Arc::clone(tls), tls::Protocol::Grpc);
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
