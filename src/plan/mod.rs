//! PlanFilter: "which resources of kind K may this principal perform action A on?", answered as a
//! [`Filter`] over resource attributes that selects exactly the resources Check would allow.
//!
//! For the rules Check would consider (indexed for (kind, action), principal selector matching),
//! each condition is partially evaluated ([`crate::cel::partial`]) into the rows where it is true
//! and where it is false. Check allows a resource when no deny rule fires (a deny fires when its
//! selector and condition hold *or fail*), the scope gate passes, and some allow rule holds, so:
//!
//! ```text
//! filter = AND over deny rules d:  false(target_d) OR (true(target_d) AND false(cond_d))
//!      AND scope gate terms (one OR-branch per covering SMART scope)
//!      AND OR over allow rules a:  true(target_a) AND true(cond_a)
//! ```
//!
//! simplified, with attributes the caller already knows substituted. A condition the filter
//! language cannot express is an error naming its policy and rule, never a wider filter.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::cel::cost::Sizes;
use crate::cel::partial::{Known, Truth};
use crate::cel::{Condition, Value};
use crate::compile::{CompiledRule, PolicySet, ScopeGate};
use crate::filter::{CmpOp, Filter};
use crate::policy::schema::ValidationMode;
use crate::policy::Effect;
use crate::request::Principal;
use crate::smart::{Compartment, SmartScope};

/// What to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub principal: Principal,
    pub kind: String,
    pub action: String,
    /// Request context (JSON object), as in Check.
    pub context: Json,
    /// Resource attributes the caller has already fixed (JSON object).
    pub known_attr: Json,
}

/// The answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    AlwaysAllowed,
    AlwaysDenied,
    Conditional(Filter),
}

impl Plan {
    /// The plan as one filter (`True` / `False` for the unconditional answers).
    pub fn filter(&self) -> Filter {
        match self {
            Plan::AlwaysAllowed => Filter::True,
            Plan::AlwaysDenied => Filter::False,
            Plan::Conditional(f) => f.clone(),
        }
    }
}

/// A rule whose condition no filter can express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub policy: String,
    pub rule: String,
    pub message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rule \"{}\" of policy \"{}\" cannot be turned into a filter: {}",
            self.rule, self.policy, self.message
        )
    }
}

impl std::error::Error for PlanError {}

/// A plan, and why it is ALWAYS_DENIED when the request violates the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub plan: Plan,
    /// How the request violates the set's schema (validation `reject`): the plan is then
    /// [`Plan::AlwaysDenied`], as Check would deny every resource.
    pub schema_violation: Option<Arc<str>>,
}

/// Plans `request` against `set`.
pub fn plan(set: &PolicySet, request: &PlanRequest) -> Result<Plan, PlanError> {
    plan_explained(set, request).map(|p| p.plan)
}

/// Like [`plan`], with the schema violation that made it ALWAYS_DENIED, if one did.
///
/// With a schema (validation `reject`), a principal or context that violates it, a kind or action
/// it does not declare, or `known_attr` of the wrong type plan to ALWAYS_DENIED, as Check denies
/// them. The filter otherwise selects the resources Check allows among those whose attributes
/// fit the schema (as a typed table holds them; `filter::sql` renders the checks a table's
/// column types cannot make).
pub fn plan_explained(set: &PolicySet, request: &PlanRequest) -> Result<Planned, PlanError> {
    plan_inner(set, request, None)
}

/// Which rules shaped a plan: each rule considered (principal selector matching) with the rows
/// where it takes part, and the scope gate's rows. For analysis (`analysis`), not the request
/// path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// (rule id in `PolicySet::rules`, rows): for a deny rule the rows where it does *not* fire,
    /// for an allow rule the rows where it holds; simplified, without known attributes
    /// substituted. Rules the planner did not reach (it stops when no allow can hold) are absent.
    pub rules: Vec<(u32, Filter)>,
    /// The rows some granted scope covers, when a scope gate is on for the kind.
    pub gate: Option<Filter>,
}

