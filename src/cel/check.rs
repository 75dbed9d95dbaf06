//! The type checker: a condition held to the schema's types at load, never evaluated. (Cedar's
//! split: the validator beside the evaluator; the evaluator never re-checks types, the request
//! validator guarantees the values fit the types checked here.)
//!
//! It finds what would make a condition silently false, silently true, or an error at run time:
//! an attribute the schema does not declare (with the closest one that it does), `==` or `in`
//! between types that never compare equal (`R.attr.celebrity == "true"`, `P.roles == "x"`), a
//! string that is not among an enum's values (a role, an action, a declared enum), arithmetic
//! CEL refuses at run time (a request number is a double: `R.attr.amount + 1` fails), functions
//! applied to the wrong types, a condition that is not a bool, and an optional attribute read
//! without a `has()` guard on the way to it (`has(R.attr.x) && R.attr.x == 1`, `!has(R.attr.x) ||
//! ...`, `has(R.attr.x) ? R.attr.x : ...`). A condition that reads nothing of the request is
//! constant: a warning.
//!
//! Types flow bottom-up through one walk; what each branch of `&&`, `||`, `!` and `?:` proves
//! present flows down to the other side.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use ::cel::common::ast::{
    operators, CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue,
};
use ::cel::Program;

use super::compile::position;
use super::walk::{each_child, Scope};
use super::{CompileError, Environment, NamedConditions, VARIABLES};
use crate::schema::{self, ObjectType};

/// A type as the checker sees values at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// Anything: an undeclared attribute of an open object, a value the checker cannot follow.
    Dyn,
    Null,
    Bool,
    Int,
    UInt,
    /// Every request number (JSON and protobuf Struct numbers are doubles).
    Double,
    String,
    Bytes,
    /// A string among known values (roles, actions, kinds, a declared enum).
    Enum(Arc<Choices>),
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    /// An object with declared fields: `P`, `R`, an `attr` bag, a nested object.
    Record(Arc<Record>),
}

/// The values an enum allows, and what one is, for messages ("a declared role").
#[derive(Debug, Clone, PartialEq)]
pub struct Choices {
    pub values: Vec<String>,
    pub noun: String,
}

impl Choices {
    pub fn new(noun: impl Into<String>, mut values: Vec<String>) -> Arc<Choices> {
        values.sort();
        values.dedup();
        Arc::new(Choices {
            values,
            noun: noun.into(),
        })
    }

    fn contains(&self, value: &str) -> bool {
        self.values
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok()
    }
}

/// An object type: its fields sorted by name, each with its type and whether it is always there.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// What it is, in messages: `R.attr`, `P`.
    pub what: String,
    fields: Vec<Field>,
    /// Undeclared fields may be present (their type is unknown).
    pub open: bool,
}

/// One declared field of a [`Record`].
#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    ty: Ty,
    required: bool,
    /// A string or list the schema says is never empty.
    non_empty: bool,
}

impl Record {
    /// A record of `fields` (name, type, required).
    pub fn new(
        what: impl Into<String>,
        fields: Vec<(String, Ty, bool)>,
        open: bool,
    ) -> Arc<Record> {
        let fields = fields
            .into_iter()
            .map(|(name, ty, required)| Field {
                name,
                ty,
                required,
                non_empty: false,
            })
            .collect();
        Record::with_fields(what, fields, open)
    }

    fn with_fields(what: impl Into<String>, mut fields: Vec<Field>, open: bool) -> Arc<Record> {
        fields.sort_by(|a, b| a.name.cmp(&b.name));
        Arc::new(Record {
            what: what.into(),
            fields,
            open,
        })
    }

    /// The record of a schema object type.
    pub fn of_object(what: impl Into<String>, object: &ObjectType) -> Arc<Record> {
        let what = what.into();
        let fields = object
            .attributes()
            .map(|(name, attribute)| Field {
                name: name.to_string(),
                ty: Ty::of_schema(&attribute.ty, &format!("{what}.{name}")),
                required: attribute.required,
                non_empty: attribute.non_empty,
            })
            .collect();
        Record::with_fields(what, fields, object.additional)
    }

    fn field(&self, name: &str) -> Option<&Field> {
        self.fields
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.fields[i])
    }

    fn closest(&self, name: &str) -> Option<&str> {
        schema::closest(name, self.fields.iter().map(|f| f.name.as_str()))
    }
}

impl Ty {
    /// The type a schema type has at run time: every number is a double.
    pub fn of_schema(ty: &schema::Type, what: &str) -> Ty {
        match ty {
            schema::Type::String => Ty::String,
            schema::Type::Int | schema::Type::Double => Ty::Double,
            schema::Type::Bool => Ty::Bool,
            schema::Type::Enum(values) => {
                Ty::Enum(Choices::new(format!("a value of {what}"), values.to_vec()))
            }
            schema::Type::List(item) => {
                Ty::List(Box::new(Ty::of_schema(item, &format!("{what}[]"))))
            }
            schema::Type::Object(object) => Ty::Record(Record::of_object(what, object)),
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::UInt | Ty::Double)
    }

    fn is_stringish(&self) -> bool {
        matches!(self, Ty::String | Ty::Enum(_))
    }

    /// A string that can be "" (an enum can only if "" is one of its values).
    fn may_be_empty(&self) -> bool {
        match self {
            Ty::String => true,
            Ty::Enum(choices) => choices.contains(""),
            _ => false,
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Dyn => f.write_str("dyn"),
            Ty::Null => f.write_str("null"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::UInt => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String | Ty::Enum(_) => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::List(item) => write!(f, "list<{item}>"),
            Ty::Map(k, v) => write!(f, "map<{k}, {v}>"),
            Ty::Record(_) => f.write_str("object"),
        }
    }
}

/// The types of `P`, `R`, `A` and `C` for one check of a condition.
#[derive(Debug, Clone)]
pub struct TypeEnv {
    pub principal: Ty,
    pub resource: Ty,
    pub action: Ty,
    pub context: Ty,
}

/// Something the checker found, at a position in the condition's text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Problem {
    pub message: String,
    /// 1-based line and column in the condition text.
    pub position: Option<(usize, usize)>,
    /// A warning (the condition works, but probably not as meant) rather than an error.
    pub warning: bool,
}

