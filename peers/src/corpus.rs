//! The requests every peer must decide as Verdict does: each (principal, resource, action) of
//! `policies/clinic/clinic_test.yaml`, then every fixture principal (plus a few with more SMART
//! scope forms) x every fixture resource x the actions read, search, create, update, delete and
//! sign. Shared by the in-process equivalence test and the over-the-wire bench (Cerbos).

use std::collections::BTreeMap;

use serde_json::json;
use verdict::request::{CheckRequest, Principal, Resource, ResourceCheck};
use verdict::suite;

use crate::repository;

pub const ACTIONS: [&str; 6] = ["read", "search", "create", "update", "delete", "sign"];

pub fn fixtures() -> suite::Suite {
    suite::load(&repository().join("policies/clinic/clinic_test.yaml")).expect("the clinic suite")
}

/// Principals beyond the suite's, for the SMART scope forms the suite does not use.
fn more_principals() -> BTreeMap<String, Principal> {
    let staff = |id: &str, role: &str, scopes: &[&str]| Principal {
        id: id.into(),
        roles: vec![role.into()],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        attr: json!({"practice_id": "7", "licensed_states": ["CA"]}),
        ..Default::default()
    };
    BTreeMap::from([
        (
            "v1-write".into(),
            staff("dr-w", "physician", &["user/Observation.write"]),
        ),
        (
            "v1-star".into(),
            staff("dr-s", "physician", &["system/*.*"]),
        ),
        (
            "v2-cu".into(),
            staff("n-cu", "nurse", &["user/Observation.cu"]),
        ),
        // malformed or non-resource scopes cover nothing
        (
            "v2-bad-order".into(),
            staff(
                "dr-b",
                "physician",
                &[
                    "user/Observation.sr",
                    "user/Obs.er.r",
                    "launch/patient",
                    "openid",
                ],
            ),
        ),
        (
            "wrong-kind".into(),
            staff("dr-k", "physician", &["user/Patient.cruds"]),
        ),
        (
            "patient-v2".into(),
            Principal {
                id: "alice".into(),
                roles: vec!["patient".into()],
                scopes: vec!["patient/*.rs".into()],
                attr: json!({"patient_id": "123", "patient": "123"}),
                ..Default::default()
            },
        ),
        (
            "launch-not-a-string".into(),
            Principal {
                id: "dr-n".into(),
                roles: vec!["physician".into()],
                scopes: vec!["patient/Observation.cruds".into()],
                attr: json!({"practice_id": "7", "patient": 123}),
                ..Default::default()
            },
        ),
        (
            "null-claims".into(),
            Principal {
                id: "dr-null".into(),
                roles: vec!["physician".into()],
                scopes: vec!["user/*.cruds".into()],
                attr: json!({"practice_id": null, "licensed_states": null}),
                ..Default::default()
            },
        ),
    ])
}

/// Resources beyond the suite's: null attributes count as absent.
fn more_resources() -> BTreeMap<String, Resource> {
    BTreeMap::from([
        (
            "patient-null-celebrity".into(),
            Resource {
                kind: "Patient".into(),
                id: "791".into(),
                attr: json!({"practice_id": "7", "patient_id": "791", "celebrity": null}),
            },
        ),
        (
            "celebrity-no-physician".into(),
            Resource {
                kind: "Patient".into(),
                id: "792".into(),
                attr: json!({"practice_id": "7", "patient_id": "792", "celebrity": true}),
            },
        ),
        (
            "obs-no-patient".into(),
            Resource {
                kind: "Observation".into(),
                id: "o3".into(),
                attr: json!({"practice_id": "7", "category": "laboratory"}),
            },
        ),
        (
            "invoice-no-practice".into(),
            Resource {
                kind: "Invoice".into(),
                id: "i2".into(),
                attr: json!({"patient_id": "123", "amount": 12.5}),
            },
        ),
    ])
}

/// One request per (principal, resource) with its actions: the suite's cases, then the
/// generated combinations.
pub fn corpus() -> Vec<(String, CheckRequest)> {
    let fixtures = fixtures();
    let mut requests = Vec::new();
    for case in &fixtures.tests {
        let request = fixtures.check_request(case).expect("a valid case");
        requests.push((format!("suite: {}", case.name), request));
    }
    let mut principals = fixtures.principals.clone();
    principals.extend(more_principals());
    let mut resources = fixtures.resources.clone();
    resources.extend(more_resources());
    for (p, principal) in &principals {
        for (r, resource) in &resources {
            let request = CheckRequest {
                principal: principal.clone(),
                resources: vec![ResourceCheck {
                    resource: resource.clone(),
                    actions: ACTIONS.iter().map(|a| a.to_string()).collect(),
                }],
                ..Default::default()
            };
            requests.push((format!("{p} x {r}"), request));
        }
    }
    requests
}
