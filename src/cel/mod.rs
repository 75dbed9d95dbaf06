//! The only module that touches the `cel` crate: compiling conditions, checking what they refer
//! to, binding request values and evaluating.
//!
//! A [`Condition`] is compiled once, when a policy set is loaded; compiling also rejects
//! references to unknown variables and functions (the `cel` crate has no type checker, so this is
//! where typos are caught). On the request path, [`Bindings`] borrow values built once per
//! request ([`Value`]s converted from the request's JSON attributes without copying strings), an
//! [`Activation`] names them `P`, `R`, `A`, `C`, and [`Condition::eval_bool`] runs the compiled
//! program in its [`EvalContext`].
//!
//! [`partial`] evaluates a condition with the resource unknown, for row filters.
//!
//! Must not know about policies, rules, gRPC or I/O: it speaks CEL, JSON and filters.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ::cel::common::ast::{Expr, IdedExpr};
use ::cel::common::types::{CelBool, CelDouble, CelList, CelMap, CelMapKey, CelString};
use ::cel::common::value::{CowVal, Val};
use ::cel::context::VariableResolver;
use ::cel::{Context, Env, Program};

use crate::request::{Principal, Resource};

mod optimize;
pub mod partial;
pub mod projection;
mod record;

use record::{split_first, Field, Record};

/// The names conditions use for the request: principal, resource, action, context.
pub const VARIABLES: [&str; 4] = ["P", "R", "A", "C"];

/// The CEL environment every condition of a policy set is compiled and evaluated in: the standard
/// library, nothing else. Built once per policy set.
#[derive(Clone)]
pub struct Environment {
    env: Arc<Env>,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            env: Arc::new(Env::stdlib()),
        }
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Environment(stdlib)")
    }
}

/// Why a condition failed to compile. `column` is 1-based, within the condition's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    /// 1-based line and column inside the condition text, when known.
    pub position: Option<(usize, usize)>,
}

