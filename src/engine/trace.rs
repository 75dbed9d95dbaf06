//! Explain: the rules a decision considered, in evaluation order, each with its outcome.
//!
//! The decision procedure is generic over a [`Tracer`]: the request path runs it with `()`,
//! whose methods are empty and inlined away (no allocation, no branch per rule), and an
//! explained Check with [`Recorder`], which writes one [`Step`] per rule considered. The steps
//! go beside the decisions (`ResourceDecisions::traces`), never into a `Decision`: a Check
//! without explain moves and drops decisions no bigger than before explain existed.

use std::sync::Arc;

use crate::compile::{CompiledRule, PolicySet};
use crate::policy::Effect;

/// Where in the decision procedure a step was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The request was held to the set's schema before any rule.
    Schema,
    /// A deny rule (deny rules are evaluated first).
    Deny,
    /// The SMART scope gate of the resource's kind, after the deny rules.
    ScopeGate,
    /// An allow rule.
    Allow,
}

/// What came of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rule's principal selector (roles, capabilities, ids, clients, derived roles) does not
    /// match the principal: its condition was not evaluated.
    PrincipalNotMatched,
    /// The resource policy's selector (`resource.when`) did not hold: the rule's condition was
    /// not evaluated.
    ResourceNotMatched,
    /// The selector and the condition held (or the rule has no condition).
    Held,
    /// The condition did not hold.
    NotHeld,
    /// The selector or the condition could not be evaluated (a deny rule then denies, an allow
    /// rule does not allow).
    Error(Arc<str>),
    /// A granted scope covers the request: the gate lets the allow rules decide.
    ScopeCovered,
    /// No granted scope covers the request: the gate denies.
    ScopeNotCovered,
    /// The request violates the schema (its message is the decision's reason).
    SchemaViolated,
}

/// One rule (or the scope gate, or the schema) a decision considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub stage: Stage,
    /// The rule's policy, or the scope gate's name; empty for the schema.
    pub policy: Arc<str>,
    /// The rule's name (`scope-gate` for the gate); empty for the schema.
    pub rule: Arc<str>,
    /// The rule's index in [`PolicySet::rules`]; `None` for the gate and the schema.
    pub rule_id: Option<u32>,
    /// The file the rule (or gate) is written in, relative to the set's directory; empty for
    /// the schema.
    pub file: String,
    /// The line of the rule (or gate) in `file`; 0 for the schema.
    pub line: usize,
    pub outcome: Outcome,
    /// This step made the decision (the decision names its policy and rule). No step decided a
    /// default deny, unless an allow rule failed to evaluate: the decision names that rule.
    pub decided: bool,
}

impl Step {
    /// A step of rule `id`.
    pub(super) fn rule(set: &PolicySet, id: u32, outcome: Outcome) -> Step {
        let rule: &CompiledRule = &set.rules[id as usize];
        let (file, line) = set.location(rule);
        Step {
            stage: match rule.effect {
                Effect::Deny => Stage::Deny,
                Effect::Allow => Stage::Allow,
            },
            policy: Arc::clone(&rule.policy),
            rule: Arc::clone(&rule.name),
            rule_id: Some(id),
            file,
            line,
            outcome,
            decided: false,
        }
    }

    /// A step of the kind's scope gate, if the kind has one.
    pub(super) fn gate(set: &PolicySet, kind: &str, covered: bool) -> Option<Step> {
        let gate = set.scope_gate_for(kind)?;
        let file = gate.file.strip_prefix(&set.root).unwrap_or(&gate.file);
        Some(Step {
            stage: Stage::ScopeGate,
            policy: gate.name.as_str().into(),
            rule: "scope-gate".into(),
            rule_id: None,
            file: file.display().to_string(),
            line: gate.line,
            outcome: if covered {
                Outcome::ScopeCovered
            } else {
                Outcome::ScopeNotCovered
            },
            decided: !covered,
        })
    }

    /// The schema step of a request that violates it.
    pub(super) fn schema() -> Step {
        Step {
            stage: Stage::Schema,
            policy: "".into(),
            rule: "".into(),
            rule_id: None,
            file: String::new(),
            line: 0,
            outcome: Outcome::SchemaViolated,
            decided: true,
        }
    }
}

/// What a decision records of the steps it takes. Every method takes a closure, called only when
/// recording, so that `()` costs nothing.
pub(super) trait Tracer: Default {
    /// Records the step `step` builds (if it builds one).
    fn record(&mut self, step: impl FnOnce() -> Option<Step>);
    /// Marks the last recorded step as the deciding one.
    fn decided(&mut self);
    /// Marks the step of rule `id` as the deciding one.
    fn decided_by(&mut self, id: u32);
    /// Adds the steps recorded, in order, to the traces of the resource's actions.
    fn finish(self, traces: &mut Vec<Vec<Step>>);
}

/// No trace: the request path.
impl Tracer for () {
    #[inline(always)]
    fn record(&mut self, _: impl FnOnce() -> Option<Step>) {}
    #[inline(always)]
    fn decided(&mut self) {}
    #[inline(always)]
    fn decided_by(&mut self, _: u32) {}
    #[inline(always)]
    fn finish(self, _: &mut Vec<Vec<Step>>) {}
}

/// Every step, for an explained Check.
#[derive(Default)]
pub(super) struct Recorder(Vec<Step>);

impl Tracer for Recorder {
    fn record(&mut self, step: impl FnOnce() -> Option<Step>) {
        self.0.extend(step());
    }

    fn decided(&mut self) {
        if let Some(last) = self.0.last_mut() {
            last.decided = true;
        }
    }

    fn decided_by(&mut self, id: u32) {
        if let Some(step) = self.0.iter_mut().find(|s| s.rule_id == Some(id)) {
            step.decided = true;
        }
    }

    fn finish(self, traces: &mut Vec<Vec<Step>>) {
        traces.push(self.0);
    }
}
