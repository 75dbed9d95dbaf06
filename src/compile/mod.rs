//! Turns parsed policy documents into a [`PolicySet`]: every CEL condition compiled once, rules
//! indexed by (kind, action) so a decision looks at only the rules that can apply, capabilities
//! expanded into allow rules, scope gates resolved per kind, and a content version.
//!
//! A `PolicySet` is an immutable value. Nothing here runs per request except the lookups
//! ([`PolicySet::rules_for`], [`PolicySet::scope_gate_for`]) and [`PrincipalMatcher::matches`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cel::{Condition, Environment};
use crate::policy::{self, Document, Effect, LoadError, LoadErrors, Located, PolicySource};
use crate::request::Principal;
use crate::smart::{PatientCompartment, Permission};

/// Wildcard for kinds and actions.
pub const ANY: &str = "*";

/// How a rule is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// From an agent policy or a capability: granted to principals.
    Agent,
    /// From a resource policy: travels with the resource.
    Resource,
}

/// Which principals a rule applies to: it applies when every selector of `all` matches (the
/// policy's and the rule's own). An empty `all` applies to every principal.
#[derive(Debug, Clone, Default)]
pub struct PrincipalMatcher {
    pub all: Vec<policy::PrincipalSelector>,
}

impl PrincipalMatcher {
    pub fn matches(&self, principal: &Principal) -> bool {
        self.all.iter().all(|s| selector_matches(s, principal))
    }
}

fn selector_matches(s: &policy::PrincipalSelector, p: &Principal) -> bool {
    s.roles
        .iter()
        .any(|r| r == ANY || p.roles.iter().any(|pr| pr == r))
        || s.capabilities
            .iter()
            .any(|c| p.capabilities.iter().any(|pc| pc == c))
        || s.ids.contains(&p.id)
        || (!p.client_id.is_empty() && s.clients.contains(&p.client_id))
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

/// A scope gate compiled for lookups.
#[derive(Debug, Clone)]
pub struct ScopeGate {
    pub name: String,
    pub letters: HashMap<String, Permission>,
    pub compartment: PatientCompartment,
}

impl ScopeGate {
    /// The SMART permission an action needs, if it has one.
    pub fn permission(&self, action: &str) -> Option<Permission> {
        self.letters.get(action).copied()
    }
}

/// Rule ids for one kind: per action, and for actions no rule names explicitly.
#[derive(Debug, Default)]
struct KindIndex {
    by_action: HashMap<String, Box<[u32]>>,
    other_actions: Box<[u32]>,
}

/// An immutable, compiled policy set.
#[derive(Debug)]
pub struct PolicySet {
    pub version: String,
    pub environment: Environment,
    pub rules: Vec<CompiledRule>,
    by_kind: HashMap<String, KindIndex>,
    other_kinds: KindIndex,
    gates: HashMap<String, Arc<ScopeGate>>,
    any_kind_gate: Option<Arc<ScopeGate>>,
    pub policy_count: usize,
}

impl PolicySet {
    /// Loads and compiles every policy file under `dir`.
    pub fn load(dir: &Path) -> Result<PolicySet, LoadErrors> {
        let source = policy::load_dir(dir)?;
        PolicySet::compile(&source)
    }

    /// Compiles parsed documents, reporting every problem found.
    pub fn compile(source: &PolicySource) -> Result<PolicySet, LoadErrors> {
        Compiler::default().run(source)
    }

    /// A set with no policies: denies everything.
    pub fn empty() -> PolicySet {
        Compiler::default()
            .run(&PolicySource {
                documents: Vec::new(),
                version: "empty".to_string(),
            })
            .expect("an empty set compiles")
    }

    /// The ids of the rules that can apply to (kind, action), deny rules first, each group in
    /// declaration order.
    pub fn rules_for(&self, kind: &str, action: &str) -> &[u32] {
        let index = self.by_kind.get(kind).unwrap_or(&self.other_kinds);
        index.by_action.get(action).unwrap_or(&index.other_actions)
    }

    /// Whether some rule names this kind explicitly (not through `*`).
    pub fn knows_kind(&self, kind: &str) -> bool {
        self.by_kind.contains_key(kind)
    }

    /// The scope gate for a kind, if one is on.
    pub fn scope_gate_for(&self, kind: &str) -> Option<&ScopeGate> {
        self.gates
            .get(kind)
            .or(self.any_kind_gate.as_ref())
            .map(|g| g.as_ref())
    }

    /// Every kind some policy names explicitly.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.by_kind.keys().map(String::as_str)
    }
}

