//! Verdict: an authorization decision service (a policy decision point). See ARCHITECTURE.md for
//! the map. Modules are declared from the bottom of the dependency graph up: each depends only on
//! those above it (`tests/tidy.rs` holds this list, ARCHITECTURE.md and the code to it). One per
//! paragraph, so that rustfmt keeps the order.

// Leaves: the engine's request types, the policy file model, what operators see, when to reload.
pub mod request;

pub mod policy;

pub mod telemetry;

pub mod reload;

// Deciding: the schema, scopes, filters, the CEL boundary, compiled sets, the engine, the planner,
// suites, the analysis of whole sets.
pub mod schema;

pub mod entities;

pub mod smart;

pub mod filter;

pub mod cel;

pub mod compile;

pub mod engine;

pub mod plan;

pub mod search;

pub mod suite;

pub mod analysis;

// Serving: the live set, tokens, the wire, the web UI, settings, the daemon, the command line.
pub mod store;

pub mod token;

pub mod server;

pub mod ui;

pub mod config;

pub mod daemon;

pub mod cli;
