//! Agent policies, resource policies and capabilities turned into [`CompiledRule`]s: one per
//! combination of the policy's and the rule's principal selector variants (derived roles expand
//! into variants), conditions compiled with named conditions inlined.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::typing::{Contexts, Site};
use super::{Compiler, PrincipalMatcher, ANY};
use crate::cel::Condition;
use crate::policy::{self, Document, Effect, Located};

/// How a rule is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// From an agent policy or a capability: granted to principals.
    Agent,
    /// From a resource policy: travels with the resource.
    Resource,
}

/// A rule ready to evaluate.
#[derive(Debug)]
pub struct CompiledRule {
    pub policy: Arc<str>,
    pub name: Arc<str>,
    pub description: Option<String>,
    /// The reason a decision by this rule gives, computed once.
    pub reason: Arc<str>,
    pub attachment: Attachment,
    pub effect: Effect,
    pub principals: PrincipalMatcher,
    /// A resource policy's selector condition, shared by its rules.
    pub target: Option<Arc<Condition>>,
    pub condition: Option<Condition>,
    pub kinds: Vec<String>,
    pub actions: Vec<String>,
    pub file: PathBuf,
    pub line: usize,
}

/// One way a rule's principal selectors can match: plain selectors, and the conditions of the
/// derived roles involved.
pub(super) type SelectorVariant = (Vec<policy::PrincipalSelector>, Vec<String>);

