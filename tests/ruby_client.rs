//! The Ruby gem (`clients/ruby/`: grpc with stubs generated from `proto/`, ActiveRecord scopes,
//! a controller helper) against the real daemon: every Check and PlanFilter scenario of the
//! bundled clinic suite through `Verdict::Client` (`client_test.rb`), and the client's deadlines
//! and retries against scripted gRPC servers (`call_test.rb`).
//!
//! Needs ruby with Debian's ruby-grpc, ruby-grpc-tools, ruby-google-protobuf, ruby-activerecord,
//! ruby-sqlite3 and ruby-pg: CI installs them (.ci/run); elsewhere the tests are listed as ignored
//! (`harness = false`: see `common::trial`).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;

fn gem() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/ruby")
}

fn main() -> std::process::ExitCode {
    let ruby = common::Tool::command(
        "ruby with grpc, grpc-tools, activerecord, sqlite3 and pg (apt-get install ruby ruby-grpc ruby-grpc-tools ruby-google-protobuf ruby-activerecord ruby-sqlite3 ruby-pg)",
        "ruby",
        &[
            "-e",
            "require 'grpc'; require 'google/protobuf'; require 'active_record'; require 'sqlite3'; require 'pg'; exit(system('grpc_tools_ruby_protoc', '--version', out: File::NULL) ? 0 : 1)",
        ],
    );
    common::run(vec![common::trial(
        "the_ruby_client_gets_every_answer_of_the_clinic_suite",
        &[ruby],
        the_ruby_client_gets_every_answer_of_the_clinic_suite,
    )])
}

/// Runs a Ruby script from the repository's root with stubs generated into `stubs`; kills it
/// after `limit`.
fn ruby(script: &Path, args: &[&str], stubs: &Path, limit: Duration) -> Output {
    let mut child = Command::new("ruby")
        .arg(script)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("VERDICT_STUBS_DIR", stubs)
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
