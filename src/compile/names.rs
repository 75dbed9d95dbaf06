//! Named conditions and derived roles: collected from every `conditions` document before any rule
//! is compiled, names used inside them expanded in dependency order (a cycle is an error).

use std::collections::HashMap;
use std::path::PathBuf;

use super::typing::Site;
use super::Compiler;
use crate::cel::{NamedConditions, VARIABLES};
use crate::policy::{Document, Located};

/// A derived role, its condition already expanded.
pub(super) struct Derived {
    pub(super) parent_roles: Vec<String>,
    pub(super) when: String,
    /// Its condition as written, and where.
    pub(super) source: String,
    pub(super) site: Site,
}
impl Compiler {
    /// Collects every named condition and derived role of the set, expanding names used inside
    /// them, before any rule is compiled (a rule may use a name defined in any file).
    pub(super) fn conditions(&mut self, documents: &[Located<Document>]) {
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
                    let what = format!("condition \"{}\": when", named.name);
                    self.named_raw.insert(
                        named.name.clone(),
                        (Site::of(doc, "when", line, what), named.when.clone()),
                    );
                }
            }
            for role in &c.derived_roles {
                let line = doc.line_of_name(&role.name, doc_line);
                let what = format!("derived role \"{}\": when", role.name);
                let site = Site::of(doc, "when", line, what);
                let at = format!("derived role \"{}\"", role.name);
                self.declared_principals(&doc.file, line, &at, &role.parent_roles, &[]);
                derived_raw.push((doc.file.clone(), line, role.clone(), site));
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
        for (file, line, role, site) in derived_raw {
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
                            source: role.when.clone(),
                            site,
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

    /// Expands the named condition `name` (its uses first), recording it in `self.named`.
    /// Fails on a cycle, naming it.
    pub(super) fn expand_named(
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
}

pub(super) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
