//! The decision procedure: a [`CheckRequest`] and a [`PolicySet`] in, one [`Decision`] per
//! (resource, action) out. Pure, synchronous, no I/O, no locks.
//!
//! For one (principal, resource, action), over the rules indexed for (kind, action) whose
//! principal selectors match:
//! 1. a deny rule whose resource selector and condition hold denies; one that fails to evaluate
//!    denies too (fail closed);
//! 2. if a scope gate is on for the kind, a request no granted SMART scope covers is denied;
//! 3. an allow rule whose selector and condition hold allows; one that fails to evaluate does not
//!    allow (its error is named in the reason of the default deny);
//! 4. otherwise deny (default deny).
//!
//! Before any of that, a set with a schema holds the request to it (unless its validation is
//! `off`): a principal or context that violates it, a kind it does not declare, an action it does
//! not declare for the kind, or a resource whose attributes violate it gets a deny naming the
//! attribute, the expected and the actual type (validation `reject`), or is decided as usual
//! with the violation reported beside the decision (validation `warn`).
//!
//! Request values (`P`, `C`) are built once per request, `R` once per resource, `A` once per
//! action; every candidate rule is evaluated in the same context.
//!
//! An explained Check ([`Limits::explain`]) also returns, with each decision, the rules it
//! considered in that order and what came of each ([`trace`]); the same procedure runs without
//! recording anything otherwise.

mod trace;

use std::sync::Arc;
use std::time::Instant;

use crate::cel::cost::Sizes;
use crate::cel::{Activation, EvalContext, EvalError, Value};
use crate::compile::{CompiledRule, Kind, PolicySet, PrincipalKey};
use crate::policy::schema::ValidationMode;
use crate::policy::Effect;
use crate::request::{CheckRequest, Principal, Resource};
use crate::schema::{self, Schema};
use crate::smart::SmartScope;
pub use trace::{Outcome, Stage, Step};
use trace::{Recorder, Tracer};

/// The decision on one action of one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub effect: Effect,
    /// The deciding policy; empty for a default deny without a failing rule.
    pub policy: Arc<str>,
    /// The deciding rule; empty like `policy`.
    pub rule: Arc<str>,
    pub reason: Arc<str>,
    /// A condition failed to evaluate while deciding (the decision is a deny).
    pub evaluation_error: bool,
    /// How the request violates the set's schema, if it does: the reason of the deny under
    /// validation `reject`, reported beside a decision made as usual under `warn`.
    pub schema_violation: Option<Arc<str>>,
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }

    fn from_rule(rule: &CompiledRule) -> Decision {
        Decision {
            effect: rule.effect,
            policy: Arc::clone(&rule.policy),
            rule: Arc::clone(&rule.name),
            reason: Arc::clone(&rule.reason),
            evaluation_error: false,
            schema_violation: None,
        }
    }

    /// A deny caused by `rule` failing to evaluate.
    fn failed(rule: &CompiledRule, reason: String) -> Decision {
        Decision {
            effect: Effect::Deny,
            policy: Arc::clone(&rule.policy),
            rule: Arc::clone(&rule.name),
            reason: reason.into(),
            evaluation_error: true,
            schema_violation: None,
        }
    }

    fn failed_deny(rule: &CompiledRule, error: &EvalError) -> Decision {
        Decision::failed(
            rule,
            format!(
                "denied: deny rule \"{}\" of policy \"{}\" could not be evaluated (fail closed): {error}",
                rule.name, rule.policy
            ),
        )
    }

    fn default_deny(reason: String) -> Decision {
        Decision {
            effect: Effect::Deny,
            policy: "".into(),
            rule: "".into(),
            reason: reason.into(),
            evaluation_error: false,
            schema_violation: None,
        }
    }

    /// A deny because the request violates the schema.
    fn invalid(violation: &Arc<str>) -> Decision {
        Decision {
            effect: Effect::Deny,
            policy: "".into(),
            rule: "".into(),
            reason: format!("denied: {violation}").into(),
            evaluation_error: false,
            schema_violation: Some(Arc::clone(violation)),
        }
    }
}

