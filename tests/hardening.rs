//! The attacks of the hardening review, each through the real server (gRPC, and HTTP/JSON where
//! both apply): what an attacker or a careless caller sends, and the deny or clear error it must
//! get. Stalling (a comprehension over a request-supplied list, 32 at once), empty identities,
//! numbers and JSON a gateway would read otherwise, over-deep and oversized messages. (Tokens
//! without a subject or with a malformed `exp` are in tests/token.rs, broken pushes in
//! tests/reload_gate.rs.)
use crate::common;

use std::time::{Duration, Instant};

use common::{Daemon, TestServer};
use serde_json::{json, Value as Json};
use verdict::server::proto;
use verdict::server::proto::authorizer_client::AuthorizerClient;

fn check_request(value: Json) -> proto::CheckRequest {
    common::check_message(value)
}

/// A physician of practice 7 whose only scope is the SMART launch patient's observations.
fn launched_physician(launch_patient: &str) -> Json {
    json!({
        "id": "dr-launch", "roles": ["physician"], "scopes": ["patient/Observation.read"],
        "attr": {"practice_id": "7", "patient": launch_patient},
    })
}

/// A `patient/` scope with launch patient "" once covered every resource whose patient is "":
/// an empty id is no patient, on either side. (The clinic's schema refuses empty ids before any
/// rule; this runs on a copy whose schema allows them, so that the scope gate itself is tested.)
#[tokio::test]
async fn a_patient_scope_needs_a_patient_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::bundled_policies().join("clinic")).unwrap() {
        let entry = entry.unwrap();
        if verdict::policy::is_test_suite(&entry.path()) {
            continue; // its empty-id cases expect the schema's refusal
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        std::fs::write(
            dir.path().join(entry.file_name()),
            text.replace("non_empty: true", "non_empty: false"),
        )
        .unwrap();
    }
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let read = |launch: &str, owner: &str| {
        let request = check_request(json!({
            "principal": launched_physician(launch),
            "resources": [{"resource": {"kind": "Observation", "id": "obs-1",
                           "attr": {"practice_id": "7", "patient_id": owner}},
                           "actions": ["read"]}],
        }));
        let mut client = client.clone();
        async move {
            let response = client.check(request).await.unwrap().into_inner();
            response.results[0].actions["read"].clone()
        }
    };
    let allowed = read("123", "123").await;
    assert_eq!(allowed.effect, proto::Effect::Allow as i32, "{allowed:?}");
    for (launch, owner) in [("", ""), ("123", ""), ("", "123")] {
        let decision = read(launch, owner).await;
        assert_eq!(
            decision.effect,
            proto::Effect::Deny as i32,
            "launch {launch:?}, resource {owner:?}: {decision:?}"
        );
        assert_eq!(decision.rule, "scope-gate", "{decision:?}");
    }

    // PlanFilter agrees: no launch patient, no rows; with one, never the rows of patient "".
    let plan = |launch: &str| proto::PlanFilterRequest {
        principal: check_request(json!({"principal": launched_physician(launch), "resources": []}))
            .principal,
        resource_kind: "Observation".into(),
        action: "read".into(),
        ..Default::default()
    };
    let empty = client.plan_filter(plan("")).await.unwrap().into_inner();
    assert_eq!(
        empty.kind,
        proto::PlanKind::AlwaysDenied as i32,
        "{empty:?}"
    );
    let launched = client.plan_filter(plan("123")).await.unwrap().into_inner();
    assert_eq!(launched.kind, proto::PlanKind::Conditional as i32);
    let filter = format!("{:?}", launched.filter);
    assert!(filter.contains("\"123\""), "{filter}");

    // Over HTTP/JSON, the same decisions.
    let daemon = common::Daemon::start(dir.path(), &["--http-listen", "127.0.0.1:0"]);
    let base = format!("http://{}", daemon.http_addr.as_ref().unwrap());
    for (launch, owner, effect) in [
        ("123", "123", "EFFECT_ALLOW"),
        ("", "", "EFFECT_DENY"),
        ("123", "", "EFFECT_DENY"),
        ("", "123", "EFFECT_DENY"),
    ] {
        let body = json!({
            "principal": launched_physician(launch),
            "resources": [{"resource": {"kind": "Observation", "id": "obs-1",
                           "attr": {"practice_id": "7", "patient_id": owner}},
                           "actions": ["read"]}],
        });
        let (status, answer) = post(&base, "/v1/check", "application/json", body.to_string());
        assert_eq!(status, 200, "{answer}");
        let decision = &answer["results"][0]["actions"]["read"];
        assert_eq!(
            decision["effect"], effect,
            "launch {launch:?}, resource {owner:?}: {answer}"
        );
        if effect == "EFFECT_DENY" {
            assert_eq!(decision["rule"], "scope-gate", "{answer}");
        }
    }
}

