//! Entity data: the principals and resources a policy set stores (`principals` and `resources`
//! documents), indexed when the set loads and merged into requests that name them by id.
//!
//! AuthZEN gateways and applications often send identifiers only (an opaque user id, a record id)
//! and expect the decision point to know the rest: the user's roles, the record's department. A
//! set can store them beside its policies; they are versioned, validated and hot-reloaded with the
//! policies, as one set.
//!
//! **Merging** (the same for every API, Check and PlanFilter over gRPC and HTTP, AuthZEN, and
//! `verdict test`): when a request's principal id is stored, the stored roles and capabilities are
//! added to the request's, and the stored attributes are set over the request's, so that **a
//! stored attribute wins** over what the request says, unless the document lists it in
//! `request_overrides`. A request attribute the store does not hold is kept. Resources merge the
//! same way, by (kind, id). Only top-level attributes are merged: a stored object replaces the
//! request's whole.
//!
//! **Invariants:** an `Entities` is immutable and built once per set; stored attributes fit the
//! schema's types (checked at load, as far as they go: required attributes may come from the
//! request); a principal id is stored once across all types, so that a Check, which carries no
//! type, finds at most one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value as Json};

use crate::policy::entities::{PrincipalEntities, ResourceEntities};
use crate::policy::{LoadError, Located};
use crate::request::{CheckRequest, Principal, Resource};
use crate::schema::Schema;

/// A stored principal.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPrincipal {
    pub principal_type: Arc<str>,
    pub id: String,
    pub roles: Vec<String>,
    pub capabilities: Vec<String>,
    pub attr: Map<String, Json>,
    /// Attributes a request may override.
    overrides: Arc<[String]>,
}

/// A stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub id: String,
    /// Its attributes, a JSON object (a row for a filter as it is).
    pub attr: Json,
    /// Whether the attributes alone fit the kind's schema completely (required ones present):
    /// a search, where the request adds nothing, leaves the others out as Check would deny them.
    pub fits_schema: bool,
}

/// The stored resources of one kind, in declaration order.
#[derive(Debug, Default)]
pub struct KindEntities {
    entries: Vec<StoredResource>,
    by_id: HashMap<String, usize>,
    overrides: Arc<[String]>,
}

impl KindEntities {
    pub fn entries(&self) -> &[StoredResource] {
        &self.entries
    }
}

/// Every entity a set stores.
#[derive(Debug, Default)]
pub struct Entities {
    principals: HashMap<String, StoredPrincipal>,
    /// Principal ids by type, in declaration order.
    by_type: BTreeMap<Arc<str>, Vec<String>>,
    kinds: HashMap<String, KindEntities>,
}

static NO_RESOURCES: &[StoredResource] = &[];

