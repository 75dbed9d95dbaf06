//! Request conversion, through the real services in-process on the bundled clinic policies: any
//! bytes as a protobuf CheckRequest or PlanFilterRequest (the gRPC Authorizer), or as the body
//! of `POST /v1/check` or `POST /v1/plan` (the HTTP/JSON API), are answered (a decision, or a
//! refusal with a status), never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tower::ServiceExt as _;
use verdict::server::proto;
use verdict::server::proto::authorizer_server::Authorizer as _;
use verdict::server::{AuthorizerService, ServerOptions};
use verdict::store::PolicyStore;

struct Served {
    runtime: tokio::runtime::Runtime,
    grpc: AuthorizerService,
    http: axum::Router,
}

fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies");
        let store = Arc::new(PolicyStore::open(policies.as_ref()).expect("the clinic loads"));
        let options = ServerOptions::default();
        let authority = options.authority(store);
        Served {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            grpc: AuthorizerService::new(Arc::clone(&authority)),
            http: verdict::server::http::api_router(authority, 4 << 20, None),
        }
    })
}

fn http(path: &str, body: &[u8]) {
    let served = served();
    let request = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let response = served
        .runtime
        .block_on(served.http.clone().oneshot(request))
        .unwrap();
    let status = response.status();
    assert!(
        status.is_success() || status.is_client_error() || status.is_server_error(),
        "{status}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let served = served();
    match mode % 4 {
        0 => {
            if let Ok(message) = proto::CheckRequest::decode(body) {
                let _ = served
                    .runtime
                    .block_on(served.grpc.check(tonic::Request::new(message)));
            }
        }
        1 => {
            if let Ok(message) = proto::PlanFilterRequest::decode(body) {
                let _ = served
                    .runtime
                    .block_on(served.grpc.plan_filter(tonic::Request::new(message)));
            }
        }
        2 => http("/v1/check", body),
        _ => http("/v1/plan", body),
    }
});