impl CompileError {
    /// The message followed by the offending line of `source` with a caret under the position.
    pub fn render(&self, source: &str) -> String {
        match self.position {
            Some((line, column)) => {
                let text = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
                format!(
                    "{}\n    | {}\n    | {:>width$}",
                    self.message,
                    text,
                    "^",
                    width = column.max(1)
                )
            }
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{}: {}", line, column, self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A compiled CEL condition, with the text it came from.
pub struct Condition {
    program: Program,
    /// The program's expression as evaluated: rewritten to cost less, same results.
    evaluated: IdedExpr,
    source: String,
}

impl Condition {
    fn new(program: Program, source: &str) -> Condition {
        Condition {
            evaluated: optimize::optimize(program.expression().clone()),
            program,
            source: source.to_string(),
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

/// Named conditions a condition may use by bare name: name -> CEL text with no names left in it.
pub type NamedConditions = HashMap<String, String>;

impl Environment {
    /// Compiles `source` and checks that it refers only to `P`, `R`, `A`, `C` (and variables its
    /// own macros introduce) and to functions the environment declares.
    pub fn compile(&self, source: &str) -> Result<Condition, CompileError> {
        self.compile_with(source, &NamedConditions::new())
            .map(|(c, _)| c)
    }

    /// Like [`compile`](Self::compile), but `source` may also use the named conditions in
    /// `names`, which are inlined (parenthesised) before compiling: no cost at evaluation. Returns
    /// the condition and the names it used.
    pub fn compile_with(
        &self,
        source: &str,
        names: &NamedConditions,
    ) -> Result<(Condition, Vec<String>), CompileError> {
        let program = self.parse(source)?;
        let references = self.references(&program, names)?;
        if references.is_empty() {
            // Nothing to inline: the program parsed and checked above is the condition.
            return Ok((Condition::new(program, source), Vec::new()));
        }
        let (expanded, used) = inline(source, references, names)?;
        let program = self.env.compile(&expanded).map_err(|e| CompileError {
            message: format!(
                "internal error: the condition with named conditions inlined does not parse ({e})"
            ),
            position: None,
        })?;
        Ok((Condition::new(program, source), used))
    }

    /// Parses and checks `source`, then returns its text with every named condition it uses
    /// replaced by `(<that condition's text>)`, and the names used.
    pub fn expand(
        &self,
        source: &str,
        names: &NamedConditions,
    ) -> Result<(String, Vec<String>), CompileError> {
        let program = self.parse(source)?;
        let references = self.references(&program, names)?;
        inline(source, references, names)
    }

    /// Checks what `program` refers to; returns the spans of the named conditions it uses.
    fn references(
        &self,
        program: &Program,
        names: &NamedConditions,
    ) -> Result<Vec<(usize, usize, String)>, CompileError> {
        let mut problems = Vec::new();
        let mut references = Vec::new();
        let mut scope = Vec::new();
        self.check_references(
            program.expression(),
            &mut scope,
            program,
            names,
            &mut references,
            &mut problems,
        );
        match problems.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(references),
        }
    }

    fn parse(&self, source: &str) -> Result<Program, CompileError> {
        self.env.compile(source).map_err(|errors| {
            let first = errors.errors.first();
            CompileError {
                message: first
                    .map(|e| format!("syntax error: {}", e.msg))
                    .unwrap_or_else(|| "syntax error".to_string()),
                position: first.and_then(|e| {
                    (e.pos.0 > 0).then_some((e.pos.0 as usize, (e.pos.1.max(0) as usize) + 1))
                }),
            }
        })
    }

    /// Whether the environment declares a function (global or member) of this name.
    fn has_function(&self, name: &str) -> bool {
        // The cel crate does not expose its overload table; adding a function of a declared name
        // to a context is refused with OverloadConflict, which tells us it exists.
        let mut probe = Context::with_env(Arc::clone(&self.env));
        probe.add_function(name, |x: i64| x).is_err()
    }

    /// Collects problems (unknown variables and functions) and the spans (start, inclusive stop)
    /// of free identifiers naming a named condition.
    fn check_references(
        &self,
        e: &IdedExpr,
        scope: &mut Vec<String>,
        program: &Program,
        names: &NamedConditions,
        references: &mut Vec<(usize, usize, String)>,
        problems: &mut Vec<CompileError>,
    ) {
        let position = |id: u64| -> Option<(usize, usize)> {
            let (start, _) = program.source_info().offset_for(id)?;
            let source = &program.source_info().source;
            let start = start as usize;
            let before = source.get(..start)?;
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            Some((line, column))
        };
        match &e.expr {
            Expr::Ident(name) => {
                if VARIABLES.contains(&name.as_str()) || scope.iter().any(|s| s == name) {
                    return;
                }
                if names.contains_key(name) {
                    match program.source_info().offset_for(e.id) {
                        Some((start, stop)) => {
                            references.push((start as usize, stop as usize, name.clone()))
                        }
                        None => problems.push(CompileError {
                            message: format!("cannot locate the use of named condition '{name}'"),
                            position: None,
                        }),
                    }
                } else {
                    let close = names.keys().filter(|n| similar(n, name)).min();
                    let hint = VARIABLES
                        .iter()
                        .find(|v| name.eq_ignore_ascii_case(v) || name.starts_with(*v))
                        .map(|v| format!(" (did you mean '{v}'?)"))
                        .or_else(|| close.map(|c| format!(" (did you mean the condition '{c}'?)")))
                        .unwrap_or_else(|| {
                            " (conditions see P, R, A, C and the named conditions of the policy set)".to_string()
                        });
                    problems.push(CompileError {
                        message: format!("unknown variable '{name}'{hint}"),
                        position: position(e.id),
                    });
                }
            }
            Expr::Call(call) => {
                let operator = call.func_name.starts_with('_')
                    || call.func_name.starts_with('!')
                    || call.func_name.starts_with('@');
                if !operator && !self.has_function(&call.func_name) {
                    problems.push(CompileError {
                        message: format!("unknown function '{}'", call.func_name),
                        position: position(e.id),
                    });
                }
                if let Some(target) = &call.target {
                    self.check_references(target, scope, program, names, references, problems);
                }
                for arg in &call.args {
                    self.check_references(arg, scope, program, names, references, problems);
                }
            }
            Expr::Select(select) => {
                self.check_references(&select.operand, scope, program, names, references, problems)
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.check_references(element, scope, program, names, references, problems);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let ::cel::common::ast::EntryExpr::MapEntry(entry) = &entry.expr {
                        self.check_references(
                            &entry.key, scope, program, names, references, problems,
                        );
                        self.check_references(
                            &entry.value,
                            scope,
                            program,
                            names,
                            references,
                            problems,
                        );
                    }
                }
            }
            Expr::Comprehension(c) => {
                self.check_references(&c.iter_range, scope, program, names, references, problems);
                self.check_references(&c.accu_init, scope, program, names, references, problems);
                let depth = scope.len();
                scope.push(c.iter_var.clone());
                if let Some(second) = &c.iter_var2 {
                    scope.push(second.clone());
                }
                scope.push(c.accu_var.clone());
                self.check_references(&c.loop_cond, scope, program, names, references, problems);
                self.check_references(&c.loop_step, scope, program, names, references, problems);
                self.check_references(&c.result, scope, program, names, references, problems);
                scope.truncate(depth);
            }
            Expr::Struct(_) => problems.push(CompileError {
                message: "message construction is not supported in conditions".to_string(),
                position: position(e.id),
            }),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}

/// `source` with each referenced span replaced by `(<named condition text>)`, and the names used.
fn inline(
    source: &str,
    mut references: Vec<(usize, usize, String)>,
    names: &NamedConditions,
) -> Result<(String, Vec<String>), CompileError> {
    let mut expanded = source.to_string();
    let mut used: Vec<String> = Vec::new();
    // Replace from the end so earlier spans keep their offsets.
    references.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    for (start, stop, name) in references {
        let text = &names[&name];
        if !expanded.is_char_boundary(start) || !expanded.is_char_boundary(stop + 1) {
            return Err(CompileError {
                message: format!("cannot locate the use of named condition '{name}'"),
                position: None,
            });
        }
        expanded.replace_range(start..=stop, &format!("({text})"));
        if !used.contains(&name) {
            used.push(name);
        }
    }
    Ok((expanded, used))
}

/// Whether two names differ by at most two edits (for "did you mean" hints).
fn similar(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return false;
    }
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
    previous[b.len()] <= 2
}

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

    fn eval_expression(
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

fn describe_execution_error(e: &::cel::ExecutionError) -> String {
    match e {
        ::cel::ExecutionError::NoSuchKey(key) => format!("missing attribute '{key}'"),
        other => other.to_string(),
    }
}

/// A CEL value built from request data, borrowing its strings.
pub struct Value<'r>(Repr<'r>);

enum Repr<'r> {
    /// `P`, `R` or an `attr` bag whose conditions only select named fields.
    Record(Record<'r>),
    /// The common values inline, the rest boxed.
    String(CelString<'r>),
    Map(CelMap<'r>),
    Val(Box<dyn Val + 'r>),
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.val().fmt(f)
    }
}

impl<'r> Value<'r> {
    /// The value as the interpreter sees it.
    fn val(&self) -> &(dyn Val + 'r) {
        match &self.0 {
            Repr::Record(record) => record,
            Repr::String(s) => s,
            Repr::Map(map) => map,
            Repr::Val(val) => val.as_ref(),
        }
    }

    /// Walks the dotted `path` below this value through records: the value reached and the part
    /// of the path left to select from it the general way (`None` when all of it was walked).
    fn path<'p>(&self, path: &'p str) -> (&(dyn Val + 'r), Option<&'p str>) {
        match &self.0 {
            Repr::Record(record) => record.path(path),
            _ => (self.val(), Some(path)),
        }
    }

    /// This value as a record field.
    fn into_field(self) -> Field<'r> {
        match self.0 {
            Repr::Record(record) => Field::Record(record),
            Repr::String(s) => Field::String(s),
            Repr::Map(map) => Field::Other(Box::new(map)),
            Repr::Val(val) => Field::Other(val),
        }
    }

    /// Converts JSON into a CEL value. Numbers become doubles (as protobuf Struct numbers are);
    /// null members of objects are dropped, so a null attribute is the same as an absent one.
    pub fn from_json(json: &'r serde_json::Value) -> Value<'r> {
        Value(Repr::Val(json_to_val(json)))
    }

    /// Like [`Value::from_json`], but JSON null (an unset attribute bag) is an empty map.
    pub fn from_json_object(json: &'r serde_json::Value) -> Value<'r> {
        match json {
            serde_json::Value::Null => Value(Repr::Map(CelMap::from(HashMap::new()))),
            other => Value::from_json(other),
        }
    }

    /// Like [`Value::from_json_object`], keeping only `keys` of the top level (all if `None`).
    /// With keys, the value is a [`Record`]: conditions may only select those keys from it.
    pub fn from_json_object_keys(
        json: &'r serde_json::Value,
        keys: Option<&std::collections::BTreeSet<String>>,
    ) -> Value<'r> {
        let Some(keys) = keys else {
            return Value::from_json_object(json);
        };
        let mut record = Record::with_capacity(keys.len());
        if let serde_json::Value::Object(members) = json {
            for key in keys {
                if let Some((k, v)) = members.get_key_value(key.as_str()) {
                    if let Some(field) = json_to_field(v) {
                        record.push(k.as_str(), field);
                    }
                }
            }
        } else if !json.is_null() {
            // Not an object: keep it as it is, so that selecting a key fails as it would.
            return Value::from_json(json);
        }
        Value(Repr::Record(record))
    }

    /// A CEL string.
    pub fn string(s: &'r str) -> Value<'r> {
        Value(Repr::String(CelString::from(s)))
    }

    /// A CEL list of strings.
    pub fn string_list(items: &'r [String]) -> Value<'r> {
        Value(Repr::Val(Box::new(string_list(items))))
    }

    /// A CEL map with string keys.
    pub fn map(entries: impl IntoIterator<Item = (&'r str, Value<'r>)>) -> Value<'r> {
        let map: HashMap<CelMapKey<'r>, Box<dyn Val + 'r>> = entries
            .into_iter()
            .map(|(k, v)| {
                let val = match v.0 {
                    Repr::Record(record) => record.clone_as_boxed(),
                    Repr::String(s) => Box::new(s),
                    Repr::Map(map) => Box::new(map),
                    Repr::Val(val) => val,
                };
                (CelMapKey::from(k), val)
            })
            .collect();
        Value(Repr::Val(Box::new(CelMap::from(map))))
    }
}

/// Builds `P` or `R` field by field, straight into what it will be: a record when conditions only
/// select its fields, the crate's map when some condition uses it whole.
pub(crate) enum Fields<'r> {
    Record(Record<'r>),
    Map(Vec<(&'r str, Value<'r>)>),
}

impl<'r> Fields<'r> {
    pub(crate) fn new(whole: bool, capacity: usize) -> Self {
        if whole {
            Fields::Map(Vec::with_capacity(capacity))
        } else {
            Fields::Record(Record::with_capacity(capacity))
        }
    }

    pub(crate) fn string(&mut self, name: &'r str, s: &'r str) {
        match self {
            Fields::Record(record) => record.push(name, Field::String(CelString::from(s))),
            Fields::Map(map) => map.push((name, Value::string(s))),
        }
    }

    pub(crate) fn strings(&mut self, name: &'r str, items: &'r [String]) {
        match self {
            Fields::Record(record) => record.push(name, Field::List(string_list(items))),
            Fields::Map(map) => map.push((name, Value::string_list(items))),
        }
    }

    pub(crate) fn value(&mut self, name: &'r str, value: Value<'r>) {
        match self {
            Fields::Record(record) => record.push(name, value.into_field()),
            Fields::Map(map) => map.push((name, value)),
        }
    }

    pub(crate) fn finish(self) -> Value<'r> {
        match self {
            Fields::Record(record) => Value(Repr::Record(record)),
            Fields::Map(map) => Value::map(map),
        }
    }
}

fn string_list(items: &[String]) -> CelList<'_> {
    CelList::from(
        items
            .iter()
            .map(|s| Box::new(CelString::from(s.as_str())) as Box<dyn Val + '_>)
            .collect::<Vec<_>>(),
    )
}

/// A JSON attribute as a record field; `None` for null (an absent attribute).
fn json_to_field(json: &serde_json::Value) -> Option<Field<'_>> {
    use serde_json::Value as J;
    Some(match json {
        J::Null => return None,
        J::Bool(b) => Field::Bool(CelBool::from(*b)),
        J::Number(n) => Field::Double(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        J::String(s) => Field::String(CelString::from(s.as_str())),
        J::Array(items) => Field::List(CelList::from(
            items.iter().map(json_to_val).collect::<Vec<_>>(),
        )),
        J::Object(_) => Field::Other(json_to_val(json)),
    })
}

fn json_to_val(json: &serde_json::Value) -> Box<dyn Val + '_> {
    use serde_json::Value as J;
    match json {
        J::Null => Box::new(::cel::common::types::CelNull),
        J::Bool(b) => Box::new(CelBool::from(*b)),
        J::Number(n) => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        J::String(s) => Box::new(CelString::from(s.as_str())),
        J::Array(items) => Box::new(CelList::from(
            items.iter().map(json_to_val).collect::<Vec<_>>(),
        )),
        J::Object(members) => {
            let mut map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> =
                HashMap::with_capacity(members.len());
            for (k, v) in members.iter().filter(|(_, v)| !v.is_null()) {
                map.insert(CelMapKey::from(k.as_str()), json_to_val(v));
            }
            Box::new(CelMap::from(map))
        }
    }
}

/// The CEL value of `P`: `id`, `roles`, `capabilities`, `scopes`, `client_id`, `attr`.
pub fn principal_value(p: &Principal) -> Value<'_> {
    projection::Projection::all().principal(p)
}

/// The CEL value of `R`: `kind`, `id`, `attr`.
pub fn resource_value(r: &Resource) -> Value<'_> {
    projection::Projection::all().resource(r)
}

/// The four variables a condition sees, borrowed for one evaluation.
struct Bindings<'a, 'r> {
    principal: &'a Value<'r>,
    resource: &'a Value<'r>,
    action: &'a Value<'r>,
    context: &'a Value<'r>,
}

impl<'r> Bindings<'_, 'r> {
    fn variable(&self, name: &str) -> Option<&Value<'r>> {
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
    context: Context<'s, 's>,
}

/// The values of `P`, `R`, `A` and `C` for one decision.
pub struct Activation<'a, 'r> {
    bindings: Bindings<'a, 'r>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(source: &str, resource_attr: serde_json::Value) -> Result<bool, EvalError> {
        let env = Environment::default();
        let condition = env.compile(source).expect("compiles");
        let principal_attr = json!({"practice_id": "7", "licensed_states": ["CA", "NY"]});
        let roles = vec!["physician".to_string()];
        let principal = Value::map([
            ("id", Value::string("dr-1")),
            ("roles", Value::string_list(&roles)),
            ("attr", Value::from_json(&principal_attr)),
        ]);
        let resource = Value::map([("attr", Value::from_json(&resource_attr))]);
        let action = Value::string("read");
        let context_json = json!({});
        let context = Value::from_json(&context_json);
        let activation = Activation::new(&principal, &resource, &action, &context);
        let context = activation.context(&env);
        #[allow(clippy::let_and_return)] // the context must be dropped before the values it borrows
        let result = condition.eval_bool(&context);
        result
    }

    #[test]
    fn struct_numbers_compare_with_int_literals() {
        assert_eq!(
            eval("R.attr.amount >= 100", json!({"amount": 100.0})),
            Ok(true)
        );
        assert_eq!(
            eval("R.attr.amount == 100", json!({"amount": 100})),
            Ok(true)
        );
        assert_eq!(
            eval("R.attr.amount < 100", json!({"amount": 99.5})),
            Ok(true)
        );
        assert_eq!(
            eval("R.attr.amount in [1, 100]", json!({"amount": 100})),
            Ok(true)
        );
    }

    #[test]
    fn principal_and_resource_attributes_are_visible() {
        assert_eq!(
            eval(
                "R.attr.practice_id == P.attr.practice_id",
                json!({"practice_id": "7"})
            ),
            Ok(true)
        );
        assert_eq!(
            eval(
                "R.attr.state in P.attr.licensed_states",
                json!({"state": "TX"})
            ),
            Ok(false)
        );
        assert_eq!(
            eval("'physician' in P.roles && P.id == 'dr-1'", json!({})),
            Ok(true)
        );
    }

    #[test]
    fn missing_and_null_attributes_are_errors_not_false() {
        let missing = eval("R.attr.practice_id == '7'", json!({}));
        assert!(
            matches!(&missing, Err(EvalError(m)) if m.contains("practice_id")),
            "{missing:?}"
        );
        let null = eval("R.attr.practice_id == '7'", json!({"practice_id": null}));
        assert!(null.is_err(), "a null attribute is absent: {null:?}");
        assert_eq!(
            eval("has(R.attr.practice_id)", json!({"practice_id": null})),
            Ok(false)
        );
    }

    #[test]
    fn errors_follow_cel_commutative_logic() {
        assert_eq!(eval("R.attr.x == 1 || true", json!({})), Ok(true));
        assert_eq!(eval("R.attr.x == 1 && false", json!({})), Ok(false));
        assert!(eval("R.attr.x == 1 || false", json!({})).is_err());
        assert!(eval("!(R.attr.x == 1)", json!({})).is_err());
    }

    #[test]
    fn type_errors_and_non_bool_results_are_errors() {
        assert!(eval("R.attr.name > 3", json!({"name": "x"})).is_err());
        let not_bool = eval("R.attr.name", json!({"name": "x"}));
        assert!(matches!(&not_bool, Err(EvalError(m)) if m.contains("not a bool")));
    }

    #[test]
    fn compile_rejects_unknown_variables_with_a_hint_and_position() {
        let env = Environment::default();
        let err = env.compile("Rs.attr.x == 1").unwrap_err();
        assert!(err.message.contains("unknown variable 'Rs'"), "{err:?}");
        assert!(err.message.contains("did you mean 'R'"), "{err:?}");
        assert_eq!(err.position, Some((1, 1)));
        let err = env
            .compile("P.id == 'x' && principal.id == 'y'")
            .unwrap_err();
        assert!(err.message.contains("'principal'"), "{err:?}");
        assert_eq!(err.position, Some((1, 16)));
    }

    #[test]
    fn compile_rejects_unknown_functions_and_accepts_known_ones() {
        let env = Environment::default();
        let err = env.compile("sizeof(P.roles) > 0").unwrap_err();
        assert!(err.message.contains("unknown function 'sizeof'"), "{err:?}");
        for ok in [
            "size(P.roles) > 0",
            "P.id.startsWith('dr-')",
            "P.roles.exists(r, r == 'nurse')",
            "P.roles.all(r, r != '')",
            "has(R.attr.x)",
            "P.attr.licensed_states.filter(s, s == 'CA').size() == 1",
            "int(R.attr.amount) > 3",
            "P.id.matches('^dr-[a-z]+$')",
            "A in ['read', 'search'] ? true : false",
        ] {
            env.compile(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn named_conditions_are_inlined_respecting_scope_and_strings() {
        let env = Environment::default();
        let names: NamedConditions = [
            (
                "same_practice".to_string(),
                "R.attr.practice_id == P.attr.practice_id".to_string(),
            ),
            ("r".to_string(), "false".to_string()),
        ]
        .into();
        let (expanded, used) = env
            .expand(
                "'Ärz same_practice' != '' && same_practice && P.roles.exists(r, r == 'x')",
                &names,
            )
            .unwrap();
        assert_eq!(
            expanded,
            "'Ärz same_practice' != '' && (R.attr.practice_id == P.attr.practice_id) && P.roles.exists(r, r == 'x')"
        );
        assert_eq!(used, ["same_practice"]);
        let err = env.expand("same_practise", &names).unwrap_err();
        assert!(
            err.message
                .contains("did you mean the condition 'same_practice'"),
            "{err:?}"
        );
        assert_eq!(
            eval_with(&env, "same_practice", &names, json!({"practice_id": "7"})),
            Ok(true)
        );
    }

    fn eval_with(
        env: &Environment,
        source: &str,
        names: &NamedConditions,
        resource_attr: serde_json::Value,
    ) -> Result<bool, EvalError> {
        let (condition, _) = env.compile_with(source, names).unwrap();
        let principal_attr = json!({"practice_id": "7"});
        let principal = Value::map([("attr", Value::from_json(&principal_attr))]);
        let resource = Value::map([("attr", Value::from_json(&resource_attr))]);
        let action = Value::string("read");
        let context_json = json!({});
        let context = Value::from_json(&context_json);
        let activation = Activation::new(&principal, &resource, &action, &context);
        let context = activation.context(env);
        #[allow(clippy::let_and_return)] // the context must be dropped before the values it borrows
        let result = condition.eval_bool(&context);
        result
    }

    #[test]
    fn syntax_errors_carry_a_position_and_render_a_caret() {
        let env = Environment::default();
        let source = "R.attr.x == ";
        let err = env.compile(source).unwrap_err();
        assert!(err.message.starts_with("syntax error"), "{err:?}");
        let rendered = err.render(source);
        assert!(rendered.contains('^'), "{rendered}");
    }

    /// Resolves only `P`, `R`, `A` and `C` themselves.
    struct BareNames<'b, 'a, 'r>(&'b Bindings<'a, 'r>);

    impl VariableResolver for BareNames<'_, '_, '_> {
        fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
            self.0
                .variable(variable)
                .map(|value| CowVal::Borrowed(value.val()))
        }
    }

    /// Should a record ever be used whole (a projection bug), the operations that could answer
    /// wrongly are errors, so the condition denies.
    #[test]
    fn a_record_used_whole_fails_closed() {
        let env = Environment::default();
        let mut projection = projection::Projection::default();
        projection.add(&env.compile("R.attr.secret == 1").unwrap());
        let resource: crate::request::Resource = serde_json::from_value(json!({
            "kind": "Patient", "id": "1", "attr": {"secret": 1}
        }))
        .unwrap();
        let (principal_json, context_json) = (json!({}), json!({}));
        let principal = Value::from_json(&principal_json);
        let resource = projection.resource(&resource);
        let (action, context) = (Value::string("read"), Value::from_json(&context_json));
        let activation = Activation::new(&principal, &resource, &action, &context);
        let ctx = activation.context(&env);
        assert_eq!(
            env.compile("R.attr.secret == 1").unwrap().eval_bool(&ctx),
            Ok(true)
        );
        for source in [
            "!('secret' in R.attr)",
            "size(R.attr) == 1",
            "R.attr.exists(k, k == 'secret')",
            "R.attr.all(k, k != 'secret')",
        ] {
            let result = env.compile(source).unwrap().eval_bool(&ctx);
            assert!(result.is_err(), "{source}: {result:?}");
        }
    }

    /// What makes evaluation fast (records for `P` and `R` built from the projection, conditions
    /// rewritten by `optimize`) changes neither results nor error messages: every condition below
    /// gives the same answer as the plain interpreter on the `cel` crate's own maps.
    #[test]
    fn optimized_evaluation_agrees_with_the_plain_interpreter() {
        let env = Environment::default();
        let sources = [
            "R.attr.practice_id == P.attr.practice_id",
            "!(R.attr.practice_id == P.attr.practice_id)",
            "!(R.attr.practice_id != P.attr.practice_id)",
            "!('system' in P.roles) && !('patient' in P.roles)",
            "!(R.attr.missing == 1)",
            "!R.attr.missing",
            "!R.attr.name",
            "!(R.attr.name < 1)",
            "!has(R.attr.celebrity)",
            "!has(R.attr.address.zip)",
            "has(R.attr.address.city) && R.attr.address.city == 'Paris'",
            "R.attr.address.zip == '75001'",
            "R.attr.address.city.size() > 2",
            "R.attr.celebrity == true",
            "R.attr.celebrity",
            "R.attr.nothing == null",
            "R.attr.amount >= 100 && !(R.attr.amount > 1000)",
            "!(!(R.attr.amount == 120))",
            "R.attr.tags.exists(t, t == 'vip')",
            "P.roles.exists(R, R == 'physician')",
            "P.roles.exists(R, !(R.size() > 100))",
            "P.id == R.attr.primary_physician_id || R.attr.missing",
            "R.attr.missing || P.id == 'dr-1'",
            "R.id == '123' && R.kind == 'Patient'",
            "P.attr.licensed_states.exists(s, s == R.attr.state)",
            "C.ip == '10.0.0.1'",
            "!(C.missing == 'x')",
            "A == 'read' && !(A == 'write')",
            "R.attr.name.startsWith('Al')",
            "R.attr.name.nope == 1",
            "R.attr['name'] == 'Alice'",
            "R.attr.tags.x == 1",
            "P.roles.x == 1",
            "R.attr.amount.x == 1",
            "R.attr.celebrity.x == 1",
            "has(R.attr.tags.x)",
            "has(R.attr.name.x)",
        ];
        let principal: crate::request::Principal = serde_json::from_value(json!({
            "id": "dr-1", "roles": ["physician"],
            "attr": {"practice_id": "7", "licensed_states": ["CA", "NY"], "ssn": "x"}
        }))
        .unwrap();
        let resource: crate::request::Resource = serde_json::from_value(json!({
            "kind": "Patient", "id": "123",
            "attr": {"practice_id": "7", "celebrity": false, "nothing": null, "name": "Alice",
                     "amount": 120, "tags": ["vip"], "state": "CA",
                     "address": {"city": "Paris", "zip": null}, "primary_physician_id": "dr-2"}
        }))
        .unwrap();
        let context_json = json!({"ip": "10.0.0.1"});
        let action = Value::string("read");
        let context = Value::from_json(&context_json);
        for source in sources {
            let condition = env.compile(source).unwrap();
            let mut projection = projection::Projection::default();
            projection.add(&condition);
            let (p_fast, r_fast) = (
                projection.principal(&principal),
                projection.resource(&resource),
            );
            let (p_whole, r_whole) = (principal_value(&principal), resource_value(&resource));
            let fast = Activation::new(&p_fast, &r_fast, &action, &context);
            let fast = condition.eval_bool(&fast.context(&env));
            // The reference: the condition as written, the crate's own maps, and a resolver that
            // only knows the bare names, so that the interpreter selects every field itself.
            let plain = Activation::new(&p_whole, &r_whole, &action, &context);
            let bare = BareNames(&plain.bindings);
            let mut plain = Context::with_env(Arc::clone(&env.env));
            plain.set_variable_resolver(&bare);
            let plain = EvalContext { context: plain };
            let plain = condition.eval_expression(condition.expression(), &plain);
            assert_eq!(fast, plain, "{source}");
        }
        // The rewrites happened: a negated comparison is no longer a negation, and a field chain
        // on a request variable is one name (but not on a comprehension variable that shadows R).
        let negated = env.compile("!(R.attr.a == 1)").unwrap();
        assert!(
            matches!(&negated.evaluated.expr, Expr::Call(c) if c.func_name == "_!=_"
            && matches!(&c.args[0].expr, Expr::Ident(name) if name == "R.attr.a"))
        );
        let shadowed = env.compile("P.roles.exists(R, R.size() > 1)").unwrap();
        assert!(!format!("{:?}", shadowed.evaluated).contains("Ident(\"R.size"));
    }
}