impl Entities {
    /// Indexes the set's `principals` and `resources` documents, holding each entry to the
    /// schema when there is one. Reports every problem: a duplicate id, an empty id, attributes
    /// that are not a map or do not fit their declared types, an undeclared kind or role.
    pub fn build<T>(
        principals: &[(&Located<T>, &PrincipalEntities)],
        resources: &[(&Located<T>, &ResourceEntities)],
        schema: Option<&Schema>,
    ) -> Result<Entities, Vec<LoadError>> {
        let mut errors = Vec::new();
        let mut entities = Entities::default();
        let mut sites: HashMap<String, (std::path::PathBuf, usize)> = HashMap::new();
        for (doc, document) in principals {
            let principal_type: Arc<str> = Arc::from(document.principal_type.as_str());
            if principal_type.trim().is_empty() {
                errors.push(error(
                    doc,
                    doc.line,
                    "principals: type must not be empty".into(),
                ));
            }
            let overrides: Arc<[String]> = document.request_overrides.clone().into();
            for entry in &document.entries {
                let Some((line, attr)) =
                    entry_site(doc, "principal", &entry.id, &entry.attr, &mut errors)
                else {
                    continue;
                };
                if let Some((file, first)) = sites.get(&entry.id) {
                    errors.push(error(
                        doc,
                        line,
                        format!(
                            "principal {:?} is stored twice (first at {}:{first}); an id is \
                             stored once, whatever its type",
                            entry.id,
                            file.display()
                        ),
                    ));
                    continue;
                }
                if let Some(schema) = schema {
                    if let Err(v) = schema
                        .principal
                        .check_known("P.attr", &Json::Object(attr.clone()))
                    {
                        errors.push(error(doc, line, format!("principal {:?}: {v}", entry.id)));
                    }
                    for role in &entry.roles {
                        if !schema.roles.contains(role) {
                            let hint = schema
                                .closest_role(role)
                                .map(|c| format!(" (did you mean {c:?}?)"))
                                .unwrap_or_default();
                            errors.push(error(
                                doc,
                                line,
                                format!(
                                    "principal {:?}: role {role:?} is not declared in the schema{hint}",
                                    entry.id
                                ),
                            ));
                        }
                    }
                }
                sites.insert(entry.id.clone(), (doc.file.clone(), line));
                entities
                    .by_type
                    .entry(Arc::clone(&principal_type))
                    .or_default()
                    .push(entry.id.clone());
                entities.principals.insert(
                    entry.id.clone(),
                    StoredPrincipal {
                        principal_type: Arc::clone(&principal_type),
                        id: entry.id.clone(),
                        roles: entry.roles.clone(),
                        capabilities: entry.capabilities.clone(),
                        attr,
                        overrides: Arc::clone(&overrides),
                    },
                );
            }
        }
        for (doc, document) in resources {
            let kind_schema = match schema {
                Some(schema) => match schema.kind(&document.kind) {
                    Some(kind) => Some(kind),
                    None => {
                        let hint = schema
                            .closest_kind(&document.kind)
                            .map(|c| format!(" (did you mean {c:?}?)"))
                            .unwrap_or_default();
                        errors.push(error(
                            doc,
                            doc.line,
                            format!(
                                "resources: kind {:?} is not declared in the schema{hint}",
                                document.kind
                            ),
                        ));
                        continue;
                    }
                },
                None => None,
            };
            if document.kind.trim().is_empty() {
                errors.push(error(
                    doc,
                    doc.line,
                    "resources: kind must not be empty".into(),
                ));
                continue;
            }
            let kind = entities.kinds.entry(document.kind.clone()).or_default();
            if !document.request_overrides.is_empty() {
                if !kind.overrides.is_empty() && *kind.overrides != *document.request_overrides {
                    errors.push(error(
                        doc,
                        doc.line,
                        format!(
                            "resources of kind {:?}: request_overrides differs from another \
                             document's for the same kind",
                            document.kind
                        ),
                    ));
                }
                kind.overrides = document.request_overrides.clone().into();
            }
            for entry in &document.entries {
                let Some((line, attr)) =
                    entry_site(doc, "resource", &entry.id, &entry.attr, &mut errors)
                else {
                    continue;
                };
                if kind.by_id.contains_key(&entry.id) {
                    errors.push(error(
                        doc,
                        line,
                        format!(
                            "resource {:?} of kind {:?} is stored twice",
                            entry.id, document.kind
                        ),
                    ));
                    continue;
                }
                let attr = Json::Object(attr);
                let fits_schema =
                    kind_schema.is_none_or(|k| k.attributes.check("R.attr", &attr).is_ok());
                if let Some(declared) = kind_schema {
                    if let Err(v) = declared.attributes.check_known("R.attr", &attr) {
                        errors.push(error(
                            doc,
                            line,
                            format!("resource {:?} of kind {:?}: {v}", entry.id, document.kind),
                        ));
                    }
                }
                kind.by_id.insert(entry.id.clone(), kind.entries.len());
                kind.entries.push(StoredResource {
                    id: entry.id.clone(),
                    attr,
                    fits_schema,
                });
            }
        }
        if errors.is_empty() {
            Ok(entities)
        } else {
            Err(errors)
        }
    }

