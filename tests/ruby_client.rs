//! The Ruby gem (`clients/ruby/`: grpc with stubs generated from `proto/`, ActiveRecord scopes,
//! a controller helper) against the real daemon: every Check and PlanFilter scenario of the
//! bundled clinic suite through `Verdict::Client` (`client_test.rb`), and the client's deadlines
//! and retries against scripted gRPC servers (`call_test.rb`); the property that
//! `Model.verdict_scope` selects exactly the rows Check allows, on SQLite and PostgreSQL, for the
//! clinic (with its schema), every filter operator (tests/scenarios/plan) and the conditions ORM
//! adapters have got wrong elsewhere (tests/scenarios/overgrant: `has()`, `== null`, `all()` over
//! an empty list, a macro no filter expresses) and non_empty strings and lists holding "" and []
//! (tests/scenarios/wards, typed), with json list columns also holding what raw SQL may write
//! (JSON null, scalars, objects, text that is not JSON) (`scope_property_test.rb`); mappings that
//! cannot be exact raising, and list columns holding text that is not JSON never failing a query
//! (`mapping_test.rb`); the example app (`examples/clinic_app.rb`, a notes controller on
//! `Verdict::Controller`) and README.md's Ruby example, as written.
//!
//! Needs ruby with Debian's ruby-grpc, ruby-grpc-tools, ruby-google-protobuf, ruby-activerecord,
//! ruby-sqlite3 and ruby-pg: CI installs them (.ci/run); elsewhere the tests are listed as ignored
//! (see `common::trial`).
use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;

fn gem() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/ruby")
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    let ruby = common::Tool::command(
        "ruby with grpc, grpc-tools, activerecord, sqlite3 and pg (apt-get install ruby ruby-grpc ruby-grpc-tools ruby-google-protobuf ruby-activerecord ruby-sqlite3 ruby-pg)",
        "ruby",
        &[
            "-e",
            "require 'grpc'; require 'google/protobuf'; require 'active_record'; require 'sqlite3'; require 'pg'; exit(system('grpc_tools_ruby_protoc', '--version', out: File::NULL) ? 0 : 1)",
        ],
    );
    let postgres = common::Tool {
        what: "PostgreSQL in VERDICT_TEST_POSTGRES (eval \"$(bash .ci/postgres.sh)\")",
        found: std::env::var("VERDICT_TEST_POSTGRES").is_ok_and(|v| !v.is_empty()),
    };
    vec![
        common::trial(
            "ruby_client::the_ruby_client_gets_every_answer_of_the_clinic_suite",
            &[ruby],
            the_ruby_client_gets_every_answer_of_the_clinic_suite,
        ),
        common::trial(
            "ruby_client::activerecord_scopes_select_exactly_what_check_allows_on_sqlite",
            &[ruby],
            || scopes_select_exactly_what_check_allows("sqlite"),
        ),
        common::trial(
            "ruby_client::activerecord_scopes_select_exactly_what_check_allows_on_postgres",
            &[ruby, postgres],
            || scopes_select_exactly_what_check_allows("postgres"),
        ),
        common::trial(
            "ruby_client::activerecord_mappings_that_cannot_be_exact_raise",
            &[ruby],
            activerecord_mappings_that_cannot_be_exact_raise,
        ),
        common::trial(
            "ruby_client::the_example_app_and_the_readme_example_answer_as_documented",
            &[ruby],
            the_example_app_and_the_readme_example_answer_as_documented,
        ),
    ]
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `verdict schema export` of the bundled policies, into `dir`.
fn clinic_schema(dir: &Path) -> PathBuf {
    schema_export(&common::bundled_policies(), &dir.join("schema.json"))
}

/// `verdict schema export POLICIES`, into `file`.
fn schema_export(policies: &Path, file: &Path) -> PathBuf {
    let out = Command::new(common::BIN)
        .args(["schema", "export"])
        .arg(policies)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(file, &out.stdout).unwrap();
    file.to_path_buf()
}

/// For each policy set, random principals and rows: the scope's rows are the rows Check allows.
fn scopes_select_exactly_what_check_allows(database: &str) {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    let schema = clinic_schema(dir.path());
    let wards = root().join("tests/scenarios/wards");
    let wards_schema = schema_export(&wards, &dir.path().join("wards-schema.json"));
    let postgres = std::env::var("VERDICT_TEST_POSTGRES").unwrap_or_default();
    let seed = std::env::var("VERDICT_TEST_SEED").unwrap_or_else(|_| "20261129".into());
    let sets: [(&str, PathBuf, &[&str]); 4] = [
        (
            "clinic",
            common::bundled_policies(),
            &[
                "--schema",
                schema.to_str().unwrap(),
                "--principals",
                "25",
                "--rows",
                "60",
            ],
        ),
        (
            "docs",
            root().join("tests/scenarios/plan"),
            &["--principals", "30"],
        ),
        (
            "charts",
            root().join("tests/scenarios/overgrant"),
            &["--principals", "30"],
        ),
        (
            "wards",
            wards,
            &[
                "--schema",
                wards_schema.to_str().unwrap(),
                "--principals",
                "30",
            ],
        ),
    ];
    for (set, policies, extra) in sets {
        let daemon = Daemon::start(&policies, &[]);
        let mut args = vec![
            "--server",
            &daemon.addr,
            "--set",
            set,
            "--database",
            database,
            "--seed",
            &seed,
        ];
        if database == "postgres" {
            args.extend(["--postgres", postgres.as_str()]);
        }
        args.extend(extra);
        let out = ruby(
            &gem().join("test/scope_property_test.rb"),
            &args,
            &stubs,
            Duration::from_secs(300),
        );
        let stdout = succeeded(&out);
        eprintln!("{}", stdout.trim());
        assert!(
            stdout.contains(&format!("{set} on {database}: "))
                && stdout.contains("; 0 disagreements"),
            "{stdout}"
        );
    }
}

