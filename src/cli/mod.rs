//! The `verdict` command line: `serve` runs the daemon, `check` asks a running daemon for a
//! decision over gRPC, `validate` loads and compiles a policy directory.
//!
//! The only place that reads flags and prints for humans; everything it runs lives elsewhere.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};

use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};
use crate::server::convert::{json_to_value, Limits};
use crate::server::proto;
use crate::store::watch::{ReloadOptions, Reloader};
use crate::store::PolicyStore;
use crate::token::{ClaimMapping, TokenConfig, Verifier};

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
    Serve(ServeArgs),
    /// Ask a running daemon for a decision and print it.
    Check(CheckArgs),
    /// Ask a running daemon for a row filter (PlanFilter) and print the tree and the SQL.
    Plan(PlanArgs),
    /// Load and compile a policy directory; print every problem and exit non-zero on any.
    Validate(ValidateArgs),
    /// Run the test suites (*_test.yaml) found under a policy directory against its policies.
    Test(TestArgs),
}

#[derive(Args)]
pub struct TestArgs {
    /// Directory of policy files and their test suites.
    #[arg(default_value = "policies")]
    pub policies: PathBuf,
    /// Also write the results as JUnit XML to this file.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

#[derive(Args)]
pub struct PlanArgs {
    /// The daemon's address.
    #[arg(long, env = "VERDICT_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// The principal as JSON, as for `check`.
    #[arg(long, required_unless_present = "token")]
    pub principal: Option<String>,
    /// A JWT for the daemon to verify instead of a principal (as for `check`).
    #[arg(long, conflicts_with = "principal")]
    pub token: Option<String>,
    /// The resource kind being listed.
    #[arg(long)]
    pub kind: String,
    /// The action.
    #[arg(long, default_value = "read")]
    pub action: String,
    /// Request context as a JSON object.
    #[arg(long)]
    pub context: Option<String>,
    /// Resource attributes the endpoint already fixes, as a JSON object.
    #[arg(long)]
    pub known_attr: Option<String>,
    /// Render SQL for this dialect.
    #[arg(long, value_parser = ["postgres", "sqlite"])]
    pub sql: Option<String>,
    /// attribute=column for the SQL rendering; repeat for each attribute.
    #[arg(long = "column", value_name = "ATTRIBUTE=COLUMN")]
    pub columns: Vec<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Directory of policy files (*.yaml), read recursively.
    #[arg(long, env = "VERDICT_POLICIES", default_value = "policies")]
    pub policies: PathBuf,
    /// Address to listen on for gRPC.
    #[arg(long, env = "VERDICT_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Most resources one Check may carry.
    #[arg(long, env = "VERDICT_MAX_RESOURCES", default_value_t = Limits::default().max_resources)]
    pub max_resources: usize,
    /// Most actions one resource of a Check may carry.
    #[arg(long, env = "VERDICT_MAX_ACTIONS", default_value_t = Limits::default().max_actions)]
    pub max_actions: usize,
    /// Deepest nesting of attribute values accepted.
    #[arg(long, env = "VERDICT_MAX_ATTR_DEPTH", default_value_t = Limits::default().max_attr_depth)]
    pub max_attr_depth: usize,
    /// Watch the policy directory and reload when it changes (the default).
    #[arg(long, overrides_with = "no_watch")]
    pub watch: bool,
    /// Do not watch the policy directory: reload only on SIGHUP and on the poll.
    #[arg(long, env = "VERDICT_NO_WATCH", overrides_with = "watch")]
    pub no_watch: bool,
    /// Quiet period after a burst of file changes before reloading, in milliseconds.
    #[arg(long, env = "VERDICT_RELOAD_DEBOUNCE_MS", default_value_t = 200)]
    pub reload_debounce_ms: u64,
    /// Reload every this many seconds even without file events (a fallback for missed events;
    /// unchanged files are read and hashed, not parsed or compiled); 0 turns it off.
    #[arg(long, env = "VERDICT_RELOAD_POLL_SECS", default_value_t = 30)]
    pub reload_poll_secs: u64,
    #[command(flatten)]
    pub tokens: TokenArgs,
}

/// Token verification: requests may carry the caller's JWT instead of a principal.
#[derive(Args)]
#[command(next_help_heading = "Token verification")]
pub struct TokenArgs {
    /// JWKS file (JSON Web Key Set) with the token issuer's public keys (RS256, ES256, EdDSA).
    /// Turns token verification on; the file is re-read when it changes and on SIGHUP.
    #[arg(long, env = "VERDICT_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// The `iss` every token must carry (required with --jwks-file).
    #[arg(long, env = "VERDICT_TOKEN_ISSUER", requires = "jwks_file")]
    pub token_issuer: Option<String>,
    /// An audience of this deployment: a token's `aud` must name one. Repeat, or separate with
    /// commas (at least one is required with --jwks-file).
    #[arg(
        long,
        env = "VERDICT_TOKEN_AUDIENCE",
        value_delimiter = ',',
        requires = "jwks_file"
    )]
    pub token_audience: Vec<String>,
    /// Claim holding the roles, as a dotted path (e.g. `realm_access.roles`).
    #[arg(long, env = "VERDICT_TOKEN_ROLES_CLAIM", default_value = "roles")]
    pub token_roles_claim: String,
    /// Claim holding the capabilities, as a dotted path.
    #[arg(
        long,
        env = "VERDICT_TOKEN_CAPABILITIES_CLAIM",
        default_value = "capabilities"
    )]
    pub token_capabilities_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "VERDICT_TOKEN_LEEWAY_SECS", default_value_t = 30)]
    pub token_leeway_secs: u64,
    /// Refuse requests without a token (INVALID_ARGUMENT): principals are only ever taken from
    /// verified tokens.
    #[arg(long, env = "VERDICT_REQUIRE_TOKEN", requires = "jwks_file")]
    pub require_token: bool,
}

