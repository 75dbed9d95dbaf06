//! Typed, closed-world policies through the real server and the real binary: what the security
//! review of untyped policies found, each a regression test. Requests of the wrong type, kinds and
//! actions that only look declared, and the PlanFilter side go through gRPC (the bundled clinic's
//! own cases are in its suite, `tests/clinic.rs`); the authoring mistakes go through
//! `verdict validate`, each an error at the file line of the failing part, with a caret.
use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Daemon, TestServer, BIN};
use serde_json::{json, Value as Json};
use verdict::server::proto::{self, Effect};

/// A typed set: documents with a schema, an admin allowed everything but delete, a suspended
/// derived role denied, and a confidentiality guard.
const RECORDS: &str = r#"
schema:
  name: records-schema
  principal:
    roles: [admin, clerk]
    attributes:
      suspended: bool?
  kinds:
    Doc:
      actions: [read, update, delete]
      attributes:
        owner: string
        confidentiality: {type: enum, values: [N, R, V]}
---
conditions:
  name: shared
  derived_roles:
    - name: suspended_user
      parent_roles: [admin, clerk]
      when: has(P.attr.suspended) && P.attr.suspended == true
---
agent_policy:
  name: admin
  principals: {roles: [admin]}
  rules:
    - name: everything
      effect: allow
      actions: ["*"]
      kinds: ["*"]
    - name: never-delete
      effect: deny
      actions: [delete]
      kinds: [Doc]
---
resource_policy:
  name: guards
  resource: {kind: Doc}
  rules:
    - name: suspended-users-get-nothing
      effect: deny
      actions: ["*"]
      principals: {derived_roles: [suspended_user]}
    - name: restricted-needs-clearance
      effect: deny
      actions: ["*"]
      when: R.attr.confidentiality in ["R", "V"]
"#;

fn records(dir: &Path, validation: &str) {
    let text = RECORDS.replace(
        "  name: records-schema\n",
        &format!("  name: records-schema\n  validation: {validation}\n"),
    );
    std::fs::write(dir.join("records.yaml"), text).unwrap();
}

fn admin(attr: Json) -> Json {
    json!({"id": "a-1", "roles": ["admin"], "attr": attr})
}

fn doc(attr: Json) -> Json {
    json!({"kind": "Doc", "id": "d-1", "attr": attr})
}

/// One decision per action: (effect, reason).
async fn decide(
    server: &TestServer,
    principal: Json,
    resource: Json,
    actions: &[&str],
) -> Vec<(bool, String)> {
    let request = common::check_message(json!({
        "principal": principal,
        "resources": [{"resource": resource, "actions": actions}],
    }));
    let response = server
        .client()
        .await
        .check(request)
        .await
        .unwrap()
        .into_inner();
    actions
        .iter()
        .map(|a| {
            let d = &response.results[0].actions[*a];
            (d.effect == Effect::Allow as i32, d.reason.clone())
        })
        .collect()
}

#[tokio::test]
async fn actions_and_kinds_that_only_look_declared_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    records(dir.path(), "reject");
    let server = TestServer::start(dir.path()).await;
    let plain = doc(json!({"owner": "u", "confidentiality": "N"}));
    let got = decide(
        &server,
        admin(json!({})),
        plain.clone(),
        &["read", "update", "delete"],
    )
    .await;
    assert_eq!(
        got.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        [true, true, false],
        "{got:?}"
    );
    assert!(got[2].1.contains("never-delete"), "{got:?}");
    // allow ["*"] and deny [delete]: only the declared spelling is an action at all.
    for action in ["Delete", "delete ", "\u{0}delete", "DELETE", "dеlete"] {
        let got = decide(&server, admin(json!({})), plain.clone(), &[action]).await;
        assert!(!got[0].0, "{action:?} was allowed: {got:?}");
        assert!(
            got[0].1.contains("is not declared for kind \"Doc\""),
            "{action:?}: {got:?}"
        );
    }
    let got = decide(&server, admin(json!({})), plain.clone(), &["Delete"]).await;
    assert!(got[0].1.contains("(did you mean \"delete\"?)"), "{got:?}");
    // kinds ["*"] is the declared kinds, not every string.
    for kind in ["doc", "Doc ", "D\u{043e}c", "Spaceship"] {
        let resource =
            json!({"kind": kind, "id": "x", "attr": {"owner": "u", "confidentiality": "N"}});
        let got = decide(&server, admin(json!({})), resource, &["read"]).await;
        assert!(!got[0].0, "{kind:?} was allowed: {got:?}");
        assert!(
            got[0].1.contains("is not declared in the schema"),
            "{kind:?}: {got:?}"
        );
    }
}