#[derive(Default)]
struct Compiler {
    environment: Environment,
    rules: Vec<CompiledRule>,
    errors: Vec<LoadError>,
    policy_names: HashSet<String>,
    gates: Vec<(Vec<String>, Arc<ScopeGate>, PathBuf, usize)>,
}

impl Compiler {
    fn run(mut self, source: &PolicySource) -> Result<PolicySet, LoadErrors> {
        for doc in &source.documents {
            match &doc.item {
                Document::AgentPolicy(p) => self.agent_policy(doc, p),
                Document::ResourcePolicy(p) => self.resource_policy(doc, p),
                Document::Capabilities(c) => self.capabilities(doc, c),
                Document::ScopeGate(g) => self.scope_gate(doc, g),
            }
        }
        let (gates, any_kind_gate) = self.gate_index();
        if !self.errors.is_empty() {
            return Err(LoadErrors(self.errors));
        }
        let (by_kind, other_kinds) = build_index(&self.rules);
        Ok(PolicySet {
            version: source.version.clone(),
            environment: self.environment,
            rules: self.rules,
            by_kind,
            other_kinds,
            gates,
            any_kind_gate,
            policy_count: self.policy_names.len(),
        })
    }

    fn error(&mut self, file: &Path, line: usize, message: String) {
        self.errors.push(LoadError {
            file: file.to_path_buf(),
            line: Some(line),
            message,
        });
    }

    fn claim_policy_name<T>(&mut self, doc: &Located<T>, name: &str) -> bool {
        if name.trim().is_empty() {
            self.error(&doc.file, doc.line, "policy name must not be empty".into());
            return false;
        }
        if !self.policy_names.insert(name.to_string()) {
            let line = doc.line_of_name(name, doc.line);
            self.error(&doc.file, line, format!("duplicate policy name \"{name}\""));
            return false;
        }
        true
    }

    fn condition<T>(
        &mut self,
        doc: &Located<T>,
        line: usize,
        what: &str,
        source: &str,
    ) -> Option<Condition> {
        match self.environment.compile(source) {
            Ok(c) => Some(c),
            Err(e) => {
                self.error(&doc.file, line, format!("{what}: {}", e.render(source)));
                None
            }
        }
    }

