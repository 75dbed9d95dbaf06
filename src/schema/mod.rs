//! The schema of a policy set: the resource kinds with their actions and typed attributes, the
//! roles that exist, the principal's attributes (claims) and the context's facts. Built once at
//! load by merging the set's `schema` documents (a set may spread its schema over several files).
//!
//! A set with a schema is a closed world: a kind, action or attribute the schema does not declare
//! does not exist. The type checker (`cel::check`) holds every condition to it at load;
//! [`validate`] holds every request to it before any rule runs; [`json_schema`] exports it for
//! callers to validate on their side.
//!
//! Attribute values are JSON. Every number is a double when a condition sees it (as in protobuf's
//! Struct); `int` additionally requires a whole number that a double holds exactly (|n| <= 2^53),
//! so that no two different integers a caller sends can compare equal.
//!
//! Knows nothing of CEL or rules: it is types and values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::policy::schema::{AttributeSpec, TypeSpec, ValidationMode};
use crate::policy::{LoadError, Located, SchemaDocument};

pub mod json_schema;
pub mod validate;

pub use validate::Violation;

/// The type of an attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Type {
    String,
    /// A whole number within ±2^53; a double in conditions.
    Int,
    /// Any number; a double in conditions.
    Double,
    Bool,
    /// A string among these values (sorted).
    Enum(Arc<[String]>),
    List(Box<Type>),
    Object(Arc<ObjectType>),
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::String => f.write_str("string"),
            Type::Int => f.write_str("int"),
            Type::Double => f.write_str("double"),
            Type::Bool => f.write_str("bool"),
            Type::Enum(values) => {
                f.write_str("one of ")?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v:?}")?;
                }
                Ok(())
            }
            Type::List(item) => write!(f, "list<{item}>"),
            Type::Object(_) => f.write_str("object"),
        }
    }
}

/// One declared attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub ty: Type,
    /// Must be present (and not null) in every request.
    pub required: bool,
    /// A string or list that must not be empty when present: two attributes that may not be
    /// empty never compare equal by both being "".
    pub non_empty: bool,
    pub description: Option<String>,
}

/// An object's attributes, sorted by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectType {
    attributes: Vec<(String, Attribute)>,
    /// How many of them are required.
    required_count: usize,
    /// Whether attributes not declared are allowed (and ignored by the type checker's guarantees).
    pub additional: bool,
}

impl ObjectType {
    /// The declared attribute `name`. (On the request path: a few attributes are found faster by
    /// comparing lengths first than by a binary search of string comparisons.)
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        if self.attributes.len() <= 16 {
            return self
                .attributes
                .iter()
                .find(|(n, _)| n.len() == name.len() && n.as_bytes() == name.as_bytes())
                .map(|(_, a)| a);
        }
        self.attributes
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.attributes[i].1)
    }

    /// Every declared attribute, by name.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &Attribute)> {
        self.attributes.iter().map(|(n, a)| (n.as_str(), a))
    }

    /// The declared attribute names closest to `name` (for "did you mean").
    pub fn closest(&self, name: &str) -> Option<&str> {
        closest(name, self.attributes.iter().map(|(n, _)| n.as_str()))
    }

    /// The attribute at a dotted path below this object, through nested objects.
    pub fn path(&self, path: &str) -> Option<&Attribute> {
        let (first, rest) = match path.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (path, None),
        };
        let attribute = self.get(first)?;
        match (rest, &attribute.ty) {
            (None, _) => Some(attribute),
            (Some(rest), Type::Object(inner)) => inner.path(rest),
            (Some(_), _) => None,
        }
    }
}

/// A resource kind.
#[derive(Debug, Clone, PartialEq)]
pub struct KindSchema {
    pub name: String,
    pub description: Option<String>,
    /// The actions that may be asked about it, sorted.
    pub actions: Vec<String>,
    pub attributes: ObjectType,
}

impl KindSchema {
    #[inline]
    pub fn has_action(&self, action: &str) -> bool {
        if self.actions.len() <= 16 {
            return self
                .actions
                .iter()
                .any(|a| a.len() == action.len() && a.as_bytes() == action.as_bytes());
        }
        self.actions
            .binary_search_by(|a| a.as_str().cmp(action))
            .is_ok()
    }
}

/// A policy set's whole schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// What a request that violates the schema gets.
    pub mode: ValidationMode,
    /// Every role a policy may name.
    pub roles: BTreeSet<String>,
    /// The principal's `attr`.
    pub principal: ObjectType,
    /// The request context.
    pub context: ObjectType,
    pub kinds: BTreeMap<String, Arc<KindSchema>>,
    /// The documents it was merged from: (file, line, name).
    pub sources: Vec<(PathBuf, usize, String)>,
}

