//! Principal classes: the principals a policy set can tell apart, each with one representative
//! principal to plan and check with.
//!
//! The domains come from the set itself (see [`Domains`]): the roles its schema declares and its
//! selectors name, the capabilities and principal ids its selectors name, the SMART scope shapes
//! its scope gate distinguishes, and the principal attributes its conditions read and its schema
//! declares. Attribute values are symbolic: a string attribute `x` holds the placeholder
//! `"$P.attr.x"`, a value equal to no constant of the policies, which the analysis shows as
//! `P.attr.x` in filters (see [`symbolic`]).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{json, Map, Value as Json};

use crate::compile::PolicySet;
use crate::request::Principal;
use crate::schema::{Attribute, Type};

/// Placeholder of the principal's id.
pub const ID: &str = "$P.id";

/// Which SMART scopes a class's principal is granted, as the scope gate tells them apart: for a
/// (kind, permission), a request passes the gate through a `user/` or `system/` scope naming it,
/// through a `patient/` scope naming it for the launch patient's resources only, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeShape {
    /// `user/*.cruds`.
    User,
    /// `patient/*.cruds`, with a launch patient.
    Patient,
    /// `system/*.cruds`.
    System,
    /// No SMART scope.
    None,
    /// The set has no scope gate: scopes change nothing (unless a condition reads them).
    NotGated,
    /// `user/*.X`: one SMART permission letter (`c`, `r`, `u`, `d`, `s`), for the diff: the
    /// action-to-letter mapping of a gate.
    UserPermission(char),
}

impl ScopeShape {
    pub fn scopes(self) -> Vec<String> {
        match self {
            ScopeShape::User => vec!["user/*.cruds".into()],
            ScopeShape::Patient => vec!["patient/*.cruds".into()],
            ScopeShape::System => vec!["system/*.cruds".into()],
            ScopeShape::None | ScopeShape::NotGated => Vec::new(),
            ScopeShape::UserPermission(letter) => vec![format!("user/*.{letter}")],
        }
    }

    fn label(self) -> String {
        match self {
            ScopeShape::User => "user/*.cruds".into(),
            ScopeShape::Patient => "patient/*.cruds".into(),
            ScopeShape::System => "system/*.cruds".into(),
            ScopeShape::None => "no scope".into(),
            ScopeShape::NotGated => String::new(),
            ScopeShape::UserPermission(letter) => format!("user/*.{letter}"),
        }
    }

    /// The shape's part of a class id.
    fn id(self) -> String {
        match self {
            ScopeShape::User => "user".into(),
            ScopeShape::Patient => "patient".into(),
            ScopeShape::System => "system".into(),
            ScopeShape::None => "none".into(),
            ScopeShape::NotGated => String::new(),
            ScopeShape::UserPermission(letter) => format!("user.{letter}"),
        }
    }
}

/// One class of principals and its representative.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrincipalClass {
    /// Stable identifier, e.g. `role:physician+cap:sign-a-note/scope:user/attr:-practice_id`.
    pub id: String,
    /// For people: `physician + sign-a-note, user/*.cruds, without P.attr.practice_id`.
    pub label: String,
    pub roles: Vec<String>,
    pub capabilities: Vec<String>,
    pub scope: ScopeShape,
    /// The attribute profile: empty for the base one (every attribute present, symbolic).
    pub profile: String,
    /// The representative principal the class is planned and checked with.
    pub principal: Principal,
}

/// What a set can tell principals apart by.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Domains {
    /// Roles the schema declares or a selector names (sorted).
    pub roles: BTreeSet<String>,
    /// Capabilities a selector names.
    pub capabilities: BTreeSet<String>,
    /// Derived roles the selectors use, with their parent roles: their conditions are part of
    /// the rules' filters, planned for each class holding a parent role.
    pub derived_roles: BTreeSet<String>,
    /// Principal ids a selector names.
    pub ids: BTreeSet<String>,
    /// Client ids a selector names.
    pub clients: BTreeSet<String>,
    /// Whether some kind is behind a scope gate.
    pub gated: bool,
    /// The principal attributes that matter (read by a condition, required by the schema,
    /// or the launch patient claim), with their representative values.
    pub attributes: Vec<AttributeDomain>,
    /// The principal attribute holding the launch patient, and the resource attribute a
    /// `patient/` scope compares it with.
    pub patient_claim: Option<(String, String)>,
}