#[tokio::test]
async fn values_of_the_wrong_type_cannot_switch_a_guard_off() {
    let dir = tempfile::tempdir().unwrap();
    records(dir.path(), "reject");
    let server = TestServer::start(dir.path()).await;
    // `confidentiality in ["R", "V"]` with {"code": "R"} was simply false: the deny never fired.
    let got = decide(
        &server,
        admin(json!({})),
        doc(json!({"owner": "u", "confidentiality": {"code": "R"}})),
        &["read"],
    )
    .await;
    assert!(!got[0].0, "{got:?}");
    assert!(
        got[0]
            .1
            .contains("R.attr.confidentiality must be one of \"N\", \"R\", \"V\", got an object"),
        "{got:?}"
    );
    let got = decide(
        &server,
        admin(json!({})),
        doc(json!({"owner": "u", "confidentiality": "r"})),
        &["read"],
    )
    .await;
    assert!(got[0].1.contains("got \"r\""), "{got:?}");
    // A derived role `suspended == true` used in a deny: "true" and 1 were not true.
    for suspended in [json!("true"), json!(1), json!("yes")] {
        let got = decide(
            &server,
            admin(json!({"suspended": suspended})),
            doc(json!({"owner": "u", "confidentiality": "N"})),
            &["read"],
        )
        .await;
        assert!(!got[0].0, "suspended {suspended}: {got:?}");
        assert!(
            got[0].1.contains("P.attr.suspended must be a bool"),
            "{got:?}"
        );
    }
    let got = decide(
        &server,
        admin(json!({"suspended": true})),
        doc(json!({"owner": "u", "confidentiality": "N"})),
        &["read"],
    )
    .await;
    assert!(got[0].1.contains("suspended-users-get-nothing"), "{got:?}");
    // An attribute the schema does not declare is refused, not ignored.
    let got = decide(
        &server,
        admin(json!({"suspnded": true})),
        doc(json!({"owner": "u", "confidentiality": "N"})),
        &["read"],
    )
    .await;
    assert!(
        got[0]
            .1
            .contains("P.attr.suspnded is not declared in the schema (did you mean suspended?)"),
        "{got:?}"
    );
}

#[tokio::test]
async fn plans_refuse_what_check_refuses() {
    let dir = tempfile::tempdir().unwrap();
    records(dir.path(), "reject");
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let plan = |principal: Json, kind: &str, action: &str, known: Json| {
        let principal =
            common::check_message(json!({"principal": principal, "resources": []})).principal;
        proto::PlanFilterRequest {
            principal,
            resource_kind: kind.into(),
            action: action.into(),
            known_attr: verdict::server::convert::json_to_struct(&known),
            ..Default::default()
        }
    };
    let ok = client
        .plan_filter(plan(admin(json!({})), "Doc", "read", json!({})))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.kind, proto::PlanKind::Conditional as i32, "{ok:?}");
    assert!(ok.schema_violation.is_empty());
    for (request, violation) in [
        (
            plan(admin(json!({"suspended": "yes"})), "Doc", "read", json!({})),
            "P.attr.suspended must be a bool",
        ),
        (
            plan(admin(json!({})), "doc", "read", json!({})),
            "kind \"doc\" is not declared",
        ),
        (
            plan(admin(json!({})), "Doc", "Read", json!({})),
            "action \"Read\" is not declared",
        ),
        (
            plan(
                admin(json!({})),
                "Doc",
                "read",
                json!({"confidentiality": 1}),
            ),
            "R.attr.confidentiality must be one of",
        ),
    ] {
        let got = client.plan_filter(request).await.unwrap().into_inner();
        assert_eq!(got.kind, proto::PlanKind::AlwaysDenied as i32, "{got:?}");
        assert!(got.schema_violation.contains(violation), "{got:?}");
    }
}

