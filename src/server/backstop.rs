//! The deadline's backstop for gRPC calls that never reach the authority: a body still
//! arriving, or a request so large that decoding it outlasts the deadline. Such a call is answered
//! DEADLINE_EXCEEDED (as the authority answers the calls it times out), counted in
//! `verdict_requests_total` and logged, instead of tonic's own timer's CANCELLED "Timeout
//! expired", which clients cannot tell from a cancellation of their own.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::NamedService;
use tonic::Status;

use crate::telemetry::REQUESTS_TOTAL;

/// A gRPC service whose calls are answered DEADLINE_EXCEEDED once `after` has passed (never
/// without).
#[derive(Clone)]
pub struct Backstopped<S> {
    inner: S,
    after: Option<Duration>,
}

impl<S> Backstopped<S> {
    pub fn new(inner: S, after: Option<Duration>) -> Self {
        Backstopped { inner, after }
    }
}

impl<S: NamedService> NamedService for Backstopped<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Backstopped<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = method_name(request.uri().path());
        let answer = self.inner.call(request);
        let Some(after) = self.after else {
            return Box::pin(answer);
        };
        Box::pin(async move {
            match tokio::time::timeout(after, answer).await {
                Ok(answer) => answer,
                Err(_) => {
                    let message = format!(
                        "deadline exceeded before the request could be decided: still being \
                         received or decoded after {} ms",
                        after.as_millis()
                    );
                    tracing::warn!(method, "{message}");
                    metrics::counter!(REQUESTS_TOTAL, "method" => method, "status" => "DEADLINE_EXCEEDED")
                        .increment(1);
                    Ok(Status::deadline_exceeded(message).into_http())
                }
            }
        })
    }
}

/// `Check` of `/verdict.v1.Authorizer/Check`, as the authority names methods in its metrics.
fn method_name(path: &str) -> &'static str {
    match path.rsplit('/').next() {
        Some("Check") => "Check",
        Some("PlanFilter") => "PlanFilter",
        Some("Status") => "Status",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_named_as_the_authority_names_them() {
        assert_eq!(method_name("/verdict.v1.Authorizer/Check"), "Check");
        assert_eq!(
            method_name("/verdict.v1.Authorizer/PlanFilter"),
            "PlanFilter"
        );
        assert_eq!(method_name("/verdict.v1.Admin/Status"), "Status");
        assert_eq!(method_name("/verdict.v1.Authorizer/Nope"), "other");
    }
}
