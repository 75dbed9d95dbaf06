//! The HTTP/JSON API's wire format: request bodies as the wire spells them, decoded into
//! [`CheckCall`]s and [`PlanCall`]s for the [`Authority`](super::authority::Authority), and its
//! answers encoded back. The JSON follows the protobuf JSON mapping of `proto/verdict/v1` (field
//! names as in the proto, enums by name), so answers read the same as grpcurl's.
//!
//! The bodies are types of their own, not the engine's: what the wire accepts can change without
//! touching `request`, and the engine's types carry no serde for the wire.
//!
//! Decoding is strict, so that Verdict and a gateway in front of it cannot read the same bytes
//! differently: a key given twice in one object (whichever spelling: `request_id` and
//! `requestId` are one field) is refused rather than the last one winning, and so is an integer
//! beyond ±(2^53 − 1), where JSON numbers stop being exact in the doubles Verdict compares
//! (9007199254740993 would equal 9007199254740992). Field names are accepted as the protobuf JSON
//! mapping allows: as in the proto (`resource_kind`) or lowerCamelCase (`resourceKind`).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::authority::Status;
use super::authority::{CheckCall, Checked, PlanCall, Planned};
use super::validate::Refusal;
use super::{convert, proto};
use crate::plan::{Plan, PlanRequest};
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};

/// `Principal`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrincipalBody {
    pub id: String,
    pub roles: Vec<String>,
    pub capabilities: Vec<String>,
    pub scopes: Vec<String>,
    #[serde(alias = "clientId")]
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
    #[serde(alias = "requestId")]
    pub request_id: String,
    pub principal: PrincipalBody,
    pub resources: Vec<ResourceCheckBody>,
    pub context: Json,
    /// A JWT to verify instead of `principal`.
    pub token: Option<String>,
    /// Return each decision's trace (`ActionDecision.trace`).
    pub explain: bool,
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
            principal_type: None,
            explain: self.explain,
        }
    }
}

/// `PlanFilterRequest` (`POST /v1/plan`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanBody {
    #[serde(default, alias = "requestId")]
    pub request_id: String,
    #[serde(default)]
    pub principal: PrincipalBody,
    /// A JWT to verify instead of `principal`.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(alias = "resourceKind")]
    pub resource_kind: String,
    pub action: String,
    #[serde(default)]
    pub context: Json,
    #[serde(default, alias = "knownAttr")]
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

/// Decodes a body strictly (see the module's doc), refusing what does not fit `T` with the
/// decoder's message.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Refusal> {
    let value = strict(body).map_err(|e| Refusal::invalid(format!("request body: {e}")))?;
    T::deserialize(value).map_err(|e| Refusal::invalid(format!("request body: {e}")))
}

/// The largest integer a JSON number holds exactly as the double Verdict compares it as.
pub const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Parses JSON into a value, refusing duplicate keys and inexact integers, naming where.
pub fn strict(body: &[u8]) -> Result<Json, serde_json::Error> {
    use serde::de::DeserializeSeed as _;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Strict { path: "" }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// A JSON value at `path` (`principal.attr.ids[3]`), read strictly.
struct Strict<'p> {
    path: &'p str,
}

impl Strict<'_> {
    fn at(&self) -> &str {
        if self.path.is_empty() {
            "the body"
        } else {
            self.path
        }
    }

    fn number<E: serde::de::Error>(
        &self,
        n: f64,
        shown: &dyn std::fmt::Display,
    ) -> Result<Json, E> {
        if n.fract() == 0.0 && n.abs() > MAX_EXACT_INTEGER {
            return Err(E::custom(format!(
                "{}: the integer {shown} is beyond ±(2^53 - 1), where JSON numbers stop being \
                 exact (it would compare equal to its neighbours); send it as a string",
                self.at()
            )));
        }
        Ok(serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number))
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Strict<'_> {
    type Value = Json;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Json, E> {
        self.number(v as f64, &v)?;
        Ok(Json::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Json, E> {
        self.number(v as f64, &v)?;
        Ok(Json::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
        self.number(v, &v)
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(Strict { path: &path })? {
                Some(item) => items.push(item),
                None => return Ok(Json::Array(items)),
            }
        }
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            // One field, two spellings (the protobuf JSON mapping's): the same duplicate.
            let twin = camel_twin(&key);
            if members.contains_key(&key) || twin.as_ref().is_some_and(|t| members.contains_key(t))
            {
                return Err(serde::de::Error::custom(format!(
                    "{path}: given twice; a key may appear once in an object"
                )));
            }
            let value = map.next_value_seed(Strict { path: &path })?;
            members.insert(key, value);
        }
        Ok(Json::Object(members))
    }
}

