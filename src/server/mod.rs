//! The gRPC face of Verdict: the `verdict.v1.Authorizer` service, the `verdict.v1.Admin` status
//! service, `grpc.health.v1` and server reflection (v1 and v1alpha), on one listener.
//!
//! The only module that knows protobuf types. Handlers convert protobuf into engine types
//! ([`convert`]), resolve who asks (the request's principal, or the principal its token proves,
//! through the [`Verifier`]), take one policy-set snapshot from the [`PolicyStore`], call the
//! synchronous engine, and convert back. No locks and no I/O on the request path.

pub mod convert;

/// Generated protobuf and gRPC code for `verdict.v1`.
pub mod proto {
    tonic::include_proto!("verdict.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("verdict_descriptor");
}

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::engine::Decision;
use crate::policy::Effect;
use crate::request::Principal;
use crate::store::PolicyStore;
use crate::token::{TokenError, Verifier};
use crate::{engine, filter, plan};
use convert::Limits;
use proto::admin_server::{Admin, AdminServer};
use proto::authorizer_server::{Authorizer, AuthorizerServer};

/// The Authorizer service over a policy store.
pub struct AuthorizerService {
    store: Arc<PolicyStore>,
    limits: Limits,
    /// Token verification, when the operator configured a JWKS file.
    tokens: Option<Arc<Verifier>>,
}

/// Who a request is about.
enum Subject {
    /// The principal the request carried, or the one its token proved.
    Principal(Principal),
    /// The request's token failed verification: every answer is a deny.
    Rejected(TokenError),
}

impl AuthorizerService {
    pub fn new(store: Arc<PolicyStore>, limits: Limits, tokens: Option<Arc<Verifier>>) -> Self {
        AuthorizerService {
            store,
            limits,
            tokens,
        }
    }

    /// The principal a request is decided for: its token's, verified, or the one it carried.
    /// A token without verification configured, a token next to a non-empty principal, and no
    /// token when one is required are INVALID_ARGUMENT; a token that fails verification is a
    /// [`Subject::Rejected`].
    fn subject(
        &self,
        request_id: &str,
        token: &str,
        principal: Option<proto::Principal>,
    ) -> Result<Subject, Status> {
        if token.is_empty() {
            if self.tokens.as_ref().is_some_and(|t| t.required()) {
                return Err(Status::invalid_argument(
                    "token: this server requires a token (--require-token); a principal alone \
                     is not accepted",
                ));
            }
            return Ok(Subject::Principal(convert::principal(
                principal,
                &self.limits,
            )?));
        }
        let Some(verifier) = &self.tokens else {
            return Err(Status::invalid_argument(
                "token: given, but token verification is not configured on this server \
                 (--jwks-file)",
            ));
        };
        if principal.as_ref().is_some_and(|p| !convert::is_empty(p)) {
            return Err(Status::invalid_argument(
                "send either token or principal, not both: the token's claims are the principal",
            ));
        }
        match verifier.verify(token) {
            Ok(principal) => Ok(Subject::Principal(principal)),
            Err(e) => {
                tracing::info!(request_id = %request_id, reason = %e, "token rejected");
                Ok(Subject::Rejected(e))
            }
        }
    }
}

/// The decision for every action of a request whose token was rejected.
fn token_rejected(e: &TokenError) -> Decision {
    Decision {
        effect: Effect::Deny,
        policy: "".into(),
        rule: "".into(),
        reason: format!("token rejected: {e}").into(),
        evaluation_error: false,
    }
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let mut request = request.into_inner();
        let token = std::mem::take(&mut request.token);
        let principal = request.principal.take();
        // The request's shape is checked first: it is cheap, and a signature check is not.
        let mut request = convert::check_request(request, &self.limits)?;
        let set = self.store.current();
        match self.subject(&request.request_id, &token, principal)? {
            Subject::Principal(principal) => request.principal = principal,
            Subject::Rejected(e) => {
                let denied = token_rejected(&e);
                let results: Vec<engine::ResourceDecisions> = request
                    .resources
                    .iter()
                    .map(|check| engine::ResourceDecisions {
                        kind: check.resource.kind.clone(),
                        id: check.resource.id.clone(),
                        actions: check
                            .actions
                            .iter()
                            .map(|a| (a.clone(), denied.clone()))
                            .collect(),
                    })
                    .collect();
                let mut response =
                    convert::check_response(request.request_id, &set.version, &results);
                response.token_error = e.to_string();
                return Ok(Response::new(response));
            }
        }
        let results = engine::check(&set, &request);
        for result in &results {
            for (action, decision) in &result.actions {
                if decision.evaluation_error {
                    tracing::warn!(
                        request_id = %request.request_id,
                        kind = %result.kind,
                        id = %result.id,
                        action = %action,
                        policy = %decision.policy,
                        rule = %decision.rule,
                        reason = %decision.reason,
                        "condition failed to evaluate; denied"
                    );
                }
            }
        }
        Ok(Response::new(convert::check_response(
            request.request_id,
            &set.version,
            &results,
        )))
    }

