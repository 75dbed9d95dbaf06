//! Protobuf <-> engine types: requests into [`CheckCall`]s and [`PlanCall`]s for the
//! [`Authority`](super::authority::Authority), its answers back into responses; and for clients
//! (the CLI, tests, benchmarks), engine requests into protobuf ([`to_proto`]). A problem met
//! while converting is an INVALID_ARGUMENT naming the field; the shape of what converted is the
//! authority's to check ([`super::validate`]), the same for every transport.

use std::collections::HashMap;

use prost_types::value::Kind;
use serde_json::Value as Json;

use super::authority::Status;
use super::authority::{CheckCall, Checked, PlanCall, Planned};
use super::proto;
use super::validate::{Limits, Refusal};
use crate::engine::{Decision, Outcome, Stage, Step};
use crate::filter::sql::{Dialect, SqlFilter};
use crate::filter::{CmpOp, Filter};
use crate::plan::{Plan, PlanRequest};
use crate::policy::Effect;
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};
use crate::token::KeysStatus;

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::invalid(message)
}

/// protobuf Struct -> JSON object (None -> empty object). Nulls and NaN become JSON null, which the
/// engine treats as absent.
pub fn struct_to_json(
    s: Option<prost_types::Struct>,
    field: &dyn Fn() -> String,
    max_depth: usize,
) -> Result<Json, Refusal> {
    let mut map = serde_json::Map::new();
    if let Some(s) = s {
        // Keys and strings move from the message: nothing is copied.
        for (k, v) in s.fields {
            map.insert(k, value_to_json(v, field, 1, max_depth)?);
        }
    }
    Ok(Json::Object(map))
}