/// `POST {path}` with a content type and a body: the status and the body as JSON (every error of
/// the API is JSON).
fn post(base: &str, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> (u16, Json) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(&format!("{base}{path}"))
        .header("content-type", content_type)
        .send(&body.into()[..])
        .expect("an answer");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: the body is not JSON ({e}): {text:?}"));
    (status, json)
}

/// `POST {path}` of the file `body` by curl, with `expect` as its `Expect` header (curl sends
/// `Expect: 100-continue` for bodies over 1 MB; `Expect:` turns it off): the status and the body.
fn curl(base: &str, path: &str, expect: &str, body: &std::path::Path) -> (u16, Json) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-w",
            "\n%{http_code}",
            "-H",
            "content-type: application/json",
        ])
        .args(["-H", expect, "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!("{base}{path}"))
        .output()
        .expect("curl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl ({expect}): {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (text, status) = stdout.rsplit_once('\n').unwrap();
    let json = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{status}: the body is not JSON ({e}): {text:?}"));
    (status.parse().unwrap(), json)
}

/// `POST /v1/check` of each body in turn on one HTTP/1.1 connection, all written before any
/// answer is read: each answer's status and JSON body.
fn one_connection(addr: &str, bodies: &[&[u8]]) -> Vec<(u16, Json)> {
    use std::io::{BufRead, BufReader, Read, Write};
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let requests: Vec<Vec<u8>> = bodies
            .iter()
            .map(|body| {
                let mut request = format!(
                    "POST /v1/check HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                request.extend_from_slice(body);
                request
            })
            .collect();
        std::thread::spawn(move || {
            for request in requests {
                stream.write_all(&request).unwrap();
            }
        })
    };
    let mut reader = BufReader::new(stream);
    let answers = bodies
        .iter()
        .map(|_| {
            let mut status_line = String::new();
            reader.read_line(&mut status_line).unwrap();
            let status = status_line.split_whitespace().nth(1).unwrap_or_default();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            (
                status.parse().unwrap_or_else(|_| panic!("{status_line:?}")),
                serde_json::from_slice(&body).unwrap(),
            )
        })
        .collect();
    writer.join().unwrap();
    answers
}

fn assert_error(answer: &(u16, Json), status: u16, code: &str, says: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["message"].as_str().expect("a message");
    assert!(message.contains(says), "{message:?} lacks {says:?}");
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "one shape: code and message: {body}"
    );
}

/// The README's Check, as the HTTP body; `principal` replaced.
fn house_reads_patient(principal: Json) -> Json {
    json!({
        "principal": principal,
        "resources": [{"resource": {"kind": "Patient", "id": "123",
                       "attr": {"practice_id": "7", "patient_id": "123", "celebrity": false}},
                       "actions": ["read"]}],
    })
}

fn house() -> Json {
    json!({"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"],
           "attr": {"practice_id": "7"}})
}