    fn agent_policy(&mut self, doc: &Located<Document>, p: &policy::AgentPolicy) {
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

    fn resource_policy(&mut self, doc: &Located<Document>, p: &policy::ResourcePolicy) {
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
        let target = match &p.resource.when {
            Some(source) => {
                let what = format!("resource policy \"{}\": resource.when", p.name);
                match self.condition(doc, policy_line, &what, source) {
                    Some(c) => Some(Arc::new(c)),
                    None => return,
                }
            }
            None => None,
        };
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
    fn rules_of(
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
            let condition = match &rule.when {
                Some(source) => match self.condition(doc, line, &format!("{at}: when"), source) {
                    Some(c) => Some(c),
                    None => continue,
                },
                None => None,
            };
            let mut principals = PrincipalMatcher::default();
            principals.all.extend(policy_principals.cloned());
            if let Some(own) = &rule.principals {
                if own.is_empty() {
                    self.error(&doc.file, line, format!("{at}: principals is empty; remove it or name a role, capability, id or client"));
                    continue;
                }
                principals.all.push(own.clone());
            }
            self.rules.push(CompiledRule {
                policy: policy.into(),
                name: rule.name.as_str().into(),
                description: rule.description.clone(),
                reason: rule_reason(rule.effect, policy, &rule.name, rule.description.as_deref()),
                attachment,
                effect: rule.effect,
                principals,
                target: target.clone(),
                condition,
                kinds,
                actions: rule.actions.clone(),
                file: doc.file.clone(),
                line,
            });
        }
    }

    fn capabilities(&mut self, doc: &Located<Document>, c: &policy::Capabilities) {
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
            let condition = match &capability.when {
                Some(source) => match self.condition(doc, line, &format!("{at}: when"), source) {
                    Some(c) => Some(Arc::new(c)),
                    None => continue,
                },
                None => None,
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
                    principals: PrincipalMatcher {
                        all: vec![selector.clone()],
                    },
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

    fn scope_gate(&mut self, doc: &Located<Document>, g: &policy::ScopeGate) {
        if !self.claim_policy_name(doc, &g.name) {
            return;
        }
        let line = doc.line_of_name(&g.name, doc.line);
        let at = format!("scope gate \"{}\"", g.name);
        if g.kinds.is_empty() {
            self.error(
                &doc.file,
                line,
                format!("{at}: kinds must list at least one kind"),
            );
            return;
        }
        let mut letters = HashMap::new();
        match &g.actions {
            None => {
                for (action, letter) in [
                    ("read", Permission::Read),
                    ("search", Permission::Search),
                    ("create", Permission::Create),
                    ("update", Permission::Update),
                    ("delete", Permission::Delete),
                ] {
                    letters.insert(action.to_string(), letter);
                }
            }
            Some(map) => {
                for (action, letter) in map {
                    match Permission::from_letter(letter) {
                        Some(p) => {
                            letters.insert(action.clone(), p);
                        }
                        None => {
                            self.error(&doc.file, line, format!("{at}: action \"{action}\" maps to \"{letter}\"; expected one of c, r, u, d, s"));
                            return;
                        }
                    }
                }
            }
        }
        let defaults = PatientCompartment::default();
        let gate = ScopeGate {
            name: g.name.clone(),
            letters,
            compartment: PatientCompartment {
                patient_claim: g.patient_claim.clone().unwrap_or(defaults.patient_claim),
                patient_attribute: g
                    .patient_attribute
                    .clone()
                    .unwrap_or(defaults.patient_attribute),
            },
        };
        self.gates
            .push((g.kinds.clone(), Arc::new(gate), doc.file.clone(), line));
    }

    fn gate_index(&mut self) -> (HashMap<String, Arc<ScopeGate>>, Option<Arc<ScopeGate>>) {
        let mut by_kind: HashMap<String, Arc<ScopeGate>> = HashMap::new();
        let mut any = None;
        let gates = std::mem::take(&mut self.gates);
        for (kinds, gate, file, line) in gates {
            for kind in kinds {
                let taken = if kind == ANY {
                    any.as_ref()
                } else {
                    by_kind.get(&kind)
                };
                if let Some(other) = taken {
                    let message = format!(
                        "scope gate \"{}\": kind \"{kind}\" is already gated by \"{}\"",
                        gate.name, other.name
                    );
                    self.error(&file, line, message);
                } else if kind == ANY {
                    any = Some(Arc::clone(&gate));
                } else {
                    by_kind.insert(kind, Arc::clone(&gate));
                }
            }
        }
        (by_kind, any)
    }
}

fn rule_reason(effect: Effect, policy: &str, rule: &str, description: Option<&str>) -> Arc<str> {
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

/// Builds the (kind, action) -> rule ids index. For every kind and action named anywhere, the list
/// is precomputed from exact and wildcard rules, so a lookup is two hash probes.
fn build_index(rules: &[CompiledRule]) -> (HashMap<String, KindIndex>, KindIndex) {
    let mut kinds: BTreeSet<&str> = BTreeSet::new();
    let mut actions: BTreeSet<&str> = BTreeSet::new();
    for rule in rules {
        kinds.extend(rule.kinds.iter().map(String::as_str).filter(|k| *k != ANY));
        actions.extend(
            rule.actions
                .iter()
                .map(String::as_str)
                .filter(|a| *a != ANY),
        );
    }
    let select = |kind: Option<&str>, action: Option<&str>| -> Box<[u32]> {
        let applies = |rule: &CompiledRule| {
            rule.kinds
                .iter()
                .any(|k| k == ANY || Some(k.as_str()) == kind)
                && rule
                    .actions
                    .iter()
                    .any(|a| a == ANY || Some(a.as_str()) == action)
        };
        let mut ids: Vec<u32> = Vec::new();
        for effect in [Effect::Deny, Effect::Allow] {
            ids.extend(
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.effect == effect && applies(r))
                    .map(|(i, _)| i as u32),
            );
        }
        ids.into_boxed_slice()
    };
    let index_for = |kind: Option<&str>| KindIndex {
        by_action: actions
            .iter()
            .map(|a| (a.to_string(), select(kind, Some(a))))
            .collect(),
        other_actions: select(kind, None),
    };
    let by_kind = kinds
        .iter()
        .map(|k| (k.to_string(), index_for(Some(k))))
        .collect();
    (by_kind, index_for(None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn compile(files: &[(&str, &str)]) -> Result<PolicySet, LoadErrors> {
        let files: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        let source = policy::parse_files(Path::new("policies"), &files)?;
        PolicySet::compile(&source)
    }

    const AGENT: &str = r#"
agent_policy:
  name: nurse
  principals: {roles: [nurse]}
  rules:
    - name: read-clinical
      effect: allow
      actions: [read, update]
      kinds: [Patient, Observation]
    - name: no-prescribing
      effect: deny
      actions: [create]
      kinds: [MedicationRequest]
    - name: everything-else
      effect: allow
      actions: ["*"]
      kinds: [Note]
"#;

    #[test]
    fn index_lists_deny_rules_first_and_handles_wildcards() {
        let set = compile(&[("nurse.yaml", AGENT)]).unwrap();
        let names = |kind, action| -> Vec<&str> {
            set.rules_for(kind, action)
                .iter()
                .map(|i| &*set.rules[*i as usize].name)
                .collect()
        };
        assert_eq!(names("Patient", "read"), ["read-clinical"]);
        assert_eq!(names("Patient", "delete"), Vec::<&str>::new());
        assert_eq!(names("MedicationRequest", "create"), ["no-prescribing"]);
        assert_eq!(names("Note", "sign"), ["everything-else"]);
        assert_eq!(names("Note", "read"), ["everything-else"]);
        assert_eq!(names("Spaceship", "read"), Vec::<&str>::new());
        assert!(!set.knows_kind("Spaceship"));
    }

    #[test]
    fn bad_cel_is_reported_with_file_line_policy_and_rule() {
        let text = "agent_policy:\n  name: nurse\n  principals: {roles: [nurse]}\n  rules:\n    - name: bad\n      effect: allow\n      actions: [read]\n      kinds: [Patient]\n      when: Rs.attr.x == 1\n";
        let err = compile(&[("nurse.yaml", text)]).unwrap_err();
        let shown = err.to_string();
        assert!(shown.starts_with("policies/nurse.yaml:5: policy \"nurse\" rule \"bad\": when: unknown variable 'Rs' (did you mean 'R'?)"), "{shown}");
        assert!(shown.contains("^"), "{shown}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "agent_policy:\n  name: nurse\n  principals: {}\n  rules:\n    - name: a\n      effect: allow\n      actions: []\n      kinds: [Patient]\n    - name: b\n      effect: allow\n      actions: [read]\n";
        let dup = "capabilities:\n  name: nurse\n  capabilities: []\n";
        let err = compile(&[("a.yaml", text), ("b.yaml", dup)]).unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        let shown = err.to_string();
        assert!(shown.contains("principals must name"), "{shown}");
        assert!(shown.contains("rule \"a\": actions must list"), "{shown}");
        assert!(shown.contains("rule \"b\": kinds must list"), "{shown}");
        assert!(
            shown.contains("b.yaml:2: duplicate policy name \"nurse\""),
            "{shown}"
        );
    }

    #[test]
    fn capabilities_become_allow_rules_per_kind() {
        let caps = "capabilities:\n  name: caps\n  capabilities:\n    - name: sign-a-note\n      grants: [\"Patient:read\", \"Note:read\", \"Note:sign\"]\n";
        let set = compile(&[("caps.yaml", caps)]).unwrap();
        assert_eq!(set.rules.len(), 2);
        assert_eq!(set.rules_for("Note", "sign").len(), 1);
        assert_eq!(set.rules_for("Patient", "read").len(), 1);
        assert!(set.rules_for("Patient", "sign").is_empty());
        let bad = "capabilities:\n  name: caps\n  capabilities:\n    - name: x\n      grants: [\"Patient.read\"]\n";
        let err = compile(&[("caps.yaml", bad)]).unwrap_err();
        assert!(
            err.to_string().contains("not of the form Kind:action"),
            "{err}"
        );
    }

    #[test]
    fn resource_policies_take_their_kind_and_reject_rule_kinds() {
        let ok = "resource_policy:\n  name: celebrity\n  resource: {kind: Patient, when: \"R.attr.celebrity\"}\n  rules:\n    - name: guard\n      effect: deny\n      actions: [\"*\"]\n      when: P.id != R.attr.primary_physician_id\n";
        let set = compile(&[("c.yaml", ok)]).unwrap();
        assert_eq!(set.rules_for("Patient", "read").len(), 1);
        assert!(set.rules[0].target.is_some());
        let bad = ok.replace("      when: P.id", "      kinds: [Note]\n      when: P.id");
        let err = compile(&[("c.yaml", &bad)]).unwrap_err();
        assert!(err.to_string().contains("remove `kinds`"), "{err}");
    }

    #[test]
    fn scope_gates_resolve_per_kind_and_validate_letters() {
        let gate = "scope_gate:\n  name: smart\n  kinds: [Observation]\n";
        let set = compile(&[("g.yaml", gate)]).unwrap();
        let g = set.scope_gate_for("Observation").unwrap();
        assert_eq!(g.permission("search"), Some(Permission::Search));
        assert_eq!(g.permission("sign"), None);
        assert!(set.scope_gate_for("Patient").is_none());
        let bad = "scope_gate:\n  name: smart\n  kinds: [Observation]\n  actions: {read: x}\n";
        assert!(compile(&[("g.yaml", bad)])
            .unwrap_err()
            .to_string()
            .contains("expected one of c, r, u, d, s"));
    }
}