impl TokenArgs {
    /// The token verification the flags ask for; `None` without --jwks-file.
    pub fn config(&self) -> Result<Option<TokenConfig>> {
        let Some(jwks_file) = &self.jwks_file else {
            return Ok(None);
        };
        let Some(issuer) = &self.token_issuer else {
            bail!("--jwks-file needs --token-issuer: the `iss` tokens must carry");
        };
        if self.token_audience.is_empty() {
            bail!("--jwks-file needs --token-audience: the `aud` tokens must name");
        }
        Ok(Some(TokenConfig {
            audiences: self.token_audience.clone(),
            mapping: ClaimMapping {
                roles: self.token_roles_claim.clone(),
                capabilities: self.token_capabilities_claim.clone(),
            },
            leeway: Duration::from_secs(self.token_leeway_secs),
            required: self.require_token,
            ..TokenConfig::new(jwks_file, issuer, &[])
        }))
    }
}

impl ServeArgs {
    /// How the daemon reloads its policies.
    pub fn reload_options(&self) -> ReloadOptions {
        ReloadOptions {
            watch: !self.no_watch,
            debounce: Duration::from_millis(self.reload_debounce_ms),
            poll: (self.reload_poll_secs > 0).then(|| Duration::from_secs(self.reload_poll_secs)),
        }
    }
}