impl Problem {
    /// As a [`CompileError`], to render with a caret.
    pub fn as_compile_error(&self) -> CompileError {
        CompileError {
            message: self.message.clone(),
            position: self.position,
        }
    }
}

impl Environment {
    /// Type-checks `source` (as written: named conditions in it are bools, checked on their own)
    /// against `env`. Fails only if `source` does not compile at all.
    pub fn type_check(
        &self,
        source: &str,
        env: &TypeEnv,
        names: &NamedConditions,
    ) -> Result<TypeCheck, CompileError> {
        let program = self.env.compile(source).map_err(|_| CompileError {
            message: "syntax error".into(),
            position: None,
        })?;
        let mut checker = Checker {
            program: &program,
            env,
            names,
            locals: Vec::new(),
            problems: Vec::new(),
            reads_request: false,
            names_used: Vec::new(),
        };
        let root = checker.check(program.expression(), &Facts::default());
        match &root.ty {
            Ty::Bool | Ty::Dyn => {}
            other => checker.error(
                program.expression(),
                format!("the condition is a {other}, not a bool"),
            ),
        }
        if !checker.reads_request {
            checker.problems.push(Problem {
                message: "the condition reads nothing of the request (P, R, A, C): it is constant"
                    .into(),
                position: None,
                warning: true,
            });
        }
        let mut seen = HashSet::new();
        checker.problems.retain(|p| seen.insert(p.clone()));
        Ok(TypeCheck {
            problems: checker.problems,
            names: checker.names_used,
        })
    }
}

/// What [`Environment::type_check`] found.
#[derive(Debug, Clone, Default)]
pub struct TypeCheck {
    pub problems: Vec<Problem>,
    /// The named conditions the condition uses directly.
    pub names: Vec<String>,
}

/// Paths (`R.attr.x`) known to be present.
#[derive(Debug, Clone, Default, PartialEq)]
struct Facts(Vec<String>);

impl Facts {
    fn has(&self, path: &str) -> bool {
        self.0.iter().any(|p| p == path)
    }

    fn union(&self, other: &Facts) -> Facts {
        let mut out = self.clone();
        for p in &other.0 {
            if !out.has(p) {
                out.0.push(p.clone());
            }
        }
        out
    }

    fn intersection(&self, other: &Facts) -> Facts {
        Facts(self.0.iter().filter(|p| other.has(p)).cloned().collect())
    }
}

/// A checked sub-expression: its type, and what it proves present when true and when false.
#[derive(Debug, Clone)]
struct Checked {
    ty: Ty,
    when_true: Facts,
    when_false: Facts,
    /// A string or list the schema (or a literal) says is not empty.
    non_empty: bool,
}

impl Checked {
    fn of(ty: Ty) -> Checked {
        Checked {
            ty,
            when_true: Facts::default(),
            when_false: Facts::default(),
            non_empty: false,
        }
    }
}

/// The fact that the attribute at `path` is not empty.
fn not_empty_fact(path: &str) -> String {
    format!("non-empty {path}")
}

struct Checker<'a> {
    program: &'a Program,
    env: &'a TypeEnv,
    names: &'a NamedConditions,
    /// Comprehension variables, innermost last.
    locals: Vec<(String, Ty)>,
    problems: Vec<Problem>,
    reads_request: bool,
    names_used: Vec<String>,
}

/// The dotted path a chain of field selections spells from an identifier (`R.attr.x`).
fn path_of(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(s) if !s.test => path_of(&s.operand).map(|p| format!("{p}.{}", s.field)),
        _ => None,
    }
}

/// How to name an operand in a message: its path, or its literal, or its type.
fn describe(e: &IdedExpr, ty: &Ty) -> String {
    match (&e.expr, path_of(e)) {
        (Expr::Literal(LiteralValue::String(s)), _) => format!("{:?} (string)", s.inner()),
        (Expr::Literal(LiteralValue::Int(i)), _) => format!("{} (int)", i.inner()),
        (Expr::Literal(LiteralValue::Double(d)), _) => format!("{} (double)", d.inner()),
        (Expr::Literal(LiteralValue::Boolean(b)), _) => format!("{} (bool)", b.inner()),
        (Expr::Literal(LiteralValue::Null), _) => "null".into(),
        (_, Some(path)) => format!("{path} ({ty})"),
        _ => format!("a {ty}"),
    }
}

/// `x` of `size(x)` or `x.size()`.
fn size_of(e: &IdedExpr) -> Option<&IdedExpr> {
    match &e.expr {
        Expr::Call(call) if call.func_name == "size" => {
            match (&call.target, call.args.as_slice()) {
                (Some(target), []) => Some(target),
                (None, [arg]) => Some(arg),
                _ => None,
            }
        }
        _ => None,
    }
}

fn string_literal(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

/// The type of both branches of `?:`, of a list's elements, of an accumulator.
fn join(a: &Ty, b: &Ty) -> Ty {
    match (a, b) {
        (Ty::Dyn, other) | (other, Ty::Dyn) => other.clone(),
        (Ty::List(x), Ty::List(y)) => Ty::List(Box::new(join(x, y))),
        (Ty::Enum(_), Ty::String | Ty::Enum(_)) | (Ty::String, Ty::Enum(_)) => Ty::String,
        (x, y) if x == y => x.clone(),
        _ => Ty::Dyn,
    }
}

/// Whether `==` between these types can ever be true.
fn comparable(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Dyn, _) | (_, Ty::Dyn) => true,
        (x, y) if x.is_numeric() && y.is_numeric() => true,
        (x, y) if x.is_stringish() && y.is_stringish() => true,
        (Ty::Bool, Ty::Bool) | (Ty::Bytes, Ty::Bytes) | (Ty::Null, Ty::Null) => true,
        (Ty::List(x), Ty::List(y)) => comparable(x, y),
        (Ty::Map(k1, v1), Ty::Map(k2, v2)) => comparable(k1, k2) && comparable(v1, v2),
        (Ty::Record(_) | Ty::Map(..), Ty::Record(_) | Ty::Map(..)) => true,
        _ => false,
    }
}

