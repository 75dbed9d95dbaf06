//! What an operator relies on, through the real binary and real sockets: configuration
//! (file, environment, flags, errors), TLS and mutual TLS with certificate rotation, Prometheus
//! metrics, JSON logs with request ids, the decision log and its redaction, limits and deadlines,
//! health while draining, graceful shutdown, and the HTTP/JSON API with the README's curl lines.
use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Daemon, BIN};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use serde_json::{json, Value as Json};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use verdict::request::CheckRequest;
use verdict::server::proto::authorizer_client::AuthorizerClient;
use verdict::server::proto::{self, Effect};

/// The body of `POST /v1/check` (and `verdict check --request`) for dr-house reading and deleting
/// patient 123.
fn physician_reads_patient_json(request_id: &str) -> Json {
    json!({
        "request_id": request_id,
        "principal": {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"], "attr": {"practice_id": "7", "ssn": "123-45-6789"}},
        "resources": [{"resource": {"kind": "Patient", "id": "123", "attr": {"practice_id": "7", "patient_id": "123", "celebrity": false, "name": "Alice Secret"}}, "actions": ["read", "delete"]}]
    })
}

fn physician_reads_patient(request_id: &str) -> CheckRequest {
    serde_json::from_value::<verdict::server::json::CheckBody>(physician_reads_patient_json(
        request_id,
    ))
    .unwrap()
    .into_call()
    .request
}

async fn check(url: &str, request: &CheckRequest) -> Result<proto::CheckResponse, tonic::Status> {
    let mut client = AuthorizerClient::connect(url.to_string())
        .await
        .expect("connects");
    client
        .check(verdict::server::convert::to_proto(request))
        .await
        .map(|r| r.into_inner())
}

fn http_get(url: &str) -> (u16, String) {
    match ureq::get(url).call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap()),
        Err(ureq::Error::StatusCode(code)) => (code, String::new()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

#[tokio::test]
async fn metrics_are_scraped_with_requests_decisions_latency_reloads_and_version() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&common::bundled_policies(), dir.path());
    let daemon = Daemon::start(
        dir.path(),
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--no-watch",
            "--reload-poll-secs",
            "0",
        ],
    );
    let metrics = format!(
        "http://{}/metrics",
        daemon
            .metrics_addr
            .as_ref()
            .expect("metrics address announced")
    );
    let answer = check(&daemon.url(), &physician_reads_patient("m-1"))
        .await
        .unwrap();
    let bad = check(&daemon.url(), &CheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    // A reload, so that the reload counter has a sample.
    std::fs::write(
        dir.path().join("clinic/extra.yaml"),
        "capabilities:\n  name: extra\n  capabilities: []\n",
    )
    .unwrap();
    daemon.signal("HUP");
    daemon
        .wait_metric("verdict_policy_reloads_total{result=\"ok\"}", |n| n == 1.0)
        .await;
    let (status, text) = http_get(&metrics);
    assert_eq!(status, 200);
    for expected in [
        "verdict_requests_total{method=\"Check\",status=\"OK\"} 1",
        "verdict_requests_total{method=\"Check\",status=\"INVALID_ARGUMENT\"} 1",
        "verdict_decisions_total{effect=\"allow\"} 1",
        "verdict_decisions_total{effect=\"deny\"} 1",
        "verdict_decision_duration_seconds_bucket",
        "verdict_request_duration_seconds_count{method=\"Check\"} 2",
        "verdict_policy_reloads_total{result=\"ok\"} 1",
        &format!(
            "verdict_policy_info{{version=\"{}\"}} 0",
            answer.policy_version
        ),
        "# HELP verdict_decisions_total Decisions by effect.",
    ] {
        assert!(
            text.contains(expected),
            "/metrics lacks {expected:?}:\n{text}"
        );
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_latency() {
    let daemon = Daemon::start_with_env(
        &common::bundled_policies(),
        &["--log-format", "json"],
        &[("VERDICT_LOG", "verdict=debug")],
    );
    check(&daemon.url(), &physician_reads_patient("trace-me-42"))
        .await
        .unwrap();
    // The line of the finished request: JSON whose span carries the request id.
    let finished = || {
        daemon.logs().into_iter().find_map(|line| {
            let parsed: Json = serde_json::from_str(&line).expect("a JSON log line");
            (parsed["span"]["request_id"] == "trace-me-42" && parsed["fields"]["status"] == "OK")
                .then_some(parsed)
        })
    };
    common::wait_for("the request's line", || {
        std::future::ready(finished().is_some())
    })
    .await;
    let parsed = finished().unwrap();
    let line = parsed.to_string();
    assert_eq!(parsed["span"]["request_id"], "trace-me-42", "{line}");
    assert_eq!(parsed["fields"]["method"], "Check", "{line}");
    assert!(parsed["fields"]["elapsed_us"].is_u64(), "{line}");
    assert!(
        daemon
            .logs()
            .iter()
            .all(|l| serde_json::from_str::<Json>(l).is_ok()),
        "every line is JSON"
    );
}

// Multi-threaded: the test blocks while the daemon drains, and the client's connection task must
// still run to close its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_log_has_one_line_per_decision_and_redacts_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--audit", "--audit-output", log.to_str().unwrap()],
    );
    let answer = check(&daemon.url(), &physician_reads_patient("audit-1"))
        .await
        .unwrap();
    let lines = wait_for_lines(&log, 2);
    let read = lines
        .iter()
        .find(|l| l["action"] == "read")
        .expect("a line for read");
    assert_eq!(read["request_id"], "audit-1");
    assert_eq!(read["principal_id"], "dr-house");
    assert_eq!(
        (read["kind"].as_str(), read["id"].as_str()),
        (Some("Patient"), Some("123"))
    );
    assert_eq!(
        (
            read["effect"].as_str(),
            read["policy"].as_str(),
            read["rule"].as_str()
        ),
        (Some("allow"), Some("physician"), Some("clinical-care"))
    );
    assert_eq!(read["policy_version"], json!(answer.policy_version));
    assert!(read["time"].as_str().unwrap().ends_with('Z'));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("Alice Secret") && !text.contains("123-45-6789"),
        "attributes must not leak by default:\n{text}"
    );
    drop(daemon);

    // Opted in, to stdout.
    let mut daemon = Daemon::start(
        &common::bundled_policies(),
        &["--audit", "--audit-include-attributes"],
    );
    check(&daemon.url(), &physician_reads_patient("audit-2"))
        .await
        .unwrap();
    daemon.signal("TERM");
    assert!(daemon
        .wait_exit(Duration::from_secs(10))
        .expect("exits")
        .success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(daemon.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let lines: Vec<Json> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["resource_attr"]["name"], "Alice Secret");
    assert_eq!(lines[0]["principal_attr"]["ssn"], "123-45-6789");
}

