//! Partial evaluation (PlanFilter): any CEL condition, in an allow rule (action `read`) and in a
//! deny rule next to an unconditional allow (action `delete`), either does not compile, cannot be
//! planned (an error), or plans to a filter that is never wider than Check: a row the filter
//! selects is one Check allows (rows whose attribute types do not fit the condition aside: see
//! below). The filter renders as SQL in both dialects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict::plan::{Plan, PlanRequest};
use verdict::request::{CheckRequest, Resource, ResourceCheck};

fuzz_target!(|data: &[u8]| {
    let Ok(condition) = std::str::from_utf8(data) else {
        return;
    };
    // A JSON string is a YAML double-quoted scalar: the condition reaches CEL as written.
    let when = serde_json::to_string(condition).unwrap();
    let text = format!(
        "agent_policy:\n  name: fuzz\n  principals: {{roles: [clerk]}}\n  rules:\n    \
         - {{name: conditional-allow, effect: allow, actions: [read], kinds: [Doc], when: {when}}}\n    \
         - {{name: allow-all, effect: allow, actions: [delete], kinds: [Doc]}}\n    \
         - {{name: conditional-deny, effect: deny, actions: [delete], kinds: [Doc], when: {when}}}\n"
    );
    let Some(set) = verdict_fuzz::compile(&text) else {
        return;
    };
    let principal = verdict_fuzz::principal();
    for action in ["read", "delete"] {
        let planned = verdict::plan::plan(
            &set,
            &PlanRequest {
                principal: principal.clone(),
                kind: "Doc".into(),
                action: action.into(),
                context: verdict_fuzz::context(),
                known_attr: serde_json::json!({}),
            },
        );
        let filter = match &planned {
            Ok(plan) => plan.filter(),
            Err(_) => continue,
        };
        verdict_fuzz::render_both(&filter);
        for row in verdict_fuzz::rows() {
            let request = CheckRequest {
                request_id: "fuzz".into(),
                principal: principal.clone(),
                resources: vec![ResourceCheck {
                    resource: Resource {
                        kind: "Doc".into(),
                        id: "d-1".into(),
                        attr: row.clone(),
                    },
                    actions: vec![action.into()],
                }],
                context: verdict_fuzz::context(),
            };
            let decision = &verdict::engine::check(&set, &request)[0].actions[0].1;
            // A row whose attribute has another type than the condition expects (`"x" in
            // R.attr.a` on a string) makes Check fail (deny) where the filter, which assumes
            // the expected type, does not: type-confused rows are the schema's to refuse (typed
            // policies), not the planner's. Absent attributes are the planner's, and checked.
            let type_confused = decision.evaluation_error
                && !decision.reason.contains("missing attribute")
                && !decision.reason.contains("no such key");
            if filter.matches(&row) && !decision.is_allow() && !type_confused {
                panic!(
                    "PlanFilter wider than Check for {condition:?}, {action}: the filter {} \
                     ({planned:?}) selects {row} which Check denies: {}",
                    filter, decision.reason
                );
            }
            if matches!(planned, Ok(Plan::AlwaysAllowed)) {
                assert!(decision.is_allow(), "ALWAYS_ALLOWED but Check denies {row}");
            }
        }
    }
});
