//! The schema applied at load: a set that declares one is a closed world. Every kind, action, role
//! and capability a policy names must be declared (with the closest declared name when it is
//! not), `*` means the declared kinds or actions and nothing else, and every condition is
//! type-checked (`cel::check`) for each kind it can be evaluated on, its errors located at the
//! file line of the offending part with a caret under it.
//!
//! Named conditions and derived roles are checked where they are defined, for every kind and
//! action of the rules that use them (directly or through another name); a rule's own condition
//! sees them as bools.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Compiler, ANY};
use crate::cel::check::{Choices, Problem, Record, Ty, TypeEnv};
use crate::policy::{self, Document, LoadError, Located, PolicySource};
use crate::schema::{self, Schema};

/// The kinds a condition can be evaluated on, each with the actions it can be asked for.
pub(super) type Contexts = BTreeMap<String, BTreeSet<String>>;

/// The types of `P`, `C` and each kind's `R`, built once per set.
pub(super) struct Typing {
    pub(super) schema: Arc<Schema>,
    principal: Ty,
    context: Ty,
    resources: BTreeMap<String, Ty>,
}

impl Typing {
    fn new(schema: Arc<Schema>, capabilities: &HashSet<String>) -> Typing {
        let roles = Choices::new("a declared role", schema.roles.iter().cloned().collect());
        let capabilities = Choices::new(
            "a capability some capabilities document defines",
            capabilities.iter().cloned().collect(),
        );
        let principal = Ty::Record(Record::new(
            "P",
            vec![
                ("id".into(), Ty::String, true),
                ("roles".into(), Ty::List(Box::new(Ty::Enum(roles))), true),
                (
                    "capabilities".into(),
                    Ty::List(Box::new(Ty::Enum(capabilities))),
                    true,
                ),
                ("scopes".into(), Ty::List(Box::new(Ty::String)), true),
                ("client_id".into(), Ty::String, true),
                (
                    "attr".into(),
                    Ty::Record(Record::of_object("P.attr", &schema.principal)),
                    true,
                ),
            ],
            false,
        ));
        let kinds = Choices::new("a declared kind", schema.kinds.keys().cloned().collect());
        let resources = schema
            .kinds
            .iter()
            .map(|(name, kind)| {
                // Named without the kind: a problem found for several kinds is said once, with
                // the kinds it concerns when not all of them.
                let attr = Record::of_object("R.attr", &kind.attributes);
                let record = Record::new(
                    "R",
                    vec![
                        ("kind".into(), Ty::Enum(Arc::clone(&kinds)), true),
                        ("id".into(), Ty::String, true),
                        ("attr".into(), Ty::Record(attr), true),
                    ],
                    false,
                );
                (name.clone(), Ty::Record(record))
            })
            .collect();
        Typing {
            principal,
            context: Ty::Record(Record::of_object("C", &schema.context)),
            resources,
            schema,
        }
    }

    fn env(&self, kind: &str, actions: &BTreeSet<String>) -> TypeEnv {
        TypeEnv {
            principal: self.principal.clone(),
            resource: self.resources.get(kind).cloned().unwrap_or(Ty::Dyn),
            action: Ty::Enum(Choices::new(
                "an action this condition is evaluated for",
                actions.iter().cloned().collect(),
            )),
            context: self.context.clone(),
        }
    }
}

#[derive(Debug, Clone)]
/// Where a condition's text sits in its file: the line of its key (`when:`), so that a problem on
/// line N of the condition is reported on the right file line.
pub(super) struct Site {
    pub(super) file: PathBuf,
    /// The file line of the key.
    pub(super) line: usize,
    /// The text is a block scalar (`when: |`), starting on the line after the key.
    pub(super) block: bool,
    /// What the condition is, for messages: `policy "p" rule "r": when`.
    pub(super) what: String,
}

impl Site {
    /// The site of the value of `key` in `doc`, looked for from the file line `after`.
    pub(super) fn of<T>(doc: &Located<T>, key: &str, after: usize, what: String) -> Site {
        let line = doc.line_of_key(key, after);
        let text = doc
            .text
            .lines()
            .nth(line.saturating_sub(doc.line))
            .unwrap_or("");
        let value = text
            .split_once(&format!("{key}:"))
            .map(|(_, v)| v.trim_start())
            .unwrap_or("");
        Site {
            file: doc.file.clone(),
            line,
            block: value.starts_with('|') || value.starts_with('>'),
            what,
        }
    }

    /// The file line of line `n` (1-based) of the condition's text.
    pub(super) fn file_line(&self, n: usize) -> usize {
        if self.block {
            self.line + n
        } else {
            self.line
        }
    }
}