/// Whether `<` between these types is defined.
fn orderable(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Dyn, x) | (x, Ty::Dyn) => {
            matches!(x, Ty::Dyn | Ty::Bool | Ty::Bytes) || x.is_numeric() || x.is_stringish()
        }
        (x, y) if x.is_numeric() && y.is_numeric() => true,
        (x, y) if x.is_stringish() && y.is_stringish() => true,
        (Ty::Bool, Ty::Bool) | (Ty::Bytes, Ty::Bytes) => true,
        _ => false,
    }
}

const NUMBERS_ARE_DOUBLES: &str = "CEL does not mix int and double, and request numbers are doubles: write 1.0, not 1, or convert with double()/int()";

impl Checker<'_> {
    fn error(&mut self, e: &IdedExpr, message: String) {
        self.problems.push(Problem {
            message,
            position: position(self.program, e.id),
            warning: false,
        });
    }

    fn local(&self, name: &str) -> Option<&Ty> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }

    fn check(&mut self, e: &IdedExpr, facts: &Facts) -> Checked {
        match &e.expr {
            Expr::Literal(literal) => {
                let mut checked = Checked::of(match literal {
                    LiteralValue::Boolean(_) => Ty::Bool,
                    LiteralValue::Bytes(_) => Ty::Bytes,
                    LiteralValue::Double(_) => Ty::Double,
                    LiteralValue::Int(_) => Ty::Int,
                    LiteralValue::Null => Ty::Null,
                    LiteralValue::String(_) => Ty::String,
                    LiteralValue::UInt(_) => Ty::UInt,
                });
                checked.non_empty =
                    !matches!(literal, LiteralValue::String(s) if s.inner().is_empty());
                checked
            }
            Expr::Ident(name) => {
                if let Some(ty) = self.local(name) {
                    return Checked::of(ty.clone());
                }
                if VARIABLES.contains(&name.as_str()) {
                    self.reads_request = true;
                }
                Checked::of(match name.as_str() {
                    "P" => self.env.principal.clone(),
                    "R" => self.env.resource.clone(),
                    "A" => self.env.action.clone(),
                    "C" => self.env.context.clone(),
                    // A named condition: a bool, checked where it is defined.
                    n if self.names.contains_key(n) => {
                        self.reads_request = true;
                        if !self.names_used.iter().any(|u| u == n) {
                            self.names_used.push(n.to_string());
                        }
                        Ty::Bool
                    }
                    _ => Ty::Dyn,
                })
            }
            Expr::Select(select) => {
                let operand = self.check(&select.operand, facts).ty;
                self.select(
                    e,
                    &select.operand,
                    operand,
                    &select.field,
                    select.test,
                    facts,
                )
            }
            Expr::Call(call) => self.call(e, call, facts),
            Expr::List(list) => {
                let mut item = Ty::Dyn;
                let mut mixed = false;
                for (i, element) in list.elements.iter().enumerate() {
                    let ty = self.check(element, facts).ty;
                    if i > 0 && !comparable(&item, &ty) && item != Ty::Dyn {
                        mixed = true;
                    }
                    item = join(&item, &ty);
                }
                Checked::of(Ty::List(Box::new(if mixed { Ty::Dyn } else { item })))
            }
            Expr::Map(map) => {
                let (mut key, mut value) = (Ty::Dyn, Ty::Dyn);
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        key = join(&key, &self.check(&me.key, facts).ty);
                        value = join(&value, &self.check(&me.value, facts).ty);
                    }
                }
                Checked::of(Ty::Map(Box::new(key), Box::new(value)))
            }
            Expr::Comprehension(c) => self.comprehension(c, facts),
            Expr::Struct(_) | Expr::Unspecified => Checked::of(Ty::Dyn),
        }
    }

    /// `operand.field`, or `has(operand.field)` when `test`.
    fn select(
        &mut self,
        e: &IdedExpr,
        operand_expr: &IdedExpr,
        operand: Ty,
        field: &str,
        test: bool,
        facts: &Facts,
    ) -> Checked {
        let path = path_of(operand_expr).map(|p| format!("{p}.{field}"));
        let mut non_empty = false;
        let ty = match &operand {
            Ty::Record(record) => match record.field(field) {
                Some(declared) => {
                    let (ty, required) = (&declared.ty, declared.required);
                    non_empty = declared.non_empty;
                    if !test && !required && !path.as_deref().is_some_and(|p| facts.has(p)) {
                        let shown = path.clone().unwrap_or_else(|| field.to_string());
                        self.error(e, format!("{shown} is optional in the schema: guard it with has({shown}) (it may be absent)"));
                    }
                    ty.clone()
                }
                None if record.open => {
                    if !test && !path.as_deref().is_some_and(|p| facts.has(p)) {
                        let shown = path.clone().unwrap_or_else(|| field.to_string());
                        self.error(e, format!("{shown} is not declared ({} allows undeclared attributes): guard it with has({shown})", record.what));
                    }
                    Ty::Dyn
                }
                None => {
                    let hint = record
                        .closest(field)
                        .map(|c| format!(" (did you mean '{c}'?)"))
                        .unwrap_or_default();
                    self.error(
                        e,
                        format!(
                            "unknown attribute '{field}': {} declares no such attribute{hint}",
                            record.what
                        ),
                    );
                    Ty::Dyn
                }
            },
            Ty::Map(_, value) => *value.clone(),
            Ty::Dyn => Ty::Dyn,
            other => {
                self.error(e, format!("no field '{field}' on a {other}"));
                Ty::Dyn
            }
        };
        if test {
            let mut checked = Checked::of(Ty::Bool);
            if let Some(path) = path {
                checked.when_true = Facts(vec![path]);
            }
            checked
        } else {
            let mut checked = Checked::of(ty);
            checked.non_empty = non_empty || path.is_some_and(|p| facts.has(&not_empty_fact(&p)));
            checked
        }
    }

    fn call(&mut self, e: &IdedExpr, call: &CallExpr, facts: &Facts) -> Checked {
        let args = &call.args;
        let name = call.func_name.as_str();
        if call.target.is_none() {
            match (name, args.len()) {
                (operators::LOGICAL_AND, 2) => {
                    let a = self.check(&args[0], facts);
                    let b = self.check(&args[1], &facts.union(&a.when_true));
                    self.expect_bool(&args[0], &a.ty, "&&");
                    self.expect_bool(&args[1], &b.ty, "&&");
                    return Checked {
                        ty: Ty::Bool,
                        when_true: a.when_true.union(&b.when_true),
                        when_false: a.when_false.intersection(&b.when_false),
                        non_empty: false,
                    };
                }
                (operators::LOGICAL_OR, 2) => {
                    let a = self.check(&args[0], facts);
                    let b = self.check(&args[1], &facts.union(&a.when_false));
                    self.expect_bool(&args[0], &a.ty, "||");
                    self.expect_bool(&args[1], &b.ty, "||");
                    return Checked {
                        ty: Ty::Bool,
                        when_true: a.when_true.intersection(&b.when_true),
                        when_false: a.when_false.union(&b.when_false),
                        non_empty: false,
                    };
                }
                (operators::LOGICAL_NOT, 1) => {
                    let a = self.check(&args[0], facts);
                    self.expect_bool(&args[0], &a.ty, "!");
                    return Checked {
                        ty: Ty::Bool,
                        when_true: a.when_false,
                        when_false: a.when_true,
                        non_empty: false,
                    };
                }
                (operators::NOT_STRICTLY_FALSE, 1) => {
                    let a = self.check(&args[0], facts);
                    return Checked::of(a.ty);
                }
                (operators::CONDITIONAL, 3) => {
                    let c = self.check(&args[0], facts);
                    self.expect_bool(&args[0], &c.ty, "?:");
                    let x = self.check(&args[1], &facts.union(&c.when_true));
                    let y = self.check(&args[2], &facts.union(&c.when_false));
                    if !comparable(&x.ty, &y.ty) && x.ty != Ty::Null && y.ty != Ty::Null {
                        self.error(
                            e,
                            format!(
                                "the branches of ?: have different types ({} and {})",
                                x.ty, y.ty
                            ),
                        );
                    }
                    return Checked::of(join(&x.ty, &y.ty));
                }
                (operators::EQUALS | operators::NOT_EQUALS, 2) => {
                    let a = self.check(&args[0], facts);
                    let b = self.check(&args[1], facts);
                    let equals = name == operators::EQUALS;
                    let always = if equals { "false" } else { "true" };
                    self.equality(e, &args[0], &a.ty, &args[1], &b.ty, always);
                    if equals
                        && a.ty.may_be_empty()
                        && b.ty.may_be_empty()
                        && !a.non_empty
                        && !b.non_empty
                    {
                        self.both_may_be_empty(e, &args[0], &args[1]);
                    }
                    let mut checked = Checked::of(Ty::Bool);
                    // `x != ""` proves x is not empty where it holds.
                    for (x, y) in [(&args[0], &args[1]), (&args[1], &args[0])] {
                        if let (Some(path), Some("")) = (path_of(x), string_literal(y)) {
                            let fact = Facts(vec![not_empty_fact(&path)]);
                            if equals {
                                checked.when_false = fact;
                            } else {
                                checked.when_true = fact;
                            }
                        }
                    }
                    return checked;
                }
                (
                    operators::LESS
                    | operators::LESS_EQUALS
                    | operators::GREATER
                    | operators::GREATER_EQUALS,
                    2,
                ) => {
                    let a = self.check(&args[0], facts).ty;
                    let b = self.check(&args[1], facts).ty;
                    let mut checked = Checked::of(Ty::Bool);
                    // `size(x) > 0` proves x is not empty where it holds.
                    if name == operators::GREATER
                        && matches!(&args[1].expr, Expr::Literal(LiteralValue::Int(i)) if *i.inner() == 0)
                    {
                        if let Some(path) = size_of(&args[0]).and_then(path_of) {
                            checked.when_true = Facts(vec![not_empty_fact(&path)]);
                        }
                    }
                    if !orderable(&a, &b) {
                        self.error(
                            e,
                            format!(
                                "{} and {} cannot be ordered (an error at run time)",
                                describe(&args[0], &a),
                                describe(&args[1], &b)
                            ),
                        );
                    }
                    return checked;
                }
                (operators::IN, 2) => {
                    let element = self.check(&args[0], facts).ty;
                    let container = self.check(&args[1], facts).ty;
                    return self.membership(e, &args[0], &element, &args[1], &container);
                }
                (
                    operators::ADD
                    | operators::SUBSTRACT
                    | operators::MULTIPLY
                    | operators::DIVIDE
                    | operators::MODULO,
                    2,
                ) => {
                    let a = self.check(&args[0], facts).ty;
                    let b = self.check(&args[1], facts).ty;
                    return Checked::of(self.arithmetic(e, name, &args[0], &a, &args[1], &b));
                }
                (operators::NEGATE, 1) => {
                    let a = self.check(&args[0], facts).ty;
                    if !matches!(a, Ty::Int | Ty::Double | Ty::Dyn) {
                        self.error(e, format!("cannot negate {}", describe(&args[0], &a)));
                    }
                    return Checked::of(a);
                }
                (operators::INDEX, 2) => {
                    let container = self.check(&args[0], facts).ty;
                    let index = self.check(&args[1], facts).ty;
                    return Checked::of(
                        self.index(e, &args[0], &container, &args[1], &index, facts),
                    );
                }
                _ => {}
            }
        }
        // Functions: the receiver (if any) and the arguments.
        let receiver = call.target.as_deref().map(|t| (t, self.check(t, facts).ty));
        let arg_types: Vec<Ty> = args.iter().map(|a| self.check(a, facts).ty).collect();
        let mut operands: Vec<(&IdedExpr, Ty)> = Vec::new();
        if let Some((t, ty)) = receiver {
            operands.push((t, ty));
        }
        operands.extend(args.iter().zip(arg_types));
        Checked::of(self.function(e, name, &operands))
    }

    /// `a == b` between two attributes that may both be empty strings: it holds for two empty
    /// values, which rarely means what a grant meant.
    fn both_may_be_empty(&mut self, e: &IdedExpr, a: &IdedExpr, b: &IdedExpr) {
        let (Some(x), Some(y)) = (path_of(a), path_of(b)) else {
            return;
        };
        if string_literal(a).is_some() || string_literal(b).is_some() {
            return;
        }
        self.problems.push(Problem {
            message: format!(
                "{x} == {y} also holds when both are empty strings: declare one of them non_empty in the schema, or require it ({y} != \"\")"
            ),
            position: position(self.program, e.id),
            warning: true,
        });
    }

    fn expect_bool(&mut self, e: &IdedExpr, ty: &Ty, operator: &str) {
        if !matches!(ty, Ty::Bool | Ty::Dyn) {
            self.error(
                e,
                format!("{operator} needs a bool, not {}", describe(e, ty)),
            );
        }
    }

    fn equality(
        &mut self,
        e: &IdedExpr,
        left: &IdedExpr,
        a: &Ty,
        right: &IdedExpr,
        b: &Ty,
        always: &str,
    ) {
        if (*a == Ty::Null) != (*b == Ty::Null) && *a != Ty::Dyn && *b != Ty::Dyn {
            let other = if *a == Ty::Null { right } else { left };
            let ty = if *a == Ty::Null { b } else { a };
            self.error(
                e,
                format!(
                    "{} is never null (a null attribute is an absent one): this is always {always}; use has() to test presence",
                    describe(other, ty)
                ),
            );
            return;
        }
        if !comparable(a, b) {
            self.error(
                e,
                format!(
                    "{} and {} never compare equal: this is always {always}",
                    describe(left, a),
                    describe(right, b)
                ),
            );
            return;
        }
        for (ty, other) in [(a, right), (b, left)] {
            self.enum_member(ty, other);
        }
    }

    /// A string literal compared with, or looked up in, an enum must be one of its values.
    fn enum_member(&mut self, ty: &Ty, literal: &IdedExpr) {
        let (Ty::Enum(choices), Some(value)) = (ty, string_literal(literal)) else {
            return;
        };
        if choices.contains(value) {
            return;
        }
        let hint = match schema::closest(value, choices.values.iter().map(String::as_str)) {
            Some(c) => format!(" (did you mean {c:?}?)"),
            None if choices.values.len() <= 12 => format!(" (one of {:?})", choices.values),
            None => String::new(),
        };
        self.error(literal, format!("{value:?} is not {}{hint}", choices.noun));
    }

    fn membership(
        &mut self,
        e: &IdedExpr,
        element_expr: &IdedExpr,
        element: &Ty,
        container_expr: &IdedExpr,
        container: &Ty,
    ) -> Checked {
        match container {
            Ty::List(item) => {
                if !comparable(element, item) {
                    self.error(
                        e,
                        format!(
                            "{} is never in {}: its elements are {item}s",
                            describe(element_expr, element),
                            describe(container_expr, container)
                        ),
                    );
                } else {
                    self.enum_member(item, element_expr);
                }
            }
            Ty::Map(key, _) => {
                if !comparable(element, key) {
                    self.error(
                        e,
                        format!(
                            "{} is never a key of {}",
                            describe(element_expr, element),
                            describe(container_expr, container)
                        ),
                    );
                }
            }
            Ty::Record(record) => {
                if !element.is_stringish() && *element != Ty::Dyn {
                    self.error(
                        e,
                        format!(
                            "{} is never a key of {}",
                            describe(element_expr, element),
                            record.what
                        ),
                    );
                } else if let (Some(key), false) = (string_literal(element_expr), record.open) {
                    if record.field(key).is_none() {
                        self.error(
                            element_expr,
                            format!(
                                "unknown attribute '{key}': {} declares no such attribute",
                                record.what
                            ),
                        );
                    }
                }
            }
            Ty::Dyn => {}
            other => {
                self.error(
                    e,
                    format!(
                        "'in' needs a list or a map, not {}",
                        describe(container_expr, other)
                    ),
                );
            }
        }
        let mut checked = Checked::of(Ty::Bool);
        if let (Ty::Record(_), Some(key), Some(path)) = (
            container,
            string_literal(element_expr),
            path_of(container_expr),
        ) {
            checked.when_true = Facts(vec![format!("{path}.{key}")]);
        }
        checked
    }

    fn arithmetic(
        &mut self,
        e: &IdedExpr,
        operator: &str,
        left: &IdedExpr,
        a: &Ty,
        right: &IdedExpr,
        b: &Ty,
    ) -> Ty {
        let symbol = operator.trim_matches('_');
        match (a, b) {
            (Ty::Dyn, x) | (x, Ty::Dyn) => {
                if x.is_numeric() || *x == Ty::Dyn {
                    x.clone()
                } else {
                    Ty::Dyn
                }
            }
            (x, y) if x.is_numeric() && y.is_numeric() => {
                if x != y {
                    self.error(
                        e,
                        format!(
                            "{} {symbol} {} fails at run time: {NUMBERS_ARE_DOUBLES}",
                            describe(left, a),
                            describe(right, b)
                        ),
                    );
                    return Ty::Dyn;
                }
                if operator == operators::MODULO && *x == Ty::Double {
                    self.error(e, "% is not defined on doubles (request numbers are doubles); convert with int()".into());
                }
                x.clone()
            }
            (x, y) if operator == operators::ADD && x.is_stringish() && y.is_stringish() => {
                Ty::String
            }
            (Ty::Bytes, Ty::Bytes) if operator == operators::ADD => Ty::Bytes,
            (Ty::List(x), Ty::List(y)) if operator == operators::ADD => {
                Ty::List(Box::new(join(x, y)))
            }
            _ => {
                self.error(
                    e,
                    format!(
                        "{symbol} is not defined between {} and {} (an error at run time)",
                        describe(left, a),
                        describe(right, b)
                    ),
                );
                Ty::Dyn
            }
        }
    }

    fn index(
        &mut self,
        e: &IdedExpr,
        container_expr: &IdedExpr,
        container: &Ty,
        index_expr: &IdedExpr,
        index: &Ty,
        facts: &Facts,
    ) -> Ty {
        match container {
            Ty::List(item) => {
                if !matches!(index, Ty::Int | Ty::UInt | Ty::Dyn) {
                    self.error(
                        e,
                        format!(
                            "a list index must be an int, not {}",
                            describe(index_expr, index)
                        ),
                    );
                }
                *item.clone()
            }
            Ty::Map(key, value) => {
                if !comparable(key, index) {
                    self.error(
                        e,
                        format!(
                            "{} is never a key of {}",
                            describe(index_expr, index),
                            describe(container_expr, container)
                        ),
                    );
                }
                *value.clone()
            }
            Ty::Record(_) => match string_literal(index_expr) {
                Some(field) => {
                    self.select(e, container_expr, container.clone(), field, false, facts)
                        .ty
                }
                None => Ty::Dyn,
            },
            Ty::Dyn => Ty::Dyn,
            other => {
                self.error(
                    e,
                    format!("cannot index {}", describe(container_expr, other)),
                );
                Ty::Dyn
            }
        }
    }

    /// A function call: `operands` are the receiver (for `x.f()`) then the arguments.
    fn function(&mut self, e: &IdedExpr, name: &str, operands: &[(&IdedExpr, Ty)]) -> Ty {
        let wrong = |checker: &mut Self, what: &str| {
            let shown: Vec<String> = operands.iter().map(|(x, t)| describe(x, t)).collect();
            checker.error(
                e,
                format!(
                    "{name}() {what}, not {} (an error at run time)",
                    shown.join(", ")
                ),
            );
        };
        let types: Vec<&Ty> = operands.iter().map(|(_, t)| t).collect();
        let stringish = |t: &Ty| t.is_stringish() || *t == Ty::Dyn;
        match (name, types.as_slice()) {
            ("size", [t]) => {
                if !matches!(
                    t,
                    Ty::String
                        | Ty::Enum(_)
                        | Ty::Bytes
                        | Ty::List(_)
                        | Ty::Map(..)
                        | Ty::Record(_)
                        | Ty::Dyn
                ) {
                    wrong(self, "takes a string, bytes, list or map");
                }
                Ty::Int
            }
            ("startsWith" | "endsWith" | "contains" | "matches", [a, b]) => {
                if !stringish(a) || !stringish(b) {
                    wrong(self, "takes strings");
                }
                Ty::Bool
            }
            ("int", [t]) => {
                if !matches!(
                    t,
                    Ty::Int | Ty::UInt | Ty::Double | Ty::String | Ty::Enum(_) | Ty::Dyn
                ) {
                    wrong(self, "converts a number or a string");
                }
                Ty::Int
            }
            ("uint", [t]) => {
                if !matches!(
                    t,
                    Ty::Int | Ty::UInt | Ty::Double | Ty::String | Ty::Enum(_) | Ty::Dyn
                ) {
                    wrong(self, "converts a number or a string");
                }
                Ty::UInt
            }
            ("double", [t]) => {
                if !matches!(
                    t,
                    Ty::Int | Ty::UInt | Ty::Double | Ty::String | Ty::Enum(_) | Ty::Dyn
                ) {
                    wrong(self, "converts a number or a string");
                }
                Ty::Double
            }
            ("string", [t]) => {
                if matches!(t, Ty::List(_) | Ty::Map(..) | Ty::Record(_) | Ty::Null) {
                    wrong(self, "converts a scalar");
                }
                Ty::String
            }
            ("bool", [t]) => {
                if !matches!(t, Ty::Bool | Ty::String | Ty::Enum(_) | Ty::Dyn) {
                    wrong(self, "converts a bool or a string");
                }
                Ty::Bool
            }
            ("dyn", [_]) => Ty::Dyn,
            _ => Ty::Dyn,
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr, facts: &Facts) -> Checked {
        let range = self.check(&c.iter_range, facts).ty;
        let (first, second) = match &range {
            Ty::List(item) => (Ty::Int, *item.clone()),
            Ty::Map(key, value) => (*key.clone(), *value.clone()),
            Ty::Record(_) => (Ty::String, Ty::Dyn),
            Ty::Dyn => (Ty::Dyn, Ty::Dyn),
            other => {
                self.error(
                    &c.iter_range,
                    format!("cannot iterate over {}", describe(&c.iter_range, other)),
                );
                (Ty::Dyn, Ty::Dyn)
            }
        };
        // One variable: the element of a list, the key of a map. Two: (index, element) or
        // (key, value).
        let bindings: Vec<(String, Ty)> = match &c.iter_var2 {
            None => {
                let single = if matches!(range, Ty::List(_)) {
                    second
                } else {
                    first
                };
                vec![(c.iter_var.clone(), single)]
            }
            Some(v2) => vec![(c.iter_var.clone(), first), (v2.clone(), second)],
        };
        let init = self.check(&c.accu_init, facts).ty;
        let depth = self.locals.len();
        self.locals.extend(bindings);
        self.locals.push((c.accu_var.clone(), init.clone()));
        self.check(&c.loop_cond, facts);
        let step = self.check(&c.loop_step, facts).ty;
        self.locals.truncate(depth);
        let accumulated = join(&init, &step);
        self.locals.push((c.accu_var.clone(), accumulated));
        let result = self.check(&c.result, facts);
        self.locals.truncate(depth);
        Checked::of(result.ty)
    }
}

