//! The one walk over a condition's expression that every analysis shares: the direct children of
//! a node, each with the comprehension variables in scope where it sits.
//!
//! A comprehension (`exists`, `all`, `map`...) evaluates its range and initial accumulator in the
//! enclosing scope, and its condition, step and result with its iteration and accumulator
//! variables bound: a `R` bound there is not the resource. Projection, the optimizer, reference
//! checks, partial evaluation and the type checker all need exactly that rule, so it lives here.

use ::cel::common::ast::{EntryExpr, Expr, IdedExpr};

/// The variables bound by the comprehensions enclosing a node, innermost last.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scope {
    bound: Vec<String>,
}

impl Scope {
    /// Whether `name` is a comprehension variable here (and so not a request variable).
    pub(crate) fn binds(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
    }

    /// Binds `name` (a comprehension variable) for what is walked next.
    pub(crate) fn bind(&mut self, name: &str) {
        self.bound.push(name.to_string());
    }
}

/// Calls `f` on each direct child of `e`, in evaluation order, with `scope` holding the
/// comprehension variables bound where that child is.
pub(crate) fn each_child<'e>(
    e: &'e IdedExpr,
    scope: &mut Scope,
    f: &mut impl FnMut(&'e IdedExpr, &mut Scope),
) {
    match &e.expr {
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                f(target, scope);
            }
            for arg in &call.args {
                f(arg, scope);
            }
        }
        Expr::Select(select) => f(&select.operand, scope),
        Expr::List(list) => list.elements.iter().for_each(|x| f(x, scope)),
        Expr::Map(map) => {
            for entry in &map.entries {
                match &entry.expr {
                    EntryExpr::MapEntry(me) => {
                        f(&me.key, scope);
                        f(&me.value, scope);
                    }
                    EntryExpr::StructField(sf) => f(&sf.value, scope),
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(sf) = &entry.expr {
                    f(&sf.value, scope);
                }
            }
        }
        Expr::Comprehension(c) => {
            f(&c.iter_range, scope);
            f(&c.accu_init, scope);
            let depth = scope.bound.len();
            scope.bound.push(c.iter_var.clone());
            scope.bound.extend(c.iter_var2.clone());
            scope.bound.push(c.accu_var.clone());
            f(&c.loop_cond, scope);
            f(&c.loop_step, scope);
            f(&c.result, scope);
            scope.bound.truncate(depth);
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Like [`each_child`], for rewriting children in place.
pub(crate) fn each_child_mut(
    e: &mut IdedExpr,
    scope: &mut Scope,
    f: &mut impl FnMut(&mut IdedExpr, &mut Scope),
) {
    match &mut e.expr {
        Expr::Call(call) => {
            if let Some(target) = call.target.as_deref_mut() {
                f(target, scope);
            }
            for arg in &mut call.args {
                f(arg, scope);
            }
        }
        Expr::Select(select) => f(&mut select.operand, scope),
        Expr::List(list) => list.elements.iter_mut().for_each(|x| f(x, scope)),
        Expr::Map(map) => {
            for entry in &mut map.entries {
                match &mut entry.expr {
                    EntryExpr::MapEntry(me) => {
                        f(&mut me.key, scope);
                        f(&mut me.value, scope);
                    }
                    EntryExpr::StructField(sf) => f(&mut sf.value, scope),
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &mut s.entries {
                if let EntryExpr::StructField(sf) = &mut entry.expr {
                    f(&mut sf.value, scope);
                }
            }
        }
        Expr::Comprehension(c) => {
            f(&mut c.iter_range, scope);
            f(&mut c.accu_init, scope);
            let depth = scope.bound.len();
            scope.bound.push(c.iter_var.clone());
            scope.bound.extend(c.iter_var2.clone());
            scope.bound.push(c.accu_var.clone());
            f(&mut c.loop_cond, scope);
            f(&mut c.loop_step, scope);
            f(&mut c.result, scope);
            scope.bound.truncate(depth);
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Whether `pred` holds for `e` and, where it returns `Descend`, for all of its descendants.
pub(crate) fn all(
    e: &IdedExpr,
    scope: &mut Scope,
    pred: &mut impl FnMut(&IdedExpr, &Scope) -> Verdict,
) -> bool {
    match pred(e, scope) {
        Verdict::Yes => true,
        Verdict::No => false,
        Verdict::Descend => {
            let mut ok = true;
            each_child(e, scope, &mut |child, scope| {
                ok = ok && all(child, scope, pred);
            });
            ok
        }
    }
}

/// What [`all`]'s predicate says of one node.
pub(crate) enum Verdict {
    /// Holds for the node and everything below it.
    Yes,
    /// Fails.
    No,
    /// Holds for the node itself; look at its children.
    Descend,
}