#[derive(Args)]
pub struct CheckArgs {
    /// The daemon's address.
    #[arg(long, env = "VERDICT_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// A whole request as JSON (or @file): {"principal": {...}, "resources": [{"resource": {...},
    /// "actions": [...]}], "context": {...}}. Replaces the other request flags.
    #[arg(long, conflicts_with_all = ["principal", "resource", "action"])]
    pub request: Option<String>,
    /// The principal as JSON: {"id": "dr-1", "roles": ["physician"], "attr": {"practice_id": "7"}}.
    #[arg(long)]
    pub principal: Option<String>,
    /// The resource as JSON: {"kind": "Patient", "id": "p1", "attr": {...}}.
    #[arg(long)]
    pub resource: Option<String>,
    /// An action to decide; repeat for several.
    #[arg(long = "action")]
    pub action: Vec<String>,
    /// Request context as a JSON object.
    #[arg(long)]
    pub context: Option<String>,
    /// A JWT for the daemon to verify and take the principal from, instead of --principal.
    #[arg(long, conflicts_with = "principal")]
    pub token: Option<String>,
    /// Print the response as JSON instead of one line per decision.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ValidateArgs {
    /// Directory of policy files.
    #[arg(default_value = "policies")]
    pub policies: PathBuf,
    /// Exit non-zero on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Check(args) => check(args).await,
        Command::Plan(args) => plan(args).await,
        Command::Validate(args) => validate(args),
        Command::Test(args) => test(args),
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let store = PolicyStore::open(&args.policies).map_err(|e| {
        anyhow::anyhow!(
            "refusing to start: the policy set in {} is broken:\n{e}",
            args.policies.display()
        )
    })?;
    let store = Arc::new(store);
    let tokens = match args.tokens.config()? {
        None => None,
        Some(config) => Some(Arc::new(Verifier::start(config).map_err(|e| {
            anyhow::anyhow!("refusing to start: token verification: {e}")
        })?)),
    };
    let set = store.current();
    tracing::info!(
        policies = %args.policies.display(),
        version = %set.version,
        policy_count = set.policy_count,
        rules = set.rules.len(),
        "policy set loaded"
    );
    for warning in &set.warnings {
        tracing::warn!("policy warning: {warning}");
    }
    // Before the listener is announced: from then on, SIGHUP must reload and SIGTERM drain, not
    // kill.
    let hangups = hangup_signals()?;
    let shutdown = shutdown_signal()?;
    let reloader = Reloader::start(Arc::clone(&store), args.reload_options())
        .context("cannot start the policy reload thread")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "serving gRPC");
    let limits = Limits {
        max_resources: args.max_resources,
        max_actions: args.max_actions,
        max_attr_depth: args.max_attr_depth,
    };
    let reloader = Arc::new(reloader);
    let on_hangup = tokio::spawn(reload_on_hangup(
        hangups,
        Arc::clone(&reloader),
        tokens.clone(),
    ));
    crate::server::serve(listener, store, limits, tokens, shutdown).await?;
    on_hangup.abort();
    drop(reloader);
    tracing::info!("stopped");
    Ok(())
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangup_signals() -> Result<Hangups> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")
}

#[cfg(not(unix))]
fn hangup_signals() -> Result<Hangups> {
    Ok(())
}

/// Each SIGHUP asks the reload threads for an immediate reload (policies, and the JWKS file).
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangups: Hangups,
    reloader: Arc<Reloader>,
    tokens: Option<Arc<Verifier>>,
) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received; reloading policies");
        reloader.reload_now();
        if let Some(tokens) = &tokens {
            tokens.reload_now();
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(
    _hangups: Hangups,
    _reloader: Arc<Reloader>,
    _tokens: Option<Arc<Verifier>>,
) {
}

/// Registers SIGTERM and Ctrl-C handlers now (before the daemon says it is ready, so a signal
/// sent right after never kills it uncleanly) and returns the future that resolves on either.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot install the SIGINT handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received; draining");
    })
}

fn read_json_arg(what: &str, text: &str) -> Result<serde_json::Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--{what}: cannot read {path}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("--{what} is not valid JSON"))
}

