//! The `verdict` command line: `serve` runs the daemon, `check` asks a running daemon for a
//! decision over gRPC, `validate` loads and compiles a policy directory.
//!
//! The only place that reads flags and prints for humans; everything it runs lives elsewhere.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Endpoint, LogFormat};
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};
use crate::server::convert::json_to_value;
use crate::server::{json, proto};

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
    /// Render SQL for this dialect: postgres or sqlite (or SQL_DIALECT_POSTGRES,
    /// SQL_DIALECT_SQLITE).
    #[arg(long, value_parser = parse_dialect)]
    pub sql: Option<crate::filter::sql::Dialect>,
    /// attribute=column for the SQL rendering; repeat for each attribute.
    #[arg(long = "column", value_name = "ATTRIBUTE=COLUMN")]
    pub columns: Vec<String>,
}

/// Flags of `verdict serve`. Every flag is optional: unset, it takes the value from the
/// environment variable, then from `--config`, then the default shown.
#[derive(Args, Default)]
pub struct ServeArgs {
    /// YAML config file with any of the settings below (see docs/configuration.md).
    #[arg(long, env = "VERDICT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of policy files (*.yaml), read recursively. [default: policies]
    #[arg(long, env = "VERDICT_POLICIES")]
    pub policies: Option<PathBuf>,
    /// gRPC listen address. [default: 127.0.0.1:50051]
    #[arg(long, env = "VERDICT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Watch the policy directory and reload when it changes. [default]
    #[arg(long, overrides_with = "no_watch")]
    pub watch: bool,
    /// Do not watch the policy directory: reload only on SIGHUP and on the poll.
    #[arg(long, env = "VERDICT_NO_WATCH", overrides_with = "watch")]
    pub no_watch: bool,
    /// Quiet period after a burst of file changes before reloading, in ms. [default: 200]
    #[arg(long, env = "VERDICT_RELOAD_DEBOUNCE_MS")]
    pub reload_debounce_ms: Option<u64>,
    /// Reload every this many seconds even without file events (unchanged files are only hashed);
    /// 0 turns it off. [default: 30]
    #[arg(long, env = "VERDICT_RELOAD_POLL_SECS")]
    pub reload_poll_secs: Option<u64>,
    /// When the policy directory holds test suites (`*_test.yaml`), a set goes live (at start or
    /// on reload) only if they all pass; `--reload-require-tests=false` turns the gate off.
    /// [default: true]
    #[arg(long, env = "VERDICT_RELOAD_REQUIRE_TESTS", num_args = 0..=1, default_missing_value = "true")]
    pub reload_require_tests: Option<bool>,
    /// Most resources one Check may carry. [default: 1000]
    #[arg(long, env = "VERDICT_MAX_RESOURCES")]
    pub max_resources: Option<usize>,
    /// Most actions one resource of a Check may carry. [default: 100]
    #[arg(long, env = "VERDICT_MAX_ACTIONS")]
    pub max_actions: Option<usize>,
    /// Deepest nesting of attribute values accepted. [default: 16]
    #[arg(long, env = "VERDICT_MAX_ATTR_DEPTH")]
    pub max_attr_depth: Option<usize>,
    /// Largest request message accepted, in bytes. [default: 4194304]
    #[arg(long, env = "VERDICT_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Server-side deadline of a request in ms (a shorter client deadline wins); 0 = none.
    /// [default: 5000]
    #[arg(long, env = "VERDICT_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// PEM certificate chain: with --tls-key, the listeners speak TLS only. [default: off]
    #[arg(long, env = "VERDICT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "VERDICT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: clients must present a certificate it signed (mutual TLS). [default: off]
    #[arg(long, env = "VERDICT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// How often the TLS files are checked for changes whatever the file events say, in seconds.
    /// [default: 10]
    #[arg(long, env = "VERDICT_TLS_RELOAD_SECS")]
    pub tls_reload_secs: Option<u64>,
    /// Prometheus endpoint address (GET /metrics), or `off`. [default: off]
    #[arg(long, env = "VERDICT_METRICS_LISTEN")]
    pub metrics_listen: Option<Endpoint>,
    /// HTTP/JSON API address (POST /v1/check, /v1/plan), or `off`. [default: off]
    #[arg(long, env = "VERDICT_HTTP_LISTEN")]
    pub http_listen: Option<Endpoint>,
    /// Log format. [default: text]
    #[arg(long, env = "VERDICT_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `verdict=debug` (VERDICT_LOG overrides it). [default: info]
    #[arg(long, env = "VERDICT_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Write the decision log (one JSON line per decision). [default: off]
    #[arg(long, env = "VERDICT_AUDIT", num_args = 0..=1, default_missing_value = "true")]
    pub audit: Option<bool>,
    /// Where the decision log goes: `stdout` or a file path. [default: stdout]
    #[arg(long, env = "VERDICT_AUDIT_OUTPUT")]
    pub audit_output: Option<String>,
    /// Put principal and resource attributes (patient data) in the decision log. [default: false]
    #[arg(long, env = "VERDICT_AUDIT_INCLUDE_ATTRIBUTES", num_args = 0..=1, default_missing_value = "true")]
    pub audit_include_attributes: Option<bool>,
    /// Decisions queued for the log writer; beyond, lines are dropped and counted. [default: 10000]
    #[arg(long, env = "VERDICT_AUDIT_BUFFER")]
    pub audit_buffer: Option<usize>,
    /// After SIGTERM, seconds of NOT_SERVING health before new connections are refused.
    /// [default: 0]
    #[arg(long, env = "VERDICT_SHUTDOWN_DRAIN_SECS")]
    pub shutdown_drain_secs: Option<u64>,
    /// Then, the longest wait for in-flight requests, in seconds. [default: 30]
    #[arg(long, env = "VERDICT_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// JWKS file with the token issuer's public keys (RS256, ES256, EdDSA): requests may then
    /// carry a JWT instead of a principal. [default: off]
    #[arg(long, env = "VERDICT_JWKS_FILE", help_heading = "Token verification")]
    pub jwks_file: Option<PathBuf>,
    /// The `iss` every token must carry (required with --jwks-file).
    #[arg(
        long,
        env = "VERDICT_TOKEN_ISSUER",
        help_heading = "Token verification"
    )]
    pub token_issuer: Option<String>,
    /// An audience of this deployment: a token's `aud` must name one. Repeat, or separate with
    /// commas (required with --jwks-file).
    #[arg(
        long,
        env = "VERDICT_TOKEN_AUDIENCE",
        value_delimiter = ',',
        help_heading = "Token verification"
    )]
    pub token_audience: Vec<String>,
    /// Claim that becomes the principal's id, as a dotted path; a token without it, or with it
    /// empty, is rejected. [default: sub]
    #[arg(
        long,
        env = "VERDICT_TOKEN_SUBJECT_CLAIM",
        help_heading = "Token verification"
    )]
    pub token_subject_claim: Option<String>,
    /// Claim holding the roles, as a dotted path (`realm_access.roles`). [default: roles]
    #[arg(
        long,
        env = "VERDICT_TOKEN_ROLES_CLAIM",
        help_heading = "Token verification"
    )]
    pub token_roles_claim: Option<String>,
    /// Claim holding the capabilities, as a dotted path. [default: capabilities]
    #[arg(
        long,
        env = "VERDICT_TOKEN_CAPABILITIES_CLAIM",
        help_heading = "Token verification"
    )]
    pub token_capabilities_claim: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. [default: 30]
    #[arg(
        long,
        env = "VERDICT_TOKEN_LEEWAY_SECS",
        help_heading = "Token verification"
    )]
    pub token_leeway_secs: Option<u64>,
    /// Refuse requests without a token: principals come only from verified tokens.
    /// [default: false]
    #[arg(long, env = "VERDICT_REQUIRE_TOKEN", num_args = 0..=1, default_missing_value = "true", help_heading = "Token verification")]
    pub require_token: Option<bool>,
    /// How often the JWKS file is checked for changes whatever the file events say, in seconds
    /// (SIGHUP checks at once).
    /// [default: 2]
    #[arg(
        long,
        env = "VERDICT_JWKS_RELOAD_SECS",
        help_heading = "Token verification"
    )]
    pub jwks_reload_secs: Option<u64>,
}