impl Schema {
    /// Merges a set's `schema` documents into one; `None` for a set without any. Every problem is
    /// reported: a kind, attribute or role declared twice, conflicting validation modes, an empty
    /// name.
    pub fn build<T>(
        documents: &[(&Located<T>, &SchemaDocument)],
    ) -> Result<Option<Schema>, Vec<LoadError>> {
        if documents.is_empty() {
            return Ok(None);
        }
        let mut errors = Vec::new();
        let mut mode: Option<(ValidationMode, PathBuf, usize)> = None;
        let mut roles = BTreeSet::new();
        let mut principal = Merged::default();
        let mut context = Merged::default();
        let mut kinds: BTreeMap<String, (Arc<KindSchema>, PathBuf, usize)> = BTreeMap::new();
        let mut sources = Vec::new();
        for (doc, s) in documents {
            let line = doc.line_of_name(&s.name, doc.line);
            let mut error = |line: usize, message: String| {
                errors.push(LoadError {
                    file: doc.file.clone(),
                    line: Some(line),
                    message: format!("schema \"{}\": {message}", s.name),
                })
            };
            sources.push((doc.file.clone(), line, s.name.clone()));
            if let Some(m) = s.validation {
                match &mode {
                    Some((other, file, at)) if *other != m => error(
                        doc.line_of_key("validation", doc.line),
                        format!(
                            "validation: {} conflicts with {} at {}:{at}",
                            m.as_str(),
                            other.as_str(),
                            file.display()
                        ),
                    ),
                    Some(_) => {}
                    None => mode = Some((m, doc.file.clone(), line)),
                }
            }
            if let Some(p) = &s.principal {
                for role in &p.roles {
                    if !is_name(role) {
                        error(
                            doc.line_of_key("roles", doc.line),
                            format!(
                                "role {role:?} must be a non-empty name without spaces or \"*\""
                            ),
                        );
                    } else if !roles.insert(role.clone()) {
                        // Declaring a role in two documents is harmless: roles are a set.
                    }
                }
                principal.add(
                    doc,
                    "principal",
                    &p.attributes,
                    p.additional_attributes,
                    &mut error,
                );
            }
            if let Some(c) = &s.context {
                context.add(
                    doc,
                    "context",
                    &c.attributes,
                    c.additional_attributes,
                    &mut error,
                );
            }
            for (name, spec) in &s.kinds {
                let at = doc.line_of_key(name, doc.line);
                if !is_name(name) {
                    error(
                        at,
                        format!("kind {name:?} must be a non-empty name without spaces or \"*\""),
                    );
                    continue;
                }
                if let Some((_, file, other)) = kinds.get(name) {
                    error(
                        at,
                        format!(
                            "kind \"{name}\" is already declared at {}:{other}",
                            file.display()
                        ),
                    );
                    continue;
                }
                let mut actions: Vec<String> = Vec::new();
                for action in &spec.actions {
                    if !is_name(action) {
                        error(
                            at,
                            format!("kind \"{name}\": action {action:?} must be a non-empty name without spaces or \"*\""),
                        );
                    } else if actions.contains(action) {
                        error(
                            at,
                            format!("kind \"{name}\": action \"{action}\" is listed twice"),
                        );
                    } else {
                        actions.push(action.clone());
                    }
                }
                if spec.actions.is_empty() {
                    error(
                        at,
                        format!("kind \"{name}\": actions must list at least one action"),
                    );
                }
                actions.sort();
                let attributes = object(&spec.attributes, spec.additional_attributes);
                kinds.insert(
                    name.clone(),
                    (
                        Arc::new(KindSchema {
                            name: name.clone(),
                            description: spec.description.clone(),
                            actions,
                            attributes,
                        }),
                        doc.file.clone(),
                        at,
                    ),
                );
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Some(Schema {
            mode: mode.map(|(m, _, _)| m).unwrap_or_default(),
            roles,
            principal: principal.finish(),
            context: context.finish(),
            kinds: kinds.into_iter().map(|(k, (s, _, _))| (k, s)).collect(),
            sources,
        }))
    }

    /// The kind `name`, if declared.
    pub fn kind(&self, name: &str) -> Option<&Arc<KindSchema>> {
        self.kinds.get(name)
    }

    /// The declared kind closest to `name`, for "did you mean".
    pub fn closest_kind(&self, name: &str) -> Option<&str> {
        closest(name, self.kinds.keys().map(String::as_str))
    }

    /// The declared role closest to `name`, for "did you mean".
    pub fn closest_role(&self, name: &str) -> Option<&str> {
        closest(name, self.roles.iter().map(String::as_str))
    }
}

/// Attributes merged from several documents (the principal's, the context's).
#[derive(Default)]
struct Merged {
    attributes: BTreeMap<String, (AttributeSpec, PathBuf, usize)>,
    additional: bool,
}

impl Merged {
    fn add<T>(
        &mut self,
        doc: &Located<T>,
        what: &str,
        attributes: &BTreeMap<String, AttributeSpec>,
        additional: bool,
        error: &mut impl FnMut(usize, String),
    ) {
        self.additional |= additional;
        for (name, spec) in attributes {
            let at = doc.line_of_key(name, doc.line);
            match self.attributes.get(name) {
                Some((other, file, line)) if other != spec => error(
                    at,
                    format!(
                        "{what} attribute \"{name}\" is already declared differently at {}:{line}",
                        file.display()
                    ),
                ),
                Some(_) => {}
                None => {
                    self.attributes
                        .insert(name.clone(), (spec.clone(), doc.file.clone(), at));
                }
            }
        }
    }

