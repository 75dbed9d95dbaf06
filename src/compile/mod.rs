//! Turns parsed policy documents into a [`PolicySet`]: every CEL condition compiled once, rules
//! indexed by (kind, action) so a decision looks at only the rules that can apply, capabilities
//! expanded into allow rules, scope gates resolved per kind, and a content version.
//!
//! A `PolicySet` is an immutable value. Nothing here runs per request except the lookups
//! ([`PolicySet::rules_for`], [`PolicySet::scope_gate_for`]) and [`PrincipalMatcher::matches`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cel::projection::Projection;
use crate::cel::{Condition, Environment, NamedConditions, VARIABLES};
use crate::policy::{self, Document, Effect, LoadError, LoadErrors, Located, PolicySource};
use crate::request::Principal;
use crate::smart::{PatientCompartment, Permission};

/// Stack for the compiler thread (virtual memory; only what is touched is used).
const COMPILE_STACK_BYTES: usize = 256 << 20;

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

/// The maps the request path looks kinds and actions up in. Their keys come from the policies,
/// not from requests, so a fast hash that does not resist crafted collisions is safe.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Rule ids for one kind: per action, and for actions no rule names explicitly.
#[derive(Debug, Default)]
struct KindIndex {
    by_action: FastMap<String, Box<[u32]>>,
    other_actions: Box<[u32]>,
}

/// An immutable, compiled policy set.
#[derive(Debug)]
pub struct PolicySet {
    pub version: String,
    pub environment: Environment,
    pub rules: Vec<CompiledRule>,
    by_kind: FastMap<String, KindIndex>,
    other_kinds: KindIndex,
    gates: FastMap<String, Arc<ScopeGate>>,
    any_kind_gate: Option<Arc<ScopeGate>>,
    pub policy_count: usize,
    /// Problems that do not stop the set from loading (rules that can never apply, unused names).
    pub warnings: Vec<LoadError>,
    /// The parts of `P` and `R` the conditions can read: all a request needs to build.
    pub projection: Projection,
}

impl PolicySet {
    /// Loads and compiles every policy file under `dir`.
    pub fn load(dir: &Path) -> Result<PolicySet, LoadErrors> {
        let source = policy::load_dir(dir)?;
        PolicySet::compile(&source)
    }

    /// Compiles parsed documents, reporting every problem found.
    ///
    /// Runs on a thread of its own with a large stack: the CEL parser recurses deeply on nested
    /// expressions, and a pathological policy must be an error, never a stack overflow.
    pub fn compile(source: &PolicySource) -> Result<PolicySet, LoadErrors> {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("verdict-compile".into())
                .stack_size(COMPILE_STACK_BYTES)
                .spawn_scoped(scope, || Compiler::default().run(source))
                .map_err(|e| {
                    LoadErrors(vec![LoadError {
                        file: PathBuf::new(),
                        line: None,
                        message: format!("cannot start the compiler thread: {e}"),
                    }])
                })?
                .join()
                .unwrap_or_else(|_| {
                    Err(LoadErrors(vec![LoadError {
                        file: PathBuf::new(),
                        line: None,
                        message: "the policy compiler panicked".into(),
                    }]))
                })
        })
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

/// A derived role, its condition already expanded.
struct Derived {
    parent_roles: Vec<String>,
    when: String,
}

/// One way a rule's principal selectors can match: plain selectors, and the conditions of the
/// derived roles involved.
type SelectorVariant = (Vec<policy::PrincipalSelector>, Vec<String>);

#[derive(Default)]
struct Compiler {
    environment: Environment,
    rules: Vec<CompiledRule>,
    errors: Vec<LoadError>,
    policy_names: HashSet<String>,
    gates: Vec<(Vec<String>, Arc<ScopeGate>, PathBuf, usize)>,
    /// Named conditions, fully expanded.
    named: NamedConditions,
    derived: HashMap<String, Derived>,
    warnings: Vec<LoadError>,
    /// Where each named condition and derived role is defined, and what each uses, for warnings.
    named_sites: HashMap<String, (PathBuf, usize)>,
    named_uses: HashMap<String, Vec<String>>,
    derived_sites: HashMap<String, (PathBuf, usize, Vec<String>)>,
    /// Names used directly by rules, and derived roles used by selectors.
    used_names: HashSet<String>,
    used_derived: HashSet<String>,
    /// Capabilities some `capabilities` document defines.
    capability_names: HashSet<String>,
    gate_sites: HashMap<String, (PathBuf, usize)>,
}

