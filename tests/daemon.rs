//! The `verdict` binary as an operator runs it: `serve` on the bundled policies, the `check`
//! one-liner from README.md, health and reflection, refusing a broken policy set, and SIGTERM.
use crate::common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, BIN};

/// README.md's Quick start, followed as written: the daemon its `verdict serve` line starts (on
/// ephemeral ports), then each `verdict check` and `curl` line run by `sh` with the `verdict`
/// under test on PATH, each printing exactly the output the README shows.
#[test]
fn the_readme_quick_start_works_as_written() {
    let section = common::readme_section("## Quick start");
    let steps = common::commands_and_outputs(&section);
    let command = |prefix: &str| {
        steps
            .iter()
            .find(|(block, _)| block.content.starts_with(prefix))
            .unwrap_or_else(|| panic!("the Quick start has no `{prefix}` step"))
    };
    assert_eq!(
        command("cargo install").0.content.trim(),
        "cargo install --path ."
    );
    let serve = command("verdict serve").0.content.trim();
    let flags: Vec<&str> = serve
        .split_whitespace()
        .skip(2)
        .map(|flag| {
            if flag == "127.0.0.1:8080" {
                "127.0.0.1:0"
            } else {
                flag
            }
        })
        .collect();
    assert_eq!(flags, ["--http-listen", "127.0.0.1:0"], "{serve}");
    let daemon = Daemon::start(&common::bundled_policies(), &flags);
    let http = daemon.http_addr.clone().expect("the HTTP/JSON listener");
    let dir = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for (block, output) in &steps {
        let script = block.content.trim();
        if !script.starts_with("verdict check") && !script.starts_with("curl ") {
            continue;
        }
        ran += 1;
        // The README's addresses are the defaults; the daemon here listens on ephemeral ports.
        let script = script.replace("127.0.0.1:8080", &http);
        let out = common::shell(&script, dir.path(), &[("VERDICT_SERVER", &daemon.addr)]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README.md:{}: {script}\n{stdout}{}",
            block.line,
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = output
            .as_ref()
            .unwrap_or_else(|| panic!("README.md:{}: no output shown", block.line));
        if shown.info == "json" {
            let printed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
            let shown: serde_json::Value = serde_json::from_str(&shown.content).expect("JSON");
            assert_eq!(printed, shown, "README.md:{}", block.line);
        } else {
            assert_eq!(
                stdout.trim_end(),
                shown.content.trim_end(),
                "README.md:{}",
                block.line
            );
        }
    }
    assert_eq!(ran, 2, "the Quick start's check and curl steps");

    // --exit-code: 3 on a deny (the Quick start's delete), 0 when every action is allowed.
    let check = command("verdict check").0.content.trim().to_string();
    let exit = |script: String| {
        common::shell(&script, dir.path(), &[("VERDICT_SERVER", &daemon.addr)])
            .status
            .code()
    };
    assert_eq!(exit(format!("{check} --exit-code")), Some(3));
    assert_eq!(
        exit(format!(
            "{} --exit-code",
            check.replace(" --action delete", "")
        )),
        Some(0)
    );
    // The address as host:port or as a URL.
    assert_eq!(
        exit(format!("{check} --server http://{}", daemon.addr)),
        Some(0)
    );

    let json = Command::new(BIN)
        .args(["check", "--json", "--server", &daemon.addr, "--request"])
        .arg(r#"{"principal":{"id":"j-1","roles":["janitor"]},"resources":[{"resource":{"kind":"Patient","id":"1"},"actions":["read"]}]}"#)
        .output()
        .unwrap();
    assert!(json.status.success());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json prints JSON");
    assert_eq!(v["results"][0]["actions"]["read"]["effect"], "EFFECT_DENY");
}

/// Every `verdict plan` example of README.md prints what the README shows after it.
#[test]
fn the_readme_plan_examples_print_what_they_show() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let examples: Vec<_> = common::commands_and_outputs(&readme)
        .into_iter()
        .filter(|(block, _)| block.content.starts_with("verdict plan "))
        .collect();
    assert!(!examples.is_empty(), "README.md shows `verdict plan`");
    let daemon = Daemon::start(&common::bundled_policies(), &[]);
    let dir = tempfile::tempdir().unwrap();
    for (block, shown) in examples {
        let out = common::shell(
            block.content.trim(),
            dir.path(),
            &[("VERDICT_SERVER", &daemon.addr)],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "README.md:{}: {stdout}", block.line);
        let shown = shown.unwrap_or_else(|| panic!("README.md:{}: no output shown", block.line));
        assert_eq!(
            stdout.trim_end(),
            shown.content.trim_end(),
            "README.md:{}",
            block.line
        );
    }
}

#[test]
fn check_help_lists_the_exit_codes() {
    let out = Command::new(BIN)
        .args(["check", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for code in [
        "Exit codes:",
        "  0  ",
        "  1  ",
        "  2  ",
        "  3  with --exit-code",
    ] {
        assert!(help.contains(code), "{code:?} not in:\n{help}");
    }
    // A usage error is 2, as the help says.
    let out = Command::new(BIN)
        .args(["check", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_reports_bad_flags_and_unreachable_servers() {
    let out = Command::new(BIN)
        .args([
            "check",
            "--principal",
            "{not json",
            "--resource",
            "{}",
            "--action",
            "read",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--principal is not valid JSON"));
    let out = Command::new(BIN)
        .args([
            "check",
            "--server",
            "http://127.0.0.1:1",
            "--principal",
            "{}",
            "--resource",
            r#"{"kind":"Patient"}"#,
            "--action",
            "read",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let daemon = Daemon::start(&common::bundled_policies(), &[]);
    let channel = tonic::transport::Endpoint::from_shared(daemon.url())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "verdict.v1.Authorizer"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"verdict.v1.Authorizer".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );

    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient as AlphaClient,
        server_reflection_request::MessageRequest as AlphaRequest,
        server_reflection_response::MessageResponse as AlphaResponse,
        ServerReflectionRequest as AlphaReflectionRequest,
    };
    let mut alpha = AlphaClient::new(channel);
    let request = AlphaReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "verdict.v1.Authorizer".into(),
        )),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    assert!(
        matches!(response.message_response, Some(AlphaResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty())
    );
}

#[test]
fn the_daemon_refuses_to_start_on_a_broken_policy_set() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nurse.yaml"),
        "agent_policy:\n  name: nurse\n  principals: {roles: [nurse]}\n  rules:\n    - name: read\n      effect: allow\n      actions: [read]\n      kinds: [Patient]\n      when: R.attr.practice_id == P.atr.practice_id\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "agent_policy:\n  name: [unclosed\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--policies"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("broken.yaml:2:"), "{stderr}");

    let out = Command::new(BIN)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // P.atr is a missing attribute at run time, not a compile error: the set is valid.
    assert!(out.status.success(), "{stderr}");
    std::fs::write(dir.path().join("typo.yaml"), "resource_policy:\n  name: t\n  resource: {kind: Note}\n  rules:\n    - name: guard\n      effect: deny\n      actions: [\"*\"]\n      when: Rs.attr.x == 1\n").unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("typo.yaml:8: error: policy \"t\" rule \"guard\": when: unknown variable 'Rs' (did you mean 'R'?)"), "{stderr}");

    let out = Command::new(BIN)
        .arg("validate")
        .arg(common::bundled_policies())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(unix)]
#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let mut daemon = Daemon::start(&common::bundled_policies(), &[]);
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = daemon
        .wait_exit(Duration::from_secs(60))
        .expect("the daemon stops after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}
