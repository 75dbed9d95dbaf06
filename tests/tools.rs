//! The integration tests that need outside tools (python with grpcio and SQLAlchemy, ruby with
//! grpc and ActiveRecord, chromium, helm, grpcurl, buf, k6, jsonschema), one binary under
//! libtest-mimic: each file of `tests/` named here is a module giving its trials, and a trial
//! whose tool is missing is listed as ignored with what to install, or fails in CI (see
//! `common::trial`). The tests that need nothing but Rust are in `tests/integration.rs`.
//!
//! `cargo test --test tools ruby_client::` runs one file's tests.

mod common;

mod grpcurl;
mod helm;
mod k6_smoke;
mod proto;
mod python_client;
mod python_sqlalchemy;
mod ruby_client;
mod schema_export;
mod ui;

fn main() -> std::process::ExitCode {
    let files = [
        grpcurl::trials,
        helm::trials,
        k6_smoke::trials,
        proto::trials,
        python_client::trials,
        python_sqlalchemy::trials,
        ruby_client::trials,
        schema_export::trials,
        ui::trials,
    ];
    common::run(files.iter().flat_map(|trials| trials()).collect())
}
