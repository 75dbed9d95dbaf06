//! The HTTP/JSON API's wire format: request bodies as the wire spells them, decoded into
//! [`CheckCall`]s and [`PlanCall`]s for the [`Authority`](super::authority::Authority), and its
//! answers encoded back. The JSON follows the protobuf JSON mapping of `proto/verdict/v1` (field
//! names as in the proto, enums by name), so answers read the same as grpcurl's.
//!
//! The bodies are types of their own, not the engine's: what the wire accepts can change without
//! touching `request`, and the engine's types carry no serde for the wire.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::authority::{CheckCall, Checked, PlanCall, Planned, Refusal};
use super::{convert, proto};
use crate::plan::{Plan, PlanRequest};
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};
use crate::store::ReloadStatus;

/// `Principal`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrincipalBody {
    pub id: String,
    pub roles: Vec<String>,
    pub capabilities: Vec<String>,
    pub scopes: Vec<String>,
    pub client_id: String,
    pub attr: Json,
}

impl From<PrincipalBody> for Principal {
    fn from(p: PrincipalBody) -> Principal {
        Principal {
            id: p.id,
            roles: p.roles,
            capabilities: p.capabilities,
            scopes: p.scopes,
            client_id: p.client_id,
            attr: p.attr,
        }
    }
}

/// `Resource`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceBody {
    pub kind: String,
    pub id: String,
    pub attr: Json,
}

/// `ResourceCheck`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceCheckBody {
    pub resource: ResourceBody,
    pub actions: Vec<String>,
}

/// `CheckRequest` (`POST /v1/check`, and `verdict check --request`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckBody {
    pub request_id: String,
    pub principal: PrincipalBody,
    pub resources: Vec<ResourceCheckBody>,
    pub context: Json,
    /// A JWT to verify instead of `principal`.
    pub token: Option<String>,
}

impl CheckBody {
    /// The Check this body asks for.
    pub fn into_call(self) -> CheckCall {
        CheckCall {
            request: CheckRequest {
                request_id: self.request_id,
                principal: self.principal.into(),
                resources: self
                    .resources
                    .into_iter()
                    .map(|c| ResourceCheck {
                        resource: Resource {
                            kind: c.resource.kind,
                            id: c.resource.id,
                            attr: c.resource.attr,
                        },
                        actions: c.actions,
                    })
                    .collect(),
                context: self.context,
            },
            token: self.token.unwrap_or_default(),
        }
    }
}

/// `PlanFilterRequest` (`POST /v1/plan`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    #[serde(default)]
    pub request_id: String,
    #[serde(default)]
    pub principal: PrincipalBody,
    /// A JWT to verify instead of `principal`.
    #[serde(default)]
    pub token: Option<String>,
    pub resource_kind: String,
    pub action: String,
    #[serde(default)]
    pub context: Json,
    #[serde(default)]
    pub known_attr: Json,
    #[serde(default)]
    pub sql: Option<SqlBody>,
}

/// `SqlRequest`: the dialect by enum name (`SQL_DIALECT_POSTGRES`) or alias (`postgres`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlBody {
    pub dialect: String,
    #[serde(default)]
    pub columns: HashMap<String, String>,
}

impl PlanBody {
    /// The PlanFilter this body asks for; refused if it names an unknown SQL dialect.
    pub fn into_call(self) -> Result<PlanCall, Refusal> {
        let sql = match self.sql {
            None => None,
            Some(s) => Some((convert::dialect(&s.dialect)?, s.columns)),
        };
        Ok(PlanCall {
            request_id: self.request_id,
            request: PlanRequest {
                principal: self.principal.into(),
                kind: self.resource_kind,
                action: self.action,
                context: self.context,
                known_attr: self.known_attr,
            },
            token: self.token.unwrap_or_default(),
            sql,
        })
    }
}

/// Decodes a body, refusing what does not fit `T` with the decoder's message.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::invalid(format!("request body: {e}")))
}

