//! Rewrites of a compiled condition's expression, made once at load, that give the same value and
//! the same errors in the `cel` interpreter but cost it less.
//!
//! The interpreter builds an overload error eagerly each time it evaluates `!x`, whether or not `x`
//! is a bool, and drops it when it is: `!` is the most expensive operator of a typical condition.
//! So a negation of something that can only be a bool or an error becomes a comparison:
//! `!(a == b)` is `a != b`, `!(a != b)` is `a == b`, and `!x` is `x == false`. Both sides of `==`
//! are evaluated strictly, so an error in `x` is still the result.
//!
//! A chain of field selections on a request variable, `R.attr.practice_id`, becomes one
//! identifier of that dotted name: the interpreter splits and re-joins a select chain on every
//! evaluation, then asks for it prefix by prefix, while the variable resolver answers the whole
//! name in one walk. (Should the rewritten condition fail, `Condition::eval_bool` runs the
//! condition as written to get the error the interpreter gives for it, so messages still name the
//! absent field.)
//! Chains on a comprehension variable that shadows `P`, `R` or `C` are left alone.

use ::cel::common::ast::{operators, CallExpr, Expr, IdedExpr, LiteralValue};
use ::cel::common::types::CelBool;

use super::walk::{each_child_mut, Scope};

/// The expression to evaluate in place of `e`.
pub(super) fn optimize(mut e: IdedExpr) -> IdedExpr {
    rewrite(&mut e, &mut Scope::default());
    e
}

/// The variables whose field chains become dotted names.
const REQUEST_VARIABLES: [&str; 3] = ["P", "R", "C"];

/// `R.attr.x` as the name `R.attr.x`, if `e` is such a chain of at least one field on a request
/// variable that no comprehension of the condition shadows.
fn dotted_name(e: &IdedExpr, scope: &Scope) -> Option<String> {
    let mut fields = Vec::new();
    let mut current = e;
    loop {
        match &current.expr {
            Expr::Select(select) if !select.test => {
                fields.push(select.field.as_str());
                current = &select.operand;
            }
            Expr::Ident(root)
                if !fields.is_empty()
                    && REQUEST_VARIABLES.contains(&root.as_str())
                    && !scope.binds(root) =>
            {
                fields.push(root.as_str());
                fields.reverse();
                return Some(fields.join("."));
            }
            _ => return None,
        }
    }
}

fn rewrite(e: &mut IdedExpr, scope: &mut Scope) {
    if let Some(name) = dotted_name(e, scope) {
        e.expr = Expr::Ident(name);
        return;
    }
    // Children first, so that a rewritten child is seen by its parent.
    each_child_mut(e, scope, &mut |child, scope| rewrite(child, scope));
    if let Expr::Comprehension(c) = &mut e.expr {
        // `exists` and `all` stop on `!accumulator`, which builds the same overload error on
        // every iteration. Their accumulator starts as a bool and stays one (a failing step fails
        // the whole comprehension), so the negation can be a comparison too.
        if matches!(c.accu_init.expr, Expr::Literal(LiteralValue::Boolean(_))) {
            let accu = c.accu_var.clone();
            negate_as_comparison(&mut c.loop_cond, &accu);
        }
        return;
    }
    let Expr::Call(call) = &mut e.expr else {
        return;
    };
    if call.func_name != operators::LOGICAL_NOT || call.target.is_some() || call.args.len() != 1 {
        return;
    }
    let operand = &mut call.args[0];
    if !is_boolean(operand) {
        return;
    }
    let operand = std::mem::take(operand);
    e.expr = match operand.expr {
        Expr::Call(inner)
            if inner.target.is_none()
                && inner.args.len() == 2
                && (inner.func_name == operators::EQUALS
                    || inner.func_name == operators::NOT_EQUALS) =>
        {
            let func_name = if inner.func_name == operators::EQUALS {
                operators::NOT_EQUALS
            } else {
                operators::EQUALS
            };
            Expr::Call(CallExpr {
                func_name: func_name.to_string(),
                target: None,
                args: inner.args,
            })
        }
        other => Expr::Call(CallExpr {
            func_name: operators::EQUALS.to_string(),
            target: None,
            args: vec![
                IdedExpr {
                    id: operand.id,
                    expr: other,
                },
                IdedExpr {
                    id: e.id,
                    expr: Expr::Literal(LiteralValue::Boolean(CelBool::from(false))),
                },
            ],
        }),
    };
}

/// Rewrites `!accu` in `e` (a comprehension's loop condition) as `accu == false`.
fn negate_as_comparison(e: &mut IdedExpr, accu: &str) {
    let id = e.id;
    if let Expr::Call(call) = &mut e.expr {
        let negates_accu = call.func_name == operators::LOGICAL_NOT
            && call.target.is_none()
            && matches!(call.args.as_slice(), [IdedExpr { expr: Expr::Ident(name), .. }] if name == accu);
        if negates_accu {
            let operand = call.args.remove(0);
            e.expr = Expr::Call(CallExpr {
                func_name: operators::EQUALS.to_string(),
                target: None,
                args: vec![
                    operand,
                    IdedExpr {
                        id,
                        expr: Expr::Literal(LiteralValue::Boolean(CelBool::from(false))),
                    },
                ],
            });
            return;
        }
        for arg in &mut call.args {
            negate_as_comparison(arg, accu);
        }
    }
}

/// Whether `e` evaluates to a bool or fails: the operators that return nothing else.
fn is_boolean(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Literal(LiteralValue::Boolean(_)) => true,
        Expr::Select(select) => select.test,
        Expr::Call(call) if call.target.is_none() => matches!(
            (call.func_name.as_str(), call.args.len()),
            (
                operators::EQUALS
                    | operators::NOT_EQUALS
                    | operators::LESS
                    | operators::LESS_EQUALS
                    | operators::GREATER
                    | operators::GREATER_EQUALS
                    | operators::IN
                    | operators::LOGICAL_AND
                    | operators::LOGICAL_OR,
                2
            ) | (operators::LOGICAL_NOT, 1)
        ),
        _ => false,
    }
}
