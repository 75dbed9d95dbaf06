//! Principal selectors: which principals a rule applies to.

use super::ANY;
use crate::policy;
use crate::request::Principal;

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

pub(super) fn selector_matches(s: &policy::PrincipalSelector, p: &Principal) -> bool {
    s.roles
        .iter()
        .any(|r| r == ANY || p.roles.iter().any(|pr| pr == r))
        || s.capabilities
            .iter()
            .any(|c| p.capabilities.iter().any(|pc| pc == c))
        || s.ids.contains(&p.id)
        || (!p.client_id.is_empty() && s.clients.contains(&p.client_id))
}

pub(super) fn same_selector(a: &policy::PrincipalSelector, b: &policy::PrincipalSelector) -> bool {
    a.roles == b.roles
        && a.capabilities == b.capabilities
        && a.ids == b.ids
        && a.clients == b.clients
        && a.derived_roles == b.derived_roles
}