/// `CheckResponse`.
pub fn check_json(answer: Checked) -> Json {
    check_response_json(&convert::check_response(answer))
}

/// A `CheckResponse` (also what `verdict check --json` prints). `token_error` appears only when
/// set.
pub fn check_response_json(response: &proto::CheckResponse) -> Json {
    let mut out = json!({
        "request_id": response.request_id,
        "policy_version": response.policy_version,
        "results": response.results.iter().map(|r| json!({
            "resource": r.resource.as_ref().map(|i| json!({"kind": i.kind, "id": i.id})),
            "actions": r.actions.iter().map(|(a, d)| (a.clone(), json!({
                "effect": proto::Effect::try_from(d.effect).map(|e| e.as_str_name()).unwrap_or("EFFECT_UNSPECIFIED"),
                "policy": d.policy,
                "rule": d.rule,
                "reason": d.reason,
            }))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    });
    if !response.token_error.is_empty() {
        out["token_error"] = json!(response.token_error);
    }
    out
}

/// `PlanFilterResponse`.
pub fn plan_json(p: Planned) -> Json {
    let mut out = serde_json::Map::new();
    out.insert("request_id".into(), json!(p.request_id));
    out.insert("policy_version".into(), json!(p.policy_version));
    out.insert(
        "kind".into(),
        json!(convert::plan_kind(&p.plan).as_str_name()),
    );
    if let Plan::Conditional(f) = &p.plan {
        out.insert("filter".into(), filter_json(&convert::filter(f)));
    }
    if let Some(sql) = &p.sql {
        out.insert(
            "sql".into(),
            json!({"where": sql.where_clause, "params": sql.params}),
        );
    }
    if let Some(e) = &p.token_error {
        out.insert("token_error".into(), json!(e));
    }
    if let Some(v) = &p.schema_violation {
        out.insert("schema_violation".into(), json!(v));
    }
    Json::Object(out)
}

/// `StatusResponse` (`GET /v1/status`): timestamps in RFC 3339, 64-bit counts as strings (the
/// protobuf JSON mapping), the error fields only when there was an error.
pub fn status_json(status: &ReloadStatus) -> Json {
    let response = convert::status_response(status);
    let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(ToString::to_string);
    let mut out = json!({
        "active_version": response.active_version,
        "loaded_at": time(&response.loaded_at),
        "rule_count": response.rule_count.to_string(),
        "policy_count": response.policy_count.to_string(),
        "reloads_ok": response.reloads_ok.to_string(),
        "reloads_failed": response.reloads_failed.to_string(),
    });
    if !response.last_error.is_empty() {
        out["last_error"] = json!(response.last_error);
        out["last_error_at"] = json!(time(&response.last_error_at));
    }
    if !response.failing_tests.is_empty() {
        out["failing_tests"] = json!(response.failing_tests);
    }
    out
}

/// A filter node (empty fields left out).
pub fn filter_json(f: &proto::Filter) -> Json {
    let mut out = serde_json::Map::new();
    let op = proto::FilterOp::try_from(f.op)
        .map(|o| o.as_str_name())
        .unwrap_or("FILTER_OP_UNSPECIFIED");
    out.insert("op".into(), json!(op));
    if !f.attribute.is_empty() {
        out.insert("attribute".into(), json!(f.attribute));
    }
    if let Some(v) = &f.value {
        out.insert("value".into(), convert::value_to_json_unbounded(v));
    }
    if !f.values.is_empty() {
        out.insert(
            "values".into(),
            Json::Array(
                f.values
                    .iter()
                    .map(convert::value_to_json_unbounded)
                    .collect(),
            ),
        );
    }
    if !f.operands.is_empty() {
        out.insert(
            "operands".into(),
            Json::Array(f.operands.iter().map(filter_json).collect()),
        );
    }
    if !f.policy.is_empty() {
        out.insert("policy".into(), json!(f.policy));
        out.insert("rule".into(), json!(f.rule));
    }
    Json::Object(out)
}
