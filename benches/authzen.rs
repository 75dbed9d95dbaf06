//! AuthZEN over HTTP next to gRPC Check and Verdict's own HTTP Check, on the same decisions, and
//! resource search over 10,000 stored resources: the real daemon (release build) on the
//! certification example plus 10,000 generated stored records, one client connection per API,
//! requests one after another. Prints the median and p99 latency of each and the ratios to gRPC
//! Check.
//!
//! Run: `cargo bench --bench authzen` (`AUTHZEN_BENCH_REQUESTS`, default 3,000 per row).
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use verdict::server::proto::authorizer_client::AuthorizerClient;

const STORED: usize = 10_000;

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with("_test.yaml") {
            std::fs::copy(entry.path(), to.join(name)).unwrap();
        }
    }
}

/// The daemon on `dir`: its gRPC and HTTP addresses.
fn start(dir: &Path) -> (std::process::Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .arg("--policies")
        .arg(dir)
        .env("VERDICT_LOG", "warn,verdict=info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the daemon starts");
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut grpc, mut http) = (None, None);
    let field = |line: &str, name: &str| -> Option<String> {
        let at = line.find(&format!("{name}="))? + name.len() + 1;
        Some(
            line[at..]
                .split_whitespace()
                .next()?
                .trim_matches('"')
                .to_string(),
        )
    };
    for line in lines.map_while(Result::ok) {
        match field(&line, "listener").as_deref() {
            Some("grpc") => grpc = field(&line, "addr"),
            Some("http") => http = field(&line, "addr"),
            _ => {}
        }
        if grpc.is_some() && http.is_some() {
            break;
        }
    }
    (
        child,
        grpc.expect("a gRPC address"),
        http.expect("an HTTP address"),
    )
}

struct Row {
    name: String,
    median: Duration,
    p99: Duration,
}

fn measure(name: &str, requests: usize, mut once: impl FnMut()) -> Row {
    for _ in 0..requests / 10 {
        once();
    }
    let mut times: Vec<Duration> = (0..requests)
        .map(|_| {
            let start = Instant::now();
            once();
            start.elapsed()
        })
        .collect();
    times.sort();
    Row {
        name: name.to_string(),
        median: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let requests: usize = std::env::var("AUTHZEN_BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000);
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/authzen/certification");
    copy_dir(&example, dir.path());
    let mut stored = String::from("resources:\n  kind: record\n  entries:\n");
    for i in 0..STORED {
        let status = if i % 2 == 0 { "active" } else { "archived" };
        stored.push_str(&format!(
            "    - {{id: r-{i:05}, attr: {{status: {status}}}}}\n"
        ));
    }
    std::fs::write(dir.path().join("stored.yaml"), stored).unwrap();
    let (mut child, grpc, http) = start(dir.path());
    let base = format!("http://{http}");
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let post = |path: &str, body: &Json| -> Json {
        agent
            .post(&format!("{base}{path}"))
            .header("content-type", "application/json")
            .send(body.to_string().as_bytes())
            .expect("an answer")
            .body_mut()
            .read_json()
            .expect("JSON")
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = runtime
        .block_on(AuthorizerClient::connect(format!("http://{grpc}")))
        .unwrap();
    let check = |resources: usize| {
        json!({"principal": {"id": "alice"},
               "resources": (0..resources).map(|i| json!({"resource": {"kind": "record", "id": format!("r-{:05}", i * 2)}, "actions": ["write"]})).collect::<Vec<_>>()})
    };
    let one = check(1);
    let ten = check(10);
    let message = |body: &Json| {
        let body: verdict::server::json::CheckBody = serde_json::from_value(body.clone()).unwrap();
        verdict::server::convert::to_proto(&body.into_call().request)
    };
    let (one_message, ten_message) = (message(&one), message(&ten));
    let evaluation = json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "write"},
                            "resource": {"type": "record", "id": "r-00000"}});
    let evaluations = json!({"subject": {"type": "user", "id": "alice"}, "action": {"name": "write"},
        "evaluations": (0..10).map(|i| json!({"resource": {"type": "record", "id": format!("r-{:05}", i * 2)}})).collect::<Vec<_>>()});
    // Every API answers the same decisions before anything is timed.
    let answer = runtime
        .block_on(client.check(one_message.clone()))
        .unwrap()
        .into_inner();
    assert_eq!(answer.results[0].actions["write"].effect, 1, "gRPC allows");
    assert_eq!(
        post("/v1/check", &one)["results"][0]["actions"]["write"]["effect"],
        "EFFECT_ALLOW"
    );
    assert_eq!(post("/access/v1/evaluation", &evaluation)["decision"], true);
    let batch = post("/access/v1/evaluations", &evaluations);
    assert_eq!(batch["evaluations"].as_array().unwrap().len(), 10);
    assert!(batch["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["decision"] == true));
    let search = json!({"subject": {"type": "user", "id": "bob"}, "action": {"name": "write"}, "resource": {"type": "record"}});
    let found = post("/access/v1/search/resource", &search);
    assert_eq!(
        found["results"].as_array().unwrap().len(),
        STORED / 2 + 1,
        "bob writes the archived ones"
    );
    let mut paged = search.clone();
    paged["page"] = json!({"limit": 100});
    let rows = vec![
        measure("gRPC Check, 1 decision", requests, || {
            runtime.block_on(client.check(one_message.clone())).unwrap();
        }),
        measure("HTTP /v1/check, 1 decision", requests, || {
            post("/v1/check", &one);
        }),
        measure("AuthZEN evaluation", requests, || {
            post("/access/v1/evaluation", &evaluation);
        }),
        measure("gRPC Check, 10 resources", requests, || {
            runtime.block_on(client.check(ten_message.clone())).unwrap();
        }),
        measure("AuthZEN evaluations, 10 items", requests, || {
            post("/access/v1/evaluations", &evaluations);
        }),
        measure(
            "AuthZEN resource search, 10,000 stored, page of 100",
            requests / 10,
            || {
                post("/access/v1/search/resource", &paged);
            },
        ),
        measure(
            "AuthZEN resource search, 10,000 stored, all 5,001",
            requests / 10,
            || {
                post("/access/v1/search/resource", &search);
            },
        ),
    ];
    let base_median = rows[0].median;
    println!(
        "{:<55} {:>10} {:>10} {:>8}",
        "request (one connection, one at a time)", "median", "p99", "x gRPC"
    );
    for row in &rows {
        println!(
            "{:<55} {:>8.1}µs {:>8.1}µs {:>8.2}",
            row.name,
            row.median.as_secs_f64() * 1e6,
            row.p99.as_secs_f64() * 1e6,
            row.median.as_secs_f64() / base_median.as_secs_f64()
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
