//! Scope gates: SMART permissions per action, the patient compartment, and which gate is on for
//! each kind (one per kind at most).

use std::collections::HashMap;
use std::sync::Arc;

use super::index::FastMap;
use super::{Compiler, ANY};
use crate::policy::{self, Document, Located};
use crate::smart::{PatientCompartment, Permission};

/// A scope gate compiled for lookups.
#[derive(Debug, Clone)]
pub struct ScopeGate {
    pub name: String,
    pub letters: HashMap<String, Permission>,
    pub compartment: PatientCompartment,
    /// Where the gate is declared (its name's line).
    pub file: std::path::PathBuf,
    pub line: usize,
}

impl ScopeGate {
    /// The SMART permission an action needs, if it has one.
    pub fn permission(&self, action: &str) -> Option<Permission> {
        self.letters.get(action).copied()
    }
}

impl Compiler {
    pub(super) fn scope_gate(&mut self, doc: &Located<Document>, g: &policy::ScopeGate) {
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
        if self.typing.is_some() {
            let Some(kinds) = self.declared_kinds(&doc.file, line, &at, &g.kinds) else {
                return;
            };
            if let Some(map) = &g.actions {
                let actions: Vec<String> = map.keys().cloned().collect();
                if self
                    .declared_actions(&doc.file, line, &at, &kinds, &actions)
                    .is_none()
                {
                    return;
                }
            }
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
            file: doc.file.clone(),
            line,
        };
        self.gate_sites
            .insert(g.name.clone(), (doc.file.clone(), line));
        self.gates
            .push((g.kinds.clone(), Arc::new(gate), doc.file.clone(), line));
    }

    pub(super) fn gate_index(
        &mut self,
    ) -> (FastMap<String, Arc<ScopeGate>>, Option<Arc<ScopeGate>>) {
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