/// Like [`plan_explained`], with the [`Trace`] of the rules that shaped the plan.
pub fn plan_traced(set: &PolicySet, request: &PlanRequest) -> Result<(Planned, Trace), PlanError> {
    let mut trace = Trace::default();
    let planned = plan_inner(set, request, Some(&mut trace))?;
    Ok((planned, trace))
}

fn plan_inner(
    set: &PolicySet,
    request: &PlanRequest,
    mut trace: Option<&mut Trace>,
) -> Result<Planned, PlanError> {
    let merged;
    let request = if set.entities.principal(&request.principal.id).is_some() {
        let mut with_stored = request.clone();
        set.entities.merge_principal(&mut with_stored.principal);
        merged = with_stored;
        &merged
    } else {
        request
    };
    let denied = |violation: String| {
        Ok(Planned {
            plan: Plan::AlwaysDenied,
            schema_violation: Some(violation.into()),
        })
    };
    let kind = set.kind(&request.kind);
    if let Some(schema) = set
        .request_schema()
        .filter(|s| s.mode == ValidationMode::Reject)
    {
        if let Err(v) = schema
            .principal
            .check("P.attr", &request.principal.attr)
            .and_then(|()| schema.context.check("C", &request.context))
        {
            return denied(v.to_string());
        }
        let Some(declared) = kind.schema() else {
            return denied(format!(
                "kind {:?} is not declared in the schema",
                request.kind
            ));
        };
        if !declared.has_action(&request.action) {
            return denied(format!(
                "action {:?} is not declared for kind {:?} in the schema",
                request.action, request.kind
            ));
        }
        if let Err(v) = declared
            .attributes
            .check_known("R.attr", &request.known_attr)
        {
            return denied(v.to_string());
        }
    }
    let principal = set.projection.principal(&request.principal);
    let action = Value::string(&request.action);
    let context = Value::from_json_object(&request.context);
    let empty = Json::Object(Default::default());
    let known_attr = if request.known_attr.is_object() {
        &request.known_attr
    } else {
        &empty
    };
    let known = Known {
        principal: &principal,
        action: &action,
        context: &context,
        kind: &request.kind,
        attributes: known_attr,
    };
    let mut denies = Vec::new();
    let mut allows = Vec::new();
    // A deny rule no filter can express matters only if some allow rule can hold.
    let mut unplannable_deny: Option<PlanError> = None;
    let unknown_resource = crate::request::Resource {
        kind: request.kind.clone(),
        ..Default::default()
    };
    let sizes = Sizes::new(&request.principal, &unknown_resource, &request.context);
    let key = set.principal_key(&request.principal);
    for &id in kind.rules_for(&request.action) {
        let rule = &set.rules[id as usize];
        if !rule.principals.matches(&key) {
            continue;
        }
        let truths =
            truth_of(set, rule, rule.target.as_deref(), &known, &sizes).and_then(|target| {
                truth_of(set, rule, rule.condition.as_ref(), &known, &sizes).map(|c| (target, c))
            });
        let (target, condition) = match (truths, rule.effect) {
            (Ok(truths), _) => truths,
            (Err(e), Effect::Deny) => {
                unplannable_deny.get_or_insert(e);
                continue;
            }
            (Err(e), Effect::Allow) => return Err(e),
        };
        let term = match rule.effect {
            // Does not fire: the target is false, or it is true and the condition is false.
            Effect::Deny => Filter::Or(vec![
                target.when_false,
                Filter::And(vec![target.when_true, condition.when_false]),
            ]),
            Effect::Allow => Filter::And(vec![target.when_true, condition.when_true]),
        };
        if let Some(trace) = trace.as_deref_mut() {
            trace.rules.push((id, term.clone().simplify()));
        }
        let term = Filter::from_rule(&rule.policy, &rule.name, term);
        match rule.effect {
            Effect::Deny => denies.push(term),
            Effect::Allow => allows.push(term),
        }
    }
    let allowed = substitute_known(Filter::Or(allows), known_attr).simplify();
    let gate = set
        .scope_gate_for(&request.kind)
        .map(|gate| substitute_known(scope_gate_terms(gate, request), known_attr).simplify());
    if let Some(trace) = trace {
        trace.gate = gate.clone();
    }
    if allowed == Filter::False || gate == Some(Filter::False) {
        // Nothing can be allowed, whatever the deny rules say.
        return Ok(Planned {
            plan: Plan::AlwaysDenied,
            schema_violation: None,
        });
    }
    if let Some(e) = unplannable_deny {
        return Err(e);
    }
    let mut all = denies;
    all.extend(gate);
    all.push(allowed);
    let filter = substitute_known(Filter::And(all), known_attr).simplify();
    Ok(Planned {
        plan: match filter {
            Filter::True => Plan::AlwaysAllowed,
            Filter::False => Plan::AlwaysDenied,
            f => Plan::Conditional(f),
        },
        schema_violation: None,
    })
}

