//! Policy analysis from the policy files alone: who can do what ([`matrix`]), and what a change
//! of the policies changes ([`diff`]).
//!
//! Both rest on principal classes ([`classes`]): the principals the set can tell apart (its roles,
//! capabilities, named ids, SMART scope shapes and the principal attributes its conditions read),
//! each with a representative principal whose attributes are symbolic placeholders. For each
//! class and each (kind, action) the planner ([`crate::plan`]) answers with a filter over the
//! resource's attributes: always, never, or the condition under which a resource is allowed,
//! shown with the principal's placeholders as `P.attr.x` and `P.id`.
//!
//! What is exact and what is sampled:
//! - exact: every role the schema declares or a selector names, every capability and principal
//!   id a selector names, a role no policy names, and no role at all; the scope gate's shapes
//!   (`user/`, `patient/`, `system/`, none) for scopes without granular parameters; bool and enum
//!   principal attributes (the diff tries every value); the presence of each optional principal
//!   attribute (the diff tries each absent, and all absent). Over a class, the filter *is* the
//!   access: the planner's filter selects exactly what Check allows (`tests/plan_property.rs`).
//! - sampled: principal string attributes hold one value equal to no constant of the policies
//!   (a physician of "some practice", not of practice "7"); list attributes one such element;
//!   numbers one value; combinations of more than two roles or capabilities; scopes with
//!   granular parameters; the request context is empty.
//!
//! Comparing two filters, the analysis enumerates resource rows over the constants both compare
//! with ([`rows`]); every change is then re-decided by [`crate::engine::check`] on both sets with
//! a concrete counterexample request.
//!
//! **Invariants:** nothing here is on the request path; a change is never dropped: one without a
//! confirmed counterexample is reported as such, a cell the planner cannot express is reported
//! as undetermined.

pub mod classes;
pub mod rows;

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value as Json};

use crate::compile::PolicySet;
use crate::filter::Filter;
use crate::plan::{plan_explained, plan_traced, Plan, PlanRequest, Trace};
use crate::policy::Effect;
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};

pub use classes::{classes, Depth, Domains, PrincipalClass, ScopeShape};

/// The access of one class to one (kind, action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Every resource of the kind (that fits the schema).
    Always,
    /// No resource.
    Never,
    /// The resources the condition selects.
    Conditional,
    /// The planner cannot express some rule as a filter (see the cell's note).
    Undetermined,
}

/// A rule that shapes a cell: it allows, denies, or (the scope gate) limits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RuleRef {
    pub policy: String,
    pub rule: String,
    /// `allow`, `deny`, or `scope_gate`.
    pub effect: String,
    pub file: String,
    pub line: usize,
}

/// The access one set gives one class to one (kind, action): a cell of the matrix, or one side
/// of a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub access: Access,
    /// For `conditional`: the resources allowed, as a filter over resource attributes (bare
    /// names) and the principal's (`P.attr.x`, `P.id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The rules that decide: for `always` the allow rules that hold; for `never` the deny rules
    /// that always fire or the scope gate (empty: no rule allows, default deny); for
    /// `conditional` every allow and deny rule that takes part, and the gate.
    pub rules: Vec<RuleRef>,
    /// Why the access is `never` or `undetermined`, when there is more to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One class x kind x action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// [`PrincipalClass::id`].
    pub class: String,
    pub kind: String,
    pub action: String,
    /// The class's access (its fields serialized beside `class`, `kind` and `action`).
    #[serde(flatten)]
    pub side: Side,
}

/// A kind and the actions the matrix covers for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindActions {
    pub kind: String,
    pub actions: Vec<String>,
}

/// The access matrix of a set: every class x kind x action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matrix {
    pub version: String,
    /// What the classes enumerate, and what they sample.
    pub domains: Domains,
    pub exact: Vec<String>,
    pub sampled: Vec<String>,
    pub classes: Vec<PrincipalClass>,
    pub kinds: Vec<KindActions>,
    /// Class-major: for each class (in `classes` order), each kind, each action, in order.
    pub cells: Vec<Cell>,
}

impl Matrix {
    /// The cell of (class id, kind, action).
    pub fn cell(&self, class: &str, kind: &str, action: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.class == class && c.kind == kind && c.action == action)
    }
}

