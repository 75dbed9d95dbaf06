//! The `schema` document as written: kinds with their actions and typed attributes, the
//! principal's roles and attributes (claims), and the context's facts. Only the shape is checked
//! here; the `schema` module merges the documents of a set and gives the types their meaning.
//!
//! An attribute's type is written either short, as a string (`string`, `int`, `double`,
//! `number`, `bool`, `list<T>`, any of them followed by `?` for optional), or long, as a map:
//!
//! ```yaml
//! celebrity: bool
//! primary_physician_id: string?
//! state: {type: enum, values: [CA, NY, TX]}
//! practice_id: {type: string, non_empty: true}
//! address: {type: object, required: false, attributes: {city: string}}
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A `schema` document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDocument {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// What a request that violates the schema gets: `reject` (deny, the default), `warn` (logged
    /// and counted, decided as if valid) or `off`.
    #[serde(default)]
    pub validation: Option<ValidationMode>,
    #[serde(default)]
    pub principal: Option<PrincipalSchema>,
    #[serde(default)]
    pub context: Option<ContextSchema>,
    /// Resource kinds by name.
    #[serde(default)]
    pub kinds: BTreeMap<String, KindSpec>,
}

/// What a request that violates the schema gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMode {
    /// Every action on a resource that violates the schema is denied (all of them, for a principal
    /// or context that violates it), with a reason naming the attribute.
    #[default]
    Reject,
    /// Violations are logged and counted; decisions are made as if there were none.
    Warn,
    /// Requests are not checked against the schema (policies still are, at load).
    Off,
}

impl ValidationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationMode::Reject => "reject",
            ValidationMode::Warn => "warn",
            ValidationMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSchema {
    /// Every role a policy may name.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The principal's `attr` (token claims other than id, roles, capabilities, scopes, client).
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeSpec>,
    /// Whether `attr` may hold attributes not declared here (default false: closed).
    #[serde(default)]
    pub additional_attributes: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSchema {
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeSpec>,
    #[serde(default)]
    pub additional_attributes: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// Every action that may be asked about resources of this kind.
    pub actions: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeSpec>,
    #[serde(default)]
    pub additional_attributes: bool,
}

/// One attribute: its type, whether it must be present, what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeSpec {
    pub ty: TypeSpec,
    pub required: bool,
    /// A string or list that must not be empty when present (`non_empty: true`).
    pub non_empty: bool,
    pub description: Option<String>,
}

/// A type as written.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeSpec {
    String,
    Int,
    Double,
    Bool,
    Enum(Vec<String>),
    List(Box<TypeSpec>),
    Object {
        attributes: BTreeMap<String, AttributeSpec>,
        additional_attributes: bool,
    },
}

impl fmt::Display for TypeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeSpec::String => f.write_str("string"),
            TypeSpec::Int => f.write_str("int"),
            TypeSpec::Double => f.write_str("double"),
            TypeSpec::Bool => f.write_str("bool"),
            TypeSpec::Enum(values) => write!(f, "enum {values:?}"),
            TypeSpec::List(item) => write!(f, "list<{item}>"),
            TypeSpec::Object { .. } => f.write_str("object"),
        }
    }
}

const SHORT_TYPES: &str = "string, int, double, number, bool, list<T> (T? for optional), or a map with `type:` (also enum, object)";

/// `string`, `int?`, `list<string>`...: (type, required).
fn parse_short(text: &str) -> Result<(TypeSpec, bool), String> {
    let text = text.trim();
    let (text, required) = match text.strip_suffix('?') {
        Some(t) => (t.trim_end(), false),
        None => (text, true),
    };
    let ty = match text {
        "string" => TypeSpec::String,
        "int" => TypeSpec::Int,
        "double" | "number" => TypeSpec::Double,
        "bool" => TypeSpec::Bool,
        _ => match text.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
            Some(item) => {
                let (item, item_required) = parse_short(item)?;
                if !item_required {
                    return Err(format!("list items cannot be optional: `{text}`"));
                }
                TypeSpec::List(Box::new(item))
            }
            None => return Err(format!("unknown type `{text}`; expected {SHORT_TYPES}")),
        },
    };
    Ok((ty, required))
}

/// The long form of an attribute.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongSpec {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    required: Option<bool>,
    #[serde(default)]
    description: Option<String>,
    /// string or list: not empty when present.
    #[serde(default)]
    non_empty: bool,
    /// enum: the allowed strings.
    #[serde(default)]
    values: Option<Vec<String>>,
    /// list: the items' type.
    #[serde(default)]
    items: Option<AttributeSpec>,
    /// object: its attributes.
    #[serde(default)]
    attributes: Option<BTreeMap<String, AttributeSpec>>,
    #[serde(default)]
    additional_attributes: Option<bool>,
}

