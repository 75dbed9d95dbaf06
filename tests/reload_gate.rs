//! The reload gate, through the real binary: a push that breaks the set's own test suites
//! (`*_test.yaml`) never goes live; the daemon keeps the last good set and names the failing
//! cases in `Admin/Status`, its logs and `/metrics`. `--reload-require-tests=false` turns the gate
//! off, and a set that fails its suites at start stops the start.
use crate::common;

use std::path::Path;
use std::process::Command;

use common::{Daemon, BIN};
use serde_json::json;
use verdict::server::proto::admin_client::AdminClient;
use verdict::server::proto::authorizer_client::AuthorizerClient;
use verdict::server::proto::{self, Effect};

/// The bundled clinic (policies and its suite) copied into `to`.
fn copy_clinic(to: &Path) {
    let from = common::bundled_policies().join("clinic");
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Replaces `from` by `to` in a policy file, with a rename, as an editor or a deploy would.
fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    let temp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&temp, text.replace(from, to)).unwrap();
    std::fs::rename(temp, path).unwrap();
}

async fn status(daemon: &Daemon) -> proto::StatusResponse {
    AdminClient::connect(daemon.url())
        .await
        .unwrap()
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Sends SIGHUP and waits for the reload it triggers to be counted in `Admin/Status`.
async fn reload(daemon: &Daemon) -> proto::StatusResponse {
    let before = status(daemon).await;
    let attempts = |s: &proto::StatusResponse| s.reloads_ok + s.reloads_failed;
    daemon.signal("HUP");
    // An attempt that found the active content again counts as neither, but clears the error.
    common::wait_for("the reload SIGHUP asked for", || async {
        let now = status(daemon).await;
        attempts(&now) > attempts(&before) || before.last_error != now.last_error
    })
    .await;
    status(daemon).await
}

/// Dr. House (physician, practice 7) reads patient 123 of practice 7: the version that decided,
/// and whether it allowed.
async fn house_reads(daemon: &Daemon) -> (String, bool) {
    let request = common::check_message(json!({
        "principal": {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"],
                      "attr": {"practice_id": "7"}},
        "resources": [{"resource": {"kind": "Patient", "id": "123",
                       "attr": {"practice_id": "7", "patient_id": "123", "celebrity": false}},
                       "actions": ["read"]}],
    }));
    let response = AuthorizerClient::connect(daemon.url())
        .await
        .unwrap()
        .check(request)
        .await
        .unwrap()
        .into_inner();
    let allowed = response.results[0].actions["read"].effect == Effect::Allow as i32;
    (response.policy_version, allowed)
}

fn metrics(daemon: &Daemon) -> String {
    daemon.metrics()
}

const FLAGS: [&str; 5] = [
    "--no-watch",
    "--reload-poll-secs",
    "0",
    "--metrics-listen",
    "127.0.0.1:0",
];

/// A slip no type checker can see: tenancy compares the patient id with the practice id (both
/// strings), which makes the clinic's own suite fail.
const TYPO: (&str, &str, &str) = (
    "conditions.yaml",
    "&& R.attr.practice_id == P.attr.practice_id",
    "&& R.attr.patient_id == P.attr.practice_id",
);

/// The typo of the typed-policies review: with the clinic's schema it no longer compiles.
const MISSPELT: (&str, &str, &str) = (
    "conditions.yaml",
    "&& R.attr.practice_id == P.attr.practice_id",
    "&& R.attr.practce_id == P.attr.practice_id",
);

#[tokio::test]
async fn a_push_that_breaks_the_suite_stays_out_and_the_failing_cases_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    copy_clinic(dir.path());
    let daemon = Daemon::start(dir.path(), &FLAGS);
    let (good, allowed) = house_reads(&daemon).await;
    assert!(allowed);
    assert!(metrics(&daemon).contains("verdict_policy_failing_tests 0"));

    // The misspelt attribute: the type checker refuses it, naming the attribute it meant.
    let (file, from, to) = MISSPELT;
    edit(dir.path(), file, from, to);
    let after = reload(&daemon).await;
    assert_eq!(after.active_version, good, "the misspelt push stayed out");
    assert!(
        after.last_error.contains("unknown attribute 'practce_id'")
            && after.last_error.contains("did you mean 'practice_id'?"),
        "{}",
        after.last_error
    );
    assert!(after.failing_tests.is_empty());
    edit(dir.path(), file, to, from);

    // The slip: compiles, fails the suite.
    let (file, from, to) = TYPO;
    edit(dir.path(), file, from, to);
    let after = reload(&daemon).await;
    assert_eq!(after.active_version, good, "the broken push stayed out");
    assert_eq!((after.reloads_ok, after.reloads_failed), (0, 2));
    let failing = after.failing_tests.len();
    assert!(failing > 10, "{:#?}", after.failing_tests);
    let named = &after.failing_tests[0];
    assert!(
        named.contains("clinic_test.yaml:") && named.contains("suite \"clinic\": test \""),
        "{named}"
    );
    assert!(after.last_error.contains(named.as_str()));
    assert_eq!(house_reads(&daemon).await, (good.clone(), true));
    let text = metrics(&daemon);
    assert!(
        text.contains(&format!("verdict_policy_failing_tests {failing}")),
        "{text}"
    );
    assert!(text.contains("verdict_policy_reloads_total{result=\"failed\"} 2"));
    // The reloader logs the rejection once the store has recorded it: wait for the line.
    common::wait_for("the rejection logged", || {
        std::future::ready(
            daemon.logs().iter().any(|l| {
                l.contains("keeping the active policies: the new set fails its test suites")
            }),
        )
    })
    .await;

    // A break no type checker would see: physicians lose `read`.
    edit(dir.path(), file, to, from);
    edit(
        dir.path(),
        "roles.yaml",
        "actions: [read, search, create, update]",
        "actions: [search, create, update]",
    );
    let after = reload(&daemon).await;
    assert_eq!(after.active_version, good);
    assert_eq!(after.reloads_failed, 3);
    assert!(
        after
            .failing_tests
            .iter()
            .any(|t| t.contains("/ read\" failed: expected: effect allow; got: deny")),
        "{:#?}",
        after.failing_tests
    );

    // Back to the active content: nothing wrong any more.
    edit(
        dir.path(),
        "roles.yaml",
        "actions: [search, create, update]",
        "actions: [read, search, create, update]",
    );
    let after = reload(&daemon).await;
    assert_eq!(after.active_version, good);
    assert!(after.failing_tests.is_empty() && after.last_error.is_empty());
    assert!(metrics(&daemon).contains("verdict_policy_failing_tests 0"));

    // A change the suite accepts goes live.
    std::fs::write(
        dir.path().join("extra.yaml"),
        "capabilities:\n  name: extra\n  capabilities: []\n",
    )
    .unwrap();
    let after = reload(&daemon).await;
    assert_ne!(after.active_version, good);
    assert_eq!(after.reloads_ok, 1);
    assert_eq!(house_reads(&daemon).await, (after.active_version, true));
}

