//! Which parts of `P` and `R` a policy set's conditions can read, found once at load, so that a
//! request builds only those CEL values (a resource may carry dozens of attributes that no
//! condition mentions).
//!
//! The analysis is conservative: a field or attribute is left out only when no condition can
//! reach it. Any use of `P`, `R`, `P.attr` or `R.attr` other than selecting a named field (passing
//! it whole, indexing it with `[]`, iterating it, `in` on it) keeps it whole.

use std::collections::BTreeSet;

use ::cel::common::ast::{Expr, IdedExpr};

use super::walk::{each_child, Scope};
use super::{Condition, Fields, Value};
use crate::request::{Principal, Resource};

/// What of one variable (`P` or `R`) is needed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needed {
    /// The whole value is needed.
    pub whole: bool,
    /// Top-level fields read (`id`, `roles`, `attr`...).
    pub fields: BTreeSet<String>,
    /// The whole `attr` map is needed.
    pub attr_whole: bool,
    /// `attr` keys read.
    pub attr_keys: BTreeSet<String>,
    /// `fields` as bits of [`FIELDS`], for the request path.
    mask: u8,
}

/// The fields of `P` and `R` a request can supply, as bits of [`Needed`]'s mask.
const FIELDS: [&str; 7] = [
    "id",
    "roles",
    "capabilities",
    "scopes",
    "client_id",
    "attr",
    "kind",
];
const ID: u8 = 1;
const ROLES: u8 = 1 << 1;
const CAPABILITIES: u8 = 1 << 2;
const SCOPES: u8 = 1 << 3;
const CLIENT_ID: u8 = 1 << 4;
const ATTR: u8 = 1 << 5;
const KIND: u8 = 1 << 6;

impl Needed {
    fn insert_field(&mut self, name: &str) {
        if let Some(i) = FIELDS.iter().position(|f| *f == name) {
            self.mask |= 1 << i;
        }
        self.fields.insert(name.to_string());
    }

    /// Whether the field with this bit is needed.
    fn field(&self, bit: u8) -> bool {
        self.whole || self.mask & bit != 0
    }

    /// How many fields a request builds.
    fn capacity(&self) -> usize {
        if self.whole {
            FIELDS.len()
        } else {
            self.mask.count_ones() as usize
        }
    }

    fn attr_filter(&self) -> Option<&BTreeSet<String>> {
        (!(self.whole || self.attr_whole)).then_some(&self.attr_keys)
    }
}

/// What of `P` and `R` a policy set needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    pub principal: Needed,
    pub resource: Needed,
}

impl Projection {
    /// Everything: what a caller without a policy set must build.
    pub fn all() -> Projection {
        let whole = Needed {
            whole: true,
            ..Default::default()
        };
        Projection {
            principal: whole.clone(),
            resource: whole,
        }
    }

    /// Adds what `condition` reads.
    pub fn add(&mut self, condition: &Condition) {
        self.walk(condition.expression(), &mut Scope::default());
    }

    fn variable(&mut self, name: &str) -> Option<&mut Needed> {
        match name {
            "P" => Some(&mut self.principal),
            "R" => Some(&mut self.resource),
            _ => None,
        }
    }