fn check_request_from(args: &CheckArgs) -> Result<CheckRequest> {
    if let Some(request) = &args.request {
        return serde_json::from_value(read_json_arg("request", request)?).context(
            "--request does not match {principal, resources: [{resource, actions}], context}",
        );
    }
    let principal: Principal = match &args.principal {
        Some(p) => serde_json::from_value(read_json_arg("principal", p)?)
            .context("--principal: expected {id, roles, capabilities, scopes, client_id, attr}")?,
        None if args.token.is_some() => Principal::default(),
        None => bail!("--principal, --token or --request is required"),
    };
    let resource: Resource = match &args.resource {
        Some(r) => serde_json::from_value(read_json_arg("resource", r)?)
            .context("--resource: expected {kind, id, attr}")?,
        None => bail!("--resource (or --request) is required"),
    };
    if args.action.is_empty() {
        bail!("at least one --action is required");
    }
    Ok(CheckRequest {
        request_id: String::new(),
        principal,
        resources: vec![ResourceCheck {
            resource,
            actions: args.action.clone(),
        }],
        context: match &args.context {
            Some(c) => read_json_arg("context", c)?,
            None => serde_json::Value::Null,
        },
    })
}

fn json_object_to_struct(j: &serde_json::Value) -> Option<prost_types::Struct> {
    match json_to_value(j).kind {
        Some(prost_types::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    }
}

/// The protobuf form of an engine request (for clients: the CLI and tests).
pub fn to_proto(r: &CheckRequest) -> proto::CheckRequest {
    let p = &r.principal;
    proto::CheckRequest {
        request_id: r.request_id.clone(),
        principal: Some(proto::Principal {
            id: p.id.clone(),
            roles: p.roles.clone(),
            capabilities: p.capabilities.clone(),
            scopes: p.scopes.clone(),
            attr: json_object_to_struct(&p.attr),
            client_id: p.client_id.clone(),
        }),
        resources: r
            .resources
            .iter()
            .map(|c| proto::ResourceCheck {
                resource: Some(proto::Resource {
                    kind: c.resource.kind.clone(),
                    id: c.resource.id.clone(),
                    attr: json_object_to_struct(&c.resource.attr),
                }),
                actions: c.actions.clone(),
            })
            .collect(),
        context: json_object_to_struct(&r.context),
        token: String::new(),
    }
}

async fn check(args: CheckArgs) -> Result<()> {
    let request = check_request_from(&args)?;
    let mut message = to_proto(&request);
    if let Some(token) = &args.token {
        // A --request principal stays: the daemon refuses a token next to a principal.
        message.token = token.clone();
    }
    let mut client = proto::authorizer_client::AuthorizerClient::connect(args.server.clone())
        .await
        .with_context(|| format!("cannot connect to {}", args.server))?;
    let response = client
        .check(message)
        .await
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&response_json(&response))?
        );
        return Ok(());
    }
    println!("policy_version {}", response.policy_version);
    for (check, result) in request.resources.iter().zip(&response.results) {
        let who = format!("{}/{}", check.resource.kind, check.resource.id);
        for action in &check.actions {
            match result.actions.get(action) {
                Some(d) => {
                    let effect = if d.effect == proto::Effect::Allow as i32 {
                        "ALLOW"
                    } else {
                        "DENY"
                    };
                    println!("{who} {action}: {effect} - {}", d.reason);
                }
                None => println!("{who} {action}: (no answer)"),
            }
        }
    }
    Ok(())
}

