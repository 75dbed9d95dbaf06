//! Partial evaluation of a compiled condition with the principal, action and context known and the
//! resource's attributes unknown: the answer is a pair of filters, the rows where the condition
//! is true and the rows where it is false. A row in neither is one where evaluating it would fail
//! (an absent attribute, a type error), which Check treats as "does not allow" in an allow rule
//! and "denies" in a deny rule.
//!
//! Sub-expressions that do not depend on the resource are evaluated by the `cel` interpreter
//! itself, so functions and operators keep their exact semantics. Only the connectives that
//! combine resource-dependent parts are interpreted here: `&&`, `||`, `!`, `?:`, comparisons and
//! `in` between an attribute and known values, `has()`, and `exists`/`all` over known lists
//! (unrolled). Anything else that touches the resource is [`Unsupported`], never approximated.

use std::collections::HashMap;
use std::sync::Arc;

use ::cel::common::ast::{operators, CallExpr, ComprehensionExpr, Expr, IdedExpr};
use ::cel::common::value::{CowVal, Val};
use ::cel::context::VariableResolver;
use ::cel::objects::Key;
use ::cel::Context;

use super::walk::{self, Scope, Verdict};
use super::{Condition, Environment, Value};
use crate::filter::{CmpOp, Filter};

/// What partial evaluation knows: everything but the resource's unknown attributes.
pub struct Known<'a, 'r> {
    pub principal: &'a Value<'r>,
    pub action: &'a Value<'r>,
    pub context: &'a Value<'r>,
    /// The resource kind (`R.kind`).
    pub kind: &'a str,
    /// Resource attributes fixed by the caller (a JSON object); null means known to be absent.
    pub attributes: &'a serde_json::Value,
}

/// The rows where a condition is true, and where it is false.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub when_true: Filter,
    pub when_false: Filter,
}

/// A condition, or part of one, that no filter can express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Condition {
    /// Partially evaluates this condition.
    pub fn partial(
        &self,
        environment: &Environment,
        known: &Known<'_, '_>,
    ) -> Result<Truth, Unsupported> {
        let mut evaluator = Evaluator {
            environment,
            known,
            locals: Vec::new(),
        };
        let value = evaluator.eval(self.program.expression())?;
        let (when_true, when_false) = truth(value);
        Ok(Truth {
            when_true: when_true.simplify(),
            when_false: when_false.simplify(),
        })
    }
}

/// A partially evaluated expression.
#[derive(Debug, Clone)]
enum Partial {
    /// Independent of the resource: a value or an evaluation error.
    Known(Result<::cel::Value, String>),
    /// `R`.
    Resource,
    /// `R.attr`.
    ResourceAttributes,
    /// `R.attr.<path>`, unknown (possibly absent).
    Attribute(String),
    /// A boolean depending on the resource: (rows where true, rows where false).
    Bool(Filter, Filter),
}

fn known_bool(b: bool) -> Partial {
    Partial::Known(Ok(::cel::Value::Bool(b)))
}

fn known_error(message: impl Into<String>) -> Partial {
    Partial::Known(Err(message.into()))
}

/// (rows where true, rows where false) of a value used as a condition.
fn truth(p: Partial) -> (Filter, Filter) {
    match p {
        Partial::Known(Ok(::cel::Value::Bool(true))) => (Filter::True, Filter::False),
        Partial::Known(Ok(::cel::Value::Bool(false))) => (Filter::False, Filter::True),
        Partial::Known(_) | Partial::Resource | Partial::ResourceAttributes => {
            (Filter::False, Filter::False)
        }
        Partial::Attribute(a) => (
            Filter::compare(CmpOp::Eq, &a, serde_json::Value::Bool(true)),
            Filter::compare(CmpOp::Eq, &a, serde_json::Value::Bool(false)),
        ),
        Partial::Bool(t, f) => (t, f),
    }
}