    /// The root variable and field path of a chain of selections, e.g. `R.attr.x` -> (R, [attr, x]).
    fn chain<'e>(e: &'e IdedExpr, scope: &Scope) -> Option<(&'e str, Vec<&'e str>)> {
        let mut path = Vec::new();
        let mut current = e;
        loop {
            match &current.expr {
                Expr::Select(s) => {
                    path.push(s.field.as_str());
                    current = &s.operand;
                }
                Expr::Ident(name) if (name == "P" || name == "R") && !scope.binds(name) => {
                    path.reverse();
                    return Some((name.as_str(), path));
                }
                _ => return None,
            }
        }
    }

    fn walk(&mut self, e: &IdedExpr, scope: &mut Scope) {
        if let Some((root, path)) = Self::chain(e, scope) {
            let needed = self.variable(root).expect("P or R");
            match path.as_slice() {
                [] => needed.whole = true,
                ["attr"] => {
                    needed.insert_field("attr");
                    needed.attr_whole = true;
                }
                ["attr", key, ..] => {
                    needed.insert_field("attr");
                    needed.attr_keys.insert(key.to_string());
                }
                [field, ..] => needed.insert_field(field),
            }
            return;
        }
        each_child(e, scope, &mut |child, scope| self.walk(child, scope));
    }

    /// The CEL value of `P`, with only what is needed: a record when conditions only select its
    /// fields, the `cel` crate's map when some condition uses it whole.
    pub fn principal<'r>(&self, p: &'r Principal) -> Value<'r> {
        let n = &self.principal;
        let mut fields = Fields::new(n.whole, n.capacity());
        if n.field(ID) {
            fields.string("id", &p.id);
        }
        if n.field(ROLES) {
            fields.strings("roles", &p.roles);
        }
        if n.field(CAPABILITIES) {
            fields.strings("capabilities", &p.capabilities);
        }
        if n.field(SCOPES) {
            fields.strings("scopes", &p.scopes);
        }
        if n.field(CLIENT_ID) {
            fields.string("client_id", &p.client_id);
        }
        if n.field(ATTR) {
            fields.value(
                "attr",
                Value::from_json_object_keys(&p.attr, n.attr_filter()),
            );
        }
        fields.finish()
    }

    /// The CEL value of `R`, with only what is needed, like [`principal`](Self::principal).
    pub fn resource<'r>(&self, r: &'r Resource) -> Value<'r> {
        let n = &self.resource;
        let mut fields = Fields::new(n.whole, n.capacity());
        if n.field(KIND) {
            fields.string("kind", &r.kind);
        }
        if n.field(ID) {
            fields.string("id", &r.id);
        }
        if n.field(ATTR) {
            fields.value(
                "attr",
                Value::from_json_object_keys(&r.attr, n.attr_filter()),
            );
        }
        fields.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::Environment;

    fn projection(conditions: &[&str]) -> Projection {
        let env = Environment::default();
        let mut p = Projection::default();
        for c in conditions {
            p.add(&env.compile(c).unwrap());
        }
        p
    }

    #[test]
    fn named_fields_and_attributes_are_collected() {
        let p = projection(&[
            "R.attr.practice_id == P.attr.practice_id && 'nurse' in P.roles",
            "has(R.attr.celebrity)",
        ]);
        assert_eq!(
            p.principal.fields,
            ["attr", "roles"].map(String::from).into()
        );
        assert_eq!(
            p.principal.attr_keys,
            ["practice_id"].map(String::from).into()
        );
        assert_eq!(
            p.resource.attr_keys,
            ["celebrity", "practice_id"].map(String::from).into()
        );
        assert!(!p.principal.whole && !p.resource.attr_whole);
    }

    #[test]
    fn any_other_use_keeps_the_value_whole() {
        assert!(projection(&["size(R.attr) > 2"]).resource.attr_whole);
        assert!(projection(&["'x' in P.attr"]).principal.attr_whole);
        assert!(projection(&["R.attr['x'] == 1"]).resource.attr_whole);
        assert!(
            projection(&["P.attr.exists(k, k == 'x')"])
                .principal
                .attr_whole
        );
        assert!(projection(&["[P][0].id == 'x'"]).principal.whole);
        // A comprehension variable named R is not the resource.
        let shadowed = projection(&["P.roles.exists(R, R == 'x')"]);
        assert!(!shadowed.resource.whole && shadowed.resource.fields.is_empty());
    }

    #[test]
    fn projected_values_evaluate_like_whole_ones() {
        let env = Environment::default();
        let sources =
            ["R.attr.practice_id == P.attr.practice_id && P.id == 'dr' && !has(R.attr.gone)"];
        let p = projection(&sources);
        let principal: Principal = serde_json::from_value(serde_json::json!({"id": "dr", "roles": ["x"], "attr": {"practice_id": "7", "ssn": "1"}})).unwrap();
        let resource: Resource = serde_json::from_value(
            serde_json::json!({"kind": "K", "id": "1", "attr": {"practice_id": "7", "name": "n"}}),
        )
        .unwrap();
        let condition = env.compile(sources[0]).unwrap();
        for (pv, rv) in [
            (p.principal(&principal), p.resource(&resource)),
            (
                Projection::all().principal(&principal),
                Projection::all().resource(&resource),
            ),
        ] {
            let action = Value::string("read");
            let json = serde_json::json!({});
            let context = Value::from_json(&json);
            let activation = crate::cel::Activation::new(&pv, &rv, &action, &context);
            let ctx = activation.context(&env);
            assert_eq!(condition.eval_bool(&ctx), Ok(true));
        }
    }
}
