//! `verdict check` and `verdict plan`: gRPC clients of a running daemon, for humans and scripts.

use anyhow::{bail, Context as _, Result};
use clap::Args;

use super::read_json_arg;
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};
use crate::server::convert::{self, to_proto};
use crate::server::{json, proto};

/// What `verdict check --help` ends with.
const CHECK_EXIT_CODES: &str = "\
Exit codes:
  0  the daemon answered (with --exit-code: and allowed every action)
  1  an error: bad flags or JSON, the daemon unreachable, the request refused (INVALID_ARGUMENT...)
  2  a usage error (unknown flag, missing value)
  3  with --exit-code: at least one action denied (a rejected token denies every action)";

/// `check` with `--exit-code` when some action was denied.
pub const DENIED: u8 = 3;

#[derive(Args)]
#[command(after_help = CHECK_EXIT_CODES)]
pub struct CheckArgs {
    /// The daemon's gRPC address: host:port (or http://host:port).
    #[arg(long, env = "VERDICT_SERVER", default_value = "127.0.0.1:50051")]
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
    /// Ask for each decision's trace and print it: the rules considered, in evaluation order
    /// (deny rules, the scope gate, allow rules), with file:line and what came of each.
    #[arg(long)]
    pub explain: bool,
    /// Exit with 3 if any action is denied (0 only if every one is allowed), for scripts:
    /// `verdict check --exit-code ... && deploy`.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Args)]
pub struct PlanArgs {
    /// The daemon's gRPC address: host:port (or http://host:port).
    #[arg(long, env = "VERDICT_SERVER", default_value = "127.0.0.1:50051")]
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

/// A client of the daemon at `server`: `host:port`, or a URL (`http://host:port`).
async fn connect(
    server: &str,
) -> Result<proto::authorizer_client::AuthorizerClient<tonic::transport::Channel>> {
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    proto::authorizer_client::AuthorizerClient::connect(url)
        .await
        .with_context(|| format!("cannot connect to {server}"))
}

fn parse_dialect(name: &str) -> Result<crate::filter::sql::Dialect, String> {
    convert::dialect(name).map_err(|r| r.message)
}

/// The request the flags describe, the token in `--request` if any, and whether `--request`
/// asks for an explanation.
fn check_request_from(args: &CheckArgs) -> Result<(CheckRequest, String, bool)> {
    if let Some(request) = &args.request {
        let body: json::CheckBody = serde_json::from_value(read_json_arg("request", request)?)
            .context(
                "--request does not match {principal, resources: [{resource, actions}], context}",
            )?;
        let call = body.into_call();
        return Ok((call.request, call.token, call.explain));
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
    Ok((request, String::new(), false))
}

/// Asks for the decisions and prints them; the exit code as `--help` lists it.
pub async fn check(args: CheckArgs) -> Result<std::process::ExitCode> {
    let (request, token, explain) = check_request_from(&args)?;
    let mut message = to_proto(&request);
    message.token = token;
    message.explain = explain || args.explain;
    if let Some(token) = &args.token {
        // A --request principal stays: the daemon refuses a token next to a principal.
        message.token = token.clone();
    }
    let mut client = connect(&args.server).await?;
    let response = client
        .check(message)
        .await
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    // Every action asked must be answered with an allow; an action without an answer is not one.
    let all_allowed = request
        .resources
        .iter()
        .zip(
            response
                .results
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        )
        .all(|(check, result)| {
            check.actions.iter().all(|action| {
                result
                    .and_then(|r| r.actions.get(action))
                    .is_some_and(|d| d.effect == proto::Effect::Allow as i32)
            })
        });
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::server::json::check_response_json(&response))?
        );
    } else {
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
                        print_trace(&d.trace);
                    }
                    None => println!("{who} {action}: (no answer)"),
                }
            }
        }
    }
    Ok(if args.exit_code && !all_allowed {
        std::process::ExitCode::from(DENIED)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

pub async fn plan(args: PlanArgs) -> Result<()> {
    let principal: Principal = match &args.principal {
        Some(p) => serde_json::from_value::<json::PrincipalBody>(read_json_arg("principal", p)?)
            .context("--principal: expected {id, roles, capabilities, scopes, client_id, attr}")?
            .into(),
        None => Principal::default(),
    };
    let object = |what: &str, text: &Option<String>| -> Result<Option<prost_types::Struct>> {
        match text {
            None => Ok(None),
            Some(t) => convert::json_to_struct(&read_json_arg(what, t)?)
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
        dialect: convert::dialect_to_proto(d) as i32,
        columns: columns.clone(),
    });
    let request = proto::PlanFilterRequest {
        request_id: String::new(),
        principal: match args.token {
            Some(_) => None,
            None => Some(convert::principal_to_proto(&principal)),
        },
        resource_kind: args.kind.clone(),
        action: args.action.clone(),
        context: object("context", &args.context)?,
        known_attr: object("known-attr", &args.known_attr)?,
        sql,
        token: args.token.clone().unwrap_or_default(),
    };
    let mut client = connect(&args.server).await?;
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

/// An explained decision's steps, one a line, numbered in evaluation order:
/// `  2. allow physician/clinical-care (roles.yaml:12): held  <- decided`; a default deny ends
/// with a line saying so.
fn print_trace(trace: &[proto::TraceStep]) {
    for (n, step) in trace.iter().enumerate() {
        println!("  {}. {}", n + 1, trace_line(step));
    }
    if !trace.is_empty() && !trace.iter().any(|s| s.decided) {
        println!("  no rule allowed: denied by default");
    }
}

/// One trace step for humans.
fn trace_line(step: &proto::TraceStep) -> String {
    use proto::{TraceOutcome as O, TraceStage as S};
    let stage = S::try_from(step.stage).unwrap_or(S::Unspecified);
    let outcome = O::try_from(step.outcome).unwrap_or(O::Unspecified);
    let at = match (step.file.as_str(), step.line) {
        ("", _) => String::new(),
        (file, 0) => format!(" ({file})"),
        (file, line) => format!(" ({file}:{line})"),
    };
    let what = match stage {
        S::Schema => "schema".to_string(),
        S::ScopeGate => format!("scope gate \"{}\"{at}", step.policy),
        S::Deny | S::Allow | S::Unspecified => {
            let effect = if stage == S::Deny { "deny " } else { "allow" };
            format!("{effect} {}/{}{at}", step.policy, step.rule)
        }
    };
    let result = match outcome {
        O::PrincipalNotMatched => "principal selector did not match".to_string(),
        O::ResourceNotMatched => "resource selector did not match".to_string(),
        O::Held => "held".to_string(),
        O::NotHeld => "condition did not hold".to_string(),
        O::Error => format!("error: {}", step.error),
        O::ScopeCovered => "a granted scope covers the request".to_string(),
        O::ScopeNotCovered => "no granted scope covers the request".to_string(),
        O::SchemaViolated => "the request violates the schema".to_string(),
        O::Unspecified => "(unknown outcome)".to_string(),
    };
    let decided = if step.decided { "  <- decided" } else { "" };
    format!("{what}: {result}{decided}")
}

fn value_json(v: &prost_types::Value) -> serde_json::Value {
    convert::value_to_json_unbounded(v)
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