/// The decision log's lines once it has at least `n` (the writer thread writes them).
fn wait_for_lines(path: &Path, n: usize) -> Vec<Json> {
    let lines = || -> Vec<Json> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    common::wait_for_blocking("the decision log's lines", || lines().len() >= n);
    lines()
}

/// A CA and certificates it signs, written as PEM files.
struct Pki {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (certificate PEM, key PEM) for a server (localhost, 127.0.0.1) or a client.
    fn leaf(&self, server: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            vec!["client.verdict.test".to_string()]
        };
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn tls_channel(
    addr: &str,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect()
        .await
}

async fn allowed(channel: Channel) -> Result<bool, tonic::Status> {
    let mut client = AuthorizerClient::new(channel);
    let r = client
        .check(verdict::server::convert::to_proto(
            &physician_reads_patient("tls"),
        ))
        .await?
        .into_inner();
    Ok(r.results[0].actions["read"].effect == Effect::Allow as i32)
}

#[tokio::test]
async fn tls_and_mutual_tls_refuse_what_they_must_and_rotate_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Verdict test CA");
    let (cert, key) = pki.leaf(true);
    let cert_path = write(dir.path(), "server.pem", &cert);
    let key_path = write(dir.path(), "server.key", &key);
    let clients = Pki::new("Verdict client CA");
    let ca_path = write(dir.path(), "clients.pem", &clients.ca_pem);
    let (client_cert, client_key) = clients.leaf(false);
    let stranger = Pki::new("Someone else");
    let (stranger_cert, stranger_key) = stranger.leaf(false);

