//! Search over stored entities: which stored subjects may do an action on a resource, which
//! stored resources a subject may do an action on, which actions a subject may do on a resource.
//! The answers are exactly Check's: every id listed would be allowed by a Check of it, and every
//! stored one left out would be denied.
//!
//! - **Subjects**: each stored principal of the type is decided, one decision each.
//! - **Resources**: planned once (PlanFilter, with the subject's stored data merged), and the plan
//!   evaluated over the stored rows of the kind: a filter match per row, no decision. Stored rows
//!   that violate the kind's schema are left out, as Check would deny them. Only when the set's
//!   rules cannot be planned (a condition on `R.id`, for one) are the stored resources decided one
//!   by one, in one Check.
//! - **Actions**: the kind's actions (the schema's, else those the rules name) decided in one
//!   Check.
//!
//! Decisions are bounded by `max_decisions` (a search that would take more is refused, never
//! truncated) and by the deadline.

use std::time::Instant;

use serde_json::Value as Json;

use crate::compile::PolicySet;
use crate::engine::{self, Limits};
use crate::plan::{self, Plan, PlanRequest};
use crate::policy::schema::ValidationMode;
use crate::request::{CheckRequest, Principal, Resource, ResourceCheck};

/// Why a search has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    #[error(
        "the search would take {needed} decisions, more than the {limit} one request may \
         (limits.max_decisions)"
    )]
    TooLarge { needed: usize, limit: usize },
    #[error("deadline exceeded while searching")]
    DeadlineExceeded,
}

/// Refuses a search that would take more decisions than one request may.
fn within(needed: usize, limit: usize) -> Result<(), SearchError> {
    if needed > limit {
        return Err(SearchError::TooLarge { needed, limit });
    }
    Ok(())
}

/// A search's answer: what matched, in the order the set stores them, and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub ids: Vec<String>,
    /// How many decisions it took (a planned resource search takes none).
    pub decisions: usize,
    /// A resource search answered by planning (false: decided one by one).
    pub planned: bool,
}

/// The stored principals of `principal_type` that may perform `action` on `resource`.
pub fn subjects(
    set: &PolicySet,
    principal_type: &str,
    action: &str,
    resource: &Resource,
    context: &Json,
    limits: &Limits,
    max_decisions: usize,
) -> Result<Found, SearchError> {
    let candidates: Vec<&str> = set
        .entities
        .principals_of_type(principal_type)
        .map(|p| p.id.as_str())
        .collect();
    within(candidates.len(), max_decisions)?;
    // One request, its principal's id changed per candidate.
    let mut request = CheckRequest {
        request_id: String::new(),
        principal: Principal::default(),
        resources: vec![ResourceCheck {
            resource: resource.clone(),
            actions: vec![action.to_string()],
        }],
        context: context.clone(),
    };
    let mut ids = Vec::new();
    for id in &candidates {
        request.principal.id.clear();
        request.principal.id.push_str(id);
        if allowed(set, &request, limits)?.first() == Some(&true) {
            ids.push(id.to_string());
        }
    }
    Ok(Found {
        ids,
        decisions: candidates.len(),
        planned: false,
    })
}

/// The stored resources of `kind` that `principal` may perform `action` on.
pub fn resources(
    set: &PolicySet,
    principal: &Principal,
    kind: &str,
    action: &str,
    context: &Json,
    limits: &Limits,
    max_decisions: usize,
) -> Result<Found, SearchError> {
    let stored = set.entities.resources_of_kind(kind);
    let request = PlanRequest {
        principal: principal.clone(),
        kind: kind.to_string(),
        action: action.to_string(),
        context: context.clone(),
        known_attr: Json::Null,
    };
    let plan = match plan::plan(set, &request) {
        Ok(plan) => plan,
        Err(_) => {
            return resources_decided(set, principal, kind, action, context, limits, max_decisions)
        }
    };
    let rejecting = set
        .request_schema()
        .is_some_and(|s| s.mode == ValidationMode::Reject);
    let mut ids = Vec::new();
    if plan != Plan::AlwaysDenied {
        let filter = plan.filter();
        for (i, resource) in stored.iter().enumerate() {
            if i % 1024 == 1023 && late(limits) {
                return Err(SearchError::DeadlineExceeded);
            }
            let fits = resource.fits_schema || !rejecting;
            if fits && filter.matches(&resource.attr) {
                ids.push(resource.id.clone());
            }
        }
    }
    Ok(Found {
        ids,
        decisions: 0,
        planned: true,
    })
}