    /// Whether the set stores nothing (requests are then decided exactly as sent).
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty() && self.kinds.is_empty()
    }

    /// The stored principal with this id, of any type.
    pub fn principal(&self, id: &str) -> Option<&StoredPrincipal> {
        self.principals.get(id)
    }

    /// The stored principals of a type, in declaration order (none for an unknown type).
    pub fn principals_of_type<'s>(
        &'s self,
        principal_type: &str,
    ) -> impl Iterator<Item = &'s StoredPrincipal> + 's {
        self.by_type
            .get(principal_type)
            .into_iter()
            .flatten()
            .filter_map(|id| self.principals.get(id))
    }

    /// The stored resources of a kind, in declaration order (none for an unknown kind).
    pub fn resources_of_kind(&self, kind: &str) -> &[StoredResource] {
        self.kinds
            .get(kind)
            .map_or(NO_RESOURCES, |k| k.entries.as_slice())
    }

    /// The stored resource of this kind and id.
    pub fn resource(&self, kind: &str, id: &str) -> Option<&StoredResource> {
        let kind = self.kinds.get(kind)?;
        kind.by_id.get(id).map(|&i| &kind.entries[i])
    }

    /// Merges what the set stores of `principal` (by id) into it.
    pub fn merge_principal(&self, principal: &mut Principal) {
        let Some(stored) = self.principals.get(&principal.id) else {
            return;
        };
        union(&mut principal.roles, &stored.roles);
        union(&mut principal.capabilities, &stored.capabilities);
        merge_attributes(&mut principal.attr, &stored.attr, &stored.overrides);
    }

    /// Merges what the set stores of `resource` (by kind and id) into it.
    pub fn merge_resource(&self, resource: &mut Resource) {
        let Some(kind) = self.kinds.get(&resource.kind) else {
            return;
        };
        let Some(&i) = kind.by_id.get(&resource.id) else {
            return;
        };
        if let Json::Object(stored) = &kind.entries[i].attr {
            merge_attributes(&mut resource.attr, stored, &kind.overrides);
        }
    }

    /// The request with what the set stores of its principal and resources merged in; `None`
    /// when the set stores none of them (the request is then decided as sent, uncopied).
    pub fn merged(&self, request: &CheckRequest) -> Option<CheckRequest> {
        if self.is_empty() {
            return None;
        }
        let stored_principal = self.principals.contains_key(&request.principal.id);
        let stored_resource = |r: &Resource| {
            self.kinds
                .get(&r.kind)
                .is_some_and(|k| k.by_id.contains_key(&r.id))
        };
        if !stored_principal
            && !request
                .resources
                .iter()
                .any(|c| stored_resource(&c.resource))
        {
            return None;
        }
        let mut merged = request.clone();
        self.merge_principal(&mut merged.principal);
        for check in &mut merged.resources {
            self.merge_resource(&mut check.resource);
        }
        Some(merged)
    }
}

/// Adds the items of `extra` that `items` lacks.
fn union(items: &mut Vec<String>, extra: &[String]) {
    for item in extra {
        if !items.contains(item) {
            items.push(item.clone());
        }
    }
}

/// Sets the stored attributes over the request's, except those the request may override and
/// gives a (non-null) value of its own.
fn merge_attributes(request: &mut Json, stored: &Map<String, Json>, overrides: &[String]) {
    if stored.is_empty() {
        return;
    }
    if !matches!(request, Json::Object(_)) {
        // Null (absent) becomes the stored map; anything else is the caller's type error, which
        // the schema or the conditions report: leave it as sent.
        if request.is_null() {
            *request = Json::Object(stored.clone());
        }
        return;
    }
    let Json::Object(members) = request else {
        return;
    };
    for (key, value) in stored {
        let overridden =
            overrides.iter().any(|o| o == key) && members.get(key).is_some_and(|v| !v.is_null());
        if !overridden {
            members.insert(key.clone(), value.clone());
        }
    }
}

/// An entry's file line and attributes, or `None` (its errors recorded) when its id is empty
/// or its attributes are not a map.
fn entry_site<T>(
    doc: &Located<T>,
    what: &str,
    id: &str,
    attr: &Json,
    errors: &mut Vec<LoadError>,
) -> Option<(usize, Map<String, Json>)> {
    let line = line_of_id(doc, id);
    let attr = attributes(doc, line, attr, errors)?;
    if id.is_empty() {
        errors.push(error(
            doc,
            line,
            format!("a stored {what}'s id must not be empty"),
        ));
        return None;
    }
    Some((line, attr))
}