/// The kinds of a set and their actions, sorted: the schema's, or every kind a policy names.
pub fn kinds_of(set: &PolicySet) -> Vec<(String, Vec<String>)> {
    let mut kinds: BTreeSet<String> = set.kinds().map(str::to_string).collect();
    if let Some(schema) = &set.schema {
        kinds.extend(schema.kinds.keys().cloned());
    }
    kinds
        .into_iter()
        .map(|k| {
            let actions = set
                .kind(&k)
                .actions()
                .into_iter()
                .filter(|a| *a != crate::compile::ANY)
                .map(str::to_string)
                .collect();
            (k, actions)
        })
        .collect()
}

/// What is enumerated exactly and what is sampled, in words (for every output).
fn statements(domains: &Domains) -> (Vec<String>, Vec<String>) {
    let mut exact = vec![
        format!(
            "roles: {} (the schema's and the selectors'), a role no policy names, and no role",
            list(&domains.roles)
        ),
        format!("capabilities: {}", list(&domains.capabilities)),
    ];
    if !domains.ids.is_empty() {
        exact.push(format!(
            "principal ids named by selectors: {}",
            list(&domains.ids)
        ));
    }
    if !domains.derived_roles.is_empty() {
        exact.push(format!(
            "derived roles {}: their conditions are part of the filters of each class holding a parent role",
            list(&domains.derived_roles)
        ));
    }
    if domains.gated {
        exact.push(
            "SMART scope shapes: user/*.cruds, patient/*.cruds (with a launch patient), system/*.cruds, none; in the diff also user/* with each single permission letter"
                .into(),
        );
    }
    let exact_attrs: Vec<&str> = domains
        .attributes
        .iter()
        .filter(|a| a.exact)
        .map(|a| a.name.as_str())
        .collect();
    if !exact_attrs.is_empty() {
        exact.push(format!(
            "principal attributes with a finite domain (every value, in the diff): {}",
            exact_attrs.join(", ")
        ));
    }
    exact.push("the diff: each optional principal attribute absent, and all absent; every pair of roles and capabilities".into());
    let mut sampled = Vec::new();
    let symbolic: Vec<&str> = domains
        .attributes
        .iter()
        .filter(|a| !a.exact)
        .map(|a| a.name.as_str())
        .collect();
    if !symbolic.is_empty() {
        sampled.push(format!(
            "principal attributes {}: one symbolic value equal to no constant of the policies (shown as P.attr.NAME; lists hold one such element)",
            symbolic.join(", ")
        ));
    }
    sampled.push("the principal id: one symbolic value (P.id)".into());
    sampled.push(
        "combinations of three or more roles and capabilities; scopes with granular parameters; the request context (empty)"
            .into(),
    );
    (exact, sampled)
}