/// `field` names the attribute bag in an error; it is only called for one.
fn value_to_json(
    v: prost_types::Value,
    field: &dyn Fn() -> String,
    depth: usize,
    max_depth: usize,
) -> Result<Json, Refusal> {
    if depth > max_depth {
        return Err(invalid(format!(
            "{}: attributes nest deeper than {max_depth} levels",
            field()
        )));
    }
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(n)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::StructValue(s)) => {
            let mut map = serde_json::Map::new();
            for (k, v) in s.fields {
                map.insert(k, value_to_json(v, field, depth + 1, max_depth)?);
            }
            Json::Object(map)
        }
        Some(Kind::ListValue(l)) => Json::Array(
            l.values
                .into_iter()
                .map(|v| value_to_json(v, field, depth + 1, max_depth))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// protobuf Value -> JSON, without a depth limit (for printing trusted responses).
pub fn value_to_json_unbounded(v: &prost_types::Value) -> Json {
    value_to_json(v.clone(), &|| "value".to_string(), 0, usize::MAX).unwrap_or(Json::Null)
}

/// JSON -> protobuf Value (for filters and SQL parameters).
pub fn json_to_value(j: &Json) -> prost_types::Value {
    let kind = match j {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Json::Object(m) => Kind::StructValue(prost_types::Struct {
            fields: m
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn principal(p: Option<proto::Principal>, limits: &Limits) -> Result<Principal, Refusal> {
    let p = p.unwrap_or_default();
    Ok(Principal {
        attr: struct_to_json(
            p.attr,
            &|| "principal.attr".to_string(),
            limits.max_attr_depth,
        )?,
        id: p.id,
        roles: p.roles,
        capabilities: p.capabilities,
        scopes: p.scopes,
        client_id: p.client_id,
    })
}

/// A Check off the wire, in the engine's types (attributes nested deeper than the limit are
/// refused while converting, before they are copied).
pub fn check_call(r: proto::CheckRequest, limits: &Limits) -> Result<CheckCall, Refusal> {
    if r.resources.len() > limits.max_resources {
        return Err(invalid(super::validate::too_many_resources(
            r.resources.len(),
            limits,
        )));
    }
    let mut resources = Vec::with_capacity(r.resources.len());
    for (i, check) in r.resources.into_iter().enumerate() {
        let Some(resource) = check.resource else {
            return Err(invalid(format!("resources[{i}].resource is required")));
        };
        let field = || format!("resources[{i}].resource.attr");
        resources.push(ResourceCheck {
            resource: Resource {
                attr: struct_to_json(resource.attr, &field, limits.max_attr_depth)?,
                kind: resource.kind,
                id: resource.id,
            },
            actions: check.actions,
        });
    }
    let request = CheckRequest {
        principal: principal(r.principal, limits)?,
        context: struct_to_json(r.context, &|| "context".to_string(), limits.max_attr_depth)?,
        request_id: r.request_id,
        resources,
    };
    Ok(CheckCall {
        request,
        token: r.token,
        principal_type: None,
        explain: r.explain,
    })
}

/// A decision on the wire, with its trace (empty without explain).
pub fn action_decision(d: &Decision, trace: &[Step]) -> proto::ActionDecision {
    proto::ActionDecision {
        effect: match d.effect {
            Effect::Allow => proto::Effect::Allow,
            Effect::Deny => proto::Effect::Deny,
        } as i32,
        policy: d.policy.to_string(),
        rule: d.rule.to_string(),
        reason: d.reason.to_string(),
        trace: trace.iter().map(trace_step).collect(),
    }
}

/// One step of an explained decision.
pub fn trace_step(step: &Step) -> proto::TraceStep {
    let (outcome, error) = match &step.outcome {
        Outcome::PrincipalNotMatched => (proto::TraceOutcome::PrincipalNotMatched, ""),
        Outcome::ResourceNotMatched => (proto::TraceOutcome::ResourceNotMatched, ""),
        Outcome::Held => (proto::TraceOutcome::Held, ""),
        Outcome::NotHeld => (proto::TraceOutcome::NotHeld, ""),
        Outcome::Error(error) => (proto::TraceOutcome::Error, &**error),
        Outcome::ScopeCovered => (proto::TraceOutcome::ScopeCovered, ""),
        Outcome::ScopeNotCovered => (proto::TraceOutcome::ScopeNotCovered, ""),
        Outcome::SchemaViolated => (proto::TraceOutcome::SchemaViolated, ""),
    };
    proto::TraceStep {
        stage: match step.stage {
            Stage::Schema => proto::TraceStage::Schema,
            Stage::Deny => proto::TraceStage::Deny,
            Stage::ScopeGate => proto::TraceStage::ScopeGate,
            Stage::Allow => proto::TraceStage::Allow,
        } as i32,
        policy: step.policy.to_string(),
        rule: step.rule.to_string(),
        file: step.file.clone(),
        line: u32::try_from(step.line).unwrap_or(u32::MAX),
        outcome: outcome as i32,
        error: error.to_string(),
        decided: step.decided,
    }
}

pub fn check_response(answer: Checked) -> proto::CheckResponse {
    proto::CheckResponse {
        request_id: answer.request_id,
        policy_version: answer.policy_version,
        results: answer
            .results
            .iter()
            .map(|r| proto::ResourceResult {
                resource: Some(proto::ResourceIdentity {
                    kind: r.kind.clone(),
                    id: r.id.clone(),
                }),
                actions: r
                    .actions
                    .iter()
                    .enumerate()
                    .map(|(i, (a, d))| (a.clone(), action_decision(d, r.trace(i))))
                    .collect::<HashMap<_, _>>(),
            })
            .collect(),
        token_error: answer.token_error.unwrap_or_default(),
    }
}

/// A PlanFilter off the wire, in the engine's types.
pub fn plan_call(r: proto::PlanFilterRequest, limits: &Limits) -> Result<PlanCall, Refusal> {
    let sql = match r.sql {
        None => None,
        Some(s) => {
            let name = proto::SqlDialect::try_from(s.dialect)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| s.dialect.to_string());
            Some((dialect(&name)?, s.columns))
        }
    };
    let request = PlanRequest {
        principal: principal(r.principal, limits)?,
        kind: r.resource_kind,
        action: r.action,
        context: struct_to_json(r.context, &|| "context".to_string(), limits.max_attr_depth)?,
        known_attr: struct_to_json(
            r.known_attr,
            &|| "known_attr".to_string(),
            limits.max_attr_depth,
        )?,
    };
    Ok(PlanCall {
        request_id: r.request_id,
        request,
        token: r.token,
        sql,
    })
}

/// The SQL dialect a request names, by its protobuf enum name (`SQL_DIALECT_POSTGRES`, what the
/// gRPC field and the HTTP/JSON API carry) or its short alias (`postgres`, `sqlite`). The one
/// place dialect names are read: gRPC, HTTP and `verdict plan --sql` all come through here.
pub fn dialect(name: &str) -> Result<Dialect, Refusal> {
    match name {
        "SQL_DIALECT_POSTGRES" | "postgres" => Ok(Dialect::Postgres),
        "SQL_DIALECT_SQLITE" | "sqlite" => Ok(Dialect::Sqlite),
        other => Err(invalid(format!(
            "sql.dialect \"{other}\" must be SQL_DIALECT_POSTGRES (postgres) or \
             SQL_DIALECT_SQLITE (sqlite)"
        ))),
    }
}

/// The protobuf enum of a dialect (for clients).
pub fn dialect_to_proto(dialect: Dialect) -> proto::SqlDialect {
    match dialect {
        Dialect::Postgres => proto::SqlDialect::Postgres,
        Dialect::Sqlite => proto::SqlDialect::Sqlite,
    }
}

pub fn plan_response(p: Planned) -> proto::PlanFilterResponse {
    proto::PlanFilterResponse {
        kind: plan_kind(&p.plan) as i32,
        filter: match &p.plan {
            Plan::Conditional(f) => Some(filter(f)),
            _ => None,
        },
        sql: p.sql.as_ref().map(sql_filter),
        request_id: p.request_id,
        policy_version: p.policy_version,
        token_error: p.token_error.unwrap_or_default(),
        schema_violation: p.schema_violation.unwrap_or_default(),
    }
}

pub fn status_response(status: &Status) -> proto::StatusResponse {
    let Status {
        policies,
        token_keys,
    } = status;
    let status = policies;
    proto::StatusResponse {
        active_version: status.active_version.clone(),
        loaded_at: Some(status.loaded_at.into()),
        rule_count: status.rule_count as u64,
        policy_count: status.policy_count as u64,
        last_error: status.last_error.clone().unwrap_or_default(),
        last_error_at: status.last_error_at.map(Into::into),
        reloads_ok: status.reloads_ok,
        reloads_failed: status.reloads_failed,
        failing_tests: status.failing_tests.clone(),
        token_keys: token_keys.as_deref().map(token_keys_status),
    }
}

fn token_keys_status(keys: &KeysStatus) -> proto::TokenKeysStatus {
    proto::TokenKeysStatus {
        source: keys.source.clone(),
        jwks_uri: keys.jwks_uri.clone(),
        key_ids: keys.key_ids.clone(),
        last_success_at: keys.last_success_at.map(Into::into),
        last_error: keys.last_error.clone().unwrap_or_default(),
        last_error_at: keys.last_error_at.map(Into::into),
        refreshes_ok: keys.refreshes_ok,
        refreshes_failed: keys.refreshes_failed,
        next_refresh_at: keys.next_refresh_at.map(Into::into),
    }
}

pub fn plan_kind(plan: &Plan) -> proto::PlanKind {
    match plan {
        Plan::AlwaysAllowed => proto::PlanKind::AlwaysAllowed,
        Plan::AlwaysDenied => proto::PlanKind::AlwaysDenied,
        Plan::Conditional(_) => proto::PlanKind::Conditional,
    }
}

/// A filter tree in protobuf. `True` is an `and` with no operands, `False` an `or` with none.
pub fn filter(f: &Filter) -> proto::Filter {
    use proto::FilterOp as Op;
    let node = |op: Op| proto::Filter {
        op: op as i32,
        ..Default::default()
    };
    match f {
        Filter::True => node(Op::And),
        Filter::False => node(Op::Or),
        Filter::Compare {
            op,
            attribute,
            value,
        } => proto::Filter {
            op: match op {
                CmpOp::Eq => Op::Eq,
                CmpOp::Ne => Op::Ne,
                CmpOp::Lt => Op::Lt,
                CmpOp::Le => Op::Le,
                CmpOp::Gt => Op::Gt,
                CmpOp::Ge => Op::Ge,
            } as i32,
            attribute: attribute.clone(),
            value: Some(json_to_value(value)),
            ..Default::default()
        },
        Filter::In { attribute, values } => proto::Filter {
            op: Op::In as i32,
            attribute: attribute.clone(),
            values: values.iter().map(json_to_value).collect(),
            ..Default::default()
        },
        Filter::Contains { attribute, value } => proto::Filter {
            op: Op::Contains as i32,
            attribute: attribute.clone(),
            value: Some(json_to_value(value)),
            ..Default::default()
        },
        Filter::Exists { attribute } => proto::Filter {
            op: Op::Exists as i32,
            attribute: attribute.clone(),
            ..Default::default()
        },
        Filter::And(fs) | Filter::Or(fs) => proto::Filter {
            op: if matches!(f, Filter::And(_)) {
                Op::And
            } else {
                Op::Or
            } as i32,
            operands: fs.iter().map(filter).collect(),
            ..Default::default()
        },
        Filter::Not(x) => proto::Filter {
            op: Op::Not as i32,
            operands: vec![filter(x)],
            ..Default::default()
        },
        Filter::From {
            origin,
            filter: inner,
        } => {
            let mut node = filter(inner);
            if node.policy.is_empty() {
                node.policy = origin.policy.to_string();
                node.rule = origin.rule.to_string();
            }
            node
        }
    }
}

pub fn sql_filter(s: &SqlFilter) -> proto::SqlFilter {
    proto::SqlFilter {
        r#where: s.where_clause.clone(),
        params: s.params.iter().map(json_to_value).collect(),
    }
}

/// A JSON object as a protobuf Struct; `None` for anything else (null, absent).
pub fn json_to_struct(j: &Json) -> Option<prost_types::Struct> {
    match json_to_value(j).kind {
        Some(Kind::StructValue(s)) => Some(s),
        _ => None,
    }
}

/// The protobuf form of an engine principal (for clients).
pub fn principal_to_proto(p: &Principal) -> proto::Principal {
    proto::Principal {
        id: p.id.clone(),
        roles: p.roles.clone(),
        capabilities: p.capabilities.clone(),
        scopes: p.scopes.clone(),
        attr: json_to_struct(&p.attr),
        client_id: p.client_id.clone(),
    }
}

/// The protobuf form of an engine request (for clients: the CLI, tests and benchmarks).
pub fn to_proto(r: &CheckRequest) -> proto::CheckRequest {
    proto::CheckRequest {
        request_id: r.request_id.clone(),
        principal: Some(principal_to_proto(&r.principal)),
        resources: r
            .resources
            .iter()
            .map(|c| proto::ResourceCheck {
                resource: Some(proto::Resource {
                    kind: c.resource.kind.clone(),
                    id: c.resource.id.clone(),
                    attr: json_to_struct(&c.resource.attr),
                }),
                actions: c.actions.clone(),
            })
            .collect(),
        context: json_to_struct(&r.context),
        token: String::new(),
        explain: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: f64) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::NumberValue(n)),
        }
    }

    #[test]
    fn structs_convert_with_nulls_and_depth_limit() {
        let mut s = prost_types::Struct::default();
        s.fields.insert("amount".into(), num(100.0));
        s.fields.insert(
            "gone".into(),
            prost_types::Value {
                kind: Some(Kind::NullValue(0)),
            },
        );
        s.fields.insert("nan".into(), num(f64::NAN));
        let j = struct_to_json(Some(s), &|| "attr".to_string(), 4).unwrap();
        assert_eq!(j["amount"], serde_json::json!(100.0));
        assert!(j["gone"].is_null() && j["nan"].is_null());
        let mut deep = num(1.0);
        for _ in 0..5 {
            let mut inner = prost_types::Struct::default();
            inner.fields.insert("x".into(), deep);
            deep = prost_types::Value {
                kind: Some(Kind::StructValue(inner)),
            };
        }
        let mut outer = prost_types::Struct::default();
        outer.fields.insert("deep".into(), deep);
        let err = struct_to_json(Some(outer), &|| "resources[0].resource.attr".to_string(), 4)
            .unwrap_err();
        assert_eq!(err.code, tonic::Code::InvalidArgument);
        assert!(
            err.message.contains("resources[0].resource.attr"),
            "{}",
            err.message
        );
    }
}