/// The decisions for one resource, actions in request order.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDecisions {
    pub kind: String,
    pub id: String,
    pub actions: Vec<(String, Decision)>,
    /// With [`Limits::explain`], the trace of each action's decision, in the order of
    /// `actions`: the rules considered, in evaluation order, with their outcomes. Empty (never
    /// allocated) otherwise: the trace is no part of a [`Decision`], so a Check without explain
    /// carries nothing for it.
    pub traces: Vec<Vec<Step>>,
}

impl ResourceDecisions {
    /// The trace of the decision on `actions[i]`; empty without explain.
    pub fn trace(&self, i: usize) -> &[Step] {
        self.traces.get(i).map_or(&[], Vec::as_slice)
    }
}

/// Decides every (resource, action) of `request` against `set`.
pub fn check(set: &PolicySet, request: &CheckRequest) -> Vec<ResourceDecisions> {
    match check_until(set, request, None) {
        Ok(results) => results,
        Err(DeadlineExceeded { .. }) => unreachable!("no deadline was given"),
    }
}

/// The deadline passed before every decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineExceeded {
    pub decided: usize,
    pub requested: usize,
}

/// Like [`check`], but gives up once `deadline` has passed: the clock is read before every
/// condition is evaluated, so a request stops at most one condition's evaluation past its
/// deadline, however many resources, actions and rules it has.
pub fn check_until(
    set: &PolicySet,
    request: &CheckRequest,
    deadline: Option<Instant>,
) -> Result<Vec<ResourceDecisions>, DeadlineExceeded> {
    check_with(
        set,
        request,
        &Limits {
            deadline,
            ..Limits::default()
        },
    )
}

/// How long and how hard a Check may work.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Give up (DEADLINE_EXCEEDED) once this has passed: the clock is read before every
    /// condition.
    pub deadline: Option<Instant>,
    /// The most steps one condition may take on the request's values (see `cel::cost`): a
    /// condition that could take more is not evaluated, and fails (a deny rule denies, an allow
    /// rule does not allow), naming the rule.
    pub cost_budget: u64,
    /// Record the rules each decision considers ([`ResourceDecisions::traces`]). Off, the
    /// decision procedure records nothing and costs nothing more.
    pub explain: bool,
}

/// The default cost budget of a condition: a million interpreter steps, tens of milliseconds.
pub const DEFAULT_COST_BUDGET: u64 = 1_000_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: None,
            cost_budget: DEFAULT_COST_BUDGET,
            explain: false,
        }
    }
}

/// Like [`check_until`], with every limit given.
pub fn check_with(
    set: &PolicySet,
    request: &CheckRequest,
    limits: &Limits,
) -> Result<Vec<ResourceDecisions>, DeadlineExceeded> {
    if limits.explain {
        check_traced::<Recorder>(set, request, limits)
    } else {
        check_traced::<()>(set, request, limits)
    }
}

