//! Which parts of `P` and `R` a policy set's conditions can read, found once at load, so that a
//! request builds only those CEL values (a resource may carry dozens of attributes that no
//! condition mentions).
//!
//! The analysis is conservative: a field or attribute is left out only when no condition can
//! reach it. Any use of `P`, `R`, `P.attr` or `R.attr` other than selecting a named field (passing
//! it whole, indexing it with `[]`, iterating it, `in` on it) keeps it whole.

use std::collections::BTreeSet;

use ::cel::common::ast::{EntryExpr, Expr, IdedExpr};

use super::{Condition, Value};
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
}

impl Needed {
    fn field(&self, name: &str) -> bool {
        self.whole || self.fields.contains(name)
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
        let mut bound = Vec::new();
        self.walk(condition.expression(), &mut bound);
    }

    fn variable(&mut self, name: &str) -> Option<&mut Needed> {
        match name {
            "P" => Some(&mut self.principal),
            "R" => Some(&mut self.resource),
            _ => None,
        }
    }

    /// The root variable and field path of a chain of selections, e.g. `R.attr.x` -> (R, [attr, x]).
    fn chain<'e>(e: &'e IdedExpr, bound: &[String]) -> Option<(&'e str, Vec<&'e str>)> {
        let mut path = Vec::new();
        let mut current = e;
        loop {
            match &current.expr {
                Expr::Select(s) => {
                    path.push(s.field.as_str());
                    current = &s.operand;
                }
                Expr::Ident(name)
                    if (name == "P" || name == "R") && !bound.iter().any(|b| b == name) =>
                {
                    path.reverse();
                    return Some((name.as_str(), path));
                }
                _ => return None,
            }
        }
    }

    fn walk(&mut self, e: &IdedExpr, bound: &mut Vec<String>) {
        if let Some((root, path)) = Self::chain(e, bound) {
            let needed = self.variable(root).expect("P or R");
            match path.as_slice() {
                [] => needed.whole = true,
                ["attr"] => {
                    needed.fields.insert("attr".into());
                    needed.attr_whole = true;
                }
                ["attr", key, ..] => {
                    needed.fields.insert("attr".into());
                    needed.attr_keys.insert(key.to_string());
                }
                [field, ..] => {
                    needed.fields.insert(field.to_string());
                }
            }
            return;
        }
        match &e.expr {
            Expr::Select(s) => self.walk(&s.operand, bound),
            Expr::Call(c) => {
                if let Some(t) = &c.target {
                    self.walk(t, bound);
                }
                for a in &c.args {
                    self.walk(a, bound);
                }
            }
            Expr::List(l) => l.elements.iter().for_each(|x| self.walk(x, bound)),
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            self.walk(&me.key, bound);
                            self.walk(&me.value, bound);
                        }
                        EntryExpr::StructField(sf) => self.walk(&sf.value, bound),
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(sf) = &entry.expr {
                        self.walk(&sf.value, bound);
                    }
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, bound);
                self.walk(&c.accu_init, bound);
                let depth = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.clone());
                bound.push(c.accu_var.clone());
                self.walk(&c.loop_cond, bound);
                self.walk(&c.loop_step, bound);
                self.walk(&c.result, bound);
                bound.truncate(depth);
            }
            Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    /// The CEL value of `P`, with only what is needed.
    pub fn principal<'r>(&self, p: &'r Principal) -> Value<'r> {
        let n = &self.principal;
        let mut fields: Vec<(&'r str, Value<'r>)> = Vec::with_capacity(6);
        if n.field("id") {
            fields.push(("id", Value::string(&p.id)));
        }
        if n.field("roles") {
            fields.push(("roles", Value::string_list(&p.roles)));
        }
        if n.field("capabilities") {
            fields.push(("capabilities", Value::string_list(&p.capabilities)));
        }
        if n.field("scopes") {
            fields.push(("scopes", Value::string_list(&p.scopes)));
        }
        if n.field("client_id") {
            fields.push(("client_id", Value::string(&p.client_id)));
        }
        if n.field("attr") {
            fields.push((
                "attr",
                Value::from_json_object_keys(&p.attr, n.attr_filter()),
            ));
        }
        Value::map(fields)
    }

    /// The CEL value of `R`, with only what is needed.
    pub fn resource<'r>(&self, r: &'r Resource) -> Value<'r> {
        let n = &self.resource;
        let mut fields: Vec<(&'r str, Value<'r>)> = Vec::with_capacity(3);
        if n.field("kind") {
            fields.push(("kind", Value::string(&r.kind)));
        }
        if n.field("id") {
            fields.push(("id", Value::string(&r.id)));
        }
        if n.field("attr") {
            fields.push((
                "attr",
                Value::from_json_object_keys(&r.attr, n.attr_filter()),
            ));
        }
        Value::map(fields)
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
