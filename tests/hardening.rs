//! The attacks of the hardening review, each through the real gRPC server on the bundled clinic
//! policies: what an attacker or a careless caller sends, and the deny or clear error it must get.
mod common;

use common::TestServer;
use serde_json::{json, Value as Json};
use verdict::server::proto;

fn check_request(value: Json) -> proto::CheckRequest {
    common::check_message(value)
}

/// A physician of practice 7 whose only scope is the SMART launch patient's observations.
fn launched_physician(launch_patient: &str) -> Json {
    json!({
        "id": "dr-launch", "roles": ["physician"], "scopes": ["patient/Observation.read"],
        "attr": {"practice_id": "7", "patient": launch_patient},
    })
}

/// A `patient/` scope with launch patient "" once covered every resource whose patient is "":
/// an empty id is no patient, on either side. (The clinic's schema refuses empty ids before any
/// rule; this runs on a copy whose schema allows them, so that the scope gate itself is tested.)
#[tokio::test]
async fn a_patient_scope_needs_a_patient_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::bundled_policies().join("clinic")).unwrap() {
        let entry = entry.unwrap();
        if verdict::policy::is_test_suite(&entry.path()) {
            continue; // its empty-id cases expect the schema's refusal
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        std::fs::write(
            dir.path().join(entry.file_name()),
            text.replace("non_empty: true", "non_empty: false"),
        )
        .unwrap();
    }
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let read = |launch: &str, owner: &str| {
        let request = check_request(json!({
            "principal": launched_physician(launch),
            "resources": [{"resource": {"kind": "Observation", "id": "obs-1",
                           "attr": {"practice_id": "7", "patient_id": owner}},
                           "actions": ["read"]}],
        }));
        let mut client = client.clone();
        async move {
            let response = client.check(request).await.unwrap().into_inner();
            response.results[0].actions["read"].clone()
        }
    };
    let allowed = read("123", "123").await;
    assert_eq!(allowed.effect, proto::Effect::Allow as i32, "{allowed:?}");
    for (launch, owner) in [("", ""), ("123", ""), ("", "123")] {
        let decision = read(launch, owner).await;
        assert_eq!(
            decision.effect,
            proto::Effect::Deny as i32,
            "launch {launch:?}, resource {owner:?}: {decision:?}"
        );
        assert_eq!(decision.rule, "scope-gate", "{decision:?}");
    }

    // PlanFilter agrees: no launch patient, no rows; with one, never the rows of patient "".
    let plan = |launch: &str| proto::PlanFilterRequest {
        principal: check_request(json!({"principal": launched_physician(launch), "resources": []}))
            .principal,
        resource_kind: "Observation".into(),
        action: "read".into(),
        ..Default::default()
    };
    let empty = client.plan_filter(plan("")).await.unwrap().into_inner();
    assert_eq!(
        empty.kind,
        proto::PlanKind::AlwaysDenied as i32,
        "{empty:?}"
    );
    let launched = client.plan_filter(plan("123")).await.unwrap().into_inner();
    assert_eq!(launched.kind, proto::PlanKind::Conditional as i32);
    let filter = format!("{:?}", launched.filter);
    assert!(filter.contains("\"123\""), "{filter}");
}