/// The partial boolean with these truth sets, folded to a known value when it is one.
fn from_truth(t: Filter, f: Filter) -> Partial {
    match (t.simplify(), f.simplify()) {
        (Filter::True, Filter::False) => known_bool(true),
        (Filter::False, Filter::True) => known_bool(false),
        (Filter::False, Filter::False) => known_error("not a bool"),
        (t, f) => Partial::Bool(t, f),
    }
}

fn is_known_bool(p: &Result<Partial, Unsupported>, b: bool) -> bool {
    matches!(p, Ok(Partial::Known(Ok(::cel::Value::Bool(x)))) if *x == b)
}

/// A CEL value as a JSON literal for a filter: strings, numbers, bools and null only.
fn scalar(v: &::cel::Value) -> Option<serde_json::Value> {
    use ::cel::Value as V;
    Some(match v {
        V::String(s) => serde_json::Value::String(s.to_string()),
        V::Int(i) => serde_json::Value::from(*i),
        V::UInt(u) => serde_json::Value::from(*u),
        V::Float(f) => serde_json::Number::from_f64(*f).map(serde_json::Value::Number)?,
        V::Bool(b) => serde_json::Value::Bool(*b),
        V::Null => serde_json::Value::Null,
        _ => return None,
    })
}

fn json_to_cel(j: &serde_json::Value) -> ::cel::Value {
    use ::cel::Value as V;
    match j {
        serde_json::Value::Null => V::Null,
        serde_json::Value::Bool(b) => V::Bool(*b),
        serde_json::Value::Number(n) => V::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => V::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            V::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(m) => {
            let map: HashMap<Key, V> = m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json_to_cel(v)))
                .collect();
            V::Map(::cel::objects::Map { map: Arc::new(map) })
        }
    }
}

struct Evaluator<'e, 'k, 'a, 'r> {
    environment: &'e Environment,
    known: &'k Known<'a, 'r>,
    /// Comprehension variables, innermost last.
    locals: Vec<(String, Partial)>,
}

/// Resolves `P`, `A`, `C` and known comprehension variables for the interpreter.
struct KnownBindings<'a, 'r> {
    principal: &'a Value<'r>,
    action: &'a Value<'r>,
    context: &'a Value<'r>,
    locals: Vec<(String, Box<dyn Val>)>,
}

impl VariableResolver for KnownBindings<'_, '_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        if let Some((_, v)) = self.locals.iter().rev().find(|(name, _)| name == variable) {
            return Some(CowVal::Borrowed(v.as_ref()));
        }
        let value = match variable {
            "P" => self.principal,
            "A" => self.action,
            "C" => self.context,
            _ => return None,
        };
        Some(CowVal::Borrowed(value.val()))
    }
}