fn list(names: &BTreeSet<String>) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The access matrix of `set`: for every principal class ([`Depth::Single`]: each role,
/// capability and named id alone, a role no policy names, no role; times each scope shape) and
/// every kind and action of the set, whether the class may act always, never, or under a
/// condition, and the rules that decide. Stable order: classes as [`classes`] lists them, kinds
/// and actions sorted.
///
/// ```
/// let set = verdict::compile::PolicySet::load(std::path::Path::new("policies")).unwrap();
/// let m = verdict::analysis::matrix(&set);
/// let cell = m.cell("role:system/scope:system", "Invoice", "read").unwrap();
/// assert_eq!(cell.side.access, verdict::analysis::Access::Always);
/// ```
pub fn matrix(set: &PolicySet) -> Matrix {
    let domains = Domains::of(set);
    let classes = classes(&domains, Depth::Single);
    let kinds = kinds_of(set);
    let mut cells = Vec::with_capacity(classes.len() * kinds.len() * 6);
    for class in &classes {
        for (kind, actions) in &kinds {
            for action in actions {
                cells.push(Cell {
                    class: class.id.clone(),
                    kind: kind.clone(),
                    action: action.clone(),
                    side: cell(set, class, kind, action).0,
                });
            }
        }
    }
    let (exact, sampled) = statements(&domains);
    Matrix {
        version: set.version.clone(),
        domains,
        exact,
        sampled,
        classes,
        kinds: kinds
            .into_iter()
            .map(|(kind, actions)| KindActions { kind, actions })
            .collect(),
        cells,
    }
}

fn plan_request(class: &PrincipalClass, kind: &str, action: &str) -> PlanRequest {
    PlanRequest {
        principal: class.principal.clone(),
        kind: kind.to_string(),
        action: action.to_string(),
        context: json!({}),
        known_attr: json!({}),
    }
}

/// A cell's access, and the plan's filter (`None` when undetermined).
fn cell(
    set: &PolicySet,
    class: &PrincipalClass,
    kind: &str,
    action: &str,
) -> (Side, Option<Filter>) {
    let request = plan_request(class, kind, action);
    let mut cell = Side {
        access: Access::Undetermined,
        condition: None,
        rules: Vec::new(),
        note: None,
    };
    let (planned, trace) = match plan_traced(set, &request) {
        Ok(p) => p,
        Err(e) => {
            cell.note = Some(e.to_string());
            return (cell, None);
        }
    };
    let filter = planned.plan.filter();
    cell.access = match &planned.plan {
        Plan::AlwaysAllowed => Access::Always,
        Plan::AlwaysDenied => Access::Never,
        Plan::Conditional(f) => {
            cell.condition = Some(classes::symbolic(&f.to_string()));
            Access::Conditional
        }
    };
    cell.note = planned.schema_violation.as_ref().map(|v| v.to_string());
    cell.rules = deciding_rules(set, kind, cell.access, &trace);
    if cell.access == Access::Never && cell.rules.is_empty() && cell.note.is_none() {
        cell.note = Some(format!("no rule allows {kind}:{action} for this class"));
    }
    (cell, Some(filter))
}

fn deciding_rules(set: &PolicySet, kind: &str, access: Access, trace: &Trace) -> Vec<RuleRef> {
    let mut out = Vec::new();
    for (id, rows) in &trace.rules {
        let rule = &set.rules[*id as usize];
        let take = match (rule.effect, access) {
            // An allow that holds somewhere; a deny that fires somewhere.
            (Effect::Allow, Access::Always | Access::Conditional) => *rows != Filter::False,
            (Effect::Deny, Access::Conditional) => *rows != Filter::True,
            (Effect::Deny, Access::Never) => *rows == Filter::False,
            _ => false,
        };
        if take {
            out.push(RuleRef {
                policy: rule.policy.to_string(),
                rule: rule.name.to_string(),
                effect: match rule.effect {
                    Effect::Allow => "allow".into(),
                    Effect::Deny => "deny".into(),
                },
                file: rule.file.display().to_string(),
                line: rule.line,
            });
        }
    }
    if let (Some(gate), Some(rows)) = (set.scope_gate_for(kind), &trace.gate) {
        let take = match access {
            Access::Never => *rows == Filter::False,
            Access::Conditional => *rows != Filter::True,
            _ => false,
        };
        if take {
            out.push(RuleRef {
                policy: gate.name.clone(),
                rule: "scope-gate".into(),
                effect: "scope_gate".into(),
                file: gate.file.display().to_string(),
                line: gate.line,
            });
        }
    }
    out.dedup();
    out
}

/// How access changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The new set allows some request the old one denied, and denies none it allowed.
    Widened,
    /// The new set denies some request the old one allowed, and allows none it denied.
    Narrowed,
    /// Both: some requests gained, others lost.
    Changed,
    /// The filters differ and no sampled row tells them apart: not proved equal.
    Unproved,
    /// The planner cannot express a rule of one of the sets for this cell.
    Undetermined,
}

/// A decision as Check gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decided {
    /// `allow` or `deny`.
    pub effect: String,
    pub policy: String,
    pub rule: String,
    pub reason: String,
}

/// A request whose decision flips between the sets, as Check decided it on both.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counterexample {
    pub principal: Principal,
    pub resource: Resource,
    pub action: String,
    pub before: Decided,
    pub after: Decided,
}