/// The concrete kinds `kinds` stands for: `*` is every declared kind.
fn expand_kinds(schema: &Schema, kinds: &[String]) -> Vec<String> {
    if kinds.iter().any(|k| k == ANY) {
        schema.kinds.keys().cloned().collect()
    } else {
        kinds.to_vec()
    }
}

impl Compiler {
    /// Builds the set's schema from its `schema` documents; a set without one gets a warning
    /// saying it is untyped.
    pub(super) fn schema(&mut self, source: &PolicySource) {
        let documents: Vec<(&Located<Document>, &policy::SchemaDocument)> = source
            .documents
            .iter()
            .filter_map(|d| match &d.item {
                Document::Schema(s) => Some((d, s)),
                _ => None,
            })
            .collect();
        for (doc, s) in &documents {
            self.claim_policy_name(*doc, &s.name);
        }
        // Capabilities are declared by capabilities documents; a selector may name one defined in
        // any file.
        for doc in &source.documents {
            if let Document::Capabilities(c) = &doc.item {
                self.declared_capabilities
                    .extend(c.capabilities.iter().map(|c| c.name.clone()));
            }
        }
        match Schema::build(&documents) {
            Ok(Some(schema)) => {
                self.typing = Some(Typing::new(Arc::new(schema), &self.declared_capabilities))
            }
            Ok(None) => self.warnings.push(LoadError {
                file: source.root.clone(),
                line: None,
                message: "the set declares no schema: requests are not validated and conditions \
                          are not type-checked (add a `schema` document; `verdict validate \
                          --require-schema` makes this an error)"
                    .into(),
            }),
            Err(errors) => self.errors.extend(errors),
        }
    }