/// [`check_with`], recording each decision's steps with a `T`.
fn check_traced<T: Tracer>(
    set: &PolicySet,
    request: &CheckRequest,
    limits: &Limits,
) -> Result<Vec<ResourceDecisions>, DeadlineExceeded> {
    let merged;
    let request = match set.entities.merged(request) {
        Some(with_stored) => {
            merged = with_stored;
            &merged
        }
        None => request,
    };
    let deadline = limits.deadline;
    let schema = set.request_schema();
    let request_violation = schema.and_then(|s| request_violation(s, request));
    let principal = set.projection.principal(&request.principal);
    let key = set.principal_key(&request.principal);
    let context = Value::from_json_object(&request.context);
    let mut scopes = GrantedScopes::new(&request.principal.scopes);
    let requested: usize = request.resources.iter().map(|c| c.actions.len()).sum();
    let mut decided = 0usize;
    let mut results = Vec::with_capacity(request.resources.len());
    for check in &request.resources {
        let resource = &check.resource;
        let kind = set.kind(&resource.kind);
        let resource_violation = match (&request_violation, schema) {
            (Some(v), _) => Some(Arc::clone(v)),
            (None, Some(_)) => resource_violation(kind, resource),
            (None, None) => None,
        };
        let resource_value = set.projection.resource(resource);
        let sizes = Sizes::new(&request.principal, resource, &request.context);
        let mut actions = Vec::with_capacity(check.actions.len());
        let mut traces = Vec::new();
        for action in &check.actions {
            let violation = match (&resource_violation, schema) {
                (Some(v), _) => Some(Arc::clone(v)),
                (None, Some(_)) => action_violation(kind, resource, action),
                (None, None) => None,
            };
            let mut trace = T::default();
            let decision = match (violation, schema.map(|s| s.mode)) {
                (Some(v), Some(ValidationMode::Reject)) => {
                    trace.record(|| Some(Step::schema()));
                    Decision::invalid(&v)
                }
                (violation, _) => {
                    let mut decision = decide(
                        set,
                        kind,
                        &key,
                        &request.principal,
                        &principal,
                        resource,
                        &resource_value,
                        action,
                        &context,
                        &mut scopes,
                        deadline,
                        (&sizes, limits.cost_budget),
                        &mut trace,
                    )
                    .map_err(|Late| DeadlineExceeded { decided, requested })?;
                    decision.schema_violation = violation;
                    decision
                }
            };
            trace.finish(&mut traces);
            actions.push((action.clone(), decision));
            decided += 1;
        }
        results.push(ResourceDecisions {
            kind: resource.kind.clone(),
            id: resource.id.clone(),
            actions,
            traces,
        });
    }
    Ok(results)
}

/// How the principal or the context violates the schema, if either does.
fn request_violation(schema: &Schema, request: &CheckRequest) -> Option<Arc<str>> {
    let violation = schema
        .principal
        .check("P.attr", &request.principal.attr)
        .and_then(|()| schema.context.check("C", &request.context))
        .err()?;
    Some(violation.to_string().into())
}

/// How a resource violates the schema (its kind undeclared, or its attributes), if it does.
fn resource_violation(kind: Kind<'_>, resource: &Resource) -> Option<Arc<str>> {
    let Some(declared) = kind.schema() else {
        return Some(undeclared_kind(&resource.kind));
    };
    let violation = declared.attributes.check("R.attr", &resource.attr).err()?;
    Some(violation.to_string().into())
}

#[cold]
fn undeclared_kind(kind: &str) -> Arc<str> {
    format!("kind {kind:?} is not declared in the schema").into()
}

/// Whether the kind declares the action (the resource already passed).
fn action_violation(kind: Kind<'_>, resource: &Resource, action: &str) -> Option<Arc<str>> {
    let declared = kind.schema()?;
    if declared.has_action(action) {
        return None;
    }
    let hint = schema::closest(action, declared.actions.iter().map(String::as_str))
        .map(|c| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default();
    Some(
        format!(
            "action {action:?} is not declared for kind {:?} in the schema{hint}",
            resource.kind
        )
        .into(),
    )
}

/// The principal's SMART scopes, parsed on first use.
struct GrantedScopes<'r> {
    raw: &'r [String],
    parsed: Option<Vec<SmartScope>>,
}

impl<'r> GrantedScopes<'r> {
    fn new(raw: &'r [String]) -> Self {
        GrantedScopes { raw, parsed: None }
    }

    fn get(&mut self) -> &[SmartScope] {
        self.parsed.get_or_insert_with(|| {
            self.raw
                .iter()
                .filter_map(|s| SmartScope::parse(s))
                .collect()
        })
    }
}

/// The deadline passed before a condition was evaluated.
struct Late;

