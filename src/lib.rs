//! Verdict: an authorization decision service (a policy decision point). See ARCHITECTURE.md for
//! the map; modules are listed here from the bottom of the dependency graph up.
pub mod cel;
pub mod cli;
pub mod compile;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod filter;
pub mod plan;
pub mod policy;
pub mod reload;
pub mod request;
pub mod server;
pub mod smart;
pub mod store;
pub mod suite;
pub mod telemetry;
pub mod token;
