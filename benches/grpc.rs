//! Over the wire: Check throughput and latency of the real daemon, next to the framework's ceiling
//! (a tonic server on the same proto that returns a constant response without deciding), in one
//! run; then the daemon's memory.
//!
//! The servers run on CPU 0 (`taskset`), this load generator on CPU 1 on one thread, over several
//! HTTP/2 connections. For each server: the maximum rate (closed loop, many requests in flight),
//! then latency at a fixed rate of half the daemon's maximum (open loop: each request is sent at
//! its due time and its latency counts from then, so a stall shows up instead of hiding). The
//! phases alternate between the two servers for `--rounds` rounds, and the ratio is the median of
//! the rounds' ratios, so that a busy spell of a shared machine does not fall on one server only.
//! Each row also says how much of a core the server, the generator and other processes used:
//! a server near 100% is the bottleneck; "others" is noise. Every loop is bounded in time.
//!
//! Run: `cargo bench --bench grpc` (`-- --seconds 5 --rounds 3 --connections 4 --in-flight 64`
//! to change the defaults; `-- --rates 4000,8000` for only latency at those rates, with
//! `--bunch-ms N` to send the requests due in each N ms together). Prints a table; figures go to BENCHMARKS.md with this command.
//! `-- --baseline PATH` compares the daemon with another build of it (an older `verdict` binary),
//! the two alternating round by round on the same policies: max rate, then latency at half the
//! baseline's max rate, and the ratio of the rates, for "the change costs no throughput"
//! (`--policies DIR` serves DIR instead of the bundled policies, e.g. an older build's own set).
//! `-- --soak MINUTES` is the soak test (not a CI test): the daemon, watching a copy of the
//! bundled policies (suite included, so the reload gate runs too), is driven at a fixed rate
//! (`--soak-rate`, default 2000 req/s) for MINUTES minutes while a policy file changes and the
//! daemon reloads every `--reload-ms` (default 3000); it prints RSS at start and end, p50/p99 and
//! failed requests per minute, and the reloads published.
//! `-- --ceiling-server` runs only the ceiling server and `-- --print-frame` prints the request
//! as a gRPC message (`-- --decode-response` reads a response body), for benches/h2load.sh.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::bytes::{BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use verdict::server::proto;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");

struct Options {
    seconds: u64,
    connections: usize,
    in_flight: usize,
    rounds: usize,
    /// `--rates 4000,8000`: only latency at these fixed rates, no maximum-rate phases.
    rates: Vec<f64>,
    /// `--bunch-ms N`: at a fixed rate, send the requests due within each N ms together at its
    /// end (latency then counts from there), to see what bunched arrivals cost a server.
    bunch_ns: u64,
    /// `--baseline PATH`: compare with this `verdict` binary instead of the ceiling.
    baseline: Option<PathBuf>,
    /// `--policies DIR`: the policies every daemon serves (default: the bundled ones). An older
    /// build may not read today's bundled set: give both builds the older one.
    policies: Option<PathBuf>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        seconds: value("--seconds", 5),
        connections: value("--connections", 4) as usize,
        in_flight: value("--in-flight", 64) as usize,
        rounds: value("--rounds", 3).max(1) as usize,
        rates: args
            .iter()
            .position(|a| a == "--rates")
            .and_then(|i| args.get(i + 1))
            .map(|v| v.split(',').filter_map(|r| r.parse().ok()).collect())
            .unwrap_or_default(),
        bunch_ns: value("--bunch-ms", 0) * 1_000_000,
        baseline: args
            .iter()
            .position(|a| a == "--baseline")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from),
        policies: args
            .iter()
            .position(|a| a == "--policies")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from),
    }
}

/// The ceiling: the same service, answering a constant response.
struct Constant(proto::CheckResponse);

#[tonic::async_trait]
impl proto::authorizer_server::Authorizer for Constant {
    async fn check(
        &self,
        _request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        Ok(Response::new(self.0.clone()))
    }

    async fn plan_filter(
        &self,
        _request: Request<proto::PlanFilterRequest>,
    ) -> Result<Response<proto::PlanFilterResponse>, Status> {
        Err(Status::unimplemented("ceiling server"))
    }
}

