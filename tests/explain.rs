//! Explain, through the real daemon on the bundled clinic: the `explain` flag of Check over gRPC
//! and HTTP/JSON, and `verdict check --explain`, return each decision's trace (the rules
//! considered in evaluation order, with file:line and outcome, and the one that decided); without
//! the flag, no trace.
use crate::common;

use std::process::Command;

use serde_json::{json, Value as Json};
use verdict::server::json::check_response_json;
use verdict::server::proto::authorizer_client::AuthorizerClient;
use verdict::server::proto::{self, TraceOutcome, TraceStage};

use common::{Daemon, BIN};

/// The line of `- name: <rule>` in a bundled clinic file, read from the file (not hard-coded).
fn line_of(file: &str, rule: &str) -> u32 {
    let text = std::fs::read_to_string(common::bundled_policies().join(file)).unwrap();
    let at = text
        .lines()
        .position(|l| l.trim_start().trim_start_matches("- ") == format!("name: {rule}"))
        .unwrap_or_else(|| panic!("{file} has no rule {rule}"));
    at as u32 + 1
}

/// Physician dr-house (practice 7) reads a patient of practice 9: tenancy's deny rule decides.
fn other_practice(explain: bool) -> Json {
    json!({
        "request_id": "explain-deny",
        "principal": {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"], "attr": {"practice_id": "7"}},
        "resources": [{"resource": {"kind": "Patient", "id": "456",
            "attr": {"practice_id": "9", "patient_id": "456", "celebrity": false}}, "actions": ["read", "delete"]}],
        "explain": explain,
    })
}

/// A backend service that is also patient 123 reads her unsigned note: the patient's allow rule
/// does not hold (the note is unsigned), the system role's allow does.
fn allow_after_failed_conditions() -> Json {
    json!({
        "request_id": "explain-allow",
        "principal": {"id": "svc-123", "roles": ["patient", "system"], "scopes": ["system/*.read"], "attr": {"patient_id": "123"}},
        "resources": [{"resource": {"kind": "Note", "id": "n1",
            "attr": {"practice_id": "7", "patient_id": "123", "author_id": "dr-house", "signed": false}}, "actions": ["read"]}],
        "explain": true,
    })
}

/// (stage, policy/rule, outcome, decided) of each step.
fn steps(trace: &[proto::TraceStep]) -> Vec<(TraceStage, String, TraceOutcome, bool)> {
    trace
        .iter()
        .map(|s| {
            (
                TraceStage::try_from(s.stage).unwrap(),
                format!("{}/{}", s.policy, s.rule),
                TraceOutcome::try_from(s.outcome).unwrap(),
                s.decided,
            )
        })
        .collect()
}

fn step(
    stage: TraceStage,
    rule: &str,
    outcome: TraceOutcome,
    decided: bool,
) -> (TraceStage, String, TraceOutcome, bool) {
    (stage, rule.to_string(), outcome, decided)
}

async fn grpc_check(daemon: &Daemon, body: Json) -> proto::CheckResponse {
    let message = common::check_message(body.clone());
    assert_eq!(
        message.explain,
        body["explain"] == true,
        "the body's explain flag"
    );
    let mut client = AuthorizerClient::connect(daemon.url()).await.unwrap();
    client.check(message).await.unwrap().into_inner()
}

fn http_check(daemon: &Daemon, body: &Json) -> Json {
    let url = format!("http://{}/v1/check", daemon.http_addr.as_ref().unwrap());
    ureq::post(&url)
        .send_json(body)
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

fn cli_check(daemon: &Daemon, body: &Json, flags: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["check", "--server", &daemon.addr])
        .args(flags)
        .arg("--request")
        .arg(body.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_deny_rule_decides_and_the_trace_names_every_rule_considered() {
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--http-listen", "127.0.0.1:0"],
    );
    let response = grpc_check(&daemon, other_practice(true)).await;
    let read = &response.results[0].actions["read"];
    assert_eq!(read.effect, proto::Effect::Deny as i32);
    assert_eq!(read.rule, "staff-stay-in-their-practice");
    use TraceOutcome::*;
    use TraceStage::*;
    assert_eq!(
        steps(&read.trace),
        [
            // Deny rules first, in the set's order: the celebrity guard's selector does not
            // match a non-celebrity, the patients' rule does not select a physician.
            step(
                Deny,
                "celebrity-patients/only-the-primary-physician",
                ResourceNotMatched,
                false
            ),
            step(
                Deny,
                "tenancy/patients-see-only-their-own-records",
                PrincipalNotMatched,
                false
            ),
            step(Deny, "tenancy/staff-stay-in-their-practice", Held, true),
        ]
    );
    let decider = &read.trace[2];
    assert_eq!(decider.file, "clinic/tenancy.yaml");
    assert_eq!(
        decider.line,
        line_of("clinic/tenancy.yaml", "staff-stay-in-their-practice")
    );
    assert_eq!(read.trace[0].file, "clinic/celebrity.yaml");
    assert_eq!(
        read.trace[0].line,
        line_of("clinic/celebrity.yaml", "only-the-primary-physician")
    );
    // Each action has its own trace: delete is denied by the same rule.
    let delete = &response.results[0].actions["delete"];
    assert_eq!(steps(&delete.trace), steps(&read.trace));

    // HTTP/JSON answers the same, as the protobuf JSON mapping spells it.
    let answer = http_check(&daemon, &other_practice(true));
    assert_eq!(
        answer,
        check_response_json(&response),
        "gRPC and HTTP/JSON agree"
    );
    let trace = &answer["results"][0]["actions"]["read"]["trace"];
    assert_eq!(
        trace[2],
        json!({"stage": "TRACE_STAGE_DENY", "policy": "tenancy", "rule": "staff-stay-in-their-practice",
               "file": "clinic/tenancy.yaml", "line": decider.line, "outcome": "TRACE_OUTCOME_HELD", "decided": true})
    );

    // The CLI prints it, one numbered step a line under its decision.
    let printed = cli_check(&daemon, &other_practice(false), &["--explain"]);
    let lines: Vec<&str> = printed.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Patient/456 read: DENY"))
        .unwrap_or_else(|| panic!("{printed}"));
    assert_eq!(
        lines[at + 1..at + 4],
        [
            format!("  1. deny  celebrity-patients/only-the-primary-physician (clinic/celebrity.yaml:{}): resource selector did not match", read.trace[0].line),
            format!("  2. deny  tenancy/patients-see-only-their-own-records (clinic/tenancy.yaml:{}): principal selector did not match", read.trace[1].line),
            format!("  3. deny  tenancy/staff-stay-in-their-practice (clinic/tenancy.yaml:{}): held  <- decided", decider.line),
        ],
        "{printed}"
    );
    assert!(
        lines[at + 4].starts_with("Patient/456 delete: DENY"),
        "{printed}"
    );
}

#[tokio::test]
async fn an_allow_after_conditions_that_did_not_hold_with_the_scope_gate_between() {
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--http-listen", "127.0.0.1:0"],
    );
    let response = grpc_check(&daemon, allow_after_failed_conditions()).await;
    let read = &response.results[0].actions["read"];
    assert_eq!(read.effect, proto::Effect::Allow as i32, "{}", read.reason);
    use TraceOutcome::*;
    use TraceStage::*;
    assert_eq!(
        steps(&read.trace),
        [
            step(
                Deny,
                "admin-staff/no-clinical-records",
                PrincipalNotMatched,
                false
            ),
            step(
                Deny,
                "tenancy/patients-see-only-their-own-records",
                NotHeld,
                false
            ),
            step(Deny, "tenancy/staff-stay-in-their-practice", NotHeld, false),
            step(ScopeGate, "smart-on-fhir/scope-gate", ScopeCovered, false),
            step(
                Allow,
                "clinic-capabilities/sign-a-note",
                PrincipalNotMatched,
                false
            ),
            step(Allow, "physician/clinical-care", PrincipalNotMatched, false),
            step(Allow, "patient/signed-notes", NotHeld, false),
            step(Allow, "system/read-everything", Held, true),
        ]
    );
    let answer = http_check(&daemon, &allow_after_failed_conditions());
    assert_eq!(answer, check_response_json(&response));
    let printed = cli_check(&daemon, &allow_after_failed_conditions(), &[]);
    assert!(
        printed.contains(&format!(
            "  4. scope gate \"smart-on-fhir\" (clinic/smart.yaml:{}): a granted scope covers the request\n",
            line_of("clinic/smart.yaml", "smart-on-fhir")
        )),
        "--request's explain is enough: {printed}"
    );
    assert!(
        printed.contains(&format!(
            "  7. allow patient/signed-notes (clinic/roles.yaml:{}): condition did not hold\n",
            line_of("clinic/roles.yaml", "signed-notes")
        )),
        "{printed}"
    );
}

#[tokio::test]
async fn a_condition_that_cannot_be_evaluated_is_in_the_trace_with_its_error() {
    // A cost budget the tenancy condition (P.roles.exists over 40 roles) exceeds: the deny rule
    // fails, closed.
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--http-listen", "127.0.0.1:0", "--max-condition-cost", "40"],
    );
    let roles: Vec<String> = (0..40)
        .map(|i| format!("role-{i}"))
        .chain(["physician".into()])
        .collect();
    let body = json!({
        "request_id": "explain-error",
        "principal": {"id": "dr-many", "roles": roles, "scopes": ["user/*.cruds"], "attr": {"practice_id": "7"}},
        "resources": [{"resource": {"kind": "Patient", "id": "123",
            "attr": {"practice_id": "7", "patient_id": "123", "celebrity": false}}, "actions": ["read"]}],
        "explain": true,
    });
    let response = grpc_check(&daemon, body.clone()).await;
    let read = &response.results[0].actions["read"];
    assert_eq!(read.effect, proto::Effect::Deny as i32);
    assert!(
        read.reason.contains("could not be evaluated (fail closed)"),
        "{}",
        read.reason
    );
    let last = read.trace.last().unwrap();
    assert_eq!(
        steps(std::slice::from_ref(last)),
        [step(
            TraceStage::Deny,
            "tenancy/staff-stay-in-their-practice",
            TraceOutcome::Error,
            true
        )]
    );
    assert!(
        last.error.contains("over the cost budget"),
        "{}",
        last.error
    );
    assert!(
        read.reason.contains(&last.error),
        "the reason names the same error"
    );
    let answer = http_check(&daemon, &body);
    assert_eq!(answer, check_response_json(&response));
    assert_eq!(
        answer["results"][0]["actions"]["read"]["trace"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["error"],
        json!(last.error)
    );
    let printed = cli_check(&daemon, &body, &["--explain"]);
    assert!(
        printed.contains(&format!("tenancy/staff-stay-in-their-practice (clinic/tenancy.yaml:{}): error: over the cost budget", last.line)),
        "{printed}"
    );
}

#[tokio::test]
async fn without_explain_there_is_no_trace() {
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--http-listen", "127.0.0.1:0"],
    );
    let response = grpc_check(&daemon, other_practice(false)).await;
    for decision in response.results[0].actions.values() {
        assert!(decision.trace.is_empty(), "{decision:?}");
    }
    let answer = http_check(&daemon, &other_practice(false));
    let read = answer["results"][0]["actions"]["read"].as_object().unwrap();
    assert!(!read.contains_key("trace"), "{answer}");
    assert_eq!(answer, check_response_json(&response));
    let printed = cli_check(&daemon, &other_practice(false), &[]);
    assert_eq!(
        printed.lines().count(),
        3,
        "the version and one line per decision: {printed}"
    );
    // A rejected or refused request explains nothing either: an unknown kind's schema step.
    let unknown = json!({
        "request_id": "explain-schema",
        "principal": {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"], "attr": {"practice_id": "7"}},
        "resources": [{"resource": {"kind": "Spaceship", "id": "s1", "attr": {}}, "actions": ["read"]}],
        "explain": true,
    });
    let response = grpc_check(&daemon, unknown).await;
    let read = &response.results[0].actions["read"];
    assert_eq!(
        steps(&read.trace),
        [step(
            TraceStage::Schema,
            "/",
            TraceOutcome::SchemaViolated,
            true
        )]
    );
}

/// README.md's "Explaining a decision" example, run as written, prints what the README shows.
#[test]
fn the_readme_explain_example_prints_what_it_shows() {
    let section = common::readme_section("### Explaining a decision");
    let steps = common::commands_and_outputs(&section);
    let daemon = Daemon::start(&common::bundled_policies(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for (block, output) in &steps {
        let script = block.content.trim();
        if !script.starts_with("verdict check") {
            continue;
        }
        ran += 1;
        let out = common::shell(script, dir.path(), &[("VERDICT_SERVER", &daemon.addr)]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README.md:{}: {stdout}{}",
            block.line,
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = output.as_ref().expect("the output is shown");
        assert_eq!(
            stdout.trim_end(),
            shown.content.trim_end(),
            "README.md:{}",
            block.line
        );
    }
    assert_eq!(ran, 1);
}
