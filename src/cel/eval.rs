//! Evaluating a compiled condition against request values: the variable resolver that binds `P`,
//! `R`, `A`, `C` (answering whole dotted names in one walk), and the result as a bool or an error.

use std::fmt;
use std::sync::Arc;

use ::cel::common::ast::IdedExpr;
use ::cel::common::types::{CelBool, CelString};
use ::cel::common::value::{CowVal, Val};
use ::cel::context::VariableResolver;
use ::cel::Context;

use super::record::split_first;
use super::{Condition, Environment, Value};

/// The outcome of evaluating a condition that did not produce a boolean.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Condition {
    /// The CEL text this condition was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed expression, for walking (partial evaluation).
    pub fn expression(&self) -> &IdedExpr {
        self.program.expression()
    }

    /// Evaluates the condition in `context`. A result that is not a boolean is an error.
    ///
    /// The rewritten expression runs first; should it fail, the condition as written runs
    /// again, so that the error is the one the condition's own text explains (an absent field
    /// named as the interpreter names it when selecting step by step).
    pub fn eval_bool(&self, context: &EvalContext<'_>) -> Result<bool, EvalError> {
        self.eval_expression(&self.evaluated, context)
            .or_else(|_| self.eval_expression(self.program.expression(), context))
    }

    pub(super) fn eval_expression(
        &self,
        expression: &IdedExpr,
        context: &EvalContext<'_>,
    ) -> Result<bool, EvalError> {
        let value = ::cel::Value::resolve_val(expression, &context.context)
            .map_err(|e| EvalError(describe_execution_error(&e)))?;
        match value.downcast_ref::<CelBool>() {
            Some(b) => Ok(*b.inner()),
            None => Err(EvalError(format!(
                "condition evaluated to a {}, not a bool",
                value.get_type().name()
            ))),
        }
    }
}

pub(super) fn describe_execution_error(e: &::cel::ExecutionError) -> String {
    match e {
        ::cel::ExecutionError::NoSuchKey(key) => format!("missing attribute '{key}'"),
        other => other.to_string(),
    }
}

/// The four variables a condition sees, borrowed for one evaluation.
pub(super) struct Bindings<'a, 'r> {
    principal: &'a Value<'r>,
    resource: &'a Value<'r>,
    action: &'a Value<'r>,
    context: &'a Value<'r>,
}

impl<'r> Bindings<'_, 'r> {
    pub(super) fn variable(&self, name: &str) -> Option<&Value<'r>> {
        match name {
            "P" => Some(self.principal),
            "R" => Some(self.resource),
            "A" => Some(self.action),
            "C" => Some(self.context),
            _ => None,
        }
    }
}

/// The field `name` of a map, borrowed.
fn select<'b, 'r>(value: &'b (dyn Val + 'r), name: &str) -> Option<&'b (dyn Val + 'r)> {
    match value.as_indexer()?.get(&CelString::from(name)).ok()? {
        CowVal::Borrowed(field) => Some(field),
        CowVal::Owned(_) => None,
    }
}

impl VariableResolver for Bindings<'_, '_> {
    /// `P`, `R`, `A`, `C`, and a whole dotted name below one of them (`R.attr.practice_id`) when
    /// every field on the way is present: conditions name fields that way (see [`optimize`]),
    /// which spares the interpreter its search prefix by prefix. `None` otherwise.
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let (root, path) = split_first(variable);
        let value = self.variable(root)?;
        let Some(path) = path else {
            return Some(CowVal::Borrowed(value.val()));
        };
        let (mut current, mut rest) = value.path(path);
        while let Some(path) = rest {
            let (field, tail) = split_first(path);
            current = select(current, field)?;
            rest = tail;
        }
        Some(CowVal::Borrowed(current))
    }
}

/// What the conditions of one (resource, action) decision are evaluated against. Build it once per
/// decision and evaluate every candidate rule in it.
pub struct EvalContext<'s> {
    pub(super) context: Context<'s, 's>,
}

/// The values of `P`, `R`, `A` and `C` for one decision.
pub struct Activation<'a, 'r> {
    pub(super) bindings: Bindings<'a, 'r>,
}

impl<'a, 'r> Activation<'a, 'r> {
    pub fn new(
        principal: &'a Value<'r>,
        resource: &'a Value<'r>,
        action: &'a Value<'r>,
        context: &'a Value<'r>,
    ) -> Self {
        Activation {
            bindings: Bindings {
                principal,
                resource,
                action,
                context,
            },
        }
    }

    /// A context evaluating conditions of `environment` against these values.
    pub fn context<'s>(&'s self, environment: &Environment) -> EvalContext<'s> {
        let mut context = Context::with_env(Arc::clone(&environment.env));
        context.set_variable_resolver(&self.bindings);
        EvalContext { context }
    }
}