fn run_ceiling_server() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("serving gRPC addr={}", listener.local_addr().unwrap());
        let response = proto::CheckResponse {
            request_id: String::new(),
            policy_version: "constant".into(),
            results: vec![proto::ResourceResult {
                resource: Some(proto::ResourceIdentity {
                    kind: "Patient".into(),
                    id: "123".into(),
                }),
                actions: [(
                    "read".to_string(),
                    proto::ActionDecision {
                        effect: proto::Effect::Allow as i32,
                        policy: "physician".into(),
                        rule: "clinical-care".into(),
                        reason: "allowed by rule \"clinical-care\" of policy \"physician\"".into(),
                        trace: Vec::new(),
                    },
                )]
                .into(),
            }],
            token_error: String::new(),
        };
        // As the daemon does: no Nagle delay on the accepted connections (the builder's
        // `tcp_nodelay` applies only to listeners tonic binds itself).
        let incoming = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            |stream| {
                let stream = stream?;
                stream.set_nodelay(true)?;
                Ok::<_, std::io::Error>(stream)
            },
        );
        tonic::transport::Server::builder()
            .add_service(proto::authorizer_server::AuthorizerServer::new(Constant(
                response,
            )))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
}

/// A server process pinned to CPU 0; killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(mut command: Command) -> Server {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts");
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for reader in [
            Box::new(stderr) as Box<dyn std::io::Read + Send>,
            Box::new(stdout),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(reader).lines().map_while(Result::ok) {
                    // `serving gRPC listener="grpc" addr=127.0.0.1:PORT ...`
                    if let Some(i) = line
                        .contains("serving gRPC")
                        .then(|| line.find(" addr="))
                        .flatten()
                    {
                        let addr = line[i + 6..]
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_string();
                        let _ = tx.send(addr);
                    }
                }
            });
        }
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server announces its address");
        Server { child, addr }
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        kib / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pinned(cpu: &str, program: &Path) -> Command {
    let mut command = Command::new("taskset");
    command.args(["-c", cpu]).arg(program);
    command
}

fn daemon(policies: &Path) -> Server {
    daemon_of(Path::new(BIN), policies)
}

fn daemon_of(binary: &Path, policies: &Path) -> Server {
    let mut command = pinned("0", binary);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-watch",
            "--request-timeout-ms",
            "0",
            "--policies",
        ])
        .arg(policies)
        .env("VERDICT_LOG", "info");
    Server::start(command)
}

fn check_request() -> proto::CheckRequest {
    let body: verdict::server::json::CheckBody = serde_json::from_value(serde_json::json!({
        "principal": {"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"], "attr": {"practice_id": "7", "licensed_states": ["CA", "NY"]}},
        "resources": [{"resource": {"kind": "Patient", "id": "123", "attr": {"practice_id": "7", "patient_id": "123", "state": "CA", "celebrity": false, "primary_physician_id": "dr-wilson"}}, "actions": ["read"]}]
    }))
    .unwrap();
    verdict::server::convert::to_proto(&body.into_call().request)
}

async fn channels(addr: &str, n: usize) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..n {
        // One channel per connection: each connect() is its own HTTP/2 connection.
        out.push(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .tcp_nodelay(true)
                .connect()
                .await
                .unwrap(),
        );
    }
    out
}

/// Check on one connection, the request encoded once: per request the generator pays for
/// tonic's client and HTTP/2, not for copying and encoding the same message again. The answer
/// is decoded and counts only if it allows the read.
#[derive(Clone)]
struct Checker {
    grpc: tonic::client::Grpc<Channel>,
    request: Bytes,
}

impl Checker {
    fn new(channel: Channel, request: &Bytes) -> Checker {
        Checker {
            grpc: tonic::client::Grpc::new(channel),
            request: request.clone(),
        }
    }

    async fn check(&mut self) -> bool {
        if self.grpc.ready().await.is_err() {
            return false;
        }
        let path = http::uri::PathAndQuery::from_static("/verdict.v1.Authorizer/Check");
        match self
            .grpc
            .unary(Request::new(self.request.clone()), path, PreEncoded)
            .await
        {
            Ok(response) => allows_read(&response.into_inner()),
            Err(_) => false,
        }
    }
}

fn allows_read(response: &proto::CheckResponse) -> bool {
    response
        .results
        .first()
        .and_then(|r| r.actions.get("read"))
        .is_some_and(|d| d.effect == proto::Effect::Allow as i32)
}