    async fn plan_filter(
        &self,
        request: Request<proto::PlanFilterRequest>,
    ) -> Result<Response<proto::PlanFilterResponse>, Status> {
        let mut request = request.into_inner();
        let request_id = request.request_id.clone();
        let token = std::mem::take(&mut request.token);
        let principal = request.principal.take();
        let dialect = convert::sql_dialect(&request.sql)?;
        let columns = request
            .sql
            .as_ref()
            .map(|s| s.columns.clone())
            .unwrap_or_default();
        let mut plan_request = convert::plan_request(request, &self.limits)?;
        let set = self.store.current();
        match self.subject(&request_id, &token, principal)? {
            Subject::Principal(principal) => plan_request.principal = principal,
            Subject::Rejected(e) => {
                return Ok(Response::new(proto::PlanFilterResponse {
                    request_id,
                    policy_version: set.version.clone(),
                    kind: proto::PlanKind::AlwaysDenied as i32,
                    filter: None,
                    sql: dialect.map(|_| proto::SqlFilter {
                        r#where: "FALSE".into(),
                        params: Vec::new(),
                    }),
                    token_error: e.to_string(),
                }));
            }
        }
        let planned = plan::plan(&set, &plan_request).map_err(|e| {
            tracing::warn!(request_id = %request_id, policy = %e.policy, rule = %e.rule, "PlanFilter refused: {e}");
            Status::failed_precondition(e.to_string())
        })?;
        let sql = match dialect {
            None => None,
            Some(dialect) => {
                let rendered = filter::sql::render(&planned.filter(), dialect, &columns)
                    .map_err(|e| Status::invalid_argument(format!("sql: {e}")))?;
                Some(convert::sql_filter(&rendered))
            }
        };
        Ok(Response::new(proto::PlanFilterResponse {
            request_id,
            policy_version: set.version.clone(),
            kind: convert::plan_kind(&planned) as i32,
            filter: match &planned {
                plan::Plan::Conditional(f) => Some(convert::filter(f)),
                _ => None,
            },
            sql,
            token_error: String::new(),
        }))
    }
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
        }))
    }
}

/// Accepted connections with Nagle's algorithm off: small gRPC frames must not wait for ACKs.
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|stream| {
        let stream = stream?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// Serves Authorizer, Admin, health and reflection on `listener` until `shutdown` resolves.
/// With `tokens`, requests may carry a JWT instead of a principal.
pub async fn serve(
    listener: TcpListener,
    store: Arc<PolicyStore>,
    limits: Limits,
    tokens: Option<Arc<Verifier>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthorizerServer<AuthorizerService>>()
        .await;
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
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
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AuthorizerServer::new(AuthorizerService::new(
            Arc::clone(&store),
            limits,
            tokens,
        )))
        .add_service(AdminServer::new(AdminService::new(store)))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}
