//! The shape every request must have before it reaches the engine, the same for gRPC and the
//! HTTP/JSON API. Each problem is a message naming the field, for INVALID_ARGUMENT / 400.
//!
//! The bottom of the server's modules: the [`Limits`] a request is held to and the [`Refusal`]
//! (a gRPC code and a message; HTTP maps the code to its status) that every step of the request
//! path, from decoding to the evaluation pool, answers with when it cannot decide.

use serde_json::Value as Json;
use tonic::Code;

use crate::plan::PlanRequest;
use crate::request::{CheckRequest, Principal};

/// A request refused before or while deciding: a gRPC code and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

impl Refusal {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// INVALID_ARGUMENT: the caller sent something malformed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Refusal::new(Code::InvalidArgument, message)
    }
}

impl From<Refusal> for tonic::Status {
    fn from(r: Refusal) -> Self {
        tonic::Status::new(r.code, r.message)
    }
}

/// Request limits enforced before deciding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_resources: usize,
    pub max_actions: usize,
    /// Maximum nesting of attribute values (objects and lists).
    pub max_attr_depth: usize,
    /// Most decisions (resources times their actions) in one Check, so that the answer stays
    /// well inside the message size clients accept.
    pub max_decisions: usize,
    /// Largest answer sent, in bytes (`limits.max_message_bytes`; gRPC clients accept 4 MiB by
    /// default): a larger one is refused with OUT_OF_RANGE rather than sent to be rejected.
    pub max_answer_bytes: usize,
    /// The cost budget of a condition (`limits.max_condition_cost`; 0 = none).
    pub max_condition_cost: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_resources: 1000,
            max_actions: 100,
            max_attr_depth: 16,
            max_decisions: 10_000,
            max_answer_bytes: 4 << 20,
            max_condition_cost: crate::engine::DEFAULT_COST_BUDGET,
        }
    }
}

pub fn too_many_resources(n: usize, limits: &Limits) -> String {
    format!(
        "resources: {n} resources exceed the limit of {} per request",
        limits.max_resources
    )
}

/// Nesting depth of a JSON value: a scalar is 0, `{"a": 1}` is 1.
pub fn depth(value: &Json) -> usize {
    match value {
        Json::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Json::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Attributes are objects whose values nest at most `max` levels.
fn attributes(value: &Json, field: &str, max: usize) -> Result<(), String> {
    match value {
        Json::Null => Ok(()),
        Json::Object(_) if depth(value) <= max => Ok(()),
        Json::Object(_) => Err(format!("{field}: attributes nest deeper than {max} levels")),
        _ => Err(format!("{field} must be an object")),
    }
}

pub fn check_request(r: &CheckRequest, limits: &Limits) -> Result<(), String> {
    if r.resources.is_empty() {
        return Err("resources: at least one resource is required".into());
    }
    if r.resources.len() > limits.max_resources {
        return Err(too_many_resources(r.resources.len(), limits));
    }
    attributes(&r.principal.attr, "principal.attr", limits.max_attr_depth)?;
    attributes(&r.context, "context", limits.max_attr_depth)?;
    for (i, check) in r.resources.iter().enumerate() {
        if check.resource.kind.trim().is_empty() {
            return Err(format!("resources[{i}].resource.kind must not be empty"));
        }
        if check.actions.is_empty() {
            return Err(format!(
                "resources[{i}].actions: at least one action is required"
            ));
        }
        if check.actions.len() > limits.max_actions {
            return Err(format!(
                "resources[{i}].actions: {} actions exceed the limit of {}",
                check.actions.len(),
                limits.max_actions
            ));
        }
        if let Some(j) = check.actions.iter().position(|a| a.trim().is_empty()) {
            return Err(format!("resources[{i}].actions[{j}] must not be empty"));
        }
        attributes(
            &check.resource.attr,
            &format!("resources[{i}].resource.attr"),
            limits.max_attr_depth,
        )?;
    }
    let decisions: usize = r.resources.iter().map(|c| c.actions.len()).sum();
    if decisions > limits.max_decisions {
        return Err(format!(
            "resources: {} resources with {decisions} actions in all exceed the limit of {} \
             decisions per request (the answer must fit a client's message size): split the \
             request",
            r.resources.len(),
            limits.max_decisions
        ));
    }
    Ok(())
}

/// A request's own principal (not one from a token) must name who it is: an empty id equals
/// every empty attribute a condition compares it with (`P.id == R.attr.owner`).
pub fn principal_id(p: &Principal) -> Result<(), String> {
    if p.id.is_empty() {
        return Err(
            "principal.id must not be empty (an empty id would equal every empty \
                    attribute it is compared with); send the caller's id, or its token"
                .into(),
        );
    }
    Ok(())
}

/// About how many bytes a Check answer of these decisions takes in protobuf (a little more than
/// it does: every string is counted with room for its tag and length).
pub fn answer_bytes(results: &[crate::engine::ResourceDecisions]) -> usize {
    results
        .iter()
        .map(|r| {
            16 + r.kind.len()
                + r.id.len()
                + r.actions
                    .iter()
                    .map(|(a, d)| 32 + a.len() + d.policy.len() + d.rule.len() + d.reason.len())
                    .sum::<usize>()
                + r.traces.iter().flatten().map(step_bytes).sum::<usize>()
        })
        .sum()
}

/// About how many bytes one trace step takes in protobuf.
fn step_bytes(step: &crate::engine::Step) -> usize {
    let error = match &step.outcome {
        crate::engine::Outcome::Error(e) => e.len(),
        _ => 0,
    };
    32 + step.policy.len() + step.rule.len() + step.file.len() + error
}

pub fn plan_request(r: &PlanRequest, limits: &Limits) -> Result<(), String> {
    if r.kind.trim().is_empty() {
        return Err("resource_kind must not be empty".into());
    }
    if r.action.trim().is_empty() {
        return Err("action must not be empty".into());
    }
    attributes(&r.principal.attr, "principal.attr", limits.max_attr_depth)?;
    attributes(&r.context, "context", limits.max_attr_depth)?;
    attributes(&r.known_attr, "known_attr", limits.max_attr_depth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_counts_nesting() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({"a": 1})), 1);
        assert_eq!(depth(&json!({"a": [{"b": 1}]})), 3);
        assert!(attributes(&json!({"a": {"b": 1}}), "x", 2).is_ok());
        assert!(attributes(&json!({"a": {"b": 1}}), "x", 1).is_err());
        assert!(attributes(&json!([1]), "x", 4)
            .unwrap_err()
            .contains("must be an object"));
    }
}
