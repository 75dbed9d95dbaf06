//! Verdict's daemon and the real Cerbos PDP over gRPC, in one run, on the same machine: each server
//! pinned to CPU 0 (`taskset -c 0`), this load generator to CPU 1 (`scripts/wire.sh` runs it so).
//!
//! First the answers: every request of the equivalence corpus (`verdict_peers::corpus`) is asked
//! of both servers over the wire and must get Verdict's engine's effects, from both. Then the
//! timing, per scenario (a physician reading one patient of his practice: 1 resource x 1 action;
//! the same physician reading 100 patients in one request), with the request encoded once and
//! sent as bytes: a closed loop of `--concurrency` requests in flight over `--connections`
//! HTTP/2 connections for `--seconds`, rounds alternating between the servers (`--rounds` each),
//! every answer decoded and counted only if it allows what the scenario allows. Printed: per
//! server and scenario the median over rounds of throughput and of each round's p50 and p99
//! latency, and the ratios.
//!
//! Env: `VERDICT_BIN` (the release daemon), `CERBOS_BIN` (from `scripts/cerbos.sh`).
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::bytes::{BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Status};
use verdict::request::CheckRequest;
use verdict::server::convert::to_proto;
use verdict::server::proto;
use verdict_peers::cerbos::{self, CerbosServer};
use verdict_peers::{corpus, verdict_effects, verdict_policies, Effects};

struct Options {
    seconds: f64,
    rounds: usize,
    concurrency: usize,
    connections: usize,
    server_cpus: String,
}