/// Resource search by deciding every stored resource, for sets whose rules cannot be planned.
fn resources_decided(
    set: &PolicySet,
    principal: &Principal,
    kind: &str,
    action: &str,
    context: &Json,
    limits: &Limits,
    max_decisions: usize,
) -> Result<Found, SearchError> {
    let stored = set.entities.resources_of_kind(kind);
    within(stored.len(), max_decisions)?;
    let request = CheckRequest {
        request_id: String::new(),
        principal: principal.clone(),
        resources: stored
            .iter()
            .map(|r| ResourceCheck {
                resource: Resource {
                    kind: kind.to_string(),
                    id: r.id.clone(),
                    attr: Json::Null,
                },
                actions: vec![action.to_string()],
            })
            .collect(),
        context: context.clone(),
    };
    let allowed = allowed(set, &request, limits)?;
    let ids = stored
        .iter()
        .zip(allowed)
        .filter(|(_, allow)| *allow)
        .map(|(r, _)| r.id.clone())
        .collect();
    Ok(Found {
        ids,
        decisions: stored.len(),
        planned: false,
    })
}

/// The actions of the resource's kind that `principal` may perform on it.
pub fn actions(
    set: &PolicySet,
    principal: &Principal,
    resource: &Resource,
    context: &Json,
    limits: &Limits,
    max_decisions: usize,
) -> Result<Found, SearchError> {
    let actions: Vec<String> = set
        .kind(&resource.kind)
        .actions()
        .into_iter()
        .map(str::to_string)
        .collect();
    within(actions.len(), max_decisions)?;
    let request = CheckRequest {
        request_id: String::new(),
        principal: principal.clone(),
        resources: vec![ResourceCheck {
            resource: resource.clone(),
            actions: actions.clone(),
        }],
        context: context.clone(),
    };
    let allowed = allowed(set, &request, limits)?;
    let decisions = actions.len();
    let ids = actions
        .into_iter()
        .zip(allowed)
        .filter(|(_, allow)| *allow)
        .map(|(a, _)| a)
        .collect();
    Ok(Found {
        ids,
        decisions,
        planned: false,
    })
}

/// Whether each (resource, action) of the request is allowed, in order.
fn allowed(
    set: &PolicySet,
    request: &CheckRequest,
    limits: &Limits,
) -> Result<Vec<bool>, SearchError> {
    let results =
        engine::check_with(set, request, limits).map_err(|_| SearchError::DeadlineExceeded)?;
    Ok(results
        .iter()
        .flat_map(|r| r.actions.iter().map(|(_, d)| d.is_allow()))
        .collect())
}

