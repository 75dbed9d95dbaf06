//! The bundled clinic policies, decided through the real gRPC server: every case of the clinic
//! suite (policies/clinic/clinic_test.yaml), plus request batching and the response envelope.
use crate::common;

use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};
use verdict::server::proto::{self, Effect};
use verdict::suite::{self, ExpectedEffect, Observed, Suite};

fn scenarios() -> Suite {
    suite::load(&common::bundled_policies().join("clinic/clinic_test.yaml"))
        .expect("the clinic suite parses")
}

fn effect_name(effect: i32) -> &'static str {
    match Effect::try_from(effect) {
        Ok(Effect::Allow) => "allow",
        Ok(Effect::Deny) => "deny",
        _ => "unspecified",
    }
}

#[tokio::test]
async fn every_clinic_suite_case_decides_as_expected_over_grpc() {
    let server = common::TestServer::start(&common::bundled_policies()).await;
    let mut client = server.client().await;
    let suite = scenarios();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &suite.tests {
        let request = suite.check_request(case).unwrap();
        let response = client
            .check(verdict::server::convert::to_proto(&request))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.request_id, case.name);
        assert_eq!(response.results.len(), 1);
        assert_eq!(
            response.results[0].actions.len(),
            case.expect.len(),
            "{}: one decision per action asked",
            case.name
        );
        for action in case.expect.keys() {
            checked += 1;
            let Some(d) = response.results[0].actions.get(action) else {
                failures.push(format!("{}: {action}: no decision", case.name));
                continue;
            };
            let effect = match Effect::try_from(d.effect) {
                Ok(Effect::Allow) => ExpectedEffect::Allow,
                Ok(Effect::Deny) => ExpectedEffect::Deny,
                _ => panic!("{}: {action}: unspecified effect", case.name),
            };
            assert!(
                !d.reason.is_empty(),
                "{}: {action}: empty reason",
                case.name
            );
            let observed = Observed {
                effect,
                policy: d.policy.clone(),
                rule: d.rule.clone(),
                reason: d.reason.clone(),
            };
            if let Some(diff) = case.expectation(action).check(&observed) {
                failures.push(format!("{} / {action}\n{diff}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} decisions wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 0, "the suite has cases");
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
        .check(verdict::server::convert::to_proto(&request))
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
                id: "c-1".into(),
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
            .check(verdict::server::convert::to_proto(&request))
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
    let limits = verdict::server::Limits {
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
