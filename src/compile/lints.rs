//! Warnings: what compiles but cannot be what the author meant (unused names, rules that can
//! never apply, denies nothing allows, undefined capabilities, gates on kinds no rule names).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::index::FastMap;
use super::selector::same_selector;
use super::{CompiledRule, Compiler, ScopeGate, ANY};
use crate::cel::check::literal_comparisons;
use crate::policy::Effect;

impl Compiler {
    /// Finds what compiles but cannot be what the author meant.
    pub(super) fn warn(&mut self, gates: &FastMap<String, Arc<ScopeGate>>) {
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
        if self.typing.is_none() {
            messages.extend(self.mixed_literal_types());
        }
        for (file, line, message) in messages {
            self.warning(&file, line, message);
        }
    }

    /// Without a schema, an attribute compared with literals of different types across the set
    /// (`celebrity == true` here, `celebrity == "true"` there): a request can match only one of
    /// them, and the others silently never hold.
    fn mixed_literal_types(&self) -> Vec<(PathBuf, usize, String)> {
        let mut uses: BTreeMap<String, Vec<(&'static str, &CompiledRule)>> = BTreeMap::new();
        for rule in &self.rules {
            for condition in rule
                .target
                .as_deref()
                .into_iter()
                .chain(rule.condition.as_ref())
            {
                for (path, ty) in literal_comparisons(condition) {
                    let seen = uses.entry(path).or_default();
                    if !seen.iter().any(|(t, r)| *t == ty && std::ptr::eq(*r, rule)) {
                        seen.push((ty, rule));
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (path, seen) in uses {
            let mut types: Vec<&str> = seen
                .iter()
                .map(|(t, _)| *t)
                .filter(|t| *t != "null")
                .collect();
            types.sort();
            types.dedup();
            if types.len() < 2 {
                continue;
            }
            let sites: Vec<String> = types
                .iter()
                .map(|ty| {
                    let (_, rule) = seen
                        .iter()
                        .find(|(t, _)| t == ty)
                        .expect("a use of each type");
                    format!(
                        "a {ty} in policy \"{}\" rule \"{}\" ({}:{})",
                        rule.policy,
                        rule.name,
                        rule.file.display(),
                        rule.line
                    )
                })
                .collect();
            let (_, first) = seen[0];
            out.push((
                first.file.clone(),
                first.line,
                format!(
                    "{path} is compared with {}: a request's value has one type, so some of these never hold (a schema would declare the type)",
                    sites.join(" and with ")
                ),
            ));
        }
        out
    }
}
