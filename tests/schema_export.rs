//! `verdict schema export`: the clinic's schema as JSON Schema, checked by a real validator
//! (Python's jsonschema, draft 2020-12) on the same requests the engine validates: what one
//! accepts the other accepts, what one refuses the other refuses.
//!
//! Needs `python3` with jsonschema (CI installs it from `.ci/requirements-tools.txt`); elsewhere
//! the test is listed as ignored (see `common::trial`).
use crate::common;

use std::process::Command;

use serde_json::{json, Value as Json};
use verdict::compile::PolicySet;
use verdict::request::CheckRequest;

pub fn trials() -> Vec<libtest_mimic::Trial> {
    let jsonschema = common::Tool::command(
        "python3 with jsonschema (pip install jsonschema)",
        "python3",
        &["-c", "import jsonschema"],
    );
    vec![common::trial(
        "schema_export::the_exported_schema_accepts_and_refuses_what_the_engine_does",
        &[jsonschema],
        the_exported_schema_accepts_and_refuses_what_the_engine_does,
    )]
}

/// Every request of `requests`, validated by jsonschema against `schema`: `None` when valid, the
/// validator's message otherwise.
fn json_schema_verdicts(schema: &str, requests: &[Json]) -> Vec<Option<String>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), schema).unwrap();
    std::fs::write(
        dir.path().join("requests.json"),
        Json::Array(requests.to_vec()).to_string(),
    )
    .unwrap();
    let out = Command::new("python3")
        .current_dir(dir.path())
        .args([
            "-c",
            "import json, jsonschema\n\
             schema = json.load(open('schema.json'))\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             v = jsonschema.Draft202012Validator(schema)\n\
             out = []\n\
             for r in json.load(open('requests.json')):\n\
             \x20   errors = list(v.iter_errors(r))\n\
             \x20   out.append(None if not errors else '; '.join(e.message for e in errors))\n\
             print(json.dumps(out))",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn the_exported_schema_accepts_and_refuses_what_the_engine_does() {
    let policies = common::bundled_policies();
    let out = Command::new(common::BIN)
        .args(["schema", "export"])
        .arg(&policies)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let schema = String::from_utf8(out.stdout).unwrap();

    let physician = json!({"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"], "attr": {"practice_id": "7", "iss": "https://idp"}});
    let patient = |attr: Json| json!({"kind": "Patient", "id": "123", "attr": attr});
    let valid = json!({"practice_id": "7", "patient_id": "123", "celebrity": false});
    let with = |key: &str, value: Json| {
        let mut attr = valid.clone();
        attr[key] = value;
        attr
    };
    let request = |principal: &Json, resource: Json, actions: &[&str]| json!({"principal": principal, "resources": [{"resource": resource, "actions": actions}]});
    let big: Json = serde_json::from_str("9007199254740993").unwrap();
    let cases = vec![
        (
            request(&physician, patient(valid.clone()), &["read", "delete"]),
            true,
        ),
        (
            request(
                &physician,
                patient(with("primary_physician_id", Json::Null)),
                &["read"],
            ),
            true,
        ),
        (
            json!({"principal": physician, "resources": [{"resource": patient(valid.clone()), "actions": ["read"]}], "context": {"purpose_of_use": "TREAT"}}),
            true,
        ),
        (
            request(
                &physician,
                patient(with("celebrity", json!("yes"))),
                &["read"],
            ),
            false,
        ),
        (
            request(&physician, patient(with("celebrity", json!(1))), &["read"]),
            false,
        ),
        (
            request(
                &physician,
                patient(with("celebrity", Json::Null)),
                &["read"],
            ),
            false,
        ),
        (
            request(
                &physician,
                patient(with("celebrety", json!(true))),
                &["read"],
            ),
            false,
        ),
        (
            request(
                &physician,
                json!({"kind": "patient", "id": "1", "attr": valid}),
                &["read"],
            ),
            false,
        ),
        (
            request(&physician, patient(valid.clone()), &["Delete"]),
            false,
        ),
        (
            request(
                &physician,
                json!({"kind": "Invoice", "id": "i", "attr": {"practice_id": "7", "patient_id": "1", "amount": "lots"}}),
                &["read"],
            ),
            false,
        ),
        (
            request(
                &physician,
                json!({"kind": "Observation", "id": "o", "attr": {"practice_id": "7", "patient_id": "1", "category": "lab"}}),
                &["read"],
            ),
            false,
        ),
        (
            request(
                &json!({"id": "x", "attr": {"licensed_states": {"CA": true}}}),
                patient(valid.clone()),
                &["read"],
            ),
            false,
        ),
        (
            json!({"principal": physician, "resources": [{"resource": patient(valid.clone()), "actions": ["read"]}], "context": {"purpose": "TREAT"}}),
            false,
        ),
        (
            request(
                &physician,
                json!({"kind": "Invoice", "id": "i", "attr": {"practice_id": "7", "patient_id": "1", "amount": 12.5}}),
                &["read"],
            ),
            true,
        ),
        (
            request(
                &physician,
                json!({"kind": "Invoice", "id": "i", "attr": {"practice_id": "7", "patient_id": "1", "amount": big}}),
                &["read"],
            ),
            false,
        ),
    ];
    let requests: Vec<Json> = cases.iter().map(|(r, _)| r.clone()).collect();
    let by_json_schema = json_schema_verdicts(&schema, &requests);
    let set = PolicySet::load(&policies).unwrap();
    for ((request, valid), json_schema) in cases.iter().zip(by_json_schema) {
        let engine_request: CheckRequest =
            serde_json::from_value::<verdict::server::json::CheckBody>(request.clone())
                .unwrap()
                .into_call()
                .request;
        let violation = verdict::engine::check(&set, &engine_request)
            .into_iter()
            .flat_map(|r| r.actions)
            .find_map(|(_, d)| d.schema_violation);
        assert_eq!(
            violation.is_none(),
            *valid,
            "engine on {request}: {violation:?}"
        );
        // The one number JSON Schema validators read as a double cannot tell apart.
        if request.to_string().contains("9007199254740993") {
            continue;
        }
        assert_eq!(
            json_schema.is_none(),
            *valid,
            "jsonschema on {request}: {json_schema:?}"
        );
    }
}