/// A principal attribute, its base value and the variations the diff also tries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeDomain {
    pub name: String,
    /// The schema's type, or `undeclared`.
    #[serde(rename = "type")]
    pub ty: String,
    pub required: bool,
    /// The value of the base profile.
    pub value: Json,
    /// Further values tried by the diff (every value of an enum or bool).
    pub variations: Vec<Json>,
    /// Whether the values tried cover the type's whole domain as the policies can tell it
    /// (bools, enums, and strings compared only for equality with other attributes).
    pub exact: bool,
}

/// A string placeholder for the principal attribute `name`.
fn placeholder(name: &str) -> String {
    format!("$P.attr.{name}")
}

/// The placeholder of one element of the list attribute `name` (rendered `in P.attr.name`).
fn list_placeholder(name: &str) -> String {
    format!("$P.attr.{name}[]")
}

impl Domains {
    /// The domains of one set.
    pub fn of(set: &PolicySet) -> Domains {
        let mut d = Domains::default();
        if let Some(schema) = &set.schema {
            d.roles.extend(schema.roles.iter().cloned());
        }
        for rule in &set.rules {
            for s in &rule.principals.all {
                d.roles
                    .extend(s.roles.iter().filter(|r| *r != "*").cloned());
                d.capabilities.extend(s.capabilities.iter().cloned());
                d.ids.extend(s.ids.iter().cloned());
                d.clients.extend(s.clients.iter().cloned());
                d.derived_roles.extend(s.derived_roles.iter().cloned());
            }
        }
        let kinds = super::kinds_of(set);
        let gate = kinds.iter().find_map(|(k, _)| set.scope_gate_for(k));
        d.gated = gate.is_some();
        d.patient_claim = gate.map(|g| {
            (
                g.compartment.patient_claim.clone(),
                g.compartment.patient_attribute.clone(),
            )
        });
        let needed = &set.projection.principal;
        let mut names: BTreeSet<String> = needed.attr_keys.iter().cloned().collect();
        let declared = set.schema.as_ref().map(|s| &s.principal);
        if let Some(declared) = declared {
            for (name, a) in declared.attributes() {
                if a.required || needed.attr_whole || needed.whole {
                    names.insert(name.to_string());
                }
            }
        }
        if let Some((claim, _)) = &d.patient_claim {
            names.insert(claim.clone());
        }
        for name in names {
            let attribute = declared.and_then(|o| o.get(&name));
            d.attributes.push(AttributeDomain::new(&name, attribute));
        }
        d
    }

    /// Both sets' domains: what either can tell apart.
    pub fn union(mut self, other: Domains) -> Domains {
        self.roles.extend(other.roles);
        self.capabilities.extend(other.capabilities);
        self.derived_roles.extend(other.derived_roles);
        self.ids.extend(other.ids);
        self.clients.extend(other.clients);
        self.gated |= other.gated;
        if self.patient_claim.is_none() {
            self.patient_claim = other.patient_claim;
        }
        for a in other.attributes {
            if !self.attributes.iter().any(|x| x.name == a.name) {
                self.attributes.push(a);
            }
        }
        self.attributes.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }
}

impl AttributeDomain {
    fn new(name: &str, declared: Option<&Attribute>) -> AttributeDomain {
        let Some(a) = declared else {
            return AttributeDomain {
                name: name.to_string(),
                ty: "undeclared".into(),
                required: false,
                value: Json::String(placeholder(name)),
                variations: Vec::new(),
                exact: false,
            };
        };
        let (value, variations, exact) = match &a.ty {
            Type::String => (Json::String(placeholder(name)), Vec::new(), false),
            Type::Bool => (json!(true), vec![json!(false)], true),
            Type::Enum(values) => (
                json!(values[0]),
                values[1..].iter().map(|v| json!(v)).collect(),
                true,
            ),
            Type::Int | Type::Double => (json!(1), vec![json!(0)], false),
            Type::List(item) if **item == Type::String => {
                (json!([list_placeholder(name)]), vec![json!([])], false)
            }
            Type::List(_) => (json!([]), Vec::new(), false),
            Type::Object(_) => (json!({}), Vec::new(), false),
        };
        AttributeDomain {
            name: name.to_string(),
            ty: a.ty.to_string(),
            required: a.required,
            value,
            variations,
            exact,
        }
    }
}