impl ServeArgs {
    /// The settings: defaults, overridden by the config file, then by environment and flags.
    pub fn config(&self) -> Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)
                .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?,
            None => Config::default(),
        };
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *target = v.clone();
            }
        }
        set(&mut c.policies, &self.policies);
        set(&mut c.listen, &self.listen);
        if self.no_watch {
            c.reload.watch = false;
        } else if self.watch {
            c.reload.watch = true;
        }
        set(&mut c.reload.debounce_ms, &self.reload_debounce_ms);
        set(&mut c.reload.poll_secs, &self.reload_poll_secs);
        set(&mut c.reload.require_tests, &self.reload_require_tests);
        set(&mut c.limits.max_resources, &self.max_resources);
        set(&mut c.limits.max_actions, &self.max_actions);
        set(&mut c.limits.max_attr_depth, &self.max_attr_depth);
        set(&mut c.limits.max_message_bytes, &self.max_message_bytes);
        set(&mut c.limits.request_timeout_ms, &self.request_timeout_ms);
        if self.tls_cert.is_some() {
            c.tls.cert = self.tls_cert.clone();
        }
        if self.tls_key.is_some() {
            c.tls.key = self.tls_key.clone();
        }
        if self.tls_client_ca.is_some() {
            c.tls.client_ca = self.tls_client_ca.clone();
        }
        set(&mut c.tls.reload_secs, &self.tls_reload_secs);
        set(&mut c.metrics.listen, &self.metrics_listen);
        set(&mut c.http.listen, &self.http_listen);
        set(&mut c.log.format, &self.log_format);
        set(&mut c.log.level, &self.log_level);
        set(&mut c.audit.enabled, &self.audit);
        set(&mut c.audit.output, &self.audit_output);
        set(
            &mut c.audit.include_attributes,
            &self.audit_include_attributes,
        );
        set(&mut c.audit.buffer, &self.audit_buffer);
        set(&mut c.shutdown.drain_secs, &self.shutdown_drain_secs);
        set(&mut c.shutdown.timeout_secs, &self.shutdown_timeout_secs);
        if self.jwks_file.is_some() {
            c.tokens.jwks_file = self.jwks_file.clone();
        }
        if self.token_issuer.is_some() {
            c.tokens.issuer = self.token_issuer.clone();
        }
        if !self.token_audience.is_empty() {
            c.tokens.audiences = self.token_audience.clone();
        }
        set(&mut c.tokens.subject_claim, &self.token_subject_claim);
        set(&mut c.tokens.roles_claim, &self.token_roles_claim);
        set(
            &mut c.tokens.capabilities_claim,
            &self.token_capabilities_claim,
        );
        set(&mut c.tokens.leeway_secs, &self.token_leeway_secs);
        set(&mut c.tokens.required, &self.require_token);
        set(&mut c.tokens.reload_secs, &self.jwks_reload_secs);
        c.validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(c)
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
        Command::Serve(args) => serve(*args).await,
        Command::Check(args) => check(args).await,
        Command::Plan(args) => plan(args).await,
        Command::Validate(args) => validate(args),
        Command::Test(args) => test(args),
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let config = args.config()?;
    crate::telemetry::init_logging(&config.log.level, config.log.format == LogFormat::Json);
    crate::daemon::run(config).await
}

