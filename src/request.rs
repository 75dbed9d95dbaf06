//! The engine's own request types: who asks (principal), about what (resource), with which facts
//! (context). Plain data, shared by `compile`, `engine` and `plan`; the server converts protobuf
//! and its own JSON bodies into these, and tests build them directly. `Principal` and `Resource`
//! deserialize for the fixtures of policy test suites (`suite`), not for the wire.
//!
//! Attribute values are JSON (`serde_json::Value`): numbers are doubles, as in protobuf's Struct,
//! and a null attribute is treated as absent everywhere (Check, filters, SQL).

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The caller's identity, from its token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Principal {
    pub id: String,
    pub roles: Vec<String>,
    pub capabilities: Vec<String>,
    pub scopes: Vec<String>,
    pub client_id: String,
    /// Every other claim, as a JSON object.
    pub attr: Json,
}

impl Principal {
    /// Whether it says nothing: every field empty, `attr` null or `{}`.
    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
            && self.roles.is_empty()
            && self.capabilities.is_empty()
            && self.scopes.is_empty()
            && self.client_id.is_empty()
            && match &self.attr {
                Json::Null => true,
                Json::Object(members) => members.is_empty(),
                _ => false,
            }
    }
}

/// A resource: kind, id and attributes (a JSON object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resource {
    pub kind: String,
    pub id: String,
    pub attr: Json,
}

/// A resource and the actions to decide on it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceCheck {
    pub resource: Resource,
    pub actions: Vec<String>,
}

/// A whole Check: one principal, several resources, shared context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckRequest {
    pub request_id: String,
    pub principal: Principal,
    pub resources: Vec<ResourceCheck>,
    /// Request-time facts, a JSON object.
    pub context: Json,
}

/// The attribute at `path` (a dotted path) of a JSON object; null counts as absent.
pub fn attribute<'a>(object: &'a Json, path: &str) -> Option<&'a Json> {
    let mut current = object;
    for segment in path.split('.') {
        current = current.as_object()?.get(segment)?;
    }
    (!current.is_null()).then_some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attribute_follows_paths_and_treats_null_as_absent() {
        let o = json!({"a": {"b": 1}, "n": null});
        assert_eq!(attribute(&o, "a.b"), Some(&json!(1)));
        assert_eq!(attribute(&o, "n"), None);
        assert_eq!(attribute(&o, "a.c"), None);
        assert_eq!(attribute(&o, "a.b.c"), None);
    }
}