/// How many classes to enumerate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Each role, capability and named id alone, a role no policy names, and no role at all;
    /// each scope shape; the base attribute profile.
    Single,
    /// Also every pair of roles and capabilities, and every attribute profile (each optional
    /// attribute absent, all absent, each other value of a bool or enum).
    Pairs,
}

/// A role no policy names.
pub const OTHER_ROLE: &str = "other-role";

/// The classes of `domains`, in a stable order.
pub fn classes(domains: &Domains, depth: Depth) -> Vec<PrincipalClass> {
    // (roles, capabilities, id, client): who.
    type Who = (Vec<String>, Vec<String>, Option<String>, Option<String>);
    let mut who: Vec<Who> = Vec::new();
    let items: Vec<(bool, &String)> = domains
        .roles
        .iter()
        .map(|r| (true, r))
        .chain(domains.capabilities.iter().map(|c| (false, c)))
        .collect();
    let one = |items: &[(bool, &String)]| {
        let roles = items.iter().filter(|i| i.0).map(|i| i.1.clone()).collect();
        let caps = items.iter().filter(|i| !i.0).map(|i| i.1.clone()).collect();
        (roles, caps, None, None)
    };
    for (i, item) in items.iter().enumerate() {
        who.push(one(&[*item]));
        if depth == Depth::Pairs {
            for other in &items[i + 1..] {
                who.push(one(&[*item, *other]));
            }
        }
    }
    for id in &domains.ids {
        who.push((Vec::new(), Vec::new(), Some(id.clone()), None));
    }
    for client in &domains.clients {
        who.push((Vec::new(), Vec::new(), None, Some(client.clone())));
    }
    who.push((vec![OTHER_ROLE.to_string()], Vec::new(), None, None));
    who.push((Vec::new(), Vec::new(), None, None));

    let shapes: &[ScopeShape] = if domains.gated {
        &[
            ScopeShape::User,
            ScopeShape::Patient,
            ScopeShape::System,
            ScopeShape::None,
        ]
    } else {
        &[ScopeShape::NotGated]
    };
    let profiles = profiles(domains, depth);
    let mut out = Vec::new();
    for (roles, capabilities, id, client) in &who {
        let single = roles.len() + capabilities.len() <= 1;
        let letters: Vec<ScopeShape> = if depth == Depth::Pairs && domains.gated && single {
            "cruds".chars().map(ScopeShape::UserPermission).collect()
        } else {
            Vec::new()
        };
        for &shape in shapes.iter().chain(&letters) {
            let profiles = match shape {
                ScopeShape::UserPermission(_) => &profiles[..1],
                _ => &profiles[..],
            };
            for (profile, attr) in profiles {
                let mut attr = attr.clone();
                if shape == ScopeShape::Patient {
                    launch_patient(domains, &mut attr);
                }
                let principal = Principal {
                    id: id.clone().unwrap_or_else(|| ID.to_string()),
                    roles: roles.clone(),
                    capabilities: capabilities.clone(),
                    scopes: shape.scopes(),
                    client_id: client.clone().unwrap_or_default(),
                    attr: Json::Object(attr),
                };
                out.push(class(
                    roles,
                    capabilities,
                    id,
                    client,
                    shape,
                    profile,
                    principal,
                ));
            }
        }
    }
    out
}

/// A patient-scoped principal's launch patient: the same value as its attribute named like the
/// resource attribute `patient/` scopes compare (a patient app launched for the user's own
/// record), or a placeholder of its own.
fn launch_patient(domains: &Domains, attr: &mut Map<String, Json>) {
    let Some((claim, resource_attribute)) = &domains.patient_claim else {
        return;
    };
    let value = match attr.get(resource_attribute) {
        Some(Json::String(s)) => s.clone(),
        _ => placeholder(claim),
    };
    attr.insert(claim.clone(), Json::String(value));
}

