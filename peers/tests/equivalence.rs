//! Verdict, Cedar and Rego give the same decision on every request of a corpus: each
//! (principal, resource, action) of `policies/clinic/clinic_test.yaml`, then every fixture
//! principal (plus a few with more SMART scope forms) x every fixture resource x the actions
//! read, search, create, update, delete and sign. See README.md for what the translations change.

use serde_json::json;
use verdict::engine;
use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};
use verdict::suite::ExpectedEffect;
use verdict_peers::cedar::{Cedar, ForbidErrors};
use verdict_peers::corpus::{corpus, fixtures, ACTIONS};
use verdict_peers::rego::Rego;
use verdict_peers::rvm::Rvm;
use verdict_peers::{verdict_effects, verdict_policies};

#[test]
fn verdict_cedar_rego_and_the_rvm_agree_on_every_decision() {
    let set = verdict_policies();
    let cedar = Cedar::clinic();
    let mut rego = Rego::clinic();
    let mut rvm = Rvm::clinic();
    let mut decisions = 0;
    let mut allows = 0;
    let mut disagreements = Vec::new();
    let mut plain_cedar_differs = Vec::new();
    for (name, request) in corpus() {
        let verdict = engine::check(&set, &request);
        let by_verdict = verdict_effects(&set, &request);
        let by_cedar = cedar.check(&request);
        let by_plain_cedar = cedar.check_with(&request, ForbidErrors::Skip);
        let by_rego = rego.check(&request);
        let by_rvm = rvm.check(&request);
        let actions = &request.resources[0].actions;
        for (i, action) in actions.iter().enumerate() {
            let (v, c, r, m) = (
                by_verdict[0][i],
                by_cedar[0][i],
                by_rego[0][i],
                by_rvm[0][i],
            );
            decisions += 1;
            allows += usize::from(v);
            if v != c || v != r || v != m {
                disagreements.push(format!(
                    "{name} / {action}: verdict {v}, cedar {c}, rego {r}, rvm {m} ({})",
                    verdict[0].actions[i].1.reason
                ));
            }
            if by_plain_cedar[0][i] != v {
                plain_cedar_differs.push((
                    name.clone(),
                    action.clone(),
                    verdict[0].actions[i].1.clone(),
                ));
            }
        }
    }
    println!(
        "corpus: {decisions} decisions ({allows} allow, {} deny); plain Cedar (erroring forbids skipped) differs on {}",
        decisions - allows,
        plain_cedar_differs.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} of {decisions} decisions differ:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    // The corpus is not trivially one-sided.
    assert!(
        allows > 100 && decisions - allows > 100,
        "{allows} allows of {decisions}"
    );
    // Where plain Cedar differs (nowhere, since the policies guard what they read with `has` and
    // the entities conform to the schema), it is only because a forbid errored: Verdict denied,
    // failing closed on an evaluation error, and Cedar skipped the forbid and allowed.
    for (name, action, decision) in &plain_cedar_differs {
        assert!(
            !decision.is_allow() && decision.evaluation_error,
            "{name} / {action}: plain Cedar differs without an evaluation error: {}",
            decision.reason
        );
    }
}

#[test]
fn the_cedar_policies_pass_cedars_strict_validation_against_the_schema() {
    // Every attribute a policy reads is declared, of the type it is used as, and guarded with
    // `has` where optional: on entities that conform to the schema no policy can error.
    let cedar = Cedar::clinic();
    let validator = cedar_policy::Validator::new(cedar.schema().clone());
    let result = validator.validate(cedar.policies(), cedar_policy::ValidationMode::Strict);
    let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn verdict_meets_the_suite_expectations_the_corpus_starts_from() {
    let set = verdict_policies();
    let fixtures = fixtures();
    for case in &fixtures.tests {
        let request = fixtures.check_request(case).unwrap();
        let effects = verdict_effects(&set, &request);
        for (i, action) in request.resources[0].actions.iter().enumerate() {
            let expected = case.expect[action] == ExpectedEffect::Allow;
            assert_eq!(effects[0][i], expected, "{} / {action}", case.name);
        }
    }
}

#[test]
fn granular_scope_parameters_agree_in_rego_and_are_not_translated_to_cedar() {
    let set = verdict_policies();
    let cedar = Cedar::clinic();
    let mut rego = Rego::clinic();
    let mut rvm = Rvm::clinic();
    let app = Principal {
        id: "alice".into(),
        roles: vec!["patient".into()],
        scopes: vec!["patient/Observation.rs?category=laboratory".into()],
        attr: json!({"patient_id": "123", "patient": "123"}),
        ..Default::default()
    };
    let observation = |category: &str| ResourceCheck {
        resource: Resource {
            kind: "Observation".into(),
            id: "o1".into(),
            attr: json!({"practice_id": "7", "patient_id": "123", "category": category}),
        },
        actions: vec!["read".into(), "update".into()],
    };
    let request = CheckRequest {
        principal: app,
        resources: vec![observation("laboratory"), observation("vital-signs")],
        ..Default::default()
    };
    let expected = vec![vec![true, false], vec![false, false]];
    assert_eq!(verdict_effects(&set, &request), expected);
    assert_eq!(rego.check(&request), expected);
    assert_eq!(rvm.check(&request), expected);
    // Documented difference: Cedar drops scopes with parameters, so it denies.
    assert_eq!(cedar.check(&request), vec![vec![false, false]; 2]);
}

#[test]
fn a_batch_request_gets_the_same_answers_as_one_request_per_resource() {
    let set = verdict_policies();
    let cedar = Cedar::clinic();
    let mut rego = Rego::clinic();
    let mut rvm = Rvm::clinic();
    let fixtures = fixtures();
    let principal = fixtures.principals["dr-house"].clone();
    let request = CheckRequest {
        principal,
        resources: fixtures
            .resources
            .values()
            .map(|resource| ResourceCheck {
                resource: resource.clone(),
                actions: ACTIONS.iter().map(|a| a.to_string()).collect(),
            })
            .collect(),
        ..Default::default()
    };
    let by_verdict = verdict_effects(&set, &request);
    assert_eq!(cedar.check(&request), by_verdict);
    assert_eq!(rego.check(&request), by_verdict);
    assert_eq!(rvm.check(&request), by_verdict);
    assert!(by_verdict.iter().flatten().any(|&allow| allow));
}
