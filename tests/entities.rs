//! Entity data (`principals` and `resources` documents) through the real daemon: merged into gRPC
//! Check and PlanFilter requests that name a stored principal or resource, with the stored
//! attribute winning over the request's; reloaded with the policies as one version; refused at
//! load when it does not fit the schema.

use crate::common;

use std::path::Path;

use common::{check_message, Daemon};
use serde_json::json;
use verdict::server::proto::authorizer_client::AuthorizerClient;
use verdict::server::proto::{self, Effect, PlanKind};

fn search_example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/authzen/search")
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

async fn effect(
    url: &str,
    principal: serde_json::Value,
    record: &str,
    action: &str,
) -> (Effect, String) {
    let mut client = AuthorizerClient::connect(url.to_string()).await.unwrap();
    let request = check_message(json!({
        "principal": principal,
        "resources": [{"resource": {"kind": "record", "id": record}, "actions": [action]}],
    }));
    let answer = client.check(request).await.unwrap().into_inner();
    let decision = answer.results[0].actions[action].clone();
    (decision.effect(), answer.policy_version)
}

#[tokio::test]
async fn grpc_check_and_plan_use_the_stored_data_and_stored_attributes_win() {
    let daemon = Daemon::start(&search_example(), &[]);
    // alice is a stored manager: she views record 118 (Accounting, felix's) with nothing but her id.
    let (allowed, _) = effect(&daemon.url(), json!({"id": "alice"}), "118", "view").await;
    assert_eq!(allowed, Effect::Allow);
    // A request cannot talk its way into another department or role: the stored values win.
    let (claimed, _) = effect(
        &daemon.url(),
        json!({"id": "bob", "attr": {"role": "manager", "department": "Accounting"}}),
        "118",
        "view",
    )
    .await;
    assert_eq!(claimed, Effect::Deny);
    // Nor may it change what a stored record is.
    let mut client = AuthorizerClient::connect(daemon.url()).await.unwrap();
    let request = check_message(json!({
        "principal": {"id": "bob"},
        "resources": [{"resource": {"kind": "record", "id": "118", "attr": {"title": "x", "owner": "bob", "department": "Legal"}},
                       "actions": ["delete"]}],
    }));
    let answer = client.check(request).await.unwrap().into_inner();
    assert_eq!(answer.results[0].actions["delete"].effect(), Effect::Deny);
    // PlanFilter plans with the stored principal: bob's own records and his department's.
    let plan = client
        .plan_filter(proto::PlanFilterRequest {
            principal: Some(proto::Principal {
                id: "bob".into(),
                ..Default::default()
            }),
            resource_kind: "record".into(),
            action: "view".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plan.kind(), PlanKind::Conditional);
    let filter = format!("{:?}", plan.filter);
    assert!(
        filter.contains("Legal") && filter.contains("bob"),
        "{filter}"
    );
}

#[tokio::test]
async fn stored_data_reloads_with_the_policies_as_one_version() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&search_example(), dir.path());
    // Its suite pins erin's denial: without it, the reload gate has nothing to hold the push to.
    std::fs::remove_file(dir.path().join("search_test.yaml")).unwrap();
    let daemon = Daemon::start(dir.path(), &["--no-watch", "--reload-poll-secs", "0"]);
    let (before, version) = effect(&daemon.url(), json!({"id": "erin"}), "118", "view").await;
    assert_eq!(before, Effect::Deny);
    // erin becomes a manager: only the data changes.
    let entities = dir.path().join("entities.yaml");
    let text = std::fs::read_to_string(&entities).unwrap();
    let promoted = text.replace(
        "{id: erin, roles: [staff], attr: {role: employee,",
        "{id: erin, roles: [staff], attr: {role: manager,",
    );
    assert_ne!(text, promoted);
    std::fs::write(&entities, promoted).unwrap();
    daemon.signal("HUP");
    daemon
        .wait_metric("verdict_policy_reloads_total{result=\"ok\"}", |n| n == 1.0)
        .await;
    let (after, new_version) = effect(&daemon.url(), json!({"id": "erin"}), "118", "view").await;
    assert_eq!(after, Effect::Allow);
    assert_ne!(
        version, new_version,
        "the data is part of the set's version"
    );
    // Data that does not fit the schema is refused, and the last good set stays.
    std::fs::write(
        dir.path().join("more.yaml"),
        "resources:\n  kind: record\n  entries:\n    - {id: \"121\", attr: {title: t, department: Legal, owner: 7}}\n",
    )
    .unwrap();
    daemon.signal("HUP");
    daemon
        .wait_metric("verdict_policy_reloads_total{result=\"failed\"}", |n| {
            n == 1.0
        })
        .await;
    let (still, still_version) = effect(&daemon.url(), json!({"id": "erin"}), "118", "view").await;
    assert_eq!((still, still_version), (Effect::Allow, new_version));
}

#[test]
fn validate_names_the_file_and_line_of_bad_stored_data() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&search_example(), dir.path());
    std::fs::write(
        dir.path().join("more.yaml"),
        "principals:\n  entries:\n    - {id: zoe, roles: [staf], attr: {role: boss, department: Sales}}\n    - {id: alice}\n---\nresources:\n  kind: recrod\n  entries: []\n",
    )
    .unwrap();
    let output = std::process::Command::new(common::BIN)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    for expected in [
        "more.yaml:3: error: principal \"zoe\": P.attr.role must be one of",
        "more.yaml:3: error: principal \"zoe\": role \"staf\" is not declared in the schema (did you mean \"staff\"?)",
        "more.yaml:4: error: principal \"alice\" is stored twice",
        "more.yaml:6: error: resources: kind \"recrod\" is not declared in the schema (did you mean \"record\"?)",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in:\n{said}");
    }
}
