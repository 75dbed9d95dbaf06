//! A condition's cost budget: an upper bound, found once at load, on the steps evaluating it can
//! take, as a function of the sizes of the request values it iterates over or scans; checked
//! against the request's actual sizes before the condition runs.
//!
//! The interpreter cannot be interrupted inside a condition, and a comprehension over a
//! request-supplied list (`R.attr.tags.exists(t, P.attr.groups.exists(g, g == t))`) costs the
//! product of two sizes the caller chooses. So the bound is computed instead: a comprehension
//! costs its range's size times its body, `in` a list the list's size, `+` the sizes it copies
//! (a `map` or `filter` accumulates by copying: quadratic), and sizes come from the request (the
//! elements of a list, the members of a map, at a path of `P`, `R` or `C`). A condition whose
//! bound exceeds the budget for this request is not evaluated: it fails, which the engine turns
//! into a deny (fail closed) naming the rule.
//!
//! The model counts interpreter steps (AST nodes visited, list elements compared or copied) and
//! never under-counts them: where the size of a value cannot be traced to a path (an element of a
//! list of lists), it is bounded by the size of the whole request. Work the interpreter hands to
//! native code in one step (comparing or searching strings, at gigabytes a second) counts as one
//! step. Conditions that iterate over nothing from the request have a constant bound and cost
//! nothing to check.

use ::cel::common::ast::{operators, EntryExpr, Expr, IdedExpr};
use serde_json::Value as Json;

use super::walk::Scope;
use crate::request::{Principal, Resource};

/// An upper bound on a number of steps or on a size.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Const(u64),
    /// The size of the request value at a path (`R.attr.tags`): its elements if a list, its
    /// members if a map, 1 for any other value, 0 if absent.
    Size(String),
    /// The size of the whole request: every list element, map member and string byte of `P`, `R`
    /// and `C`, a bound on any value the condition can reach.
    Total,
    Sum(Vec<Bound>),
    Product(Vec<Bound>),
}

impl Bound {
    fn sum(parts: impl IntoIterator<Item = Bound>) -> Bound {
        let mut constant = 0u64;
        let mut rest = Vec::new();
        for part in parts {
            match part {
                Bound::Const(c) => constant = constant.saturating_add(c),
                Bound::Sum(inner) => rest.extend(inner),
                other => rest.push(other),
            }
        }
        if rest.is_empty() {
            return Bound::Const(constant);
        }
        if constant > 0 {
            rest.push(Bound::Const(constant));
        }
        if rest.len() == 1 {
            rest.pop().expect("one")
        } else {
            Bound::Sum(rest)
        }
    }

    fn product(a: Bound, b: Bound) -> Bound {
        match (a, b) {
            (Bound::Const(0), _) | (_, Bound::Const(0)) => Bound::Const(0),
            (Bound::Const(1), x) | (x, Bound::Const(1)) => x,
            (Bound::Const(x), Bound::Const(y)) => Bound::Const(x.saturating_mul(y)),
            (x, y) => Bound::Product(vec![x, y]),
        }
    }

    /// Whether the bound depends on the request at all.
    pub fn is_constant(&self) -> bool {
        matches!(self, Bound::Const(_))
    }

    /// The bound for this request's values.
    pub fn evaluate(&self, sizes: &Sizes<'_>) -> u64 {
        match self {
            Bound::Const(c) => *c,
            Bound::Size(path) => sizes.size(path),
            Bound::Total => sizes.total(),
            Bound::Sum(parts) => parts
                .iter()
                .fold(0u64, |acc, p| acc.saturating_add(p.evaluate(sizes))),
            Bound::Product(parts) => parts
                .iter()
                .fold(1u64, |acc, p| acc.saturating_mul(p.evaluate(sizes))),
        }
    }
}

/// The sizes of one decision's request values.
pub struct Sizes<'r> {
    pub principal: &'r Principal,
    pub resource: &'r Resource,
    pub context: &'r Json,
    total: std::cell::OnceCell<u64>,
}

impl<'r> Sizes<'r> {
    pub fn new(principal: &'r Principal, resource: &'r Resource, context: &'r Json) -> Self {
        Sizes {
            principal,
            resource,
            context,
            total: std::cell::OnceCell::new(),
        }
    }

    /// The size at a dotted path below `P`, `R` or `C`.
    fn size(&self, path: &str) -> u64 {
        let mut segments = path.split('.');
        let root = segments.next().unwrap_or("");
        let field = segments.next();
        let strings = |items: &[String]| items.len() as u64;
        // Where the walk starts, and the first segment to take from there (`C`'s is the field).
        let (json, first) = match (root, field) {
            ("P", Some("id" | "client_id")) => return 1,
            ("P", Some("roles")) => return strings(&self.principal.roles),
            ("P", Some("capabilities")) => return strings(&self.principal.capabilities),
            ("P", Some("scopes")) => return strings(&self.principal.scopes),
            ("P", Some("attr")) => (&self.principal.attr, None),
            ("R", Some("id" | "kind")) => return 1,
            ("R", Some("attr")) => (&self.resource.attr, None),
            ("C", Some(first)) => (self.context, Some(first)),
            // `P`, `R` or `C` whole, or an unknown field: the whole request bounds it.
            _ => return self.total(),
        };
        let mut current = json;
        for segment in first.into_iter().chain(segments) {
            match current.get(segment) {
                Some(next) => current = next,
                None => return 0,
            }
        }
        match current {
            Json::Array(items) => items.len() as u64,
            Json::Object(members) => members.len() as u64,
            _ => 1,
        }
    }