/// The other spelling of a wire field name the protobuf JSON mapping accepts (`request_id` and
/// `requestId`), for the names the bodies know; `None` for anything else (attributes are
/// the caller's names, taken as written).
fn camel_twin(key: &str) -> Option<String> {
    const PAIRS: [(&str, &str); 4] = [
        ("request_id", "requestId"),
        ("client_id", "clientId"),
        ("resource_kind", "resourceKind"),
        ("known_attr", "knownAttr"),
    ];
    PAIRS.iter().find_map(|(snake, camel)| {
        if key == *snake {
            Some(camel.to_string())
        } else if key == *camel {
            Some(snake.to_string())
        } else {
            None
        }
    })
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
            "actions": r.actions.iter().map(|(a, d)| (a.clone(), decision_json(d))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    });
    if !response.token_error.is_empty() {
        out["token_error"] = json!(response.token_error);
    }
    out
}

/// An `ActionDecision`, its empty fields left out (a default deny names no policy or rule).
fn decision_json(d: &proto::ActionDecision) -> Json {
    let mut out = serde_json::Map::new();
    let effect = proto::Effect::try_from(d.effect)
        .map(|e| e.as_str_name())
        .unwrap_or("EFFECT_UNSPECIFIED");
    out.insert("effect".into(), json!(effect));
    for (name, value) in [
        ("policy", &d.policy),
        ("rule", &d.rule),
        ("reason", &d.reason),
    ] {
        if !value.is_empty() {
            out.insert(name.into(), json!(value));
        }
    }
    if !d.trace.is_empty() {
        out.insert(
            "trace".into(),
            d.trace.iter().map(trace_step_json).collect(),
        );
    }
    Json::Object(out)
}

/// A `TraceStep`, enums by name, empty fields (and `decided: false`) left out.
pub fn trace_step_json(step: &proto::TraceStep) -> Json {
    let mut out = serde_json::Map::new();
    let stage = proto::TraceStage::try_from(step.stage)
        .map(|s| s.as_str_name())
        .unwrap_or("TRACE_STAGE_UNSPECIFIED");
    out.insert("stage".into(), json!(stage));
    for (name, value) in [
        ("policy", &step.policy),
        ("rule", &step.rule),
        ("file", &step.file),
    ] {
        if !value.is_empty() {
            out.insert(name.into(), json!(value));
        }
    }
    if step.line != 0 {
        out.insert("line".into(), json!(step.line));
    }
    let outcome = proto::TraceOutcome::try_from(step.outcome)
        .map(|o| o.as_str_name())
        .unwrap_or("TRACE_OUTCOME_UNSPECIFIED");
    out.insert("outcome".into(), json!(outcome));
    if !step.error.is_empty() {
        out.insert("error".into(), json!(step.error));
    }
    if step.decided {
        out.insert("decided".into(), json!(true));
    }
    Json::Object(out)
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
pub fn status_json(status: &Status) -> Json {
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
    if let Some(keys) = &response.token_keys {
        let mut k = json!({
            "source": keys.source,
            "key_ids": keys.key_ids,
            "last_success_at": time(&keys.last_success_at),
            "refreshes_ok": keys.refreshes_ok.to_string(),
            "refreshes_failed": keys.refreshes_failed.to_string(),
        });
        if !keys.jwks_uri.is_empty() {
            k["jwks_uri"] = json!(keys.jwks_uri);
        }
        if !keys.last_error.is_empty() {
            k["last_error"] = json!(keys.last_error);
            k["last_error_at"] = json!(time(&keys.last_error_at));
        }
        if keys.next_refresh_at.is_some() {
            k["next_refresh_at"] = json!(time(&keys.next_refresh_at));
        }
        out["token_keys"] = k;
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
