//! Principal selectors: which principals a rule applies to.
//!
//! Roles and capabilities are interned when the set loads: each selector holds the bits of the
//! ones it names, a request turns its principal's roles and capabilities into bits once
//! ([`PolicySet::principal_key`](super::PolicySet::principal_key)), and matching a rule is a few
//! word ANDs, not string comparisons per rule per request. Ids and client ids (rare in selectors)
//! are compared as strings.

use smallvec::SmallVec;

use super::index::FastMap;
use super::ANY;
use crate::policy;
use crate::request::Principal;

/// A set of interned names, as bits (two words inline: 128 names before any allocation).
pub type Bits = SmallVec<[u64; 2]>;

fn set_bit(bits: &mut Bits, id: u32) {
    let word = (id / 64) as usize;
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    bits[word] |= 1 << (id % 64);
}

fn intersects(a: &Bits, b: &Bits) -> bool {
    a.iter().zip(b.iter()).any(|(x, y)| x & y != 0)
}

/// Which principals a rule applies to: it applies when every selector of `all` matches (the
/// policy's and the rule's own). An empty `all` applies to every principal.
#[derive(Debug, Clone, Default)]
pub struct PrincipalMatcher {
    pub all: Vec<policy::PrincipalSelector>,
    /// `all`, interned (filled in once every rule is compiled).
    compiled: Vec<CompiledSelector>,
}

/// A selector with its roles and capabilities as bits.
#[derive(Debug, Clone, Default)]
struct CompiledSelector {
    /// `roles: ["*"]`.
    everyone: bool,
    roles: Bits,
    capabilities: Bits,
    ids: Vec<String>,
    clients: Vec<String>,
}

/// A principal as selectors see it: its roles and capabilities as bits.
pub struct PrincipalKey<'p> {
    principal: &'p Principal,
    roles: Bits,
    capabilities: Bits,
}

impl PrincipalMatcher {
    pub fn new(all: Vec<policy::PrincipalSelector>) -> PrincipalMatcher {
        PrincipalMatcher {
            all,
            compiled: Vec::new(),
        }
    }

    pub fn matches(&self, key: &PrincipalKey<'_>) -> bool {
        self.compiled.iter().all(|s| {
            s.everyone
                || intersects(&s.roles, &key.roles)
                || intersects(&s.capabilities, &key.capabilities)
                || s.ids.contains(&key.principal.id)
                || (!key.principal.client_id.is_empty()
                    && s.clients.contains(&key.principal.client_id))
        })
    }
}

/// The roles and capabilities some selector names, numbered.
#[derive(Debug, Default)]
pub struct Interned {
    roles: FastMap<String, u32>,
    capabilities: FastMap<String, u32>,
}

impl Interned {
    /// Numbers every role and capability the matchers name, and compiles the matchers.
    pub(super) fn build<'m>(matchers: impl Iterator<Item = &'m mut PrincipalMatcher>) -> Interned {
        let mut interned = Interned::default();
        let number = |map: &mut FastMap<String, u32>, name: &str| -> u32 {
            let next = map.len() as u32;
            *map.entry(name.to_string()).or_insert(next)
        };
        for matcher in matchers {
            matcher.compiled = matcher
                .all
                .iter()
                .map(|s| {
                    let mut compiled = CompiledSelector {
                        everyone: s.roles.iter().any(|r| r == ANY),
                        ids: s.ids.clone(),
                        clients: s.clients.clone(),
                        ..Default::default()
                    };
                    for role in s.roles.iter().filter(|r| *r != ANY) {
                        set_bit(&mut compiled.roles, number(&mut interned.roles, role));
                    }
                    for capability in &s.capabilities {
                        let id = number(&mut interned.capabilities, capability);
                        set_bit(&mut compiled.capabilities, id);
                    }
                    compiled
                })
                .collect();
        }
        interned
    }

    /// The principal's roles and capabilities as bits; names no selector uses are left out.
    pub fn key<'p>(&self, principal: &'p Principal) -> PrincipalKey<'p> {
        let bits = |map: &FastMap<String, u32>, names: &[String]| {
            let mut bits = Bits::new();
            for name in names {
                if let Some(id) = map.get(name.as_str()) {
                    set_bit(&mut bits, *id);
                }
            }
            bits
        };
        PrincipalKey {
            principal,
            roles: bits(&self.roles, &principal.roles),
            capabilities: bits(&self.capabilities, &principal.capabilities),
        }
    }
}

pub(super) fn same_selector(a: &policy::PrincipalSelector, b: &policy::PrincipalSelector) -> bool {
    a.roles == b.roles
        && a.capabilities == b.capabilities
        && a.ids == b.ids
        && a.clients == b.clients
        && a.derived_roles == b.derived_roles
}