impl LongSpec {
    fn into_spec(self) -> Result<AttributeSpec, String> {
        let kind = self.ty.as_str();
        if self.values.is_some() && kind != "enum" {
            return Err(format!("`values:` only applies to an enum, not to {kind}"));
        }
        if (self.attributes.is_some() || self.additional_attributes.is_some()) && kind != "object" {
            return Err(format!(
                "`attributes:` only applies to an object, not to {kind}"
            ));
        }
        if self.items.is_some() && kind != "list" {
            return Err(format!("`items:` only applies to a list, not to {kind}"));
        }
        if self.non_empty && !(kind == "string" || kind == "list" || kind.starts_with("list<")) {
            return Err(format!(
                "`non_empty:` only applies to a string or a list, not to {kind}"
            ));
        }
        let (ty, short_required) = match kind {
            "enum" => {
                let values = self
                    .values
                    .ok_or("an enum needs `values:`, the strings it allows")?;
                if values.is_empty() {
                    return Err("an enum needs at least one value".into());
                }
                (TypeSpec::Enum(values), true)
            }
            "object" => (
                TypeSpec::Object {
                    attributes: self.attributes.unwrap_or_default(),
                    additional_attributes: self.additional_attributes.unwrap_or(false),
                },
                true,
            ),
            "list" => {
                let items = self
                    .items
                    .ok_or("a list needs `items:`, the type of its elements")?;
                if !items.required {
                    return Err("list items cannot be optional".into());
                }
                (TypeSpec::List(Box::new(items.ty)), true)
            }
            short => parse_short(short)?,
        };
        Ok(AttributeSpec {
            ty,
            required: self.required.unwrap_or(short_required),
            non_empty: self.non_empty,
            description: self.description,
        })
    }
}

impl<'de> Deserialize<'de> for AttributeSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read as YAML first, so that each form reports its own mistakes (an untagged enum would
        // only say that nothing matched).
        let value = serde_yaml_ng::Value::deserialize(deserializer)?;
        match value {
            serde_yaml_ng::Value::String(text) => {
                let (ty, required) = parse_short(&text).map_err(de::Error::custom)?;
                Ok(AttributeSpec {
                    ty,
                    required,
                    non_empty: false,
                    description: None,
                })
            }
            serde_yaml_ng::Value::Mapping(_) => {
                let long: LongSpec = serde_yaml_ng::from_value(value).map_err(de::Error::custom)?;
                long.into_spec().map_err(de::Error::custom)
            }
            other => Err(de::Error::custom(format!(
                "an attribute type must be a string or a map, not {}",
                match other {
                    serde_yaml_ng::Value::Null => "empty",
                    serde_yaml_ng::Value::Bool(_) => "a bool",
                    serde_yaml_ng::Value::Number(_) => "a number",
                    serde_yaml_ng::Value::Sequence(_) => "a list",
                    _ => "this",
                }
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<AttributeSpec, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn short_and_long_forms() {
        assert_eq!(spec("string").unwrap().ty, TypeSpec::String);
        assert!(spec("string").unwrap().required);
        assert!(!spec("'int?'").unwrap().required);
        assert_eq!(
            spec("list<list<bool>>").unwrap().ty,
            TypeSpec::List(Box::new(TypeSpec::List(Box::new(TypeSpec::Bool))))
        );
        assert_eq!(spec("number").unwrap().ty, TypeSpec::Double);
        let e = spec("{type: enum, values: [R, V], required: false}").unwrap();
        assert_eq!(e.ty, TypeSpec::Enum(vec!["R".into(), "V".into()]));
        assert!(!e.required);
        let o = spec("{type: object, attributes: {city: string, zip: string?}}").unwrap();
        let TypeSpec::Object { attributes, .. } = o.ty else {
            panic!()
        };
        assert!(!attributes["zip"].required);
        assert_eq!(
            spec("{type: list, items: {type: enum, values: [a]}}")
                .unwrap()
                .ty,
            TypeSpec::List(Box::new(TypeSpec::Enum(vec!["a".into()])))
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(spec("strng").unwrap_err().contains("unknown type `strng`"));
        assert!(spec("{type: enum}")
            .unwrap_err()
            .contains("needs `values:`"));
        assert!(spec("{type: string, values: [a]}")
            .unwrap_err()
            .contains("only applies to an enum"));
        assert!(spec("{type: string, requird: true}")
            .unwrap_err()
            .contains("unknown field `requird`"));
        assert!(spec("'list<string?>'")
            .unwrap_err()
            .contains("cannot be optional"));
        assert!(spec("7").unwrap_err().contains("must be a string or a map"));
    }
}
