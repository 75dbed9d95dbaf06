//! The schema as JSON Schema (draft 2020-12), so that callers can validate what they send before
//! they send it: a Check request as the HTTP/JSON API and `verdict check --request` take it
//! (`principal`, `resources` of `{resource, actions}`, `context`), with one definition per kind
//! (`$defs/kinds/<Kind>`: its `attr` object and the actions it allows) that also validates a row.
//!
//! The translation is exact for what a JSON validator can see: types, required attributes (an
//! optional one may also be null, which Verdict treats as absent), closed objects, enum values,
//! whole numbers within ±2^53. Numbers beyond ±2^53 that are not whole are the one thing a
//! validator parsing JSON as doubles cannot tell apart: Verdict refuses them too.

use serde_json::{json, Map, Value as Json};

use super::validate::MAX_EXACT_INTEGER;
use super::{Attribute, ObjectType, Schema, Type};

/// The JSON Schema of a Check request for a policy set with this schema.
pub fn check_request(schema: &Schema, title: &str) -> Json {
    let mut kinds = Map::new();
    let mut checks = Vec::new();
    for (name, kind) in &schema.kinds {
        let mut resource = json!({
            "type": "object",
            "properties": {
                "kind": {"const": name},
                "id": {"type": "string"},
                "attr": object(&kind.attributes),
            },
            "required": ["kind"],
            "additionalProperties": false,
        });
        if let Some(description) = &kind.description {
            resource["description"] = json!(description);
        }
        kinds.insert(name.clone(), resource);
        checks.push(json!({
            "type": "object",
            "properties": {
                "resource": {"$ref": format!("#/$defs/kinds/{}", pointer_escape(name))},
                "actions": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"enum": kind.actions},
                },
            },
            "required": ["resource", "actions"],
            "additionalProperties": false,
        }));
    }
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": "A Verdict Check request (the HTTP/JSON body of POST /v1/check, and verdict check --request) for this policy set's schema. Roles are listed for reference: a principal may carry others, which no rule names.",
        "type": "object",
        "properties": {
            "request_id": {"type": "string"},
            "principal": {"$ref": "#/$defs/principal"},
            "token": {"type": "string"},
            "resources": {"type": "array", "minItems": 1, "items": {"oneOf": checks}},
            "context": {"$ref": "#/$defs/context"},
        },
        "required": ["resources"],
        "additionalProperties": false,
        "$defs": {
            "principal": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "roles": {"type": "array", "items": {"type": "string"}, "examples": [schema.roles]},
                    "capabilities": strings,
                    "scopes": strings,
                    "client_id": {"type": "string"},
                    "attr": object(&schema.principal),
                },
                "additionalProperties": false,
            },
            "context": object(&schema.context),
            "kinds": kinds,
        },
    })
}

/// `~` and `/` escaped for a JSON pointer.
fn pointer_escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn object(object: &ObjectType) -> Json {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, attribute) in object.attributes() {
        properties.insert(name.to_string(), attribute_schema(attribute));
        if attribute.required {
            required.push(name);
        }
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": object.additional,
    })
}

fn attribute_schema(attribute: &Attribute) -> Json {
    let mut schema = type_schema(&attribute.ty);
    if attribute.non_empty {
        match &attribute.ty {
            Type::List(_) => schema["minItems"] = json!(1),
            _ => schema["minLength"] = json!(1),
        }
    }
    if let Some(description) = &attribute.description {
        schema["description"] = json!(description);
    }
    if attribute.required {
        schema
    } else {
        // Null is how an optional attribute says it is absent.
        json!({"anyOf": [schema, {"type": "null"}]})
    }
}

fn type_schema(ty: &Type) -> Json {
    let limit = MAX_EXACT_INTEGER as f64;
    match ty {
        Type::String => json!({"type": "string"}),
        Type::Int => json!({"type": "integer", "minimum": -limit, "maximum": limit}),
        Type::Double => json!({"type": "number"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::Enum(values) => json!({"type": "string", "enum": values.as_ref()}),
        Type::List(item) => json!({"type": "array", "items": type_schema(item)}),
        Type::Object(inner) => object(inner),
    }
}