fn activerecord_mappings_that_cannot_be_exact_raise() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    let schema = clinic_schema(dir.path());
    let daemon = Daemon::start(&root().join("tests/scenarios/overgrant"), &[]);
    let out = ruby_with(
        &gem().join("test/mapping_test.rb"),
        &[],
        &stubs,
        &[
            ("VERDICT_SERVER", daemon.addr.as_str()),
            ("VERDICT_SCHEMA_JSON", schema.to_str().unwrap()),
        ],
        Duration::from_secs(60),
    );
    let stdout = succeeded(&out);
    assert!(
        stdout.contains(" 0 failures, 0 errors, 0 skips"),
        "{stdout}"
    );
}

/// Runs a Ruby script from the repository's root with stubs generated into `stubs`; kills it
/// after `limit`.
fn ruby(script: &Path, args: &[&str], stubs: &Path, limit: Duration) -> Output {
    ruby_with(script, args, stubs, &[], limit)
}

/// [`ruby`] with environment variables.
fn ruby_with(
    script: &Path,
    args: &[&str],
    stubs: &Path,
    env: &[(&str, &str)],
    limit: Duration,
) -> Output {
    let mut child = Command::new("ruby")
        .arg(script)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("VERDICT_STUBS_DIR", stubs)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ruby runs");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout.into_owned()
}

fn the_ruby_client_gets_every_answer_of_the_clinic_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (scenarios, count) = common::clinic_scenarios();
    let file = dir.path().join("scenarios.json");
    std::fs::write(&file, scenarios.to_string()).unwrap();
    let stubs = dir.path().join("stubs");
    let daemon = Daemon::start(&common::bundled_policies(), &[]);

    let out = ruby(
        &gem().join("test/client_test.rb"),
        &[
            "--server",
            &daemon.addr,
            "--scenarios",
            file.to_str().unwrap(),
        ],
        &stubs,
        Duration::from_secs(120),
    );
    let stdout = succeeded(&out);
    assert!(
        stdout.contains(&format!("scenarios: {count} ok, 0 failed")),
        "{stdout}"
    );
    // The stubs were generated from proto/ for this run.
    assert!(stubs.join("verdict/v1/authorizer_services_pb.rb").exists());

    let out = ruby(
        &gem().join("test/call_test.rb"),
        &[],
        &stubs,
        Duration::from_secs(60),
    );
    let stdout = succeeded(&out);
    assert!(
        stdout.contains(" 0 failures, 0 errors, 0 skips"),
        "{stdout}"
    );
}

/// The example app prints, request by request, what clients/ruby/README.md shows; the README's
/// Ruby example prints what its comment says.
fn the_example_app_and_the_readme_example_answer_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("stubs");
    let schema = clinic_schema(dir.path());
    let daemon = Daemon::start(&common::bundled_policies(), &[]);

    let out = ruby(
        &gem().join("examples/clinic_app.rb"),
        &[&daemon.addr, schema.to_str().unwrap()],
        &stubs,
        Duration::from_secs(60),
    );
    let stdout = succeeded(&out);
    let documented = std::fs::read_to_string(gem().join("README.md")).unwrap();
    let shown = documented
        .split("ruby clients/ruby/examples/clinic_app.rb")
        .nth(1)
        .and_then(|rest| rest.split("```\n").nth(2))
        .expect("clients/ruby/README.md shows the example's output");
    assert_eq!(stdout.trim(), shown.trim());
    // The after-action check, the 403 and the scope are all in what it printed.
    assert!(
        stdout.contains("GET /notes/export as dr-house: 500"),
        "{stdout}"
    );

    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let snippet = readme
        .split("```ruby\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a ```ruby example");
    let printed = snippet
        .lines()
        .find_map(|l| l.strip_prefix("p ").and_then(|c| c.split_once("# ")))
        .map(|(_, comment)| comment.trim().to_string())
        .expect("the README's Ruby example says what it prints");
    let script = dir.path().join("readme_example.rb");
    std::fs::write(&script, snippet.replace("127.0.0.1:50051", &daemon.addr)).unwrap();
    let stdout = succeeded(&ruby(&script, &[], &stubs, Duration::from_secs(60)));
    assert_eq!(stdout.trim(), printed);
}
