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

use ::cel::common::ast::IdedExpr;
use ::cel::{Env, Program};

pub mod check;
mod compile;
pub mod cost;
mod eval;
mod optimize;
pub mod partial;
pub mod projection;
mod record;
mod value;
mod walk;

pub use eval::{Activation, EvalContext, EvalError};
pub(crate) use value::Fields;
pub use value::{principal_value, resource_value, Value};

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
    /// An upper bound on the steps evaluating it takes (see [`cost`]).
    cost: cost::Bound,
}

impl Condition {
    fn new(program: Program, source: &str) -> Condition {
        Condition {
            evaluated: optimize::optimize(program.expression().clone()),
            cost: cost::bound(program.expression()),
            program,
            source: source.to_string(),
        }
    }

    /// Fails, without evaluating anything, when the condition could take more than `budget`
    /// steps on this request's values (a comprehension over a long list, `in` a long list,
    /// a `map` copying one). Free for conditions that iterate over nothing from the request.
    pub fn within_budget(&self, sizes: &cost::Sizes<'_>, budget: u64) -> Result<(), EvalError> {
        if let cost::Bound::Const(steps) = self.cost {
            if steps <= budget {
                return Ok(());
            }
        }
        let steps = self.cost.evaluate(sizes);
        if steps <= budget {
            Ok(())
        } else {
            Err(EvalError(format!(
                "over the cost budget: evaluating it could take {steps} steps on this request's values (the budget is {budget})"
            )))
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

#[cfg(test)]
mod tests {
    use super::eval::Bindings;
    use super::*;
    use ::cel::common::ast::Expr;
    use ::cel::common::value::CowVal;
    use ::cel::context::VariableResolver;
    use ::cel::Context;
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
            "P.roles.exists(r, !(r in ['system', 'patient']))",
            "P.roles.all(r, r != 'system')",
            "R.attr.tags.all(t, t.size() > 1)",
            "R.attr.tags.exists(t, t.missing == 1)",
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