impl Evaluator<'_, '_, '_, '_> {
    fn local(&self, name: &str) -> Option<&Partial> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p)
    }

    /// Whether `e` can be evaluated by the interpreter: it mentions neither `R` nor a variable
    /// bound to something unknown.
    fn is_known(&self, e: &IdedExpr) -> bool {
        walk::all(e, &mut Scope::default(), &mut |e, scope| match &e.expr {
            Expr::Ident(name) if scope.binds(name) => Verdict::Yes,
            Expr::Ident(name) => match self.local(name) {
                Some(Partial::Known(_)) => Verdict::Yes,
                Some(_) => Verdict::No,
                None if name == "R" => Verdict::No,
                None => Verdict::Yes,
            },
            Expr::Struct(_) => Verdict::No,
            _ => Verdict::Descend,
        })
    }

    /// Evaluates a resource-independent expression with the interpreter.
    fn interpret(&self, e: &IdedExpr) -> Result<::cel::Value, String> {
        let mut locals = Vec::new();
        for (name, p) in &self.locals {
            if let Partial::Known(Ok(v)) = p {
                let boxed: Box<dyn Val> =
                    Box::<dyn Val>::try_from(v.clone()).map_err(|e| e.to_string())?;
                locals.push((name.clone(), boxed));
            }
        }
        let bindings = KnownBindings {
            principal: self.known.principal,
            action: self.known.action,
            context: self.known.context,
            locals,
        };
        let mut context = Context::with_env(Arc::clone(&self.environment.env));
        context.set_variable_resolver(&bindings);
        let result = ::cel::Value::resolve(e, &context)
            .map_err(|e| super::eval::describe_execution_error(&e));
        drop(context);
        result
    }

    fn eval(&mut self, e: &IdedExpr) -> Result<Partial, Unsupported> {
        if self.is_known(e) {
            return Ok(Partial::Known(self.interpret(e)));
        }
        match &e.expr {
            Expr::Ident(name) => match self.local(name) {
                Some(p) => Ok(p.clone()),
                None if name == "R" => Ok(Partial::Resource),
                None => Err(Unsupported(format!("unknown variable '{name}'"))),
            },
            Expr::Select(s) => {
                let operand = self.eval(&s.operand)?;
                self.select(operand, &s.field, s.test)
            }
            Expr::Call(call) => self.call(call),
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::List(_) | Expr::Map(_) | Expr::Struct(_) => Err(Unsupported(
                "a list or map literal built from resource attributes".into(),
            )),
            Expr::Literal(_) | Expr::Unspecified => {
                Err(Unsupported("unexpected expression".into()))
            }
        }
    }

    fn known_attribute(&self, path: &str) -> Option<Partial> {
        let mut current = self.known.attributes;
        for segment in path.split('.') {
            match current.as_object() {
                Some(object) => match object.get(segment) {
                    Some(next) => current = next,
                    None => return None,
                },
                None => return None,
            }
        }
        Some(if current.is_null() {
            known_error(format!("missing attribute '{path}'"))
        } else {
            Partial::Known(Ok(json_to_cel(current)))
        })
    }

    fn select(&self, operand: Partial, field: &str, test: bool) -> Result<Partial, Unsupported> {
        Ok(match operand {
            Partial::Resource => match (field, test) {
                ("attr", false) => Partial::ResourceAttributes,
                ("kind", false) => Partial::Known(Ok(::cel::Value::String(Arc::new(
                    self.known.kind.to_string(),
                )))),
                ("id", false) => return Err(Unsupported("R.id cannot be used in a filter".into())),
                ("attr" | "kind" | "id", true) => known_bool(true),
                (_, true) => known_bool(false),
                (other, false) => known_error(format!("missing attribute '{other}'")),
            },
            Partial::ResourceAttributes => match (self.known_attribute(field), test) {
                (Some(Partial::Known(v)), true) => known_bool(v.is_ok()),
                (Some(p), false) => p,
                (_, true) => {
                    from_truth(Filter::exists(field), Filter::negate(Filter::exists(field)))
                }
                (_, false) => Partial::Attribute(field.to_string()),
            },
            Partial::Attribute(path) => {
                let nested = format!("{path}.{field}");
                if test {
                    from_truth(
                        Filter::exists(&nested),
                        Filter::And(vec![
                            Filter::exists(&path),
                            Filter::negate(Filter::exists(&nested)),
                        ]),
                    )
                } else {
                    Partial::Attribute(nested)
                }
            }
            Partial::Known(Ok(::cel::Value::Map(map))) => {
                let key = Key::String(Arc::new(field.to_string()));
                match (map.map.get(&key), test) {
                    (found, true) => known_bool(found.is_some()),
                    (Some(v), false) => Partial::Known(Ok(v.clone())),
                    (None, false) => known_error(format!("missing attribute '{field}'")),
                }
            }
            Partial::Known(Err(e)) => known_error(e),
            Partial::Known(Ok(_)) | Partial::Bool(..) => {
                known_error(format!("no field '{field}' on a non-map value"))
            }
        })
    }

    fn call(&mut self, call: &CallExpr) -> Result<Partial, Unsupported> {
        let args = &call.args;
        match (call.func_name.as_str(), args.len(), call.target.is_some()) {
            (operators::LOGICAL_AND, 2, false) => self.logical(&args[0], &args[1], true),
            (operators::LOGICAL_OR, 2, false) => self.logical(&args[0], &args[1], false),
            (operators::LOGICAL_NOT, 1, false) => {
                let (t, f) = truth(self.eval(&args[0])?);
                Ok(from_truth(f, t))
            }
            (operators::NOT_STRICTLY_FALSE, 1, false) => {
                let (_, f) = truth(self.eval(&args[0])?);
                Ok(from_truth(Filter::negate(f.clone()), f))
            }
            (operators::CONDITIONAL, 3, false) => {
                let condition = self.eval(&args[0])?;
                match condition {
                    Partial::Known(Ok(::cel::Value::Bool(true))) => self.eval(&args[1]),
                    Partial::Known(Ok(::cel::Value::Bool(false))) => self.eval(&args[2]),
                    Partial::Known(_) => Ok(known_error("condition of ?: is not a bool")),
                    other => {
                        let (tc, fc) = truth(other);
                        let (tx, fx) = truth(self.eval(&args[1])?);
                        let (ty, fy) = truth(self.eval(&args[2])?);
                        Ok(from_truth(
                            Filter::Or(vec![
                                Filter::And(vec![tc.clone(), tx]),
                                Filter::And(vec![fc.clone(), ty]),
                            ]),
                            Filter::Or(vec![Filter::And(vec![tc, fx]), Filter::And(vec![fc, fy])]),
                        ))
                    }
                }
            }
            (
                op @ (operators::EQUALS
                | operators::NOT_EQUALS
                | operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS),
                2,
                false,
            ) => {
                let op = match op {
                    operators::EQUALS => CmpOp::Eq,
                    operators::NOT_EQUALS => CmpOp::Ne,
                    operators::LESS => CmpOp::Lt,
                    operators::LESS_EQUALS => CmpOp::Le,
                    operators::GREATER => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                let left = self.eval(&args[0])?;
                let right = self.eval(&args[1])?;
                compare(op, left, right)
            }
            (operators::IN, 2, false) => {
                let left = self.eval(&args[0])?;
                let right = self.eval(&args[1])?;
                self.membership(left, right)
            }
            (name, _, _) => Err(Unsupported(format!(
                "function '{}' applied to resource attributes",
                name.trim_matches('_')
            ))),
        }
    }

    fn logical(
        &mut self,
        a: &IdedExpr,
        b: &IdedExpr,
        is_and: bool,
    ) -> Result<Partial, Unsupported> {
        // The value that decides regardless of the other side (and of errors there).
        let absorbing = !is_and;
        let left = self.eval(a);
        if is_known_bool(&left, absorbing) {
            return Ok(known_bool(absorbing));
        }
        let right = self.eval(b);
        if is_known_bool(&right, absorbing) {
            return Ok(known_bool(absorbing));
        }
        let (ta, fa) = truth(left?);
        let (tb, fb) = truth(right?);
        Ok(if is_and {
            from_truth(Filter::And(vec![ta, tb]), Filter::Or(vec![fa, fb]))
        } else {
            from_truth(Filter::Or(vec![ta, tb]), Filter::And(vec![fa, fb]))
        })
    }

    fn membership(&self, element: Partial, container: Partial) -> Result<Partial, Unsupported> {
        use ::cel::Value as V;
        Ok(match (element, container) {
            (Partial::Known(Err(e)), _) | (_, Partial::Known(Err(e))) => known_error(e),
            (Partial::Attribute(a), Partial::Known(Ok(container))) => {
                let items: Vec<&V> = match &container {
                    V::List(items) => items.iter().collect(),
                    V::Map(map) => return self.membership_keys(&a, map),
                    _ => return Ok(known_error("'in' needs a list or map")),
                };
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    match scalar(item) {
                        Some(serde_json::Value::Null) => {}
                        Some(v) => values.push(v),
                        None => {
                            return Err(Unsupported("'in' over a list of lists or maps".into()))
                        }
                    }
                }
                let is_in = Filter::In {
                    attribute: a.clone(),
                    values,
                };
                from_truth(
                    is_in.clone(),
                    Filter::And(vec![Filter::exists(&a), Filter::negate(is_in)]),
                )
            }
            (Partial::Known(Ok(element)), Partial::Attribute(a)) => match scalar(&element) {
                Some(v) if !v.is_null() => {
                    let contains = Filter::Contains {
                        attribute: a.clone(),
                        value: v,
                    };
                    from_truth(
                        contains.clone(),
                        Filter::And(vec![Filter::exists(&a), Filter::negate(contains)]),
                    )
                }
                _ => {
                    return Err(Unsupported(
                        "'in' a list attribute needs a string, number or bool".into(),
                    ))
                }
            },
            (Partial::Known(Ok(V::String(key))), Partial::ResourceAttributes) => {
                match self.known_attribute(&key) {
                    Some(Partial::Known(v)) => known_bool(v.is_ok()),
                    _ => from_truth(Filter::exists(&key), Filter::negate(Filter::exists(&key))),
                }
            }
            _ => return Err(Unsupported("'in' between these operands".into())),
        })
    }

    fn membership_keys(
        &self,
        attribute: &str,
        map: &::cel::objects::Map,
    ) -> Result<Partial, Unsupported> {
        let mut values = Vec::with_capacity(map.map.len());
        for key in map.map.keys() {
            values.push(match key {
                Key::String(s) => serde_json::Value::String(s.to_string()),
                Key::Int(i) => serde_json::Value::from(*i),
                Key::Uint(u) => serde_json::Value::from(*u),
                Key::Bool(b) => serde_json::Value::Bool(*b),
            });
        }
        let is_in = Filter::In {
            attribute: attribute.to_string(),
            values,
        };
        Ok(from_truth(
            is_in.clone(),
            Filter::And(vec![Filter::exists(attribute), Filter::negate(is_in)]),
        ))
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Result<Partial, Unsupported> {
        let range = self.eval(&c.iter_range)?;
        let items: Vec<::cel::Value> = match range {
            Partial::Known(Err(e)) => return Ok(known_error(e)),
            Partial::Known(Ok(::cel::Value::List(items))) => items.iter().cloned().collect(),
            Partial::Known(Ok(::cel::Value::Map(map))) => map
                .map
                .keys()
                .map(|k| match k {
                    Key::String(s) => ::cel::Value::String(Arc::clone(s)),
                    Key::Int(i) => ::cel::Value::Int(*i),
                    Key::Uint(u) => ::cel::Value::UInt(*u),
                    Key::Bool(b) => ::cel::Value::Bool(*b),
                })
                .collect(),
            Partial::Known(Ok(_)) => {
                return Ok(known_error("comprehension over a non-iterable value"))
            }
            _ => {
                return Err(Unsupported(
                    "a macro (exists, all, ...) over a resource attribute".into(),
                ))
            }
        };
        // Only the all()/exists() shape, `@result && x` / `@result || x`, folds into a filter.
        let folds = matches!(&c.loop_step.expr, Expr::Call(call)
            if call.target.is_none()
                && (call.func_name == operators::LOGICAL_AND || call.func_name == operators::LOGICAL_OR)
                && matches!(call.args.first().map(|a| &a.expr), Some(Expr::Ident(n)) if *n == c.accu_var));
        if !folds || c.iter_var2.is_some() {
            return Err(Unsupported(
                "this macro (map, filter, exists_one) over resource attributes".into(),
            ));
        }
        let mut accu = self.eval(&c.accu_init)?;
        let depth = self.locals.len();
        for item in items {
            self.locals.push((c.accu_var.clone(), accu.clone()));
            let go_on = self.eval(&c.loop_cond);
            self.locals.truncate(depth);
            if is_known_bool(&go_on, false) {
                break;
            }
            self.locals
                .push((c.iter_var.clone(), Partial::Known(Ok(item))));
            self.locals.push((c.accu_var.clone(), accu));
            let step = self.eval(&c.loop_step);
            self.locals.truncate(depth);
            accu = step?;
        }
        self.locals.push((c.accu_var.clone(), accu));
        let result = self.eval(&c.result);
        self.locals.truncate(depth);
        result
    }
}