/// The truth sets of an optional condition (absent = always true).
fn truth_of(
    set: &PolicySet,
    rule: &CompiledRule,
    condition: Option<&Condition>,
    known: &Known<'_, '_>,
    sizes: &Sizes<'_>,
) -> Result<Truth, PlanError> {
    match condition {
        None => Ok(Truth {
            when_true: Filter::True,
            when_false: Filter::False,
        }),
        Some(c) => {
            let refused = |message: String| PlanError {
                policy: rule.policy.to_string(),
                rule: rule.name.to_string(),
                message,
            };
            // Partial evaluation unrolls comprehensions over known lists: the same budget as
            // Check (the resource's lists are unknown here: counted as empty).
            c.within_budget(sizes, crate::engine::DEFAULT_COST_BUDGET)
                .map_err(|e| refused(e.0))?;
            c.partial(&set.environment, known).map_err(|e| refused(e.0))
        }
    }
}

/// The rows some granted scope covers, as the engine's scope gate decides them.
fn scope_gate_terms(gate: &ScopeGate, request: &PlanRequest) -> Filter {
    let name: Arc<str> = gate.name.as_str().into();
    let rule: Arc<str> = "scope-gate".into();
    let Some(permission) = gate.permission(&request.action) else {
        return Filter::from_rule(&name, &rule, Filter::False);
    };
    let mut branches = Vec::new();
    for scope in request
        .principal
        .scopes
        .iter()
        .filter_map(|s| SmartScope::parse(s))
    {
        if !scope.names_kind(&request.kind) || !scope.allows(permission) {
            continue;
        }
        let mut terms = Vec::new();
        if scope.compartment == Compartment::Patient {
            match gate.compartment.launch_patient(&request.principal.attr) {
                Some(patient) => terms.push(Filter::compare(
                    CmpOp::Eq,
                    &gate.compartment.patient_attribute,
                    Json::String(patient.to_string()),
                )),
                None => continue,
            }
        }
        for (name, value) in &scope.params {
            terms.push(Filter::compare(
                CmpOp::Eq,
                name,
                Json::String(value.clone()),
            ));
        }
        branches.push(Filter::And(terms));
    }
    Filter::from_rule(&name, &rule, Filter::Or(branches))
}