/// The request as encoded protobuf bytes, sent as they are; the response decoded with prost.
#[derive(Clone, Copy)]
struct PreEncoded;

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = proto::CheckResponse;
    type Encoder = PreEncoded;
    type Decoder = PreEncoded;

    fn encoder(&mut self) -> PreEncoded {
        PreEncoded
    }

    fn decoder(&mut self) -> PreEncoded {
        PreEncoded
    }
}

impl Encoder for PreEncoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for PreEncoded {
    type Item = proto::CheckResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<proto::CheckResponse>, Status> {
        prost::Message::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

fn encoded_request() -> Bytes {
    Bytes::from(prost::Message::encode_to_vec(&check_request()))
}

/// A few hundred requests on every connection before measuring.
async fn warm_up(channels: &[Channel], request: &Bytes) {
    for channel in channels {
        let mut checker = Checker::new(channel.clone(), request);
        for _ in 0..200 {
            assert!(checker.check().await, "the server allows the read");
        }
    }
}

struct Measured {
    completed: usize,
    failed: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    /// During the phase, shares of a core: the server, this generator, the rest on CPU 0 and on
    /// CPU 1 (see `cpu_use`).
    cpu: [f64; 4],
}

/// CPU time so far: of the server process and of this process (nanoseconds on a CPU, from the
/// scheduler's per-thread counters: tick-sampled utime misses short bursts), and busy and total
/// time of CPUs 0 and 1 (clock ticks, /proc/stat); zeros where unreadable.
#[derive(Clone, Copy)]
struct CpuTimes {
    at: Instant,
    server_ns: u64,
    generator_ns: u64,
    cpus: [(u64, u64); 2],
}

/// Time on a CPU of every live thread of a process, from /proc/PID/task/*/schedstat.
fn process_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn cpu_times(server: &Server) -> CpuTimes {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut cpus = [(0, 0); 2];
    for (cpu, slot) in cpus.iter_mut().enumerate() {
        let prefix = format!("cpu{cpu} ");
        if let Some(line) = stat.lines().find(|l| l.starts_with(&prefix)) {
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...
            let total: u64 = fields.iter().take(8).sum();
            let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
            *slot = (total - idle, total);
        }
    }
    CpuTimes {
        at: Instant::now(),
        server_ns: process_ns(&server.child.id().to_string()),
        generator_ns: process_ns("self"),
        cpus,
    }
}

/// Shares of one core over a phase: the server process, this generator, and everything else on
/// CPU 0 and on CPU 1 (other processes of the machine: the noise; coarser, from clock ticks).
fn cpu_use(server: &Server, before: CpuTimes) -> [f64; 4] {
    let after = cpu_times(server);
    let wall = after.at.duration_since(before.at).as_nanos() as f64;
    let server = (after.server_ns - before.server_ns) as f64 / wall;
    let generator = (after.generator_ns - before.generator_ns) as f64 / wall;
    let busy = |i: usize| {
        let total = (after.cpus[i].1 - before.cpus[i].1) as f64;
        (after.cpus[i].0 - before.cpus[i].0) as f64 / total
    };
    [
        server,
        generator,
        (busy(0) - server).max(0.0),
        (busy(1) - generator).max(0.0),
    ]
}

impl Measured {
    fn empty() -> Measured {
        Measured {
            completed: 0,
            failed: 0,
            elapsed: Duration::ZERO,
            latencies_us: Vec::new(),
            cpu: [f64::NAN; 4],
        }
    }

    /// Several rounds of one phase as one: counts and latencies pooled, time and CPU summed
    /// (weighted by time).
    fn pooled(rounds: Vec<Measured>) -> Measured {
        let mut m = Measured::empty();
        let seconds: f64 = rounds.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        m.cpu = [0.0; 4];
        for r in rounds {
            m.completed += r.completed;
            m.failed += r.failed;
            m.elapsed += r.elapsed;
            m.latencies_us.extend(r.latencies_us);
            for i in 0..4 {
                m.cpu[i] += r.cpu[i] * r.elapsed.as_secs_f64() / seconds;
            }
        }
        m
    }
}

impl Measured {
    fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    /// Microseconds of server CPU time per completed request.
    fn server_us_per_request(&self) -> f64 {
        self.cpu[0] * self.elapsed.as_secs_f64() * 1e6 / self.completed as f64
    }

    fn percentile(&mut self, p: f64) -> f64 {
        percentile(&mut self.latencies_us, p)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn percentile(values: &mut [u32], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[i] as f64
}

/// Closed loop: `in_flight` workers over the channels, each sending as soon as the last answer came.
async fn max_rate(server: &Server, o: &Options) -> Measured {
    let channels = channels(&server.addr, o.connections).await;
    let request = encoded_request();
    warm_up(&channels, &request).await;
    let cpu = cpu_times(server);
    let started = Instant::now();
    let until = started + Duration::from_secs(o.seconds);
    let mut workers = Vec::new();
    for w in 0..o.in_flight {
        let mut checker = Checker::new(channels[w % channels.len()].clone(), &request);
        workers.push(tokio::spawn(async move {
            let (mut done, mut failed, mut latencies) =
                (0usize, 0usize, Vec::with_capacity(1 << 16));
            while Instant::now() < until {
                let sent = Instant::now();
                match tokio::time::timeout(Duration::from_secs(10), checker.check()).await {
                    Ok(true) => {
                        done += 1;
                        latencies.push(sent.elapsed().as_micros() as u32);
                    }
                    _ => failed += 1,
                }
            }
            (done, failed, latencies)
        }));
    }
    let mut m = Measured::empty();
    for w in workers {
        let (done, failed, latencies) = w.await.unwrap();
        m.completed += done;
        m.failed += failed;
        m.latencies_us.extend(latencies);
    }
    m.elapsed = started.elapsed();
    m.cpu = cpu_use(server, cpu);
    m
}

/// Open loop at `rate` requests per second for `seconds`: latency from when each request was due
/// (so a stall of the server or of this generator shows up instead of hiding).
///
/// Requests go out at their due time, not in bursts: tokio's timer has 1 ms ticks, so the
/// dispatcher sleeps only until about 2 ms before a request is due and then yields until the
/// clock reaches it. Yielding (not blocking) lets the tasks of the requests in flight and the
/// runtime's I/O run meanwhile, on this same thread.
async fn fixed_rate(server: &Server, o: &Options, rate: f64) -> (Measured, Vec<u32>) {
    let channels = channels(&server.addr, o.connections).await;
    let request = encoded_request();
    warm_up(&channels, &request).await;
    let total = (rate * o.seconds as f64) as usize;
    let interval_ns = 1e9 / rate;
    let coarse = Duration::from_millis(2);
    let timeout = Duration::from_secs(10);
    let cpu = cpu_times(server);
    let started = Instant::now() + Duration::from_millis(10);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let mut offset = (i as f64 * interval_ns) as u64;
        if o.bunch_ns > 0 {
            offset = offset.div_ceil(o.bunch_ns) * o.bunch_ns;
        }
        let due = started + Duration::from_nanos(offset);
        if due > Instant::now() + coarse {
            tokio::time::sleep_until((due - coarse).into()).await;
        }
        while Instant::now() < due {
            tokio::task::yield_now().await;
        }
        let mut checker = Checker::new(channels[i % channels.len()].clone(), &request);
        tasks.push(tokio::spawn(async move {
            // How late this request started, from its due time: the generator's own lag.
            let lag = due.elapsed().as_micros() as u32;
            let ok = tokio::time::timeout(timeout, checker.check())
                .await
                .unwrap_or(false);
            (ok, due.elapsed().as_micros() as u32, lag)
        }));
    }
    let mut m = Measured::empty();
    let mut lags = Vec::with_capacity(total);
    for t in tasks {
        let (ok, latency, lag) = t.await.unwrap();
        lags.push(lag);
        if ok {
            m.completed += 1;
            m.latencies_us.push(latency);
        } else {
            m.failed += 1;
        }
    }
    m.elapsed = started.elapsed();
    m.cpu = cpu_use(server, cpu);
    (m, lags)
}

fn row(name: &str, m: &mut Measured) {
    println!(
        "{name:<44} {:>10.0} req/s  p50 {:>7.0} us  p90 {:>7.0} us  p99 {:>7.0} us  p999 {:>7.0} us  failed {}  CPU: server {:.0}%, load {:.0}%, others {:.0}% + {:.0}%",
        m.rate(),
        m.percentile(0.50),
        m.percentile(0.90),
        m.percentile(0.99),
        m.percentile(0.999),
        m.failed,
        100.0 * m.cpu[0],
        100.0 * m.cpu[1],
        100.0 * m.cpu[2],
        100.0 * m.cpu[3],
    );
}

fn generated_policies(rules: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..rules {
        text.push_str(&format!(
            "---\nagent_policy:\n  name: generated-{i}\n  principals: {{roles: [role-{}]}}\n  rules:\n    - name: rule\n      effect: allow\n      actions: [read, update]\n      kinds: [Kind{}]\n      when: R.attr.practice_id == P.attr.practice_id\n",
            i % 50,
            i % 1000
        ));
    }
    std::fs::write(dir.path().join("generated.yaml"), text).unwrap();
    dir
}

fn ceiling_server() -> Server {
    let mut command = pinned("0", &std::env::current_exe().unwrap());
    command.arg("--ceiling-server");
    Server::start(command)
}

fn main() {
    if std::env::args().any(|a| a == "--ceiling-server") {
        run_ceiling_server();
        return;
    }
    if std::env::args().any(|a| a == "--print-frame") {
        // For benches/h2load.sh: the request below as one gRPC message on the wire (uncompressed
        // flag, 4-byte big-endian length, protobuf), the body h2load sends.
        use std::io::Write;
        let message = prost::Message::encode_to_vec(&check_request());
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        std::io::stdout().write_all(&frame).unwrap();
        return;
    }
    if std::env::args().any(|a| a == "--decode-response") {
        // For benches/h2load.sh: the decisions in a Check response body (one gRPC message) read
        // from standard input, one line each.
        use std::io::Read;
        let mut body = Vec::new();
        std::io::stdin().read_to_end(&mut body).unwrap();
        assert!(
            body.len() >= 5 && body[0] == 0,
            "not one uncompressed gRPC message"
        );
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let response: proto::CheckResponse =
            prost::Message::decode(&body[5..5 + length]).expect("a CheckResponse");
        for result in &response.results {
            let resource = result.resource.clone().unwrap_or_default();
            for (action, decision) in &result.actions {
                let effect = proto::Effect::try_from(decision.effect)
                    .map(|e| e.as_str_name())
                    .unwrap_or("unknown");
                println!(
                    "{}/{} {action}: {effect} (policy {:?}, rule {:?})",
                    resource.kind, resource.id, decision.policy, decision.rule
                );
            }
        }
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench` probing the harness: nothing to list.
        return;
    }
    let o = options();
    // This process generates the load on CPU 1, on one thread (a current-thread runtime: no
    // second thread of ours competing for that core); the servers run on CPU 0.
    let _ = Command::new("taskset")
        .args(["-cp", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let policies = o
        .policies
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies"));
    println!(
        "grpc bench: {} s per phase, {} connections, {} requests in flight; servers on CPU 0, load on CPU 1 (one thread)",
        o.seconds, o.connections, o.in_flight,
    );
    let soak = |name: &str| {
        let args: Vec<String> = std::env::args().collect();
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(minutes) = soak("--soak") {
        let rate = soak("--soak-rate").unwrap_or(2000) as f64;
        let reload = Duration::from_millis(soak("--reload-ms").unwrap_or(3000));
        runtime.block_on(soak_test(&policies, &o, minutes, rate, reload));
        return;
    }
    if let Some(baseline) = &o.baseline {
        runtime.block_on(compare(baseline, &policies, &o));
        return;
    }
    runtime.block_on(async {
        // Both servers stay up; the phases alternate between them round by round, so that a
        // noisy spell of the machine does not land on one server only.
        let ceiling = ceiling_server();
        let verdict = daemon(&policies);
        if !o.rates.is_empty() {
            println!();
            for &rate in &o.rates {
                let (mut c, mut v, mut lags) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..o.rounds {
                    let (m, lag) = fixed_rate(&ceiling, &o, rate).await;
                    c.push(m);
                    lags.extend(lag);
                    let (m, lag) = fixed_rate(&verdict, &o, rate).await;
                    v.push(m);
                    lags.extend(lag);
                }
                row(&format!("ceiling at {rate:.0} req/s"), &mut Measured::pooled(c));
                row(&format!("verdict at {rate:.0} req/s"), &mut Measured::pooled(v));
                println!(
                    "generator lag at {rate:.0} req/s (both servers): p50 {:.0} us, p99 {:.0} us, p999 {:.0} us",
                    percentile(&mut lags, 0.50),
                    percentile(&mut lags, 0.99),
                    percentile(&mut lags, 0.999)
                );
            }
            return;
        }
        let (mut ceiling_rounds, mut verdict_rounds) = (Vec::new(), Vec::new());
        for _ in 0..o.rounds {
            ceiling_rounds.push(max_rate(&ceiling, &o).await);
            verdict_rounds.push(max_rate(&verdict, &o).await);
        }
        let rates = |rounds: &[Measured]| -> Vec<f64> { rounds.iter().map(Measured::rate).collect() };
        let (ceiling_rates, verdict_rates) = (rates(&ceiling_rounds), rates(&verdict_rounds));
        let ratios: Vec<f64> = ceiling_rates
            .iter()
            .zip(&verdict_rates)
            .map(|(c, v)| v / c)
            .collect();
        let half = median(&verdict_rates) / 2.0;
        let (mut ceiling_fixed, mut verdict_fixed) = (Vec::new(), Vec::new());
        let (mut ceiling_lag, mut verdict_lag) = (Vec::new(), Vec::new());
        for _ in 0..o.rounds {
            let (m, lag) = fixed_rate(&ceiling, &o, half).await;
            ceiling_fixed.push(m);
            ceiling_lag.extend(lag);
            let (m, lag) = fixed_rate(&verdict, &o, half).await;
            verdict_fixed.push(m);
            verdict_lag.extend(lag);
        }
        let rss_bundled = verdict.rss_mib();
        drop(verdict);
        drop(ceiling);

        let mut ceiling_max = Measured::pooled(ceiling_rounds);
        let mut verdict_max = Measured::pooled(verdict_rounds);
        let mut ceiling_half = Measured::pooled(ceiling_fixed);
        let mut verdict_half = Measured::pooled(verdict_fixed);
        println!();
        row("ceiling (constant response), max rate", &mut ceiling_max);
        row("verdict Check 1x1, max rate", &mut verdict_max);
        row(&format!("ceiling at {half:.0} req/s"), &mut ceiling_half);
        row(&format!("verdict at {half:.0} req/s (half its max)"), &mut verdict_half);
        let list = |values: &[f64], scale: f64| {
            values
                .iter()
                .map(|v| format!("{:.1}", v * scale))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "max rate by round (k req/s): ceiling {}; verdict {}",
            list(&ceiling_rates, 1e-3),
            list(&verdict_rates, 1e-3)
        );
        println!(
            "verdict throughput / ceiling: {:.1}% (median of the rounds: {})",
            100.0 * median(&ratios),
            list(&ratios, 100.0)
        );
        for (name, lags) in [("ceiling", &mut ceiling_lag), ("verdict", &mut verdict_lag)] {
            println!(
                "generator lag at {half:.0} req/s, {name} (request started after its due time): p50 {:.0} us, p99 {:.0} us, p999 {:.0} us",
                percentile(lags, 0.50),
                percentile(lags, 0.99),
                percentile(lags, 0.999)
            );
        }

        let generated = generated_policies(10_000);
        let big = daemon(generated.path());
        let mut checker = Checker::new(channels(&big.addr, 1).await.remove(0), &encoded_request());
        for _ in 0..1000 {
            checker.check().await;
        }
        let rss_big = big.rss_mib();
        drop(big);
        println!("daemon RSS: {rss_bundled:.1} MiB with the bundled policies (after the load above), {rss_big:.1} MiB with 10,000 generated rules");
    });
}

/// This daemon against another build of it, alternating round by round.
async fn compare(baseline: &Path, policies: &Path, o: &Options) {
    println!("baseline: {}", baseline.display());
    let before = daemon_of(baseline, policies);
    let after = daemon(policies);
    let (mut before_rounds, mut after_rounds) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        before_rounds.push(max_rate(&before, o).await);
        after_rounds.push(max_rate(&after, o).await);
    }
    let rates = |rounds: &[Measured]| -> Vec<f64> { rounds.iter().map(Measured::rate).collect() };
    let (before_rates, after_rates) = (rates(&before_rounds), rates(&after_rounds));
    let ratios: Vec<f64> = before_rates
        .iter()
        .zip(&after_rates)
        .map(|(b, a)| a / b)
        .collect();
    // The server's CPU time per Check: what a request costs it, whatever share of the core the
    // rest of a shared machine left it during the round.
    let costs = |rounds: &[Measured]| -> Vec<f64> {
        rounds.iter().map(Measured::server_us_per_request).collect()
    };
    let (before_costs, after_costs) = (costs(&before_rounds), costs(&after_rounds));
    let cost_ratios: Vec<f64> = before_costs
        .iter()
        .zip(&after_costs)
        .map(|(b, a)| a / b)
        .collect();
    let half = median(&before_rates) / 2.0;
    let (mut before_fixed, mut after_fixed) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        before_fixed.push(fixed_rate(&before, o, half).await.0);
        after_fixed.push(fixed_rate(&after, o, half).await.0);
    }
    println!();
    row(
        "baseline Check 1x1, max rate",
        &mut Measured::pooled(before_rounds),
    );
    row(
        "this build Check 1x1, max rate",
        &mut Measured::pooled(after_rounds),
    );
    row(
        &format!("baseline at {half:.0} req/s"),
        &mut Measured::pooled(before_fixed),
    );
    row(
        &format!("this build at {half:.0} req/s"),
        &mut Measured::pooled(after_fixed),
    );
    let list = |values: &[f64], scale: f64| {
        values
            .iter()
            .map(|v| format!("{:.1}", v * scale))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "max rate by round (k req/s): baseline {}; this build {}",
        list(&before_rates, 1e-3),
        list(&after_rates, 1e-3)
    );
    println!(
        "max rate, this build / baseline: {:.1}% (median of the rounds: {})",
        100.0 * median(&ratios),
        list(&ratios, 100.0)
    );
    println!(
        "server CPU per Check at max rate by round (us): baseline {}; this build {}",
        list(&before_costs, 1.0),
        list(&after_costs, 1.0)
    );
    println!(
        "server CPU per Check, this build / baseline: {:.1}% (median of the rounds: {})",
        100.0 * median(&cost_ratios),
        list(&cost_ratios, 100.0)
    );
}

/// The daemon at a fixed rate for `minutes`, reloading every `reload`: RSS, latency and failures
/// per minute.
async fn soak_test(policies: &Path, o: &Options, minutes: u64, rate: f64, reload: Duration) {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(policies.join("clinic")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let server = daemon(dir.path());
    println!(
        "soak: {minutes} min at {rate:.0} req/s, {} connections; a policy change and SIGHUP every {} ms",
        o.connections,
        reload.as_millis()
    );
    // Warm, then the starting footprint.
    let minute = Options {
        seconds: 5,
        connections: o.connections,
        in_flight: o.in_flight,
        rounds: 1,
        rates: Vec::new(),
        bunch_ns: 0,
        baseline: None,
        policies: None,
    };
    fixed_rate(&server, &minute, rate).await;
    let rss_start = server.rss_mib();
    println!("RSS at start (after 5 s of load): {rss_start:.1} MiB");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let changer = {
        let stop = std::sync::Arc::clone(&stop);
        let path = dir.path().join("soak.yaml");
        let pid = server.child.id().to_string();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                // A physician rule (roles must be declared in the schema) that never matches
                // (no patient has this id) but is evaluated on every Check of the load: the
                // version changes, the decisions and the set's test suite do not.
                let text = format!(
                    "agent_policy:\n  name: soak\n  principals: {{roles: [physician]}}\n  rules:\n    - {{name: r{n}, effect: allow, actions: [read], kinds: [Patient], when: 'R.attr.patient_id == \"soak-{n}\"'}}\n"
                );
                let temp = path.with_extension("tmp");
                std::fs::write(&temp, text).unwrap();
                std::fs::rename(&temp, &path).unwrap();
                let _ = Command::new("kill").args(["-HUP", &pid]).status();
                std::thread::sleep(reload);
            }
            n
        })
    };
    let per_minute = Options {
        seconds: 60,
        ..minute
    };
    let mut failed = 0;
    for m in 1..=minutes {
        let (mut measured, _) = fixed_rate(&server, &per_minute, rate).await;
        failed += measured.failed;
        row(&format!("minute {m}"), &mut measured);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changes = changer.join().unwrap();
    let rss_end = server.rss_mib();
    let status = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .map(proto::admin_client::AdminClient::new)
        .unwrap()
        .status(proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    println!(
        "RSS at end: {rss_end:.1} MiB (start {rss_start:.1} MiB); {changes} policy changes, {} reloads published, {} rejected; {failed} failed requests",
        status.reloads_ok, status.reloads_failed
    );
}
