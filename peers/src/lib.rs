//! Verdict and two peer engines, Cedar (`cedar-policy`) and Rego (`regorus`), deciding the same
//! requests on the bundled clinic policies (`policies/clinic/`, translated in `cedar/clinic.cedar`
//! and `rego/clinic.rego`). Every engine takes Verdict's own request type ([`CheckRequest`]) and
//! answers an [`Effects`] table, so that the equivalence test and the bench feed all three the same
//! data and compare like with like.
//!
//! Not part of the main build: this crate is a workspace of its own (see `peers/README.md`).

pub mod cedar;
pub mod rego;

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

/// Every action denied: what a peer answers when it cannot even build its request.
fn all_denied(request: &CheckRequest) -> Effects {
    request
        .resources
        .iter()
        .map(|r| vec![false; r.actions.len()])
        .collect()
}