/// The entry's attributes as a map (null is an empty one); an error otherwise.
fn attributes<T>(
    doc: &Located<T>,
    line: usize,
    attr: &Json,
    errors: &mut Vec<LoadError>,
) -> Option<Map<String, Json>> {
    match attr {
        Json::Null => Some(Map::new()),
        Json::Object(members) => Some(
            members
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => {
            errors.push(error(doc, line, "attr must be a map of attributes".into()));
            None
        }
    }
}

/// The file line of the entry `id: <id>`, or the document's first line.
fn line_of_id<T>(doc: &Located<T>, id: &str) -> usize {
    for (i, line) in doc.text.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
        let trimmed = trimmed.trim_start_matches('{').trim_start();
        if let Some(rest) = trimmed.strip_prefix("id:") {
            let rest = rest.split([',', '}']).next().unwrap_or("");
            if rest.trim().trim_matches(|c| c == '"' || c == '\'') == id {
                return doc.line + i;
            }
        }
    }
    doc.line
}

fn error<T>(doc: &Located<T>, line: usize, message: String) -> LoadError {
    LoadError {
        file: doc.file.clone(),
        line: Some(line),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn located() -> Located<()> {
        Located {
            file: "data.yaml".into(),
            line: 1,
            item: (),
            text: String::new(),
        }
    }

    fn build(principals: &str, resources: &str) -> Result<Entities, Vec<LoadError>> {
        let p: PrincipalEntities = serde_yaml_ng::from_str(principals).unwrap();
        let r: ResourceEntities = serde_yaml_ng::from_str(resources).unwrap();
        let site = located();
        Entities::build(&[(&site, &p)], &[(&site, &r)], None)
    }

    #[test]
    fn stored_attributes_win_unless_the_document_lets_the_request_override_them() {
        let entities = build(
            "{type: user, entries: [{id: bob, roles: [member], attr: {role: admin, team: a}}]}",
            "{kind: record, request_overrides: [status], entries: [{id: r1, attr: {status: active, dept: Legal}}]}",
        )
        .unwrap();
        let mut principal = Principal {
            id: "bob".into(),
            roles: vec!["guest".into()],
            attr: json!({"role": "employee", "mood": "fine"}),
            ..Principal::default()
        };
        entities.merge_principal(&mut principal);
        assert_eq!(principal.roles, ["guest", "member"]);
        assert_eq!(
            principal.attr,
            json!({"role": "admin", "team": "a", "mood": "fine"})
        );
        let mut resource = Resource {
            kind: "record".into(),
            id: "r1".into(),
            attr: json!({"status": "archived", "dept": "Sales"}),
        };
        entities.merge_resource(&mut resource);
        assert_eq!(
            resource.attr,
            json!({"status": "archived", "dept": "Legal"})
        );
        let mut unsent = Resource {
            kind: "record".into(),
            id: "r1".into(),
            attr: Json::Null,
        };
        entities.merge_resource(&mut unsent);
        assert_eq!(unsent.attr, json!({"status": "active", "dept": "Legal"}));
        let mut stranger = Principal {
            id: "eve".into(),
            ..Principal::default()
        };
        entities.merge_principal(&mut stranger);
        assert!(stranger.roles.is_empty() && stranger.attr.is_null());
    }

    #[test]
    fn duplicates_empty_ids_and_non_map_attributes_are_load_errors() {
        let errors = build(
            "{entries: [{id: a}, {id: a}, {id: ''}, {id: b, attr: [1]}]}",
            "{kind: record, entries: [{id: r}, {id: r}]}",
        )
        .unwrap_err();
        let messages: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].contains("stored twice"), "{messages:?}");
        assert!(messages[1].contains("must not be empty"), "{messages:?}");
        assert!(messages[2].contains("must be a map"), "{messages:?}");
        assert!(messages[3].contains("\"r\" of kind \"record\" is stored twice"));
    }
}