    fn total(&self) -> u64 {
        *self.total.get_or_init(|| {
            fn nodes(v: &Json) -> u64 {
                match v {
                    Json::Array(items) => 1 + items.iter().map(nodes).sum::<u64>(),
                    Json::Object(m) => 1 + m.values().map(nodes).sum::<u64>(),
                    _ => 1,
                }
            }
            let p = self.principal;
            nodes(&p.attr)
                + (p.roles.len() + p.capabilities.len() + p.scopes.len() + 2) as u64
                + nodes(&self.resource.attr)
                + 2
                + nodes(self.context)
        })
    }
}

/// The bound on the steps evaluating `e` takes.
pub fn bound(e: &IdedExpr) -> Bound {
    let mut model = Model {
        scope: Scope::default(),
        elements: Vec::new(),
    };
    model.cost(e)
}

struct Model {
    scope: Scope,
    /// Comprehension variables and a bound on the size of their values, innermost last.
    elements: Vec<(String, Bound)>,
}

/// The request path a chain of field selections spells (`R.attr.tags`).
fn request_path(e: &IdedExpr, scope: &Scope) -> Option<String> {
    match &e.expr {
        Expr::Ident(name) if matches!(name.as_str(), "P" | "R" | "C") && !scope.binds(name) => {
            Some(name.clone())
        }
        // The optimizer's dotted names (`R.attr.tags`), should a rewritten expression come here.
        Expr::Ident(name) if name.contains('.') => {
            let root = name.split('.').next().unwrap_or("");
            (matches!(root, "P" | "R" | "C") && !scope.binds(root)).then(|| name.clone())
        }
        Expr::Select(s) if !s.test => {
            request_path(&s.operand, scope).map(|p| format!("{p}.{}", s.field))
        }
        _ => None,
    }
}

impl Model {
    /// An upper bound on the size (list length, string length, map members) of `e`'s value.
    fn size(&mut self, e: &IdedExpr) -> Bound {
        if let Some(path) = request_path(e, &self.scope) {
            return Bound::Size(path);
        }
        match &e.expr {
            Expr::Literal(_) => Bound::Const(1),
            Expr::List(list) => Bound::Const(list.elements.len() as u64),
            Expr::Map(map) => Bound::Const(map.entries.len() as u64),
            Expr::Ident(name) => self
                .elements
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.clone())
                .unwrap_or(Bound::Total),
            Expr::Call(call)
                if call.target.is_none()
                    && call.args.len() == 2
                    && call.func_name == operators::ADD =>
            {
                let (a, b) = (self.size(&call.args[0]), self.size(&call.args[1]));
                Bound::sum([a, b])
            }
            Expr::Call(call)
                if call.target.is_none()
                    && call.args.len() == 3
                    && call.func_name == operators::CONDITIONAL =>
            {
                let (a, b) = (self.size(&call.args[1]), self.size(&call.args[2]));
                Bound::sum([a, b])
            }
            // `map` and `filter` give at most one element per iteration.
            Expr::Comprehension(c) => self.size(&c.iter_range),
            _ => Bound::Total,
        }
    }

    fn cost(&mut self, e: &IdedExpr) -> Bound {
        match &e.expr {
            Expr::Literal(_) | Expr::Ident(_) | Expr::Unspecified => Bound::Const(1),
            Expr::Select(s) => Bound::sum([Bound::Const(1), self.cost(&s.operand)]),
            Expr::List(list) => {
                let parts: Vec<Bound> = list.elements.iter().map(|x| self.cost(x)).collect();
                Bound::sum(std::iter::once(Bound::Const(1)).chain(parts))
            }
            Expr::Map(map) => {
                let mut parts = vec![Bound::Const(1)];
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(me) => {
                            parts.push(self.cost(&me.key));
                            parts.push(self.cost(&me.value));
                        }
                        EntryExpr::StructField(sf) => parts.push(self.cost(&sf.value)),
                    }
                }
                Bound::sum(parts)
            }
            Expr::Struct(_) => Bound::Total,
            Expr::Call(call) => {
                let mut parts = vec![Bound::Const(1)];
                let operands: Vec<&IdedExpr> = call
                    .target
                    .as_deref()
                    .into_iter()
                    .chain(&call.args)
                    .collect();
                for operand in &operands {
                    parts.push(self.cost(operand));
                }
                // Operations that go through lists element by element: `in` a list, and `+`
                // copying two lists into a new one.
                match (call.func_name.as_str(), call.args.as_slice()) {
                    (operators::IN, [_, container]) => parts.push(self.size(container)),
                    (operators::ADD, [a, b]) => {
                        parts.push(self.size(a));
                        parts.push(self.size(b));
                    }
                    _ => {}
                }
                Bound::sum(parts)
            }
            Expr::Comprehension(c) => {
                let iterations = self.size(&c.iter_range);
                let range = self.cost(&c.iter_range);
                let init = self.cost(&c.accu_init);
                // An element of a list at a request path is bounded by the whole request.
                let depth = self.elements.len();
                self.elements.push((c.iter_var.clone(), Bound::Total));
                if let Some(second) = &c.iter_var2 {
                    self.elements.push((second.clone(), Bound::Total));
                }
                // The accumulator (`map`, `filter`) grows by at most one element per iteration.
                let initial = self.size(&c.accu_init);
                self.elements.push((
                    c.accu_var.clone(),
                    Bound::sum([iterations.clone(), initial]),
                ));
                let scope = self.scope.clone();
                self.scope = scope_with(&self.scope, c);
                let body = Bound::sum([self.cost(&c.loop_cond), self.cost(&c.loop_step)]);
                let result = self.cost(&c.result);
                self.scope = scope;
                self.elements.truncate(depth);
                Bound::sum([range, init, Bound::product(iterations, body), result])
            }
        }
    }
}

