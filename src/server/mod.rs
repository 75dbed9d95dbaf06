//! The gRPC face of Verdict: the `verdict.v1.Authorizer` service, the `verdict.v1.Admin` status
//! service, `grpc.health.v1` and server reflection (v1 and v1alpha), on one listener.
//!
//! The only module that knows protobuf types. Handlers convert protobuf into engine types
//! ([`convert`]), take one policy-set snapshot from the [`PolicyStore`], call the synchronous
//! engine, and convert back. No locks and no I/O on the request path.

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

use crate::store::PolicyStore;
use crate::{engine, filter, plan};
use convert::Limits;
use proto::admin_server::{Admin, AdminServer};
use proto::authorizer_server::{Authorizer, AuthorizerServer};

/// The Authorizer service over a policy store.
pub struct AuthorizerService {
    store: Arc<PolicyStore>,
    limits: Limits,
}

impl AuthorizerService {
    pub fn new(store: Arc<PolicyStore>, limits: Limits) -> Self {
        AuthorizerService { store, limits }
    }
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let request = convert::check_request(request.into_inner(), &self.limits)?;
        let set = self.store.current();
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
        let request = request.into_inner();
        let request_id = request.request_id.clone();
        let dialect = convert::sql_dialect(&request.sql)?;
        let columns = request
            .sql
            .as_ref()
            .map(|s| s.columns.clone())
            .unwrap_or_default();
        let plan_request = convert::plan_request(request, &self.limits)?;
        let set = self.store.current();
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
pub async fn serve(
    listener: TcpListener,
    store: Arc<PolicyStore>,
    limits: Limits,
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
        )))
        .add_service(AdminServer::new(AdminService::new(store)))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}
