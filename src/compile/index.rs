//! The (kind, action) -> rule ids index, precomputed for every kind and action any policy names,
//! deny rules first, so that a lookup on the request path is two hash probes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{CompiledRule, ANY};
use crate::policy::Effect;
use crate::schema::{KindSchema, Schema};

/// The maps the request path looks kinds and actions up in. Their keys come from the policies,
/// not from requests, so a fast hash that does not resist crafted collisions is safe.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Rule ids for one kind: per action, and for actions no rule names explicitly; and the kind's
/// schema, when the set declares one.
#[derive(Debug, Default)]
pub(super) struct KindIndex {
    pub(super) by_action: FastMap<String, RuleIds>,
    pub(super) other_actions: RuleIds,
    pub(super) schema: Option<Arc<KindSchema>>,
}

/// The ids of the rules for one (kind, action): deny rules first, then allow rules, each group in
/// declaration order; `denies` is where the allow rules start.
#[derive(Debug, Default)]
pub(super) struct RuleIds {
    pub(super) ids: Box<[u32]>,
    pub(super) denies: usize,
}

/// Builds the (kind, action) -> rule ids index. For every kind and action named anywhere (and,
/// with a schema, every declared kind and action), the list is precomputed from exact and wildcard
/// rules, so a lookup is two hash probes.
pub(super) fn build_index(
    rules: &[CompiledRule],
    schema: Option<&Schema>,
) -> (FastMap<String, KindIndex>, KindIndex) {
    let mut kinds: BTreeSet<&str> = BTreeSet::new();
    let mut actions: BTreeSet<&str> = BTreeSet::new();
    if let Some(schema) = schema {
        for (name, kind) in &schema.kinds {
            kinds.insert(name);
            actions.extend(kind.actions.iter().map(String::as_str));
        }
    }
    for rule in rules {
        kinds.extend(rule.kinds.iter().map(String::as_str).filter(|k| *k != ANY));
        actions.extend(
            rule.actions
                .iter()
                .map(String::as_str)
                .filter(|a| *a != ANY),
        );
    }
    let select = |kind: Option<&str>, action: Option<&str>| -> RuleIds {
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
        let mut denies = 0;
        for effect in [Effect::Deny, Effect::Allow] {
            ids.extend(
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.effect == effect && applies(r))
                    .map(|(i, _)| i as u32),
            );
            if effect == Effect::Deny {
                denies = ids.len();
            }
        }
        RuleIds {
            ids: ids.into_boxed_slice(),
            denies,
        }
    };
    let index_for = |kind: Option<&str>| KindIndex {
        by_action: actions
            .iter()
            .map(|a| (a.to_string(), select(kind, Some(a))))
            .collect(),
        other_actions: select(kind, None),
        schema: kind.and_then(|k| schema?.kind(k)).cloned(),
    };
    let by_kind = kinds
        .iter()
        .map(|k| (k.to_string(), index_for(Some(k))))
        .collect();
    (by_kind, index_for(None))
}