/// A change of access of one or more classes to one (kind, action), all with the same access
/// before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub kind: String,
    pub action: String,
    pub change: ChangeKind,
    /// The ids of the classes whose access changed this way ([`PrincipalClass::id`]).
    pub classes: Vec<String>,
    /// Their labels, in the same order.
    pub labels: Vec<String>,
    pub before: Side,
    pub after: Side,
    /// A request of the first class that flips from deny to allow, confirmed by Check on both
    /// sets (for `widened` and `changed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gained: Option<Counterexample>,
    /// One that flips from allow to deny (for `narrowed` and `changed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<Counterexample>,
    /// Whether Check confirmed a counterexample for every class and direction listed.
    pub confirmed: bool,
    /// What could not be confirmed, or why the change is unproved or undetermined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What changed between two sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    pub old_version: String,
    pub new_version: String,
    pub domains: Domains,
    pub exact: Vec<String>,
    pub sampled: Vec<String>,
    /// How many classes and (class, kind, action) cells were compared.
    pub classes_compared: usize,
    pub cells_compared: usize,
    /// Sorted by kind, action and change, then in the order of the groups' first classes.
    pub changes: Vec<Change>,
}

impl Diff {
    /// Whether some request may be allowed by the new set that the old one denied: a change
    /// that widened, changed both ways, or could not be decided (fail closed).
    pub fn widened(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.change != ChangeKind::Narrowed)
    }

    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.change == kind).count()
    }
}

/// Compares the access of every principal class ([`Depth::Pairs`], over the domains of both sets)
/// to every kind and action of either set, and reports each change with a counterexample that
/// Check confirms on both.
pub fn diff(old: &PolicySet, new: &PolicySet) -> Diff {
    let domains = Domains::of(old).union(Domains::of(new));
    let classes = classes(&domains, Depth::Pairs);
    let mut kinds = kinds_of(old);
    for (k, actions) in kinds_of(new) {
        match kinds.iter_mut().find(|(x, _)| *x == k) {
            Some((_, existing)) => {
                for a in actions {
                    if !existing.contains(&a) {
                        existing.push(a);
                    }
                }
                existing.sort();
            }
            None => kinds.push((k, actions)),
        }
    }
    kinds.sort();
    let mut cells_compared = 0;
    // One entry per changed (class, kind, action), grouped below.
    let mut found: Vec<(Change, String)> = Vec::new();
    for (kind, actions) in &kinds {
        let kind_schema = new.kind(kind).schema().or_else(|| old.kind(kind).schema());
        for action in actions {
            for class in &classes {
                cells_compared += 1;
                // Most cells do not change: compare the plans before describing them.
                let request = plan_request(class, kind, action);
                if let (Ok(a), Ok(b)) =
                    (plan_explained(old, &request), plan_explained(new, &request))
                {
                    if strip(&a.plan.filter()) == strip(&b.plan.filter()) {
                        continue;
                    }
                }
                let (before, old_filter) = cell(old, class, kind, action);
                let (after, new_filter) = cell(new, class, kind, action);
                let change = compare(
                    old,
                    new,
                    class,
                    kind,
                    action,
                    kind_schema,
                    (before, old_filter),
                    (after, new_filter),
                );
                if let Some(change) = change {
                    found.push((change, class.label.clone()));
                }
            }
        }
    }
    let changes = group(found);
    let (exact, sampled) = statements(&domains);
    Diff {
        old_version: old.version.clone(),
        new_version: new.version.clone(),
        domains,
        exact,
        sampled,
        classes_compared: classes.len(),
        cells_compared,
        changes,
    }
}

