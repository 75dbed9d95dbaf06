//! Turns parsed policy documents into a [`PolicySet`]: every CEL condition compiled once, rules
//! indexed by (kind, action) so a decision looks at only the rules that can apply, capabilities
//! expanded into allow rules, scope gates resolved per kind, and a content version.
//!
//! A `PolicySet` is an immutable value. Nothing here runs per request except the lookups
//! ([`PolicySet::rules_for`], [`PolicySet::scope_gate_for`]) and [`PrincipalMatcher::matches`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cel::projection::Projection;
use crate::cel::{Environment, NamedConditions};
use crate::entities::Entities;
use crate::policy::schema::ValidationMode;
use crate::policy::{self, Document, LoadError, LoadErrors, Located, PolicySource};
use crate::request::Principal;
use crate::schema::{KindSchema, Schema};

mod gates;
mod index;
mod lints;
mod names;
mod rules;
mod selector;
mod typing;

pub use gates::ScopeGate;
use index::{build_index, FastMap, KindIndex};
use names::Derived;
pub use rules::{Attachment, CompiledRule};
use selector::Interned;
pub use selector::{PrincipalKey, PrincipalMatcher};

/// Stack for the compiler thread (virtual memory; only what is touched is used).
const COMPILE_STACK_BYTES: usize = 256 << 20;

/// Wildcard for kinds and actions.
pub const ANY: &str = "*";

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
    /// The schema, if the set declares one: a closed world of kinds, actions and attributes.
    pub schema: Option<Arc<Schema>>,
    /// The principals and resources the set stores, merged into requests that name them.
    pub entities: Entities,
    /// The roles and capabilities selectors name, numbered.
    interned: Interned,
    /// The directory the set was loaded from: rules' files are under it.
    pub root: PathBuf,
}

/// What the request path needs of one kind: its rules, and its schema.
#[derive(Clone, Copy)]
pub struct Kind<'s> {
    index: &'s KindIndex,
    /// Some rule names the kind explicitly (not only through `*`), or the schema declares it.
    pub known: bool,
}

impl<'s> Kind<'s> {
    /// The ids of the rules that can apply to `action` on this kind, deny rules first, each group
    /// in declaration order.
    pub fn rules_for(&self, action: &str) -> &'s [u32] {
        &self.ids_for(action).ids
    }

    /// The ids of [`Kind::rules_for`] split where the allow rules start: (deny rules, allow
    /// rules).
    pub fn rules_by_effect(&self, action: &str) -> (&'s [u32], &'s [u32]) {
        let ids = self.ids_for(action);
        ids.ids.split_at(ids.denies)
    }

    fn ids_for(&self, action: &str) -> &'s index::RuleIds {
        self.index
            .by_action
            .get(action)
            .unwrap_or(&self.index.other_actions)
    }

    /// The actions to consider for this kind, sorted: those the schema declares for it, or
    /// without a schema every action some rule that can apply to the kind names.
    pub fn actions(&self) -> Vec<&'s str> {
        if let Some(declared) = self.schema() {
            return declared.actions.iter().map(String::as_str).collect();
        }
        let mut actions: Vec<&str> = self
            .index
            .by_action
            .iter()
            .filter(|(_, rules)| !rules.ids.is_empty())
            .map(|(action, _)| action.as_str())
            .collect();
        actions.sort_unstable();
        actions
    }

    /// The kind's schema: `None` when the set has no schema, or does not declare the kind.
    pub fn schema(&self) -> Option<&'s KindSchema> {
        self.index.schema.as_deref()
    }
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
                root: PathBuf::new(),
                documents: Vec::new(),
                version: "empty".to_string(),
            })
            .expect("an empty set compiles")
    }

    /// The ids of the rules that can apply to (kind, action), deny rules first, each group in
    /// declaration order.
    pub fn rules_for(&self, kind: &str, action: &str) -> &[u32] {
        self.kind(kind).rules_for(action)
    }

    /// One kind's rules and schema, looked up once.
    pub fn kind(&self, kind: &str) -> Kind<'_> {
        match self.by_kind.get(kind) {
            Some(index) => Kind { index, known: true },
            None => Kind {
                index: &self.other_kinds,
                known: false,
            },
        }
    }

    /// Whether some rule names this kind explicitly (not through `*`), or the schema declares it.
    pub fn knows_kind(&self, kind: &str) -> bool {
        self.by_kind.contains_key(kind)
    }

    /// The principal's roles and capabilities as selectors match them: once per request.
    pub fn principal_key<'p>(&self, principal: &'p Principal) -> PrincipalKey<'p> {
        self.interned.key(principal)
    }

    /// The schema requests are held to: `None` without a schema or with validation `off`.
    pub fn request_schema(&self) -> Option<&Schema> {
        self.schema
            .as_deref()
            .filter(|s| s.mode != ValidationMode::Off)
    }

    /// The scope gate for a kind, if one is on.
    pub fn scope_gate_for(&self, kind: &str) -> Option<&ScopeGate> {
        self.gates
            .get(kind)
            .or(self.any_kind_gate.as_ref())
            .map(|g| g.as_ref())
    }

    /// Where a rule is written: its file relative to the set's directory (as loaded when it is
    /// not under it), and the line.
    pub fn location(&self, rule: &CompiledRule) -> (String, usize) {
        let file = rule.file.strip_prefix(&self.root).unwrap_or(&rule.file);
        (file.display().to_string(), rule.line)
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
    /// The schema and the types it gives `P`, `R`, `C`, if the set declares one.
    typing: Option<typing::Typing>,
    /// Every capability some capabilities document defines (known before any rule compiles).
    declared_capabilities: HashSet<String>,
    /// Named conditions as written, and where.
    named_raw: typing::NamedRaw,
    /// The kinds and actions where each named condition and derived role is evaluated.
    name_contexts: HashMap<String, typing::Contexts>,
    derived_contexts: HashMap<String, typing::Contexts>,
}