impl Compiler {
    fn run(mut self, source: &PolicySource) -> Result<PolicySet, LoadErrors> {
        self.conditions(&source.documents);
        for doc in &source.documents {
            match &doc.item {
                Document::AgentPolicy(p) => self.agent_policy(doc, p),
                Document::ResourcePolicy(p) => self.resource_policy(doc, p),
                Document::Capabilities(c) => self.capabilities(doc, c),
                Document::ScopeGate(g) => self.scope_gate(doc, g),
                Document::Conditions(_) => {}
            }
        }
        let (gates, any_kind_gate) = self.gate_index();
        if !self.errors.is_empty() {
            return Err(LoadErrors(self.errors));
        }
        self.warn(&gates);
        let (by_kind, other_kinds) = build_index(&self.rules);
        let mut projection = Projection::default();
        for rule in &self.rules {
            for condition in rule
                .target
                .as_deref()
                .into_iter()
                .chain(rule.condition.as_ref())
            {
                projection.add(condition);
            }
        }
        Ok(PolicySet {
            version: source.version.clone(),
            environment: self.environment,
            rules: self.rules,
            by_kind,
            other_kinds,
            gates,
            any_kind_gate,
            policy_count: self.policy_names.len(),
            warnings: self.warnings,
            projection,
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

    /// Collects every named condition and derived role of the set, expanding names used inside
    /// them, before any rule is compiled (a rule may use a name defined in any file).
    fn conditions(&mut self, documents: &[Located<Document>]) {
        let mut raw: NamedConditions = NamedConditions::new();
        let mut sites: HashMap<String, (PathBuf, usize)> = HashMap::new();
        let mut derived_raw = Vec::new();
        for doc in documents {
            let Document::Conditions(c) = &doc.item else {
                continue;
            };
            if !self.claim_policy_name(doc, &c.name) {
                continue;
            }
            let doc_line = doc.line_of_name(&c.name, doc.line);
            for named in &c.conditions {
                let line = doc.line_of_name(&named.name, doc_line);
                if !is_identifier(&named.name) || VARIABLES.contains(&named.name.as_str()) {
                    self.error(&doc.file, line, format!("condition name \"{}\" must be an identifier (letters, digits, _) other than P, R, A, C", named.name));
                } else if let Some((file, other)) = sites.get(&named.name) {
                    let message = format!(
                        "condition \"{}\" is already defined at {}:{other}",
                        named.name,
                        file.display()
                    );
                    self.error(&doc.file, line, message);
                } else {
                    raw.insert(named.name.clone(), named.when.clone());
                    sites.insert(named.name.clone(), (doc.file.clone(), line));
                }
            }
            for role in &c.derived_roles {
                let line = doc.line_of_name(&role.name, doc_line);
                derived_raw.push((doc.file.clone(), line, role.clone()));
            }
        }
        // Each name's direct uses, then expansion in dependency order; a cycle is an error.
        let mut uses: HashMap<String, Vec<String>> = HashMap::new();
        let mut names: Vec<String> = raw.keys().cloned().collect();
        names.sort();
        self.named_sites = sites.clone();
        for name in &names {
            match self.environment.expand(&raw[name], &raw) {
                Ok((_, used)) => {
                    uses.insert(name.clone(), used);
                }
                Err(e) => {
                    let (file, line) = sites[name].clone();
                    self.error(
                        &file,
                        line,
                        format!("condition \"{name}\": {}", e.render(&raw[name])),
                    );
                }
            }
        }
        self.named_uses = uses.clone();
        for name in &names {
            let mut path = Vec::new();
            if let Err(cycle) = self.expand_named(name, &raw, &uses, &mut path) {
                let (file, line) = sites[name].clone();
                self.error(&file, line, format!("condition \"{name}\": {cycle}"));
            }
        }
        for (file, line, role) in derived_raw {
            if self.derived.contains_key(&role.name) {
                self.error(
                    &file,
                    line,
                    format!("derived role \"{}\" is defined twice", role.name),
                );
                continue;
            }
            match self.environment.expand(&role.when, &self.named) {
                Ok((when, used)) => {
                    self.derived_sites
                        .insert(role.name.clone(), (file.clone(), line, used));
                    self.derived.insert(
                        role.name.clone(),
                        Derived {
                            parent_roles: role.parent_roles.clone(),
                            when,
                        },
                    );
                }
                Err(e) => self.error(
                    &file,
                    line,
                    format!(
                        "derived role \"{}\": when: {}",
                        role.name,
                        e.render(&role.when)
                    ),
                ),
            }
        }
    }

    fn warning(&mut self, file: &Path, line: usize, message: String) {
        self.warnings.push(LoadError {
            file: file.to_path_buf(),
            line: Some(line),
            message,
        });
    }

    /// Finds what compiles but cannot be what the author meant.
    fn warn(&mut self, gates: &FastMap<String, Arc<ScopeGate>>) {
        // Named conditions and derived roles nobody uses (directly or through another name).
        let mut used: HashSet<String> = self.used_names.clone();
        for name in &self.used_derived {
            if let Some((_, _, names)) = self.derived_sites.get(name) {
                used.extend(names.iter().cloned());
            }
        }
        let mut frontier: Vec<String> = used.iter().cloned().collect();
        while let Some(name) = frontier.pop() {
            for next in self.named_uses.get(&name).cloned().unwrap_or_default() {
                if used.insert(next.clone()) {
                    frontier.push(next);
                }
            }
        }
        let mut unused: Vec<(String, PathBuf, usize)> = self
            .named_sites
            .iter()
            .filter(|(name, _)| !used.contains(*name))
            .map(|(name, (file, line))| (name.clone(), file.clone(), *line))
            .collect();
        unused.sort();
        for (name, file, line) in unused {
            self.warning(&file, line, format!("condition \"{name}\" is never used"));
        }
        let mut unused_roles: Vec<(String, PathBuf, usize)> = self
            .derived_sites
            .iter()
            .filter(|(name, _)| !self.used_derived.contains(*name))
            .map(|(name, (file, line, _))| (name.clone(), file.clone(), *line))
            .collect();
        unused_roles.sort();
        for (name, file, line) in unused_roles {
            self.warning(
                &file,
                line,
                format!("derived role \"{name}\" is never used"),
            );
        }

        let mut messages: Vec<(PathBuf, usize, String)> = Vec::new();
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let covers = |list: &[String], item: &str| list.iter().any(|x| x == ANY || x == item);
        for rule in &self.rules {
            // Only one warning per source rule, even when it compiled into several variants.
            if !seen.insert((rule.policy.to_string(), rule.name.to_string())) {
                continue;
            }
            let at = format!("policy \"{}\" rule \"{}\"", rule.policy, rule.name);
            for selector in &rule.principals.all {
                for capability in &selector.capabilities {
                    if !self.capability_names.contains(capability) {
                        messages.push((
                            rule.file.clone(),
                            rule.line,
                            format!("{at}: no capabilities document defines \"{capability}\""),
                        ));
                    }
                }
            }
            match rule.effect {
                Effect::Deny => {
                    // A deny on explicit (kind, action) pairs nothing allows never changes a decision.
                    let pairs: Vec<(&String, &String)> = rule
                        .kinds
                        .iter()
                        .filter(|k| *k != ANY)
                        .flat_map(|k| {
                            rule.actions
                                .iter()
                                .filter(|a| *a != ANY)
                                .map(move |a| (k, a))
                        })
                        .collect();
                    for (kind, action) in pairs {
                        let allowed = self.rules.iter().any(|r| {
                            r.effect == Effect::Allow
                                && covers(&r.kinds, kind)
                                && covers(&r.actions, action)
                        });
                        if !allowed {
                            messages.push((rule.file.clone(), rule.line, format!("{at}: no rule allows {kind}:{action}, so this deny never changes a decision")));
                        }
                    }
                }
                Effect::Allow => {
                    // Shadowed: an unconditional deny that applies whenever this rule does.
                    let shadow = self.rules.iter().find(|d| {
                        d.effect == Effect::Deny
                            && d.condition.is_none()
                            && d.target.is_none()
                            && d.principals
                                .all
                                .iter()
                                .all(|s| rule.principals.all.iter().any(|o| same_selector(o, s)))
                            && rule.kinds.iter().all(|k| covers(&d.kinds, k))
                            && rule.actions.iter().all(|a| covers(&d.actions, a))
                    });
                    if let Some(d) = shadow {
                        messages.push((rule.file.clone(), rule.line, format!("{at}: never allows anything: deny rule \"{}\" of policy \"{}\" always applies where it does", d.name, d.policy)));
                    }
                }
            }
        }
        let mut gated: Vec<&String> = gates.keys().collect();
        gated.sort();
        for kind in gated {
            if !self.rules.iter().any(|r| r.kinds.iter().any(|k| k == kind)) {
                let gate = &gates[kind];
                let (file, line) = self.gate_sites.get(&gate.name).cloned().unwrap_or_default();
                messages.push((
                    file,
                    line,
                    format!(
                        "scope gate \"{}\": no rule names kind \"{kind}\"",
                        gate.name
                    ),
                ));
            }
        }
        for (file, line, message) in messages {
            self.warning(&file, line, message);
        }
    }

    /// Expands the named condition `name` (its uses first), recording it in `self.named`.
    /// Fails on a cycle, naming it.
    fn expand_named(
        &mut self,
        name: &str,
        raw: &NamedConditions,
        uses: &HashMap<String, Vec<String>>,
        path: &mut Vec<String>,
    ) -> Result<(), String> {
        if self.named.contains_key(name) {
            return Ok(());
        }
        let Some(direct) = uses.get(name) else {
            return Err("does not compile".to_string());
        };
        if let Some(i) = path.iter().position(|p| p == name) {
            let mut cycle = path[i..].to_vec();
            cycle.push(name.to_string());
            return Err(format!(
                "named conditions form a cycle: {}",
                cycle.join(" -> ")
            ));
        }
        path.push(name.to_string());
        for used in direct.clone() {
            self.expand_named(&used, raw, uses, path)?;
        }
        path.pop();
        let (text, _) = self
            .environment
            .expand(&raw[name], &self.named)
            .map_err(|e| e.message)?;
        self.named.insert(name.to_string(), text);
        Ok(())
    }

    /// Compiles a condition written by a policy author (named conditions allowed), conjoined
    /// with already-expanded `extra` conditions (from derived roles).
    fn condition<T>(
        &mut self,
        doc: &Located<T>,
        line: usize,
        what: &str,
        source: Option<&str>,
        extra: &[String],
    ) -> Result<Option<Condition>, ()> {
        if let (Some(source), true) = (source, extra.is_empty()) {
            // The common case: one parse, named conditions inlined only if used.
            return match self.environment.compile_with(source, &self.named) {
                Ok((condition, used)) => {
                    self.used_names.extend(used);
                    Ok(Some(condition))
                }
                Err(e) => {
                    self.error(&doc.file, line, format!("{what}: {}", e.render(source)));
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
                    self.error(&doc.file, line, format!("{what}: {}", e.render(source)));
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
    fn selector_variants(
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
        let what = format!("resource policy \"{}\": resource.when", p.name);
        let target = match self.condition(doc, policy_line, &what, p.resource.when.as_deref(), &[])
        {
            Ok(c) => c.map(Arc::new),
            Err(()) => return,
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
            if rule.principals.as_ref().is_some_and(|own| own.is_empty()) {
                self.error(&doc.file, line, format!("{at}: principals is empty; remove it or name a role, capability, id, client or derived role"));
                continue;
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
                        principals: PrincipalMatcher {
                            all: outer_selectors
                                .iter()
                                .chain(inner_selectors)
                                .cloned()
                                .collect(),
                        },
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
        self.gate_sites
            .insert(g.name.clone(), (doc.file.clone(), line));
        self.gates
            .push((g.kinds.clone(), Arc::new(gate), doc.file.clone(), line));
    }

    fn gate_index(&mut self) -> (FastMap<String, Arc<ScopeGate>>, Option<Arc<ScopeGate>>) {
        let mut by_kind: FastMap<String, Arc<ScopeGate>> = FastMap::default();
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

fn same_selector(a: &policy::PrincipalSelector, b: &policy::PrincipalSelector) -> bool {
    a.roles == b.roles
        && a.capabilities == b.capabilities
        && a.ids == b.ids
        && a.clients == b.clients
        && a.derived_roles == b.derived_roles
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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
fn build_index(rules: &[CompiledRule]) -> (FastMap<String, KindIndex>, KindIndex) {
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
    use serde_json::json;
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

    const CONDITIONS: &str = r#"
conditions:
  name: shared
  conditions:
    - name: same_practice
      when: R.attr.practice_id == P.attr.practice_id
    - name: own_signed_note
      when: same_practice && R.attr.author_id == P.id
  derived_roles:
    - name: primary_physician
      parent_roles: [physician]
      when: same_practice && P.id == R.attr.primary_physician_id
"#;

    fn decide(
        set: &PolicySet,
        principal: serde_json::Value,
        kind: &str,
        attr: serde_json::Value,
        action: &str,
    ) -> bool {
        let request = crate::request::CheckRequest {
            principal: serde_json::from_value(principal).unwrap(),
            resources: vec![crate::request::ResourceCheck {
                resource: crate::request::Resource {
                    kind: kind.into(),
                    id: "x".into(),
                    attr,
                },
                actions: vec![action.into()],
            }],
            ..Default::default()
        };
        crate::engine::check(set, &request)[0].actions[0]
            .1
            .is_allow()
    }

    #[test]
    fn named_conditions_and_derived_roles_are_inlined() {
        let policy = "agent_policy:\n  name: docs\n  principals: {roles: [physician]}\n  rules:\n    - name: sign\n      effect: allow\n      actions: [sign]\n      kinds: [Note]\n      when: own_signed_note\n---\nresource_policy:\n  name: charts\n  resource: {kind: Patient}\n  rules:\n    - name: primary-or-nurse\n      effect: allow\n      actions: [update]\n      principals: {roles: [nurse], derived_roles: [primary_physician]}\n";
        let set = compile(&[("c.yaml", CONDITIONS), ("p.yaml", policy)]).unwrap();
        let dr = json!({"id": "dr-1", "roles": ["physician"], "attr": {"practice_id": "7"}});
        assert!(decide(
            &set,
            dr.clone(),
            "Note",
            json!({"practice_id": "7", "author_id": "dr-1"}),
            "sign"
        ));
        assert!(!decide(
            &set,
            dr.clone(),
            "Note",
            json!({"practice_id": "9", "author_id": "dr-1"}),
            "sign"
        ));
        let chart = json!({"practice_id": "7", "primary_physician_id": "dr-1"});
        assert!(decide(&set, dr.clone(), "Patient", chart.clone(), "update"));
        assert!(!decide(
            &set,
            json!({"id": "dr-2", "roles": ["physician"], "attr": {"practice_id": "7"}}),
            "Patient",
            chart.clone(),
            "update"
        ));
        assert!(decide(
            &set,
            json!({"id": "n", "roles": ["nurse"]}),
            "Patient",
            chart.clone(),
            "update"
        ));
        assert!(!decide(
            &set,
            json!({"id": "dr-1", "roles": ["nurse_aide"]}),
            "Patient",
            chart,
            "update"
        ));
        // The derived role expanded into its own compiled rule under the same name.
        assert_eq!(
            set.rules
                .iter()
                .filter(|r| &*r.name == "primary-or-nurse")
                .count(),
            2
        );
    }

    #[test]
    fn named_condition_errors_cycles_and_unknown_derived_roles() {
        let cyclic = "conditions:\n  name: c\n  conditions:\n    - name: a\n      when: b\n    - name: b\n      when: a || true\n";
        let err = compile(&[("c.yaml", cyclic)]).unwrap_err().to_string();
        assert!(
            err.contains("named conditions form a cycle: a -> b -> a"),
            "{err}"
        );
        let typo = "conditions:\n  name: c\n  conditions:\n    - name: a\n      when: R.attr.x == 1\n---\nagent_policy:\n  name: p\n  principals: {roles: [r]}\n  rules:\n    - name: uses-typo\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: aa && true\n";
        let err = compile(&[("c.yaml", typo)]).unwrap_err().to_string();
        assert!(err.contains("c.yaml:11: policy \"p\" rule \"uses-typo\": when: unknown variable 'aa' (did you mean the condition 'a'?)"), "{err}");
        let unknown_role = "agent_policy:\n  name: p\n  principals: {derived_roles: [ghost]}\n  rules:\n    - name: r\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n";
        let err = compile(&[("p.yaml", unknown_role)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown derived role \"ghost\""), "{err}");
        let bad_name = "conditions:\n  name: c\n  conditions:\n    - name: P\n      when: 'true'\n";
        assert!(compile(&[("c.yaml", bad_name)])
            .unwrap_err()
            .to_string()
            .contains("must be an identifier"));
    }

    #[test]
    fn warnings_name_rules_that_cannot_apply_and_unused_names() {
        let text = r#"
conditions:
  name: shared
  conditions:
    - name: used_inside
      when: R.attr.x == 1
    - name: used
      when: used_inside && true
    - name: unused
      when: "true"
  derived_roles:
    - name: ghost_role
      when: "true"
---
agent_policy:
  name: p
  principals: {roles: [r]}
  rules:
    - name: reads
      effect: allow
      actions: [read]
      kinds: [Doc]
      when: used
    - name: never-reads
      effect: allow
      actions: [read]
      kinds: [Secret]
    - name: no-secrets
      effect: deny
      actions: ["*"]
      kinds: [Secret]
    - name: pointless
      effect: deny
      actions: [delete]
      kinds: [Doc]
    - name: needs-capability
      effect: allow
      actions: [write]
      kinds: [Doc]
      principals: {capabilities: [undefined-cap]}
---
scope_gate:
  name: smart
  kinds: [Spaceship]
"#;
        let set = compile(&[("p.yaml", text)]).unwrap();
        let warnings: Vec<String> = set.warnings.iter().map(|w| w.to_string()).collect();
        let all = warnings.join("\n");
        assert!(
            all.contains("p.yaml:9: condition \"unused\" is never used"),
            "{all}"
        );
        assert!(
            !all.contains("\"used\" is never") && !all.contains("used_inside\" is never"),
            "{all}"
        );
        assert!(
            all.contains("derived role \"ghost_role\" is never used"),
            "{all}"
        );
        assert!(
            all.contains("rule \"never-reads\": never allows anything: deny rule \"no-secrets\""),
            "{all}"
        );
        assert!(
            all.contains("rule \"pointless\": no rule allows Doc:delete"),
            "{all}"
        );
        assert!(
            all.contains("no capabilities document defines \"undefined-cap\""),
            "{all}"
        );
        assert!(
            all.contains("scope gate \"smart\": no rule names kind \"Spaceship\""),
            "{all}"
        );
        assert_eq!(warnings.len(), 6, "{all}");
        assert!(clinic_warnings().is_empty(), "{:?}", clinic_warnings());
    }

    fn clinic_warnings() -> Vec<String> {
        let set = PolicySet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
        set.warnings.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn pathologically_nested_conditions_are_errors_not_crashes() {
        let deep = format!("{}R.attr.x == 1{}", "!(".repeat(300), ")".repeat(300));
        let policy = format!("agent_policy:\n  name: p\n  principals: {{roles: [r]}}\n  rules:\n    - name: deep\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: '{deep}'\n");
        let err = compile(&[("p.yaml", &policy)]).unwrap_err().to_string();
        assert!(
            err.contains("rule \"deep\": when: syntax error"),
            "{}",
            &err[..err.len().min(300)]
        );
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