fn parse_dialect(name: &str) -> Result<crate::filter::sql::Dialect, String> {
    crate::server::convert::dialect(name).map_err(|r| r.message)
}

fn read_json_arg(what: &str, text: &str) -> Result<serde_json::Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--{what}: cannot read {path}"))?,
        None => text.to_string(),
    };
    serde_json::from_str(&text).with_context(|| format!("--{what} is not valid JSON"))
}

/// The request the flags describe, and the token in `--request` if any.
fn check_request_from(args: &CheckArgs) -> Result<(CheckRequest, String)> {
    if let Some(request) = &args.request {
        let body: json::CheckBody = serde_json::from_value(read_json_arg("request", request)?)
            .context(
                "--request does not match {principal, resources: [{resource, actions}], context}",
            )?;
        let call = body.into_call();
        return Ok((call.request, call.token));
    }
    let principal: Principal = match &args.principal {
        Some(p) => serde_json::from_value::<json::PrincipalBody>(read_json_arg("principal", p)?)
            .context("--principal: expected {id, roles, capabilities, scopes, client_id, attr}")?
            .into(),
        None if args.token.is_some() => Principal::default(),
        None => bail!("--principal, --token or --request is required"),
    };
    let resource = match &args.resource {
        Some(r) => serde_json::from_value::<json::ResourceBody>(read_json_arg("resource", r)?)
            .context("--resource: expected {kind, id, attr}")?,
        None => bail!("--resource (or --request) is required"),
    };
    let resource = Resource {
        kind: resource.kind,
        id: resource.id,
        attr: resource.attr,
    };
    if args.action.is_empty() {
        bail!("at least one --action is required");
    }
    let request = CheckRequest {
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
    };
    Ok((request, String::new()))
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
    let (request, token) = check_request_from(&args)?;
    let mut message = to_proto(&request);
    message.token = token;
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
            serde_json::to_string_pretty(&crate::server::json::check_response_json(&response))?
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
        Some(p) => serde_json::from_value::<json::PrincipalBody>(read_json_arg("principal", p)?)
            .context("--principal: expected {id, roles, capabilities, scopes, client_id, attr}")?
            .into(),
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
    let sql = args.sql.map(|d| proto::SqlRequest {
        dialect: crate::server::convert::dialect_to_proto(d) as i32,
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
            Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn reload_flags() {
        let defaults = serve_args(&[]).config().unwrap();
        assert!(defaults.reload.watch);
        assert_eq!(defaults.reload.debounce_ms, 200);
        assert_eq!(defaults.reload.poll_secs, 30);
        assert!(!serve_args(&["--no-watch"]).config().unwrap().reload.watch);
        assert!(
            serve_args(&["--no-watch", "--watch"])
                .config()
                .unwrap()
                .reload
                .watch
        );
        assert!(
            !serve_args(&["--watch", "--no-watch"])
                .config()
                .unwrap()
                .reload
                .watch
        );
        let tuned = serve_args(&["--reload-debounce-ms", "50", "--reload-poll-secs", "0"])
            .config()
            .unwrap();
        assert_eq!((tuned.reload.debounce_ms, tuned.reload.poll_secs), (50, 0));
        assert!(
            defaults.reload.require_tests,
            "the reload gate is on by default"
        );
        let ungated = serve_args(&["--reload-require-tests=false"])
            .config()
            .unwrap();
        assert!(!ungated.reload.require_tests);
        let gated = serve_args(&["--reload-require-tests"]).config().unwrap();
        assert!(gated.reload.require_tests);
    }

    #[test]
    fn the_subject_claim_flag() {
        assert_eq!(
            serve_args(&[]).config().unwrap().tokens.subject_claim,
            "sub"
        );
        let c = serve_args(&["--token-subject-claim", "ext.uid"])
            .config()
            .unwrap();
        assert_eq!(c.tokens.subject_claim, "ext.uid");
    }

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("verdict.yaml");
        std::fs::write(
            &file,
            "listen: 0.0.0.0:6000
limits: {max_resources: 7, max_actions: 8}
audit: {enabled: true}
",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let c = serve_args(&[
            "--config",
            path,
            "--max-actions",
            "9",
            "--metrics-listen",
            "127.0.0.1:9464",
            "--audit=false",
        ])
        .config()
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:6000", "from the file");
        assert_eq!(c.limits.max_resources, 7, "from the file");
        assert_eq!(c.limits.max_actions, 9, "the flag wins");
        assert_eq!(c.limits.max_attr_depth, 16, "the default");
        assert_eq!(c.metrics.listen.0.unwrap().port(), 9464);
        assert!(!c.audit.enabled, "--audit=false overrides the file");
        assert!(serve_args(&["--audit"]).config().unwrap().audit.enabled);
        let err = serve_args(&["--tls-key", "k.pem"])
            .config()
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.cert and tls.key go together"), "{err}");
        std::fs::write(&file, "listen: [oops\n").unwrap();
        let err = serve_args(&["--config", path])
            .config()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid configuration") && err.contains("verdict.yaml"),
            "{err}"
        );
    }
}
