//! The policy loader: any text as a policy file (YAML documents with CEL conditions) either loads
//! or is refused with errors, never a panic; a set that loads decides Checks and plans
//! PlanFilters for the kinds and actions the seeds use without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use verdict::request::{CheckRequest, Resource, ResourceCheck};

const KINDS: [&str; 4] = ["Doc", "Patient", "Observation", "Note"];
const ACTIONS: [&str; 4] = ["read", "search", "update", "delete"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(set) = verdict_fuzz::compile(text) else {
        return;
    };
    let principal = verdict_fuzz::principal();
    let request = CheckRequest {
        request_id: "fuzz".into(),
        principal: principal.clone(),
        resources: KINDS
            .iter()
            .map(|kind| ResourceCheck {
                resource: Resource {
                    kind: kind.to_string(),
                    id: "1".into(),
                    attr: json!({"practice_id": "7", "patient_id": "123", "a": "x", "b": 1,
                                 "celebrity": false, "signed": true, "tags": ["x"]}),
                },
                actions: ACTIONS.iter().map(|a| a.to_string()).collect(),
            })
            .collect(),
        context: verdict_fuzz::context(),
    };
    let results = verdict::engine::check(&set, &request);
    assert_eq!(results.len(), KINDS.len());
    for kind in KINDS {
        for action in ACTIONS {
            let request = verdict::plan::PlanRequest {
                principal: principal.clone(),
                kind: kind.into(),
                action: action.into(),
                context: verdict_fuzz::context(),
                known_attr: json!({}),
            };
            if let Ok(plan) = verdict::plan::plan(&set, &request) {
                verdict_fuzz::render_both(&plan.filter());
            }
        }
    }
});