async fn plan(args: PlanArgs) -> Result<()> {
    let principal: Principal = match &args.principal {
        Some(p) => serde_json::from_value(read_json_arg("principal", p)?)
            .context("--principal: expected {id, roles, capabilities, scopes, client_id, attr}")?,
        None => Principal::default(),
    };
    let object = |what: &str, text: &Option<String>| -> Result<Option<prost_types::Struct>> {
        match text {
            None => Ok(None),
            Some(t) => json_object_to_struct(&read_json_arg(what, t)?)
                .map(Some)
                .with_context(|| format!("--{what} must be a JSON object")),
        }
    };
    let mut columns = std::collections::HashMap::new();
    for c in &args.columns {
        let (attribute, column) = c
            .split_once('=')
            .with_context(|| format!("--column {c}: expected ATTRIBUTE=COLUMN"))?;
        columns.insert(attribute.to_string(), column.to_string());
    }
    let sql = args.sql.as_deref().map(|d| proto::SqlRequest {
        dialect: if d == "postgres" {
            proto::SqlDialect::Postgres
        } else {
            proto::SqlDialect::Sqlite
        } as i32,
        columns: columns.clone(),
    });
    let request = proto::PlanFilterRequest {
        request_id: String::new(),
        principal: match args.token {
            Some(_) => None,
            None => {
                to_proto(&CheckRequest {
                    principal,
                    ..Default::default()
                })
                .principal
            }
        },
        resource_kind: args.kind.clone(),
        action: args.action.clone(),
        context: object("context", &args.context)?,
        known_attr: object("known-attr", &args.known_attr)?,
        sql,
        token: args.token.clone().unwrap_or_default(),
    };
    let mut client = proto::authorizer_client::AuthorizerClient::connect(args.server.clone())
        .await
        .with_context(|| format!("cannot connect to {}", args.server))?;
    let response = client
        .plan_filter(request)
        .await
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    println!("policy_version {}", response.policy_version);
    let kind = proto::PlanKind::try_from(response.kind)
        .map(|k| k.as_str_name())
        .unwrap_or("PLAN_KIND_UNSPECIFIED");
    println!("{}:{}: {kind}", args.kind, args.action);
    if !response.token_error.is_empty() {
        println!("token rejected: {}", response.token_error);
    }
    if let Some(filter) = &response.filter {
        print_filter(filter, 1);
    }
    if let Some(sql) = &response.sql {
        println!("sql: {}", sql.r#where);
        let params: Vec<String> = sql
            .params
            .iter()
            .map(|p| value_json(p).to_string())
            .collect();
        println!("params: [{}]", params.join(", "));
    }
    Ok(())
}

fn value_json(v: &prost_types::Value) -> serde_json::Value {
    crate::server::convert::value_to_json_unbounded(v)
}

/// Prints a filter tree, one node a line, with the rule that produced each annotated node.
fn print_filter(f: &proto::Filter, depth: usize) {
    let indent = "  ".repeat(depth);
    let op = proto::FilterOp::try_from(f.op).unwrap_or(proto::FilterOp::Unspecified);
    let origin = if f.policy.is_empty() {
        String::new()
    } else {
        format!("    [{}/{}]", f.policy, f.rule)
    };
    let name = op
        .as_str_name()
        .trim_start_matches("FILTER_OP_")
        .to_lowercase();
    match op {
        proto::FilterOp::And | proto::FilterOp::Or | proto::FilterOp::Not => {
            println!("{indent}{name}{origin}");
            for operand in &f.operands {
                print_filter(operand, depth + 1);
            }
        }
        proto::FilterOp::In => {
            let values: Vec<String> = f.values.iter().map(|v| value_json(v).to_string()).collect();
            println!("{indent}{} in [{}]{origin}", f.attribute, values.join(", "));
        }
        proto::FilterOp::Exists => println!("{indent}exists({}){origin}", f.attribute),
        _ => {
            let value = f
                .value
                .as_ref()
                .map(|v| value_json(v).to_string())
                .unwrap_or_default();
            println!("{indent}{} {name} {value}{origin}", f.attribute);
        }
    }
}

fn response_json(r: &proto::CheckResponse) -> serde_json::Value {
    serde_json::json!({
        "request_id": r.request_id,
        "policy_version": r.policy_version,
        "token_error": r.token_error,
        "results": r.results.iter().map(|res| serde_json::json!({
            "resource": res.resource.as_ref().map(|i| serde_json::json!({"kind": i.kind, "id": i.id})),
            "actions": res.actions.iter().map(|(a, d)| (a.clone(), serde_json::json!({
                "effect": proto::Effect::try_from(d.effect).map(|e| e.as_str_name()).unwrap_or("EFFECT_UNSPECIFIED"),
                "policy": d.policy,
                "rule": d.rule,
                "reason": d.reason,
            }))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    })
}

fn test(args: TestArgs) -> Result<()> {
    let set = crate::compile::PolicySet::load(&args.policies).map_err(|e| {
        anyhow::anyhow!(
            "the policy set in {} is broken:\n{e}",
            args.policies.display()
        )
    })?;
    let files = crate::suite::find(&args.policies)
        .with_context(|| format!("cannot read {}", args.policies.display()))?;
    if files.is_empty() {
        bail!(
            "no test suites (*_test.yaml) under {}",
            args.policies.display()
        );
    }
    let mut results = Vec::new();
    let mut broken = Vec::new();
    for file in files {
        match crate::suite::load(&file) {
            Ok(suite) => results.push(crate::suite::run(&set, &file, &suite)),
            Err(e) => broken.push(e),
        }
    }
    print!("{}", crate::suite::report(&results));
    if let Some(path) = &args.junit {
        std::fs::write(path, crate::suite::junit(&results))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    for e in &broken {
        eprintln!("{e}");
    }
    let failed: usize = results.iter().map(|r| r.failed()).sum();
    if failed > 0 || !broken.is_empty() {
        bail!(
            "{failed} test case(s) failed, {} suite file(s) unreadable",
            broken.len()
        );
    }
    Ok(())
}

fn validate(args: ValidateArgs) -> Result<()> {
    let (source, mut errors) = crate::policy::read_dir(&args.policies);
    let mut warnings = Vec::new();
    let mut summary = None;
    match crate::compile::PolicySet::compile(&source) {
        Ok(set) => {
            warnings = set.warnings.clone();
            summary = Some(format!(
                "{} policies, {} rules, version {}",
                set.policy_count,
                set.rules.len(),
                set.version
            ));
        }
        Err(e) => errors.extend(e.0),
    }
    for e in &errors {
        eprintln!("{}", with_severity(e, "error"));
    }
    for w in &warnings {
        eprintln!("{}", with_severity(w, "warning"));
    }
    let dir = args.policies.display();
    if !errors.is_empty() {
        bail!(
            "{dir}: {} error(s), {} warning(s)",
            errors.len(),
            warnings.len()
        );
    }
    if args.deny_warnings && !warnings.is_empty() {
        bail!("{dir}: {} warning(s) (--deny-warnings)", warnings.len());
    }
    println!(
        "{dir}: ok, {}, {} warning(s)",
        summary.unwrap_or_default(),
        warnings.len()
    );
    Ok(())
}

/// `file:line: error: message`, the form editors and CI annotate.
fn with_severity(e: &crate::policy::LoadError, severity: &str) -> String {
    match e.line {
        Some(line) => format!("{}:{line}: {severity}: {}", e.file.display(), e.message),
        None => format!("{}: {severity}: {}", e.file.display(), e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let argv = ["verdict", "serve"].iter().chain(flags);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Serve(args) => args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn reload_flags() {
        let defaults = serve_args(&[]).reload_options();
        assert_eq!(defaults, ReloadOptions::default());
        assert!(defaults.watch);
        assert_eq!(defaults.debounce, Duration::from_millis(200));
        assert_eq!(defaults.poll, Some(Duration::from_secs(30)));

        assert!(!serve_args(&["--no-watch"]).reload_options().watch);
        assert!(
            serve_args(&["--no-watch", "--watch"])
                .reload_options()
                .watch
        );
        assert!(
            !serve_args(&["--watch", "--no-watch"])
                .reload_options()
                .watch
        );
        let tuned = serve_args(&["--reload-debounce-ms", "50", "--reload-poll-secs", "0"]);
        let options = tuned.reload_options();
        assert_eq!(options.debounce, Duration::from_millis(50));
        assert_eq!(options.poll, None);
    }
}