impl Compiler {
    /// Compiles a condition written by a policy author (named conditions allowed), conjoined
    /// with already-expanded `extra` conditions (from derived roles).
    pub(super) fn condition<T>(
        &mut self,
        doc: &Located<T>,
        line: usize,
        what: &str,
        source: Option<&str>,
        extra: &[String],
    ) -> Result<Option<Condition>, ()> {
        // An error in the text as written is reported on its own line of the file.
        let at = |e: &crate::cel::CompileError| {
            let site = Site::of(doc, "when", line, String::new());
            site.file_line(e.position.map(|(l, _)| l).unwrap_or(1))
        };
        if let (Some(source), true) = (source, extra.is_empty()) {
            // The common case: one parse, named conditions inlined only if used.
            return match self.environment.compile_with(source, &self.named) {
                Ok((condition, used)) => {
                    self.used_names.extend(used);
                    Ok(Some(condition))
                }
                Err(e) => {
                    self.error(&doc.file, at(&e), format!("{what}: {}", e.render(source)));
                    Err(())
                }
            };
        }
        let mut parts: Vec<String> = extra.to_vec();
        if let Some(source) = source {
            match self.environment.expand(source, &self.named) {
                Ok((text, used)) => {
                    self.used_names.extend(used);
                    parts.push(text);
                }
                Err(e) => {
                    self.error(&doc.file, at(&e), format!("{what}: {}", e.render(source)));
                    return Err(());
                }
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        let text = if parts.len() == 1 {
            parts.remove(0)
        } else {
            format!("({})", parts.join(") && ("))
        };
        match self.environment.compile(&text) {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                self.error(&doc.file, line, format!("{what}: {}", e.render(&text)));
                Err(())
            }
        }
    }

    /// The ways a selector can match: its plain entries, and each derived role it names.
    pub(super) fn selector_variants(
        &mut self,
        file: &Path,
        line: usize,
        at: &str,
        selector: &policy::PrincipalSelector,
    ) -> Option<Vec<SelectorVariant>> {
        let mut variants = Vec::new();
        let plain = policy::PrincipalSelector {
            derived_roles: Vec::new(),
            ..selector.clone()
        };
        if !plain.is_empty() {
            variants.push((vec![plain], Vec::new()));
        }
        for name in &selector.derived_roles {
            self.used_derived.insert(name.clone());
            match self.derived.get(name) {
                Some(d) => {
                    let roles = if d.parent_roles.is_empty() {
                        vec![ANY.to_string()]
                    } else {
                        d.parent_roles.clone()
                    };
                    variants.push((
                        vec![policy::PrincipalSelector {
                            roles,
                            ..Default::default()
                        }],
                        vec![d.when.clone()],
                    ));
                }
                None => {
                    let mut known: Vec<&String> = self.derived.keys().collect();
                    known.sort();
                    self.error(
                        file,
                        line,
                        format!("{at}: unknown derived role \"{name}\" (defined: {known:?})"),
                    );
                    return None;
                }
            }
        }
        Some(variants)
    }

    pub(super) fn agent_policy(&mut self, doc: &Located<Document>, p: &policy::AgentPolicy) {
        if !self.claim_policy_name(doc, &p.name) {
            return;
        }
        let policy_line = doc.line_of_name(&p.name, doc.line);
        if p.principals.is_empty() {
            self.error(
                &doc.file,
                policy_line,
                format!("agent policy \"{}\": principals must name at least one role, capability, id or client", p.name),
            );
        }
        let at = format!("agent policy \"{}\": principals", p.name);
        self.selector(&doc.file, policy_line, &at, &p.principals);
        self.rules_of(
            doc,
            &p.name,
            policy_line,
            Attachment::Agent,
            &p.rules,
            Some(&p.principals),
            None,
            None,
        );
    }

    pub(super) fn resource_policy(&mut self, doc: &Located<Document>, p: &policy::ResourcePolicy) {
        if !self.claim_policy_name(doc, &p.name) {
            return;
        }
        let policy_line = doc.line_of_name(&p.name, doc.line);
        if p.resource.kind.trim().is_empty() {
            self.error(
                &doc.file,
                policy_line,
                format!(
                    "resource policy \"{}\": resource.kind must not be empty",
                    p.name
                ),
            );
            return;
        }
        let what = format!("resource policy \"{}\": resource.when", p.name);
        let target = match self.condition(doc, policy_line, &what, p.resource.when.as_deref(), &[])
        {
            Ok(c) => c.map(Arc::new),
            Err(()) => return,
        };
        let at = format!("resource policy \"{}\": resource.kind", p.name);
        let kinds = [p.resource.kind.clone()];
        if let Some(kinds) = self.declared_kinds(&doc.file, policy_line, &at, &kinds) {
            if let (Some(when), Some(contexts)) = (
                &p.resource.when,
                self.declared_actions(&doc.file, policy_line, &at, &kinds, &[ANY.to_string()]),
            ) {
                let site = Site::of(doc, "when", policy_line, what);
                let names = self.type_check(&site, when, &contexts);
                self.record_use(&names, &[], &contexts);
            }
        } else if self.typing.is_some() {
            return;
        }
        let kind = p.resource.kind.clone();
        self.rules_of(
            doc,
            &p.name,
            policy_line,
            Attachment::Resource,
            &p.rules,
            None,
            target,
            Some(kind),
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn rules_of(
        &mut self,
        doc: &Located<Document>,
        policy: &str,
        policy_line: usize,
        attachment: Attachment,
        rules: &[policy::Rule],
        policy_principals: Option<&policy::PrincipalSelector>,
        target: Option<Arc<Condition>>,
        resource_kind: Option<String>,
    ) {
        let mut names = HashSet::new();
        for rule in rules {
            let line = doc.line_of_name(&rule.name, policy_line);
            let at = format!("policy \"{policy}\" rule \"{}\"", rule.name);
            if rule.name.trim().is_empty() {
                self.error(
                    &doc.file,
                    line,
                    format!("policy \"{policy}\": a rule has an empty name"),
                );
                continue;
            }
            if !names.insert(rule.name.clone()) {
                self.error(
                    &doc.file,
                    line,
                    format!("{at}: duplicate rule name in this policy"),
                );
                continue;
            }
            if rule.actions.is_empty() || rule.actions.iter().any(|a| a.trim().is_empty()) {
                self.error(
                    &doc.file,
                    line,
                    format!(
                        "{at}: actions must list at least one non-empty action (\"*\" for all)"
                    ),
                );
                continue;
            }
            let kinds = match (&resource_kind, rule.kinds.is_empty()) {
                (Some(kind), true) => vec![kind.clone()],
                (Some(_), false) => {
                    self.error(&doc.file, line, format!("{at}: a resource policy's rules take their kind from resource.kind; remove `kinds`"));
                    continue;
                }
                (None, true) => {
                    self.error(
                        &doc.file,
                        line,
                        format!("{at}: kinds must list at least one resource kind (\"*\" for all)"),
                    );
                    continue;
                }
                (None, false) => rule.kinds.clone(),
            };
            if kinds.iter().any(|k| k.trim().is_empty()) {
                self.error(&doc.file, line, format!("{at}: empty kind"));
                continue;
            }
            if rule.principals.as_ref().is_some_and(|own| own.is_empty()) {
                self.error(&doc.file, line, format!("{at}: principals is empty; remove it or name a role, capability, id, client or derived role"));
                continue;
            }
            if let Some(own) = &rule.principals {
                self.selector(&doc.file, line, &format!("{at}: principals"), own);
            }
            if self.typing.is_some() {
                let Some(declared) = self.declared_kinds(&doc.file, line, &at, &kinds) else {
                    continue;
                };
                let Some(contexts) =
                    self.declared_actions(&doc.file, line, &at, &declared, &rule.actions)
                else {
                    continue;
                };
                self.type_check_rule(doc, line, &at, rule, policy_principals, &contexts);
            }
            // Each combination of the policy's and the rule's selector variants is one compiled
            // rule under the same name: an allow holds if any holds, a deny fires if any fires.
            let empty = (Vec::new(), Vec::new());
            let outer = match policy_principals {
                Some(selector) => match self.selector_variants(&doc.file, line, &at, selector) {
                    Some(v) => v,
                    None => continue,
                },
                None => vec![empty.clone()],
            };
            let inner = match &rule.principals {
                Some(selector) => match self.selector_variants(&doc.file, line, &at, selector) {
                    Some(v) => v,
                    None => continue,
                },
                None => vec![empty],
            };
            let reason = rule_reason(rule.effect, policy, &rule.name, rule.description.as_deref());
            for (outer_selectors, outer_conditions) in &outer {
                for (inner_selectors, inner_conditions) in &inner {
                    let extra: Vec<String> = outer_conditions
                        .iter()
                        .chain(inner_conditions)
                        .cloned()
                        .collect();
                    let Ok(condition) = self.condition(
                        doc,
                        line,
                        &format!("{at}: when"),
                        rule.when.as_deref(),
                        &extra,
                    ) else {
                        continue;
                    };
                    self.rules.push(CompiledRule {
                        policy: policy.into(),
                        name: rule.name.as_str().into(),
                        description: rule.description.clone(),
                        reason: Arc::clone(&reason),
                        attachment,
                        effect: rule.effect,
                        principals: PrincipalMatcher::new(
                            outer_selectors
                                .iter()
                                .chain(inner_selectors)
                                .cloned()
                                .collect(),
                        ),
                        target: target.clone(),
                        condition,
                        kinds: kinds.clone(),
                        actions: rule.actions.clone(),
                        file: doc.file.clone(),
                        line,
                    });
                }
            }
        }
    }

    /// Checks a principal selector: no `*` where it would match a literal string, and (with a
    /// schema) only declared roles and defined capabilities.
    fn selector(
        &mut self,
        file: &Path,
        line: usize,
        at: &str,
        selector: &policy::PrincipalSelector,
    ) {
        for (key, list) in [
            ("ids", &selector.ids),
            ("clients", &selector.clients),
            ("capabilities", &selector.capabilities),
        ] {
            if list.iter().any(|x| x == ANY) {
                self.error(
                    file,
                    line,
                    format!("{at}: \"*\" in {key} would only match the literal \"*\"; to select every principal, write roles: [\"*\"]"),
                );
            }
        }
        self.declared_principals(file, line, at, &selector.roles, &selector.capabilities);
    }

    /// Type-checks a rule's condition for the kinds and actions it covers, and records where the
    /// names and derived roles it uses are evaluated.
    fn type_check_rule(
        &mut self,
        doc: &Located<Document>,
        line: usize,
        at: &str,
        rule: &policy::Rule,
        policy_principals: Option<&policy::PrincipalSelector>,
        contexts: &Contexts,
    ) {
        let derived: Vec<String> = policy_principals
            .into_iter()
            .chain(rule.principals.as_ref())
            .flat_map(|s| s.derived_roles.iter().cloned())
            .collect();
        let names = match &rule.when {
            Some(when) => {
                let site = Site::of(doc, "when", line, format!("{at}: when"));
                self.type_check(&site, when, contexts)
            }
            None => Vec::new(),
        };
        self.record_use(&names, &derived, contexts);
    }

    pub(super) fn capabilities(&mut self, doc: &Located<Document>, c: &policy::Capabilities) {
        if !self.claim_policy_name(doc, &c.name) {
            return;
        }
        let policy_line = doc.line_of_name(&c.name, doc.line);
        let mut seen = HashSet::new();
        for capability in &c.capabilities {
            let line = doc.line_of_name(&capability.name, policy_line);
            let at = format!(
                "capabilities \"{}\" capability \"{}\"",
                c.name, capability.name
            );
            if !seen.insert(capability.name.clone()) {
                self.error(&doc.file, line, format!("{at}: duplicate capability name"));
                continue;
            }
            if capability.grants.is_empty() {
                self.error(
                    &doc.file,
                    line,
                    format!("{at}: grants must list at least one Kind:action"),
                );
                continue;
            }
            let condition = match self.condition(
                doc,
                line,
                &format!("{at}: when"),
                capability.when.as_deref(),
                &[],
            ) {
                Ok(c) => c.map(Arc::new),
                Err(()) => continue,
            };
            // Group grants by kind so each (kind, actions) becomes one allow rule.
            let mut by_kind: Vec<(String, Vec<String>)> = Vec::new();
            let mut bad = false;
            for grant in &capability.grants {
                match grant.split_once(':') {
                    Some((kind, action))
                        if !kind.is_empty() && !action.is_empty() && !action.contains(':') =>
                    {
                        match by_kind.iter_mut().find(|(k, _)| k == kind) {
                            Some((_, actions)) => actions.push(action.to_string()),
                            None => by_kind.push((kind.to_string(), vec![action.to_string()])),
                        }
                    }
                    _ => {
                        self.error(
                            &doc.file,
                            line,
                            format!("{at}: grant \"{grant}\" is not of the form Kind:action"),
                        );
                        bad = true;
                    }
                }
            }
            if bad {
                continue;
            }
            if self.typing.is_some() {
                let mut contexts = Contexts::new();
                for (kind, actions) in &by_kind {
                    let Some(kinds) =
                        self.declared_kinds(&doc.file, line, &at, std::slice::from_ref(kind))
                    else {
                        bad = true;
                        continue;
                    };
                    match self.declared_actions(&doc.file, line, &at, &kinds, actions) {
                        Some(c) => {
                            for (k, a) in c {
                                contexts.entry(k).or_default().extend(a);
                            }
                        }
                        None => bad = true,
                    }
                }
                if bad {
                    continue;
                }
                if let Some(when) = &capability.when {
                    let site = Site::of(doc, "when", line, format!("{at}: when"));
                    let names = self.type_check(&site, when, &contexts);
                    self.record_use(&names, &[], &contexts);
                }
            }
            self.capability_names.insert(capability.name.clone());
            let selector = policy::PrincipalSelector {
                capabilities: vec![capability.name.clone()],
                ..Default::default()
            };
            for (kind, actions) in by_kind {
                self.rules.push(CompiledRule {
                    policy: c.name.as_str().into(),
                    name: capability.name.as_str().into(),
                    description: capability.description.clone(),
                    reason: rule_reason(
                        Effect::Allow,
                        &c.name,
                        &capability.name,
                        capability.description.as_deref(),
                    ),
                    attachment: Attachment::Agent,
                    effect: Effect::Allow,
                    principals: PrincipalMatcher::new(vec![selector.clone()]),
                    // A capability's condition is the same for every grant: share it as a target.
                    target: condition.clone(),
                    condition: None,
                    kinds: vec![kind],
                    actions,
                    file: doc.file.clone(),
                    line,
                });
            }
        }
    }
}

pub(super) fn rule_reason(
    effect: Effect,
    policy: &str,
    rule: &str,
    description: Option<&str>,
) -> Arc<str> {
    let verb = match effect {
        Effect::Allow => "allowed",
        Effect::Deny => "denied",
    };
    match description {
        Some(d) => format!(
            "{verb} by rule \"{rule}\" of policy \"{policy}\": {}",
            d.trim()
        )
        .into(),
        None => format!("{verb} by rule \"{rule}\" of policy \"{policy}\"").into(),
    }
}