/// A comparison where at least one side depends on the resource.
fn compare(op: CmpOp, left: Partial, right: Partial) -> Result<Partial, Unsupported> {
    use Partial as P;
    Ok(match (left, right) {
        (P::Known(Err(e)), _) | (_, P::Known(Err(e))) => known_error(e),
        (P::Attribute(a), P::Known(Ok(v))) => compare_attribute(op, &a, &v)?,
        (P::Known(Ok(v)), P::Attribute(a)) => compare_attribute(op.flipped(), &a, &v)?,
        (P::Bool(t, f), P::Known(Ok(v))) | (P::Known(Ok(v)), P::Bool(t, f)) => match (op, v) {
            (CmpOp::Eq, ::cel::Value::Bool(b)) | (CmpOp::Ne, ::cel::Value::Bool(b)) => {
                let same = (op == CmpOp::Eq) == b;
                if same {
                    from_truth(t, f)
                } else {
                    from_truth(f, t)
                }
            }
            (CmpOp::Eq, _) => from_truth(Filter::False, Filter::Or(vec![t, f])),
            (CmpOp::Ne, _) => from_truth(Filter::Or(vec![t, f]), Filter::False),
            _ => return Err(Unsupported("ordering a boolean condition".into())),
        },
        (P::Known(Ok(a)), P::Known(Ok(b))) => match (scalar(&a), scalar(&b)) {
            (Some(x), Some(y)) => {
                let eq = crate::filter::cel_equal(&x, &y);
                let ord = crate::filter::cel_compare(&x, &y);
                match op {
                    CmpOp::Eq => known_bool(eq),
                    CmpOp::Ne => known_bool(!eq),
                    _ => match ord {
                        None => known_error("values are not comparable"),
                        Some(o) => known_bool(match op {
                            CmpOp::Lt => o.is_lt(),
                            CmpOp::Le => o.is_le(),
                            CmpOp::Gt => o.is_gt(),
                            _ => o.is_ge(),
                        }),
                    },
                }
            }
            _ => return Err(Unsupported("comparing lists or maps".into())),
        },
        _ => {
            return Err(Unsupported(
                "comparing two resource attributes, or a resource with a value".into(),
            ))
        }
    })
}

/// `R.attr.<a> op v`.
fn compare_attribute(op: CmpOp, a: &str, v: &::cel::Value) -> Result<Partial, Unsupported> {
    let Some(value) = scalar(v) else {
        return match op {
            // A list or map never orders against anything: always an error.
            CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => {
                Ok(known_error("values are not comparable"))
            }
            _ => Err(Unsupported(
                "comparing an attribute with a list or map".into(),
            )),
        };
    };
    if value.is_null() {
        // A present attribute is never null: == null is false, != null is true; absent is an error.
        return Ok(match op {
            CmpOp::Eq => from_truth(Filter::False, Filter::exists(a)),
            CmpOp::Ne => from_truth(Filter::exists(a), Filter::False),
            _ => known_error("null is not comparable"),
        });
    }
    Ok(from_truth(
        Filter::compare(op, a, value.clone()),
        Filter::compare(op.complement(), a, value),
    ))
}