/// `scope` with a comprehension's variables bound.
fn scope_with(scope: &Scope, c: &::cel::common::ast::ComprehensionExpr) -> Scope {
    let mut inner = scope.clone();
    inner.bind(&c.iter_var);
    if let Some(second) = &c.iter_var2 {
        inner.bind(second);
    }
    inner.bind(&c.accu_var);
    inner
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::Environment;
    use serde_json::json;

    fn bound_of(source: &str) -> Bound {
        let env = Environment::default();
        bound(env.compile(source).unwrap().expression())
    }

    fn steps(source: &str, principal: Json, resource_attr: Json) -> u64 {
        let p: Principal = Principal {
            roles: vec!["a".into(), "b".into()],
            attr: principal,
            ..Default::default()
        };
        let r = Resource {
            kind: "K".into(),
            id: "1".into(),
            attr: resource_attr,
        };
        let context = json!({});
        bound_of(source).evaluate(&Sizes::new(&p, &r, &context))
    }

    #[test]
    fn conditions_without_iteration_over_the_request_are_constant() {
        for source in [
            "R.attr.practice_id == P.attr.practice_id",
            "has(R.attr.x) && R.attr.x > 3",
            "[1, 2, 3].exists(x, x == 2)",
        ] {
            assert!(
                bound_of(source).is_constant(),
                "{source}: {:?}",
                bound_of(source)
            );
        }
        assert!(!bound_of("R.attr.tags.exists(t, t == 'x')").is_constant());
        assert!(!bound_of("'x' in P.roles").is_constant());
    }

    #[test]
    fn nested_comprehensions_cost_the_product_of_the_sizes() {
        let tags: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        let groups: Vec<String> = (0..1000).map(|i| format!("g{i}")).collect();
        let source = "R.attr.tags.exists(t, P.attr.groups.exists(g, g == t))";
        let small = steps(source, json!({"groups": ["g"]}), json!({"tags": ["t"]}));
        let large = steps(source, json!({"groups": groups}), json!({"tags": tags}));
        assert!(small < 100, "{small}");
        assert!(large >= 100 * 1000, "{large}");
        // Absent lists iterate nothing.
        assert!(steps(source, json!({}), json!({})) < 50);
    }

    #[test]
    fn scans_cost_the_size_of_what_they_scan() {
        let list: Vec<i32> = (0..5000).collect();
        let cost = steps(
            "3 in R.attr.numbers",
            json!({}),
            json!({"numbers": list.clone()}),
        );
        assert!(cost >= 5000, "{cost}");
        // `map` accumulates by copying: quadratic.
        let cost = steps(
            "R.attr.numbers.map(x, x * 2).size() > 0",
            json!({}),
            json!({"numbers": list}),
        );
        assert!(cost >= 5000 * 5000, "{cost}");
        // A string is one value, whatever its length.
        let long = "x".repeat(100_000);
        assert!(
            steps(
                "R.attr.name.contains('y')",
                json!({}),
                json!({"name": long})
            ) < 20
        );
    }

    #[test]
    fn lists_of_lists_are_bounded_by_the_whole_request() {
        let rows: Vec<Vec<i32>> = (0..50).map(|_| (0..50).collect()).collect();
        let cost = steps(
            "R.attr.rows.exists(row, row.exists(x, x == 7))",
            json!({}),
            json!({"rows": rows}),
        );
        assert!(cost >= 50 * 50, "{cost}");
    }
}
