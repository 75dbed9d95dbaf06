//! The integration tests that need nothing but Rust, one binary: each file of `tests/` is a
//! module here, and libtest runs all their tests in parallel (one binary per file ran the files
//! one after another). The tests that need outside tools are in `tests/tools.rs`.
//!
//! `cargo test --test integration reload::` runs one file's tests.

mod common;

mod authoring;
mod authzen;
mod clinic;
mod daemon;
mod diff;
mod engine_property;
mod entities;
mod explain;
mod hardening;
mod jwks_url;
mod operations;
mod plan_api;
mod plan_property;
mod reload;
mod reload_gate;
mod tidy;
mod token;
mod typed;
