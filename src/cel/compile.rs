//! Compiling conditions: parsing, checking what they refer to (variables, functions, named
//! conditions) and inlining named conditions.

use std::sync::Arc;

use ::cel::common::ast::{Expr, IdedExpr};
use ::cel::{Context, Program};

use super::walk::{each_child, Scope};
use super::{CompileError, Condition, Environment, NamedConditions, VARIABLES};

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
        let mut check = ReferenceCheck {
            environment: self,
            program,
            names,
            references: Vec::new(),
            problems: Vec::new(),
        };
        check.visit(program.expression(), &mut Scope::default());
        match check.problems.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(check.references),
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
}

/// What a condition refers to: problems (unknown variables and functions) and the spans (start,
/// inclusive stop) of free identifiers naming a named condition.
struct ReferenceCheck<'a> {
    environment: &'a Environment,
    program: &'a Program,
    names: &'a NamedConditions,
    references: Vec<(usize, usize, String)>,
    problems: Vec<CompileError>,
}

impl ReferenceCheck<'_> {
    fn visit(&mut self, e: &IdedExpr, scope: &mut Scope) {
        match &e.expr {
            Expr::Ident(name) => {
                if VARIABLES.contains(&name.as_str()) || scope.binds(name) {
                    return;
                }
                if self.names.contains_key(name) {
                    match self.program.source_info().offset_for(e.id) {
                        Some((start, stop)) => {
                            self.references
                                .push((start as usize, stop as usize, name.clone()))
                        }
                        None => self.problems.push(CompileError {
                            message: format!("cannot locate the use of named condition '{name}'"),
                            position: None,
                        }),
                    }
                } else {
                    let close = self.names.keys().filter(|n| similar(n, name)).min();
                    let hint = VARIABLES
                        .iter()
                        .find(|v| name.eq_ignore_ascii_case(v) || name.starts_with(*v))
                        .map(|v| format!(" (did you mean '{v}'?)"))
                        .or_else(|| close.map(|c| format!(" (did you mean the condition '{c}'?)")))
                        .unwrap_or_else(|| {
                            " (conditions see P, R, A, C and the named conditions of the policy set)".to_string()
                        });
                    self.problems.push(CompileError {
                        message: format!("unknown variable '{name}'{hint}"),
                        position: position(self.program, e.id),
                    });
                }
                return;
            }
            Expr::Call(call) => {
                let operator = call.func_name.starts_with('_')
                    || call.func_name.starts_with('!')
                    || call.func_name.starts_with('@');
                if !operator && !self.environment.has_function(&call.func_name) {
                    self.problems.push(CompileError {
                        message: format!("unknown function '{}'", call.func_name),
                        position: position(self.program, e.id),
                    });
                }
            }
            Expr::Struct(_) => {
                self.problems.push(CompileError {
                    message: "message construction is not supported in conditions".to_string(),
                    position: position(self.program, e.id),
                });
                return;
            }
            _ => {}
        }
        each_child(e, scope, &mut |child, scope| self.visit(child, scope));
    }
}

/// The 1-based (line, column) of the node `id` in the program's source.
pub(super) fn position(program: &Program, id: u64) -> Option<(usize, usize)> {
    let (start, _) = program.source_info().offset_for(id)?;
    let source = &program.source_info().source;
    let start = start as usize;
    let before = source.get(..start)?;
    let line = before.matches('\n').count() + 1;
    let column = before.chars().count()
        - before
            .rfind('\n')
            .map(|i| before[..=i].chars().count())
            .unwrap_or(0)
        + 1;
    Some((line, column))
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