fn options() -> Options {
    let mut o = Options {
        seconds: 3.0,
        rounds: 3,
        concurrency: 16,
        connections: 2,
        server_cpus: "0".into(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--seconds" => o.seconds = value().parse().expect("--seconds N"),
            "--rounds" => o.rounds = value().parse().expect("--rounds N"),
            "--concurrency" => o.concurrency = value().parse().expect("--concurrency N"),
            "--connections" => o.connections = value().parse().expect("--connections N"),
            "--server-cpus" => o.server_cpus = value(),
            // What cargo bench passes.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// The Verdict daemon, pinned; killed when dropped.
struct VerdictServer {
    child: Child,
    addr: String,
}

impl VerdictServer {
    fn start(binary: &PathBuf, cpus: &str) -> VerdictServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new("taskset")
            .args(["-c", cpus])
            .arg(binary)
            .args(["serve", "--log-level", "error", "--listen"])
            .arg(port.to_string())
            .arg("--policies")
            .arg(verdict_peers::repository().join("policies"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the verdict daemon starts");
        let give_up = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(port).is_err() {
            assert!(Instant::now() < give_up, "verdict never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        VerdictServer {
            child,
            addr: port.to_string(),
        }
    }
}

impl Drop for VerdictServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends bytes encoded once; decodes the answer with prost.
struct PreEncoded<T>(std::marker::PhantomData<T>);

impl<T> Clone for PreEncoded<T> {
    fn clone(&self) -> Self {
        PreEncoded(std::marker::PhantomData)
    }
}

impl<T: prost::Message + Default + Send + 'static> Codec for PreEncoded<T> {
    type Encode = Bytes;
    type Decode = T;
    type Encoder = PreEncoded<T>;
    type Decoder = PreEncoded<T>;
    fn encoder(&mut self) -> Self::Encoder {
        self.clone()
    }
    fn decoder(&mut self) -> Self::Decoder {
        self.clone()
    }
}

impl<T: prost::Message + Default + Send + 'static> Encoder for PreEncoded<T> {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<T: prost::Message + Default + Send + 'static> Decoder for PreEncoded<T> {
    type Item = T;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        T::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// One of the two servers, as the generator asks it.
#[derive(Clone, Copy, PartialEq)]
enum Server {
    Verdict,
    Cerbos,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Verdict => "verdict",
            Server::Cerbos => "cerbos",
        }
    }

    fn path(self) -> PathAndQuery {
        PathAndQuery::from_static(match self {
            Server::Verdict => "/verdict.v1.Authorizer/Check",
            Server::Cerbos => cerbos::CHECK_RESOURCES,
        })
    }

    fn encode(self, request: &CheckRequest) -> Bytes {
        Bytes::from(match self {
            Server::Verdict => prost::Message::encode_to_vec(&to_proto(request)),
            Server::Cerbos => prost::Message::encode_to_vec(&cerbos::request(request)),
        })
    }

    /// Asks once; the effects of the answer (`None`: an error).
    async fn ask(
        self,
        grpc: &mut tonic::client::Grpc<Channel>,
        request: &CheckRequest,
        bytes: Bytes,
    ) -> Option<Effects> {
        grpc.ready().await.ok()?;
        match self {
            Server::Verdict => {
                let codec = PreEncoded::<proto::CheckResponse>(Default::default());
                let response = grpc
                    .unary(Request::new(bytes), self.path(), codec)
                    .await
                    .ok()?
                    .into_inner();
                Some(
                    request
                        .resources
                        .iter()
                        .zip(
                            response
                                .results
                                .iter()
                                .map(Some)
                                .chain(std::iter::repeat(None)),
                        )
                        .map(|(check, result)| {
                            check
                                .actions
                                .iter()
                                .map(|a| {
                                    result
                                        .and_then(|r| r.actions.get(a))
                                        .is_some_and(|d| d.effect == proto::Effect::Allow as i32)
                                })
                                .collect()
                        })
                        .collect(),
                )
            }
            Server::Cerbos => {
                let codec = PreEncoded::<cerbos::CheckResourcesResponse>(Default::default());
                let response = grpc
                    .unary(Request::new(bytes), self.path(), codec)
                    .await
                    .ok()?
                    .into_inner();
                Some(cerbos::effects(request, &response))
            }
        }
    }
}

async fn channel(addr: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .unwrap()
}

/// What one round measured: requests per second, p50 and p99 latency.
type Round = (f64, Duration, Duration);

/// One round: `concurrency` loops over `connections` channels for `seconds`. Returns
/// (requests per second, p50, p99) of the answers that matched `expected`.
async fn round(
    server: Server,
    addr: &str,
    request: &CheckRequest,
    expected: &Effects,
    o: &Options,
) -> Round {
    let mut channels = Vec::new();
    for _ in 0..o.connections {
        channels.push(channel(addr).await);
    }
    let bytes = server.encode(request);
    let end = Instant::now() + Duration::from_secs_f64(o.seconds);
    let mut tasks = Vec::new();
    for i in 0..o.concurrency {
        let mut grpc = tonic::client::Grpc::new(channels[i % channels.len()].clone());
        let (request, expected, bytes) = (request.clone(), expected.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut wrong = 0usize;
            while Instant::now() < end {
                let sent = Instant::now();
                match server.ask(&mut grpc, &request, bytes.clone()).await {
                    Some(effects) if effects == expected => latencies.push(sent.elapsed()),
                    _ => wrong += 1,
                }
            }
            (latencies, wrong)
        }));
    }
    let mut latencies = Vec::new();
    let mut wrong = 0;
    for task in tasks {
        let (mut l, w) = task.await.unwrap();
        latencies.append(&mut l);
        wrong += w;
    }
    assert_eq!(wrong, 0, "{}: wrong or failed answers", server.name());
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (latencies.len() as f64 / o.seconds, at(0.50), at(0.99))
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn scenario(patients: std::ops::Range<usize>) -> CheckRequest {
    use serde_json::json;
    use verdict::request::{Principal, Resource, ResourceCheck};
    CheckRequest {
        principal: Principal {
            id: "dr-house".into(),
            roles: vec!["physician".into()],
            scopes: vec!["user/*.cruds".into()],
            attr: json!({"practice_id": "7", "licensed_states": ["CA", "NY"]}),
            ..Default::default()
        },
        resources: patients
            .map(|i| ResourceCheck {
                resource: Resource {
                    kind: "Patient".into(),
                    id: i.to_string(),
                    attr: json!({"practice_id": "7", "patient_id": i.to_string(), "state": "CA",
                                 "celebrity": i.is_multiple_of(10), "primary_physician_id": "dr-wilson"}),
                },
                actions: vec!["read".into()],
            })
            .collect(),
        ..Default::default()
    }
}

fn main() {
    let o = options();
    let verdict_bin = PathBuf::from(std::env::var_os("VERDICT_BIN").unwrap_or_else(|| {
        verdict_peers::repository()
            .join("peers/target/release/verdict")
            .into()
    }));
    let cerbos_bin = PathBuf::from(
        std::env::var_os("CERBOS_BIN").expect("CERBOS_BIN: run scripts/wire.sh, which fetches it"),
    );
    let verdict = VerdictServer::start(&verdict_bin, &o.server_cpus);
    let cerbos_server =
        CerbosServer::start(&cerbos_bin, Some(&o.server_cpus)).expect("cerbos starts");
    let cerbos_addr = cerbos_server.grpc.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The answers first: both servers, over the wire, on the whole corpus.
        let set = verdict_policies();
        let mut verdict_grpc = tonic::client::Grpc::new(channel(&verdict.addr).await);
        let mut cerbos_grpc = tonic::client::Grpc::new(channel(&cerbos_addr).await);
        let (mut decisions, mut allows, mut differ) = (0, 0, Vec::new());
        for (name, request) in corpus::corpus() {
            let expected = verdict_effects(&set, &request);
            let by_verdict = Server::Verdict
                .ask(&mut verdict_grpc, &request, Server::Verdict.encode(&request))
                .await;
            let by_cerbos = Server::Cerbos
                .ask(&mut cerbos_grpc, &request, Server::Cerbos.encode(&request))
                .await;
            assert_eq!(by_verdict.as_ref(), Some(&expected), "{name}: the daemon");
            decisions += expected.iter().flatten().count();
            allows += expected.iter().flatten().filter(|&&a| a).count();
            if by_cerbos.as_ref() != Some(&expected) {
                differ.push(format!("{name}: verdict {expected:?}, cerbos {by_cerbos:?}"));
            }
        }
        println!(
            "answers: {decisions} decisions of the corpus ({allows} allow) asked of both servers over gRPC; cerbos differs on {} requests",
            differ.len()
        );
        assert!(differ.is_empty(), "cerbos differs:\n{}", differ.join("\n"));

        println!(
            "timing: {} rounds of {} s per server and scenario, {} in flight over {} connections; servers on CPU {}, generator on the rest",
            o.rounds, o.seconds, o.concurrency, o.connections, o.server_cpus
        );
        for (name, request, allowed) in [
            ("1 resource x 1 action", scenario(1..2), 1),
            ("100 resources x 1 action", scenario(0..100), 90),
        ] {
            let expected = verdict_effects(&set, &request);
            assert_eq!(
                expected.iter().flatten().filter(|&&a| a).count(),
                allowed,
                "{name}"
            );
            let mut results: Vec<(Server, Vec<Round>)> =
                vec![(Server::Verdict, Vec::new()), (Server::Cerbos, Vec::new())];
            for _ in 0..o.rounds {
                for (server, rounds) in results.iter_mut() {
                    let addr = match server {
                        Server::Verdict => &verdict.addr,
                        Server::Cerbos => &cerbos_addr,
                    };
                    rounds.push(round(*server, addr, &request, &expected, &o).await);
                }
            }
            println!("{name}");
            let summary: Vec<(Server, f64, Duration, Duration)> = results
                .into_iter()
                .map(|(server, rounds)| {
                    (
                        server,
                        median(rounds.iter().map(|r| r.0).collect()),
                        median(rounds.iter().map(|r| r.1).collect()),
                        median(rounds.iter().map(|r| r.2).collect()),
                    )
                })
                .collect();
            let (_, v_rate, v_p50, v_p99) = summary[0];
            for (server, rate, p50, p99) in &summary {
                let lead = if *server == Server::Verdict {
                    String::new()
                } else {
                    format!(
                        "   verdict: {:.1}x the throughput, p50 {:.1}x and p99 {:.1}x lower",
                        v_rate / rate,
                        p50.as_secs_f64() / v_p50.as_secs_f64(),
                        p99.as_secs_f64() / v_p99.as_secs_f64(),
                    )
                };
                println!(
                    "  {:<8} {:>8.0} req/s   p50 {:>9.1} µs   p99 {:>9.1} µs{lead}",
                    server.name(),
                    rate,
                    p50.as_secs_f64() * 1e6,
                    p99.as_secs_f64() * 1e6,
                );
            }
        }
    });
    drop(cerbos_server);
    drop(verdict);
}