/// A principal without an id read a celebrity record whose `primary_physician_id` is "": an
/// empty id is now refused before any rule, over gRPC and HTTP, for Check and PlanFilter.
#[tokio::test]
async fn a_principal_without_an_id_is_refused() {
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--http-listen", "127.0.0.1:0"],
    );
    let celebrity = json!({
        "principal": {"roles": ["physician"], "scopes": ["user/*.cruds"], "attr": {"practice_id": "7"}},
        "resources": [{"resource": {"kind": "Patient", "id": "789",
                       "attr": {"practice_id": "7", "patient_id": "789", "celebrity": true,
                                "primary_physician_id": ""}},
                       "actions": ["read"]}],
    });
    let mut client = AuthorizerClient::connect(daemon.url()).await.unwrap();
    let status = client
        .check(check_request(celebrity.clone()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("principal.id must not be empty"),
        "{status:?}"
    );
    let plan = proto::PlanFilterRequest {
        principal: check_request(celebrity.clone()).principal,
        resource_kind: "Patient".into(),
        action: "read".into(),
        ..Default::default()
    };
    let status = client.plan_filter(plan).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let base = format!("http://{}", daemon.http_addr.as_deref().unwrap());
    let answer = post(
        &base,
        "/v1/check",
        "application/json",
        celebrity.to_string(),
    );
    assert_error(
        &answer,
        400,
        "INVALID_ARGUMENT",
        "principal.id must not be empty",
    );
    let answer = post(
        &base,
        "/v1/plan",
        "application/json",
        json!({"principal": {"roles": ["physician"]}, "resource_kind": "Patient", "action": "read"})
            .to_string(),
    );
    assert_error(
        &answer,
        400,
        "INVALID_ARGUMENT",
        "principal.id must not be empty",
    );
    // With an id, the same record is the primary physician's only.
    let mut named = celebrity.clone();
    named["principal"]["id"] = json!("dr-house");
    let (status, body) = post(&base, "/v1/check", "application/json", named.to_string());
    assert_eq!(status, 200);
    assert_eq!(
        body["results"][0]["actions"]["read"]["effect"], "EFFECT_DENY",
        "{body}"
    );
}