/// Under `warn` the decision is made as if the request were valid (the guard does not fire) and
/// the violation is logged and counted; under `off` nothing is checked.
#[tokio::test]
async fn validation_warn_reports_and_off_does_not_check() {
    let dir = tempfile::tempdir().unwrap();
    records(dir.path(), "warn");
    let daemon = Daemon::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let request = common::check_message(json!({
        "principal": admin(json!({})),
        "resources": [{"resource": doc(json!({"owner": "u", "confidentiality": {"code": "R"}})), "actions": ["read", "update"]}],
    }));
    let mut client = proto::authorizer_client::AuthorizerClient::connect(daemon.url())
        .await
        .unwrap();
    let response = client.check(request.clone()).await.unwrap().into_inner();
    assert_eq!(
        response.results[0].actions["read"].effect,
        Effect::Allow as i32
    );
    let warned = daemon
        .wait_metric("verdict_schema_violations_total{result=\"warned\"}", |n| {
            n >= 2.0
        })
        .await;
    assert_eq!(warned, 2.0);
    let logged = daemon.wait_logs("violates the schema", 1);
    assert_eq!(logged.len(), 1, "once per resource: {logged:#?}");
    assert!(
        logged[0].contains("R.attr.confidentiality must be one of"),
        "{logged:?}"
    );

    records(dir.path(), "reject");
    daemon.signal("HUP");
    common::wait_for("the reject set to be active", || {
        let mut client = client.clone();
        let request = request.clone();
        async move {
            let r = client.check(request).await.unwrap().into_inner();
            r.results[0].actions["read"].effect == Effect::Deny as i32
        }
    })
    .await;
    let denied = daemon
        .wait_metric("verdict_schema_violations_total{result=\"denied\"}", |n| {
            n >= 2.0
        })
        .await;
    assert!(denied >= 2.0);
}

#[tokio::test]
async fn validation_off_decides_on_the_values_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    records(dir.path(), "off");
    let server = TestServer::start(dir.path()).await;
    let got = decide(
        &server,
        admin(json!({})),
        doc(json!({"owner": "u", "confidentiality": {"code": "R"}, "extra": 1})),
        &["read"],
    )
    .await;
    assert!(got[0].0, "off checks nothing: {got:?}");
}