/// The change of one class's access to (kind, action), if any.
#[allow(clippy::too_many_arguments)]
fn compare(
    old: &PolicySet,
    new: &PolicySet,
    class: &PrincipalClass,
    kind: &str,
    action: &str,
    kind_schema: Option<&crate::schema::KindSchema>,
    (before, old_filter): (Side, Option<Filter>),
    (after, new_filter): (Side, Option<Filter>),
) -> Option<Change> {
    let mut change = Change {
        kind: kind.to_string(),
        action: action.to_string(),
        change: ChangeKind::Undetermined,
        classes: vec![class.id.clone()],
        labels: vec![class.label.clone()],
        before,
        after,
        gained: None,
        lost: None,
        confirmed: false,
        note: None,
    };
    let (Some(old_filter), Some(new_filter)) = (old_filter, new_filter) else {
        if change.before == change.after {
            // The same rule cannot be planned, for the same reason, on both sides: nothing to
            // compare, but nothing to hide either.
            change.note = Some(
                "the planner cannot express a rule of this cell in either set; compare by tests"
                    .into(),
            );
        }
        return Some(change);
    };
    let (old_filter, new_filter) = (strip(&old_filter), strip(&new_filter));
    if old_filter == new_filter {
        return None;
    }
    let rows = rows::disagreements(kind_schema, &old_filter, &new_filter);
    change.change = match (rows.widened.is_empty(), rows.narrowed.is_empty()) {
        (true, true) if rows.exhaustive => return None,
        (true, true) => ChangeKind::Unproved,
        (false, true) => ChangeKind::Widened,
        (true, false) => ChangeKind::Narrowed,
        (false, false) => ChangeKind::Changed,
    };
    let mut missing = Vec::new();
    if !rows.widened.is_empty() {
        change.gained = confirm(old, new, class, kind, action, &rows.widened, true);
        if change.gained.is_none() {
            missing.push("no request that gains access was confirmed by Check");
        }
    }
    if !rows.narrowed.is_empty() {
        change.lost = confirm(old, new, class, kind, action, &rows.narrowed, false);
        if change.lost.is_none() {
            missing.push("no request that loses access was confirmed by Check");
        }
    }
    change.confirmed = missing.is_empty() && change.change != ChangeKind::Unproved;
    if change.change == ChangeKind::Unproved {
        change.note = Some(format!(
            "the filters differ and none of {} sampled rows tells them apart: not proved equal",
            rows.tried
        ));
    } else if !missing.is_empty() {
        change.note = Some(missing.join("; "));
    }
    Some(change)
}

/// The filter without its rule annotations.
fn strip(f: &Filter) -> Filter {
    match f {
        Filter::From { filter, .. } => strip(filter),
        Filter::And(fs) => Filter::And(fs.iter().map(strip).collect()),
        Filter::Or(fs) => Filter::Or(fs.iter().map(strip).collect()),
        Filter::Not(x) => Filter::Not(Box::new(strip(x))),
        other => other.clone(),
    }
}

/// The first of `rows` whose decision Check flips as expected (deny -> allow when `gained`).
fn confirm(
    old: &PolicySet,
    new: &PolicySet,
    class: &PrincipalClass,
    kind: &str,
    action: &str,
    rows: &[Json],
    gained: bool,
) -> Option<Counterexample> {
    rows.iter().find_map(|row| {
        let resource = Resource {
            kind: kind.to_string(),
            id: "example".into(),
            attr: row.clone(),
        };
        let before = decide(old, &class.principal, &resource, action);
        let after = decide(new, &class.principal, &resource, action);
        let flips = (before.effect == "allow") != gained && (after.effect == "allow") == gained;
        flips.then(|| Counterexample {
            principal: class.principal.clone(),
            resource,
            action: action.to_string(),
            before,
            after,
        })
    })
}

/// Check's decision on one request.
pub fn decide(
    set: &PolicySet,
    principal: &Principal,
    resource: &Resource,
    action: &str,
) -> Decided {
    let request = CheckRequest {
        request_id: String::new(),
        principal: principal.clone(),
        resources: vec![ResourceCheck {
            resource: resource.clone(),
            actions: vec![action.to_string()],
        }],
        context: json!({}),
    };
    let decisions = crate::engine::check(set, &request);
    match decisions.first().and_then(|r| r.actions.first()) {
        Some((_, d)) => Decided {
            effect: if d.is_allow() { "allow" } else { "deny" }.into(),
            policy: d.policy.to_string(),
            rule: d.rule.to_string(),
            reason: d.reason.to_string(),
        },
        None => Decided {
            effect: "deny".into(),
            policy: String::new(),
            rule: String::new(),
            reason: "no decision".into(),
        },
    }
}

/// Groups the changes of classes with the same access before and after.
fn group(found: Vec<(Change, String)>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for (change, _) in found {
        let same = out.iter_mut().find(|c| {
            c.kind == change.kind
                && c.action == change.action
                && c.change == change.change
                && c.before.access == change.before.access
                && c.before.condition == change.before.condition
                && c.after.access == change.after.access
                && c.after.condition == change.after.condition
        });
        match same {
            Some(c) => {
                c.classes.extend(change.classes);
                c.labels.extend(change.labels);
                if !change.confirmed {
                    c.confirmed = false;
                    if c.note.is_none() {
                        c.note = change.note;
                    }
                }
            }
            None => out.push(change),
        }
    }
    // Stable: within (kind, action, change), groups in the order of their first class.
    out.sort_by(|a, b| (&a.kind, &a.action, a.change).cmp(&(&b.kind, &b.action, b.change)));
    out
}