/// Numbers and JSON over HTTP: what a gateway in front could read differently is refused, every
/// error is JSON of one shape, and the protobuf JSON mapping's camelCase is accepted.
#[tokio::test]
async fn http_bodies_are_read_strictly_and_every_error_is_json() {
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--http-listen", "127.0.0.1:0"],
    );
    let base = format!("http://{}", daemon.http_addr.as_deref().unwrap());
    // Patient 9007199254740993 would read the invoice of 9007199254740992: the same double.
    let invoice = |patient: &str| {
        format!(
            r#"{{"principal":{{"id":"alice","roles":["patient"],"scopes":["patient/*.rs"],"attr":{{"patient_id":{patient},"patient":"123"}}}},"resources":[{{"resource":{{"kind":"Invoice","id":"1","attr":{{"practice_id":"7","patient_id":9007199254740992}}}},"actions":["read"]}}]}}"#
        )
    };
    let answer = post(
        &base,
        "/v1/check",
        "application/json",
        invoice("9007199254740993"),
    );
    assert_error(
        &answer,
        400,
        "INVALID_ARGUMENT",
        "principal.attr.patient_id: the integer 9007199254740993 is beyond ±(2^53 - 1)",
    );
    for inexact in ["-9007199254740993", "9.007199254740993e15", "1e300"] {
        let answer = post(&base, "/v1/check", "application/json", invoice(inexact));
        assert_error(&answer, 400, "INVALID_ARGUMENT", "send it as a string");
    }
    // Duplicate keys: refused, not last-wins, in attributes and in either spelling of a field.
    let duplicate = r#"{"principal":{"id":"alice","id":"dr-house","roles":["physician"]},"resources":[{"resource":{"kind":"Patient","id":"123"},"actions":["read"]}]}"#;
    let answer = post(&base, "/v1/check", "application/json", duplicate);
    assert_error(
        &answer,
        400,
        "INVALID_ARGUMENT",
        "principal.id: given twice",
    );
    let twins = r#"{"principal":{"id":"n-joy","roles":["nurse"]},"resource_kind":"Patient","resourceKind":"Note","action":"read"}"#;
    let answer = post(&base, "/v1/plan", "application/json", twins);
    assert_error(
        &answer,
        400,
        "INVALID_ARGUMENT",
        "resourceKind: given twice",
    );
    let in_attr = r#"{"principal":{"id":"dr-house","roles":["physician"],"attr":{"practice_id":"9","practice_id":"7"}},"resources":[{"resource":{"kind":"Patient","id":"123"},"actions":["read"]}]}"#;
    let answer = post(&base, "/v1/check", "application/json", in_attr);
    assert_error(
        &answer,
        400,
        "INVALID_ARGUMENT",
        "principal.attr.practice_id: given twice",
    );
    // application/json only.
    let body = house_reads_patient(house()).to_string();
    for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let answer = post(&base, "/v1/check", content_type, body.clone());
        assert_error(
            &answer,
            415,
            "INVALID_ARGUMENT",
            "content-type must be application/json",
        );
    }
    let (status, _) = post(
        &base,
        "/v1/check",
        "application/json; charset=utf-8",
        body.clone(),
    );
    assert_eq!(status, 200);
    // A 5 MB body: a JSON 413, whether the client writes it all before reading (as this one
    // does: the server reads the rest of the body before answering, else the connection is
    // reset under the client's write), reads while it writes, or waits for `100 Continue`.
    let huge = format!(r#"{{"request_id":"{}"}}"#, "x".repeat(5 << 20));
    let answer = post(&base, "/v1/check", "application/json", huge.clone());
    assert_error(&answer, 413, "OUT_OF_RANGE", "larger than 4194304 bytes");
    let answer = post(&base, "/v1/check", "text/plain", huge.clone());
    assert_error(&answer, 415, "INVALID_ARGUMENT", "must be application/json");
    let answer = post(&base, "/v1/nothing", "application/json", huge.clone());
    assert_error(&answer, 404, "NOT_FOUND", "no such endpoint");
    let body_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body_file.path(), &huge).unwrap();
    for expect in ["Expect: 100-continue", "Expect:"] {
        let answer = curl(&base, "/v1/check", expect, body_file.path());
        assert_error(&answer, 413, "OUT_OF_RANGE", "larger than 4194304 bytes");
    }
    // The refused body is read to its end: the connection then serves the next request.
    let answers = one_connection(
        daemon.http_addr.as_deref().unwrap(),
        &[huge.as_bytes(), body.as_bytes()],
    );
    assert_error(
        &answers[0],
        413,
        "OUT_OF_RANGE",
        "larger than 4194304 bytes",
    );
    assert_eq!(answers[1].0, 200, "{}", answers[1].1);
    // Unknown paths and methods: JSON too.
    let answer = post(&base, "/v1/nothing", "application/json", "{}");
    assert_error(&answer, 404, "NOT_FOUND", "no such endpoint");
    let answer = post(&base, "/v1/status", "application/json", "{}");
    assert_error(&answer, 405, "UNIMPLEMENTED", "method not allowed");
    // The protobuf JSON mapping: camelCase as grpcurl sends it; empty fields left out.
    let camel = json!({
        "requestId": "camel-1",
        "principal": {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"],
                      "clientId": "chart-app", "attr": {"practice_id": "7"}},
        "resources": [{"resource": {"kind": "Patient", "id": "123",
                       "attr": {"practice_id": "7", "patient_id": "123", "celebrity": false}},
                       "actions": ["read", "delete"]}],
    });
    let (status, body) = post(&base, "/v1/check", "application/json", camel.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_id"], "camel-1");
    let actions = &body["results"][0]["actions"];
    assert_eq!(actions["read"]["effect"], "EFFECT_ALLOW");
    assert_eq!(
        actions["delete"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["effect", "reason"],
        "a default deny names no policy or rule, and says so by leaving them out"
    );
    let plan = json!({"requestId": "camel-2", "principal": {"id": "n-joy", "roles": ["nurse"],
                      "scopes": ["user/*.rs"], "attr": {"practice_id": "7"}},
                      "resourceKind": "Patient", "action": "read", "knownAttr": {"practice_id": "7"}});
    let (status, body) = post(&base, "/v1/plan", "application/json", plan.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request_id"], "camel-2");
}

/// A Struct nested 200 deep was INTERNAL with a multi-kilobyte message; nested beyond the
/// attribute limit but within protobuf's, it is the limit's message.
#[tokio::test]
async fn an_over_deep_struct_is_a_concise_invalid_argument() {
    let server = TestServer::start(&common::bundled_policies()).await;
    let mut client = server.client().await;
    let nested = |depth: usize| {
        let mut value = json!("leaf");
        for _ in 0..depth {
            value = json!({"a": value});
        }
        let mut request = house_reads_patient(house());
        request["resources"][0]["resource"]["attr"]["deep"] = value;
        check_request(request)
    };
    let status = client.check(nested(200)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().len() < 300,
        "{} bytes",
        status.message().len()
    );
    assert!(
        status.message().contains("recursion limit reached"),
        "{}",
        status.message()
    );
    let status = client.check(nested(20)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("attributes nest deeper than 16 levels"),
        "{}",
        status.message()
    );
}

/// A maximum-size request (1,000 resources x 100 actions) made an 8 MB answer that default gRPC
/// clients (4 MB) reject: it is refused up front, and an answer larger than the message size is
/// refused rather than sent.
#[tokio::test]
async fn answers_fit_what_clients_accept() {
    let maximal = |resources: usize, actions: usize| {
        let actions: Vec<String> = (0..actions).map(|i| format!("action-{i}")).collect();
        let resources: Vec<Json> = (0..resources)
            .map(|i| json!({"resource": {"kind": "Patient", "id": i.to_string(),
                            "attr": {"practice_id": "7", "patient_id": i.to_string(), "celebrity": false}},
                            "actions": actions}))
            .collect();
        check_request(json!({"principal": house(), "resources": resources}))
    };
    // No deadline: 10,000 decisions of a debug build on a loaded machine may take longer than
    // the default, and sizes are what this test is about.
    let daemon = Daemon::start(&common::bundled_policies(), &["--request-timeout-ms", "0"]);
    let mut client = AuthorizerClient::connect(daemon.url()).await.unwrap();
    let status = client.check(maximal(1000, 100)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("100000 actions in all exceed the limit of 10000 decisions"),
        "{}",
        status.message()
    );
    // The largest allowed answer reaches a default client (4 MB) whole.
    let answer = client.check(maximal(100, 100)).await.unwrap().into_inner();
    assert_eq!(answer.results.len(), 100);
    drop(daemon);

    // The answer-size bound holds whatever the decision limit lets through: under a smaller
    // message size, the same 10,000 decisions (about 0.8 MB of answer) are refused whole, not
    // sent and not truncated.
    let daemon = Daemon::start(
        &common::bundled_policies(),
        &["--max-message-bytes", "524288", "--request-timeout-ms", "0"],
    );
    let mut client = AuthorizerClient::connect(daemon.url()).await.unwrap();
    let status = client.check(maximal(100, 100)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status
            .message()
            .contains("more than the 524288 a client accepts"),
        "{}",
        status.message()
    );
}

/// A policy whose condition iterates over lists the request supplies (nested: each request is
/// small on the wire and long to decide).
const LISTS: &str = "agent_policy:\n  name: groups\n  principals: {roles: [clerk]}\n  rules:\n    - name: shared-with-a-group\n      effect: allow\n      actions: [read]\n      kinds: [Doc]\n      when: P.attr.groups.exists(g, P.attr.wanted.exists(w, w + R.attr.suffix == g))\n";

/// A Check that makes the condition above iterate `groups` x `groups` times for each of
/// `resources` resources, never matching.
fn expensive(groups: usize, resources: usize) -> Json {
    let groups: Vec<String> = (0..groups).map(|i| format!("group-{i}")).collect();
    let resources: Vec<Json> = (0..resources)
        .map(|i| {
            json!({"resource": {"kind": "Doc", "id": i.to_string(), "attr": {"suffix": "-none"}},
                   "actions": ["read"]})
        })
        .collect();
    json!({"principal": {"id": "c-1", "roles": ["clerk"],
                         "attr": {"groups": groups, "wanted": groups}},
           "resources": resources})
}

/// The stalling case: conditions ran on the async workers and the deadline was looked at every
/// 32 decisions, so one such request took 7.9 s under a 1 s timeout, and 32 at once froze health
/// checks, small requests and SIGTERM. Now they decide on the bounded pool: the excess is
/// refused at once (RESOURCE_EXHAUSTED, HTTP 429), each admitted one ends at its deadline, and
/// health, small requests and SIGTERM are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expensive_requests_cannot_stall_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("groups.yaml"), LISTS).unwrap();
    // No cost budget: here each request must really run until its deadline (the budget, which
    // refuses such conditions before they run, is tested on its own below).
    let mut daemon = Daemon::start(
        dir.path(),
        &[
            "--max-condition-cost",
            "0",
            "--request-timeout-ms",
            "2000",
            "--evaluation-threads",
            "2",
            "--evaluation-queue",
            "4",
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    let base = format!("http://{}", daemon.http_addr.clone().unwrap());
    let small = check_request(json!({
        "principal": {"id": "c-1", "roles": ["clerk"], "attr": {"groups": ["a-x", "b-x"], "wanted": ["b"]}},
        "resources": [{"resource": {"kind": "Doc", "id": "d", "attr": {"suffix": "-x"}}, "actions": ["read"]}],
    }));
    let channel = tonic::transport::Endpoint::from_shared(daemon.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = AuthorizerClient::new(channel.clone());
    let allowed = client.check(small.clone()).await.unwrap().into_inner();
    assert_eq!(
        allowed.results[0].actions["read"].effect,
        proto::Effect::Allow as i32
    );

    // One expensive request alone: it really is expensive (cut off at its deadline).
    let heavy = check_request(expensive(400, 50));
    let started = Instant::now();
    let status = client.check(heavy.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // 32 at once over gRPC, 8 over HTTP.
    let mut grpc = Vec::new();
    for _ in 0..32 {
        let mut client = AuthorizerClient::new(channel.clone());
        let heavy = heavy.clone();
        grpc.push(tokio::spawn(async move { client.check(heavy).await }));
    }
    let body = expensive(400, 50).to_string();
    let mut http = Vec::new();
    for _ in 0..8 {
        let (base, body) = (base.clone(), body.clone());
        http.push(tokio::task::spawn_blocking(move || {
            post(&base, "/v1/check", "application/json", body)
        }));
    }
    // The pool is full once a request has been refused for it.
    daemon
        .wait_metric("verdict_overloaded_total", |n| n >= 1.0)
        .await;
    // Meanwhile: health (gRPC and HTTP) and small requests answer within a second each.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let healthz = format!("{base}/healthz");
    for _ in 0..3 {
        let asked = Instant::now();
        let serving = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(serving.status, 1, "SERVING");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "gRPC health took {:?}",
            asked.elapsed()
        );
        let asked = Instant::now();
        let probe = healthz.clone();
        let code = tokio::task::spawn_blocking(move || ureq::get(&probe).call().unwrap().status())
            .await
            .unwrap();
        assert_eq!(code, 200);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "/healthz took {:?}",
            asked.elapsed()
        );
        let asked = Instant::now();
        let answer = client.check(small.clone()).await.unwrap().into_inner();
        assert_eq!(
            answer.results[0].actions["read"].effect,
            proto::Effect::Allow as i32
        );
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "a small Check took {:?}",
            asked.elapsed()
        );
    }
    // All of that was answered while admitted requests were still deciding.
    let in_flight = grpc.iter().filter(|task| !task.is_finished()).count()
        + http.iter().filter(|task| !task.is_finished()).count();
    assert!(
        in_flight > 0,
        "the probes ran after the pool had drained: they prove nothing"
    );

    let mut codes = std::collections::BTreeMap::new();
    for task in grpc {
        let code = match task.await.unwrap() {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    // Admitted: at most 2 deciding and 4 waiting, each ended by its deadline; the rest refused.
    assert!(
        codes.get("ResourceExhausted").copied().unwrap_or(0) >= 32 - 6,
        "{codes:?}"
    );
    assert!(
        codes
            .keys()
            .all(|c| c == "ResourceExhausted" || c == "DeadlineExceeded"),
        "{codes:?}"
    );
    let mut refused_over_http = 0;
    for task in http {
        let (status, body) = task.await.unwrap();
        match status {
            429 => {
                assert_error(&(status, body), 429, "RESOURCE_EXHAUSTED", "overloaded");
                refused_over_http += 1;
            }
            504 => assert_eq!(body["code"], "DEADLINE_EXCEEDED"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(refused_over_http > 0);

    // SIGTERM while the pool is full again: a clean exit once those end (at their deadline).
    let before = daemon.metric("verdict_overloaded_total");
    let mut wave = Vec::new();
    for _ in 0..8 {
        let mut client = AuthorizerClient::new(channel.clone());
        let heavy = heavy.clone();
        wave.push(tokio::spawn(async move { client.check(heavy).await }));
    }
    daemon
        .wait_metric("verdict_overloaded_total", |n| n > before)
        .await;
    daemon.signal("TERM");
    for task in wave {
        let status = task.await.unwrap().unwrap_err();
        assert!(
            matches!(
                status.code(),
                tonic::Code::ResourceExhausted | tonic::Code::DeadlineExceeded
            ),
            "{status:?}"
        );
    }
    let exit = daemon
        .wait_exit(Duration::from_secs(30))
        .expect("the daemon exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
    assert!(
        daemon.logs().iter().any(|l| l.contains("stopped")),
        "{:#?}",
        daemon.logs()
    );
}

/// The cost budget: a condition that could take more steps on the request's values than
/// `limits.max_condition_cost` is not evaluated; it fails closed naming its rule, at once, and a
/// small request through the same condition is decided as usual.
#[tokio::test]
async fn a_condition_over_its_cost_budget_fails_closed_naming_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let deny = "---\nresource_policy:\n  name: quarantine\n  resource: {kind: Doc}\n  rules:\n    - name: flagged-by-a-group\n      effect: deny\n      actions: [update]\n      when: P.attr.groups.exists(g, P.attr.wanted.exists(w, w == g + R.attr.suffix))\n";
    std::fs::write(
        dir.path().join("groups.yaml"),
        LISTS
            .replace("actions: [read]", "actions: [read, update]")
            .to_string()
            + deny,
    )
    .unwrap();
    let daemon = Daemon::start(dir.path(), &["--max-condition-cost", "100000"]);
    let mut client = AuthorizerClient::connect(daemon.url()).await.unwrap();
    let ask = |groups: usize| {
        let groups: Vec<String> = (0..groups).map(|i| format!("group-{i}-x")).collect();
        check_request(json!({
            "principal": {"id": "c-1", "roles": ["clerk"], "attr": {"groups": groups, "wanted": ["group-0"]}},
            "resources": [{"resource": {"kind": "Doc", "id": "d", "attr": {"suffix": "-x"}},
                           "actions": ["read", "update"]}],
        }))
    };
    // Small lists: decided as usual (read allowed through `wanted`, update denied by the guard).
    let small = client.check(ask(3)).await.unwrap().into_inner();
    let read = &small.results[0].actions["read"];
    assert_eq!(read.effect, proto::Effect::Allow as i32, "{read:?}");
    // Lists whose product is over the budget: neither condition runs.
    let big = client.check(ask(5000)).await.unwrap().into_inner();
    let read = &big.results[0].actions["read"];
    assert_eq!(read.effect, proto::Effect::Deny as i32, "{read:?}");
    assert!(
        read.reason.contains("allow rule \"shared-with-a-group\" of policy \"groups\" could not be evaluated: over the cost budget"),
        "{read:?}"
    );
    let update = &big.results[0].actions["update"];
    assert_eq!(update.effect, proto::Effect::Deny as i32, "{update:?}");
    assert_eq!(update.rule, "flagged-by-a-group", "{update:?}");
    assert!(
        update
            .reason
            .contains("could not be evaluated (fail closed): over the cost budget")
            && update.reason.contains("(the budget is 100000)"),
        "{update:?}"
    );
    // Counted as evaluation errors: exactly the two conditions of the big request (the small one
    // evaluated both without error), recorded before the answer was sent.
    assert_eq!(daemon.metric("verdict_evaluation_errors_total"), 2.0);
}