    fn finish(self) -> ObjectType {
        let specs: BTreeMap<String, AttributeSpec> = self
            .attributes
            .into_iter()
            .map(|(k, (s, _, _))| (k, s))
            .collect();
        object(&specs, self.additional)
    }
}

fn object(specs: &BTreeMap<String, AttributeSpec>, additional: bool) -> ObjectType {
    ObjectType {
        attributes: specs
            .iter()
            .map(|(name, spec)| (name.clone(), attribute(spec)))
            .collect(),
        required_count: specs.values().filter(|s| s.required).count(),
        additional,
    }
}

fn attribute(spec: &AttributeSpec) -> Attribute {
    Attribute {
        ty: type_of(&spec.ty),
        required: spec.required,
        non_empty: spec.non_empty,
        description: spec.description.clone(),
    }
}

fn type_of(spec: &TypeSpec) -> Type {
    match spec {
        TypeSpec::String => Type::String,
        TypeSpec::Int => Type::Int,
        TypeSpec::Double => Type::Double,
        TypeSpec::Bool => Type::Bool,
        TypeSpec::Enum(values) => {
            let mut values = values.clone();
            values.sort();
            values.dedup();
            Type::Enum(values.into())
        }
        TypeSpec::List(item) => Type::List(Box::new(type_of(item))),
        TypeSpec::Object {
            attributes,
            additional_attributes,
        } => Type::Object(Arc::new(object(attributes, *additional_attributes))),
    }
}

/// A kind, action or role name: not empty, no whitespace or control characters, not `*`.
pub fn is_name(name: &str) -> bool {
    !name.is_empty() && name != "*" && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Of `candidates`, the one closest to `name` within two edits (case differences cost nothing
/// extra to notice: `patient` finds `Patient`).
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let folded = name.trim().to_lowercase();
    candidates
        .map(|c| {
            let distance = if c.to_lowercase() == folded {
                0
            } else {
                edit_distance(&c.to_lowercase(), &folded)
            };
            (distance, c)
        })
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::{parse_documents, Document};
    use std::path::Path;

    pub(crate) fn schema_of(texts: &[&str]) -> Result<Option<Schema>, Vec<LoadError>> {
        let mut docs = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            docs.extend(parse_documents(Path::new(&format!("s{i}.yaml")), text).unwrap());
        }
        let located: Vec<(&Located<Document>, &SchemaDocument)> = docs
            .iter()
            .filter_map(|d| match &d.item {
                Document::Schema(s) => Some((d, s)),
                _ => None,
            })
            .collect();
        Schema::build(&located)
    }

    #[test]
    fn documents_merge_and_conflicts_are_errors() {
        let a = "schema:\n  name: a\n  principal:\n    roles: [nurse]\n    attributes: {practice_id: string}\n  kinds:\n    Patient:\n      actions: [read, update]\n      attributes: {celebrity: bool, note: string?}\n";
        let b = "schema:\n  name: b\n  validation: warn\n  principal:\n    roles: [physician, nurse]\n    attributes: {practice_id: string}\n  kinds:\n    Note: {actions: [read]}\n";
        let s = schema_of(&[a, b]).unwrap().unwrap();
        assert_eq!(s.mode, ValidationMode::Warn);
        assert_eq!(s.roles.len(), 2);
        assert_eq!(s.kinds.len(), 2);
        let patient = s.kind("Patient").unwrap();
        assert!(patient.has_action("read") && !patient.has_action("delete"));
        assert!(patient.attributes.get("celebrity").unwrap().required);
        assert!(!patient.attributes.get("note").unwrap().required);
        assert_eq!(s.closest_kind("patient"), Some("Patient"));
        assert_eq!(s.closest_role("nures"), Some("nurse"));

        let twice = "schema:\n  name: c\n  validation: reject\n  principal:\n    attributes: {practice_id: int}\n  kinds:\n    Patient: {actions: [read, read]}\n    \"bad kind\": {actions: [read]}\n";
        let errors = schema_of(&[a, b, twice]).unwrap_err();
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let all = all.join("\n");
        assert!(
            all.contains("validation: reject conflicts with warn"),
            "{all}"
        );
        assert!(
            all.contains(
                "principal attribute \"practice_id\" is already declared differently at s0.yaml:5"
            ),
            "{all}"
        );
        assert!(
            all.contains("kind \"Patient\" is already declared at s0.yaml:7"),
            "{all}"
        );
        assert!(all.contains("must be a non-empty name"), "{all}");
        assert!(schema_of(&[]).unwrap().is_none());
    }

    #[test]
    fn paths_reach_nested_objects() {
        let s = schema_of(&["schema:\n  name: a\n  kinds:\n    K:\n      actions: [read]\n      attributes:\n        address: {type: object, attributes: {city: string, zip: string?}}\n"]).unwrap().unwrap();
        let k = s.kind("K").unwrap();
        assert_eq!(k.attributes.path("address.city").unwrap().ty, Type::String);
        assert!(k.attributes.path("address.country").is_none());
        assert!(k.attributes.path("address.city.x").is_none());
    }
}
