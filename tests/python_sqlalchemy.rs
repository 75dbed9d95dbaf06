//! The Python package's SQLAlchemy integration (`clients/python/verdict/sqlalchemy.py`) proven
//! exact, in SQLite and PostgreSQL:
//! - against the filter language's semantics (`tests/sqlalchemy_semantics.py`): random filter
//!   trees over random rows with NULLs, every operator, literals of other types, collated text
//!   columns; and the mapping's refusals (an attribute with no column, an undeclared attribute, a
//!   column of the wrong type, another dialect) and bound parameters; a non_empty list column
//!   holding [], a JSON scalar or text that is no JSON leaves the row out, never fails the query;
//! - against Check, through the real daemon (`tests/sqlalchemy_property.py`): for random
//!   principals x kinds x actions and random rows (absent, null, empty and type-confused
//!   attributes), the rows the SQLAlchemy query selects are exactly the rows Check allows, each row
//!   Checked as the database gives it back. Four policy sets: the bundled clinic (typed, with its
//!   `verdict schema export`), tests/scenarios/plan (every filter operator), the package's
//!   tests/policies (has(), `!= null`, `== null`, all(): the over-grants of other adapters) and
//!   tests/scenarios/wards (typed: non_empty strings and lists holding "" and []);
//! - the example service (`examples/notes_service.py`, through `tests/example_test.py`): each
//!   caller's listing is what Check allows, and its errors fail closed.
//!
//! Needs python3 with the packages of clients/python/requirements-dev.txt (SQLAlchemy, psycopg).
//! PostgreSQL runs against `VERDICT_TEST_POSTGRES` (`.ci/run` starts a server and sets it);
//! outside CI, without it, only SQLite runs, and the output says so. Seeds are fixed; set
//! `VERDICT_TEST_SEED` to vary.
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Daemon;

fn package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python")
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    let python = common::Tool::command(
        "python3 with grpcio, SQLAlchemy and psycopg (pip install -r clients/python/requirements-dev.txt)",
        "python3",
        &["-c", "import grpc, google.protobuf, sqlalchemy, psycopg"],
    );
    vec![
        common::trial(
            "python_sqlalchemy::sqlalchemy_clauses_follow_the_filter_semantics",
            &[python],
            sqlalchemy_clauses_follow_the_filter_semantics,
        ),
        common::trial(
            "python_sqlalchemy::sqlalchemy_scopes_select_exactly_what_check_allows_in_the_clinic",
            &[python],
            sqlalchemy_scopes_select_exactly_what_check_allows_in_the_clinic,
        ),
        common::trial(
            "python_sqlalchemy::sqlalchemy_scopes_select_exactly_what_check_allows_for_every_operator",
            &[python],
            sqlalchemy_scopes_select_exactly_what_check_allows_for_every_operator,
        ),
        common::trial(
            "python_sqlalchemy::sqlalchemy_scopes_never_over_grant_has_null_or_all",
            &[python],
            sqlalchemy_scopes_never_over_grant_has_null_or_all,
        ),
        common::trial(
            "python_sqlalchemy::sqlalchemy_scopes_never_select_empty_values_of_non_empty_attributes",
            &[python],
            sqlalchemy_scopes_never_select_empty_values_of_non_empty_attributes,
        ),
        common::trial(
            "python_sqlalchemy::the_example_notes_service_lists_what_check_allows",
            &[python],
            the_example_notes_service_lists_what_check_allows,
        ),
    ]
}

/// `--postgres URL` when PostgreSQL is configured; CI must configure it.
fn postgres() -> Vec<String> {
    match std::env::var("VERDICT_TEST_POSTGRES") {
        Ok(url) => vec!["--postgres".into(), url],
        Err(_) if common::in_ci() => {
            panic!("CI must run the PostgreSQL half: set VERDICT_TEST_POSTGRES (.ci/run does)")
        }
        Err(_) => {
            eprintln!("VERDICT_TEST_POSTGRES is not set: skipping PostgreSQL, testing SQLite only");
            vec![]
        }
    }
}

/// Runs a script of the package's tests/ from the repository's root; asserts it succeeded and
/// returns its output.
fn python(script: &str, args: &[String], limit: Duration) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::python(
        &Path::new("tests").join(script),
        &args,
        Path::new(env!("CARGO_MANIFEST_DIR")),
        limit,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script}: {stdout}\n{stderr}");
    eprintln!("{}", stdout.lines().last().unwrap_or(""));
    stdout
}

fn sqlalchemy_clauses_follow_the_filter_semantics() {
    let stdout = python(
        "sqlalchemy_semantics.py",
        &postgres(),
        Duration::from_secs(300),
    );
    assert!(stdout.contains("; 0 failures;"), "{stdout}");
}

/// `verdict schema export POLICIES`, written into `dir`.
fn schema_export(policies: &Path, dir: &Path) -> String {
    let out = Command::new(common::BIN)
        .args(["schema", "export"])
        .arg(policies)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let file = dir.join("schema.json");
    std::fs::write(&file, &out.stdout).unwrap();
    file.to_str().unwrap().to_string()
}

/// The property through a daemon running `policies`, for the script's `set` of tables.
fn prove(policies: &Path, set: &str, principals: usize, schema: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(policies, &[]);
    let mut args: Vec<String> = vec![
        "--server".into(),
        daemon.addr.clone(),
        "--set".into(),
        set.into(),
        "--principals".into(),
        principals.to_string(),
    ];
    if schema {
        args.extend(["--schema".into(), schema_export(policies, dir.path())]);
    }
    args.extend(postgres());
    let stdout = python("sqlalchemy_property.py", &args, Duration::from_secs(900));
    assert!(stdout.contains(" 0 disagreements;"), "{stdout}");
    stdout
}

fn sqlalchemy_scopes_select_exactly_what_check_allows_in_the_clinic() {
    let stdout = prove(&common::bundled_policies(), "clinic", 25, true);
    // Rows refused for their types (SQLite's "yes" in a bool column, "" in a non-empty string)
    // were among them.
    assert!(!stdout.contains(" 0 refused for their types"), "{stdout}");
}

fn sqlalchemy_scopes_select_exactly_what_check_allows_for_every_operator() {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/plan");
    prove(&policies, "docs", 40, false);
}

fn sqlalchemy_scopes_never_over_grant_has_null_or_all() {
    let stdout = prove(&package().join("tests/policies"), "overgrant", 30, false);
    // The all() rule cannot be a filter: the daemon refuses it, and no clause is made.
    assert!(!stdout.contains(", 0 refused)"), "{stdout}");
}

fn sqlalchemy_scopes_never_select_empty_values_of_non_empty_attributes() {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/wards");
    let stdout = prove(&policies, "wards", 30, true);
    // Rows holding "" or [] where the schema says non_empty were among them.
    assert!(!stdout.contains(" 0 refused for their types"), "{stdout}");
}

fn the_example_notes_service_lists_what_check_allows() {
    let dir = tempfile::tempdir().unwrap();
    let policies = common::bundled_policies();
    let daemon = Daemon::start(&policies, &[]);
    let args = [
        "--server".to_string(),
        daemon.addr.clone(),
        "--schema".to_string(),
        schema_export(&policies, dir.path()),
    ];
    let stdout = python("example_test.py", &args, Duration::from_secs(300));
    assert!(stdout.contains("example: 8 ok, 0 failed"), "{stdout}");
}