/// A PlanFilter for a principal no allow rule can hold for is ALWAYS_DENIED even when a deny rule
/// cannot be planned (a practice claim that is a list): the answer is exact, not an error.
#[tokio::test]
async fn no_allow_means_always_denied_whatever_the_denies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "agent_policy:\n  name: staff\n  principals: {roles: [nurse]}\n  rules:\n    - name: read\n      effect: allow\n      actions: [read]\n      kinds: [Chart]\n---\nresource_policy:\n  name: tenancy\n  resource: {kind: Chart}\n  rules:\n    - name: same-practice\n      effect: deny\n      actions: [\"*\"]\n      when: R.attr.practice_id.startsWith(P.attr.practice_id)\n",
    )
    .unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let plan = |roles: Json| {
        let principal = common::check_message(json!({"principal": {"id": "u-1", "roles": roles, "attr": {"practice_id": ["7", "9"]}}, "resources": []})).principal;
        proto::PlanFilterRequest {
            principal,
            resource_kind: "Chart".into(),
            action: "read".into(),
            ..Default::default()
        }
    };
    let none = client
        .plan_filter(plan(json!(["janitor"])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.kind, proto::PlanKind::AlwaysDenied as i32, "{none:?}");
    // With an allow that can hold, the unplannable deny is still an error, never a wider filter.
    let status = client
        .plan_filter(plan(json!(["nurse"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("same-practice"), "{status:?}");
}

/// The clinic, copied, with one edit: `verdict validate` must fail with `expected` at
/// `file:line` (for a condition, followed by the failing line of its text and a caret).
fn validate_fails(edit: (&str, &str, &str), expected: &str, at: &str) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::bundled_policies().join("clinic")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let (file, from, to) = edit;
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{to:?} validated: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains(expected))
        .unwrap_or_else(|| panic!("no {expected:?} in:\n{stderr}"));
    assert!(
        lines[i].contains(&format!("{file}:{at}: error: ")),
        "{}\n{stderr}",
        lines[i]
    );
    if lines[i].contains(": when: ") {
        let text = lines.get(i + 1).copied().unwrap_or("");
        let caret = lines.get(i + 2).copied().unwrap_or("");
        assert!(
            text.starts_with("    | ") && caret.trim_end().ends_with('^'),
            "{stderr}"
        );
    }
}

/// The line of `needle` in the clinic's `file` (1-based).
fn line_of(file: &str, needle: &str) -> String {
    let text =
        std::fs::read_to_string(common::bundled_policies().join("clinic").join(file)).unwrap();
    (text.lines().position(|l| l.contains(needle)).expect(needle) + 1).to_string()
}

#[test]
fn authoring_mistakes_are_errors_at_their_line() {
    let same = "&& R.attr.practice_id == P.attr.practice_id";
    validate_fails(
        ("conditions.yaml", same, "&& R.attr.practce_id == P.attr.practice_id"),
        "unknown attribute 'practce_id': R.attr declares no such attribute (did you mean 'practice_id'?)",
        &line_of("conditions.yaml", same),
    );
    validate_fails(
        (
            "roles.yaml",
            "actions: [create]\n      kinds: [MedicationRequest]",
            "actions: [crate]\n      kinds: [MedicationRequest]",
        ),
        "action \"crate\" is not declared for kind MedicationRequest (did you mean \"create\"?)",
        &line_of("roles.yaml", "name: no-prescribing"),
    );
    validate_fails(
        (
            "tenancy.yaml",
            "principals: {roles: [patient]}",
            "principals: {roles: [patinet]}",
        ),
        "role \"patinet\" is not declared in the schema (did you mean \"patient\"?)",
        &line_of("tenancy.yaml", "name: patients-see-only-their-own-records"),
    );
    validate_fails(
        ("roles.yaml", "when: R.attr.signed == true", "when: P.roles == \"suspended\""),
        "P.roles (list<string>) and \"suspended\" (string) never compare equal: this is always false",
        &line_of("roles.yaml", "when: R.attr.signed == true"),
    );
    validate_fails(
        (
            "roles.yaml",
            "when: R.attr.signed == true",
            "when: R.attr.signed == true && 1 == \"1\"",
        ),
        "1 (int) and \"1\" (string) never compare equal",
        &line_of("roles.yaml", "when: R.attr.signed == true"),
    );
    validate_fails(
        ("roles.yaml", "when: R.attr.signed == true", "when:"),
        "`when` is empty",
        &line_of("roles.yaml", "name: signed-notes"),
    );
    validate_fails(
        (
            "roles.yaml",
            "kinds: [Patient, Invoice]",
            "kinds: [patient, Invoice]",
        ),
        "kind \"patient\" is not declared in the schema (did you mean \"Patient\"?)",
        &line_of("roles.yaml", "name: front-desk"),
    );
    validate_fails(
        (
            "celebrity.yaml",
            "when: R.attr.celebrity == true",
            "when: R.attr.celebrity == \"true\"",
        ),
        "R.attr.celebrity (bool) and \"true\" (string) never compare equal",
        &line_of("celebrity.yaml", "when: R.attr.celebrity == true"),
    );
    // A multi-line condition: the error is on the failing line, not the rule's.
    let when = "      when: R.attr.signed == true";
    let at = line_of("roles.yaml", "when: R.attr.signed == true")
        .parse::<usize>()
        .unwrap()
        + 2;
    validate_fails(
        (
            "roles.yaml",
            when,
            "      when: |\n        R.attr.signed == true &&\n        R.attr.singed == true",
        ),
        "unknown attribute 'singed'",
        &at.to_string(),
    );
}

#[test]
fn untyped_sets_get_the_cheap_part_of_the_safety() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "agent_policy:\n  name: a\n  principals: {roles: [r]}\n  rules:\n    - name: flagged\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: R.attr.flag == true\n    - name: flagged-again\n      effect: allow\n      actions: [update]\n      kinds: [Doc]\n      when: R.attr.flag == \"true\"\n",
    )
    .unwrap();
    let validate = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("validate")
            .args(args)
            .arg(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = validate(&[]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning: the set declares no schema"),
        "{stderr}"
    );
    assert!(
        stderr.contains("R.attr.flag is compared with a bool in policy \"a\" rule \"flagged\"")
            && stderr.contains("and with a string in policy \"a\" rule \"flagged-again\""),
        "{stderr}"
    );
    let (ok, stderr) = validate(&["--require-schema"]);
    assert!(!ok);
    assert!(
        stderr.contains("error: the set declares no schema (--require-schema)"),
        "{stderr}"
    );

    // "*" in ids, clients or capabilities would match only the literal "*".
    std::fs::write(
        dir.path().join("p.yaml"),
        "agent_policy:\n  name: a\n  principals: {ids: [\"*\"]}\n  rules:\n    - name: all\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n",
    )
    .unwrap();
    let (ok, stderr) = validate(&[]);
    assert!(!ok);
    assert!(stderr.contains("\"*\" in ids would only match the literal \"*\"; to select every principal, write roles: [\"*\"]"), "{stderr}");
}