/// Every comparison (`==`, `!=`, `<`... and `in` a list literal) of a request attribute with a
/// literal in `condition`: the attribute's dotted path (`R.attr.celebrity`) and the literal's type
/// (`string`, `number`, `bool`, `null`). For sets without a schema, where nothing else tells
/// `celebrity == true` in one rule from `celebrity == "true"` in another.
pub fn literal_comparisons(condition: &super::Condition) -> Vec<(String, &'static str)> {
    fn literal_type(e: &IdedExpr) -> Option<&'static str> {
        match &e.expr {
            Expr::Literal(LiteralValue::String(_)) => Some("string"),
            Expr::Literal(
                LiteralValue::Int(_) | LiteralValue::UInt(_) | LiteralValue::Double(_),
            ) => Some("number"),
            Expr::Literal(LiteralValue::Boolean(_)) => Some("bool"),
            Expr::Literal(LiteralValue::Null) => Some("null"),
            _ => None,
        }
    }
    fn attribute(e: &IdedExpr, scope: &Scope) -> Option<String> {
        let path = path_of(e)?;
        let root = path.split('.').next()?;
        (matches!(root, "P" | "R" | "C") && path.contains('.') && !scope.binds(root))
            .then_some(path)
    }
    fn visit(e: &IdedExpr, scope: &mut Scope, out: &mut Vec<(String, &'static str)>) {
        if let Expr::Call(call) = &e.expr {
            let comparison = matches!(
                call.func_name.as_str(),
                operators::EQUALS
                    | operators::NOT_EQUALS
                    | operators::LESS
                    | operators::LESS_EQUALS
                    | operators::GREATER
                    | operators::GREATER_EQUALS
            );
            if call.target.is_none() && call.args.len() == 2 {
                let (a, b) = (&call.args[0], &call.args[1]);
                if comparison {
                    for (x, y) in [(a, b), (b, a)] {
                        if let (Some(path), Some(ty)) = (attribute(x, scope), literal_type(y)) {
                            out.push((path, ty));
                        }
                    }
                } else if call.func_name == operators::IN {
                    if let (Some(path), Expr::List(list)) = (attribute(a, scope), &b.expr) {
                        for item in &list.elements {
                            if let Some(ty) = literal_type(item) {
                                out.push((path.clone(), ty));
                            }
                        }
                    }
                }
            }
        }
        each_child(e, scope, &mut |child, scope| visit(child, scope, out));
    }
    let mut out = Vec::new();
    visit(condition.expression(), &mut Scope::default(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tests::schema_of;

    const SCHEMA: &str = r#"
schema:
  name: clinic
  principal:
    roles: [physician, nurse, patient, system]
    attributes:
      practice_id: {type: string, required: false, non_empty: true}
      licensed_states: list<string>?
      suspended: bool?
  context:
    attributes: {ip: string?}
  kinds:
    Patient:
      actions: [read, update, delete]
      attributes:
        practice_id: string
        celebrity: bool
        amount: int?
        primary_physician_id: string?
        confidentiality: {type: enum, values: [N, R, V]}
        tags: list<string>?
        licensed: {type: object, required: false, attributes: {CA: bool?}}
"#;

    fn env() -> TypeEnv {
        let schema = schema_of(&[SCHEMA]).unwrap().unwrap();
        let roles = Choices::new("a declared role", schema.roles.iter().cloned().collect());
        let principal = Record::new(
            "P",
            vec![
                ("id".into(), Ty::String, true),
                ("roles".into(), Ty::List(Box::new(Ty::Enum(roles))), true),
                ("capabilities".into(), Ty::List(Box::new(Ty::String)), true),
                ("scopes".into(), Ty::List(Box::new(Ty::String)), true),
                ("client_id".into(), Ty::String, true),
                (
                    "attr".into(),
                    Ty::Record(Record::of_object("P.attr", &schema.principal)),
                    true,
                ),
            ],
            false,
        );
        let kind = &schema.kinds["Patient"];
        let resource = Record::new(
            "R",
            vec![
                (
                    "kind".into(),
                    Ty::Enum(Choices::new("a declared kind", vec!["Patient".into()])),
                    true,
                ),
                ("id".into(), Ty::String, true),
                (
                    "attr".into(),
                    Ty::Record(Record::of_object(
                        "R.attr of kind \"Patient\"",
                        &kind.attributes,
                    )),
                    true,
                ),
            ],
            false,
        );
        TypeEnv {
            principal: Ty::Record(principal),
            resource: Ty::Record(resource),
            action: Ty::Enum(Choices::new("an action of this rule", kind.actions.clone())),
            context: Ty::Record(Record::of_object("C", &schema.context)),
        }
    }

    fn problems(source: &str) -> Vec<String> {
        Environment::default()
            .type_check(source, &env(), &NamedConditions::new())
            .unwrap()
            .problems
            .into_iter()
            .map(|p| format!("{}{}", if p.warning { "warning: " } else { "" }, p.message))
            .collect()
    }

    fn clean(source: &str) {
        let found = problems(source);
        assert!(found.is_empty(), "{source}: {found:?}");
    }

    fn fails(source: &str, expected: &str) {
        let found = problems(source);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{source}: expected {expected:?} in {found:?}"
        );
    }

    #[test]
    fn well_typed_conditions_pass() {
        for source in [
            "R.attr.celebrity == true",
            "R.attr.celebrity",
            "!R.attr.celebrity && A == 'read'",
            "has(P.attr.practice_id) && R.attr.practice_id == P.attr.practice_id",
            "!has(P.attr.licensed_states) || R.attr.practice_id in P.attr.licensed_states",
            "has(R.attr.amount) ? R.attr.amount > 100 : false",
            "has(R.attr.amount) && R.attr.amount + 1.0 > 2.0",
            "has(R.attr.amount) && R.attr.amount == 100",
            "R.attr.confidentiality in ['R', 'V']",
            "'nurse' in P.roles && P.id != ''",
            "P.roles.exists(r, r == 'physician')",
            "has(R.attr.tags) && R.attr.tags.exists(t, t.startsWith('vip'))",
            "has(R.attr.tags) && size(R.attr.tags) > 0",
            "R.kind == 'Patient' && R.id.size() > 0",
            "has(C.ip) && C.ip.startsWith('10.')",
            "has(R.attr.licensed) && has(R.attr.licensed.CA) && R.attr.licensed.CA",
            "int(R.attr.celebrity ? 1 : 0) == 1",
            "[1, 2].map(x, x * 2).exists(y, y == 4) || R.attr.celebrity",
        ] {
            clean(source);
        }
    }

    #[test]
    fn type_confusion_is_an_error() {
        fails("R.attr.celebrity == 'true'", "R.attr.celebrity (bool) and \"true\" (string) never compare equal: this is always false");
        fails("R.attr.celebrity != 1", "always true");
        fails("P.roles == 'suspended'", "never compare equal");
        fails("1 == '1'", "never compare equal");
        fails("R.attr.confidentiality in [1, 2]", "is never in");
        fails("R.attr.practice_id == null", "is never null");
        fails("R.attr.practice_id > 3", "cannot be ordered");
        fails(
            "R.attr.practice_id",
            "the condition is a string, not a bool",
        );
        fails("R.attr.practice_id && true", "&& needs a bool");
        fails(
            "has(R.attr.amount) && R.attr.amount + 1 > 2.0",
            "fails at run time: CEL does not mix int and double",
        );
        fails(
            "R.attr.practice_id.startsWith(1)",
            "startsWith() takes strings",
        );
        fails("size(R.attr.celebrity) > 0", "size() takes");
        fails("'CA' in R.attr.celebrity", "'in' needs a list or a map");
    }

    #[test]
    fn unknown_names_have_a_did_you_mean() {
        fails("R.attr.practce_id == '7'", "unknown attribute 'practce_id': R.attr of kind \"Patient\" declares no such attribute (did you mean 'practice_id'?)");
        fails(
            "has(R.attr.practce_id) && R.attr.practce_id == '7'",
            "did you mean 'practice_id'?",
        );
        fails(
            "'nures' in P.roles",
            "\"nures\" is not a declared role (did you mean \"nurse\"?)",
        );
        fails(
            "A == 'delte'",
            "\"delte\" is not an action of this rule (did you mean \"delete\"?)",
        );
        fails(
            "R.attr.confidentiality == 'X'",
            "\"X\" is not a value of R.attr of kind \"Patient\".confidentiality",
        );
        fails(
            "P.atr.x == 1",
            "unknown attribute 'atr': P declares no such attribute (did you mean 'attr'?)",
        );
    }

    #[test]
    fn optional_attributes_need_a_guard() {
        fails(
            "R.attr.practice_id == P.attr.practice_id",
            "P.attr.practice_id is optional in the schema: guard it with has(P.attr.practice_id)",
        );
        fails(
            "has(R.attr.amount) || R.attr.amount > 1.0",
            "R.attr.amount is optional",
        );
        fails("R.attr.tags.exists(t, t == 'x')", "R.attr.tags is optional");
        clean("!has(R.attr.primary_physician_id) || P.id != R.attr.primary_physician_id");
        clean("has(R.attr.primary_physician_id) && !(P.id != R.attr.primary_physician_id)");
    }

    #[test]
    fn equality_of_two_attributes_that_may_both_be_empty_is_a_warning() {
        let found =
            problems("has(R.attr.primary_physician_id) && P.id == R.attr.primary_physician_id");
        assert!(
            found.iter().any(|p| p == "warning: P.id == R.attr.primary_physician_id also holds when both are empty strings: declare one of them non_empty in the schema, or require it (R.attr.primary_physician_id != \"\")"),
            "{found:?}"
        );
        clean("has(R.attr.primary_physician_id) && R.attr.primary_physician_id != '' && P.id == R.attr.primary_physician_id");
        clean("P.id != '' && P.id == R.id");
        clean("size(P.id) > 0 && P.id == R.id");
        clean("P.id == 'dr-1'");
        // practice_id is declared non_empty below: one side never empty is enough.
        clean("has(P.attr.practice_id) && R.attr.practice_id == P.attr.practice_id");
    }

    #[test]
    fn constant_conditions_are_warnings() {
        let found = problems("1 == 1");
        assert_eq!(
            found,
            ["warning: the condition reads nothing of the request (P, R, A, C): it is constant"]
        );
        assert!(problems("[1, 2].exists(x, x == 2)")
            .iter()
            .any(|p| p.contains("constant")));
    }

    #[test]
    fn errors_point_at_the_offending_sub_expression() {
        let found = Environment::default()
            .type_check(
                "R.attr.celebrity &&\n  R.attr.practce_id == '7'",
                &env(),
                &NamedConditions::new(),
            )
            .unwrap()
            .problems;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].position.map(|(line, _)| line), Some(2));
    }
}