fn late(limits: &Limits) -> bool {
    limits.deadline.is_some_and(|d| Instant::now() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::{Path, PathBuf};

    const SET: &str = r#"
schema:
  name: records
  principal:
    roles: [member]
    attributes: {role: string?, department: string?}
  kinds:
    record:
      actions: [view, edit]
      attributes: {owner: string, department: string}
---
agent_policy:
  name: members
  principals: {roles: [member]}
  rules:
    - name: view-own-department
      effect: allow
      actions: [view]
      kinds: [record]
      when: has(P.attr.department) && R.attr.department == P.attr.department
    - name: edit-own
      effect: allow
      actions: [edit]
      kinds: [record]
      when: R.attr.owner == P.id
---
principals:
  entries:
    - {id: alice, roles: [member], attr: {department: Sales}}
    - {id: bob, roles: [member], attr: {department: Legal}}
---
resources:
  kind: record
  entries:
    - {id: "1", attr: {owner: alice, department: Sales}}
    - {id: "2", attr: {owner: bob, department: Sales}}
    - {id: "3", attr: {owner: bob, department: Legal}}
    # No department: every Check of it is denied (the schema requires one), so no search lists it.
    - {id: "4", attr: {owner: alice}}
"#;

    fn set() -> PolicySet {
        let files = vec![(PathBuf::from("set.yaml"), SET.to_string())];
        let source = crate::policy::parse_files(Path::new("p"), &files).unwrap();
        PolicySet::compile(&source).unwrap()
    }

    fn principal(id: &str) -> Principal {
        Principal {
            id: id.into(),
            ..Principal::default()
        }
    }

    #[test]
    fn each_search_lists_what_check_allows_from_stored_data() {
        let set = set();
        let limits = Limits::default();
        let found = resources(
            &set,
            &principal("alice"),
            "record",
            "view",
            &Json::Null,
            &limits,
            10,
        )
        .unwrap();
        assert_eq!(found.ids, ["1", "2"]);
        assert!(found.planned);
        let found = resources(
            &set,
            &principal("bob"),
            "record",
            "edit",
            &Json::Null,
            &limits,
            10,
        )
        .unwrap();
        assert_eq!(found.ids, ["2", "3"]);
        let found = resources(
            &set,
            &principal("alice"),
            "record",
            "edit",
            &Json::Null,
            &limits,
            10,
        )
        .unwrap();
        assert_eq!(found.ids, ["1"], "record 4 violates the schema");
        let record = Resource {
            kind: "record".into(),
            id: "3".into(),
            attr: Json::Null,
        };
        let found = subjects(&set, "user", "view", &record, &Json::Null, &limits, 10).unwrap();
        assert_eq!(found.ids, ["bob"]);
        assert_eq!(found.decisions, 2);
        let found = actions(&set, &principal("bob"), &record, &Json::Null, &limits, 10).unwrap();
        assert_eq!(found.ids, ["edit", "view"]);
        // An unknown subject has no stored roles: nothing.
        let found = actions(&set, &principal("eve"), &record, &Json::Null, &limits, 10).unwrap();
        assert!(found.ids.is_empty());
        // Every answer agrees with Check on every stored resource.
        for who in ["alice", "bob", "eve"] {
            for action in ["view", "edit"] {
                let listed = resources(
                    &set,
                    &principal(who),
                    "record",
                    action,
                    &json!({}),
                    &limits,
                    10,
                )
                .unwrap()
                .ids;
                for id in ["1", "2", "3", "4"] {
                    let request = CheckRequest {
                        principal: principal(who),
                        resources: vec![ResourceCheck {
                            resource: Resource {
                                kind: "record".into(),
                                id: id.into(),
                                attr: Json::Null,
                            },
                            actions: vec![action.into()],
                        }],
                        ..CheckRequest::default()
                    };
                    let allowed = engine::check(&set, &request)[0].actions[0].1.is_allow();
                    assert_eq!(
                        allowed,
                        listed.iter().any(|l| l == id),
                        "{who} {action} {id}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_search_over_the_limit_is_refused_not_truncated() {
        let set = set();
        let record = Resource {
            kind: "record".into(),
            id: "3".into(),
            attr: Json::Null,
        };
        let error = subjects(
            &set,
            "user",
            "view",
            &record,
            &Json::Null,
            &Limits::default(),
            1,
        )
        .unwrap_err();
        assert_eq!(
            error,
            SearchError::TooLarge {
                needed: 2,
                limit: 1
            }
        );
    }
}