fn class(
    roles: &[String],
    capabilities: &[String],
    id: &Option<String>,
    client: &Option<String>,
    shape: ScopeShape,
    profile: &str,
    principal: Principal,
) -> PrincipalClass {
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    for r in roles {
        ids.push(format!("role:{r}"));
        labels.push(r.clone());
    }
    for c in capabilities {
        ids.push(format!("cap:{c}"));
        labels.push(format!("capability {c}"));
    }
    if let Some(id) = id {
        ids.push(format!("id:{id}"));
        labels.push(format!("principal {id:?}"));
    }
    if let Some(client) = client {
        ids.push(format!("client:{client}"));
        labels.push(format!("client {client:?}"));
    }
    if ids.is_empty() {
        ids.push("nobody".into());
        labels.push("no role or capability".into());
    }
    let mut id = ids.join("+");
    let mut label = labels.join(" + ");
    if shape != ScopeShape::NotGated {
        id.push_str(&format!("/scope:{}", shape.id()));
        label.push_str(", ");
        label.push_str(&shape.label());
    }
    if !profile.is_empty() {
        id.push_str(&format!("/attr:{profile}"));
        label.push_str(", ");
        label.push_str(&profile_label(profile));
    }
    PrincipalClass {
        id,
        label,
        roles: roles.to_vec(),
        capabilities: capabilities.to_vec(),
        scope: shape,
        profile: profile.to_string(),
        principal,
    }
}

fn profile_label(profile: &str) -> String {
    if profile == "-all" {
        return "no optional attribute".into();
    }
    if let Some(name) = profile.strip_prefix('-') {
        return format!("without P.attr.{name}");
    }
    match profile.split_once('=') {
        Some((name, value)) => format!("P.attr.{name} = {value}"),
        None => profile.to_string(),
    }
}

/// The attribute profiles: (id, attributes), the base one first with id "".
fn profiles(domains: &Domains, depth: Depth) -> Vec<(String, Map<String, Json>)> {
    let mut base = Map::new();
    for a in &domains.attributes {
        base.insert(a.name.clone(), a.value.clone());
    }
    let mut out = vec![(String::new(), base.clone())];
    if depth == Depth::Single {
        return out;
    }
    let optional: Vec<&AttributeDomain> =
        domains.attributes.iter().filter(|a| !a.required).collect();
    for a in &optional {
        let mut without = base.clone();
        without.remove(&a.name);
        out.push((format!("-{}", a.name), without));
    }
    if optional.len() > 1 {
        let mut none = base.clone();
        for a in &optional {
            none.remove(&a.name);
        }
        out.push(("-all".into(), none));
    }
    for a in &domains.attributes {
        for v in &a.variations {
            let mut varied = base.clone();
            varied.insert(a.name.clone(), v.clone());
            out.push((format!("{}={v}", a.name), varied));
        }
    }
    out
}

/// `text` (a filter as `Filter`'s Display writes it) with the principal's placeholders shown as
/// the attributes they stand for: `practice_id == "$P.attr.practice_id"` becomes
/// `practice_id == P.attr.practice_id`, `state == "$P.attr.states[]"` becomes
/// `state in P.attr.states`.
pub fn symbolic(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("\"$P.") {
        let Some(len) = rest[start + 1..].find('"') else {
            break;
        };
        let inner = &rest[start + 1..start + 1 + len];
        let mut head = &rest[..start];
        let name = &inner[1..];
        if let Some(list) = name.strip_suffix("[]") {
            if let Some(h) = head.strip_suffix(" == ") {
                head = h;
                out.push_str(head);
                out.push_str(" in ");
                out.push_str(list);
            } else if let Some(h) = head.strip_suffix(" != ") {
                // `x != e` for the one element e: x is not in the list.
                let attr_start = h.rfind(['(', ' ', '!']).map(|i| i + 1).unwrap_or(0);
                out.push_str(&h[..attr_start]);
                out.push_str("!(");
                out.push_str(&h[attr_start..]);
                out.push_str(" in ");
                out.push_str(list);
                out.push(')');
            } else {
                out.push_str(head);
                out.push_str(list);
                out.push_str("[]");
            }
        } else {
            out.push_str(head);
            out.push_str(name);
        }
        rest = &rest[start + 2 + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_read_as_the_principal_attributes_they_stand_for() {
        assert_eq!(
            symbolic(r#"(practice_id == "$P.attr.practice_id" && author_id == "$P.id")"#),
            "(practice_id == P.attr.practice_id && author_id == P.id)"
        );
        assert_eq!(
            symbolic(r#"(patient_state == "$P.attr.licensed_states[]" && x == "7")"#),
            r#"(patient_state in P.attr.licensed_states && x == "7")"#
        );
        assert_eq!(
            symbolic(r#"(a || patient_state != "$P.attr.licensed_states[]")"#),
            "(a || !(patient_state in P.attr.licensed_states))"
        );
    }
}
