//! The bundled clinic policies, decided through the real gRPC server: every case of
//! tests/scenarios/clinic.yaml, plus request batching and the response envelope.
mod common;

use std::collections::BTreeMap;

use serde::Deserialize;
use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};
use verdict::server::proto::{self, Effect};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenarios {
    principals: BTreeMap<String, Principal>,
    resources: BTreeMap<String, Resource>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: String,
    resource: String,
    expect: BTreeMap<String, String>,
    #[serde(default)]
    rules: BTreeMap<String, String>,
    #[serde(default)]
    reasons: BTreeMap<String, String>,
}

fn scenarios() -> Scenarios {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios/clinic.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).expect("scenario file parses")
}

fn effect_name(effect: i32) -> &'static str {
    match Effect::try_from(effect) {
        Ok(Effect::Allow) => "allow",
        Ok(Effect::Deny) => "deny",
        _ => "unspecified",
    }
}

#[tokio::test]
async fn every_clinic_scenario_decides_as_expected_over_grpc() {
    let server = common::TestServer::start(&common::bundled_policies()).await;
    let mut client = server.client().await;
    let scenarios = scenarios();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &scenarios.cases {
        let principal = scenarios
            .principals
            .get(&case.principal)
            .unwrap_or_else(|| panic!("{}: unknown principal", case.name));
        let resource = scenarios
            .resources
            .get(&case.resource)
            .unwrap_or_else(|| panic!("{}: unknown resource", case.name));
        let actions: Vec<String> = case.expect.keys().cloned().collect();
        let request = CheckRequest {
            request_id: case.name.clone(),
            principal: principal.clone(),
            resources: vec![ResourceCheck {
                resource: resource.clone(),
                actions: actions.clone(),
            }],
            context: serde_json::Value::Null,
        };
        let response = client
            .check(verdict::cli::to_proto(&request))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.request_id, case.name);
        assert_eq!(response.results.len(), 1);
        let result = &response.results[0];
        for action in &actions {
            checked += 1;
            let Some(decision) = result.actions.get(action) else {
                failures.push(format!("{}: {action}: no decision", case.name));
                continue;
            };
            let got = effect_name(decision.effect);
            let want = &case.expect[action];
            if got != want {
                failures.push(format!(
                    "{}: {action}: expected {want}, got {got} ({})",
                    case.name, decision.reason
                ));
            }
            if decision.reason.is_empty() {
                failures.push(format!("{}: {action}: empty reason", case.name));
            }
            if let Some(rule) = case.rules.get(action) {
                let got_rule = format!("{}/{}", decision.policy, decision.rule);
                if &got_rule != rule {
                    failures.push(format!(
                        "{}: {action}: expected rule {rule}, got {got_rule} ({})",
                        case.name, decision.reason
                    ));
                }
            }
            if let Some(reason) = case.reasons.get(action) {
                if !decision.reason.contains(reason.as_str()) {
                    failures.push(format!(
                        "{}: {action}: reason {:?} lacks {reason:?}",
                        case.name, decision.reason
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} decisions wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 90, "only {checked} decisions checked");
}

#[tokio::test]
async fn a_batch_answers_every_resource_in_order_with_the_policy_version() {
    let server = common::TestServer::start(&common::bundled_policies()).await;
    let mut client = server.client().await;
    let s = scenarios();
    let names = ["patient-456", "patient-123", "spaceship", "celebrity-789"];
    let request = CheckRequest {
        request_id: "batch-1".into(),
        principal: s.principals["dr-house"].clone(),
        resources: names
            .iter()
            .map(|n| ResourceCheck {
                resource: s.resources[*n].clone(),
                actions: vec!["read".into(), "update".into()],
            })
            .collect(),
        context: serde_json::json!({"purpose_of_use": "TREAT"}),
    };
    let response = client
        .check(verdict::cli::to_proto(&request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.request_id, "batch-1");
    assert_eq!(response.policy_version, server.store.current().version);
    assert_eq!(response.policy_version.len(), 16);
    let ids: Vec<&str> = response
        .results
        .iter()
        .map(|r| r.resource.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids, ["456", "123", "s1", "789"]);
    let effects: Vec<(&str, &str)> = response
        .results
        .iter()
        .map(|r| {
            (
                effect_name(r.actions["read"].effect),
                effect_name(r.actions["update"].effect),
            )
        })
        .collect();
    assert_eq!(
        effects,
        [
            ("deny", "deny"),
            ("allow", "allow"),
            ("deny", "deny"),
            ("deny", "deny")
        ]
    );
}

#[tokio::test]
async fn struct_numbers_are_doubles_and_compare_with_int_literals() {
    // A policy comparing a Struct number (always a double on the wire) with an int literal.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("billing.yaml"),
        "agent_policy:\n  name: billing\n  principals: {roles: [clerk]}\n  rules:\n    - name: large-invoices\n      effect: allow\n      actions: [approve]\n      kinds: [Invoice]\n      when: R.attr.amount >= 100\n",
    )
    .unwrap();
    let server = common::TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    for (amount, want) in [(100.0, "allow"), (99.5, "deny"), (250.0, "allow")] {
        let request = CheckRequest {
            principal: Principal {
                roles: vec!["clerk".into()],
                ..Default::default()
            },
            resources: vec![ResourceCheck {
                resource: Resource {
                    kind: "Invoice".into(),
                    id: "i".into(),
                    attr: serde_json::json!({"amount": amount}),
                },
                actions: vec!["approve".into()],
            }],
            ..Default::default()
        };
        let response = client
            .check(verdict::cli::to_proto(&request))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            effect_name(response.results[0].actions["approve"].effect),
            want,
            "amount {amount}"
        );
    }
}

#[tokio::test]
async fn bad_requests_get_invalid_argument_with_a_clear_message() {
    let limits = verdict::server::convert::Limits {
        max_resources: 3,
        ..Default::default()
    };
    let server = common::TestServer::start_with(&common::bundled_policies(), limits).await;
    let mut client = server.client().await;
    let resource = |kind: &str, actions: &[&str]| proto::ResourceCheck {
        resource: Some(proto::Resource {
            kind: kind.into(),
            id: "x".into(),
            attr: None,
        }),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    };
    let cases = vec![
        (vec![], "at least one resource"),
        (
            vec![resource("", &["read"])],
            "resources[0].resource.kind must not be empty",
        ),
        (
            vec![resource("Patient", &[])],
            "resources[0].actions: at least one action",
        ),
        (
            vec![resource("Patient", &["read", ""])],
            "resources[0].actions[1] must not be empty",
        ),
        (
            vec![resource("Patient", &["read"]); 4],
            "4 resources exceed the limit of 3",
        ),
        (
            vec![proto::ResourceCheck {
                resource: None,
                actions: vec!["read".into()],
            }],
            "resources[0].resource is required",
        ),
    ];
    for (resources, message) in cases {
        let status = client
            .check(proto::CheckRequest {
                resources,
                ..Default::default()
            })
            .await
            .expect_err(message);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{message}");
        assert!(
            status.message().contains(message),
            "{:?} lacks {message:?}",
            status.message()
        );
    }
}