#[allow(clippy::too_many_arguments)]
fn decide<T: Tracer>(
    set: &PolicySet,
    kind_rules: Kind<'_>,
    key: &PrincipalKey<'_>,
    principal: &Principal,
    principal_value: &Value<'_>,
    resource: &Resource,
    resource_value: &Value<'_>,
    action: &str,
    context: &Value<'_>,
    scopes: &mut GrantedScopes<'_>,
    deadline: Option<Instant>,
    budget: (&Sizes<'_>, u64),
    trace: &mut T,
) -> Result<Decision, Late> {
    let action_value = Value::string(action);
    let activation = Activation::new(principal_value, resource_value, &action_value, context);
    let eval = activation.context(&set.environment);
    let mut failed_allow: Option<(u32, &CompiledRule, EvalError)> = None;
    // Two loops, not one with a test per rule: the scope gate comes between the deny rules and
    // the allow rules, and nothing is looked at per rule that was not before explain existed.
    let (denies, allows) = kind_rules.rules_by_effect(action);
    for &id in denies {
        let considered = consider(
            set,
            id,
            key,
            &eval,
            deadline,
            budget,
            trace,
            &mut failed_allow,
        );
        if let Some(decision) = considered? {
            return Ok(decision);
        }
    }
    // Every deny rule has been seen: apply the scope ceiling now (it applies whether or not an
    // allow rule selects the principal).
    let denial = scope_gate(set, principal, resource, action, scopes);
    trace.record(|| Step::gate(set, &resource.kind, denial.is_none()));
    if let Some(denial) = denial {
        return Ok(denial);
    }
    for &id in allows {
        let considered = consider(
            set,
            id,
            key,
            &eval,
            deadline,
            budget,
            trace,
            &mut failed_allow,
        );
        if let Some(decision) = considered? {
            return Ok(decision);
        }
    }
    let kind = &resource.kind;
    if let Some((id, ..)) = &failed_allow {
        trace.decided_by(*id);
    }
    Ok(match failed_allow {
        Some((_, rule, error)) => Decision::failed(
            rule,
            format!(
                "denied: no rule allows {kind}:{action}; allow rule \"{}\" of policy \"{}\" could not be evaluated: {error}",
                rule.name, rule.policy
            ),
        ),
        None if !kind_rules.known => Decision::default_deny(format!(
            "denied by default: no policy names kind \"{kind}\" and no rule allows {kind}:{action} for this principal"
        )),
        None => Decision::default_deny(format!(
            "denied by default: no rule allows {kind}:{action} for this principal"
        )),
    })
}

/// Rule `id` considered: its decision if it makes one (it holds, or a deny rule fails), `None`
/// to go on to the next rule (an allow rule that fails is kept in `failed_allow`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn consider<'s, T: Tracer>(
    set: &'s PolicySet,
    id: u32,
    key: &PrincipalKey<'_>,
    eval: &EvalContext<'_>,
    deadline: Option<Instant>,
    budget: (&Sizes<'_>, u64),
    trace: &mut T,
    failed_allow: &mut Option<(u32, &'s CompiledRule, EvalError)>,
) -> Result<Option<Decision>, Late> {
    let rule = &set.rules[id as usize];
    if !rule.principals.matches(key) {
        trace.record(|| Some(Step::rule(set, id, Outcome::PrincipalNotMatched)));
        return Ok(None);
    }
    if let Some(deadline) = deadline {
        // Evaluating a condition is the only step whose cost the request controls (a
        // comprehension over a list it sends): look at the clock before each.
        if (rule.condition.is_some() || rule.target.is_some()) && Instant::now() >= deadline {
            return Err(Late);
        }
    }
    match holds(rule, eval, budget) {
        Ok(Holds::Yes) => {
            trace.record(|| Some(Step::rule(set, id, Outcome::Held)));
            trace.decided();
            Ok(Some(Decision::from_rule(rule)))
        }
        Ok(missed) => {
            trace.record(|| {
                let outcome = match missed {
                    Holds::NotTarget => Outcome::ResourceNotMatched,
                    _ => Outcome::NotHeld,
                };
                Some(Step::rule(set, id, outcome))
            });
            Ok(None)
        }
        Err(error) => {
            trace.record(|| Some(Step::rule(set, id, Outcome::Error(error.0.as_str().into()))));
            if rule.effect == Effect::Deny {
                trace.decided();
                return Ok(Some(Decision::failed_deny(rule, &error)));
            }
            failed_allow.get_or_insert((id, rule, error));
            Ok(None)
        }
    }
}

/// Whether a rule's resource selector and condition hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holds {
    Yes,
    /// The resource policy's selector does not hold.
    NotTarget,
    /// The condition does not hold.
    NotCondition,
}

/// Whether the rule's resource selector and condition both hold; an error for either (a
/// condition over its cost budget included). Inlined into [`consider`]'s two uses (it was into
/// the one loop before).
#[inline(always)]
fn holds(
    rule: &CompiledRule,
    eval: &EvalContext<'_>,
    (sizes, budget): (&Sizes<'_>, u64),
) -> Result<Holds, EvalError> {
    if let Some(target) = &rule.target {
        target.within_budget(sizes, budget)?;
        if !target.eval_bool(eval)? {
            return Ok(Holds::NotTarget);
        }
    }
    match &rule.condition {
        Some(condition) => {
            condition.within_budget(sizes, budget)?;
            Ok(if condition.eval_bool(eval)? {
                Holds::Yes
            } else {
                Holds::NotCondition
            })
        }
        None => Ok(Holds::Yes),
    }
}

/// The scope gate's denial, if a gate is on for the kind and no granted scope covers the request.
fn scope_gate(
    set: &PolicySet,
    principal: &Principal,
    resource: &Resource,
    action: &str,
    scopes: &mut GrantedScopes<'_>,
) -> Option<Decision> {
    let gate = set.scope_gate_for(&resource.kind)?;
    let kind = &resource.kind;
    let denial = |reason: String| Decision {
        effect: Effect::Deny,
        policy: gate.name.as_str().into(),
        rule: "scope-gate".into(),
        reason: reason.into(),
        evaluation_error: false,
        schema_violation: None,
    };
    let Some(permission) = gate.permission(action) else {
        return Some(denial(format!(
            "denied by scope gate \"{}\": action \"{action}\" maps to no SMART permission",
            gate.name
        )));
    };
    let covered = scopes.get().iter().any(|scope| {
        scope.covers(
            kind,
            permission,
            &resource.attr,
            &principal.attr,
            &gate.compartment,
        )
    });
    (!covered).then(|| {
        denial(format!(
            "denied by scope gate \"{}\": no granted scope covers {kind}:{action}",
            gate.name
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::ResourceCheck;
    use serde_json::json;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn set(text: &str) -> PolicySet {
        let files = [(PathBuf::from("p.yaml"), text.to_string())];
        let source = crate::policy::parse_files(Path::new("t"), &files).unwrap();
        PolicySet::compile(&source).unwrap()
    }

    fn request(resources: usize) -> CheckRequest {
        CheckRequest {
            request_id: "t".into(),
            principal: Principal {
                id: "u".into(),
                roles: vec!["clerk".into()],
                ..Principal::default()
            },
            resources: (0..resources)
                .map(|i| ResourceCheck {
                    resource: Resource {
                        kind: "Doc".into(),
                        id: i.to_string(),
                        attr: json!({"owner": "u"}),
                    },
                    actions: vec!["read".into()],
                })
                .collect(),
            context: json!({}),
        }
    }

    #[test]
    fn the_deadline_is_looked_at_before_every_condition() {
        let conditional = set("agent_policy:\n  name: p\n  principals: {roles: [clerk]}\n  rules:\n    - {name: r, effect: allow, actions: [read], kinds: [Doc], when: R.attr.owner == P.id}\n");
        let past = Instant::now() - Duration::from_millis(1);
        // Not even the first condition runs past the deadline (it used to be every 32 decisions).
        assert_eq!(
            check_until(&conditional, &request(3), Some(past)).unwrap_err(),
            DeadlineExceeded {
                decided: 0,
                requested: 3
            }
        );
        let later = Instant::now() + Duration::from_secs(60);
        let decided = check_until(&conditional, &request(3), Some(later)).unwrap();
        assert!(decided.iter().all(|r| r.actions[0].1.is_allow()));
        // Without a condition to evaluate, nothing the request sends can take time: decided.
        let unconditional = set("agent_policy:\n  name: p\n  principals: {roles: [clerk]}\n  rules:\n    - {name: r, effect: allow, actions: [read], kinds: [Doc]}\n");
        assert!(check_until(&unconditional, &request(3), Some(past)).is_ok());
    }
}
