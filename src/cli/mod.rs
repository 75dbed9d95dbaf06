//! The `verdict` command line, one module per kind of command: [`serve`] runs the daemon,
//! [`client`] asks a running one (`check`, `plan`), [`authoring`] works on policy files
//! (`validate`, `test`, `diff`, `schema export`), [`token`] makes development keys and tokens (`token keygen`, `token
//! sign`).
//!
//! The only place that reads flags and prints for humans; everything it runs lives elsewhere.

pub mod authoring;
pub mod client;
pub mod serve;
pub mod token;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

pub use authoring::{DiffArgs, SchemaCommand, TestArgs, ValidateArgs};
pub use client::{CheckArgs, PlanArgs};
pub use serve::ServeArgs;

#[derive(Parser)]
#[command(
    name = "verdict",
    version,
    about = "Verdict: an authorization decision service with CEL policies"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the decision daemon (gRPC: verdict.v1.Authorizer, verdict.v1.Admin, grpc.health.v1,
    /// reflection). Reloads the policies when their directory changes and on SIGHUP.
    Serve(Box<ServeArgs>),
    /// Ask a running daemon for a decision and print it.
    Check(CheckArgs),
    /// Ask a running daemon for a row filter (PlanFilter) and print the tree and the SQL.
    Plan(PlanArgs),
    /// Load and compile a policy directory; print every problem and exit non-zero on any.
    Validate(ValidateArgs),
    /// Run the test suites (*_test.yaml) found under a policy directory against its policies.
    Test(TestArgs),
    /// Compare two policy directories: for every principal class x kind x action whose access
    /// changed, widened / narrowed / changed, the access before and after as filters, and a
    /// request whose decision flips, confirmed by Check on both sets.
    #[command(after_help = authoring::DIFF_EXIT_CODES)]
    Diff(DiffArgs),
    /// The policy set's schema, for callers: `schema export` prints it as JSON Schema.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Development tools: a key pair for --jwks-file, and tokens signed with it. Not for
    /// production keys.
    #[command(subcommand)]
    Token(token::TokenCommand),
}

/// Runs a command; its exit code (0 unless a command says otherwise, such as `check
/// --exit-code` on a deny). An error is the caller's to print, with exit code 1.
pub async fn run(cli: Cli) -> Result<std::process::ExitCode> {
    let done = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Serve(args) => serve::run(*args).await.map(|()| done),
        Command::Check(args) => client::check(args).await,
        Command::Plan(args) => client::plan(args).await.map(|()| done),
        Command::Validate(args) => authoring::validate(args).map(|()| done),
        Command::Test(args) => authoring::test(args).map(|()| done),
        Command::Diff(args) => authoring::diff(args),
        Command::Schema(command) => authoring::schema(command).map(|()| done),
        Command::Token(command) => token::run(command).map(|()| done),
    }
}

/// A JSON flag's value: the text itself, or with `@path` the file's content.
pub(crate) fn read_json_arg(what: &str, text: &str) -> Result<serde_json::Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--{what}: cannot read {path}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("--{what} is not valid JSON"))
}