impl Compiler {
    fn run(mut self, source: &PolicySource) -> Result<PolicySet, LoadErrors> {
        self.schema(source);
        self.conditions(&source.documents);
        for doc in &source.documents {
            match &doc.item {
                Document::AgentPolicy(p) => self.agent_policy(doc, p),
                Document::ResourcePolicy(p) => self.resource_policy(doc, p),
                Document::Capabilities(c) => self.capabilities(doc, c),
                Document::ScopeGate(g) => self.scope_gate(doc, g),
                Document::Conditions(_)
                | Document::Schema(_)
                | Document::Principals(_)
                | Document::Resources(_) => {}
            }
        }
        let (gates, any_kind_gate) = self.gate_index();
        self.type_check_names();
        let entities = self.entities(source);
        if !self.errors.is_empty() {
            return Err(LoadErrors(self.errors));
        }
        self.warn(&gates);
        let interned = Interned::build(self.rules.iter_mut().map(|r| &mut r.principals));
        let schema = self.typing.take().map(|t| t.schema);
        let (by_kind, other_kinds) = build_index(&self.rules, schema.as_deref());
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
            schema,
            entities,
            interned,
            root: source.root.clone(),
        })
    }

    /// The stored principals and resources, held to the schema.
    fn entities(&mut self, source: &PolicySource) -> Entities {
        let mut principals = Vec::new();
        let mut resources = Vec::new();
        for doc in &source.documents {
            match &doc.item {
                Document::Principals(p) => principals.push((doc, p)),
                Document::Resources(r) => resources.push((doc, r)),
                _ => {}
            }
        }
        let schema = self.typing.as_ref().map(|t| &*t.schema);
        match Entities::build(&principals, &resources, schema) {
            Ok(entities) => entities,
            Err(errors) => {
                self.errors.extend(errors);
                Entities::default()
            }
        }
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

    fn warning(&mut self, file: &Path, line: usize, message: String) {
        self.warnings.push(LoadError {
            file: file.to_path_buf(),
            line: Some(line),
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smart::Permission;
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
        assert!(shown.starts_with("policies/nurse.yaml:9: policy \"nurse\" rule \"bad\": when: unknown variable 'Rs' (did you mean 'R'?)"), "{shown}");
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
        assert!(err.contains("c.yaml:15: policy \"p\" rule \"uses-typo\": when: unknown variable 'aa' (did you mean the condition 'a'?)"), "{err}");
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
        assert!(all.contains("the set declares no schema"), "{all}");
        assert_eq!(warnings.len(), 7, "{all}");
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