/// Replaces every leaf on an attribute the caller fixed by its truth value for that attribute.
fn substitute_known(filter: Filter, known: &Json) -> Filter {
    let fixed = |a: &str| -> bool {
        let mut current = known;
        for segment in a.split('.') {
            match current.as_object().and_then(|o| o.get(segment)) {
                Some(next) => current = next,
                None => return false,
            }
        }
        true
    };
    match filter {
        Filter::Compare { ref attribute, .. }
        | Filter::In { ref attribute, .. }
        | Filter::Contains { ref attribute, .. }
        | Filter::Exists { ref attribute }
            if fixed(attribute) =>
        {
            if filter.matches(known) {
                Filter::True
            } else {
                Filter::False
            }
        }
        Filter::And(fs) => {
            Filter::And(fs.into_iter().map(|f| substitute_known(f, known)).collect())
        }
        Filter::Or(fs) => Filter::Or(fs.into_iter().map(|f| substitute_known(f, known)).collect()),
        Filter::Not(f) => Filter::negate(substitute_known(*f, known)),
        Filter::From { origin, filter } => Filter::From {
            origin,
            filter: Box::new(substitute_known(*filter, known)),
        },
        leaf => leaf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn clinic() -> PolicySet {
        PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    fn principal(v: Json) -> Principal {
        serde_json::from_value(v).unwrap()
    }

    fn plan_for(set: &PolicySet, p: Json, kind: &str, action: &str) -> Plan {
        plan(
            set,
            &PlanRequest {
                principal: principal(p),
                kind: kind.into(),
                action: action.into(),
                ..Default::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn a_practice_member_gets_her_practice() {
        let set = clinic();
        let p = plan_for(
            &set,
            json!({"id": "n", "roles": ["nurse"], "scopes": ["user/*.rs"], "attr": {"practice_id": "7"}}),
            "Patient",
            "read",
        );
        let Plan::Conditional(f) = p else {
            panic!("{p:?}")
        };
        let shown = f.to_string();
        assert!(shown.contains("practice_id == \"7\""), "{shown}");
        assert!(shown.contains("celebrity"), "{shown}");
    }

    #[test]
    fn a_patient_gets_her_own_records() {
        let set = clinic();
        let p = plan_for(
            &set,
            json!({"id": "alice", "roles": ["patient"], "scopes": ["user/*.rs"], "attr": {"patient_id": "123"}}),
            "Invoice",
            "read",
        );
        assert_eq!(
            p,
            Plan::Conditional(Filter::From {
                origin: crate::filter::Origin {
                    policy: "tenancy".into(),
                    rule: "patients-see-only-their-own-records".into()
                },
                filter: Box::new(Filter::compare(CmpOp::Eq, "patient_id", json!("123"))),
            })
        );
    }

    #[test]
    fn system_reads_invoices_everywhere_and_the_unknown_nothing() {
        let set = clinic();
        assert_eq!(
            plan_for(
                &set,
                json!({"roles": ["system"], "scopes": ["system/*.read"]}),
                "Invoice",
                "read"
            ),
            Plan::AlwaysAllowed
        );
        assert_eq!(
            plan_for(&set, json!({"roles": ["janitor"]}), "Invoice", "read"),
            Plan::AlwaysDenied
        );
        assert_eq!(
            plan_for(&set, json!({"roles": ["system"]}), "Invoice", "delete"),
            Plan::AlwaysDenied
        );
    }

    #[test]
    fn known_attributes_are_substituted() {
        let set = clinic();
        let request = PlanRequest {
            principal: principal(
                json!({"roles": ["patient"], "scopes": ["patient/Invoice.r"], "attr": {"patient_id": "123", "patient": "123"}}),
            ),
            kind: "Invoice".into(),
            action: "read".into(),
            known_attr: json!({"patient_id": "123"}),
            ..Default::default()
        };
        assert_eq!(plan(&set, &request).unwrap(), Plan::AlwaysAllowed);
        let other = PlanRequest {
            known_attr: json!({"patient_id": "456"}),
            ..request
        };
        assert_eq!(plan(&set, &other).unwrap(), Plan::AlwaysDenied);
    }

    #[test]
    fn unsupported_conditions_name_policy_and_rule() {
        let files = vec![(std::path::PathBuf::from("x.yaml"), "agent_policy:\n  name: odd\n  principals: {roles: [r]}\n  rules:\n    - name: prefix\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: R.attr.name.startsWith('a')\n".to_string())];
        let set = PolicySet::compile(&crate::policy::parse_files(Path::new("."), &files).unwrap())
            .unwrap();
        let err = plan(
            &set,
            &PlanRequest {
                principal: principal(json!({"roles": ["r"]})),
                kind: "Doc".into(),
                action: "read".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!((err.policy.as_str(), err.rule.as_str()), ("odd", "prefix"));
        assert!(err.to_string().contains("startsWith"), "{err}");
    }
}
