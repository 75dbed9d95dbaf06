//! Protobuf <-> engine types. Converted requests go through [`super::validate`], so the engine only
//! ever sees well-formed requests; every problem is an INVALID_ARGUMENT naming the field.

use std::collections::HashMap;

use prost_types::value::Kind;
use serde_json::Value as Json;
use tonic::Status;

use super::proto;
use crate::engine::{Decision, ResourceDecisions};
use crate::filter::sql::{Dialect, SqlFilter};
use crate::filter::{CmpOp, Filter};
use crate::plan::{Plan, PlanRequest};
use crate::policy::Effect;
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};

/// Request limits enforced before deciding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_resources: usize,
    pub max_actions: usize,
    /// Maximum nesting of attribute values (objects and lists).
    pub max_attr_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_resources: 1000,
            max_actions: 100,
            max_attr_depth: 16,
        }
    }
}

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message.into())
}

/// protobuf Struct -> JSON object (None -> empty object). Nulls and NaN become JSON null, which the
/// engine treats as absent.
pub fn struct_to_json(
    s: Option<prost_types::Struct>,
    field: &dyn Fn() -> String,
    max_depth: usize,
) -> Result<Json, Status> {
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
) -> Result<Json, Status> {
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

pub fn principal(p: Option<proto::Principal>, limits: &Limits) -> Result<Principal, Status> {
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

/// protobuf -> engine request, then the same validation the HTTP/JSON API applies.
pub fn check_request(r: proto::CheckRequest, limits: &Limits) -> Result<CheckRequest, Status> {
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
    super::validate::check_request(&request, limits).map_err(invalid)?;
    Ok(request)
}

pub fn action_decision(d: &Decision) -> proto::ActionDecision {
    proto::ActionDecision {
        effect: match d.effect {
            Effect::Allow => proto::Effect::Allow,
            Effect::Deny => proto::Effect::Deny,
        } as i32,
        policy: d.policy.to_string(),
        rule: d.rule.to_string(),
        reason: d.reason.to_string(),
    }
}

pub fn check_response(
    request_id: String,
    version: &str,
    results: &[ResourceDecisions],
) -> proto::CheckResponse {
    proto::CheckResponse {
        request_id,
        policy_version: version.to_string(),
        results: results
            .iter()
            .map(|r| proto::ResourceResult {
                resource: Some(proto::ResourceIdentity {
                    kind: r.kind.clone(),
                    id: r.id.clone(),
                }),
                actions: r
                    .actions
                    .iter()
                    .map(|(a, d)| (a.clone(), action_decision(d)))
                    .collect::<HashMap<_, _>>(),
            })
            .collect(),
        token_error: String::new(),
    }
}

pub fn plan_request(r: proto::PlanFilterRequest, limits: &Limits) -> Result<PlanRequest, Status> {
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
    super::validate::plan_request(&request, limits).map_err(invalid)?;
    Ok(request)
}

/// The SQL rendering asked for, if any: dialect and columns.
pub fn sql_request(
    sql: &Option<proto::SqlRequest>,
) -> Result<Option<super::authority::SqlSpec>, Status> {
    match sql {
        None => Ok(None),
        Some(s) => match proto::SqlDialect::try_from(s.dialect) {
            Ok(proto::SqlDialect::Postgres) => Ok(Some((Dialect::Postgres, s.columns.clone()))),
            Ok(proto::SqlDialect::Sqlite) => Ok(Some((Dialect::Sqlite, s.columns.clone()))),
            _ => Err(invalid(
                "sql.dialect must be SQL_DIALECT_POSTGRES or SQL_DIALECT_SQLITE",
            )),
        },
    }
}

pub fn plan_response(p: &super::authority::Planned) -> proto::PlanFilterResponse {
    proto::PlanFilterResponse {
        request_id: p.request_id.clone(),
        policy_version: p.policy_version.clone(),
        kind: plan_kind(&p.plan) as i32,
        filter: match &p.plan {
            Plan::Conditional(f) => Some(filter(f)),
            _ => None,
        },
        sql: p.sql.as_ref().map(sql_filter),
        token_error: p.token_error.clone().unwrap_or_default(),
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
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("resources[0].resource.attr"),
            "{}",
            err.message()
        );
    }
}