/// Loads a policy directory for analysis (the same loader as the daemon's).
pub fn load(dir: &Path) -> Result<PolicySet, crate::policy::LoadErrors> {
    PolicySet::load(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clinic() -> PolicySet {
        PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    #[test]
    fn the_clinic_matrix_covers_every_class_kind_and_action() {
        let set = clinic();
        let m = matrix(&set);
        let actions: usize = m.kinds.iter().map(|k| k.actions.len()).sum();
        assert_eq!(m.cells.len(), m.classes.len() * actions);
        assert!(m.domains.roles.contains("physician"));
        assert!(m.domains.capabilities.contains("sign-a-note"));
        // 5 roles + 2 capabilities + another role + nobody, times 4 scope shapes.
        assert_eq!(m.classes.len(), 9 * 4);
        let ids: BTreeSet<&str> = m.classes.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), m.classes.len(), "class ids are unique");
    }

    #[test]
    fn cells_read_as_the_policies_say() {
        let m = matrix(&clinic());
        let at = |class: &str, kind: &str, action: &str| m.cell(class, kind, action).unwrap();
        // The backend reads every invoice: the system rule, nothing else.
        let c = at("role:system/scope:system", "Invoice", "read");
        assert_eq!(c.side.access, Access::Always);
        assert_eq!(c.side.rules[0].rule, "read-everything");
        assert!(
            c.side.rules[0].file.ends_with("roles.yaml"),
            "{:?}",
            c.side.rules
        );
        // A nurse reads her practice's patients, minus celebrities of other physicians.
        let c = at("role:nurse/scope:user", "Patient", "read");
        assert_eq!(c.side.access, Access::Conditional);
        let condition = c.side.condition.as_deref().unwrap();
        assert!(
            condition.contains("practice_id == P.attr.practice_id"),
            "{condition}"
        );
        assert!(
            condition.contains("primary_physician_id == P.id"),
            "{condition}"
        );
        let rules: Vec<&str> = c.side.rules.iter().map(|r| r.rule.as_str()).collect();
        assert!(rules.contains(&"chart-work"), "{rules:?}");
        assert!(rules.contains(&"only-the-primary-physician"), "{rules:?}");
        // Prescribing: the license list, shown as the principal's.
        let c = at("role:physician/scope:user", "MedicationRequest", "create");
        let condition = c.side.condition.as_deref().unwrap();
        assert!(
            condition.contains("patient_state in P.attr.licensed_states"),
            "{condition}"
        );
        // The front desk never reads notes: the deny rule says so.
        let c = at("role:admin_staff/scope:user", "Note", "read");
        assert_eq!(c.side.access, Access::Never);
        assert_eq!(c.side.rules[0].rule, "no-clinical-records");
        // Without a scope, the gate denies.
        let c = at("role:physician/scope:none", "Patient", "read");
        assert_eq!(c.side.access, Access::Never);
        assert_eq!(c.side.rules[0].effect, "scope_gate");
        // A role no policy names gets nothing: default deny.
        let c = at("role:other-role/scope:user", "Patient", "read");
        assert_eq!(c.side.access, Access::Never);
        assert!(c.side.rules.is_empty());
        assert!(c.side.note.as_deref().unwrap().contains("no rule allows"));
        // A patient app on her own chart: the launch patient is her own.
        let c = at("role:patient/scope:patient", "Observation", "read");
        assert_eq!(c.side.access, Access::Conditional, "{c:?}");
        assert!(c
            .side
            .condition
            .as_deref()
            .unwrap()
            .contains("P.attr.patient_id"));
    }

    #[test]
    fn a_set_compared_with_itself_has_no_changes() {
        let set = clinic();
        let d = diff(&set, &set);
        assert!(d.changes.is_empty(), "{:?}", d.changes.first());
        assert!(!d.widened());
        assert!(d.classes_compared > 36);
    }
}
