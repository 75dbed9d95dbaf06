//! Verdict and its peers, Cedar (`cedar-policy`), Rego (`regorus`: [`rego`] its interpreter,
//! [`rvm`] its bytecode VM) and, over the wire, the Cerbos PDP ([`cerbos`]), deciding the same
//! requests on the bundled clinic policies (`policies/clinic/`, translated in `cedar/clinic.cedar`
//! and `rego/clinic.rego`). Every engine takes Verdict's own request type ([`CheckRequest`]) and
//! answers an [`Effects`] table, so that the equivalence test and the benches feed all of them the same
//! data and compare like with like.
//!
//! Not part of the main build: this crate is a workspace of its own (see `peers/README.md`).

pub mod cedar;
pub mod cerbos;
pub mod corpus;
pub mod rego;
pub mod rvm;

use std::path::{Path, PathBuf};

use verdict::compile::PolicySet;
use verdict::engine;
use verdict::request::CheckRequest;

/// One row per resource of the request, one `true` (allow) or `false` (deny) per action, in
/// request order.
pub type Effects = Vec<Vec<bool>>;

/// The repository root (the parent of this crate).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("peers/ has a parent")
        .to_path_buf()
}

/// Verdict's bundled policies, as the daemon loads them.
pub fn verdict_policies() -> PolicySet {
    PolicySet::load(&repository().join("policies")).expect("the bundled policies load")
}

/// Verdict's decisions, reduced to effects.
pub fn verdict_effects(set: &PolicySet, request: &CheckRequest) -> Effects {
    engine::check(set, request)
        .iter()
        .map(|r| r.actions.iter().map(|(_, d)| d.is_allow()).collect())
        .collect()
}

/// A principal's SMART scopes as the peers without a scope parser take them (Cedar, Cerbos):
/// `"<Kind or *>.<letter>"` for every grant of a user/ or system/ scope, the same for patient/
/// scopes, and the launch patient (the `patient` claim, when it is a string). Parsed by Verdict's
/// own parser (`verdict::smart`). Scopes with v2 granular parameters (`?category=...`) are left
/// out: neither peer can compare a resource attribute named at run time.
pub struct SmartGrants {
    pub user: Vec<String>,
    pub patient: Vec<String>,
    pub launch_patient: Option<String>,
}

pub fn smart_grants(principal: &verdict::request::Principal) -> SmartGrants {
    use verdict::smart::{Compartment, Permission, SmartScope};
    let mut grants = SmartGrants {
        user: Vec::new(),
        patient: Vec::new(),
        launch_patient: None,
    };
    for scope in principal.scopes.iter().filter_map(|s| SmartScope::parse(s)) {
        if !scope.params.is_empty() {
            continue;
        }
        let kind = scope.kind.as_deref().unwrap_or("*");
        let into = if scope.compartment == Compartment::Patient {
            &mut grants.patient
        } else {
            &mut grants.user
        };
        for letter in ["c", "r", "u", "d", "s"] {
            let permission = Permission::from_letter(letter).expect("a SMART letter");
            if scope.allows(permission) {
                into.push(format!("{kind}.{letter}"));
            }
        }
    }
    if let Some(serde_json::Value::String(launch)) =
        verdict::request::attribute(&principal.attr, "patient")
    {
        grants.launch_patient = Some(launch.clone());
    }
    grants
}

/// Every action denied: what a peer answers when it cannot even build its request.
fn all_denied(request: &CheckRequest) -> Effects {
    request
        .resources
        .iter()
        .map(|r| vec![false; r.actions.len()])
        .collect()
}