#[tokio::test]
async fn without_the_gate_the_same_push_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    copy_clinic(dir.path());
    let mut flags = FLAGS.to_vec();
    flags.push("--reload-require-tests=false");
    let daemon = Daemon::start(dir.path(), &flags);
    let (good, _) = house_reads(&daemon).await;
    let (file, from, to) = TYPO;
    edit(dir.path(), file, from, to);
    let after = reload(&daemon).await;
    assert_ne!(after.active_version, good);
    assert!(after.failing_tests.is_empty());
    // And the outage the suite predicted: Dr. House no longer reads his own patient.
    let (version, allowed) = house_reads(&daemon).await;
    assert_eq!(version, after.active_version);
    assert!(!allowed);
}

#[test]
fn a_set_that_fails_its_suites_does_not_start_unless_the_gate_is_off() {
    let dir = tempfile::tempdir().unwrap();
    copy_clinic(dir.path());
    let (file, from, to) = TYPO;
    edit(dir.path(), file, from, to);
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--policies"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fails its test suites"), "{stderr}");
    assert!(
        stderr.contains("clinic_test.yaml:")
            && stderr.contains("failed: expected: effect allow; got"),
        "{stderr}"
    );

    let daemon = Daemon::start(dir.path(), &["--reload-require-tests=false"]);
    drop(daemon);
}