    let daemon = Daemon::start(
        &common::bundled_policies(),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--tls-client-ca",
            ca_path.to_str().unwrap(),
            // The poll is an hour away: the file watch must see the rotation.
            "--tls-reload-secs",
            "3600",
        ],
    );
    // Plaintext is refused.
    assert!(check(&daemon.url(), &physician_reads_patient("plain"))
        .await
        .is_err());
    // TLS without a client certificate is refused under mutual TLS.
    let no_identity = match tls_channel(&daemon.addr, &pki.ca_pem, None).await {
        Ok(channel) => allowed(channel).await.is_err(),
        Err(_) => true,
    };
    assert!(
        no_identity,
        "a client without a certificate must be refused"
    );
    // A certificate from another CA is refused.
    let wrong = match tls_channel(
        &daemon.addr,
        &pki.ca_pem,
        Some((&stranger_cert, &stranger_key)),
    )
    .await
    {
        Ok(channel) => allowed(channel).await.is_err(),
        Err(_) => true,
    };
    assert!(
        wrong,
        "a client certificate from an unknown CA must be refused"
    );
    // The right certificate is served.
    let channel = tls_channel(&daemon.addr, &pki.ca_pem, Some((&client_cert, &client_key)))
        .await
        .unwrap();
    assert!(allowed(channel).await.unwrap());

    // Rotate the server certificate to one from a new CA: new connections get it.
    let rotated = Pki::new("Rotated CA");
    let (cert, key) = rotated.leaf(true);
    write(dir.path(), "server.key", &key);
    write(dir.path(), "server.pem", &cert);
    daemon
        .wait_metric("verdict_tls_reloads_total{result=\"ok\"}", |n| n == 1.0)
        .await;
    let channel = tls_channel(
        &daemon.addr,
        &rotated.ca_pem,
        Some((&client_cert, &client_key)),
    )
    .await
    .expect("the rotated certificate is served");
    assert!(allowed(channel).await.unwrap());
    assert!(
        tls_channel(&daemon.addr, &pki.ca_pem, Some((&client_cert, &client_key)))
            .await
            .is_err(),
        "the old certificate is gone"
    );
}

#[tokio::test]
async fn oversized_messages_and_deadlines_are_clear_statuses() {
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &[
            "--max-message-bytes",
            "2000",
            "--request-timeout-ms",
            "1",
            "--max-resources",
            "5000",
        ],
    );
    let mut big = physician_reads_patient("big");
    big.resources[0].resource.attr["note"] = json!("x".repeat(5000));
    let status = check(&daemon.url(), &big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("the limit is: 2000 bytes"),
        "{}",
        status.message()
    );
    drop(daemon);

    // 40,000 decisions take far longer than 50 ms; a small request far less.
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &[
            "--request-timeout-ms",
            "50",
            "--max-resources",
            "20000",
            "--max-decisions",
            "40000",
        ],
    );
    let mut many = physician_reads_patient("many");
    let template = many.resources[0].clone();
    many.resources = vec![template; 20000];
    let status = check(&daemon.url(), &many).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    // How far it got: "after N of 40000 decisions", or, on a machine so busy that decoding took
    // the 50 ms, "while waiting for an evaluation thread", or (the backstop) a second more.
    assert!(
        status.message().starts_with("deadline exceeded ")
            && (status.message().contains("of 40000 decisions")
                || status.message().contains("40000 decisions requested")
                || status.message().contains("still being received or decoded")),
        "{}",
        status.message()
    );
    // Small requests still pass.
    assert!(check(&daemon.url(), &physician_reads_patient("small"))
        .await
        .is_ok());
}