    /// Closed world: the kinds a rule names, each declared (or `*`). `None` after an error.
    pub(super) fn declared_kinds(
        &mut self,
        file: &Path,
        line: usize,
        at: &str,
        kinds: &[String],
    ) -> Option<Vec<String>> {
        let typing = self.typing.as_ref()?;
        let schema = Arc::clone(&typing.schema);
        let mut ok = true;
        for kind in kinds.iter().filter(|k| *k != ANY) {
            if schema.kind(kind).is_none() {
                let hint = schema
                    .closest_kind(kind)
                    .map(|c| format!(" (did you mean \"{c}\"?)"))
                    .unwrap_or_else(|| {
                        format!(
                            " (declared: {})",
                            schema.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    });
                self.error(
                    file,
                    line,
                    format!("{at}: kind \"{kind}\" is not declared in the schema{hint}"),
                );
                ok = false;
            }
        }
        ok.then(|| expand_kinds(&schema, kinds))
    }

    /// Closed world: every action a rule or grant names is declared for at least one of its
    /// kinds. Returns the (kind, actions) the rule can be evaluated for.
    pub(super) fn declared_actions(
        &mut self,
        file: &Path,
        line: usize,
        at: &str,
        kinds: &[String],
        actions: &[String],
    ) -> Option<Contexts> {
        let schema = Arc::clone(&self.typing.as_ref()?.schema);
        let mut contexts = Contexts::new();
        for kind in kinds {
            let Some(k) = schema.kind(kind) else { continue };
            let covered: BTreeSet<String> = if actions.iter().any(|a| a == ANY) {
                k.actions.iter().cloned().collect()
            } else {
                actions
                    .iter()
                    .filter(|a| k.has_action(a))
                    .cloned()
                    .collect()
            };
            contexts.insert(kind.clone(), covered);
        }
        let mut ok = true;
        for action in actions.iter().filter(|a| *a != ANY) {
            if !contexts.values().any(|c| c.contains(action)) {
                let known: BTreeSet<&str> = kinds
                    .iter()
                    .filter_map(|k| schema.kind(k))
                    .flat_map(|k| k.actions.iter().map(String::as_str))
                    .collect();
                let hint = schema::closest(action, known.iter().copied())
                    .map(|c| format!(" (did you mean \"{c}\"?)"))
                    .unwrap_or_else(|| {
                        format!(
                            " (declared: {})",
                            known.into_iter().collect::<Vec<_>>().join(", ")
                        )
                    });
                self.error(
                    file,
                    line,
                    format!(
                        "{at}: action \"{action}\" is not declared for kind {}{hint}",
                        kinds.join(", ")
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(contexts)
    }

    /// Closed world: the roles (and parent roles) and capabilities a selector names are declared.
    pub(super) fn declared_principals(
        &mut self,
        file: &Path,
        line: usize,
        at: &str,
        roles: &[String],
        capabilities: &[String],
    ) {
        let Some(typing) = &self.typing else { return };
        let schema = Arc::clone(&typing.schema);
        for role in roles.iter().filter(|r| *r != ANY) {
            if !schema.roles.contains(role) {
                let hint = schema
                    .closest_role(role)
                    .map(|c| format!(" (did you mean \"{c}\"?)"))
                    .unwrap_or_default();
                self.error(
                    file,
                    line,
                    format!("{at}: role \"{role}\" is not declared in the schema{hint}"),
                );
            }
        }
        for capability in capabilities {
            if !self.declared_capabilities.contains(capability) {
                let hint = schema::closest(
                    capability,
                    self.declared_capabilities.iter().map(String::as_str),
                )
                .map(|c| format!(" (did you mean \"{c}\"?)"))
                .unwrap_or_default();
                self.error(
                    file,
                    line,
                    format!("{at}: no capabilities document defines \"{capability}\"{hint}"),
                );
            }
        }
    }

    /// Type-checks `source` for each kind of `contexts`, reporting every problem at its line.
    /// Returns the named conditions `source` uses directly.
    pub(super) fn type_check(
        &mut self,
        site: &Site,
        source: &str,
        contexts: &Contexts,
    ) -> Vec<String> {
        let Some(typing) = &self.typing else {
            return Vec::new();
        };
        let mut found: Vec<(Problem, Vec<&str>)> = Vec::new();
        let mut names = Vec::new();
        for (kind, actions) in contexts {
            let env = typing.env(kind, actions);
            let checked = match self.environment.type_check(source, &env, &self.named) {
                Ok(checked) => checked,
                // Does not compile: reported where it is compiled.
                Err(_) => return Vec::new(),
            };
            names = checked.names;
            for problem in checked.problems {
                match found.iter_mut().find(|(p, _)| *p == problem) {
                    Some((_, kinds)) => kinds.push(kind),
                    None => found.push((problem, vec![kind])),
                }
            }
        }
        let all = contexts.len();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for (problem, kinds) in found {
            let only = if all > 1 && kinds.len() < all {
                format!(" (for kind {})", kinds.join(", "))
            } else {
                String::new()
            };
            let line = site.file_line(problem.position.map(|(l, _)| l).unwrap_or(1));
            let mut error = problem.as_compile_error();
            error.message.push_str(&only);
            let message = format!("{}: {}", site.what, error.render(source));
            if problem.warning {
                warnings.push((line, message));
            } else {
                errors.push((line, message));
            }
        }
        for (line, message) in errors {
            self.error(&site.file, line, message);
        }
        for (line, message) in warnings {
            self.warning(&site.file, line, message);
        }
        names
    }

    /// Records that conditions using `names` and derived roles `derived` are evaluated in
    /// `contexts`, so that those are checked there.
    pub(super) fn record_use(&mut self, names: &[String], derived: &[String], contexts: &Contexts) {
        if self.typing.is_none() {
            return;
        }
        for name in names {
            merge(
                self.name_contexts.entry(name.clone()).or_default(),
                contexts,
            );
        }
        for name in derived {
            merge(
                self.derived_contexts.entry(name.clone()).or_default(),
                contexts,
            );
        }
    }

    /// Checks every derived role and named condition for the contexts its users recorded.
    pub(super) fn type_check_names(&mut self) {
        if self.typing.is_none() {
            return;
        }
        // Derived roles first: the names they use inherit their contexts.
        let mut derived: Vec<(String, Contexts)> = self
            .derived_contexts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        derived.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, contexts) in &derived {
            let Some(role) = self.derived.get(name) else {
                continue;
            };
            let (site, source) = (role.site.clone(), role.source.clone());
            let uses = self.type_check(&site, &source, contexts);
            self.record_use(&uses, &[], contexts);
        }
        // Then names, passing each one's contexts on to the names it uses until nothing changes.
        let mut changed = true;
        while changed {
            changed = false;
            let snapshot: Vec<(String, Contexts)> = self
                .name_contexts
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (name, contexts) in snapshot {
                for used in self.named_uses.get(&name).cloned().unwrap_or_default() {
                    changed |= merge(self.name_contexts.entry(used).or_default(), &contexts);
                }
            }
        }
        let mut names: Vec<(String, Contexts)> = self
            .name_contexts
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, contexts) in names {
            let Some((site, source)) = self.named_raw.get(&name).cloned() else {
                continue;
            };
            self.type_check(&site, &source, &contexts);
        }
    }
}

/// Adds `more` to `into`; whether anything was new.
fn merge(into: &mut Contexts, more: &Contexts) -> bool {
    let mut changed = false;
    for (kind, actions) in more {
        let set = into.entry(kind.clone()).or_default();
        let before = set.len();
        set.extend(actions.iter().cloned());
        changed |= set.len() != before;
    }
    changed
}

/// Where each named condition is defined, and its text as written.
pub(super) type NamedRaw = HashMap<String, (Site, String)>;
