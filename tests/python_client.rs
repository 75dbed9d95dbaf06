//! The Python client package (`clients/python/`, grpcio with stubs generated from `proto/` and
//! committed) against the real daemon: the stubs match `proto/` (`generate.py --check`); every
//! Check and PlanFilter scenario of the bundled clinic suite (policies/clinic/clinic_test.yaml),
//! written here as JSON for `tests/client_test.py`, through the sync and asyncio clients, with a
//! same-id batch and the client's own errors; the package's example; and the README's Python
//! example ("Calling Verdict from Python", a scoped SQLAlchemy query) as written, with the
//! clinic's `verdict schema export` beside it. And both clients' retries and deadlines
//! (`tests/retry_test.py`): a daemon that starts after the first attempt (started by it, on the
//! port the client calls) answers the call; one deadline covers the retries; the retries are
//! bounded; INVALID_ARGUMENT is not retried. The package runs from the working tree
//! (`PYTHONPATH`), not an installed copy.
//!
//! Needs python3 with the packages of clients/python/requirements-dev.txt: CI installs them
//! (.ci/run); elsewhere the test is listed as ignored (see `common::trial`).
use crate::common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::Daemon;
use serde_json::Value as Json;

fn package() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python")
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    let python = common::Tool::command(
        "python3 with grpcio, grpcio-tools and SQLAlchemy (pip install -r clients/python/requirements-dev.txt)",
        "python3",
        &["-c", "import grpc, grpc_tools, google.protobuf, sqlalchemy"],
    );
    vec![
        common::trial(
            "python_client::the_committed_stubs_match_proto",
            &[python],
            the_committed_stubs_match_proto,
        ),
        common::trial(
            "python_client::the_python_client_gets_every_answer_of_the_clinic_suite",
            &[python],
            the_python_client_gets_every_answer_of_the_clinic_suite,
        ),
        common::trial(
            "python_client::the_python_clients_retry_unavailable_within_one_deadline",
            &[python],
            the_python_clients_retry_unavailable_within_one_deadline,
        ),
    ]
}

/// Runs a script of the package from the repository's root.
fn python(script: &Path, args: &[&str], limit: Duration) -> Output {
    common::python(script, args, Path::new(env!("CARGO_MANIFEST_DIR")), limit)
}

/// The clinic suite as the JSON scenarios client_test.py reads, and how many answers it checks:
/// those of `common::clinic_scenarios`, and the script's own two (the same-id batch with the
/// client's errors, and the async client).
fn scenarios() -> (Json, usize) {
    let (scenarios, count) = common::clinic_scenarios();
    (scenarios, count + 2)
}

fn the_committed_stubs_match_proto() {
    let out = python(
        &package().join("generate.py"),
        &["--check"],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("stubs current: 6 files"), "{stdout}");
}

fn the_python_client_gets_every_answer_of_the_clinic_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (scenarios, count) = scenarios();
    let file = dir.path().join("scenarios.json");
    std::fs::write(&file, scenarios.to_string()).unwrap();
    let daemon = Daemon::start(&common::bundled_policies(), &[]);

    let out = python(
        &package().join("tests/client_test.py"),
        &[
            "--server",
            &daemon.addr,
            "--scenarios",
            file.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("scenarios: {count} ok, 0 failed")),
        "{stdout}\n{stderr}"
    );
    // The package's example: dr-house reads patient 123, may not delete it.
    let out = python(
        &package().join("examples/check.py"),
        &[&daemon.addr],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Patient/123 read: ALLOW - allowed by rule \"clinical-care\""),
        "{stdout}"
    );
    assert!(stdout.contains("Patient/123 delete: DENY"), "{stdout}");

    // The README's Python example, as written (address aside), prints what its comment says.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let snippet = readme
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a ```python example");
    let printed = snippet
        .lines()
        .find_map(|l| l.split_once("print(").and_then(|(_, c)| c.split_once("# ")))
        .map(|(_, comment)| comment.trim().to_string())
        .expect("the README's Python example says what it prints");
    // It reads the schema as the README's `verdict schema export` line writes it.
    let export = std::process::Command::new(common::BIN)
        .args(["schema", "export"])
        .arg(common::bundled_policies().join("clinic"))
        .output()
        .unwrap();
    assert!(export.status.success(), "{export:?}");
    assert!(readme.contains("verdict schema export policies/clinic > clinic-schema.json"));
    std::fs::write(dir.path().join("clinic-schema.json"), &export.stdout).unwrap();
    let script = dir.path().join("readme_example.py");
    std::fs::write(&script, snippet.replace("127.0.0.1:50051", &daemon.addr)).unwrap();
    let out = common::python(&script, &[], dir.path(), Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), printed);
}

fn the_python_clients_retry_unavailable_within_one_deadline() {
    let policies = common::bundled_policies();
    let out = python(
        &package().join("tests/retry_test.py"),
        &[
            "--verdict",
            common::BIN,
            "--policies",
            policies.to_str().unwrap(),
        ],
        Duration::from_secs(180),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("retries: 8 ok, 0 failed"),
        "{stdout}\n{stderr}"
    );
}