/// A call whose body never finishes arriving never reaches the authority: the backstop answers
/// it DEADLINE_EXCEEDED a margin (1 s) after the deadline, counted like any other refusal, not
/// tonic's CANCELLED "Timeout expired".
#[tokio::test]
async fn a_call_whose_body_never_arrives_ends_deadline_exceeded() {
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--request-timeout-ms", "100"],
    );
    let tcp = tokio::net::TcpStream::connect(daemon.addr.to_string())
        .await
        .unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("{}/verdict.v1.Authorizer/Check", daemon.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (answer, mut body) = client.send_request(request, false).unwrap();
    // A gRPC frame header announcing 100 bytes, then 2 of them, and nothing more.
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 100, 10, 0]), false)
        .unwrap();
    let started = std::time::Instant::now();
    let answer = answer.await.unwrap();
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(header("grpc-status"), "4", "DEADLINE_EXCEEDED: {answer:?}");
    assert!(
        header("grpc-message").contains("still%20being%20received%20or%20decoded")
            || header("grpc-message").contains("still being received or decoded"),
        "{answer:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    daemon
        .wait_metric(
            "verdict_requests_total{method=\"Check\",status=\"DEADLINE_EXCEEDED\"}",
            |n| n >= 1.0,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_reports_not_serving_then_exits_cleanly_after_in_flight_requests() {
    let mut daemon = Daemon::start(
        &common::bundled_policies(),
        &[
            "--shutdown-drain-secs",
            "1",
            "--request-timeout-ms",
            "0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    // The plain-HTTP probe endpoint on the metrics listener (what kubelet probes when TLS is on).
    let probe = format!("http://{}/healthz", daemon.metrics_addr.as_ref().unwrap());
    assert_eq!(http_get(&probe), (200, "SERVING\n".to_string()));
    let channel = Endpoint::from_shared(daemon.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving =
        |s: i32| s == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "verdict.v1.Authorizer".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert!(serving(status));

    // A Check in flight across the whole shutdown: its headers are sent now, its message only
    // once the daemon has stopped accepting connections, so it cannot finish before.
    let (send_message, message) = tokio::sync::mpsc::channel::<proto::CheckRequest>(1);
    let body = tokio_stream::wrappers::ReceiverStream::new(message);
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let in_flight = tokio::spawn(async move {
        grpc.client_streaming(
            tonic::Request::new(body),
            tonic::codegen::http::uri::PathAndQuery::from_static("/verdict.v1.Authorizer/Check"),
            tonic_prost::ProstCodec::<proto::CheckRequest, proto::CheckResponse>::default(),
        )
        .await
    });
    daemon.signal("TERM");

    // Draining: NOT_SERVING, yet still answering.
    common::wait_for("health turns NOT_SERVING", || {
        let mut health = health.clone();
        async move {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "verdict.v1.Authorizer".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            !serving(status)
        }
    })
    .await;
    assert_eq!(
        http_get(&probe).0,
        503,
        "the metrics /healthz follows gRPC health"
    );
    let mut client = AuthorizerClient::new(channel);
    assert!(client
        .check(verdict::server::convert::to_proto(
            &physician_reads_patient("draining")
        ))
        .await
        .is_ok());

    // After the drain, new connections are refused; the request in flight still gets its answer.
    let addr = daemon.addr.clone();
    common::wait_for("the daemon stops accepting connections", || {
        let addr = addr.clone();
        async move { tokio::net::TcpStream::connect(addr).await.is_err() }
    })
    .await;
    assert!(
        !in_flight.is_finished(),
        "it cannot finish without its message"
    );
    send_message
        .send(verdict::server::convert::to_proto(
            &physician_reads_patient("in-flight"),
        ))
        .await
        .unwrap();
    drop(send_message);
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes")
        .into_inner();
    assert_eq!(answer.request_id, "in-flight");
    assert_eq!(
        answer.results[0].actions["read"].effect,
        Effect::Allow as i32
    );
    drop(client);
    drop(health);
    let status = daemon
        .wait_exit(Duration::from_secs(60))
        .expect("the daemon exits after draining");
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_configuration_fails_at_start_with_a_clear_message_and_help_lists_every_setting() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "verdict.yaml",
        "listen: 127.0.0.1:0\nmetrics:\n  listn: 127.0.0.1:9464\n",
    );
    let out = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid configuration")
            && stderr.contains("verdict.yaml:3")
            && stderr.contains("listn"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["serve", "--tls-cert", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls.cert and tls.key go together"));
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("VERDICT_METRICS_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--config",
        "--policies",
        "--listen",
        "--tls-cert",
        "--tls-client-ca",
        "--metrics-listen",
        "--http-listen",
        "--log-format",
        "--audit",
        "--audit-include-attributes",
        "--max-message-bytes",
        "--request-timeout-ms",
        "--shutdown-drain-secs",
        "VERDICT_LISTEN",
        "[default: 127.0.0.1:50051]",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}:\n{help}");
    }
}

#[tokio::test]
async fn the_http_json_api_answers_check_plan_and_status_like_grpc_and_the_readme_curl_lines_work()
{
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--http-listen", "127.0.0.1:0"],
    );
    let base = format!(
        "http://{}",
        daemon.http_addr.as_ref().expect("HTTP address announced")
    );
    let body = physician_reads_patient_json("http-1");
    let mut response = ureq::post(&format!("{base}/v1/check"))
        .send_json(&body)
        .unwrap();
    assert_eq!(response.headers().get("x-request-id").unwrap(), "http-1");
    let answer: Json = response.body_mut().read_json().unwrap();
    assert_eq!(
        answer["results"][0]["actions"]["read"]["effect"],
        "EFFECT_ALLOW"
    );
    assert_eq!(
        answer["results"][0]["actions"]["delete"]["effect"],
        "EFFECT_DENY"
    );
    assert_eq!(answer["results"][0]["resource"]["id"], "123");

    // gRPC answers the same request with the same JSON, byte for byte.
    let grpc = check(&daemon.url(), &physician_reads_patient("http-1"))
        .await
        .unwrap();
    assert_eq!(
        verdict::server::json::check_response_json(&grpc),
        answer,
        "gRPC and HTTP/JSON agree"
    );

    let columns = json!({"practice_id": "practice_id", "celebrity": "celebrity", "primary_physician_id": "primary_physician_id"});
    let plan = |dialect: &str| {
        json!({"request_id": "plan-1", "principal": {"id": "n-joy", "roles": ["nurse"], "scopes": ["user/*.rs"], "attr": {"practice_id": "7"}}, "resource_kind": "Patient", "action": "read",
                      "sql": {"dialect": dialect, "columns": columns}})
    };
    let planned: Json = ureq::post(&format!("{base}/v1/plan"))
        .send_json(plan("SQL_DIALECT_POSTGRES"))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(planned["kind"], "PLAN_KIND_CONDITIONAL");
    assert_eq!(planned["filter"]["op"], "FILTER_OP_AND");
    assert!(
        planned["sql"]["where"]
            .as_str()
            .unwrap()
            .contains("practice_id = $"),
        "{planned}"
    );
    // The alias names the same dialect; an unknown name is refused, naming the accepted ones.
    let aliased: Json = ureq::post(&format!("{base}/v1/plan"))
        .send_json(plan("postgres"))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(aliased, planned);
    match ureq::post(&format!("{base}/v1/plan"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(plan("oracle"))
    {
        Ok(mut r) => {
            assert_eq!(r.status(), 400);
            let error: Json = r.body_mut().read_json().unwrap();
            assert_eq!(error["code"], "INVALID_ARGUMENT");
            let message = error["message"].as_str().unwrap();
            assert!(
                message.contains("\"oracle\"") && message.contains("SQL_DIALECT_SQLITE (sqlite)"),
                "{message}"
            );
        }
        Err(e) => panic!("{e}"),
    }

    // Status, as Admin/Status answers it.
    let status: Json = ureq::get(&format!("{base}/v1/status"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let admin = verdict::server::proto::admin_client::AdminClient::connect(daemon.url())
        .await
        .unwrap()
        .status(verdict::server::proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status["active_version"], admin.active_version);
    assert_eq!(status["active_version"], grpc.policy_version);
    assert_eq!(status["rule_count"], admin.rule_count.to_string());
    assert_eq!(
        status["loaded_at"],
        admin.loaded_at.unwrap().to_string(),
        "RFC 3339, as the protobuf JSON mapping has it"
    );
    assert!(status.get("last_error").is_none(), "{status}");

    // Errors are JSON with the gRPC code, and HTTP statuses that fit.
    match ureq::post(&format!("{base}/v1/check")).send_json(json!({"resources": []})) {
        Err(ureq::Error::StatusCode(400)) => {}
        other => panic!("expected 400, got {other:?}"),
    }
    let (status, _) = http_get(&format!("{base}/healthz"));
    assert_eq!(status, 200);

    // Every curl example of README.md for the HTTP/JSON API, run against this daemon, printing
    // the JSON the README shows after it.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let curls: Vec<_> = common::commands_and_outputs(&readme)
        .into_iter()
        .filter(|(block, _)| {
            block.content.starts_with("curl ") && block.content.contains("127.0.0.1:8080/v1/")
        })
        .collect();
    assert_eq!(curls.len(), 2, "README.md's curl examples: {curls:#?}");
    for (block, shown) in curls {
        let line = block
            .content
            .trim()
            .replace("127.0.0.1:8080", daemon.http_addr.as_ref().unwrap());
        let out = Command::new("sh")
            .args(["-c", &format!("{line} --fail --silent --show-error")])
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: Json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{line}: not JSON ({e})"));
        let shown = shown.unwrap_or_else(|| panic!("README.md:{}: no output shown", block.line));
        let shown: Json = serde_json::from_str(&shown.content).expect("the README shows JSON");
        assert_eq!(answer, shown, "README.md:{}", block.line);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
